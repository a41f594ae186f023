package nodes

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// EgressPolicy says which networks http.request may reach. By default only
// public addresses: a workflow cannot probe the host's loopback, the private
// network or cloud metadata endpoints unless the operator allows it.
type EgressPolicy struct {
	// AllowPrivate permits loopback, private, link-local and unique-local
	// addresses (for local development and tests).
	AllowPrivate bool
	// Allow lists extra prefixes that may be reached even when private.
	Allow []netip.Prefix
}

// ErrEgressDenied is returned when a request targets a forbidden address.
var ErrEgressDenied = errors.New("nodes: egress to this address is not allowed")

func (p EgressPolicy) permits(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, pre := range p.Allow {
		if pre.Contains(addr) {
			return true
		}
	}
	if addr.IsUnspecified() || addr.IsMulticast() {
		return false
	}
	if p.AllowPrivate {
		return true
	}
	return !(addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() || cgnat.Contains(addr))
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// NewHTTPClient returns the client http.request uses. The check runs on the
// address actually dialled, after DNS, so a hostname cannot smuggle a
// private address past it; redirects are re-checked on every hop.
func NewHTTPClient(p EgressPolicy) *http.Client {
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrEgressDenied, address)
			}
			if !p.permits(ap.Addr()) {
				return fmt.Errorf("%w: %s (private and loopback addresses need --allow-private-egress)", ErrEgressDenied, ap.Addr())
			}
			return nil
		},
	}
	transport := &http.Transport{
		Proxy:             nil, // a proxy would dial on our behalf and bypass the check
		DialContext:       dialer.DialContext,
		ForceAttemptHTTP2: true,
		// AI connectors send many calls at once to one host: up to 100 of
		// a burst's connections are kept for the next, where over TLS each
		// new one would cost a handshake.
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			return nil
		},
	}
}
