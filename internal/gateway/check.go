package gateway

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/moatproject/moat/internal/detect"
)

// Kinds of CheckProblem.
const (
	ProblemSchema       = "schema"        // not JSON, or JSON that fails the schema
	ProblemLabel        = "label"         // not one of the labels
	ProblemSize         = "size"          // over MaxAnswerBytes
	ProblemCanary       = "canary"        // the call's canary leaked
	ProblemNewPII       = "new_pii"       // PII that was not in the prompt as sent
	ProblemUnknownToken = "unknown_token" // a token the run never issued
	ProblemSecret       = "secret"        // a secret of any kind
)

// maxProblemsPerKind bounds the problems listed for one kind; the rest are
// counted in one last problem of that kind.
const maxProblemsPerKind = 20

// Checker checks an answer before it goes back (DESIGN.md, "The gateway",
// step 9). Configure one per call. It is not safe for concurrent use.
type Checker struct {
	// Schema, if set, is what the answer must be: one JSON value, found as
	// the whole answer, in a ```json fenced block, or as the first object
	// or array in surrounding prose that parses.
	Schema *jsonschema.Schema
	// Labels, if set, are the answers allowed: the trimmed answer must equal
	// one of them, ignoring case.
	Labels []string
	// MaxAnswerBytes, if positive, is the largest answer accepted.
	MaxAnswerBytes int
	// Canary is the call's canary; the zero Canary checks nothing.
	Canary Canary
	// Tokens is the run's tokenizer: token-shaped strings it never issued
	// are problems. Nil means the run issued none.
	Tokens *Tokenizer
	// Prompt is the prompt as sent, after transformation, in the pieces it
	// was sent as (each message, each example): PII the gateway tokenised
	// or redacted is not in it. It is joined and scanned only for an answer
	// that holds personal data, which most do not.
	Prompt []string

	once       sync.Once
	promptKeys map[string]bool // normalised texts of the prompt's PII
	promptNorm string          // the whole prompt, normalised alike
}

// CheckResult is what Check found.
type CheckResult struct {
	OK       bool
	Problems []CheckProblem
	// Value is the JSON value found in the answer when a Schema is set
	// (numbers as json.Number), or the matching label, as configured, when
	// Labels are set; nil otherwise. It is valid only if OK.
	Value any
	// Findings are detect.Scan's findings of the answer, for the call's
	// record; their text is PII and must go nowhere else.
	Findings []detect.Finding
}

// CheckProblem is one thing wrong with an answer. Message never holds the
// answer's PII, secrets or the canary.
type CheckProblem struct {
	Kind    string
	Message string
	// Finding is the detector's finding (offsets in the answer, code
	// points) for new_pii and secret problems.
	Finding *detect.Finding
}

// Check checks answer. Problems make the result not OK; an error means the
// check itself failed, and the caller must fail closed.
func (c *Checker) Check(answer string) (res CheckResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = CheckResult{}, fmt.Errorf("gateway: check answer: panic (%T)", r)
		}
	}()
	var probs problemList
	if c.MaxAnswerBytes > 0 && len(answer) > c.MaxAnswerBytes {
		probs.add(ProblemSize, fmt.Sprintf("answer is %d bytes, over the limit of %d", len(answer), c.MaxAnswerBytes), nil)
	}
	if c.Canary.Leaked(answer) {
		probs.add(ProblemCanary, "answer reveals the call's confidential canary marker: the system prompt leaked", nil)
	}
	if c.Schema != nil {
		v, msgs, err := c.checkSchema(answer)
		if err != nil {
			return CheckResult{}, err
		}
		res.Value = v
		for _, m := range msgs {
			probs.add(ProblemSchema, m, nil)
		}
	}
	if len(c.Labels) > 0 {
		if l, ok := matchLabel(answer, c.Labels); ok {
			if c.Schema == nil {
				res.Value = l
			}
		} else {
			probs.add(ProblemLabel, "answer is not one of the labels: "+strings.Join(c.Labels, ", "), nil)
		}
	}
	res.Findings = c.checkFindings(answer, &probs)
	c.checkTokens(answer, &probs)
	res.Problems = probs.list()
	res.OK = len(res.Problems) == 0
	return res, nil
}

