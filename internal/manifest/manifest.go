// Package manifest splits a multi-document YAML file of resources
// (Project, Workflow, …) into documents, keeping each one's first line so
// problems can be reported against the file the person wrote.
package manifest

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Document is one resource in a file.
type Document struct {
	Kind string
	Name string
	// Line is the 1-based line of the file on which the document starts.
	Line   int
	Source []byte
}

// MaxDocuments bounds one file.
const MaxDocuments = 1000

// Split cuts src at `---` separator lines and reads each document's kind.
// Empty documents are dropped.
func Split(filename string, src []byte) ([]Document, error) {
	var docs []Document
	var cur bytes.Buffer
	start, line := 1, 0
	flush := func() error {
		text := cur.Bytes()
		cur.Reset()
		if len(bytes.TrimSpace(stripComments(text))) == 0 {
			return nil
		}
		if len(docs) >= MaxDocuments {
			return fmt.Errorf("%s: more than %d documents", filename, MaxDocuments)
		}
		var head struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		}
		if err := yaml.Unmarshal(text, &head); err != nil {
			return fmt.Errorf("%s:%d: document is not valid YAML: %v", filename, start, err)
		}
		if head.Kind == "" {
			return fmt.Errorf("%s:%d: document has no kind (want Project, Vendor, Connector, Model or Workflow)", filename, start)
		}
		docs = append(docs, Document{Kind: head.Kind, Name: head.Name, Line: start, Source: append([]byte(nil), text...)})
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 64<<10), len(src)+1)
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "---" || strings.HasPrefix(text, "--- ") || strings.HasPrefix(text, "---\t") {
			if err := flush(); err != nil {
				return nil, err
			}
			start = line + 1
			continue
		}
		if text == "..." {
			continue
		}
		cur.WriteString(text)
		cur.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
		}
	}
	return out
}
