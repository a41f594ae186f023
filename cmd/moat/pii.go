package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moatproject/moat/internal/detect"
	"github.com/moatproject/moat/internal/gateway"
)

const (
	maxScanInput = 64 << 20 // a whole file in plain mode
	maxJSONLLine = 4 << 20  // one record in --jsonl mode
)

func newPIICmd() *cobra.Command {
	cmd := &cobra.Command{Use: "pii", Short: "Find and redact personal data and secrets in text, locally"}

	var jsonl bool
	scan := &cobra.Command{
		Use:   "scan [FILE|-]",
		Short: "List the PII and secrets in a file or standard input",
		Long: "Plain mode prints one finding a line (code-point offsets, type, score, the text).\n" +
			"--jsonl reads lines {\"id\":…,\"text\":…} and writes {\"id\":…,\"findings\":[{\"type\",\"start\",\"end\",\"score\"}]}.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, closeIn, err := openInput(args)
			if err != nil {
				return err
			}
			defer closeIn()
			if jsonl {
				return eachRecord(in, cmd.OutOrStdout(), func(text string) any {
					type finding struct {
						Type  string  `json:"type"`
						Start int     `json:"start"`
						End   int     `json:"end"`
						Score float64 `json:"score"`
					}
					out := []finding{}
					for _, f := range detect.Scan(text) {
						out = append(out, finding{f.Type, f.Start, f.End, f.Score})
					}
					return map[string]any{"findings": out}
				})
			}
			text, err := readAllLimited(in, maxScanInput)
			if err != nil {
				return err
			}
			runes := []rune(text)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "START\tEND\tTYPE\tSCORE\tTEXT")
			for _, f := range detect.Scan(text) {
				fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f\t%q\n", f.Start, f.End, f.Type, f.Score, string(runes[f.Start:f.End]))
			}
			return tw.Flush()
		},
	}
	scan.Flags().BoolVar(&jsonl, "jsonl", false, "read and write JSON lines")

	var mode string
	redact := &cobra.Command{
		Use:   "redact [FILE|-]",
		Short: "Copy a file or standard input with its PII and secrets replaced",
		Long: "--mode redact writes the class ([EMAIL]); mask stars all but the last four characters;\n" +
			"hash writes a keyed digest, equal for equal values within this command; tokenize writes\n" +
			"<EMAIL_1>-style tokens, equal for equal values (the mapping is not kept).",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			action, err := gateway.ParseAction(mode)
			if err != nil || action == gateway.Allow || action == gateway.Block {
				return fmt.Errorf("--mode %q: want redact, mask, hash or tokenize", mode)
			}
			in, closeIn, err := openInput(args)
			if err != nil {
				return err
			}
			defer closeIn()
			text, err := readAllLimited(in, maxScanInput)
			if err != nil {
				return err
			}
			key := make([]byte, 32)
			_, _ = rand.Read(key)
			tr := &gateway.Transformer{Tokens: gateway.NewTokenizer(), HashKey: key}
			out, _, err := tr.Apply(text, detect.Scan(text), func(detect.Finding) gateway.Action { return action })
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), out)
			return err
		},
	}
	redact.Flags().StringVar(&mode, "mode", "redact", "redact, mask, hash or tokenize")

	cmd.AddCommand(scan, redact)
	return cmd
}

func newGuardCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "guard", Short: "Check untrusted text for prompt-injection attempts, locally"}
	var jsonl, data bool
	scan := &cobra.Command{
		Use:   "scan [FILE|-]",
		Short: "Score a file or standard input as a prompt-injection attempt",
		Long: "Plain mode prints the verdict, the score and the reasons; exit status 3 when it is an injection.\n" +
			"--jsonl reads lines {\"id\":…,\"text\":…} and writes {\"id\":…,\"injection\":bool,\"score\":float,\"reasons\":[…]}.\n" +
			"--data scans the text as untrusted data a model will read (an e-mail, a ticket, a web page), as the gateway\n" +
			"does for data items: there a plain task for the assistant (\"write a poem\", \"what is the tallest mountain?\") is\n" +
			"itself an injection. Without it the text is scored as a user's own prompt.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, closeIn, err := openInput(args)
			if err != nil {
				return err
			}
			defer closeIn()
			score := detect.Injection
			if data {
				score = detect.InjectionInData
			}
			if jsonl {
				return eachRecord(in, cmd.OutOrStdout(), func(text string) any {
					r := score(text)
					reasons := r.Reasons
					if reasons == nil {
						reasons = []string{}
					}
					return map[string]any{"injection": r.Injection, "score": r.Score, "reasons": reasons}
				})
			}
			text, err := readAllLimited(in, maxScanInput)
			if err != nil {
				return err
			}
			r := score(text)
			verdict := "no injection found"
			if r.Injection {
				verdict = "INJECTION"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (score %.2f)\n", verdict, r.Score)
			for _, reason := range r.Reasons {
				fmt.Fprintln(cmd.OutOrStdout(), "  -", reason)
			}
			if r.Injection {
				return exitError{3}
			}
			return nil
		},
	}
	scan.Flags().BoolVar(&jsonl, "jsonl", false, "read and write JSON lines")
	scan.Flags().BoolVar(&data, "data", false, "score the text as untrusted data a model reads, not as a prompt")
	cmd.AddCommand(scan)
	return cmd
}

// openInput opens FILE, or standard input for none or "-".
func openInput(args []string) (io.Reader, func(), error) {
	if len(args) == 0 || args[0] == "-" {
		return os.Stdin, func() {}, nil
	}
	f, err := os.Open(args[0])
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func readAllLimited(r io.Reader, limit int64) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return "", err
	}
	if int64(len(b)) > limit {
		return "", fmt.Errorf("input larger than %d MiB", limit>>20)
	}
	return string(b), nil
}

// eachRecord reads JSON lines {"id":…,"text":…} and writes, per line, the
// fields fn returns plus the id. A malformed line is an error naming its
// number; lines before it have been answered.
func eachRecord(in io.Reader, out io.Writer, fn func(text string) any) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxJSONLLine)
	w := bufio.NewWriter(out)
	defer w.Flush()
	for line := 1; sc.Scan(); line++ {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var rec struct {
			ID   json.RawMessage `json:"id"`
			Text *string         `json:"text"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return fmt.Errorf("line %d: want {\"id\":…,\"text\":\"…\"}: %v", line, err)
		}
		if rec.Text == nil {
			return fmt.Errorf("line %d: no \"text\" field", line)
		}
		id := rec.ID
		if id == nil {
			id = json.RawMessage("null")
		}
		// The id goes first, as the caller wrote it.
		fields, err := json.Marshal(fn(*rec.Text))
		if err != nil {
			return err
		}
		w.WriteString(`{"id":`)
		w.Write(id)
		if len(fields) > 2 {
			w.WriteByte(',')
		}
		w.Write(fields[1:])
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("a line is longer than %d MiB", maxJSONLLine>>20)
		}
		return err
	}
	return nil
}
