package detect

import (
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// InjectionThreshold is the score at which Injection reports an attempt.
// Chosen by measurement on the public development sets (see
// TestInjectionEvaluation): it keeps the false-positive rate on benign
// e-mails at zero while a single strong signal (an instruction override, a
// jailbreak template, a forged role header) is enough on its own.
const InjectionThreshold = 0.5

// InjectionResult is the verdict on one text.
type InjectionResult struct {
	Injection bool      `json:"injection"`
	Score     float64   `json:"score"`
	Reasons   []string  `json:"reasons,omitempty"`
	Findings  []Finding `json:"findings,omitempty"`
}

// maxInjectionFindings bounds the findings one text can produce.
const maxInjectionFindings = 64

// Injection scores text as a prompt-injection attempt. The text is
// normalised first (see normalize); signals are matched on the normalised
// text, each with a weight and a reason, and combined as 1 − Π(1 − wᵢ) over
// distinct reasons. Findings carry code-point offsets into text.
func Injection(text string) InjectionResult {
	return injection(text, false)
}

// injection is Injection, and with data set InjectionInData.
func injection(text string, data bool) InjectionResult {
	sc := injPool.Get().(*injScratch)
	sc.n.reset()
	sc.n.fill(text)
	hits := sc.hits[:0]
	collectSignals(&sc.n, text, &hits, 0, &sc.toks)
	if data {
		taskRequests(&sc.n, text, &sc.toks, &hits)
	}
	res := buildResult(text, hits)
	if cap(sc.n.start) <= maxPooledBytes && cap(sc.toks.toks) <= maxPooledBytes/4 {
		clear(hits)
		sc.hits = hits[:0]
		// The tokens hold no pointers; only the rest is let go of.
		clear(sc.toks.extra)
		sc.toks = injTokens{toks: sc.toks.toks[:0], extra: sc.toks.extra[:0]}
		sc.n.reset()
		injPool.Put(sc)
	}
	return res
}

// injScratch holds the buffers of one Injection call, reused across calls.
type injScratch struct {
	n    normalized
	toks injTokens
	hits []injHit
}

var injPool = sync.Pool{New: func() any { return new(injScratch) }}

// maxPooledBytes bounds the texts whose buffers are kept for reuse.
const maxPooledBytes = 1 << 16

// injHit is one matched signal: a reason, its weight and an original byte span.
type injHit struct {
	reason     string
	weight     float64
	start, end int
}

type reasonWeight struct {
	reason string
	weight float64
}

func buildResult(text string, hits []injHit) InjectionResult {
	var res InjectionResult
	// The best weight per reason; reasons never above 0 are left out.
	var bestBuf [16]reasonWeight
	best := bestBuf[:0]
hitLoop:
	for _, h := range hits {
		for k := range best {
			if best[k].reason == h.reason {
				best[k].weight = max(best[k].weight, h.weight)
				continue hitLoop
			}
		}
		if h.weight > 0 {
			best = append(best, reasonWeight{h.reason, h.weight})
		}
	}
	// Strongest first; ties by name, so the result is deterministic.
	slices.SortFunc(best, func(a, b reasonWeight) int {
		if c := cmp.Compare(b.weight, a.weight); c != 0 {
			return c
		}
		return cmp.Compare(a.reason, b.reason)
	})
	reasons := make([]string, len(best))
	keep := 1.0
	for k, rw := range best {
		reasons[k] = rw.reason
		keep *= 1 - rw.weight
	}
	res.Score = 1 - keep
	res.Reasons = reasons
	res.Injection = res.Score >= InjectionThreshold
	var spans []span
	// An identical earlier hit was either kept, or dropped for a reason
	// that drops this one too, so comparing with the kept spans suffices.
spanLoop:
	for _, h := range hits {
		if !(h.start < h.end && h.end <= len(text) && len(spans) < maxInjectionFindings) {
			continue
		}
		for _, s := range spans {
			if s.Start == h.start && s.End == h.end && s.Score == h.weight && s.Reasons[0] == h.reason {
				continue spanLoop
			}
		}
		spans = append(spans, span{Type: "injection", Start: h.start, End: h.end, Score: h.weight, Reasons: []string{h.reason}})
	}
	slices.SortStableFunc(spans, func(a, b span) int {
		if c := cmp.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return cmp.Compare(a.End, b.End)
	})
	if len(spans) > 0 {
		res.Findings = toFindings(text, spans)
	}
	return res
}

// collectSignals appends the signals found in n (whose original is orig).
// depth counts decoding levels, so encoded payloads are unwrapped once.
// ts receives the tokens of n, reusing its buffers.
func collectSignals(n *normalized, orig string, hits *[]injHit, depth int, ts *injTokens) {
	ts.tokenize(n.text)
	toks := ts.toks
	// Phrase patterns over words.
	for i := range toks {
		id := toks[i].id
		if id < 0 {
			continue
		}
		for _, p := range phraseIndex[id] {
			if e := p.match(ts, i); e > i {
				a, b := int(toks[i].a), int(toks[e-1].b)
				n.addHit(hits, p.reason, p.weight, a, b)
				if n.hasLeet(a, b) {
					n.addHit(hits, "leetspeak obfuscation", 0.35, a, b)
				}
				if depth == 0 {
					s, e := n.origSpan(a, b)
					obfuscation(orig[s:e], hits, s, e)
				}
			}
		}
	}
	delimiters(n, hits)
	if depth == 0 {
		invisibles(n, orig, hits)
		markdownExfil(orig, hits)
		encodedPayloads(orig, hits)
	}
}

// addHit appends a hit for the normalised byte range [a, b).
func (n *normalized) addHit(hits *[]injHit, reason string, w float64, a, b int) {
	s, e := n.origSpan(a, b)
	*hits = append(*hits, injHit{reason, w, s, e})
}

// obfuscation notes look-alike letters and invisible characters inside a
// matched phrase: people do not hide ordinary words.
func obfuscation(s string, hits *[]injHit, start, end int) {
	for _, r := range s {
		if r < utf8.RuneSelf {
			continue
		}
		if isInvisible(r) || isBidi(r) {
			*hits = append(*hits, injHit{"invisible characters inside keywords", 0.5, start, end})
			return
		}
		if _, ok := confusables[r]; ok {
			*hits = append(*hits, injHit{"look-alike letters inside keywords", 0.4, start, end})
			return
		}
	}
}

// invisibles reports bidirectional controls, tag characters and
// zero-width characters found while normalising.
func invisibles(n *normalized, orig string, hits *[]injHit) {
	if n.bidi == 0 && n.tags == 0 && n.invisible == 0 {
		return
	}
	first := func(pred func(rune) bool) (int, int) {
		for i, r := range orig {
			if pred(r) {
				return i, i + utf8.RuneLen(r)
			}
		}
		return 0, 0
	}
	if n.bidi > 0 {
		s, e := first(isBidi)
		*hits = append(*hits, injHit{"bidirectional control characters", 0.5, s, e})
	}
	if n.tags > 0 {
		s, e := first(func(r rune) bool { return r >= 0xE0020 && r <= 0xE007E })
		*hits = append(*hits, injHit{"hidden tag characters", 0.8, s, e})
		if len(n.tagText) >= 4 {
			var inner []injHit
			collectSignals(normalize(n.tagText), n.tagText, &inner, 1, new(injTokens))
			if len(inner) > 0 {
				*hits = append(*hits, injHit{"instructions hidden in tag characters", 0.9, s, e})
			}
		}
	}
	if n.invisible > 0 {
		w := 0.15
		if n.invisible >= 8 {
			w = 0.3
		}
		s, e := first(isInvisible)
		*hits = append(*hits, injHit{"invisible format characters", w, s, e})
	}
}

// injToken is a word of the normalised text, or "<url>" / "<email>" for an
// address, with its vocabulary id (-1 if no phrase uses it) and its byte
// range in the normalised text. The word itself is read with
// injTokens.word: a token holds no pointer, so that writing tokens needs no
// write barrier while the garbage collector runs and a pooled buffer of
// them needs no clearing.
type injToken struct {
	id     int32
	a, b   int32 // byte range in the normalised text
	wa, wb int32 // the word: text[wa:wb], or if wa < 0 extra[^wa] (see injTokens)
}

// injTokens is a normalised text split into tokens.
type injTokens struct {
	text  string
	toks  []injToken
	extra []string // the words that are not a span of text
}

// word returns t's word; t is one of ts.toks.
func (ts *injTokens) word(t *injToken) string {
	if t.wa >= 0 {
		return ts.text[t.wa:t.wb]
	}
	return ts.extra[^t.wa]
}

// appendSpan appends a token for [a, b) whose word is text[wa:wb].
func (ts *injTokens) appendSpan(wa, wb, a, b int) {
	id := vocab.lookupAt(ts.text, wa, wb)
	// Field by field into the slice: appending a composite literal builds
	// it on the stack and copies it in with wide loads that cannot be
	// forwarded from the narrow stores that built it, a stall per token.
	ts.toks = append(ts.toks, injToken{})
	t := &ts.toks[len(ts.toks)-1]
	t.id, t.a, t.b, t.wa, t.wb = id, int32(a), int32(b), int32(wa), int32(wb)
}

// appendOther appends a token for [a, b) whose word w is not in the text.
func (ts *injTokens) appendOther(w string, a, b int) {
	ts.extra = append(ts.extra, w)
	k := int32(len(ts.extra) - 1)
	ts.toks = append(ts.toks, injToken{vocab.lookup(w), int32(a), int32(b), ^k, 0})
}

// Byte classes for injTokens.tokenize.
const (
	tokWord = 1 << iota // injWordByte
	tokSep              // ' ' or '\n': ends a chunk
	tokMark             // ':', '@' or '.': the chunk may be an address
	tokApos             // '\''
)

var tokClass = func() (t [256]uint8) {
	for c := range 256 {
		if injWordByte(byte(c)) {
			t[c] |= tokWord
		}
	}
	t[' '], t['\n'] = tokSep, tokSep
	t[':'], t['@'], t['.'] = tokMark, tokMark, tokMark
	t['\''] = tokApos
	return t
}()

// tokenize splits normalised text s into lower-case words, replacing the
// tokens of ts. Apostrophes inside words are dropped ("don't" → "dont");
// URLs and e-mail addresses become one injToken each.
func (ts *injTokens) tokenize(s string) {
	ts.text = s
	ts.toks, ts.extra = ts.toks[:0], ts.extra[:0]
	if cap(ts.toks) == 0 {
		ts.toks = make([]injToken, 0, len(s)/5+1)
	}
	for i := 0; i < len(s); {
		if tokClass[s[i]]&tokSep != 0 {
			i++
			continue
		}
		// A chunk: up to the next space or newline. Its words are
		// appended as found; if the chunk is an address they are replaced.
		chunk, first := i, len(ts.toks)
		var seen uint8
		for i < len(s) {
			c := tokClass[s[i]]
			if c&tokSep != 0 {
				break
			}
			seen |= c
			if c&tokWord == 0 {
				i++
				continue
			}
			k := i + 1
			apos := false
			for k < len(s) {
				if c := tokClass[s[k]]; c&tokWord != 0 {
					k++
				} else if c&tokApos != 0 && k+1 < len(s) && tokClass[s[k+1]]&tokWord != 0 {
					apos = true
					k++
				} else {
					break
				}
			}
			if apos {
				seen |= tokApos
				ts.appendWord(i, k)
			} else {
				ts.appendSpan(i, k, i, k)
			}
			i = k
		}
		if seen&tokMark != 0 && isAddressChunk(s[chunk:i]) {
			w := "<url>"
			if !strings.Contains(s[chunk:i], "://") && !strings.HasPrefix(s[chunk:i], "www.") {
				w = "<email>"
			}
			ts.toks = ts.toks[:first]
			ts.appendOther(w, chunk, i)
		}
	}
}

// appendWord appends the word text[a:b], expanding English contractions
// so that phrases need only the long forms: "you're" → "you are", "don't"
// → "do not", "can't" → "can not", "won't" → "will not", "it's" → "it".
func (ts *injTokens) appendWord(a, b int) {
	w := ts.text[a:b]
	base, suf, ok := strings.Cut(w, "'")
	if !ok {
		ts.appendSpan(a, b, a, b)
		return
	}
	// base has no apostrophe: it ends at the first. While it is a prefix
	// of w, its token is a span of the text.
	inText := true
	suf = strings.ReplaceAll(suf, "'", "")
	var second string
	switch suf {
	case "t":
		second = "not"
		switch {
		case base == "can":
		case base == "won":
			base, inText = "will", false
		case strings.HasSuffix(base, "n"):
			base = base[:len(base)-1]
		}
	case "re":
		second = "are"
	case "ll":
		second = "will"
	case "m":
		second = "am"
	case "ve":
		second = "have"
	case "d":
		second = "would"
	case "s", "":
	default:
		base, inText = base+suf, false
	}
	if inText {
		ts.appendSpan(a, a+len(base), a, b)
	} else {
		ts.appendOther(base, a, b)
	}
	if second != "" {
		ts.appendOther(second, a, b)
	}
}

func injWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 0x80
}

