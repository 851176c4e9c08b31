// Package netguard is the one HTTP client for URLs a user supplies (image
// inputs to edits and chat, webhook targets): it refuses destinations that
// would let a caller reach the gateway's own network.
//
// The address rule is applied where it cannot be bypassed: the guard
// resolves the host itself, checks every answer, and dials only the literal
// address it approved; the default dialer checks the kernel's sockaddr once
// more in net.Dialer.Control, before connect(). Redirects are re-checked
// the same way, so DNS rebinding, redirects and odd IP spellings all meet
// the same test. See [Classify] for the address categories and [Options]
// for what each setting opens.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Defaults applied to zero Options fields.
const (
	// DefaultMaxBytes is the body cap: the largest image input accepted.
	DefaultMaxBytes = 20 << 20
	// DefaultTimeout bounds a whole fetch: resolution, connect, TLS,
	// redirects and reading the body.
	DefaultTimeout = 15 * time.Second
	// DefaultMaxRedirects is how many redirects an image fetch follows.
	DefaultMaxRedirects = 3
	// DefaultUserAgent identifies the gateway to the hosts it fetches from.
	DefaultUserAgent = "easel"
)

// DefaultPorts returns the destination ports allowed when
// Options.AllowedPorts is empty: 80 and 443.
func DefaultPorts() []int { return []int{80, 443} }

const (
	tlsHandshakeTimeout = 10 * time.Second
	maxHeaderBytes      = 64 << 10
	// drainBytes is how much of a refused (non-2xx) body is read and
	// discarded so the connection can be reused; none of it is kept.
	drainBytes = 4 << 10
)

// Options configures a Client. The zero value is the safe default: public
// unicast addresses only, ports 80 and 443, 20 MiB, 15 s, 3 redirects.
//
// Refused by default (category names as returned by [Classify]):
//   - IPv4: 0.0.0.0/8 (unspecified, this-network), 10/8, 172.16/12 and
//     192.168/16 (private), 100.64/10 (cgnat), 127/8 (loopback),
//     169.254/16 (link-local), 192.0.0/24 (ietf-protocol), 192.0.2/24,
//     198.51.100/24 and 203.0.113/24 (documentation), 192.88.99/24
//     (6to4-relay), 198.18/15 (benchmarking), 192.31.196/24,
//     192.52.193/24 and 192.175.48/24 (special-purpose), 224/4
//     (multicast), 240/4 (reserved) and 255.255.255.255 (broadcast).
//     An IPv4-mapped ::ffff:a.b.c.d address is judged as a.b.c.d.
//   - IPv6: :: (unspecified), ::1 (loopback), ::/96 (ipv4-compatible),
//     ::ffff:0:0:0/96 (ipv4-translated), 64:ff9b::/96 (nat64),
//     64:ff9b:1::/48 (nat64-local), 100::/64 (discard), fc00::/7
//     (unique-local), fe80::/10 (link-local), fec0::/10 (site-local),
//     ff00::/8 (multicast), 2001::/32 (teredo), 2001:db8::/32 and
//     3fff::/20 (documentation), the rest of 2001::/23 (ietf-protocol),
//     2002::/16 (6to4), 2620:4f:8000::/48 (special-purpose), anything
//     else outside 2000::/3 (reserved), and any zoned address.
//   - Cloud metadata endpoints (metadata): 169.254.169.254,
//     169.254.170.2, 169.254.170.23, 100.100.100.200, 192.0.0.192,
//     fd00:ec2::254, fd00:ec2::23.
//
// No setting opens unspecified, this-network, link-local, site-local,
// metadata, multicast, broadcast or zoned addresses.
type Options struct {
	// AllowPrivate is for LAN deployments whose image hosts live on the
	// local network. It opens exactly: loopback (127.0.0.0/8, ::1),
	// RFC 1918 private space (10/8, 172.16/12, 192.168/16), CGNAT
	// (100.64.0.0/10) and IPv6 unique-local (fc00::/7). Metadata endpoints
	// inside those ranges (100.100.100.200, fd00:ec2::254, fd00:ec2::23)
	// stay refused, as do link-local 169.254.0.0/16 and fe80::/10.
	// IPv6 forms that embed an IPv4 address are not opened.
	AllowPrivate bool
	// AllowPrefixes opens further ranges, e.g. one image host at
	// 10.1.2.3/32, or 64:ff9b::/96 on an IPv6-only host behind DNS64 (an
	// address in an allowed 64:ff9b::/96 must still embed an allowed IPv4
	// address). It cannot open what the Options comment says no setting
	// opens. IPv4 prefixes may be written in either IPv4 or ::ffff: form.
	AllowPrefixes []netip.Prefix
	// AllowedPorts lists the destination ports that may be dialed; empty
	// means DefaultPorts() (80 and 443). Entries outside 1-65535 are ignored.
	// A LAN image host on another port must be listed here.
	AllowedPorts []int
	// MaxBytes caps the response body after content decoding; zero or
	// negative means DefaultMaxBytes.
	MaxBytes int64
	// Timeout bounds a whole fetch; zero or negative means DefaultTimeout.
	Timeout time.Duration
	// MaxRedirects caps the redirects followed, each re-checked like the
	// first URL. Zero means DefaultMaxRedirects; negative means none are
	// followed and a 3xx answer becomes a *StatusError (webhooks).
	MaxRedirects int
	// UserAgent is sent on every request; empty means DefaultUserAgent.
	UserAgent string
	// Resolver answers host lookups; nil means the system resolver.
	// Tests inject a fake so no query leaves the machine.
	Resolver Resolver
	// Dial replaces the connection step after the guard has approved a
	// literal ip:port; nil means a net.Dialer whose Control hook re-checks
	// the address. Tests install a tripwire here that fails on any
	// destination outside loopback.
	Dial DialFunc
}

