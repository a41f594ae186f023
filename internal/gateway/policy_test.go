package gateway

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/moatproject/moat/internal/detect"
)

var (
	onPrem        = VendorProfile{Name: "ollama-box", Location: OnPremises, Region: "eu-west", RetentionDays: 0}
	private       = VendorProfile{Name: "azure-openai", Location: PrivateCloud, Region: "eu-west", RetentionDays: 0}
	managed       = VendorProfile{Name: "openai", Location: ManagedService, Region: "us", RetentionDays: 30}
	trainer       = VendorProfile{Name: "free-llm", Location: ManagedService, Region: "us", TrainsOnCustomerData: true}
	keeper        = VendorProfile{Name: "archivist", Location: ManagedService, Region: "us", RetentionDays: 365}
	unknown       = VendorProfile{Name: "mystery", Location: "", RetentionDays: -1}
	onPremTrainer = VendorProfile{Name: "lab", Location: OnPremises, TrainsOnCustomerData: true}
)

func dest(v VendorProfile) Destination {
	return Destination{Connector: "support-llm", Vendor: v, Model: "m1"}
}

func finding(class string) detect.Finding {
	return detect.Finding{Type: class, Start: 3, End: 10, Score: 0.9}
}

func TestDefaultPolicy(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	type want struct {
		action Action
		rule   string
	}
	vendors := []struct {
		name string
		v    VendorProfile
	}{
		{"on-premises", onPrem}, {"private-cloud", private}, {"managed", managed},
		{"trains", trainer}, {"retains-365", keeper}, {"unknown", unknown}, {"on-prem-trains", onPremTrainer},
	}
	classes := []string{"pii.email", "pii.card", "pii.us_ssn", "pii.iban", "pii.phone", "secret.api_key", "secret", "public", "confidential", "injection"}
	// expected[class][vendor name]; trust never changes the default policy's decision.
	B := want{Block, "pii-to-training-or-retention"}
	T := want{Tokenize, "pii-tokenized"}
	S := want{Block, RuleSecret}
	D := want{Allow, RuleDefault}
	I := want{Allow, RuleInjection}
	C := want{Block, "confidential-to-training"}
	pii := map[string]want{"on-premises": T, "private-cloud": T, "managed": T, "trains": B, "retains-365": B, "unknown": B, "on-prem-trains": B}
	same := func(w want) map[string]want {
		m := map[string]want{}
		for _, v := range vendors {
			m[v.name] = w
		}
		return m
	}
	conf := same(D)
	conf["trains"], conf["on-prem-trains"] = C, C
	expected := map[string]map[string]want{
		"pii.email": pii, "pii.phone": pii,
		"pii.card": pii, "pii.us_ssn": pii, "pii.iban": pii,
		"secret.api_key": same(S), "secret": same(S),
		"public": same(D), "confidential": conf,
		"injection": same(I),
	}
	for _, class := range classes {
		for _, v := range vendors {
			for _, trust := range []string{Trusted, Untrusted, "bogus"} {
				t.Run(class+"/"+v.name+"/"+trust, func(t *testing.T) {
					t.Parallel()
					w := expected[class][v.name]
					a, rule := p.Decide(finding(class), dest(v.v), trust)
					if a != w.action || rule != w.rule {
						t.Errorf("got %s by %s, want %s by %s", a, rule, w.action, w.rule)
					}
					if got := p.Decider(dest(v.v), trust)(finding(class)); got != w.action {
						t.Errorf("Decider: got %s, want %s", got, w.action)
					}
				})
			}
		}
	}
}

func TestPolicyTrustAndDestination(t *testing.T) {
	t.Parallel()
	p, err := CompilePolicy([]Rule{
		{Name: "untrusted-email", When: `trust == "untrusted" && class == "pii.email"`, Action: Redact},
		{Name: "eu-model", When: `vendor.region.startsWith("eu") && destination.model == "m1" && destination.connector == "support-llm"`, Action: Allow},
		{Name: "weak", When: `finding.score < 0.6 && finding.end - finding.start > 2`, Action: Mask},
	}, PolicyOptions{Default: Hash})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		f      detect.Finding
		v      VendorProfile
		trust  string
		action Action
		rule   string
	}{
		{"untrusted email", finding("pii.email"), managed, Untrusted, Redact, "untrusted-email"},
		{"unknown trust is untrusted", finding("pii.email"), managed, "", Redact, "untrusted-email"},
		{"trusted email in eu", finding("pii.email"), onPrem, Trusted, Allow, "eu-model"},
		{"weak score", detect.Finding{Type: "pii.phone", Start: 0, End: 5, Score: 0.55}, managed, Trusted, Mask, "weak"},
		{"explicit default", finding("pii.phone"), managed, Trusted, Hash, RuleDefault},
		{"secret beats explicit default", finding("secret.api_key"), onPrem, Trusted, Block, RuleSecret},
	} {
		a, rule := p.Decide(tc.f, dest(tc.v), tc.trust)
		if a != tc.action || rule != tc.rule {
			t.Errorf("%s: got %s by %s, want %s by %s", tc.name, a, rule, tc.action, tc.rule)
		}
	}
}

