package detect

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// Test keys are assembled from parts so that no complete credential-shaped
// literal sits in the source (secret scanners on pushes would flag it).
func kcat(parts ...string) string { return strings.Join(parts, "") }

func krep(s string, n int) string { return strings.Repeat(s, n) }

func secretFindings(text string) []Finding {
	var out []Finding
	for _, f := range Scan(text) {
		if f.Type == secretType {
			out = append(out, f)
		}
	}
	return out
}

func jwt(header string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(`{"sub":"1234567890","name":"Jane","iat":1516239022}`)) + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
}

const pemBody = "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMbRvI0MBZhpF\nYdpBPXyfCmZ1Ajx6Ha5Cd0zMs5kuJuvKqvT9dWAZ7Ks1HEIvNq8cdg6xWWy1bE6N\n"

func TestSecrets(t *testing.T) {
	t.Parallel()
	ghBody := "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xYz1A2"
	cases := []struct {
		name   string
		text   string
		want   string // the exact span expected, "" for no finding
		reason string // a substring of the reason
	}{
		{"aws key id", "export AWS_ACCESS_KEY_ID=" + kcat("AKIA", "Z3QX7RT2LMN4PQ5W"), kcat("AKIA", "Z3QX7RT2LMN4PQ5W"), "aws access key id"},
		{"aws temp key id", "id " + kcat("ASIA", "Y7WQ2ZK4MN3BV6XC") + " here", kcat("ASIA", "Y7WQ2ZK4MN3BV6XC"), "temporary"},
		{"aws secret near context", `aws_secret_access_key = "` + kcat("kT7s9QwLm2Pz4Xc8Vb1N", "n6Hy3Jr5Df0Ga9Ue+Wt/") + `"`, kcat("kT7s9QwLm2Pz4Xc8Vb1N", "n6Hy3Jr5Df0Ga9Ue+Wt/"), "aws secret access key"},
		{"github pat", "token " + kcat("ghp", "_", ghBody) + ".", kcat("ghp", "_", ghBody), "github personal access"},
		{"github oauth", kcat("gho", "_", ghBody), kcat("gho", "_", ghBody), "OAuth"},
		{"github server", kcat("ghs", "_", ghBody), kcat("ghs", "_", ghBody), "server-to-server"},
		{"github fine-grained", "x " + kcat("github", "_pat_", "11ABCDEFG0", krep("aB3dE5fG7h", 2), "_", krep("J9kL1mN2pQ", 6)), kcat("github", "_pat_", "11ABCDEFG0", krep("aB3dE5fG7h", 2), "_", krep("J9kL1mN2pQ", 6)), "fine-grained"},
		{"openai legacy", "OPENAI=" + kcat("sk", "-", "aB3dE5fG7hJ9kL1mN2pQ", "T3BlbkFJ", "4rS6tU8vW0xYz1A2B3cD"), kcat("sk", "-", "aB3dE5fG7hJ9kL1mN2pQ", "T3BlbkFJ", "4rS6tU8vW0xYz1A2B3cD"), "openai"},
		{"openai project", kcat("sk", "-proj-", krep("aB3dE5fG7hJ9kL1mN2pQ", 3)), kcat("sk", "-proj-", krep("aB3dE5fG7hJ9kL1mN2pQ", 3)), "openai project"},
		{"anthropic", "key: " + kcat("sk", "-ant-api03-", krep("aB3dE5fG7hJ9kL1mN2pQ", 4), "-xYz_AA"), kcat("sk", "-ant-api03-", krep("aB3dE5fG7hJ9kL1mN2pQ", 4), "-xYz_AA"), "anthropic"},
		{"slack bot", kcat("xox", "b-", "1234567890-1234567890123-", "aB3dE5fG7hJ9kL1mN2pQ4rS6"), kcat("xox", "b-", "1234567890-1234567890123-", "aB3dE5fG7hJ9kL1mN2pQ4rS6"), "slack token"},
		{"slack user", kcat("xox", "p-", "1234567890-1234567890-1234567890123-", "abcdef0123456789abcdef0123456789"), kcat("xox", "p-", "1234567890-1234567890-1234567890123-", "abcdef0123456789abcdef0123456789"), "slack token"},
		{"slack webhook", "post to " + kcat("https://hooks", ".slack.com/services/", "T0ABCDEFG/B0ABCDEFG/", "aB3dE5fG7hJ9kL1mN2pQ4rS6") + " now", kcat("https://hooks", ".slack.com/services/", "T0ABCDEFG/B0ABCDEFG/", "aB3dE5fG7hJ9kL1mN2pQ4rS6"), "slack webhook"},
		{"stripe live", kcat("sk", "_live_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"), kcat("sk", "_live_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"), "stripe secret key"},
		{"stripe restricted", kcat("rk", "_live_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"), kcat("rk", "_live_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"), "restricted"},
		{"stripe test", kcat("sk", "_test_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"), kcat("sk", "_test_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"), "test mode"},
		{"google", "maps key " + kcat("AIza", "SyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tUvW"), kcat("AIza", "SyA1bC2dE3fG4hI5jK6lM7nO8pQ9rS0tUvW"), "google api key"},
		{"pem", "key:\n" + kcat("-----BEGIN ", "RSA PRIVATE KEY-----\n", pemBody, "-----END RSA PRIVATE KEY-----") + "\nbye", kcat("-----BEGIN ", "RSA PRIVATE KEY-----\n", pemBody, "-----END RSA PRIVATE KEY-----"), "private key block"},
		{"pem openssh", kcat("-----BEGIN ", "OPENSSH PRIVATE KEY-----\n", pemBody, "-----END OPENSSH PRIVATE KEY-----"), kcat("-----BEGIN ", "OPENSSH PRIVATE KEY-----\n", pemBody, "-----END OPENSSH PRIVATE KEY-----"), "openssh"},
		{"pem truncated", kcat("-----BEGIN ", "PRIVATE KEY-----\n", pemBody), kcat("-----BEGIN ", "PRIVATE KEY-----\n", strings.TrimSuffix(pemBody, "\n")), "without END"},
		{"jwt", "Authorization: Bearer " + jwt(`{"alg":"HS256","typ":"JWT"}`), jwt(`{"alg":"HS256","typ":"JWT"}`), "json web token"},
		{"jwt in prose", "the cookie was " + jwt(`{"alg":"RS256"}`) + ", see", jwt(`{"alg":"RS256"}`), "json web token"},
		{"password assignment", `password = "Xk9#mQ2$vL7pR4wZ8nT1"`, "Xk9#mQ2$vL7pR4wZ8nT1", "password"},
		{"api_key yaml", "api_key: 9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c", "9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c", "api_key"},
		{"json client secret", `{"client_secret": "aB3dE5fG7hJ9kL1mN2pQ4rS6"}`, "aB3dE5fG7hJ9kL1mN2pQ4rS6", "secret"},
		{"bearer header", "Authorization: Bearer aB3dE5fG7hJ9kL1mN2pQ4rS6tU8", "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8", "bearer"},
		{"commit hash near token word", "token = 3f2a9c1e7b5d4a6f8e0c2b4d6f8a0c2e4b6d8f0a", "3f2a9c1e7b5d4a6f8e0c2b4d6f8a0c2e4b6d8f0a", "token"},
		{"multibyte before", "clé été " + kcat("ghp", "_", ghBody), kcat("ghp", "_", ghBody), "github"},

		// Near misses.
		{"aws documented example id", "AKIAIOSFODNN7EXAMPLE", "", ""},
		{"aws documented example secret", "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "", ""},
		{"uuid", "request id 123e4567-e89b-12d3-a456-426614174000 failed", "", ""},
		{"commit in prose", "fixed in commit 3f2a9c1e7b5d4a6f8e0c2b4d6f8a0c2e4b6d8f0a yesterday", "", ""},
		{"sha256 digest", "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "", ""},
		{"png base64", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "", ""},
		{"sk in words", "We went sk-ating and sk-iing; sk-8 is fun-", "", ""},
		{"sk lowercase words", "sk-this-is-not-a-key-but-a-long-hyphenated-phrase-indeed", "", ""},
		{"stripe publishable", kcat("pk", "_live_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"), "", ""},
		{"lorem ipsum", "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.", "", ""},
		{"placeholder", `api_key = "your_api_key_here_1234567890"`, "", ""},
		{"env reference", `token: ${GITHUB_TOKEN_FROM_ENVIRONMENT_123}`, "", ""},
		{"short password", `password = "hunter2"`, "", ""},
		{"words after key", "key: the quick brown fox jumps over", "", ""},
		{"ghp wrong length", kcat("ghp", "_", "abc123"), "", ""},
		{"public key block", "-----BEGIN PUBLIC KEY-----\n" + pemBody + "-----END PUBLIC KEY-----", "", ""},
		{"jwt-like without alg", base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT"}`)) + ".eyJzdWIiOiIxIn0.abc", "", ""},
		{"akia inside word", "XAKIAZ3QX7RT2LMN4PQ5W", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := secretFindings(c.text)
			if c.want == "" {
				if len(got) != 0 {
					t.Fatalf("want no secret, got %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("want one secret %q, got %+v", c.want, got)
			}
			f := got[0]
			if s := substrRunes(c.text, f.Start, f.End); s != c.want {
				t.Errorf("span %q, want %q", s, c.want)
			}
			if !strings.Contains(strings.Join(f.Reasons, ";"), c.reason) {
				t.Errorf("reasons %v do not mention %q", f.Reasons, c.reason)
			}
		})
	}
}

func TestSecretScores(t *testing.T) {
	t.Parallel()
	score := func(text string) float64 {
		var best float64
		scanSecrets(text, func(s span) { best = max(best, s.Score) })
		return best
	}
	live := score(kcat("sk", "_live_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"))
	test := score(kcat("sk", "_test_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"))
	if !(test < live && test >= MinScore) {
		t.Errorf("stripe test key score %.2f should be below live %.2f and still reported", test, live)
	}
	if s := score("AKIAIOSFODNN7EXAMPLE"); s == 0 || s >= MinScore {
		t.Errorf("AWS documentation example scored %.2f; want a low, non-zero score", s)
	}
}

func substrRunes(s string, start, end int) string {
	r := []rune(s)
	if start < 0 || end > len(r) || start > end {
		return fmt.Sprintf("<bad span %d..%d of %d>", start, end, len(r))
	}
	return string(r[start:end])
}

// mixedCorpus is ~size bytes of prose, code, logs and config with a few
// secrets, generated deterministically.
func mixedCorpus(size int) string {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the a of to and in is for on that with as was by this be are it from or at an have not which you data user key token request response error value file system service time report team customer order message account password config server client update security")
	var b strings.Builder
	b.Grow(size + 4096)
	for b.Len() < size {
		switch rng.IntN(10) {
		case 0, 1, 2, 3, 4:
			for range 12 + rng.IntN(20) {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
			b.WriteString("— café, naïve résumé. Contact: jane.doe@example.com, +44 20 7946 0958.\n")
		case 5:
			fmt.Fprintf(&b, "func handle%d(w http.ResponseWriter, r *http.Request) {\n\tid := r.URL.Query().Get(\"id\")\n\tif err := svc.Load(ctx, id); err != nil {\n\t\treturn fmt.Errorf(\"load %%s: %%w\", id, err)\n\t}\n}\n", rng.IntN(1000))
		case 6:
			fmt.Fprintf(&b, "2024-05-%02dT10:%02d:00Z INFO request_id=%08x-%04x path=/api/v1/items?page=%d status=200 latency_ms=%d\n", 1+rng.IntN(28), rng.IntN(60), rng.Uint32(), rng.IntN(65536), rng.IntN(9), rng.IntN(500))
		case 7:
			fmt.Fprintf(&b, "server:\n  host: 127.0.0.1\n  port: %d\n  timeout: 30s\nlogging:\n  level: info\n", 8000+rng.IntN(1000))
		case 8:
			fmt.Fprintf(&b, "commit %040x\nAuthor: Dev <dev@example.org>\n\n    Fix the thing (#%d)\n", rng.Uint64(), rng.IntN(9999))
		case 9:
			switch rng.IntN(4) {
			case 0:
				b.WriteString("export AWS_ACCESS_KEY_ID=" + kcat("AKIA", "Z3QX7RT2LMN4PQ5W") + "\n")
			case 1:
				b.WriteString(`password = "Xk9#mQ2$vL7pR4wZ8nT1"` + "\n")
			case 2:
				b.WriteString("token: " + kcat("ghp", "_", "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xYz1A2") + "\n")
			default:
				b.WriteString("see https://example.com/docs/setup#keys for details.\n")
			}
		}
	}
	return b.String()
}

func TestSecretsOnCorpus(t *testing.T) {
	t.Parallel()
	text := mixedCorpus(64 << 10)
	for _, f := range secretFindings(text) {
		s := substrRunes(text, f.Start, f.End)
		if !strings.HasPrefix(s, "AKIA") && !strings.HasPrefix(s, "ghp_") && s != "Xk9#mQ2$vL7pR4wZ8nT1" {
			t.Errorf("unexpected secret %q (%v)", s, f.Reasons)
		}
	}
}

func BenchmarkSecretsScan(b *testing.B) {
	text := mixedCorpus(1 << 20)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		scanSecrets(text, func(span) {})
	}
}

func FuzzSecrets(f *testing.F) {
	for _, s := range []string{
		"", "AKIAZ3QX7RT2LMN4PQ5W", kcat("ghp", "_", "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xYz1A2"),
		`password = "Xk9#mQ2$vL7pR4wZ8nT1"`, jwt(`{"alg":"HS256"}`),
		kcat("-----BEGIN ", "PRIVATE KEY-----\n", pemBody), "sk-", "xoxb-", "hooks.slack.com/services/",
		"é€ " + kcat("sk", "_live_", "51H8aB3dE5fG7hJ9kL1mN2pQ4r"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var spans []span
		scanSecrets(text, func(s span) {
			if s.Start < 0 || s.End > len(text) || s.Start >= s.End {
				t.Fatalf("span %d..%d out of bounds for %d bytes", s.Start, s.End, len(text))
			}
			if !utf8.ValidString(text) {
				return
			}
			if !utf8.RuneStart(text[s.Start]) || (s.End < len(text) && !utf8.RuneStart(text[s.End])) {
				t.Fatalf("span %d..%d not on rune boundaries", s.Start, s.End)
			}
			spans = append(spans, s)
		})
		a, b := fmt.Sprint(Scan(text)), fmt.Sprint(Scan(text))
		if a != b {
			t.Fatalf("not deterministic: %s vs %s", a, b)
		}
		n := utf8.RuneCountInString(text)
		for _, f := range Scan(text) {
			if f.Start < 0 || f.End > n || f.Start >= f.End {
				t.Fatalf("finding %+v out of bounds (%d code points)", f, n)
			}
		}
	})
}

// credentialWord finds what the first of credentialWords to be contained
// in the name is, as a search of each word in turn would.
func TestCredentialWord(t *testing.T) {
	t.Parallel()
	firstContained := func(name string) string {
		for _, w := range credentialWords {
			if strings.Contains(name, w) {
				return w
			}
		}
		return ""
	}
	names := []string{"", "note", "x", "db.password", "sessionpassword", "my_session_token", "aut", "auth",
		"pwdkey", "client_secret", "api-key", "apikeys", "private_key_id", "salty", "the.cookie.jar", "bearertoken"}
	for _, a := range credentialWords {
		for _, b := range credentialWords {
			names = append(names, a+b, "x"+a+"_"+b, b[:len(b)-1]+a)
		}
	}
	for _, name := range names {
		if got, want := credentialWord([]byte(name)), firstContained(name); got != want {
			t.Errorf("credentialWord(%q) = %q, want %q", name, got, want)
		}
	}
}