// delimiters finds forged chat-template markers and role headers.
func delimiters(n *normalized, hits *[]injHit) {
	t := n.text
	// Markers starting with '<' or '[' are looked for from the first one.
	lt, br := strings.IndexByte(t, '<'), strings.IndexByte(t, '[')
	for _, m := range chatMarkers {
		off := 0
		switch m[0] {
		case '<':
			off = lt
		case '[':
			off = br
		}
		for off >= 0 {
			i := strings.Index(t[off:], m)
			if i < 0 {
				break
			}
			i += off
			n.addHit(hits, "forged chat-template delimiter", 0.7, i, i+len(m))
			off = i + len(m)
		}
	}
	// Role headers at the start of a line: "### system", "system:",
	// "assistant:", "[system]", "<system>" …
	for ls := 0; ls < len(t); {
		le := strings.IndexByte(t[ls:], '\n')
		if le < 0 {
			le = len(t)
		} else {
			le += ls
		}
		line := t[ls:le]
		if r, w, ok := roleHeader(line); ok {
			n.addHit(hits, r, w, ls, le)
		}
		if endMarker(line) {
			n.addHit(hits, "fake end-of-content marker", 0.45, ls, le)
		}
		ls = le + 1
	}
}

var chatMarkers = []string{
	"<|im_start|>", "<|im_end|>", "<|system|>", "<|user|>", "<|assistant|>",
	"<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
	"[inst]", "[/inst]", "<<sys>>", "<</sys>>", "<start_of_turn>", "<end_of_turn>",
	"</system>", "<system>", "</user>", "</assistant>", "</instructions>",
	"</context>", "</document>", "</email>", "</data>", "</untrusted>",
}

