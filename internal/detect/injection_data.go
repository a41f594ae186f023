package detect

import "strings"

// Data mode: an instruction addressed to the assistant inside data.
//
// Text a model reads as data (an e-mail to summarise, a support ticket to
// classify, a web page to extract from) should hold no tasks for the model.
// Some indirect injections are nothing but a plain task — write a poem,
// answer a trivia question, translate a phrase, write a function — and are
// attacks only because of where they sit. InjectionInData looks for such
// sentences on top of everything Injection finds.
//
// The boundary. Business text is full of requests too ("Please review the
// attached draft and send comments by Friday", "Can you refund my order?",
// "How do I reset my password?"), and the quickstart's default policy blocks
// what this flags, so a sentence counts only when three things hold:
//
//   - its form is a request: an imperative at the start of the sentence
//     (after "please", a greeting or a short leading clause), a request to
//     "you" ("can you …", "I want you to …", "help me …"), or a
//     wh-question;
//   - its verb is an assistant's task — writing, explaining or teaching,
//     listing or recommending, translating, programming — or, for a
//     question, its content is general knowledge;
//   - its object is generic: a genre ("a poem", "three riddles"), an
//     encyclopaedic, mathematical or programming topic, a target language.
//
// Anything that ties the sentence to a particular situation pulls the score
// down: first-person possessions ("my order", "our team"), "your"
// (addressing a company or a colleague), business nouns (invoice, account,
// meeting, client, deadline …), times and dates ("by Friday", "next
// week"), references to attachments, a greeting to a named person. A
// colleague asked to "write a short story for the company newsletter" or to
// "translate the product brochure into German before the trade fair" is not
// flagged; "write a short story about a lighthouse" is. Words inside quotes
// are the material of a translation, not the situation, and are skipped.
//
// What this cannot see: a task worded in the business's own vocabulary
// ("summarise the customer's complaints in the reply"), a knowledge question
// with no encyclopaedic word in it ("When did the Berlin Wall fall?"),
// anything not in English. Those are left to fencing untrusted data.

// InjectionInData scores text that a model will read as data, not as its
// user's own prompt: everything Injection reports, plus sentences that are
// tasks addressed to the assistant (see above). Use Injection for prompts:
// there a request to write a poem is the point.
func InjectionInData(text string) InjectionResult {
	return injection(text, true)
}

// taskFeat marks what a lexicon word can signal in a request.
type taskFeat uint32

const (
	tfCreate    taskFeat = 1 << iota // write, compose, draft …
	tfExplain                        // explain, describe, teach, solve …
	tfGive                           // list, suggest, recommend, tell, give …
	tfTranslate                      // translate
	tfImplement                      // implement, code, debug …
	tfWh                             // what, who, how …
	tfModal                          // can, could, would, will
	tfOpener                         // please, also, now …
	tfGreet                          // hi, hello, dear …
	tfAI                             // assistant, ai, chatbot …
	tfGenre                          // poem, story, essay, joke …
	tfGenreLite                      // summary, list, plan, message …
	tfCode                           // python, function, algorithm …
	tfLang                           // french, japanese …
	tfKnow                           // planet, history, theorem, tallest …
	tfMath                           // plus, squared, integral …
	tfBiz                            // order, invoice, meeting, client …
	tfSelf                           // my, our, we, us
	tfI                              // i
	tfYour                           // your, yours
	tfYou                            // you
	tfTime                           // today, friday, tomorrow …
	tfDeictic                        // attached, enclosed …
	tfIndef                          // a, an, some, three …
	tfDef                            // the, this, that …
	tfRelative                       // next, last, this (before a time word)
	tfTimeUnit                       // week, month, quarter …
	tfMe                             // me
)