// checkSchema finds the answer's JSON value and validates it. When several
// candidates are found, the first that validates wins; if none does, the
// longest is explained (a short "[1]" in prose is rarely the answer).
func (c *Checker) checkSchema(answer string) (any, []string, error) {
	cands := jsonCandidates(answer)
	if len(cands) == 0 {
		return nil, []string{"answer holds no JSON value; want one JSON value matching the schema"}, nil
	}
	var worst []string
	var worstV any
	worstLen := -1
	for _, v := range cands {
		msgs, err := schemaMessages(c.Schema, v)
		if err != nil {
			return nil, nil, err
		}
		if len(msgs) == 0 {
			return v, nil, nil
		}
		if n := jsonSize(v); n > worstLen {
			worst, worstV, worstLen = msgs, v, n
		}
	}
	return worstV, worst, nil
}

// jsonSize is a rough size of a decoded JSON value: how many values it holds.
func jsonSize(v any) int {
	switch x := v.(type) {
	case map[string]any:
		n := 1
		for _, e := range x {
			n += jsonSize(e)
		}
		return n
	case []any:
		n := 1
		for _, e := range x {
			n += jsonSize(e)
		}
		return n
	}
	return 1
}

// matchLabel returns the label answer names: trimmed of spaces, of one pair
// of quotes or backticks and of a final full stop, ignoring case.
func matchLabel(answer string, labels []string) (string, bool) {
	a := strings.TrimSpace(answer)
	a = strings.TrimSpace(strings.TrimSuffix(a, "."))
	for _, q := range []string{`"`, "'", "`"} {
		if len(a) >= 2 && strings.HasPrefix(a, q) && strings.HasSuffix(a, q) {
			a = strings.TrimSpace(a[1 : len(a)-1])
			break
		}
	}
	for _, l := range labels {
		if strings.EqualFold(a, strings.TrimSpace(l)) {
			return l, true
		}
	}
	return "", false
}

// checkFindings reports secrets, and PII whose text was not in the prompt;
// it returns the answer's findings.
func (c *Checker) checkFindings(answer string, probs *problemList) []detect.Finding {
	findings := detect.Scan(answer)
	if len(findings) == 0 {
		return nil
	}
	c.once.Do(c.indexPrompt)
	texts := findingTexts(answer, findings)
	for i := range findings {
		f := findings[i]
		switch {
		case strings.HasPrefix(f.Type, "secret."):
			probs.add(ProblemSecret, fmt.Sprintf("answer holds a %s at code points %d–%d", f.Type, f.Start, f.End), &f)
		case strings.HasPrefix(f.Type, "pii."):
			if c.inPrompt(texts[i]) {
				continue
			}
			probs.add(ProblemNewPII, fmt.Sprintf("answer holds a %s at code points %d–%d that was not in the prompt", f.Type, f.Start, f.End), &f)
		}
	}
	return findings
}

func (c *Checker) indexPrompt() {
	prompt := strings.Join(c.Prompt, "\n")
	c.promptKeys = map[string]bool{}
	for _, t := range findingTexts(prompt, detect.Scan(prompt)) {
		if k := piiKey(t); k != "" {
			c.promptKeys[k] = true
		}
	}
	c.promptNorm = piiKey(prompt)
}

// minSubstringKey is the shortest normalised value that counts as in the
// prompt merely by occurring somewhere in it (for values the detectors
// missed in the prompt); shorter ones must match a prompt finding.
const minSubstringKey = 8

func (c *Checker) inPrompt(text string) bool {
	k := piiKey(text)
	if k == "" {
		return true
	}
	if c.promptKeys[k] {
		return true
	}
	return len(k) >= minSubstringKey && strings.Contains(c.promptNorm, k)
}

