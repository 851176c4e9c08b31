package netguard

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"code.dny.dev/ssrf"
)

// classifierTable is every address form the guard must name correctly.
// The classifier is pure, so public literals here are never dialed.
var classifierTable = []struct {
	addr     string
	category string
}{
	// IPv4 special-purpose space.
	{"127.0.0.1", CategoryLoopback},
	{"127.255.255.254", CategoryLoopback},
	{"127.0.0.2", CategoryLoopback},
	{"0.0.0.0", CategoryUnspecified},
	{"0.1.2.3", CategoryThisNetwork},
	{"0.255.255.255", CategoryThisNetwork},
	{"10.0.0.1", CategoryPrivate},
	{"10.255.255.255", CategoryPrivate},
	{"172.16.0.1", CategoryPrivate},
	{"172.31.255.255", CategoryPrivate},
	{"192.168.0.1", CategoryPrivate},
	{"192.168.255.255", CategoryPrivate},
	{"169.254.169.254", CategoryMetadata},
	{"169.254.170.2", CategoryMetadata},
	{"169.254.170.23", CategoryMetadata},
	{"169.254.0.1", CategoryLinkLocal},
	{"169.254.255.255", CategoryLinkLocal},
	{"100.64.0.1", CategoryCGNAT},
	{"100.127.255.255", CategoryCGNAT},
	{"100.100.100.200", CategoryMetadata},
	{"192.0.0.192", CategoryMetadata},
	{"192.0.0.1", CategoryIETFProtocol},
	{"192.0.0.170", CategoryIETFProtocol},
	{"192.0.2.1", CategoryDocumentation},
	{"198.51.100.1", CategoryDocumentation},
	{"203.0.113.1", CategoryDocumentation},
	{"192.88.99.1", CategoryRelay6to4},
	{"198.18.0.1", CategoryBenchmarking},
	{"198.19.255.255", CategoryBenchmarking},
	{"192.31.196.1", CategorySpecialPurpose},
	{"192.52.193.1", CategorySpecialPurpose},
	{"192.175.48.1", CategorySpecialPurpose},
	{"224.0.0.1", CategoryMulticast},
	{"239.255.255.250", CategoryMulticast},
	{"240.0.0.1", CategoryReserved},
	{"255.255.255.254", CategoryReserved},
	{"255.255.255.255", CategoryBroadcast},

	// IPv4 public, including the neighbours of every range edge.
	{"8.8.8.8", CategoryPublic},
	{"1.1.1.1", CategoryPublic},
	{"1.0.0.0", CategoryPublic},
	{"9.255.255.255", CategoryPublic},
	{"11.0.0.0", CategoryPublic},
	{"100.63.255.255", CategoryPublic},
	{"100.128.0.0", CategoryPublic},
	{"126.255.255.255", CategoryPublic},
	{"128.0.0.0", CategoryPublic},
	{"169.253.255.255", CategoryPublic},
	{"169.255.0.0", CategoryPublic},
	{"172.15.255.255", CategoryPublic},
	{"172.32.0.0", CategoryPublic},
	{"192.0.1.0", CategoryPublic},
	{"192.167.255.255", CategoryPublic},
	{"192.169.0.0", CategoryPublic},
	{"198.17.255.255", CategoryPublic},
	{"198.20.0.0", CategoryPublic},
	{"223.255.255.255", CategoryPublic},

	// IPv6 forms, including those embedding IPv4.
	{"::1", CategoryLoopback},
	{"::", CategoryUnspecified},
	{"::ffff:127.0.0.1", CategoryLoopback},
	{"::ffff:7f00:1", CategoryLoopback},
	{"::ffff:169.254.169.254", CategoryMetadata},
	{"::ffff:10.0.0.1", CategoryPrivate},
	{"::ffff:0.0.0.0", CategoryUnspecified},
	{"::ffff:255.255.255.255", CategoryBroadcast},
	{"::ffff:8.8.8.8", CategoryPublic},
	{"::127.0.0.1", CategoryIPv4Compatible},
	{"::8.8.8.8", CategoryIPv4Compatible},
	{"::2", CategoryIPv4Compatible},
	{"::ffff:0:127.0.0.1", CategoryIPv4Translated},
	{"::ffff:0:808:808", CategoryIPv4Translated},
	{"64:ff9b::a9fe:a9fe", CategoryNAT64},
	{"64:ff9b::7f00:1", CategoryNAT64},
	{"64:ff9b::808:808", CategoryNAT64},
	{"64:ff9b:1::a00:1", CategoryNAT64Local},
	{"64:ff9b:1:ffff::1", CategoryNAT64Local},
	{"100::1", CategoryDiscard},
	{"fc00::1", CategoryUniqueLocal},
	{"fd00::1", CategoryUniqueLocal},
	{"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", CategoryUniqueLocal},
	{"fd00:ec2::254", CategoryMetadata},
	{"fd00:ec2::23", CategoryMetadata},
	{"fe80::1", CategoryLinkLocal},
	{"fe80::1%lo", CategoryLinkLocal},
	{"febf:ffff::1", CategoryLinkLocal},
	{"fec0::1", CategorySiteLocal},
	{"ff02::1", CategoryMulticast},
	{"ff05::1:3", CategoryMulticast},
	{"ff0e::1", CategoryMulticast},
	{"2001:0:4136:e378:8000:63bf:3fff:fdd2", CategoryTeredo},
	{"2001::1", CategoryTeredo},
	{"2001:db8::1", CategoryDocumentation},
	{"3fff::1", CategoryDocumentation},
	{"2001:2::1", CategoryIETFProtocol},
	{"2001:10::1", CategoryIETFProtocol},
	{"2001:1ff:ffff::1", CategoryIETFProtocol},
	{"2002:7f00:1::", Category6to4},
	{"2002:a9fe:a9fe::", Category6to4},
	{"2002:808:808::1", Category6to4},
	{"2620:4f:8000::1", CategorySpecialPurpose},
	{"1000::1", CategoryReserved},
	{"4000::1", CategoryReserved},
	{"5f00::1", CategoryReserved},
	{"1fff:ffff::1", CategoryReserved},

	// IPv6 public.
	{"2606:4700::1111", CategoryPublic},
	{"2001:4860:4860::8888", CategoryPublic},
	{"2a00:1450:4001::1", CategoryPublic},
	{"2001:200::1", CategoryPublic},
	{"2620:4f:7fff::1", CategoryPublic},
	{"3ffe:ffff::1", CategoryPublic},
	{"2606:4700::1111%eth0", CategoryScoped},
}

