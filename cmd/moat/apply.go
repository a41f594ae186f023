package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/moatproject/moat/internal/client"
	"github.com/moatproject/moat/internal/manifest"
	"github.com/moatproject/moat/internal/workflow"
)

const maxResourceFile = 4 << 20

func newApplyCmd() *cobra.Command {
	var files []string
	var r remote
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update the resources of a multi-document YAML file on a server",
		Long: "Sends every document (Project, Workflow) of the files to the server given by --server or MOAT_SERVER,\n" +
			"authenticated with MOAT_TOKEN. A workflow whose definition is unchanged makes no new version.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("apply needs -f FILE")
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			failed := false
			for _, f := range files {
				paths, err := resourceFiles(f)
				if err != nil {
					return err
				}
				for _, path := range paths {
					if err := applyRemote(cmd.Context(), c, path, cmd.OutOrStdout()); err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), err)
						failed = true
					}
				}
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "resource file or directory (repeatable)")
	r.bind(cmd)
	return cmd
}

func applyRemote(ctx context.Context, c *client.Client, path string, out interface{ Write([]byte) (int, error) }) error {
	docs, err := readDocuments(path)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range docs {
		switch d.Kind {
		case "Project":
			var p struct {
				Name        string `yaml:"name"`
				Description string `yaml:"description"`
			}
			if err := yaml.Unmarshal(d.Source, &p); err != nil || p.Name == "" {
				errs = append(errs, fmt.Errorf("%s:%d: a Project needs a name", path, d.Line))
				continue
			}
			if _, err := c.Do(ctx, http.MethodPut, "/api/v1/projects/"+p.Name, nil, map[string]any{"description": p.Description}, nil); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: project %s: %w", path, d.Line, p.Name, err))
				continue
			}
			fmt.Fprintf(out, "project %s applied\n", p.Name)
		case "Workflow":
			var res struct {
				Workflow struct{ Project, Name string }
				Version  struct{ Number int }
				Created  bool
			}
			_, err := c.Do(ctx, http.MethodPost, "/api/v1/workflows", nil, map[string]any{"source": string(d.Source), "filename": path}, &res)
			if err != nil {
				errs = append(errs, offsetProblems(err, d.Line-1))
				continue
			}
			verb := "unchanged"
			if res.Created {
				verb = "created"
			}
			fmt.Fprintf(out, "workflow %s/%s version %d %s\n", res.Workflow.Project, res.Workflow.Name, res.Version.Number, verb)
		default:
			errs = append(errs, fmt.Errorf("%s:%d: unknown kind %q (want Project or Workflow)", path, d.Line, d.Kind))
		}
	}
	return errors.Join(errs...)
}

func readDocuments(path string) ([]manifest.Document, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Size() > maxResourceFile {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, maxResourceFile>>20)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return manifest.Split(path, src)
}

// resourceFiles expands a directory into its YAML and JSON files, sorted.
func resourceFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	slices.Sort(files)
	return files, nil
}

var locationLine = regexp.MustCompile(`^(.*):(\d+):(\d+)$`)

// offsetProblems shifts the line numbers of a document's problems by the
// line the document starts on within its file.
func offsetProblems(err error, offset int) error {
	if offset == 0 {
		return err
	}
	var problems workflow.Problems
	if errors.As(err, &problems) {
		shifted := slices.Clone(problems)
		for i := range shifted {
			if shifted[i].Line > 0 {
				shifted[i].Line += offset
			}
		}
		return shifted
	}
	var p *client.Problem
	if errors.As(err, &p) {
		for i, e := range p.Errors {
			if m := locationLine.FindStringSubmatch(e.Location); m != nil {
				line, _ := strconv.Atoi(m[2])
				p.Errors[i].Location = fmt.Sprintf("%s:%d:%s", m[1], line+offset, m[3])
			}
		}
	}
	return err
}
