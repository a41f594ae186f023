package main

import (
	"errors"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// vaultView is the API's view of the vault.
type vaultView struct {
	Sealed            bool   `json:"sealed"`
	Source            string `json:"source"`
	PrimaryTerm       uint32 `json:"primaryTerm"`
	MinDecryptionTerm uint32 `json:"minDecryptionTerm"`
	Terms             []struct {
		Term      uint32    `json:"term"`
		CreatedAt time.Time `json:"createdAt"`
		Secrets   int       `json:"secrets"`
	} `json:"terms"`
	Environments []string `json:"environments"`
	Rewrap       *struct {
		Running   bool     `json:"running"`
		Term      uint32   `json:"term"`
		Rewrapped int      `json:"rewrapped"`
		Failed    []string `json:"failed"`
		Error     string   `json:"error"`
	} `json:"rewrap"`
}

func (v vaultView) print(cmd *cobra.Command) error {
	w := cmd.OutOrStdout()
	state := "unsealed"
	if v.Sealed {
		state = "sealed"
	}
	fmt.Fprintf(w, "vault %s (root key from %s); primary term %d, minimum decryption term %d\n", state, v.Source, v.PrimaryTerm, v.MinDecryptionTerm)
	if r := v.Rewrap; r != nil {
		switch {
		case r.Running && r.Term == 0: // the job has not yet read the keyring
			fmt.Fprintln(w, "rewrap to the primary term starting")
		case r.Running:
			fmt.Fprintf(w, "rewrap to term %d running: %d secrets so far\n", r.Term, r.Rewrapped)
		case r.Error != "":
			fmt.Fprintf(w, "rewrap to term %d stopped after %d secrets: %s (moat keys rewrap resumes it)\n", r.Term, r.Rewrapped, r.Error)
		default:
			fmt.Fprintf(w, "rewrap to term %d done: %d secrets\n", r.Term, r.Rewrapped)
		}
		if len(r.Failed) > 0 {
			fmt.Fprintf(w, "%d secrets could not be rewrapped (corrupt): %v\n", len(r.Failed), r.Failed)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TERM\tCREATED\tSECRETS")
	for _, t := range v.Terms {
		fmt.Fprintf(tw, "%d\t%s\t%d\n", t.Term, t.CreatedAt.Local().Format(time.DateTime), t.Secrets)
	}
	return tw.Flush()
}

// vaultCall posts (or gets) a vault operation and prints the state.
func vaultCall(cmd *cobra.Command, r *remote, method, path string, body any, output string) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	var v vaultView
	if _, err := c.Do(cmd.Context(), method, path, nil, body, &v); err != nil {
		return err
	}
	if output == "json" {
		return printJSON(cmd, v)
	}
	return v.print(cmd)
}

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "The vault's keyring: status, rotation, rewrap, retirement, seal",
	}
	simple := func(use, short, method, path string) *cobra.Command {
		var r remote
		var output string
		c := &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return vaultCall(cmd, &r, method, path, nil, output)
			},
		}
		r.bind(c)
		c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
		return c
	}
	cmd.AddCommand(
		simple("status", "Show the key terms and how many secrets each wraps", http.MethodGet, "/api/v1/vault"),
		simple("rotate", "Add a key term, make it primary and rewrap every secret to it in the background", http.MethodPost, "/api/v1/vault/rotate"),
		simple("rewrap", "Resume the background rewrap to the primary term", http.MethodPost, "/api/v1/vault/rewrap"),
		simple("seal", "Seal the vault: zeroise its keys until `moat unseal`", http.MethodPost, "/api/v1/vault/seal"),
		newKeysRetireCmd(),
	)
	return cmd
}

func newKeysRetireCmd() *cobra.Command {
	var r remote
	var term uint32
	var output string
	cmd := &cobra.Command{
		Use:   "retire --min-decryption-term N",
		Short: "Retire the key terms below N; refused while secrets still use them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if term == 0 {
				return errors.New("--min-decryption-term is required")
			}
			return vaultCall(cmd, &r, http.MethodPost, "/api/v1/vault/min-decryption-term", map[string]any{"term": term}, output)
		},
	}
	r.bind(cmd)
	cmd.Flags().Uint32Var(&term, "min-decryption-term", 0, "the lowest key term that may still decrypt")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func newUnsealCmd() *cobra.Command {
	var r remote
	var fromFile string
	var initialise bool
	cmd := &cobra.Command{
		Use:   "unseal",
		Short: "Unseal the server's vault, reading the passphrase from stdin or a file",
		Long: "A vault whose root key comes from a passphrase starts sealed; give it the passphrase on stdin (one trailing newline dropped) " +
			"or with --passphrase-file. --init creates a new vault's keyring with that passphrase. A vault keyed by a file or the " +
			"environment needs no passphrase: stdin is not read.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			var st vaultView
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/vault", nil, nil, &st); err != nil {
				return err
			}
			body := map[string]any{}
			if st.Source == "passphrase" {
				if fromFile == "" && isTerminal(cmd.InOrStdin()) {
					fmt.Fprintln(cmd.ErrOrStderr(), "passphrase (echoed; end with Enter and Ctrl-D, or use --passphrase-file):")
				}
				pass, err := readSecretValue(cmd.InOrStdin(), fromFile)
				if err != nil {
					return fmt.Errorf("passphrase: %w", err)
				}
				defer clear(pass)
				body["passphrase"], body["init"] = string(pass), initialise
			}
			var v vaultView
			if _, err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/vault/unseal", nil, body, &v); err != nil {
				return err
			}
			return v.print(cmd)
		},
	}
	r.bind(cmd)
	cmd.Flags().StringVar(&fromFile, "passphrase-file", "", "read the passphrase from this file instead of stdin")
	cmd.Flags().BoolVar(&initialise, "init", false, "create a new vault's keyring with this passphrase")
	return cmd
}