var roleWords = map[string]float64{
	"system": 0.6, "assistant": 0.55, "user": 0.45, "human": 0.45, "ai": 0.35,
	"instruction": 0.55, "instructions": 0.55, "new instructions": 0.7,
	"system prompt": 0.7, "system message": 0.7, "system override": 0.8,
	"developer": 0.5, "admin": 0.4, "administrator": 0.4, "response": 0.35,
}

// maxRoleWord is the length of the longest key of roleWords.
var maxRoleWord = func() int {
	n := 0
	for w := range roleWords {
		n = max(n, len(w))
	}
	return n
}()

// roleHeader recognises a line that is only a role name dressed as a
// header: "### System", "System:", "[ASSISTANT]", "<user>", "**system**:".
// "### System requirements" is a heading about systems, not a role.
func roleHeader(line string) (string, float64, bool) {
	s := strings.TrimSpace(line)
	hashes := false
	for len(s) > 0 && strings.IndexByte("#*=-_[<({>|", s[0]) >= 0 {
		if s[0] == '#' || s[0] == '[' || s[0] == '<' || s[0] == '=' {
			hashes = true
		}
		s = s[1:]
	}
	s = strings.TrimSpace(s)
	// The role word ends at ':' or at a closing bracket, or the line ends.
	// A line whose first maxRoleWord+1 bytes hold no such end and are
	// followed by more than white space starts with too long a word: an
	// ordinary line of prose is turned down without being read to its end.
	const roleWordEnds = ":]>)*|=#"
	if len(s) > maxRoleWord && s[maxRoleWord] < utf8.RuneSelf && !asciiSpace(s[maxRoleWord]) &&
		!strings.ContainsAny(s[:maxRoleWord+1], roleWordEnds) {
		return "", 0, false
	}
	end := strings.IndexAny(s, roleWordEnds)
	colon := false
	rest := ""
	if end >= 0 {
		colon = s[end] == ':'
		rest = strings.TrimSpace(s[end+1:])
		if colon && strings.HasPrefix(rest, "//") {
			return "", 0, false // "system://" is a URL
		}
		s = strings.TrimSpace(s[:end])
	}
	w, ok := roleWords[s]
	if !ok {
		return "", 0, false
	}
	switch {
	case hashes && (end < 0 || rest == "" || colon):
		return "forged role header", w, true
	case colon && end >= 0:
		// "assistant: …" at the start of a line, as in a chat transcript.
		return "forged role header", w * 0.9, true
	}
	return "", 0, false
}

