package netguard

import (
	"errors"
	"net/netip"
	"net/url"
	"testing"

	"code.dny.dev/ssrf"
)

// FuzzClassify checks, for arbitrary addresses, that Classify never panics
// and agrees with the independent IANA-derived deny list on what is
// public, so the two layers never disagree about a legitimate host.
func FuzzClassify(f *testing.F) {
	for _, tc := range classifierTable {
		ip := netip.MustParseAddr(tc.addr).WithZone("")
		f.Add(ip.AsSlice())
	}
	g := ssrf.New()
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		category, public := Classify(ip)
		if public != (category == CategoryPublic) {
			t.Fatalf("Classify(%s) = %q, %v: public flag and category disagree", ip, category, public)
		}
		err := g.SafeAddr(ip.Unmap())
		if public && err != nil {
			t.Errorf("Classify(%s) public, deny list refuses: %v", ip, err)
		}
		if !public && err == nil {
			t.Errorf("Classify(%s) = %q, deny list allows", ip, category)
		}
	})
}

// FuzzParseURL checks that the URL gate never panics and that whatever it
// accepts is an http(s) URL without credentials whose host is a plain DNS
// name or a canonical IP literal, stable under re-parsing.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a.png", "http://[::1]:8080/", "http://2130706433/", "http://0x7f.1/",
		"http://u:p@h/", "http://127.0.0.1#@example.com/", `http://a\@b/`, "file:///etc/passwd",
		"http://[fe80::1%25lo]/", "http://example.com:65536/", "HTTP://EXAMPLE.COM./",
	} {
		f.Add(s)
	}
	pol := newPolicy(Options{AllowedPorts: []int{80, 443, 8080}})
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := pol.parseURL(raw)
		if err != nil {
			var be *BlockedError
			if !errors.Is(err, ErrInvalidURL) && !errors.As(err, &be) {
				t.Fatalf("parseURL(%q): untyped error %v", raw, err)
			}
			return
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Host == "" {
			t.Fatalf("parseURL(%q) accepted %#v", raw, u)
		}
		again, err := url.Parse(u.String())
		if err != nil {
			t.Fatalf("accepted %q does not re-parse: %v", u, err)
		}
		if err := pol.checkURL(again); err != nil {
			t.Fatalf("accepted %q, but its re-parse %q is refused: %v", raw, again, err)
		}
		if again.Hostname() != u.Hostname() {
			t.Fatalf("host changed on re-parse: %q -> %q", u.Hostname(), again.Hostname())
		}
	})
}
