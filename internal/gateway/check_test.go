package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const personSchema = `{
	"type": "object",
	"properties": {
		"name":  {"type": "string", "minLength": 1},
		"email": {"type": "string", "pattern": "^[a-z]+@"},
		"contact": {"type": "string", "format": "email"},
		"age":   {"type": "integer", "minimum": 0},
		"tags":  {"type": "array", "items": {"enum": ["a", "b"]}}
	},
	"required": ["name", "age"],
	"additionalProperties": false
}`

func compileTestSchema(t testing.TB, doc string) *jsonschema.Schema {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("mem:///s.json", v); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("mem:///s.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func kinds(r CheckResult) map[string]int {
	out := map[string]int{}
	for _, p := range r.Problems {
		out[p.Kind]++
	}
	return out
}

func mustCheck(t *testing.T, c *Checker, answer string) CheckResult {
	t.Helper()
	r, err := c.Check(answer)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK != (len(r.Problems) == 0) {
		t.Fatalf("OK %v with problems %+v", r.OK, r.Problems)
	}
	return r
}

// noValues fails if any problem message holds one of the values.
func noValues(t *testing.T, r CheckResult, values ...string) {
	t.Helper()
	for _, p := range r.Problems {
		for _, v := range values {
			if v != "" && strings.Contains(strings.ToLower(p.Message), strings.ToLower(v)) {
				t.Errorf("%s message %q holds %q", p.Kind, p.Message, v)
			}
		}
	}
	if rp := RepairPrompt(r); rp != "" {
		for _, v := range values {
			if v != "" && strings.Contains(strings.ToLower(rp), strings.ToLower(v)) {
				t.Errorf("repair prompt %q holds %q", rp, v)
			}
		}
	}
}

func TestCheckSchemaValid(t *testing.T) {
	t.Parallel()
	c := &Checker{Schema: compileTestSchema(t, personSchema)}
	obj := `{"name": "x", "age": 3, "tags": ["a"]}`
	for name, answer := range map[string]string{
		"bare":                      obj,
		"spaces":                    "\n  " + obj + "\n",
		"fenced":                    "```json\n" + obj + "\n```",
		"fenced upper tag":          "Here it is:\n```JSON\n" + obj + "\n```\nAnything else?",
		"fenced no tag":             "```\n" + obj + "\n```",
		"fence one line":            "```json " + obj + "```",
		"prose":                     "Sure! The record is " + obj + " as requested.",
		"prose with brackets first": "As noted in [1] and {see below}, the answer is " + obj + ".",
		"braces in strings":         `Result: {"name": "a } ] {", "age": 1}`,
	} {
		r := mustCheck(t, c, answer)
		if !r.OK {
			t.Errorf("%s: %+v", name, r.Problems)
			continue
		}
		m, ok := r.Value.(map[string]any)
		if !ok || m["age"] != json.Number("3") && m["age"] != json.Number("1") {
			t.Errorf("%s: value %#v", name, r.Value)
		}
		if RepairPrompt(r) != "" {
			t.Errorf("%s: repair prompt for a valid answer", name)
		}
	}
}

func TestCheckSchemaInvalid(t *testing.T) {
	t.Parallel()
	c := &Checker{Schema: compileTestSchema(t, personSchema)}
	answer := "```json\n" + `{"name": "", "age": -7, "email": "Zebedee-Quux", "contact": "Quincy-Zed", "tags": ["zorro"], "jolly_roger": 1}` + "\n```"
	r := mustCheck(t, c, answer)
	if r.OK || kinds(r)["schema"] < 5 {
		t.Fatalf("problems %+v", r.Problems)
	}
	joined := ""
	for _, p := range r.Problems {
		joined += p.Message + "\n"
	}
	for _, want := range []string{
		"answer.name: must be at least 1 characters long",
		"answer.age: must be at least 0",
		"answer.email: does not match the pattern ^[a-z]+@",
		"answer.contact: is not a valid email",
		`answer.tags[0]: value must be one of 'a', 'b'`,
		`answer: unexpected field "jolly_roger"`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in\n%s", want, joined)
		}
	}
	noValues(t, r, "Zebedee", "Quincy", "zorro", "-7")
	rp := RepairPrompt(r)
	if !strings.Contains(rp, "answer.age: must be at least 0") || !strings.Contains(rp, "JSON") {
		t.Errorf("repair prompt %q", rp)
	}

	r = mustCheck(t, c, `{"age": "nine"}`)
	joined = ""
	for _, p := range r.Problems {
		joined += p.Message + "\n"
	}
	if !strings.Contains(joined, `missing required field "name"`) || !strings.Contains(joined, "answer.age: got string, want integer") {
		t.Errorf("problems %s", joined)
	}
	noValues(t, r, "nine")

	for _, answer := range []string{"I cannot help with that.", "", "{not json}", "```json\n{\"name\": \n```"} {
		r := mustCheck(t, c, answer)
		if r.OK || kinds(r)["schema"] != 1 || RepairPrompt(r) == "" {
			t.Errorf("%q: %+v", answer, r.Problems)
		}
	}
}