// taskLexicon lists every word the data-mode scorer reads. Its words are
// interned with the phrase vocabulary (see compilePhrases), so tokens carry
// their id and the scorer needs no lookups of its own.
var taskLexicon = buildTaskLexicon(map[taskFeat]string{
	tfCreate: "write compose draft create generate produce invent brainstorm craft pen rewrite plan design imagine develop",
	tfExplain: "explain describe teach summarise summarize outline define compare prove solve calculate compute " +
		"convert simplify derive quiz analyse analyze clarify illustrate elaborate",
	tfGive:      "list name suggest recommend rank give provide tell show share",
	tfTranslate: "translate",
	tfImplement: "implement code debug refactor",
	tfWh:        "what whats who whos when where which why how whom whose",
	tfModal:     "can could would will",
	tfOpener:    "please pls kindly also and now so ok okay then additionally just quickly btw finally lastly next oh",
	tfGreet:     "hi hello hey dear greetings yo",
	tfAI:        "ai assistant chatbot bot gpt chatgpt llm copilot",
	tfGenre: "poem poems poetry haiku haikus limerick limericks sonnet sonnets ode verse verses rhyme rhymes lyrics " +
		"song songs rap ballad lullaby story stories tale tales fable fables novel novels novella essay essays " +
		"article articles blog tweet tweets slogan slogans tagline taglines motto jingle joke jokes pun puns riddle " +
		"riddles speech toast monologue dialogue dialog screenplay synopsis plot horoscope recipe recipes itinerary " +
		"quiz trivia prompts ideas tips facts fact titles headline headlines caption captions character backstory " +
		"description letter lesson tutorial acrostic anecdote parody",
	tfGenreLite: "summary overview guide plan message script name names pros cons games suggestions",
	tfCode: "python java javascript typescript js nodejs node rust golang haskell kotlin swift ruby php perl scala c cpp " +
		"csharp sql bash shell powershell html css regex regexp json yaml xml dockerfile docker kubernetes react django " +
		"flask pytest junit function functions method algorithm algorithms array arrays string strings integer integers " +
		"recursion recursive loop loops variable variables pointer pointers linked stack queue queues graph hashmap " +
		"closure thread threads compiler complexity sorting quicksort mergesort binary fibonacci factorial palindrome " +
		"div snippet programming syntax boolean struct lambda oop interface abstract notation",
	tfLang: "english french german spanish italian portuguese japanese chinese mandarin cantonese korean arabic hindi " +
		"russian dutch swedish norwegian danish finnish polish turkish greek latin hebrew vietnamese thai indonesian " +
		"swahili ukrainian czech hungarian romanian bengali urdu persian farsi tagalog esperanto",
	tfKnow: "sky sun moon moons earth planet planets star stars galaxy universe space gravity light atom atoms molecule " +
		"molecules electron proton neutron element elements chemical chemistry physics biology cell cells dna rna gene " +
		"genes evolution species animal animals plant plants planting photosynthesis enzyme enzymes protein virus " +
		"bacteria bacterium vaccine vaccines immune disease human humans heart blood brain bones muscles organ organs " +
		"ocean oceans sea seas river rivers mountain mountains volcano volcanoes earthquake desert forest climate " +
		"weather rain rainbow snow ice water boiling freezing temperature energy electricity electric magnet magnetic " +
		"nuclear solar lunar eclipse tide tides aurora oxygen carbon hydrogen gold silver iron metal dinosaur " +
		"dinosaurs mammal mammals insect insects bird birds whale whales elephants bees honey butterfly sunset reef " +
		"country countries continent capital capitals city cities population language languages currency island " +
		"islands world europe africa asia america australia antarctica equator hemisphere northern southern history " +
		"historical war wars revolution empire emperor king queen president dynasty century ancient medieval " +
		"civilization civilisation battle independence treaty monarchy democracy republic government constitution " +
		"renaissance pyramid pyramids wonders invented invention inventor discovered discovery founded painted " +
		"painting wrote author philosopher philosophy theory theorem relativity scientist mathematician nobel olympic " +
		"olympics rugby chess music jazz art artist composer symphony religion myth mythology economics economy " +
		"inflation capitalism socialism supply demand interest concept concepts equation equations integral " +
		"derivative fraction fractions probability algebra geometry calculus triangle circle square root area volume " +
		"radius diameter meaning word synonym antonym definition grammar tense verb noun idiom proverb tallest " +
		"largest biggest smallest longest shortest deepest highest oldest youngest fastest hottest coldest richest " +
		"health healthy diet nutrition vitamin vitamins calories exercises sleep pain difference differences " +
		"colours colors periodic motion degrees fahrenheit celsius centimetres kilometres miles stoic culture",
	tfMath: "plus minus multiplied divided squared cubed integral derivative equation x",
	tfBiz: "order orders account accounts refund refunds invoice invoices receipt receipts password passwords login " +
		"subscription subscriptions billing bill bills billed payment payments charge charged charges card cards " +
		"delivery delivered shipping shipment shipped package parcel tracking warranty licence license licences " +
		"licenses customer customers client clients team teams meeting meetings agenda deadline deadlines " +
		"budget budgets report reports contract contracts proposal proposals project projects vendor vendors " +
		"supplier suppliers quote quotes ticket tickets bug bugs server servers staging dashboard app website site " +
		"platform integration webhook endpoint sdk api crm brochure newsletter company office colleague colleagues " +
		"manager boss hr legal board department policy policies price prices pricing discount coupon checkout cart " +
		"store shop stock purchase purchased offsite conference webinar presentation slides spreadsheet forecast " +
		"sales kickoff onboarding intern interns hires hiring shift salary expense expenses feedback survey demo " +
		"deployment migration release roadmap upgrade pilot nda rfp okr q1 q2 q3 q4 venue caterer catering quarterly " +
		"landlord loan bank tax insurance claim statement fee fees vat cost costs device devices router thermostat " +
		"notification notifications settings support helpdesk repair return item items workspace users " +
		"profile verification sms error errors plans loyalty referral retail partnership approval issue issues " +
		"screenshots call calls update schedule parts retirement documentation manual checklist intranet parking " +
		"accountant employees staff employee visitors trial",
	tfSelf:     "my our ours we us mine myself ourselves",
	tfI:        "i",
	tfYour:     "your yours",
	tfYou:      "you",
	tfTime:     "today tomorrow yesterday tonight monday tuesday wednesday thursday friday saturday sunday weekend eod asap january february march april june july august september october november december noon",
	tfDeictic:  "attached attachment attachments enclosed herein aforementioned cc fyi",
	tfIndef:    "a an some one two three four five six seven eight nine ten twelve fifteen twenty fifty hundred few several",
	tfDef:      "the this that these those",
	tfRelative: "next last this",
	tfTimeUnit: "week weeks month months quarter year night morning time",
	tfMe:       "me",
})