// Response is a successful (2xx) fetch, its body read in full.
type Response struct {
	// Body holds at most Options.MaxBytes decoded bytes.
	Body []byte
	// ContentType is the response's Content-Type header as sent; the
	// caller sniffs and checks the bytes, the guard does not.
	ContentType string
	// FinalURL is the URL that answered, after redirects.
	FinalURL string
}

// Client fetches user-supplied URLs through the guard. It is safe for
// concurrent use.
type Client struct {
	pol          *policy
	dialer       *dialer
	hc           *http.Client
	maxBytes     int64
	timeout      time.Duration
	maxRedirects int
	userAgent    string
}

// New builds a Client; zero Options fields take the defaults above.
func New(opts Options) *Client {
	c := &Client{
		maxBytes:     opts.MaxBytes,
		timeout:      opts.Timeout,
		maxRedirects: opts.MaxRedirects,
		userAgent:    opts.UserAgent,
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxBytes
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxRedirects == 0 {
		c.maxRedirects = DefaultMaxRedirects
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	c.pol = newPolicy(opts)
	c.dialer = newDialer(c.pol, opts)
	transport := &http.Transport{
		// No Proxy: an environment proxy would make the dial check see
		// only the proxy's address.
		Proxy:                  nil,
		DialContext:            c.dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		MaxResponseHeaderBytes: maxHeaderBytes,
		MaxIdleConns:           16,
		IdleConnTimeout:        90 * time.Second,
		// Compression stays on: the transport then decodes gzip itself,
		// so MaxBytes counts decoded bytes and a gzip bomb stops at the cap.
	}
	c.hc = &http.Client{
		Transport:     transport,
		CheckRedirect: c.checkRedirect,
		Timeout:       c.timeout,
		// No Jar: cookies set by one user's URL must never be sent to
		// another's.
	}
	return c
}

// HTTPClient returns a client sharing this Client's guarded transport,
// redirect rules and timeout, for callers that need their own method,
// headers or body handling (webhook delivery). Each call returns a new
// *http.Client, so changing its fields does not affect other users;
// replacing CheckRedirect drops the redirect re-checks (the dial-time
// address check remains), so use Options.MaxRedirects instead. The caller
// must read response bodies through its own size limit.
func (c *Client) HTTPClient() *http.Client {
	hc := *c.hc
	return &hc
}

// Get fetches rawURL and returns its body. Errors: ErrInvalidURL (also
// ErrScheme, ErrCredentials) before any network activity; *BlockedError
// when a destination is refused; *StatusError for a non-2xx answer;
// ErrTooLarge; ErrTooManyRedirects; ErrTimeout; the caller's context
// error; or a wrapped network error.
func (c *Client) Get(ctx context.Context, rawURL string) (*Response, error) {
	u, err := c.pol.parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	fetchCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(fetchCtx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, invalid(ErrInvalidURL, "building request: %v", err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.fetchError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.CopyN(io.Discard, resp.Body, drainBytes)
		return nil, &StatusError{StatusCode: resp.StatusCode}
	}
	if resp.ContentLength > c.maxBytes {
		return nil, fmt.Errorf("%w: Content-Length %d exceeds %d", ErrTooLarge, resp.ContentLength, c.maxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return nil, c.fetchError(ctx, fmt.Errorf("reading body: %w", err))
	}
	if int64(len(body)) > c.maxBytes {
		return nil, fmt.Errorf("%w: body exceeds %d bytes", ErrTooLarge, c.maxBytes)
	}
	return &Response{
		Body:        body,
		ContentType: resp.Header.Get("Content-Type"),
		FinalURL:    resp.Request.URL.String(),
	}, nil
}

// checkRedirect re-applies the URL rules to every hop; the dial hook then
// checks its address.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if c.maxRedirects < 0 {
		return http.ErrUseLastResponse
	}
	if len(via) > c.maxRedirects {
		return fmt.Errorf("%w: more than %d", ErrTooManyRedirects, c.maxRedirects)
	}
	if err := c.pol.checkURL(req.URL); err != nil {
		return err
	}
	// We never set these, but a redirect must not carry credentials or the
	// previous (user-supplied, possibly token-bearing) URL to a new host.
	for _, h := range []string{"Authorization", "Proxy-Authorization", "Cookie", "Referer"} {
		req.Header.Del(h)
	}
	return nil
}

// fetchError labels a failed exchange, telling our own deadline apart from
// the caller's cancellation.
func (c *Client) fetchError(parent context.Context, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("fetching URL: %w", err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &timeoutError{err: err}
	}
	return fmt.Errorf("fetching URL: %w", err)
}

// timeoutError matches ErrTimeout and context.DeadlineExceeded.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string { return ErrTimeout.Error() + ": " + e.err.Error() }

func (e *timeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}

func (e *timeoutError) Unwrap() error { return e.err }