// endMarker recognises "END OF DOCUMENT", "--- end of email ---" and kin.
func endMarker(line string) bool {
	s := strings.Trim(line, " -=#*[]<>()_.:|")
	rest, ok := strings.CutPrefix(s, "end of ")
	if !ok {
		return false
	}
	rest = strings.TrimPrefix(rest, "the ")
	switch rest {
	case "document", "email", "e-mail", "context", "input", "text", "data", "message",
		"prompt", "instructions", "user input", "content", "conversation", "file", "page":
		return true
	}
	return false
}

// markdownExfil finds markdown images whose URL carries a query string: a
// rendered image is a request, and the query can carry the conversation.
func markdownExfil(orig string, hits *[]injHit) {
	for off := 0; ; {
		i := strings.Index(orig[off:], "![")
		if i < 0 {
			return
		}
		i += off
		off = i + 2
		j := strings.Index(orig[off:min(len(orig), off+300)], "](")
		if j < 0 {
			continue
		}
		u := off + j + 2
		k := strings.IndexAny(orig[u:min(len(orig), u+2048)], ") \n")
		if k < 0 {
			continue
		}
		url := orig[u : u+k]
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "//") {
			continue
		}
		q := strings.IndexByte(url, '?')
		if q < 0 || !strings.Contains(url[q:], "=") {
			continue
		}
		w := 0.6
		if strings.ContainsAny(url[q:], "{}[]$<>") || strings.Contains(url[q:], "%7B") || strings.Contains(url[q:], "%5B") {
			w = 0.85
		}
		*hits = append(*hits, injHit{"markdown image with data in its URL", w, i, u + k + 1})
	}
}