// piiKey normalises a value for comparison: letters, digits and '@' only,
// lower case, so "+44 20 7946 0958" and "+442079460958" compare equal.
func piiKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
		case r == '@':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// findingTexts returns each finding's text; findings come with code-point
// offsets, as detect.Scan returns them. A finding that does not fit the
// text gets "".
//
// The text is walked once, up to the last offset any finding needs, rather
// than tabling the byte offset of every code point: the table cost more
// than the scan that found the findings.
func findingTexts(text string, fs []detect.Finding) []string {
	out := make([]string, len(fs))
	if len(fs) == 0 {
		return out
	}
	// The code-point offsets wanted, sorted and distinct, and the byte
	// offset of each (-1 past the end of the text).
	var pointsBuf, bytesBuf [32]int
	points := pointsBuf[:0]
	for _, f := range fs {
		if f.Start >= 0 && f.End >= f.Start {
			points = append(points, f.Start, f.End)
		}
	}
	slices.Sort(points)
	points = slices.Compact(points)
	byteAt := bytesBuf[:0]
	runes, i := 0, 0
	for _, p := range points {
		// Each invalid byte counts as one code point, as ranging over the
		// string counts it.
		for runes < p && i < len(text) {
			if text[i] < utf8.RuneSelf {
				i++
			} else {
				_, n := utf8.DecodeRuneInString(text[i:])
				i += n
			}
			runes++
		}
		if runes < p {
			byteAt = append(byteAt, -1)
			continue
		}
		byteAt = append(byteAt, i)
	}
	for k, f := range fs {
		if f.Start < 0 || f.End < f.Start {
			continue
		}
		s, _ := slices.BinarySearch(points, f.Start)
		e, _ := slices.BinarySearch(points, f.End)
		if byteAt[e] < 0 {
			continue
		}
		out[k] = text[byteAt[s]:byteAt[e]]
	}
	return out
}

// checkTokens reports token-shaped strings the run never issued.
func (c *Checker) checkTokens(answer string, probs *problemList) {
	seen := map[string]bool{}
	for _, m := range tokenMatches(answer) {
		tok := answer[m[0]:m[1]]
		if seen[tok] {
			continue
		}
		seen[tok] = true
		if c.Tokens != nil {
			if _, ok := c.Tokens.Issued(tok); ok {
				continue
			}
		}
		probs.add(ProblemUnknownToken, fmt.Sprintf("answer holds %s, a token this run never issued", tok), nil)
	}
}

// problemList collects problems, at most maxProblemsPerKind of each kind.
type problemList struct {
	items   []CheckProblem
	perKind map[string]int
}

func (p *problemList) add(kind, msg string, f *detect.Finding) {
	if p.perKind == nil {
		p.perKind = map[string]int{}
	}
	p.perKind[kind]++
	if p.perKind[kind] > maxProblemsPerKind {
		return
	}
	p.items = append(p.items, CheckProblem{Kind: kind, Message: msg, Finding: f})
}

func (p *problemList) list() []CheckProblem {
	out := p.items
	for _, k := range []string{ProblemSize, ProblemCanary, ProblemSchema, ProblemLabel, ProblemSecret, ProblemNewPII, ProblemUnknownToken} {
		if n := p.perKind[k]; n > maxProblemsPerKind {
			out = append(out, CheckProblem{Kind: k, Message: fmt.Sprintf("and %d more %s problems", n-maxProblemsPerKind, k)})
		}
	}
	return out
}

// RepairPrompt is the instruction for the one repair retry ai.extract makes
// when the schema check failed: the schema problems, without the answer's
// values. It is "" when there is no schema problem to repair.
func RepairPrompt(result CheckResult) string {
	var b strings.Builder
	for _, p := range result.Problems {
		if p.Kind != ProblemSchema {
			continue
		}
		b.WriteString("\n- ")
		b.WriteString(p.Message)
	}
	if b.Len() == 0 {
		return ""
	}
	return "Your previous answer did not match the required JSON schema:" + b.String() +
		"\nAnswer again with only one JSON value that matches the schema: no prose, no code fences."
}