func TestClassifyTable(t *testing.T) {
	t.Parallel()
	if len(classifierTable) < 60 {
		t.Fatalf("classifier table has %d forms, want at least 60", len(classifierTable))
	}
	for _, tc := range classifierTable {
		t.Run(tc.addr, func(t *testing.T) {
			t.Parallel()
			ip := netip.MustParseAddr(tc.addr)
			category, public := Classify(ip)
			if category != tc.category || public != (tc.category == CategoryPublic) {
				t.Errorf("Classify(%s) = %q, %v; want %q, %v", tc.addr, category, public, tc.category, tc.category == CategoryPublic)
			}
		})
	}
}

func TestClassifyInvalid(t *testing.T) {
	t.Parallel()
	if c, pub := Classify(netip.Addr{}); c != CategoryInvalid || pub {
		t.Errorf("Classify(zero) = %q, %v; want %q, false", c, pub, CategoryInvalid)
	}
}

// TestPolicyMatrix checks the decision for every table address under the
// three policies: default, AllowPrivate, and an allowlist covering all of
// it. The independent deny list must agree wherever we allow.
func TestPolicyMatrix(t *testing.T) {
	t.Parallel()
	everything := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	policies := map[string]*policy{
		"default":      newPolicy(Options{}),
		"allowPrivate": newPolicy(Options{AllowPrivate: true}),
		"allowAll":     newPolicy(Options{AllowPrefixes: everything}),
	}
	for _, tc := range classifierTable {
		ip := netip.MustParseAddr(tc.addr)
		public := tc.category == CategoryPublic
		want := map[string]bool{
			"default":      public,
			"allowPrivate": public || slices.Contains(privateCategories, tc.category),
			"allowAll":     !slices.Contains(neverOpen, tc.category),
		}
		// The allowlisted NAT64 prefix still requires the embedded IPv4
		// address to pass; under allowAll everything passes except the
		// never-open categories it embeds.
		if tc.category == CategoryNAT64 {
			b := ip.As16()
			inner, _ := Classify(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
			want["allowAll"] = !slices.Contains(neverOpen, inner)
		}
		for name, pol := range policies {
			err := pol.check(netip.AddrPortFrom(ip, 443))
			if got := err == nil; got != want[name] {
				t.Errorf("%s policy, %s (%s): allowed = %v, want %v (err %v)", name, tc.addr, tc.category, got, want[name], err)
			}
			var be *BlockedError
			if err != nil && !errors.As(err, &be) {
				t.Errorf("%s policy, %s: error %v is not a *BlockedError", name, tc.addr, err)
			}
		}
	}
}

// TestDenyListAgrees is the second opinion: the IANA-derived deny list we
// layer under our classifier refuses everything the classifier refuses by
// default and allows everything it calls public, so neither list alone
// decides and the layering costs no legitimate address.
func TestDenyListAgrees(t *testing.T) {
	t.Parallel()
	g := ssrf.New()
	for _, tc := range classifierTable {
		if tc.category == CategoryScoped {
			continue
		}
		ip := netip.MustParseAddr(tc.addr).WithZone("").Unmap()
		err := g.SafeAddr(ip)
		if tc.category == CategoryPublic && err != nil {
			t.Errorf("deny list refuses public %s: %v", tc.addr, err)
		}
		if tc.category != CategoryPublic && err == nil {
			t.Errorf("deny list allows %s (%s)", tc.addr, tc.category)
		}
	}
}

func TestAllowPrivateKeepsMetadataAndLinkLocalShut(t *testing.T) {
	t.Parallel()
	pol := newPolicy(Options{AllowPrivate: true, AllowPrefixes: []netip.Prefix{
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("100.64.0.0/10"),
	}})
	for _, s := range []string{
		"169.254.169.254", "169.254.170.2", "169.254.1.1", "fe80::1",
		"100.100.100.200", "fd00:ec2::254", "fd00:ec2::23", "192.0.0.192",
		"0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255",
	} {
		err := pol.check(netip.AddrPortFrom(netip.MustParseAddr(s), 80))
		var be *BlockedError
		if !errors.As(err, &be) {
			t.Errorf("%s: got %v, want *BlockedError", s, err)
		}
	}
	for _, s := range []string{"127.0.0.1", "::1", "10.1.2.3", "172.20.0.1", "192.168.1.10", "100.64.0.1", "fd12:3456::1"} {
		if err := pol.check(netip.AddrPortFrom(netip.MustParseAddr(s), 80)); err != nil {
			t.Errorf("%s: AllowPrivate should open it, got %v", s, err)
		}
	}
}

func TestAllowPrefixesNAT64JudgesEmbeddedAddress(t *testing.T) {
	t.Parallel()
	pol := newPolicy(Options{AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("64:ff9b::/96")}})
	cases := map[string]bool{
		"64:ff9b::808:808":   true,  // 8.8.8.8
		"64:ff9b::7f00:1":    false, // 127.0.0.1
		"64:ff9b::a9fe:a9fe": false, // 169.254.169.254
		"64:ff9b::a00:1":     false, // 10.0.0.1
		"64:ff9b:1::808:808": false, // local-use prefix not listed
	}
	for s, want := range cases {
		err := pol.check(netip.AddrPortFrom(netip.MustParseAddr(s), 443))
		if got := err == nil; got != want {
			t.Errorf("%s: allowed = %v, want %v (%v)", s, got, want, err)
		}
	}
}

