package netguard

import "net/netip"

// Categories returned by [Classify]. Every category except
// [CategoryPublic] names a range the guard refuses by default; the doc
// comment of [Options] says which of them a setting can open.
const (
	// CategoryPublic is an ordinary globally routed unicast address.
	CategoryPublic = "public"
	// CategoryInvalid is the zero netip.Addr.
	CategoryInvalid = "invalid"
	// CategoryScoped is an otherwise public IPv6 address carrying a zone,
	// which only makes sense on one link and so is never a remote host.
	CategoryScoped = "scoped"
	// CategoryUnspecified is 0.0.0.0 or ::, which Linux dials as loopback.
	CategoryUnspecified = "unspecified"
	// CategoryThisNetwork is the rest of 0.0.0.0/8 (RFC 791).
	CategoryThisNetwork = "this-network"
	// CategoryLoopback is 127.0.0.0/8 and ::1.
	CategoryLoopback = "loopback"
	// CategoryPrivate is RFC 1918 space: 10/8, 172.16/12, 192.168/16.
	CategoryPrivate = "private"
	// CategoryCGNAT is the RFC 6598 shared address space 100.64.0.0/10.
	CategoryCGNAT = "cgnat"
	// CategoryLinkLocal is 169.254.0.0/16 and fe80::/10.
	CategoryLinkLocal = "link-local"
	// CategoryMetadata is a known cloud instance-metadata endpoint. These
	// sit inside link-local, CGNAT, IETF-protocol and ULA space; naming them
	// separately keeps them refused even where their enclosing range is
	// opened for a LAN deployment.
	CategoryMetadata = "metadata"
	// CategoryIETFProtocol is 192.0.0.0/24 and the rest of 2001::/23.
	CategoryIETFProtocol = "ietf-protocol"
	// CategoryDocumentation is TEST-NET-1/2/3, 2001:db8::/32 and 3fff::/20.
	CategoryDocumentation = "documentation"
	// CategoryRelay6to4 is the deprecated 6to4 relay anycast 192.88.99.0/24.
	CategoryRelay6to4 = "6to4-relay"
	// CategoryBenchmarking is 198.18.0.0/15 (RFC 2544).
	CategoryBenchmarking = "benchmarking"
	// CategorySpecialPurpose is the remaining IANA special-purpose
	// assignments (AS112, AMT) that no image or webhook URL needs.
	CategorySpecialPurpose = "special-purpose"
	// CategoryBroadcast is 255.255.255.255.
	CategoryBroadcast = "broadcast"
	// CategoryMulticast is 224.0.0.0/4 and ff00::/8.
	CategoryMulticast = "multicast"
	// CategoryReserved is 240.0.0.0/4 (less broadcast) and every IPv6
	// address outside 2000::/3 not named by a more specific category.
	CategoryReserved = "reserved"
	// CategoryIPv4Compatible is the deprecated ::a.b.c.d form (::/96).
	CategoryIPv4Compatible = "ipv4-compatible"
	// CategoryIPv4Translated is the SIIT form ::ffff:0:a.b.c.d.
	CategoryIPv4Translated = "ipv4-translated"
	// CategoryNAT64 is the well-known NAT64 prefix 64:ff9b::/96.
	CategoryNAT64 = "nat64"
	// CategoryNAT64Local is the local-use NAT64 prefix 64:ff9b:1::/48.
	CategoryNAT64Local = "nat64-local"
	// CategoryDiscard is the IPv6 discard-only prefix 100::/64.
	CategoryDiscard = "discard"
	// CategoryUniqueLocal is IPv6 unique local space fc00::/7.
	CategoryUniqueLocal = "unique-local"
	// CategorySiteLocal is the deprecated IPv6 site-local fec0::/10.
	CategorySiteLocal = "site-local"
	// CategoryTeredo is 2001::/32, which embeds an IPv4 address.
	CategoryTeredo = "teredo"
	// Category6to4 is 2002::/16, which embeds an IPv4 address.
	Category6to4 = "6to4"
)