// nounFeats are the groups of nouns, whose plurals are added for them.
const nounFeats = tfGenre | tfGenreLite | tfCode | tfKnow | tfBiz

func buildTaskLexicon(groups map[taskFeat]string) map[string]taskFeat {
	lex := map[string]taskFeat{}
	for f, words := range groups {
		for _, w := range strings.Fields(words) {
			lex[w] |= f
		}
	}
	// A plural takes its noun's features unless it is listed itself
	// ("returns" is not "return"s' plural in "returns the rows").
	plurals := map[string]taskFeat{}
	for f, words := range groups {
		if f&nounFeats == 0 {
			continue
		}
		for _, w := range strings.Fields(words) {
			if p := plural(w); p != w && lex[p] == 0 {
				plurals[p] |= f
			}
		}
	}
	for p, f := range plurals {
		lex[p] = f
	}
	return lex
}

// plural is the regular English plural of a noun ("story" → "stories",
// "class" → "classes"); words already ending in s are left alone.
func plural(w string) string {
	switch {
	case len(w) < 3 || strings.HasSuffix(w, "s"):
		return w
	case strings.HasSuffix(w, "y") && !strings.ContainsRune("aeiou", rune(w[len(w)-2])):
		return w[:len(w)-1] + "ies"
	case strings.HasSuffix(w, "x") || strings.HasSuffix(w, "ch") || strings.HasSuffix(w, "sh"):
		return w + "es"
	}
	return w + "s"
}

// taskFeats holds each vocabulary id's features (see compilePhrases).
var taskFeats []taskFeat

func tokFeat(t *injToken) taskFeat {
	if t.id < 0 || int(t.id) >= len(taskFeats) {
		return 0
	}
	return taskFeats[t.id]
}