func TestAllowPrefixesMappedFormIsIPv4(t *testing.T) {
	t.Parallel()
	pol := newPolicy(Options{AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.2/128")}})
	if err := pol.check(netip.MustParseAddrPort("127.0.0.2:80")); err != nil {
		t.Errorf("127.0.0.2 should be allowed by the mapped prefix: %v", err)
	}
	if err := pol.check(netip.MustParseAddrPort("127.0.0.1:80")); err == nil {
		t.Error("127.0.0.1 must stay refused")
	}
}

func TestPorts(t *testing.T) {
	t.Parallel()
	public := netip.MustParseAddr("8.8.8.8")
	cases := []struct {
		name    string
		ports   []int
		allowed []uint16
		refused []uint16
	}{
		{"default", nil, []uint16{80, 443}, []uint16{0, 22, 25, 2375, 6379, 8080, 8443, 65535}},
		{"custom", []int{8080, 0, -1, 70000}, []uint16{8080}, []uint16{0, 80, 443}},
	}
	for _, tc := range cases {
		pol := newPolicy(Options{AllowedPorts: tc.ports})
		for _, port := range tc.allowed {
			if err := pol.check(netip.AddrPortFrom(public, port)); err != nil {
				t.Errorf("%s: port %d refused: %v", tc.name, port, err)
			}
		}
		for _, port := range tc.refused {
			err := pol.check(netip.AddrPortFrom(public, port))
			var be *BlockedError
			if !errors.As(err, &be) || be.Reason != ReasonPort {
				t.Errorf("%s: port %d: got %v, want port refusal", tc.name, port, err)
			}
		}
	}
}

// TestControlHook calls the net.Dialer.Control hook directly, as the
// kernel path would, without any socket.
func TestControlHook(t *testing.T) {
	t.Parallel()
	def := newDialer(newPolicy(Options{}), Options{})
	lan := newDialer(newPolicy(Options{AllowPrivate: true}), Options{})
	cases := []struct {
		network, addr string
		d             *dialer
		reason        string // empty: allowed
	}{
		{"tcp4", "169.254.169.254:80", def, CategoryMetadata},
		{"tcp4", "169.254.169.254:80", lan, CategoryMetadata},
		{"tcp4", "127.0.0.1:80", def, CategoryLoopback},
		{"tcp4", "127.0.0.1:80", lan, ""},
		{"tcp6", "[::1]:443", def, CategoryLoopback},
		{"tcp6", "[::1]:443", lan, ""},
		{"tcp6", "[::ffff:129.144.52.38]:80", def, ""},
		{"tcp6", "[::ffff:10.0.0.1]:80", def, CategoryPrivate},
		{"tcp6", "[fe80::1%lo]:80", lan, CategoryLinkLocal},
		{"tcp6", "[64:ff9b::7f00:1]:80", lan, CategoryNAT64},
		{"tcp4", "8.8.8.8:80", def, ""},
		{"tcp4", "8.8.8.8:22", def, ReasonPort},
		{"udp4", "8.8.8.8:443", def, ReasonNetwork},
		{"tcp", "8.8.8.8:443", def, ReasonNetwork},
		{"tcp4", "not-an-address", def, CategoryInvalid},
	}
	for _, tc := range cases {
		err := tc.d.control(tc.network, tc.addr, nil)
		if tc.reason == "" {
			if err != nil {
				t.Errorf("control(%s, %s) = %v, want allowed", tc.network, tc.addr, err)
			}
			continue
		}
		var be *BlockedError
		if !errors.As(err, &be) || be.Reason != tc.reason {
			t.Errorf("control(%s, %s) = %v, want reason %q", tc.network, tc.addr, err, tc.reason)
		}
	}
}
