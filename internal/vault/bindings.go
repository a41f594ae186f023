package vault

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/moatproject/moat/internal/store"
)

// Bindings say where a secret may be sent. Deny by default:
//
//   - Connectors: the connectors that may use the secret; at least one.
//   - Hosts: the hosts it may be sent to, each exact ("api.example.com",
//     "10.0.0.7", "[::1]") or a wildcard of one label ("*.example.com"
//     matches "eu.example.com", not "example.com" nor "a.b.example.com"),
//     optionally with ":port" (without one, any port). An access that
//     names a host needs a matching entry; a secret bound to hosts is
//     refused to an access that names none.
//   - Models: for AI connectors, the models it may be used with. Empty
//     means the model is not restricted; otherwise the access must name one
//     of them.
type Bindings struct {
	Connectors []string `json:"connectors"`
	Hosts      []string `json:"hosts,omitempty"`
	Models     []string `json:"models,omitempty"`
}

const (
	maxBindings   = 64
	maxBindingLen = 256
)

// normalize checks b and returns it with hosts in canonical form.
func (b Bindings) normalize() (Bindings, error) {
	if len(b.Connectors) == 0 {
		return Bindings{}, fmt.Errorf("%w: bind the secret to at least one connector", ErrInvalid)
	}
	if len(b.Connectors) > maxBindings || len(b.Hosts) > maxBindings || len(b.Models) > maxBindings {
		return Bindings{}, fmt.Errorf("%w: at most %d connectors, hosts and models each", ErrInvalid, maxBindings)
	}
	out := Bindings{}
	for _, c := range b.Connectors {
		if !plainToken(c) {
			return Bindings{}, fmt.Errorf("%w: connector name %q", ErrInvalid, c)
		}
		out.Connectors = appendUnique(out.Connectors, c)
	}
	for _, h := range b.Hosts {
		p, err := parseHostPattern(h)
		if err != nil {
			return Bindings{}, err
		}
		out.Hosts = appendUnique(out.Hosts, p.String())
	}
	for _, m := range b.Models {
		if !plainToken(m) {
			return Bindings{}, fmt.Errorf("%w: model name %q", ErrInvalid, m)
		}
		out.Models = appendUnique(out.Models, m)
	}
	return out, nil
}

func appendUnique(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// plainToken: 1..256 printable ASCII characters without spaces.
func plainToken(s string) bool {
	if s == "" || len(s) > maxBindingLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func (b Bindings) toStore() store.SecretBindings {
	return store.SecretBindings{Connectors: b.Connectors, Hosts: b.Hosts, Models: b.Models}
}

func bindingsFromStore(b store.SecretBindings) Bindings {
	return Bindings{Connectors: b.Connectors, Hosts: b.Hosts, Models: b.Models}
}

// allows returns "" when the bindings let a reach the secret, or why not.
// The reason names the destination, never the secret's value.
func (b Bindings) allows(a Access) string {
	if !slices.Contains(b.Connectors, a.Connector) {
		return fmt.Sprintf("not bound to connector %q", a.Connector)
	}
	switch {
	case a.Host == "" && len(b.Hosts) > 0:
		return "the secret is bound to hosts and the access names none"
	case a.Host != "":
		ok := false
		for _, h := range b.Hosts {
			if p, err := parseHostPattern(h); err == nil && p.match(a.Host) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Sprintf("not bound to host %q", a.Host)
		}
	}
	if len(b.Models) > 0 && !slices.Contains(b.Models, a.Model) {
		return fmt.Sprintf("not bound to model %q", a.Model)
	}
	return ""
}

// hostPattern is an exact host or "*." and a domain, with an optional port.
type hostPattern struct {
	wildcard bool
	host     string // lower case; IPv6 without brackets
	port     string // "" for any
}

func (p hostPattern) String() string {
	h := p.host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if p.wildcard {
		h = "*." + h
	}
	if p.port != "" {
		h += ":" + p.port
	}
	return h
}

// parseHostPattern parses a binding's host entry.
func parseHostPattern(s string) (hostPattern, error) {
	bad := func(why string) (hostPattern, error) {
		return hostPattern{}, fmt.Errorf("%w: host %q: %s", ErrInvalid, s, why)
	}
	if s == "" || len(s) > maxBindingLen {
		return bad("empty or too long")
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return bad(err.Error())
	}
	var p hostPattern
	p.port = port
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		p.wildcard = true
		host = rest
	}
	h, err := canonicalHost(host)
	if err != nil {
		return bad(err.Error())
	}
	if p.wildcard {
		if _, err := netip.ParseAddr(h); err == nil {
			return bad("a wildcard cannot stand before an IP address")
		}
		// Counted on the canonical name: "*.com." is "*.com".
		if strings.Count(h, ".") < 1 {
			return bad("a wildcard needs a domain of at least two labels, as in *.example.com")
		}
	}
	p.host = h
	return p, nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostPort(s string) (host, port string, err error) {
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", fmt.Errorf("unclosed bracket")
		}
		host, rest := s[1:end], s[end+1:]
		if rest == "" {
			if _, err := netip.ParseAddr(host); err != nil || !strings.Contains(host, ":") {
				return "", "", fmt.Errorf("brackets hold an IPv6 address")
			}
			return host, "", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", fmt.Errorf("unexpected text after the bracket")
		}
		if !strings.Contains(host, ":") {
			return "", "", fmt.Errorf("brackets hold an IPv6 address")
		}
		port = rest[1:]
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		host, port = s[:i], s[i+1:]
	case strings.Count(s, ":") > 1:
		// A bare IPv6 address.
		return s, "", nil
	default:
		return s, "", nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", "", fmt.Errorf("bad port")
	}
	return host, port, nil
}

// canonicalHost lower-cases a host name (dropping one trailing dot) or
// canonicalises an IP address, and checks its syntax.
func canonicalHost(h string) (string, error) {
	if addr, err := netip.ParseAddr(h); err == nil {
		if addr.Zone() != "" {
			return "", fmt.Errorf("zoned addresses are not allowed")
		}
		return addr.Unmap().String(), nil
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("bad host name length")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("bad label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("bad character in a host name")
			}
		}
	}
	return h, nil
}

// match reports whether host (as an HTTP request names it: "name",
// "name:port", "[v6]:port") falls under p.
func (p hostPattern) match(host string) bool {
	h, port := host, ""
	if hh, pp, err := net.SplitHostPort(host); err == nil {
		h, port = hh, pp
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		h = host[1 : len(host)-1]
	}
	h, err := canonicalHost(h)
	if err != nil {
		return false
	}
	if p.port != "" && port != p.port {
		return false
	}
	if !p.wildcard {
		return h == p.host
	}
	label, ok := strings.CutSuffix(h, "."+p.host)
	return ok && label != "" && !strings.Contains(label, ".")
}
