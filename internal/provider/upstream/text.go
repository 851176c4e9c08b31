package upstream

import (
	"html"
	"strings"
	"unicode/utf8"
)

// MaxMessageLen bounds upstream text copied into error and log messages.
const MaxMessageLen = 500

// PlainText turns upstream markup into display text bounded to
// MaxMessageLen: StripHTML, then Clip.
func PlainText(s string) string {
	return Clip(StripHTML(s), MaxMessageLen)
}

// Clip bounds s to n bytes, cutting on a rune boundary and marking the cut
// with "…".
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// StripHTML turns markup into plain text, so that upstream messages
// (ZeroGPU notices embed links, proxies send whole error pages) are safe to
// show as text: tags are dropped (block tags become spaces), the content of
// script and style elements is skipped, entities are decoded and runs of
// white space collapse to one space. A '<' that does not open a tag stays
// as text; an unterminated tag ends the text.
func StripHTML(s string) string {
	var b strings.Builder
	skip := "" // name of the script/style element being skipped
	for i := 0; i < len(s); {
		if s[i] != '<' || i+1 >= len(s) || !opensTag(s[i+1]) {
			if skip == "" {
				b.WriteByte(s[i])
			}
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '>')
		if end < 0 {
			break
		}
		tag := strings.ToLower(s[i+1 : i+end])
		i += end + 1
		name := tagName(tag)
		if skip != "" {
			if name == "/"+skip {
				skip = ""
			}
			continue
		}
		if name == "script" || name == "style" {
			skip = name
			continue
		}
		if blockTags[strings.TrimPrefix(name, "/")] {
			b.WriteByte(' ')
		}
	}
	return strings.Join(strings.Fields(html.UnescapeString(b.String())), " ")
}

func opensTag(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '/' || c == '!' || c == '?'
}

// tagName returns the element name of a tag's inside ("div class=x" →
// "div", "/p" → "/p", "br/" → "br").
func tagName(tag string) string {
	if f := strings.Fields(tag); len(f) > 0 {
		return strings.TrimSuffix(f[0], "/")
	}
	return ""
}

// blockTags break the flow of text, so dropping them must leave a space.
var blockTags = map[string]bool{
	"br": true, "p": true, "div": true, "li": true, "tr": true, "td": true, "th": true, "title": true,
	"h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true, "body": true, "head": true,
	"html": true, "ul": true, "ol": true, "table": true, "hr": true,
}