func TestPolicyFirstMatchWins(t *testing.T) {
	t.Parallel()
	rules := []Rule{
		{Name: "mask-emails", When: `class == "pii.email"`, Action: Mask},
		{Name: "redact-pii", When: `class.startsWith("pii.")`, Action: Redact},
		{Name: "allow-all", When: `true`, Action: Allow},
	}
	p, err := CompilePolicy(rules, PolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(p *Policy, class string, action Action, rule string) {
		t.Helper()
		if a, r := p.Decide(finding(class), dest(managed), Trusted); a != action || r != rule {
			t.Errorf("%s: got %s by %s, want %s by %s", class, a, r, action, rule)
		}
	}
	check(p, "pii.email", Mask, "mask-emails")
	check(p, "pii.card", Redact, "redact-pii")
	check(p, "internal", Allow, "allow-all")

	rules[0], rules[1] = rules[1], rules[0]
	p, err = CompilePolicy(rules, PolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check(p, "pii.email", Redact, "redact-pii")
}

func TestPolicySecretsAlwaysBlocked(t *testing.T) {
	t.Parallel()
	p, err := CompilePolicy([]Rule{
		{Name: "allow-secrets", When: `class.startsWith("secret")`, Action: Allow},
		{Name: "allow-all", When: `true`, Action: Allow},
	}, PolicyOptions{Default: Allow})
	if err != nil {
		t.Fatal(err)
	}
	for _, class := range []string{"secret", "secret.api_key", "secret.high_entropy"} {
		for _, v := range []VendorProfile{onPrem, managed} {
			if a, rule := p.Decide(finding(class), dest(v), Trusted); a != Block || rule != RuleSecret {
				t.Errorf("%s to %s: got %s by %s, want block by secret", class, v.Name, a, rule)
			}
		}
	}
	if a, _ := p.Decide(finding("secretary"), dest(managed), Trusted); a != Allow {
		t.Errorf("secretary is not a secret class: got %s", a)
	}
}

func TestCompilePolicyErrors(t *testing.T) {
	t.Parallel()
	_, err := CompilePolicy([]Rule{
		{Name: "good", When: `class == "pii.email"`, Action: Allow},
		{Name: "syntax", When: `class ==`, Action: Allow},
		{Name: "unknown-var", When: `klass == "pii.email"`, Action: Allow},
		{Name: "unknown-field", When: `vendor.trains`, Action: Allow},
		{Name: "wrong-type", When: `vendor.retentionDays == "30"`, Action: Allow},
		{Name: "not-bool", When: `class`, Action: Allow},
		{Name: "dyn", When: `dyn(true)`, Action: Allow},
		{Name: "bad-action", When: `true`, Action: "shred"},
		{Name: "", When: `true`, Action: Allow},
		{Name: "good", When: `true`, Action: Allow},
		{Name: "default", When: `true`, Action: Allow},
		{Name: "empty", When: ` `, Action: Allow},
		{Name: "long", When: strings.Repeat("true && ", MaxRuleBytes/8) + "true", Action: Allow},
	}, PolicyOptions{Default: "maybe"})
	var pe *PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("want a *PolicyError, got %v", err)
	}
	wantRules := []string{"default", "syntax", "unknown-var", "unknown-field", "wrong-type", "not-bool", "dyn", "bad-action", "", "good", "default", "empty", "long"}
	var got []string
	for _, p := range pe.Problems {
		got = append(got, p.Rule)
	}
	if strings.Join(got, ",") != strings.Join(wantRules, ",") {
		t.Errorf("problems for %q\nwant %q\n%v", got, wantRules, err)
	}
	msg := err.Error()
	for _, want := range []string{`"syntax"`, `"unknown-var"`, "undeclared reference to 'klass'", "undefined field 'trains'", "no matching overload", "produces string, not bool", "produces dyn, not bool", `unknown action "shred"`, "needs a name", "another rule has this name", "reserved", "needs a when", "the limit is"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if _, err := CompilePolicy(make([]Rule, MaxPolicyRules+1), PolicyOptions{}); err == nil {
		t.Error("too many rules accepted")
	}
}

func TestPolicyEvaluationErrorBlocks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var reported []string
	p, err := CompilePolicy([]Rule{
		{Name: "divide", When: `class == "pii.phone" && 10 / (finding.end - finding.end) > 1`, Action: Allow},
		{Name: "allow-all", When: `true`, Action: Allow},
	}, PolicyOptions{OnError: func(rule string, err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, rule+": "+err.Error())
	}})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate(finding("pii.phone"), dest(onPrem), Trusted)
	if d.Action != Block || d.Rule != "divide" || d.Err == nil || !strings.Contains(d.Err.Error(), "division by zero") {
		t.Errorf("got %+v", d)
	}
	if a, _ := p.Decide(finding("pii.email"), dest(onPrem), Trusted); a != Allow {
		t.Errorf("a rule that does not fail: got %s", a)
	}
	if a := p.Decider(dest(onPrem), Trusted)(finding("pii.phone")); a != Block {
		t.Errorf("Decider: got %s", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 2 || !strings.HasPrefix(reported[0], "divide: ") {
		t.Errorf("reported %q", reported)
	}
}

func TestPolicyCostLimit(t *testing.T) {
	t.Parallel()
	rules := []Rule{
		{Name: "expensive", When: `[1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(x, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].all(y, x * y > 0)) && class == "pii.email"`, Action: Allow},
	}
	p, err := CompilePolicy(rules, PolicyOptions{CostLimit: 50})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate(finding("pii.email"), dest(onPrem), Trusted)
	if d.Action != Block || d.Err == nil || !strings.Contains(d.Err.Error(), "cost limit") {
		t.Errorf("over the limit: got %+v", d)
	}
	p, err = CompilePolicy(rules, PolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Evaluate(finding("pii.email"), dest(onPrem), Trusted); d.Action != Allow || d.Err != nil {
		t.Errorf("under the default limit: got %+v", d)
	}
}

func TestPolicyWithTransformer(t *testing.T) {
	t.Parallel()
	text := "Ticket from ana@example.com: card 4111 1111 1111 1111 was charged twice."
	findings := detect.Scan(text)
	p := DefaultPolicy()
	for _, tc := range []struct {
		name string
		v    VendorProfile
		want string
		err  bool
	}{
		{"managed", managed, "Ticket from <EMAIL_1>: card <CARD_1> was charged twice.", false},
		{"on-premises", onPrem, "Ticket from <EMAIL_1>: card <CARD_1> was charged twice.", false},
		{"trains", trainer, "", true},
	} {
		tr := &Transformer{Tokens: NewTokenizer()}
		got, applied, err := tr.Apply(text, findings, p.Decider(dest(tc.v), Untrusted))
		if tc.err {
			if !errors.Is(err, ErrBlocked) {
				t.Errorf("%s: want blocked, got %q, %v", tc.name, got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
		if len(applied) != len(findings) {
			t.Errorf("%s: applied %+v", tc.name, applied)
		}
		restored, unknown := tr.Tokens.Restore(got, func(string) bool { return true })
		if restored != text || len(unknown) != 0 {
			t.Errorf("%s: restored %q, unknown %v", tc.name, restored, unknown)
		}
	}

	secret := "export AWS_ACCESS_KEY_ID=" + "AKIA" + "Z3QX7RT2LMN4PQ5W" // split so scanners of this repo do not flag it
	sf := detect.Scan(secret)
	if len(sf) != 1 || !IsSecretClass(sf[0].Type) {
		t.Fatalf("secret findings %+v", sf)
	}
	tr := &Transformer{Tokens: NewTokenizer()}
	if _, _, err := tr.Apply(secret, sf, p.Decider(dest(onPrem), Trusted)); !errors.Is(err, ErrBlocked) {
		t.Errorf("a secret left: %v", err)
	}
}

func TestPolicyConcurrent(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	decide := p.Decider(dest(managed), Trusted)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if a := decide(finding("pii.email")); a != Tokenize {
					t.Errorf("got %s", a)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkDecide(b *testing.B) {
	p := DefaultPolicy()
	f := finding("pii.email") // reaches the last rule: every rule runs
	b.Run("Decider", func(b *testing.B) {
		decide := p.Decider(dest(managed), Trusted)
		b.ReportAllocs()
		for b.Loop() {
			decide(f)
		}
	})
	b.Run("Decide", func(b *testing.B) {
		d := dest(managed)
		b.ReportAllocs()
		for b.Loop() {
			p.Decide(f, d, Trusted)
		}
	})
	b.Run("secret", func(b *testing.B) {
		decide := p.Decider(dest(managed), Trusted)
		s := finding("secret.api_key")
		b.ReportAllocs()
		for b.Loop() {
			decide(s)
		}
	})
}

func TestPolicyBoundsStrings(t *testing.T) {
	t.Parallel()
	p, err := CompilePolicy([]Rule{{Name: "allow-all", When: `true`, Action: Allow}}, PolicyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", MaxPolicyStringBytes+1)
	d := dest(onPrem)
	d.Model = long
	if got := p.Evaluate(finding("pii.email"), d, Trusted); got.Action != Block || got.Err == nil {
		t.Errorf("long model: got %+v", got)
	}
	if a := p.Decider(d, Trusted)(finding("public")); a != Block {
		t.Errorf("long model, Decider: got %s", a)
	}
	if got := p.Evaluate(finding("pii."+long), dest(onPrem), Trusted); got.Action != Block || got.Err == nil {
		t.Errorf("long class: got %+v", got)
	}
}
