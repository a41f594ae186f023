package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newRunsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "runs", Short: "Start, list, inspect, cancel, purge and erase runs on a server"}

	var r remote
	var project, workflowName, status, cursor, output string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"project": project, "workflow": workflowName, "status": status, "cursor": cursor} {
				if v != "" {
					q.Set(k, v)
				}
			}
			q.Set("limit", strconv.Itoa(limit))
			var res struct {
				Runs []struct {
					ID         string     `json:"id"`
					WorkflowID string     `json:"workflowId"`
					Status     string     `json:"status"`
					Trigger    string     `json:"trigger"`
					CreatedAt  time.Time  `json:"createdAt"`
					FinishedAt *time.Time `json:"finishedAt"`
					Error      string     `json:"error"`
				} `json:"runs"`
				NextCursor string `json:"nextCursor"`
			}
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/runs", q, nil, &res); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd, res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tSTATUS\tTRIGGER\tCREATED\tERROR")
			for _, run := range res.Runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", run.ID, run.Status, run.Trigger, run.CreatedAt.Local().Format(time.DateTime), run.Error)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if res.NextCursor != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "more: --cursor %s\n", res.NextCursor)
			}
			return nil
		},
	}
	list.Flags().StringVar(&project, "project", "", "only runs of this project")
	list.Flags().StringVar(&workflowName, "workflow", "", "only runs of this workflow (needs --project)")
	list.Flags().StringVar(&status, "status", "", "only runs in this status")
	list.Flags().StringVar(&cursor, "cursor", "", "page cursor from a previous list")
	list.Flags().IntVar(&limit, "limit", 50, "page size (at most 500)")
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	r.bind(list)

	var rg remote
	var wait, getOutput string
	get := &cobra.Command{
		Use:   "get RUN",
		Short: "Show a run with its step timeline (-o json for everything, attempts included)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rg.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if wait != "" {
				q.Set("wait", wait)
			}
			var run runView
			var raw json.RawMessage
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/runs/"+url.PathEscape(args[0]), q, nil, &raw); err != nil {
				return err
			}
			if getOutput == "json" {
				return printJSON(cmd, raw)
			}
			if err := json.Unmarshal(raw, &run); err != nil {
				return err
			}
			printTimeline(cmd, run)
			return nil
		},
	}
	get.Flags().StringVar(&wait, "wait", "", "wait up to this long (at most 1m) for the run to finish")
	get.Flags().StringVarP(&getOutput, "output", "o", "timeline", "timeline or json")
	rg.bind(get)

	var rc remote
	cancel := &cobra.Command{
		Use:   "cancel RUN",
		Short: "Cancel a run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rc.client()
			if err != nil {
				return err
			}
			var run struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			}
			if _, err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/runs/"+url.PathEscape(args[0])+"/cancel", nil, nil, &run); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "run %s %s\n", run.ID, run.Status)
			return nil
		},
	}
	rc.bind(cancel)

	var rs remote
	var startProject, startInput, startWait string
	var startVersion int
	start := &cobra.Command{
		Use:   "start WORKFLOW",
		Short: "Start a run of a workflow on the server and show it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rs.client()
			if err != nil {
				return err
			}
			body := map[string]any{}
			if startInput != "" {
				in, err := readInput(startInput)
				if err != nil {
					return err
				}
				body["input"] = in
			}
			if startVersion > 0 {
				body["version"] = startVersion
			}
			q := url.Values{}
			if startWait != "" {
				q.Set("wait", startWait)
			}
			var run runView
			path := "/api/v1/projects/" + url.PathEscape(startProject) + "/workflows/" + url.PathEscape(args[0]) + "/runs"
			if _, err := c.Do(cmd.Context(), http.MethodPost, path, q, body, &run); err != nil {
				return err
			}
			printTimeline(cmd, run)
			if run.Status == "failed" || run.Status == "cancelled" {
				return exitError{1}
			}
			return nil
		},
	}
	start.Flags().StringVar(&startProject, "project", "default", "the workflow's project")
	start.Flags().StringVar(&startInput, "input", "", "run input: a JSON value, or @file to read it from a file")
	start.Flags().IntVar(&startVersion, "version", 0, "version number to run; the latest when absent")
	start.Flags().StringVar(&startWait, "wait", "", "wait up to this long (at most 1m) for the run to finish")
	rs.bind(start)

	cmd.AddCommand(list, get, start, cancel, newEraseCmd(), newPurgeCmd())
	return cmd
}

func newTasksCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tasks", Short: "List and decide human tasks on a server"}

	var r remote
	var project, run, status, output string
	list := &cobra.Command{
		Use:   "list",
		Short: "List tasks (pending by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			q := url.Values{"status": {status}}
			if project != "" {
				q.Set("project", project)
			}
			if run != "" {
				q.Set("run", run)
			}
			var res struct {
				Tasks []struct {
					ID        string     `json:"id"`
					RunID     string     `json:"runId"`
					StepID    string     `json:"stepId"`
					Status    string     `json:"status"`
					Role      string     `json:"role"`
					Title     string     `json:"title"`
					ExpiresAt *time.Time `json:"expiresAt"`
				} `json:"tasks"`
			}
			if _, err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/tasks", q, nil, &res); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd, res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TASK\tSTATUS\tRUN\tSTEP\tROLE\tTITLE")
			for _, t := range res.Tasks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Status, t.RunID, t.StepID, t.Role, t.Title)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&project, "project", "", "only tasks of this project")
	list.Flags().StringVar(&run, "run", "", "only tasks of this run")
	list.Flags().StringVar(&status, "status", "pending", "pending, approved, rejected, expired, cancelled or all")
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	r.bind(list)

	cmd.AddCommand(list, decideCmd("approve"), decideCmd("reject"))
	return cmd
}

func decideCmd(verb string) *cobra.Command {
	var r remote
	var comment string
	cmd := &cobra.Command{
		Use:   verb + " TASK",
		Short: "Decide a pending task: " + verb,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			var t struct {
				ID     string `json:"id"`
				RunID  string `json:"runId"`
				Status string `json:"status"`
			}
			if _, err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/tasks/"+url.PathEscape(args[0])+"/"+verb, nil, map[string]any{"comment": comment}, &t); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "task %s %s (run %s)\n", t.ID, t.Status, t.RunID)
			return nil
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why")
	r.bind(cmd)
	return cmd
}

// runView is the part of a run the timeline shows.
type runView struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"`
	Trigger    string          `json:"trigger"`
	Error      string          `json:"error"`
	CreatedAt  time.Time       `json:"createdAt"`
	FinishedAt *time.Time      `json:"finishedAt"`
	Output     json.RawMessage `json:"output"`
	Steps      []struct {
		ID         string     `json:"id"`
		Uses       string     `json:"uses"`
		Status     string     `json:"status"`
		Attempts   int        `json:"attempts"`
		Error      string     `json:"error"`
		StartedAt  *time.Time `json:"startedAt"`
		FinishedAt *time.Time `json:"finishedAt"`
	} `json:"steps"`
}

func printTimeline(cmd *cobra.Command, run runView) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "run %s %s (trigger %s, started %s)\n", run.ID, run.Status, run.Trigger, run.CreatedAt.Local().Format(time.DateTime))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tUSES\tSTATUS\tATTEMPTS\tTOOK\tERROR")
	for _, s := range run.Steps {
		took := ""
		if s.StartedAt != nil && s.FinishedAt != nil && s.Status != "skipped" {
			took = s.FinishedAt.Sub(*s.StartedAt).Round(time.Millisecond).String()
		}
		attempts := ""
		if s.Attempts > 0 {
			attempts = strconv.Itoa(s.Attempts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Uses, s.Status, attempts, took, s.Error)
	}
	tw.Flush()
	if run.Error != "" {
		fmt.Fprintln(out, "error:", run.Error)
	}
	if len(run.Output) > 0 {
		fmt.Fprintln(out, "output:", string(run.Output))
	}
}
