package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
)

// newEraseCmd is `moat runs erase`: the subject is read from standard
// input by default, so it stays out of shell history and process lists.
func newEraseCmd() *cobra.Command {
	var r remote
	var subject string
	cmd := &cobra.Command{
		Use:   "erase",
		Short: "Erase every run holding a person's identifier (e-mail, phone, card number, name …)",
		Long: `Erase every run whose payloads hold a person's identifier. Runs are found
through the index of HMACs of the identifiers in their payloads; each run's
payload keys are destroyed, then its payloads deleted, so copies made
before hold nothing readable either. A run not finished is cancelled first.
The identifier is read from standard input unless --subject gives it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if subject == "" || subject == "-" {
				line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 4096)).ReadString('\n')
				if err != nil && err != io.EOF {
					return fmt.Errorf("read the identifier from standard input: %w", err)
				}
				subject = strings.TrimRight(line, "\r\n")
			}
			if strings.TrimSpace(subject) == "" {
				return fmt.Errorf("no identifier given: pipe it on standard input or pass --subject")
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			var res struct {
				Runs      []string `json:"runs"`
				Cancelled []string `json:"cancelled"`
			}
			status, err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/runs/erase", nil, map[string]string{"subject": subject}, &res)
			if status == http.StatusNotFound {
				return fmt.Errorf("no run holds this identifier; nothing was erased")
			}
			if err != nil {
				return err
			}
			cancelled := map[string]bool{}
			for _, id := range res.Cancelled {
				cancelled[id] = true
			}
			for _, id := range res.Runs {
				if cancelled[id] {
					fmt.Fprintf(cmd.OutOrStdout(), "erased %s (cancelled first)\n", id)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "erased %s\n", id)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d runs erased\n", len(res.Runs))
			return nil
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "the identifier; - or absent reads it from standard input")
	r.bind(cmd)
	return cmd
}

func newPurgeCmd() *cobra.Command {
	var r remote
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Purge expired run payloads now, as the purge job does every --purge-interval",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			var res struct {
				Purged int      `json:"purged"`
				Runs   []string `json:"runs"`
			}
			if _, err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/runs/purge", nil, nil, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d payloads purged from %d runs\n", res.Purged, len(res.Runs))
			return nil
		},
	}
	r.bind(cmd)
	return cmd
}
