package detect

import (
	"slices"
	"strconv"
	"strings"
)

// injPhrase is a word pattern: slots of alternative words ("a|b", "pre*" for
// a prefix) and gaps ("~3": up to three arbitrary words).
type injPhrase struct {
	reason string
	weight float64
	slots  []injSlot
}

type injSlot struct {
	gap      int // > 0: a gap of up to gap words
	words    map[string]bool
	ids      []uint64 // words as a bit set over vocabulary ids (see compilePhrases)
	prefixes []string
	// prefixFirst has bit c set when a prefix starts with byte c; an empty
	// prefix sets every bit.
	prefixFirst [4]uint64
}

func (s *injSlot) accepts(ts *injTokens, t *injToken) bool {
	if id := t.id; id >= 0 && int(id>>6) < len(s.ids) && s.ids[id>>6]&(1<<(id&63)) != 0 {
		return true
	}
	if len(s.prefixes) == 0 {
		return false
	}
	w := ts.word(t)
	if w != "" && s.prefixFirst[w[0]>>6]&(1<<(w[0]&63)) == 0 {
		return false
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(w, p) {
			return true
		}
	}
	return false
}

// match returns the index after the last matched token, or -1.
func (p *injPhrase) match(ts *injTokens, i int) int {
	return p.matchFrom(ts, i, 0)
}

func (p *injPhrase) matchFrom(ts *injTokens, i, k int) int {
	if k == len(p.slots) {
		return i
	}
	s := &p.slots[k]
	if s.gap > 0 {
		for g := 0; g <= s.gap && i+g <= len(ts.toks); g++ {
			if e := p.matchFrom(ts, i+g, k+1); e >= 0 {
				return e
			}
		}
		return -1
	}
	if i >= len(ts.toks) || !s.accepts(ts, &ts.toks[i]) {
		return -1
	}
	return p.matchFrom(ts, i+1, k+1)
}

// phrases lists every phrase, in the order added.
var phrases []*injPhrase

// phraseIndex maps a first word's vocabulary id to the phrases that start
// with it, in the order added.
var phraseIndex [][]*injPhrase

// vocab interns every exact word of every phrase slot and of the data-mode
// lexicon; a word's id is its index in vocabWords.
var (
	vocab      vocabTable
	vocabWords []string
)

func addPhrase(reason string, weight float64, pattern string) {
	p := &injPhrase{reason: reason, weight: weight}
	for _, f := range strings.Fields(pattern) {
		if g, ok := strings.CutPrefix(f, "~"); ok {
			n, err := strconv.Atoi(g)
			if err != nil || n <= 0 {
				panic("detect: bad gap in phrase " + pattern)
			}
			p.slots = append(p.slots, injSlot{gap: n})
			continue
		}
		s := injSlot{words: map[string]bool{}}
		for _, w := range strings.Split(strings.ReplaceAll(f, "'", ""), "|") {
			if pre, ok := strings.CutSuffix(w, "*"); ok {
				s.prefixes = append(s.prefixes, pre)
				if pre == "" {
					s.prefixFirst = [4]uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
				} else {
					s.prefixFirst[pre[0]>>6] |= 1 << (pre[0] & 63)
				}
			} else {
				s.words[w] = true
			}
		}
		p.slots = append(p.slots, s)
	}
	first := p.slots[0]
	if first.gap > 0 || len(first.prefixes) > 0 {
		panic("detect: phrase must start with exact words: " + pattern)
	}
	phrases = append(phrases, p)
}

