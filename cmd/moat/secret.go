package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/client"
)

// maxSecretInput bounds what `secret set` reads: the vault takes 64 KiB.
const maxSecretInput = 64 << 10

// secretView is what the API shows of a secret: never its value.
type secretView struct {
	Name             string     `json:"name"`
	Environment      string     `json:"environment"`
	Version          int        `json:"version"`
	KeyTerm          uint32     `json:"keyTerm"`
	Connectors       []string   `json:"connectors"`
	Hosts            []string   `json:"hosts,omitempty"`
	Models           []string   `json:"models,omitempty"`
	RotationPeriod   string     `json:"rotationPeriod,omitempty"`
	RotateBy         *time.Time `json:"rotateBy,omitempty"`
	Rotation         string     `json:"rotation"`
	BlockWhenExpired bool       `json:"blockWhenExpired"`
	CreatedAt        time.Time  `json:"createdAt"`
	UpdatedAt        time.Time  `json:"updatedAt"`
	LastUsedAt       *time.Time `json:"lastUsedAt,omitempty"`
}

func secretPath(env, name string) string {
	return "/api/v1/secrets/" + url.PathEscape(env) + "/" + url.PathEscape(name)
}

func newSecretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Set, list and delete secrets on a server (values are write-only)",
	}
	cmd.AddCommand(newSecretSetCmd(), newSecretListCmd(), newSecretDeleteCmd())
	return cmd
}

func newSecretSetCmd() *cobra.Command {
	var r remote
	var env, fromFile, rotation string
	var connectors, hosts, models []string
	var block bool
	cmd := &cobra.Command{
		Use:   "set NAME --env ENV",
		Short: "Store a new version of a secret, reading the value from stdin or a file",
		Long: "The value is read from stdin (one trailing newline dropped) or, with --from-file, from a file (as is); it is never a flag, " +
			"so it stays out of shell history. Bindings say where the secret may be sent: at least one --connector, and the --host (exact or " +
			"*.example.com, optionally :port) and --model it may reach. Without any binding or rotation flag an existing secret keeps its settings.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if env == "" {
				return errors.New("--env is required: a secret belongs to one environment")
			}
			if fromFile == "" && isTerminal(cmd.InOrStdin()) {
				fmt.Fprintln(cmd.ErrOrStderr(), "reading the value from stdin; end it with Enter and Ctrl-D (it is echoed: prefer a pipe or --from-file)")
			}
			value, err := readSecretValue(cmd.InOrStdin(), fromFile)
			if err != nil {
				return err
			}
			defer clear(value)
			c, err := r.client()
			if err != nil {
				return err
			}
			body := map[string]any{
				"connectors": connectors, "hosts": hosts, "models": models,
				"rotationPeriod": rotation, "blockWhenExpired": block,
			}
			changed := false
			for _, f := range []string{"connector", "host", "model", "rotation-period", "block-when-expired"} {
				changed = changed || cmd.Flags().Changed(f)
			}
			if !changed {
				var old secretView
				_, err := c.Do(cmd.Context(), http.MethodGet, secretPath(env, name), nil, nil, &old)
				var p *client.Problem
				if errors.As(err, &p) && p.Status == http.StatusNotFound {
					return fmt.Errorf("%s/%s is a new secret: bind it with --connector (and --host, --model)", env, name)
				}
				if err != nil {
					return err
				}
				body = map[string]any{
					"connectors": old.Connectors, "hosts": old.Hosts, "models": old.Models,
					"rotationPeriod": old.RotationPeriod, "blockWhenExpired": old.BlockWhenExpired,
				}
			}
			// The value travels as a JSON string: it must be UTF-8.
			body["value"] = string(value)
			var out secretView
			status, err := c.Do(cmd.Context(), http.MethodPut, secretPath(env, name), nil, body, &out)
			if err != nil {
				return err
			}
			verb := "updated"
			if status == http.StatusCreated {
				verb = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s/%s version %d %s\n", out.Environment, out.Name, out.Version, verb)
			return nil
		},
	}
	r.bind(cmd)
	cmd.Flags().StringVar(&env, "env", "", "environment (dev, staging, prod, or as configured)")
	cmd.Flags().StringVar(&fromFile, "from-file", "", "read the value from this file instead of stdin")
	cmd.Flags().StringSliceVar(&connectors, "connector", nil, "connector that may use the secret (repeatable)")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "host it may be sent to: api.example.com, *.example.com, with an optional :port (repeatable)")
	cmd.Flags().StringSliceVar(&models, "model", nil, "model it may be used with, for AI connectors (repeatable)")
	cmd.Flags().StringVar(&rotation, "rotation-period", "", "how long a version may live, e.g. 2160h")
	cmd.Flags().BoolVar(&block, "block-when-expired", false, "refuse to use the secret once overdue for rotation")
	return cmd
}

// isTerminal reports whether in is an interactive terminal.
func isTerminal(in io.Reader) bool {
	f, ok := in.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// readSecretValue reads a value from a file, or from in with one trailing
// newline dropped (what echo and a typed line add).
func readSecretValue(in io.Reader, fromFile string) ([]byte, error) {
	if fromFile != "" {
		f, err := os.Open(fromFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	value, err := io.ReadAll(io.LimitReader(in, maxSecretInput+1))
	if err != nil {
		return nil, fmt.Errorf("reading the value: %w", err)
	}
	if len(value) > maxSecretInput {
		clear(value)
		return nil, fmt.Errorf("the value is longer than %d bytes", maxSecretInput)
	}
	if fromFile == "" {
		value = bytes.TrimSuffix(value, []byte("\n"))
		value = bytes.TrimSuffix(value, []byte("\r"))
	}
	if len(value) == 0 {
		return nil, errors.New("no value: pipe it on stdin or give --from-file")
	}
	return value, nil
}

func newSecretListCmd() *cobra.Command {
	var r remote
	var env, output string
	var rotation []string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List secrets: names, versions, bindings, rotation state and last use, never values",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if env != "" {
				q.Set("environment", env)
			}
			if len(rotation) > 0 {
				q.Set("rotation", strings.Join(rotation, ","))
			}
			var res struct {
				Secrets []secretView `json:"secrets"`
			}
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/secrets", q, nil, &res); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd, res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tENV\tVERSION\tROTATION\tLAST USED\tCONNECTORS\tHOSTS\tMODELS")
			for _, s := range res.Secrets {
				used := "never"
				if s.LastUsedAt != nil {
					used = s.LastUsedAt.Local().Format(time.DateTime)
				}
				state := s.Rotation
				if s.RotateBy != nil {
					state += " (by " + s.RotateBy.Local().Format(time.DateOnly) + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Environment, s.Version, state, used,
					strings.Join(s.Connectors, ","), strings.Join(s.Hosts, ","), strings.Join(s.Models, ","))
			}
			return tw.Flush()
		},
	}
	r.bind(cmd)
	cmd.Flags().StringVar(&env, "env", "", "only this environment's secrets")
	cmd.Flags().StringSliceVar(&rotation, "rotation", nil, "only secrets in these rotation states: ok, due, overdue")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func newSecretDeleteCmd() *cobra.Command {
	var r remote
	var env string
	cmd := &cobra.Command{
		Use:   "delete NAME --env ENV",
		Short: "Delete a secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if env == "" {
				return errors.New("--env is required")
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			if _, err := c.Do(cmd.Context(), http.MethodDelete, secretPath(env, args[0]), nil, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s/%s deleted\n", env, args[0])
			return nil
		},
	}
	r.bind(cmd)
	cmd.Flags().StringVar(&env, "env", "", "environment")
	return cmd
}