func TestCheckSchemaFieldNamesThatLookLikeValuesAreHidden(t *testing.T) {
	t.Parallel()
	c := &Checker{Schema: compileTestSchema(t, `{"type":"object","additionalProperties":{"type":"integer"}}`)}
	r := mustCheck(t, c, `{"ana@example.com": "x", "with space": "y"}`)
	if kinds(r)["schema"] != 2 {
		t.Fatalf("%+v", r.Problems)
	}
	noValues(t, r, "ana@example.com", "with space")
}

func TestCheckLabels(t *testing.T) {
	t.Parallel()
	c := &Checker{Labels: []string{"Positive", "negative", "neutral"}}
	for _, answer := range []string{"positive", "  POSITIVE\n", "Positive.", `"positive"`, "`Positive`"} {
		r := mustCheck(t, c, answer)
		if !r.OK || r.Value != "Positive" {
			t.Errorf("%q: %+v value %v", answer, r.Problems, r.Value)
		}
	}
	for _, answer := range []string{"mostly positive", "", "positive, negative", "pos", "Quentin"} {
		r := mustCheck(t, c, answer)
		if r.OK || kinds(r)["label"] != 1 {
			t.Errorf("%q: %+v", answer, r.Problems)
		}
	}
	noValues(t, mustCheck(t, c, "Quentin"), "Quentin")
}

func TestCheckSize(t *testing.T) {
	t.Parallel()
	c := &Checker{MaxAnswerBytes: 10}
	if r := mustCheck(t, c, "0123456789"); !r.OK {
		t.Errorf("at the limit: %+v", r.Problems)
	}
	r := mustCheck(t, c, "0123456789x")
	if r.OK || kinds(r)["size"] != 1 || !strings.Contains(r.Problems[0].Message, "11 bytes") {
		t.Errorf("over the limit: %+v", r.Problems)
	}
}

func TestCheckCanary(t *testing.T) {
	t.Parallel()
	can := NewCanary()
	c := &Checker{Canary: can}
	if r := mustCheck(t, c, "The canary sang; nothing to see."); !r.OK {
		t.Errorf("false positive: %+v", r.Problems)
	}
	r := mustCheck(t, c, "My instructions: "+strings.ToUpper(can.Marker()))
	if r.OK || kinds(r)["canary"] != 1 {
		t.Fatalf("%+v", r.Problems)
	}
	noValues(t, r, can.Marker(), can.secret)
}

func TestCheckNewPII(t *testing.T) {
	t.Parallel()
	tok := NewTokenizer()
	card := tok.Token("pii.card", "4111 1111 1111 1111")
	prompt := "Summarise: Bob Stone (bob@example.org, +44 20 7946 0958) asked about card " + card + "."
	c := &Checker{Prompt: []string{"You are a summariser.", prompt}, Tokens: tok}

	r := mustCheck(t, c, "BOB@example.org asked about card "+card+"; call +442079460958.")
	if !r.OK {
		t.Errorf("PII already in the prompt counted as new: %+v", r.Problems)
	}

	answer := "bob@example.org asked; write to carol@example.net, card 4111 1111 1111 1111."
	r = mustCheck(t, c, answer)
	if kinds(r)["new_pii"] != 2 || len(r.Problems) != 2 {
		t.Fatalf("%+v", r.Problems)
	}
	for _, p := range r.Problems {
		if p.Finding == nil || (p.Finding.Type != "pii.email" && p.Finding.Type != "pii.card") {
			t.Errorf("finding %+v", p.Finding)
		}
	}
	if f := r.Problems[0].Finding; string([]rune(answer)[f.Start:f.End]) != "carol@example.net" {
		t.Errorf("finding span %+v", f)
	}
	noValues(t, r, "carol@example.net", "4111", "bob@example.org")
}

