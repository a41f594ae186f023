package retention

import (
	"strings"

	"github.com/moatproject/moat/internal/detect"
)

// A subject is a personal identifier a run's payloads hold: an e-mail
// address, a phone number, a card number, a name … It is indexed by the
// HMAC of its normalised form (detect.Normalize), the form the audit log's
// AI call records hold too, so that "Jane.Doe@Example.com" and
// "jane.doe@example.com", or "4111 1111 1111 1111" and "4111111111111111",
// find the same runs.

// normalise returns the indexed form of a value of class.
func normalise(class, value string) string { return detect.Normalize(class, value) }

// candidates are the forms a value given to erase may have been indexed
// under, whatever its class was.
func candidates(value string) []string { return detect.NormalizedForms(value) }

// isSubjectClass says which findings identify a person.
func isSubjectClass(class string) bool {
	return strings.HasPrefix(class, "pii.")
}

// found is a subject found in a text: its class and normalised form.
type found struct{ class, value string }

// findSubjects runs the detectors over text.
func findSubjects(text string) []found {
	findings := detect.Scan(text)
	if len(findings) == 0 {
		return nil
	}
	runes := []rune(text)
	var out []found
	for _, f := range findings {
		if !isSubjectClass(f.Type) || f.Start < 0 || f.End > len(runes) || f.Start >= f.End {
			continue
		}
		if v := normalise(f.Type, string(runes[f.Start:f.End])); v != "" {
			out = append(out, found{f.Type, v})
		}
	}
	return out
}
