package netguard

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// maxURLLen bounds the URLs the guard parses; a longer http(s) URL is not a
// plausible image or webhook address.
const maxURLLen = 8 << 10

// parseURL checks a user-supplied URL before anything touches the network.
func (pol *policy) parseURL(raw string) (*url.URL, error) {
	for i := 0; i < len(raw); i++ {
		// Whitespace, control bytes and backslashes are where URL parsers
		// disagree (browsers read \ as /), so none reach a parser at all.
		if c := raw[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return nil, invalid(ErrInvalidURL, "byte %#x at offset %d", c, i)
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &urlError{kind: ErrInvalidURL, detail: err.Error(), err: err}
	}
	if err := pol.checkURL(u); err != nil {
		return nil, err
	}
	if len(raw) > maxURLLen {
		return nil, invalid(ErrInvalidURL, "longer than %d bytes", maxURLLen)
	}
	return u, nil
}

// checkURL applies the URL rules to an already parsed URL: the first
// request's and every redirect target's.
func (pol *policy) checkURL(u *url.URL) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return invalid(ErrScheme, "%q", u.Scheme)
	}
	if u.User != nil {
		return invalid(ErrCredentials, "userinfo present")
	}
	if u.Opaque != "" || u.Host == "" {
		return invalid(ErrInvalidURL, "no host")
	}
	host := u.Hostname()
	if err := checkHost(host, strings.HasPrefix(u.Host, "[")); err != nil {
		return err
	}
	port := 80
	if scheme == "https" {
		port = 443
	}
	if s := u.Port(); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return invalid(ErrInvalidURL, "port %q", s)
		}
		port = n
	}
	if !pol.portAllowed(uint16(port)) {
		return &BlockedError{Reason: ReasonPort, Addr: net.JoinHostPort(host, strconv.Itoa(port))}
	}
	return nil
}

// checkHost accepts a bracketed IPv6 literal, a canonical dotted-quad IPv4
// literal, or an ASCII DNS name. Names must be ASCII (A-labels) so that the
// name checked is the name resolved.
func checkHost(host string, bracketed bool) error {
	if bracketed {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return invalid(ErrInvalidURL, "bad IPv6 literal %q", host)
		}
		// A zone names a local interface, so it only ever scopes a
		// link-local or multicast address: never a remote host.
		if ip.Zone() != "" {
			return invalid(ErrInvalidURL, "zoned IPv6 literal %q", host)
		}
		return nil
	}
	if endsInNumber(host) {
		// Hosts such as 2130706433, 0x7f.1, 0177.0.0.1 or 127.1 are IPv4
		// addresses to browsers and getaddrinfo but names to Go; refusing
		// every non-canonical form removes the ambiguity and keeps them
		// from being sent to a resolver.
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is4() {
			return invalid(ErrInvalidURL, "non-canonical IPv4 address %q", host)
		}
		return nil
	}
	if !validName(host) {
		return invalid(ErrInvalidURL, "bad host name %q", host)
	}
	return nil
}

// endsInNumber follows the WHATWG URL rule that decides whether a host is
// to be read as an IPv4 address: its last label is all digits, or 0x
// followed by hex digits.
func endsInNumber(host string) bool {
	labels := strings.Split(host, ".")
	if len(labels) > 1 && labels[len(labels)-1] == "" {
		labels = labels[:len(labels)-1]
	}
	last := labels[len(labels)-1]
	if last == "" {
		return false
	}
	if strings.Trim(last, "0123456789") == "" {
		return true
	}
	if len(last) >= 2 && (last[:2] == "0x" || last[:2] == "0X") {
		return strings.Trim(last[2:], "0123456789abcdefABCDEF") == ""
	}
	return false
}

// validName reports whether host is a syntactically valid ASCII DNS name,
// allowing one trailing dot and underscores (seen in real service names).
func validName(host string) bool {
	name := strings.TrimSuffix(host, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// urlError is a URL refusal. It matches ErrInvalidURL and its own kind, so
// callers can test for "any bad URL" or for the specific rule.
type urlError struct {
	kind   error
	detail string
	err    error // the parser's error, if it failed
}

func invalid(kind error, format string, args ...any) error {
	return &urlError{kind: kind, detail: fmt.Sprintf(format, args...)}
}

func (e *urlError) Error() string { return e.kind.Error() + ": " + e.detail }

func (e *urlError) Is(target error) bool { return target == ErrInvalidURL || target == e.kind }

func (e *urlError) Unwrap() error { return e.err }