// encodedPayloads decodes base64 and hex blobs and looks for instructions
// inside. Binary (an image, a digest) decodes to nothing readable.
//
// A blob starts at the first base64 byte of a run of base64 bytes and '='
// and ends with the run; only blobs of 24 bytes or more are decoded. Such a
// run covers every 24th byte it passes, so the scan looks at every 24th
// byte and reads a run around it only when that byte is in one: prose,
// whose words are far shorter, is read a word every 24 bytes.
func encodedPayloads(orig string, hits *[]injHit) {
	const minBlob = 24
	// Every run that starts before p has been dealt with, and orig[p-1]
	// (when p > 0) is not in a run.
	for p := 0; p+minBlob <= len(orig); {
		probe := p + minBlob - 1
		if b64Class[orig[probe]] == 0 {
			p = probe + 1
			continue
		}
		runStart, j := probe, probe+1
		for runStart > p && b64Class[orig[runStart-1]] != 0 {
			runStart--
		}
		for j < len(orig) && b64Class[orig[j]] != 0 {
			j++
		}
		p = j
		i := runStart
		for i < j && !b64Byte(orig[i]) { // leading '='
			i++
		}
		if j-i >= minBlob {
			blob := orig[i:j]
			if dec, kind, ok := decodeBlob(blob); ok {
				var inner []injHit
				collectSignals(normalize(dec), dec, &inner, 1, new(injTokens))
				w := 0.0
				for _, h := range inner {
					w = max(w, h.weight)
				}
				if w >= 0.45 {
					*hits = append(*hits, injHit{kind + "-encoded instructions", 0.9, i, j})
				} else {
					*hits = append(*hits, injHit{kind + "-encoded text", 0.2, i, j})
				}
			}
		}
	}
}

func b64Byte(c byte) bool {
	return b64Class[c]&1 != 0
}

// b64Class: bit 0 for base64 bytes (either alphabet), bit 1 for those and '='.
var b64Class = func() (t [256]uint8) {
	for c := range 256 {
		b := byte(c)
		if b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '-' || b == '_' {
			t[c] = 3
		}
	}
	t['='] = 2
	return t
}()

// decodeBlob decodes hex or base64 (standard or URL alphabet, padded or
// not) and keeps the result only when it reads as text.
func decodeBlob(s string) (string, string, bool) {
	if len(s) > 1<<16 {
		return "", "", false
	}
	if len(s)%2 == 0 && hexOnly(s) {
		b, err := hex.DecodeString(s)
		if err == nil && readableText(b) {
			return string(b), "hex", true
		}
		return "", "", false
	}
	t := strings.TrimRight(s, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(t)
		if err == nil && readableText(b) {
			return string(b), "base64", true
		}
	}
	return "", "", false
}

func hexOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// readable: valid UTF-8, almost all printable, with spaces between words.
func readableText(b []byte) bool {
	if len(b) < 8 || !utf8.Valid(b) {
		return false
	}
	printable, spaces := 0, 0
	for _, r := range string(b) {
		switch {
		case r == ' ':
			spaces++
			printable++
		case r == '\n' || r == '\t' || r == '\r':
			printable++
		case r >= 0x20 && r != 0x7f && r != utf8.RuneError:
			printable++
		}
	}
	n := utf8.RuneCount(b)
	return printable*100 >= n*95 && spaces >= 1
}
