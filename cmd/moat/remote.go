package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/client"
)

// remote holds the flags of commands that talk to a server.
type remote struct {
	server    string
	tokenFile string
}

func (r *remote) bind(cmd *cobra.Command) {
	server := os.Getenv("MOAT_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	cmd.Flags().StringVar(&r.server, "server", server, "server URL (MOAT_SERVER)")
	cmd.Flags().StringVar(&r.tokenFile, "token-file", filepath.Join("moat-data", "bootstrap.token"), "file holding the API token, read when MOAT_TOKEN is unset")
}

func (r *remote) client() (*client.Client, error) {
	token := os.Getenv("MOAT_TOKEN")
	if token == "" {
		b, err := os.ReadFile(r.tokenFile)
		if err != nil {
			return nil, errors.New("no API token: set MOAT_TOKEN (or --token-file; moat serve writes <data-dir>/bootstrap.token on first start)")
		}
		token = strings.TrimSpace(string(b))
	}
	return client.New(r.server, token), nil
}