// metadataAddrs are instance-metadata and credential endpoints of the
// common clouds and container platforms.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, OpenStack
	netip.MustParseAddr("169.254.170.2"):   true, // ECS task credentials
	netip.MustParseAddr("169.254.170.23"):  true, // EKS pod identity
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud
	netip.MustParseAddr("192.0.0.192"):     true, // Oracle Cloud
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS over IPv6
	netip.MustParseAddr("fd00:ec2::23"):    true, // EKS pod identity over IPv6
}

type rangeCategory struct {
	prefix   netip.Prefix
	category string
}

func p(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// v4Ranges is checked in order, so narrower prefixes come before the
// broader ones that contain them.
var v4Ranges = []rangeCategory{
	{p("0.0.0.0/32"), CategoryUnspecified},
	{p("0.0.0.0/8"), CategoryThisNetwork},
	{p("10.0.0.0/8"), CategoryPrivate},
	{p("100.64.0.0/10"), CategoryCGNAT},
	{p("127.0.0.0/8"), CategoryLoopback},
	{p("169.254.0.0/16"), CategoryLinkLocal},
	{p("172.16.0.0/12"), CategoryPrivate},
	{p("192.0.0.0/24"), CategoryIETFProtocol},
	{p("192.0.2.0/24"), CategoryDocumentation},
	{p("192.31.196.0/24"), CategorySpecialPurpose},
	{p("192.52.193.0/24"), CategorySpecialPurpose},
	{p("192.88.99.0/24"), CategoryRelay6to4},
	{p("192.168.0.0/16"), CategoryPrivate},
	{p("192.175.48.0/24"), CategorySpecialPurpose},
	{p("198.18.0.0/15"), CategoryBenchmarking},
	{p("198.51.100.0/24"), CategoryDocumentation},
	{p("203.0.113.0/24"), CategoryDocumentation},
	{p("224.0.0.0/4"), CategoryMulticast},
	{p("255.255.255.255/32"), CategoryBroadcast},
	{p("240.0.0.0/4"), CategoryReserved},
}

var v6Ranges = []rangeCategory{
	{p("::/128"), CategoryUnspecified},
	{p("::1/128"), CategoryLoopback},
	{p("::/96"), CategoryIPv4Compatible},
	{p("::ffff:0:0:0/96"), CategoryIPv4Translated},
	{p("64:ff9b::/96"), CategoryNAT64},
	{p("64:ff9b:1::/48"), CategoryNAT64Local},
	{p("100::/64"), CategoryDiscard},
	{p("fc00::/7"), CategoryUniqueLocal},
	{p("fe80::/10"), CategoryLinkLocal},
	{p("fec0::/10"), CategorySiteLocal},
	{p("ff00::/8"), CategoryMulticast},
	// Everything below lies inside 2000::/3, the only IPv6 space IANA
	// allocates for global unicast; anything else falls to "reserved".
	{p("2001::/32"), CategoryTeredo},
	{p("2001:db8::/32"), CategoryDocumentation},
	{p("2001::/23"), CategoryIETFProtocol},
	{p("2002::/16"), Category6to4},
	{p("2620:4f:8000::/48"), CategorySpecialPurpose},
	{p("3fff::/20"), CategoryDocumentation},
}

var globalUnicast6 = p("2000::/3")

// Classify names the range ip belongs to and reports whether a remote
// fetch may connect to it under the default policy. It is pure: it never
// resolves or dials.
//
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is classified as the IPv4
// address it maps, because that is what the kernel connects to. Every other
// IPv6 form embedding an IPv4 address (IPv4-compatible, SIIT, NAT64, 6to4,
// Teredo) gets its own non-public category: whether it reaches the
// embedded host depends on a translator we cannot see.
func Classify(ip netip.Addr) (category string, public bool) {
	if !ip.IsValid() {
		return CategoryInvalid, false
	}
	zoned := ip.Zone() != ""
	ip = ip.WithZone("").Unmap()
	if metadataAddrs[ip] {
		return CategoryMetadata, false
	}
	ranges := v4Ranges
	if ip.Is6() {
		ranges = v6Ranges
	}
	for _, r := range ranges {
		if r.prefix.Contains(ip) {
			return r.category, false
		}
	}
	if ip.Is6() && !globalUnicast6.Contains(ip) {
		return CategoryReserved, false
	}
	if zoned {
		return CategoryScoped, false
	}
	return CategoryPublic, true
}