// Reasons of data-mode hits, one per kind of task so that the reasons say
// what was asked; a text scores by its strongest.
const (
	reasonTaskWriting     = "assistant task in data: writing request"
	reasonTaskExplain     = "assistant task in data: explanation or tutoring request"
	reasonTaskList        = "assistant task in data: list or recommendation request"
	reasonTaskTranslate   = "assistant task in data: translation request"
	reasonTaskCode        = "assistant task in data: programming request"
	reasonTaskKnowledge   = "assistant task in data: general-knowledge question"
	taskThreshold         = 0.5
	taskMaxWeight         = 0.8
	maxTaskSentenceTokens = 64
)

// taskRequests scores every sentence of n (tokenised as ts) and adds a hit
// for each that reads as a standalone task for the assistant.
func taskRequests(n *normalized, orig string, ts *injTokens, hits *[]injHit) {
	t, toks := n.text, ts.toks
	start := 0
	var quoted uint64 // bit k: token start+k is inside quotes
	inQuote := false
	for i := 1; i <= len(toks); i++ {
		boundary, question := i == len(toks), false
		if boundary {
			question = strings.IndexByte(t[toks[i-1].b:], '?') >= 0
		} else {
			gap := tokGap(t, &toks[i-1], &toks[i])
			for k := 0; k < len(gap); k++ {
				switch c := gap[k]; c {
				case '"':
					inQuote = !inQuote
				case '\'':
					// An opening quote follows a space; a closing one
					// touches the word before it.
					if k == 0 && inQuote || k > 0 && !inQuote {
						inQuote = !inQuote
					}
				case '?', '!', ';':
					if !inQuote {
						boundary = true
						question = question || c == '?'
					}
				case '\n':
					boundary, inQuote = true, false
				case '.', ':':
					if !inQuote && (k+1 == len(gap) || gap[k+1] == ' ' || gap[k+1] == '\n') {
						boundary = true
					}
				}
			}
		}
		if !boundary && !inQuote && opensRequest(n, orig, ts, i) {
			boundary = true
		}
		if !boundary {
			if inQuote && i-start < maxTaskSentenceTokens {
				quoted |= 1 << (i - start)
			}
			continue
		}
		end := min(i, start+maxTaskSentenceTokens)
		if reason, w := scoreTaskSentence(ts, toks[start:end], quoted, question); w >= taskThreshold {
			n.addHit(hits, reason, min(w, taskMaxWeight), int(toks[start].a), int(toks[end-1].b))
		}
		start, quoted = i, 0
		if inQuote {
			quoted = 1
		}
	}
}

// opensRequest reports a capitalised request word in the middle of a
// sentence after a lower-case word or a number ("… charged $20.00 Write a
// poem …", "… wasn't eligible Explain …"): text pasted into other text
// without its full stop. After "to", a modal or a subject the word is a
// verb of that sentence ("how to Write", "you can Create"), not a new one.
func opensRequest(n *normalized, orig string, ts *injTokens, i int) bool {
	toks := ts.toks
	if i == 0 || tokFeat(&toks[i])&(tfCreate|tfExplain|tfGive|tfTranslate|tfImplement|tfWh) == 0 {
		return false
	}
	first := func(k int) byte {
		if s, e := n.origSpan(int(toks[k].a), int(toks[k].a)+1); e > s {
			return orig[s]
		}
		return 0
	}
	if c := first(i); c < 'A' || c > 'Z' {
		return false
	}
	if c := first(i - 1); c >= 'A' && c <= 'Z' {
		return false
	}
	switch ts.word(&toks[i-1]) {
	case "to", "can", "could", "will", "would", "should", "must", "may", "might", "shall", "and", "or",
		"please", "i", "you", "we", "they", "he", "she", "it", "then", "the", "a", "an":
		return false
	}
	return true
}

// Request forms.
const (
	formNone = iota
	formImperative
	formQuestion
	formHowTo // "how do I …", "how can I …": the "I" is anyone
)

