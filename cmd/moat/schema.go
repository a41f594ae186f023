package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/workflow"
)

func newSchemaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Print JSON Schemas for editors",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "workflow",
		Short: "Print the JSON Schema of the workflow format (moat/v1), with every node type's settings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(workflow.FormatSchema(nodes.Builtins()))
		},
	})
	return cmd
}
