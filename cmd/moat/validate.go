package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/manifest"
	"github.com/moatproject/moat/internal/nodes"
	"github.com/moatproject/moat/internal/workflow"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check workflow definitions and print every problem as file:line:col: message",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			registry := nodes.Builtins()
			failed := false
			type fileDocs struct {
				file string
				docs []manifest.Document
			}
			var all []fileDocs
			// Offline, the connectors a step may name are those the files
			// declare, in any of them.
			declared := map[string]bool{}
			for _, arg := range args {
				files, err := resourceFiles(arg)
				if err != nil {
					return err
				}
				for _, file := range files {
					docs, err := readDocuments(file)
					if err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), err)
						failed = true
						continue
					}
					for _, d := range docs {
						if d.Kind == gateway.KindConnector && d.Name != "" {
							declared[d.Name] = true
						}
					}
					all = append(all, fileDocs{file, docs})
				}
			}
			registry.SetConnectors(func(name string) bool { return declared[name] })
			for _, fd := range all {
				for _, d := range fd.docs {
					if d.Kind != "Workflow" {
						continue
					}
					plan, err := workflow.Load(fd.file, d.Source, registry)
					if err != nil {
						var problems workflow.Problems
						if errors.As(err, &problems) {
							err = offsetProblems(problems, d.Line-1)
						}
						fmt.Fprintln(cmd.ErrOrStderr(), err)
						failed = true
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: workflow %s/%s is valid (%d steps, hash %s)\n", fd.file, plan.Definition.Project, plan.Definition.Name, len(plan.Steps), plan.Hash[:12])
				}
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
}
