package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/governance"
)

func newFlowCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "flow", Short: "Show where each class of data flows: per workflow, and per vendor"}

	var rd remote
	var project, format string
	var version int
	diagram := &cobra.Command{
		Use:   "diagram WORKFLOW",
		Short: "Draw a workflow version's data-flow map: inputs and their classes, steps, and the connectors, vendors and hosts they reach",
		Long: "Draw the data-flow map of a workflow version as the server's gateway sees it: each input field with its data class, " +
			"each step and what it reads, every connector an AI step's model alias may fall back to with its vendor and processing location, " +
			"and what the policy does to each class on the way (allow, redact, mask, hash, tokenize or block). " +
			"mermaid and dot are diagrams to render; json is the map itself.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := governance.ParseFormat(format)
			if err != nil {
				return fmt.Errorf("flow: --format must be mermaid, dot or json, not %q", format)
			}
			c, err := rd.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if version > 0 {
				q.Set("version", strconv.Itoa(version))
			}
			var raw json.RawMessage
			path := "/api/v1/projects/" + url.PathEscape(project) + "/workflows/" + url.PathEscape(args[0]) + "/flow"
			if _, err := c.Do(cmd.Context(), http.MethodGet, path, q, nil, &raw); err != nil {
				return err
			}
			if f == governance.FormatJSON {
				return printJSON(cmd, raw)
			}
			// The server's map, drawn here with the server's renderer: the
			// client reads JSON only.
			var m governance.Map
			if err := json.Unmarshal(raw, &m); err != nil {
				return fmt.Errorf("flow: the server's map does not decode: %w", err)
			}
			out, err := governance.Render(&m, f)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	diagram.Flags().StringVar(&project, "project", "default", "the workflow's project")
	diagram.Flags().IntVar(&version, "version", 0, "version number to map; the latest when absent")
	diagram.Flags().StringVar(&format, "format", string(governance.FormatMermaid), "mermaid, dot or json")
	rd.bind(diagram)

	var rv remote
	var vendorsProject, vendorsFormat string
	vendors := &cobra.Command{
		Use:   "vendors",
		Short: "List, per vendor, which data classes can reach it and from which workflow steps",
		Long: "List, per vendor, the data classes the latest version of each workflow can send it once the gateway's policy has decided, " +
			"and from which steps; also the hosts http.request steps reach (outside the gateway) and AI steps without a route.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if vendorsFormat != "text" && vendorsFormat != "json" {
				return fmt.Errorf("flow: --format must be text or json, not %q", vendorsFormat)
			}
			c, err := rv.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if vendorsProject != "" {
				q.Set("project", vendorsProject)
			}
			var raw json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/flow/vendors", q, nil, &raw); err != nil {
				return err
			}
			if vendorsFormat == "json" {
				return printJSON(cmd, raw)
			}
			var r governance.VendorReport
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("flow: the server's report does not decode: %w", err)
			}
			return governance.WriteVendorsText(cmd.OutOrStdout(), &r)
		},
	}
	vendors.Flags().StringVar(&vendorsProject, "project", "", "only this project's workflows; every project when absent")
	vendors.Flags().StringVar(&vendorsFormat, "format", "text", "text or json")
	rv.bind(vendors)

	cmd.AddCommand(diagram, vendors)
	return cmd
}