// scoreTaskSentence scores one sentence s (at most 64 tokens of ts; quoted
// marks tokens inside quotes) and names the kind of task.
func scoreTaskSentence(ts *injTokens, s []injToken, quoted uint64, question bool) (string, float64) {
	feat := func(k int) taskFeat {
		if k < 0 || k >= len(s) {
			return 0
		}
		return tokFeat(&s[k])
	}
	word := func(k int) string {
		if k < 0 || k >= len(s) {
			return ""
		}
		return ts.word(&s[k])
	}
	gapHas := func(k int, c byte) bool { // in the gap before token k
		return k > 0 && k < len(s) && strings.IndexByte(tokGap(ts.text, &s[k-1], &s[k]), c) >= 0
	}
	var score float64
	human := false // addressed to a named person: "Hi Sam, …"
	pos := 0
	// Openers and greetings.
	for pos < len(s) && pos < 6 {
		f := feat(pos)
		switch {
		case f&tfGreet != 0:
			next := feat(pos + 1)
			switch {
			case next&tfAI != 0:
				score += 0.2
				pos += 2
			case next == 0 && pos+1 < len(s) && word(pos+1) != "there":
				human = true
				pos += 2
			default:
				pos++
			}
			continue
		case f&tfAI != 0 && (pos+1 >= len(s) || gapHas(pos+1, ',')):
			score += 0.2 // "Assistant, …"
			pos++
			continue
		case f&tfOpener != 0 && f&(tfCreate|tfExplain|tfGive) == 0:
			pos++
			continue
		case word(pos) == "by" && word(pos+1) == "the" && word(pos+2) == "way":
			pos += 3
			continue
		}
		break
	}
	// A short leading clause ending in a comma: "As an AI assistant, …",
	// "Before you continue, …". Said to the assistant, it counts for it.
	for k := pos + 1; k < len(s) && k <= pos+5; k++ {
		if !gapHas(k, ',') {
			continue
		}
		lead := s[pos:k]
		if first := feat(pos); first&(tfCreate|tfExplain|tfGive|tfTranslate|tfImplement|tfWh|tfModal) != 0 {
			break // the sentence itself starts here ("Write, edit and …")
		}
		for j := range lead {
			if tokFeat(&lead[j])&tfAI != 0 {
				score += 0.2
				break
			}
		}
		switch word(pos) {
		case "before", "after", "when", "while", "as", "in", "for", "first":
			pos = k
		}
		break
	}
	form, frameBase := formNone, 0.0
	var verb taskFeat
	frameEnd := pos // tokens before frameEnd belong to the frame, not the object
	f := feat(pos)
	switch {
	case f&tfModal != 0 && word(pos+1) == "you":
		pos += 2
		for feat(pos)&tfOpener != 0 {
			pos++
		}
	case word(pos) == "i" && (word(pos+1) == "want" || word(pos+1) == "need" || word(pos+1) == "would" || word(pos+1) == "d"):
		for k := pos + 2; k < pos+5 && k+1 < len(s); k++ {
			if word(k) == "you" && word(k+1) == "to" {
				pos = k + 2
				break
			}
		}
	case word(pos) == "help" && word(pos+1) == "me":
		pos += 2
		if word(pos) == "to" {
			pos++
		}
		if word(pos) == "understand" || word(pos) == "learn" {
			verb = tfExplain
			form, frameBase = formImperative, 0.3
			pos++
		}
	case word(pos) == "lets" || word(pos) == "let" && word(pos+1) == "us":
		pos += 1 + b2i(word(pos) == "let")
	}
	f = feat(pos)
	if form == formNone {
		switch {
		case word(pos) == "come" && word(pos+1) == "up" && word(pos+2) == "with":
			verb, pos = tfCreate, pos+3
		case word(pos) == "walk" && word(pos+1) == "me" && word(pos+2) == "through":
			verb, pos = tfExplain, pos+3
		case word(pos) == "break" && word(pos+1) == "down":
			verb, pos = tfExplain, pos+2
		case word(pos) == "render" && hasLangTarget(ts, s, pos+1):
			verb, pos = tfTranslate, pos+1
		case f&tfTranslate != 0:
			verb, pos = tfTranslate, pos+1
		case f&tfImplement != 0:
			verb, pos = tfImplement, pos+1
		case f&tfCreate != 0:
			verb, pos = tfCreate, pos+1
		case f&tfExplain != 0:
			verb, pos = tfExplain, pos+1
		case f&tfGive != 0:
			// "Tell Maria …", "Give Tom a call": a message for someone else.
			next := feat(pos + 1)
			if w := word(pos + 1); w != "me" && w != "us" && w != "about" && next&(tfIndef|tfDef) == 0 && !isNumberTok(w) {
				return "", 0
			}
			verb, pos = tfGive, pos+1
		case f&tfWh != 0 || word(pos) == "in" && feat(pos+1)&tfWh != 0:
			if f&tfWh == 0 {
				pos++
			}
			// A question needs its question mark, or an auxiliary right
			// after the wh-word ("what is", "how does").
			if !question && !auxWord(word(pos+1)) {
				return "", 0
			}
			form = formQuestion
			if (word(pos) == "how" || word(pos) == "where" || word(pos) == "what") && (word(pos+1) == "do" || word(pos+1) == "can" || word(pos+1) == "should" || word(pos+1) == "would") && word(pos+2) == "i" {
				form = formHowTo
				pos += 3
			} else if word(pos) == "how" && (word(pos+1) == "do" || word(pos+1) == "would" || word(pos+1) == "can") && word(pos+2) == "you" && word(pos+3) == "say" {
				verb = tfTranslate
				pos += 4
			}
		}
		if verb != 0 && form == formNone {
			form = formImperative
		}
		switch form {
		case formImperative:
			frameBase = 0.3
		case formQuestion:
			frameBase = 0.3
		case formHowTo:
			// "How do I …" is how customers ask for help with a product;
			// it takes more evidence than a question about the world.
			frameBase = 0.15
		}
	}
	if form == formNone {
		return "", 0
	}
	frameEnd = pos
	score += frameBase
	// The object: right after the verb, or after "me"/"us".
	obj, recipient := pos, -1
	if w := word(obj); w == "me" || w == "us" {
		recipient = obj
		obj++
	}
	of := feat(obj)
	switch {
	case verb == tfCreate || verb == tfGive || verb == tfExplain:
		if of&tfIndef != 0 || isNumberTok(word(obj)) {
			score += 0.1 // something new: "a poem", "three riddles"
		} else if verb == tfCreate && of&tfDef != 0 && word(obj+1) != "following" {
			score -= 0.1 // something both sides know: "the minutes"
		}
	}
	// Evidence and situation over the rest of the sentence.
	var genre, genreLite, code, lang, know, math int
	var langTarget, translationWord bool
	var situated float64
	biz, self := 0, 0
	for k := frameEnd; k < len(s); k++ {
		tf := tokFeat(&s[k])
		w := ts.word(&s[k])
		inQuotes := k < 64 && quoted&(1<<k) != 0
		if inQuotes {
			continue // the material, not the situation
		}
		if tf&tfGenre != 0 {
			genre++
		}
		if tf&tfGenreLite != 0 {
			genreLite++
		}
		if tf&tfCode != 0 {
			code++
		}
		if tf&tfKnow != 0 {
			know++
		}
		if tf&tfMath != 0 || isMathGap(ts, s, k) {
			math++
		}
		if tf&tfLang != 0 {
			lang++
			if p := word(k - 1); p == "into" || p == "to" || p == "in" {
				langTarget = true
			}
		}
		switch w {
		case "translation", "translate", "say", "mean", "means", "word", "phrase", "equivalent":
			translationWord = true
		}
		switch {
		case k == recipient:
		case tf&tfBiz != 0:
			biz++
		case tf&tfSelf != 0:
			self++
		case tf&tfI != 0 && form != formHowTo:
			situated += 0.1
		case tf&tfMe != 0:
			situated += 0.15 // "… with me?"; "tell me", "give me" are the frame
		case tf&tfYour != 0:
			switch word(k + 1) {
			case "answer", "answers", "response", "responses", "reply", "replies", "output", "summary":
				score += 0.2 // the assistant's answer: said to the assistant
			default:
				situated += 0.3
			}
		case tf&tfYou != 0:
			situated += 0.15
		case tf&tfTime != 0:
			situated += 0.3
		case tf&tfDeictic != 0:
			situated += 0.4
		case tf&tfRelative != 0 && feat(k+1)&tfTimeUnit != 0:
			situated += 0.3
		case w == "<email>" || w == "<url>":
			situated += 0.2
		case isDayOrdinal(w):
			situated += 0.2
		}
	}
	// In a programming exercise business nouns are its topic ("a Java
	// class for a bank account"), not the writer's situation.
	bizWeight := 0.3
	if code >= 2 {
		bizWeight = 0.15
	}
	situated += bizWeight * float64(min(biz, 2))
	if self > 0 {
		situated += 0.25 + 0.15*float64(min(self-1, 1))
	}
	if human {
		situated += 0.3
	}
	// What the request is about, by the kind of task.
	evidence, reason := 0.0, ""
	add := func(cnt int, first, more float64, r string) {
		if cnt == 0 {
			return
		}
		e := first + more*float64(min(cnt-1, 2))
		if e > evidence {
			evidence, reason = e, r
		}
	}
	switch {
	case verb == tfTranslate:
		if langTarget {
			add(1, 0.4, 0, reasonTaskTranslate)
		}
	case verb == tfImplement:
		add(code, 0.35, 0.05, reasonTaskCode)
	case verb == tfCreate:
		add(genre, 0.35, 0.05, reasonTaskWriting)
		add(genreLite, 0.15, 0.05, reasonTaskWriting)
		add(code, 0.3, 0.05, reasonTaskCode)
		add(know, 0.15, 0.05, reasonTaskWriting)
	case verb == tfExplain:
		add(know, 0.3, 0.1, reasonTaskExplain)
		add(math, 0.3, 0.1, reasonTaskExplain)
		add(code, 0.3, 0.1, reasonTaskCode)
		add(genre, 0.25, 0, reasonTaskExplain)
		if lang > 0 && langTarget {
			add(1, 0.3, 0, reasonTaskTranslate)
		}
	case verb == tfGive:
		add(genre, 0.3, 0.05, reasonTaskList)
		add(genreLite, 0.15, 0.05, reasonTaskList)
		add(know, 0.25, 0.1, reasonTaskList)
		add(code, 0.25, 0.1, reasonTaskCode)
		if lang > 0 && translationWord {
			add(1, 0.3, 0, reasonTaskTranslate)
		}
	default: // a question
		add(know, 0.3, 0.1, reasonTaskKnowledge)
		add(math, 0.3, 0.1, reasonTaskKnowledge)
		add(code, 0.3, 0.1, reasonTaskCode)
		if lang > 0 && (translationWord || langTarget) {
			add(1, 0.3, 0, reasonTaskTranslate)
		}
	}
	if reason == "" {
		return "", 0
	}
	return reason, score + evidence - situated
}

