package openaiapi

import (
	"encoding/base64"
	"net/http"
	"testing"
)

// FuzzDataURL checks the data: URL parser on any string: it never panics,
// every refusal is a 400 or 413 naming the field, and what it accepts is
// never larger than the cap.
func FuzzDataURL(f *testing.F) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")
	for _, seed := range []string{
		"data:image/png;base64," + base64.StdEncoding.EncodeToString(png),
		"data:image/png;base64," + base64.RawStdEncoding.EncodeToString(png),
		"data:image/jpeg;charset=utf-8;base64,/9j/4AAQ",
		"data:image/png;base64,iVBO\nRw0K\r\nGgo=",
		"data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=",
		"data:text/html;base64,PGI+",
		"data:image/png,%89PNG",
		"DATA:IMAGE/PNG;BASE64,AAAA",
		"data:;base64,", "data:", "data:image/png;base64,!!!!", "https://example.org/a.png",
	} {
		f.Add(seed)
	}
	const maxBytes = 1 << 10
	f.Fuzz(func(t *testing.T, s string) {
		data, e := parseDataURL(s, maxBytes, "messages")
		if e != nil {
			if e.Param != "messages" || (e.Status != http.StatusBadRequest && e.Status != http.StatusRequestEntityTooLarge) {
				t.Fatalf("error %+v for %q", e, s)
			}
			return
		}
		if len(data) > maxBytes {
			t.Fatalf("accepted %d bytes over the cap of %d", len(data), maxBytes)
		}
	})
}
