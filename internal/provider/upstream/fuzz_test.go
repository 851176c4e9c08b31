package upstream

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzStripHTML feeds arbitrary markup to StripHTML and PlainText: never a
// panic, white space always collapsed, and PlainText within its bound.
func FuzzStripHTML(f *testing.F) {
	for _, s := range []string{
		"<html><body><p>Too&nbsp;many</p></body></html>",
		"<script>x</script>ok", "a < b", "<", "<a", "&#0;&amp;&", "<style>", "</>", "<!---->",
		strings.Repeat("é", 300),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := StripHTML(s)
		if out != strings.Join(strings.Fields(out), " ") {
			t.Fatalf("StripHTML(%q) = %q: white space not collapsed", s, out)
		}
		pt := PlainText(s)
		if len(pt) > MaxMessageLen+len("…") {
			t.Fatalf("PlainText gave %d bytes", len(pt))
		}
		if utf8.ValidString(out) && !utf8.ValidString(pt) {
			t.Fatalf("PlainText cut inside a rune: %q", pt)
		}
	})
}
