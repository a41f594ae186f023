package gateway

// DefaultRules returns the rules of DefaultPolicy, in order (the first that
// matches decides; secrets are blocked before any rule runs):
//
//  1. pii-to-training-or-retention: personal data never goes to a vendor
//     that trains on customer data or keeps it longer than 30 days (or for
//     an unknown time). Tokenising would hide the detected value, but the
//     finding marks the text around it as personal, and what detectors miss
//     there (names and addresses are best effort) would be learned or kept
//     beyond recall; the remedy is a better vendor, not a weaker transform.
//  2. confidential-to-training: confidential data likewise never goes to a
//     vendor that trains on it.
//  3. pii-tokenized: everywhere else, on-premises included, personal data
//     is tokenised. Models rarely need the values to do their work, and
//     on-premises logs and caches are where such values leak from; a team
//     that wants an on-premises model to see them adds an allow rule for
//     that vendor ahead of this one.
//
// Anything else falls to the secure default: pii.* tokenised, other
// classes allowed. Trust does not change these decisions: the PII in an
// untrusted span is still someone's PII, and injection is decided by its
// own stage; rules may still read trust.
func DefaultRules() []Rule {
	return []Rule{
		{
			Name:   "pii-to-training-or-retention",
			When:   `class.startsWith("pii.") && (vendor.trainsOnCustomerData || vendor.retentionDays > 30 || vendor.retentionDays < 0)`,
			Action: Block,
		},
		{
			Name:   "confidential-to-training",
			When:   `class == "confidential" && vendor.trainsOnCustomerData`,
			Action: Block,
		},
		{
			Name:   "pii-tokenized",
			When:   `class.startsWith("pii.")`,
			Action: Tokenize,
		},
	}
}

// DefaultPolicy returns the policy of DefaultRules with the secure default.
func DefaultPolicy() *Policy {
	p, err := CompilePolicy(DefaultRules(), PolicyOptions{})
	if err != nil {
		panic(err) // the rules are constant; a test compiles them
	}
	return p
}
