package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"code.dny.dev/ssrf"
)

// Reasons carried by a [BlockedError] that are not address categories.
const (
	// ReasonPort means the destination port is not in Options.AllowedPorts.
	ReasonPort = "port"
	// ReasonNetwork means the dial was not plain TCP over IPv4 or IPv6.
	ReasonNetwork = "network"
	// ReasonDenyList means the independent IANA-derived deny list refused
	// an address our own classifier let through.
	ReasonDenyList = "deny-list"
)

var (
	// ErrInvalidURL is returned, before any network activity, for a URL the
	// guard will not fetch: unparsable, no host, a host that is neither a
	// DNS name nor a canonical IP literal, control characters, whitespace,
	// backslashes, or a port outside 1-65535. ErrScheme and ErrCredentials
	// also match it.
	ErrInvalidURL = errors.New("netguard: invalid URL")
	// ErrScheme means the URL's scheme is not http or https.
	ErrScheme = errors.New("netguard: only http and https URLs are fetched")
	// ErrCredentials means the URL carries userinfo (user:pass@), which is
	// refused rather than forwarded.
	ErrCredentials = errors.New("netguard: credentials in URL are refused")
	// ErrTooLarge means the body exceeds Options.MaxBytes (after decoding).
	ErrTooLarge = errors.New("netguard: response body too large")
	// ErrTooManyRedirects means the redirect chain exceeds
	// Options.MaxRedirects.
	ErrTooManyRedirects = errors.New("netguard: too many redirects")
	// ErrTimeout means Options.Timeout expired before the body was read.
	// It also matches context.DeadlineExceeded.
	ErrTimeout = errors.New("netguard: fetch timed out")
)

// BlockedError reports a destination refused by policy. A refusal happens
// before connect(), so nothing was sent to Addr. The message names the
// address and is meant for logs: callers show end users a generic error so
// the guard does not become an oracle for internal addresses.
type BlockedError struct {
	// Reason is an address category (see [Classify]) or one of the
	// Reason* constants.
	Reason string
	// Addr is the refused destination as "ip:port", or "host:port" when
	// the port was refused before resolution.
	Addr string

	err error // the deny list's own error, when it refused
}

// Error implements error.
func (e *BlockedError) Error() string {
	return fmt.Sprintf("netguard: destination %s refused (%s)", e.Addr, e.Reason)
}

// Unwrap exposes the deny list's error, if any.
func (e *BlockedError) Unwrap() error { return e.err }

// StatusError is returned for a final response whose status is not 2xx.
// It deliberately carries no body so upstream content is never echoed.
type StatusError struct {
	// StatusCode is the HTTP status of the final response.
	StatusCode int
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("netguard: upstream answered HTTP %d", e.StatusCode)
}

// privateCategories are the categories Options.AllowPrivate opens.
var privateCategories = []string{
	CategoryLoopback, CategoryPrivate, CategoryCGNAT, CategoryUniqueLocal,
}

// privatePrefixes mirror privateCategories for the second-opinion deny list.
var privatePrefixes = []netip.Prefix{
	p("127.0.0.0/8"), p("10.0.0.0/8"), p("172.16.0.0/12"), p("192.168.0.0/16"),
	p("100.64.0.0/10"), p("::1/128"), p("fc00::/7"),
}

// neverOpen are categories no setting opens: they are not remote hosts
// (unspecified, multicast, broadcast, zoned), or they are where cloud
// credentials live (link-local, metadata).
var neverOpen = []string{
	CategoryInvalid, CategoryScoped, CategoryUnspecified, CategoryThisNetwork,
	CategoryLinkLocal, CategorySiteLocal, CategoryMetadata,
	CategoryMulticast, CategoryBroadcast,
}

// policy decides whether one ip:port may be dialed.
type policy struct {
	allowPrivate bool
	allowed      []netip.Prefix
	ports        []uint16
	guardian     *ssrf.Guardian
}

func newPolicy(opts Options) *policy {
	pol := &policy{allowPrivate: opts.AllowPrivate}
	for _, pfx := range opts.AllowPrefixes {
		if !pfx.IsValid() {
			continue
		}
		// Addresses are compared unmapped, so a prefix written in the
		// ::ffff:a.b.c.d form is stored as the IPv4 prefix it means.
		if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		pol.allowed = append(pol.allowed, pfx.Masked())
	}
	ports := opts.AllowedPorts
	if len(ports) == 0 {
		ports = DefaultPorts()
	}
	for _, port := range ports {
		if port >= 1 && port <= 65535 {
			pol.ports = append(pol.ports, uint16(port))
		}
	}
	// The second opinion opens exactly what we open, so it can only ever
	// refuse more, never less.
	var open4, open6 []netip.Prefix
	extra := pol.allowed
	if pol.allowPrivate {
		extra = append(slices.Clone(privatePrefixes), extra...)
	}
	for _, pfx := range extra {
		if pfx.Addr().Is4() {
			open4 = append(open4, pfx)
		} else {
			open6 = append(open6, pfx)
		}
	}
	pol.guardian = ssrf.New(
		ssrf.WithPorts(pol.ports...),
		ssrf.WithAllowedV4Prefixes(open4...),
		ssrf.WithAllowedV6Prefixes(open6...),
	)
	return pol
}

func (pol *policy) portAllowed(port uint16) bool {
	return slices.Contains(pol.ports, port)
}

// check returns a *BlockedError if ap may not be dialed.
func (pol *policy) check(ap netip.AddrPort) error {
	if !pol.portAllowed(ap.Port()) {
		return &BlockedError{Reason: ReasonPort, Addr: ap.String()}
	}
	if reason, ok := pol.addrAllowed(ap.Addr()); !ok {
		return &BlockedError{Reason: reason, Addr: ap.String()}
	}
	// The guardian takes a zone-free address; a mapped one is checked as
	// the IPv4 address the kernel will actually dial.
	if err := pol.guardian.SafeAddrPort(netip.AddrPortFrom(ap.Addr().WithZone("").Unmap(), ap.Port())); err != nil {
		return &BlockedError{Reason: ReasonDenyList, Addr: ap.String(), err: err}
	}
	return nil
}

// addrAllowed applies the category rules; the reason is the category.
func (pol *policy) addrAllowed(ip netip.Addr) (reason string, ok bool) {
	category, public := Classify(ip)
	if public {
		return category, true
	}
	if slices.Contains(neverOpen, category) {
		return category, false
	}
	if pol.allowPrivate && slices.Contains(privateCategories, category) {
		return category, true
	}
	bare := ip.WithZone("").Unmap()
	for _, pfx := range pol.allowed {
		if !pfx.Contains(bare) {
			continue
		}
		if category == CategoryNAT64 {
			// An allowlisted DNS64/NAT64 prefix must not become a tunnel
			// to internal IPv4 space: judge the address it translates to.
			b := bare.As16()
			embedded := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
			if r, ok := pol.addrAllowed(embedded); !ok {
				return CategoryNAT64 + "/" + r, false
			}
		}
		return category, true
	}
	return category, false
}