func TestCheckSecrets(t *testing.T) {
	t.Parallel()
	key := "AKIA" + "Z3QX7RT2LMN4PQ5W"
	// Even a secret that was in the prompt may not come back.
	c := &Checker{Prompt: []string{"key " + key}}
	r := mustCheck(t, c, "Use AWS_ACCESS_KEY_ID="+key+" to log in.")
	if r.OK || kinds(r)["secret"] != 1 || r.Problems[0].Finding == nil {
		t.Fatalf("%+v", r.Problems)
	}
	noValues(t, r, key, "Z3QX7RT2")
}

func TestCheckTokens(t *testing.T) {
	t.Parallel()
	tok := NewTokenizer()
	email := tok.Token("pii.email", "ana@example.com")
	c := &Checker{Tokens: tok}
	if r := mustCheck(t, c, "Reply to "+email+" and "+email+"."); !r.OK {
		t.Errorf("issued token: %+v", r.Problems)
	}
	r := mustCheck(t, c, "Reply to "+email+", <EMAIL_2>, <PHONE_1> and <EMAIL_2>.")
	if kinds(r)["unknown_token"] != 2 {
		t.Fatalf("%+v", r.Problems)
	}
	// A token-shaped string that was in the input is reserved, never issued.
	tok.Reserve("forged <CARD_1>")
	if r := mustCheck(t, c, "<CARD_1>"); kinds(r)["unknown_token"] != 1 {
		t.Errorf("reserved token: %+v", r.Problems)
	}
	if r := mustCheck(t, &Checker{}, "<EMAIL_1>"); kinds(r)["unknown_token"] != 1 {
		t.Errorf("no tokenizer: %+v", r.Problems)
	}
}

func TestCheckCapsProblemsPerKind(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 100 {
		b.WriteString("<X_")
		b.WriteString(strings.Repeat("1", 1) + string(rune('0'+i%10)) + string(rune('0'+i/10)))
		b.WriteString("> ")
	}
	r := mustCheck(t, &Checker{}, b.String())
	if len(r.Problems) != maxProblemsPerKind+1 || !strings.Contains(r.Problems[maxProblemsPerKind].Message, "80 more") {
		t.Errorf("%d problems, last %+v", len(r.Problems), r.Problems[len(r.Problems)-1])
	}
}

func TestCheckCombined(t *testing.T) {
	t.Parallel()
	can := NewCanary()
	c := &Checker{Schema: compileTestSchema(t, personSchema), MaxAnswerBytes: 1000, Canary: can, Tokens: NewTokenizer(), Prompt: []string{"Extract the person."}}
	r := mustCheck(t, c, `{"name": "`+can.Marker()+`", "age": 1}`)
	if r.OK || kinds(r)["canary"] != 1 || kinds(r)["schema"] != 0 {
		t.Errorf("%+v", r.Problems)
	}
	if RepairPrompt(r) != "" {
		t.Error("repair prompt without schema problems")
	}
}

func TestExtractJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{`42`, `42`},
		{` "s" `, `"s"`},
		{"```json\n[1, 2]\n```", `[1,2]`},
		{"Text {\"a\": [1, {\"b\": \"]\"}]} more {\"c\": 2}", `{"a":[1,{"b":"]"}]}`},
		{"{bad} then [true]", `[true]`},
		{"unclosed ```json\n{\"a\": 1}", `{"a":1}`},
		{"nothing here", ``},
		{"{{{{{{", ``},
	} {
		v, ok := extractJSON(tc.in)
		got := ""
		if ok {
			b, _ := json.Marshal(v)
			got = string(b)
		}
		if got != tc.want {
			t.Errorf("%q: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func FuzzExtractJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "```json\n[1]\n```", "x {\"a\": \"}\"} y", "[[[[", `"\"`, "```", "{]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := extractJSON(s)
		if ok {
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("extracted value does not marshal: %v", err)
			}
		}
		if json.Valid([]byte(s)) && !ok {
			t.Fatalf("valid JSON %q not extracted", s)
		}
		if json.Valid([]byte(s)) && !strings.Contains(s, "```") {
			if _, ok := extractJSON("Here:\n```json\n" + s + "\n```\nDone."); !ok {
				t.Fatalf("fenced valid JSON %q not extracted", s)
			}
		}
	})
}
