package provider

import "testing"

func TestParseErrorKind(t *testing.T) {
	t.Parallel()
	for k := KindUpstream; k <= KindConfig; k++ {
		if got, ok := ParseErrorKind(k.String()); !ok || got != k {
			t.Errorf("ParseErrorKind(%q) = %v, %v", k.String(), got, ok)
		}
	}
	if _, ok := ParseErrorKind("kind(99)"); ok {
		t.Error("an unknown kind parsed")
	}
}
