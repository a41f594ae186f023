package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

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
						if d.Kind != "Workflow" {
							continue
						}
						plan, err := workflow.Load(file, d.Source, registry)
						if err != nil {
							var problems workflow.Problems
							if errors.As(err, &problems) {
								err = offsetProblems(problems, d.Line-1)
							}
							fmt.Fprintln(cmd.ErrOrStderr(), err)
							failed = true
							continue
						}
						fmt.Fprintf(cmd.OutOrStdout(), "%s: workflow %s/%s is valid (%d steps, hash %s)\n", file, plan.Definition.Project, plan.Definition.Name, len(plan.Steps), plan.Hash[:12])
					}
				}
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
}
