package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Resolver looks up a host's addresses. *net.Resolver satisfies it; tests
// pass a fake so no query leaves the machine.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DialFunc opens a connection to a literal "ip:port" that the guard has
// already approved.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// connectTimeout bounds one TCP connect, so a black-holed address cannot
// use up the whole fetch budget.
const connectTimeout = 5 * time.Second

// dialer resolves names itself and dials only the literal addresses it
// checked, so there is no window between check and use for DNS rebinding.
type dialer struct {
	pol      *policy
	resolver Resolver
	base     DialFunc
}

func newDialer(pol *policy, opts Options) *dialer {
	d := &dialer{pol: pol, resolver: opts.Resolver, base: opts.Dial}
	if d.resolver == nil {
		d.resolver = &net.Resolver{}
	}
	if d.base == nil {
		// The Control hook sees the sockaddr the kernel is about to connect
		// to, after socket() and before connect(): a second check that no
		// path through the resolver can get around.
		nd := &net.Dialer{Timeout: connectTimeout, Control: d.control}
		d.base = nd.DialContext
	}
	return d
}

// control is the net.Dialer.Control hook.
func (d *dialer) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return &BlockedError{Reason: ReasonNetwork, Addr: address}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Reason: CategoryInvalid, Addr: address}
	}
	return d.pol.check(ap)
}

// DialContext is the http.Transport dial hook.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var lookupNet string
	switch network {
	case "tcp":
		lookupNet = "ip"
	case "tcp4":
		lookupNet = "ip4"
	case "tcp6":
		lookupNet = "ip6"
	default:
		return nil, &BlockedError{Reason: ReasonNetwork, Addr: addr}
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("splitting %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, &BlockedError{Reason: ReasonPort, Addr: addr}
	}
	if !d.pol.portAllowed(uint16(port)) {
		return nil, &BlockedError{Reason: ReasonPort, Addr: addr}
	}
	ips, err := d.resolve(ctx, lookupNet, host)
	if err != nil {
		return nil, err
	}
	var blocked, dialErr error
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip, uint16(port))
		if err := d.pol.check(ap); err != nil {
			// A refused answer is skipped, not fatal: a name may carry an
			// allowed A record beside a refused AAAA record.
			if blocked == nil {
				blocked = err
			}
			continue
		}
		family := "tcp4"
		if ip.Is6() {
			family = "tcp6"
		}
		conn, err := d.base(ctx, family, ap.String())
		if err == nil {
			return conn, nil
		}
		dialErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if dialErr != nil {
		return nil, fmt.Errorf("connecting to %s: %w", host, dialErr)
	}
	return nil, blocked
}

// resolve returns the unique addresses for host, IPv4-mapped ones unmapped
// because that is the address the kernel dials.
func (d *dialer) resolve(ctx context.Context, lookupNet, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	var ips []netip.Addr
	if isLocalhost(host) {
		// RFC 6761 reserves these names for loopback; answering here keeps
		// them off the resolver, whose answer could differ.
		ips = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	} else {
		found, err := d.resolver.LookupNetIP(ctx, lookupNet, host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		ips = found
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		ip = ip.Unmap()
		if lookupNet == "ip4" && !ip.Is4() || lookupNet == "ip6" && !ip.Is6() {
			continue
		}
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolving %s: %w", host, errNoAddresses)
	}
	return out, nil
}

var errNoAddresses = errors.New("no addresses")

func isLocalhost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}