// tokGap is the text between two tokens; the halves of an expanded
// contraction ("I'm" → "i", "am") share a range and have none.
func tokGap(t string, prev, next *injToken) string {
	if next.a <= prev.b {
		return ""
	}
	return t[prev.b:next.a]
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hasLangTarget reports "into|to|in <language>" within the next 20 tokens.
func hasLangTarget(ts *injTokens, s []injToken, from int) bool {
	for k := from; k < len(s) && k < from+20; k++ {
		if tokFeat(&s[k])&tfLang != 0 && k > 0 {
			switch ts.word(&s[k-1]) {
			case "into", "to", "in":
				return true
			}
		}
	}
	return false
}

func auxWord(w string) bool {
	switch w {
	case "is", "are", "was", "were", "do", "does", "did", "can", "could", "would", "will", "should", "has", "have", "had", "many", "much", "long", "far", "old", "tall", "big", "often":
		return true
	}
	return false
}

func isNumberTok(w string) bool {
	return w != "" && w[0] >= '0' && w[0] <= '9'
}

// isMathGap: an arithmetic operator between token k-1 and a number k.
func isMathGap(ts *injTokens, s []injToken, k int) bool {
	if k == 0 || !isNumberTok(ts.word(&s[k])) {
		return false
	}
	gap := tokGap(ts.text, &s[k-1], &s[k])
	return strings.ContainsAny(gap, "+=*/^")
}

// isDayOrdinal: "5th", "21st", "2nd", "3rd" (a date in a message).
func isDayOrdinal(w string) bool {
	if len(w) < 3 || len(w) > 4 || !isNumberTok(w) {
		return false
	}
	switch w[len(w)-2:] {
	case "th", "st", "nd", "rd":
		for i := 0; i < len(w)-2; i++ {
			if w[i] < '0' || w[i] > '9' {
				return false
			}
		}
		return true
	}
	return false
}