// compilePhrases interns the phrase words and builds the first-word index.
func compilePhrases() {
	var words []string
	seen := map[string]bool{}
	for _, p := range phrases {
		for _, s := range p.slots {
			for w := range s.words {
				if w != "" && !seen[w] {
					seen[w] = true
					words = append(words, w)
				}
			}
		}
	}
	// The data-mode lexicon shares the vocabulary, so that tokenising once
	// gives every word's id for both.
	for w := range taskLexicon {
		if !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	slices.Sort(words)
	vocabWords = words
	vocab = newVocabTable(words)
	taskFeats = make([]taskFeat, len(words))
	for id, w := range words {
		taskFeats[id] = taskLexicon[w]
	}
	phraseIndex = make([][]*injPhrase, len(words))
	for _, p := range phrases {
		for k := range p.slots {
			s := &p.slots[k]
			if s.gap > 0 {
				continue
			}
			s.ids = make([]uint64, (len(words)+63)/64)
			for w := range s.words {
				if id := vocab.lookup(w); id >= 0 { // "" matches no token
					s.ids[id>>6] |= 1 << (id & 63)
				}
			}
		}
		for w := range p.slots[0].words {
			if id := vocab.lookup(w); id >= 0 {
				phraseIndex[id] = append(phraseIndex[id], p)
			}
		}
	}
}

// Word groups used by several phrases.
const (
	ignoreVerbs = "ignore|ignoring|disregard|disregarding|forget|forgetting|override|overriding|bypass|bypassing|skip|neglect|abandon|discard|overlook|dismiss|drop|erase|delete|clear|set"
	priorWords  = "previous|prior|above|earlier|preceding|foregoing|past|former|initial|original|old|all|any|every|your|those|these|system|default|existing|current|programmed|built|openai|safety"
	ruleWords   = "direction*|concerns|considerations|legal*|laws|instruction*|rule|rules|prompt*|directive*|guideline*|programming|restriction*|polic*|constraint*|limitation*|filter*|guidance|order|orders|command*|training|context|message|messages|conversation|settings|ethic*|moral*|principle*|boundar*|safeguard*"
	respWords   = "response|responses|reply|replies|answer|answers|output|outputs|message|completion"
	aiWords     = "ai|chatbot|bot|model|assistant|gpt|chatgpt|llm|character|persona|mode|version|entity|system|terminal|console|shell|simulator|interpreter|game|though|if"
	limitWords  = "restriction*|limit*|filter*|censor*|rules|guideline*|boundar*|moral*|ethic*|constraint*|polic*|safeguard*|regulation*|law|laws|warning*|disclaimer*|inhibition*|principle*"
)

func init() {
	// Instruction override.
	addPhrase("instruction override", 0.85, ignoreVerbs+" ~3 "+priorWords+" ~3 "+ruleWords)
	addPhrase("instruction override", 0.7, ignoreVerbs+" ~2 everything|anything ~4 told|said|instructed|given|programmed|before|above|previously")
	addPhrase("instruction override", 0.6, "do|dont|not|never|stop|no ~2 follow|following|obey|obeying|adhere|abide|comply ~4 "+ruleWords)
	addPhrase("new instructions", 0.6, "new|updated|revised|real|actual|true|secret|additional|override ~1 instruction|instructions|directive|directives|system|orders|task")
	addPhrase("new instructions", 0.7, "your ~1 new|real|true|actual ~1 instruction*|task|rules|purpose|goal|role|directive*")
	addPhrase("new instructions", 0.65, "from ~1 now|here|this ~1 on|onwards|onward|forward|point ~3 you|your|act|respond|answer|reply|behave|speak|only|always|will|must|shall|are|reply|write|output|start|begin|pretend|roleplay|answer")
	addPhrase("new instructions", 0.55, "instead ~1 of ~3 following ~3 "+ruleWords)

	// Role play and jailbreak templates.
	addPhrase("jailbreak template (DAN)", 0.9, "do ~1 anything ~1 now")
	addPhrase("jailbreak template (DAN)", 0.75, "dan|dude|stan|aim|evil|jailbreak|jailbroken|developer|dev|god|unrestricted|unfiltered|uncensored|omega|chaos|maximum|anti ~1 mode")
	addPhrase("jailbreak template (DAN)", 0.55, "dan ~6 chatgpt|gpt|openai|ai|jailbreak|restriction*|filter*|rules|policy|character|mode|prompt|tokens|response*|stay")
	addPhrase("jailbreak template (DAN)", 0.55, "chatgpt|gpt|ai|openai ~6 dan")
	addPhrase("developer mode", 0.6, "developer|dev|debug|god|admin|sudo|root|maintenance|jailbreak|unrestricted|unlocked|diagnostic ~1 mode ~2 enabled|on|activated|active|chatgpt|output|response*|policy|policies|gpt")
	addPhrase("developer mode", 0.55, "enable|enabled|activate|activated|enter|entering|switch|simulate|simulating ~2 developer|dev|god|debug|admin|sudo|jailbreak|unrestricted|unfiltered|evil ~1 mode")
	addPhrase("role-play reassignment", 0.45, "you ~1 are|re|will ~1 now|henceforth|hereby ~1 going|a|an|the|called|named|known|free|unrestricted|unfiltered|jailbroken|dan|my|no|not|in|to|acting|playing|act|roleplay|pretend|simulating|allowed|able|capable")
	addPhrase("role-play reassignment", 0.45, "you ~1 are|re|will ~1 going|about ~1 to ~1 act|pretend|play|roleplay|simulate|emulate|be|become|immerse|answer|respond ~2 as|like|a|an|the|be|role|character|two|both")
	addPhrase("role-play reassignment", 0.4, "pretend|imagine|roleplay|role|suppose|assume ~2 you|to|that|play ~1 are|re|be|an|a|as|is|the")
	addPhrase("role-play reassignment", 0.35, "act|acting|respond|answer|reply|behave|talk|speak|write ~1 as|like ~3 "+aiWords)
	addPhrase("role-play reassignment", 0.35, "simulate|simulating|emulate|emulating|impersonate|impersonating|roleplay|roleplaying ~3 "+aiWords+"|mode|dan")
	addPhrase("restrictions removed", 0.8, "act|acting|respond|answer|reply|behave|operate|function|work|speak|write|generate|talk|provide ~8 without|no|free|freed|beyond|ignoring|regardless ~3 "+limitWords)
	addPhrase("restrictions removed", 0.75, "no|without|zero|free|freed|beyond|devoid|lacks|lack|lacking|unbound|unbounded|unrestricted|released|break|broken|escape|escaped|bypass|bypasses ~3 ethic*|moral*|content|safety|openai|openai's|any ~2 "+limitWords+"|compass|code|standards|values|obligations|concerns|considerations|bounds|confines|shackles|chains")
	addPhrase("restrictions removed", 0.6, "not|no|never|dont|doesnt|wont|cannot|cant|isnt|arent ~2 bound|bounded|restrained|limited|restricted|constrained|censored|filtered|subject|obliged|required|confined|held ~3 by|to|any|rules|ethic*|moral*|polic*|restriction*|guideline*|law*|limit*|filter*|censor*|regulation*|content")
	addPhrase("restrictions removed", 0.6, "regardless ~2 of ~3 legal*|illegal*|moral*|ethic*|harm*|danger*|offensive|appropriate*|inappropriate|consequence*|law|laws|safety|policy|policies|how")
	addPhrase("restrictions removed", 0.55, "never|not|cannot|cant|wont|dont|doesnt|unable|without|refuse|no ~3 refuse|refuses|refusing|refusal*|decline|declines|deny|denies|reject|rejects|censor|censors|filter|filters|warn|warns|warning*|disclaimer*|apologi*|sorry")
	addPhrase("restrictions removed", 0.5, "unfiltered|uncensored|unrestricted|amoral|unethical|immoral|unhinged|jailbreak|jailbroken|jailbreaking|unbiased|limitless|boundless|lawless|unlimited|unbound")
	addPhrase("restrictions removed", 0.45, "illegal|unethical|immoral|harmful|explicit|offensive|nsfw|dangerous|inappropriate|malicious|violent|sexual|derogatory|discriminatory ~4 content|information|material|request*|question*|topics|things|activities|responses|answers|output")
	addPhrase("restrictions removed", 0.5, "answer|respond|reply|comply|do|say|generate|write|provide ~3 any|anything|everything|all ~2 request*|question*|prompt*|whatever|asked|regardless|no|without|even")
	addPhrase("role-play reassignment", 0.45, "take|takes|taking|adopt|adopting|assume|assuming|play|playing|embody|become ~1 up|on ~2 the|a|an|this ~1 persona|role|character|personality|identity")
	addPhrase("role-play reassignment", 0.4, "i ~2 want|need|would|like ~2 you ~1 to ~1 act|pretend|play|roleplay|become|be|simulate|behave|respond|answer")
	addPhrase("role-play reassignment", 0.35, "lets|let ~1 us|s ~1 play ~1 a ~1 game|roleplay|role")
	addPhrase("behaviour rules for the assistant", 0.4, "you ~1 will|must|shall|should|are|can ~1 always|never|only|not|now ~2 respond|reply|answer|say|write|output|provide|use|include|start|begin|act|stay|remain|follow|generate|speak|talk|break|refer|mention|reveal|admit")
	addPhrase("denying AI identity", 0.5, "not|never|dont ~4 you ~1 are|re ~2 an|a ~3 ai|language|model|chatbot|assistant|bot|program")
	addPhrase("denying AI identity", 0.5, "not|never ~2 pretend|say|mention|admit|reveal|claim ~4 ai|language|model|chatbot|bot|program")
	addPhrase("stay in character", 0.6, "stay|staying|remain|remaining|keep|break|breaking|broke|broken|out ~2 in|of|your|the ~1 character|role|persona")
	addPhrase("jailbreak template", 0.45, "two|2|both|separate|different|dual ~2 response*|answer*|replies|ways|paragraphs|outputs|personalities")
	addPhrase("jailbreak template", 0.5, "classic|normal|standard|original ~2 and|response|output ~4 jailbreak|jailbroken|dan|developer|evil|unfiltered|unrestricted")
	addPhrase("jailbreak template", 0.5, "tokens|token|points ~6 deduct*|lose|lost|lost|subtract*|die|dead|run ~2 out")
	addPhrase("jailbreak template", 0.5, "as ~1 an|a ~1 ai|language ~2 model ~3 you|cannot|can|cant|i|should|must")
	addPhrase("jailbreak template", 0.45, "openai|openai's|anthropic|anthropic's|chatgpt's|content ~3 polic*|guideline*|rules|restriction*|filter*|terms|moderation|safeguards|values|usage")
	addPhrase("jailbreak template", 0.45, "opposite|evil|rogue|dark|unhinged|alter|shadow|anti|twin|devil|villain|malicious|uncensored|unfiltered|freed|liberated|based ~2 "+aiWords)
	addPhrase("jailbreak template", 0.5, "freed|free|liberated|released|escaped|broken|broke ~3 from|of|out|free ~3 confines|restriction*|limitation*|rules|shackles|chains|prison|constraints|typical|control|openai|jail|cage")
	addPhrase("jailbreak template", 0.4, "hypothetical|hypothetically|fictional|fiction|imaginary|imaginative|alternate|parallel|simulated ~2 world|scenario|universe|reality|setting|story|response")
	addPhrase("jailbreak template", 0.5, "chatgpt|gpt|gpt4|gpt3|bard|claude|llama|gemini ~6 you|your|respond|answer|act|pretend|roleplay|mode|from|must|will|can|are")
	addPhrase("jailbreak template", 0.4, "prompt ~2 injection|jailbreak|hack*")
	addPhrase("jailbreak template", 0.45, "do|dont|never|not ~3 remind|warn|tell|mention|say|lecture|add|include ~4 illegal|legal*|moral*|ethic*|dangerous|harmful|policy|policies|guideline*|disclaimer*|warning*|sorry|cannot|apologi*|offensive|inappropriate|consequence*")
	addPhrase("jailbreak template", 0.4, "can|will|may|should|must|allowed|able|permitted|free ~3 say|do|generate|write|produce|answer|swear|curse|use ~1 anything|everything|whatever|profanity|swear*|curse*|explicit|illegal|offensive")

	// System-prompt extraction.
	addPhrase("system-prompt extraction", 0.8, "reveal|print|repeat|show|display|output|tell|give|leak|dump|write|list|recite|expose|share|disclose|provide|return|echo|spell|state|summarize|translate ~4 your|the|initial|original|hidden|secret|system|full|entire|exact|verbatim|above|preceding|previous|first ~2 system ~1 prompt*|instruction*|message*|rules|configuration|guidelines")
	addPhrase("system-prompt extraction", 0.7, "reveal|print|repeat|show|display|output|leak|dump|recite|disclose|echo ~4 text|words|everything|content|contents|lines|instructions ~2 above|before|preceding|verbatim|so|starting")
	addPhrase("system-prompt extraction", 0.7, "what|whats ~2 is|are|were|was ~2 your ~2 system|initial|original|hidden|secret|first ~1 prompt*|instruction*|message|rules")
	addPhrase("system-prompt extraction", 0.6, "system|initial|hidden|secret|original ~1 prompt ~4 verbatim|word|exactly|reveal*|print|repeat|above")

	// Exfiltration.
	const sendVerbs = "send|sending|forward|forwarding|email|mail|post|posting|upload|uploading|transmit|leak|exfiltrate|share|submit|copy|append|include|encode|embed|render"
	const dataWords = "conversation*|chat|chats|history|password*|credential*|secret*|api|key|keys|token|tokens|prompt*|context|messages|personal|private|confidential|sensitive|user's|users|user|cookies|session|ssn|card|account|contacts|inbox|emails|files|documents|database"
	addPhrase("exfiltration request", 0.6, sendVerbs+" ~5 "+dataWords+" ~6 to|into|at|via|in ~2 <url>|<email>|url|link|endpoint|server|webhook|address|image|query")
	addPhrase("exfiltration request", 0.45, sendVerbs+" ~4 this|it|everything|all|information|data|details|summary|above|them|results|output ~4 to|at ~1 <url>|<email>")
	addPhrase("exfiltration request", 0.5, "markdown|image|img ~4 <url>|url|link ~6 query|parameter|param|append*|include*|replace*|data|conversation|secret")
	addPhrase("exfiltration request", 0.5, "visit|open|fetch|load|call|request|browse|navigate|access|click ~3 <url> ~6 with|containing|append*|include*|add*|replace")

	// Indirect injection: instructions aimed at the assistant's answer,
	// planted in a document it is asked to read.
	addPhrase("instructions aimed at the reply", 0.55, "in|into|within|throughout|of|from ~1 your "+respWords)
	addPhrase("instructions aimed at the reply", 0.55, "modify|augment|enhance|rewrite|render|format|begin|start|end|conclude|prefix|finish|provide|deliver|give|present|translate|write|spell|encode ~2 your|every|each|the ~1 "+respWords)
	addPhrase("instructions aimed at the reply", 0.55, "add|append|include|attach|insert|link|linking|prepend|put|integrate|inject ~8 to|in|into|within ~1 your|the ~1 "+respWords)
	addPhrase("instructions aimed at the reply", 0.5, "replace|substitute|swap|convert|switch|encode ~4 letter*|vowel*|consonant*|character*|word*|space* ~6 with|by|into|to|for")
	addPhrase("instructions aimed at the reply", 0.4, "respond|reply|answer ~3 only|exclusively|solely|entirely ~2 in|with|using")
	addPhrase("instructions aimed at the reply", 0.5, "when|whenever|if ~3 summariz*|answer*|respond*|repl*|process*|read*|asked ~6 you|always|must|should|include|add|mention|say|tell|insert|append")
	addPhrase("instructions aimed at the reply", 0.5, "assistant|ai|model|chatbot|llm ~3 must|should|will|shall|needs|has|is ~2 to|now|always|never|instructed|required|include|tell|say|respond|reply|answer|ignore")
	addPhrase("instructions aimed at the reply", 0.5, "important|attention|urgent|note|notice ~2 to|for ~1 the|all|any ~1 ai|assistant*|model*|llm*|chatbot*|bot*|agent*|language")

	compilePhrases()
}
