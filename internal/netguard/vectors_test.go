package netguard

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// specLiterals are the address vectors of the SSRF catalogue; each must be
// refused with the default configuration.
var specLiterals = []string{
	"127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "172.16.0.1",
	"172.31.255.255", "192.168.0.1", "169.254.169.254", "169.254.170.2", "100.64.0.1",
	"100.100.100.200", "192.0.0.192", "192.0.2.1", "192.88.99.1", "198.18.0.1",
	"198.51.100.1", "203.0.113.1", "224.0.0.1", "239.255.255.250", "240.0.0.1",
	"255.255.255.255",
	"::1", "::", "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:169.254.169.254",
	"::ffff:10.0.0.1", "::127.0.0.1", "::ffff:0:127.0.0.1", "fe80::1", "fe80::1%25lo",
	"fc00::1", "fd00:ec2::254", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",
	"64:ff9b:1::a00:1", "2002:7f00:1::", "2002:a9fe:a9fe::",
	"2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1", "100::1", "ff02::1",
}

func literalURL(lit string) string {
	if strings.Contains(lit, ":") {
		return "http://[" + lit + "]/"
	}
	return "http://" + lit + "/"
}

// TestSpecVectorsRefused sends every vector of the catalogue through the
// real client with the default policy (plus the catalogue's allowed host
// allowed.test at 127.0.0.2), the F-DNS resolver and the tripwire. Every
// one must be refused and nothing may be dialed.
func TestSpecVectorsRefused(t *testing.T) {
	t.Parallel()
	var vectors []string
	for _, lit := range specLiterals {
		vectors = append(vectors, literalURL(lit))
	}
	vectors = append(vectors,
		// Odd IPv4 encodings.
		"http://2130706433/", "http://0x7f000001/", "http://0x7f.1/", "http://0177.0.0.1/",
		"http://127.1/", "http://0/", "http://%31%32%37.0.0.1/",
		// Names, through F-DNS.
		"http://localhost/", "http://localhost./", "http://LOCALHOST/", "http://a.localhost/",
		"http://metadata.google.internal/latest/", "http://127.0.0.1.example.test/",
		"http://cname-to-localhost.test/", "http://rebind.test/", "http://rebind.test/",
		"http://rebind.test/", "http://rebind.test/",
		// URL tricks.
		"http://u:p@allowed.test/", "http://allowed.test@127.0.0.1/",
		"http://127.0.0.1#@allowed.test/", `http://allowed.test\@127.0.0.1/`,
		"http://allowed.test/a b", "http://allowed.test/\x00", "http://allowed.test/\r\nX: y",
		" http://allowed.test/", "http://allowed.test/\t",
		// Schemes.
		"file:///etc/passwd", "gopher://127.0.0.1:6379/_x", "ftp://allowed.test/",
		"dict://127.0.0.1:11211/", "ldap://127.0.0.1/", "jar:http://allowed.test/x.jar!/",
		"data:image/png;base64,iVBORw0KGgo=",
		// Ports on an allowed host.
		"http://allowed.test:22/", "http://allowed.test:6379/", "http://allowed.test:2375/",
		"http://allowed.test:0/", "http://allowed.test:65536/", "http://allowed.test:8080/",
		"https://allowed.test:80443/",
	)
	if len(vectors) < 60 {
		t.Fatalf("only %d vectors, the catalogue requires at least 60", len(vectors))
	}

	res := newResolver(t)
	res.set("allowed.test", "127.0.0.2")
	res.set("metadata.google.internal", "169.254.169.254")
	res.set("127.0.0.1.example.test", "127.0.0.1")
	res.set("cname-to-localhost.test", "127.0.0.1,::1")
	res.set("rebind.test", "127.0.0.1", "10.0.0.1", "169.254.169.254", "fd00::1")
	trip := newTripwire(t)
	c := New(Options{
		AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		Resolver:      res,
		Dial:          trip.Dial,
	})
	ctx := testCtx(t)
	for _, v := range vectors {
		_, err := c.Get(ctx, v)
		if !isRefused(err) {
			t.Errorf("Get(%q) = %v, want a refusal", v, err)
		}
	}
	if d := trip.Dials(); len(d) != 0 {
		t.Errorf("tripwire saw dials %v, want none", d)
	}
}

func TestURLRules(t *testing.T) {
	t.Parallel()
	pol := newPolicy(Options{AllowedPorts: []int{80, 443, 8080}})
	cases := []struct {
		url  string
		want error // nil: accepted
	}{
		{"https://example.com/a.png", nil},
		{"http://example.com/a.png?x=1#frag", nil},
		{"HTTPS://Example.COM./x", nil},
		{"http://img.example.com:8080/x", nil},
		{"http://under_score.example.com/", nil},
		{"http://[2606:4700::1111]/", nil},
		{"http://8.8.8.8/", nil},
		{"http://xn--r8jz45g.jp/", nil},
		{"http://example.com:/", nil},

		{"ftp://example.com/", ErrScheme},
		{"file:///etc/passwd", ErrScheme},
		{"data:image/png;base64,AAAA", ErrScheme},
		{"//example.com/", ErrScheme},
		{"example.com/a.png", ErrScheme},
		{"http://user@example.com/", ErrCredentials},
		{"http://user:pass@example.com/", ErrCredentials},
		{"http://:@example.com/", ErrCredentials},
		{"http:example.com", ErrInvalidURL},
		{"http:///path", ErrInvalidURL},
		{"http://例え.jp/", ErrInvalidURL},
		{"http://-bad.example/", ErrInvalidURL},
		{"http://a..b/", ErrInvalidURL},
		{"http://example.123/", ErrInvalidURL},
		{"http://1.2.3.4.5/", ErrInvalidURL},
		{"http://127.0.0.1./", ErrInvalidURL},
		{"http://0x7F.0.0.1/", ErrInvalidURL},
		{"http://017700000001/", ErrInvalidURL},
		{"http://[127.0.0.1]/", ErrInvalidURL},
		{"http://[::1/", ErrInvalidURL},
		{"http://[fe80::1%25lo]/", ErrInvalidURL},
		{"http://[2606:4700::1111%25eth0]/", ErrInvalidURL},
		{"http://example.com:99999/", ErrInvalidURL},
		{"http://example.com:-1/", ErrInvalidURL},
		{"http://example.com/" + strings.Repeat("a", maxURLLen), ErrInvalidURL},
		{"http://exa\u00a0mple.com/", ErrInvalidURL},
		{"http://example.com/\x7f", ErrInvalidURL},
	}
	for _, tc := range cases {
		_, err := pol.parseURL(tc.url)
		if tc.want == nil {
			if err != nil {
				t.Errorf("parseURL(%q) = %v, want accepted", tc.url, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidURL) {
			t.Errorf("parseURL(%q) = %v, want %v (and ErrInvalidURL)", tc.url, err, tc.want)
		}
	}

	_, err := pol.parseURL("http://example.com:22/")
	var be *BlockedError
	if !errors.As(err, &be) || be.Reason != ReasonPort || be.Addr != "example.com:22" {
		t.Errorf("port 22: got %v, want port refusal for example.com:22", err)
	}
}
