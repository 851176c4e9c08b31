package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// checkSecurityHeaders asserts what reliability spec A10 asks of every
// studio response.
func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{
		"default-src 'self'", "script-src 'self'", "object-src 'none'", "base-uri 'none'",
		"frame-ancestors 'none'", "img-src 'self' data: blob:", "connect-src 'self'",
	} {
		if !strings.Contains(csp, d+";") && !strings.HasSuffix(csp, d) {
			t.Errorf("%s: CSP %q lacks %q", what, csp, d)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:"} {
		if strings.Contains(csp, bad) {
			t.Errorf("%s: CSP %q allows %q", what, csp, bad)
		}
	}
	if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options = %q", what, got)
	}
	if got := h.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("%s: Referrer-Policy = %q", what, got)
	}
}

// assetRef matches the studio's references to its own files.
var assetRef = regexp.MustCompile(`"/ui/([a-z0-9._-]+)\?v=([0-9a-f]+)"`)

func TestIndex(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	resp, body := get(t, srv.URL+"/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control = %q, want revalidation for the page", cc)
	}
	checkSecurityHeaders(t, "GET /", resp.Header)

	refs := assetRef.FindAllStringSubmatch(body, -1)
	if len(refs) < 3 {
		t.Fatalf("page references %d fingerprinted files, want the stylesheet, the script and the icon:\n%s", len(refs), body)
	}
	if strings.Contains(strings.ReplaceAll(body, "?v=", ""), `"/ui/studio.js"`) {
		t.Error("a reference to studio.js was not fingerprinted")
	}
	for _, ref := range refs {
		r, _ := get(t, srv.URL+"/ui/"+ref[1]+"?v="+ref[2], nil)
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", ref[0], r.StatusCode)
			continue
		}
		if cc := r.Header.Get("Cache-Control"); cc != cacheImmutable {
			t.Errorf("%s: Cache-Control = %q, want %q", ref[0], cc, cacheImmutable)
		}
		if etag := r.Header.Get("ETag"); etag != `"`+ref[2]+`"` {
			t.Errorf("%s: ETag %s does not match the fingerprint", ref[0], etag)
		}
	}

	// 304 with the ETag; HEAD works like GET without a body.
	r2, b2 := get(t, srv.URL+"/", map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	if r2.StatusCode != http.StatusNotModified || b2 != "" {
		t.Errorf("conditional GET / = %d with %d bytes, want 304 and none", r2.StatusCode, len(b2))
	}
}

func TestAssets(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	tests := []struct {
		path   string
		status int
		ctype  string
		cache  string
	}{
		{"/ui/studio.js", http.StatusOK, "text/javascript; charset=utf-8", cacheRevalidate},
		{"/ui/studio.css", http.StatusOK, "text/css; charset=utf-8", cacheRevalidate},
		{"/ui/icon.svg", http.StatusOK, "image/svg+xml", cacheRevalidate},
		// A stale fingerprint is served (a page mid-deploy still works)
		// but not cached for a year under the wrong content.
		{"/ui/studio.js?v=0000000000000000", http.StatusOK, "text/javascript; charset=utf-8", cacheRevalidate},
		{"/ui/missing.js", http.StatusNotFound, "text/plain; charset=utf-8", cacheRevalidate},
		{"/ui/", http.StatusNotFound, "text/plain; charset=utf-8", cacheRevalidate},
		// The page is served only at /, not as a file.
		{"/ui/index.html", http.StatusNotFound, "text/plain; charset=utf-8", cacheRevalidate},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			resp, _ := get(t, srv.URL+tc.path, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.ctype {
				t.Errorf("Content-Type = %q, want %q", ct, tc.ctype)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != tc.cache {
				t.Errorf("Cache-Control = %q, want %q", cc, tc.cache)
			}
			checkSecurityHeaders(t, tc.path, resp.Header)
		})
	}
}

func TestOnlyRootIsThePage(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	for _, p := range []string{"/index.html", "/studio", "/ui"} {
		resp, _ := get(t, srv.URL+p, nil)
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMovedPermanently {
			t.Errorf("GET %s = %d, want 404 (or the mux's redirect)", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
}

// TestStaticRules scans the shipped files for what the CSP and the offline
// rule forbid, so a violation fails here before a browser sees it.
func TestStaticRules(t *testing.T) {
	t.Parallel()
	inlineScript := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]`)
	scriptTag := regexp.MustCompile(`(?i)<script[^>]*>`)
	handlerAttr := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr := regexp.MustCompile(`(?i)\sstyle\s*=`)
	styleTag := regexp.MustCompile(`(?i)<style[\s>]`)
	remote := regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	markupSinks := regexp.MustCompile(`\.(?:innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\(`)
	err := fs.WalkDir(staticFiles, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(staticFiles, p)
		if err != nil {
			return err
		}
		text := string(data)
		// The SVG namespace is a name, not something fetched.
		scan := strings.ReplaceAll(text, `xmlns="http://www.w3.org/2000/svg"`, "")
		if m := remote.FindString(scan); m != "" {
			t.Errorf("%s refers to another host (%q); the studio must work offline", p, m)
		}
		switch {
		case strings.HasSuffix(p, ".html"):
			if inlineScript.MatchString(text) {
				t.Errorf("%s has an inline script", p)
			}
			for _, tag := range scriptTag.FindAllString(text, -1) {
				if !strings.Contains(tag, `src="/ui/`) {
					t.Errorf("%s: script tag %s does not load a studio file", p, tag)
				}
			}
			for _, re := range []*regexp.Regexp{handlerAttr, styleAttr, styleTag} {
				if m := re.FindString(text); m != "" {
					t.Errorf("%s has %q, which the CSP blocks", p, m)
				}
			}
		case strings.HasSuffix(p, ".js"):
			if m := markupSinks.FindString(text); m != "" {
				t.Errorf("%s uses %q; text must go in through textContent", p, m)
			}
			if strings.Contains(text, `setAttribute("style"`) {
				t.Errorf("%s sets a style attribute, which the CSP blocks", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesUnknownTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fsys fstest.MapFS
	}{
		{"unknown type", fstest.MapFS{"s/index.html": {Data: []byte("<p>")}, "s/data.bin": {Data: []byte{0}}}},
		{"no page", fstest.MapFS{"s/app.js": {Data: []byte("1")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := newStudio(tc.fsys, "s"); err == nil {
				t.Error("newStudio accepted it")
			}
		})
	}
}

func TestFingerprintRewrite(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"s/index.html":   {Data: []byte(`<script src="/ui/app.js"></script><link href="/ui/app.js.css">`)},
		"s/app.js":       {Data: []byte("one")},
		"s/app.js.css":   {Data: []byte("two")},
		"s/unused.svg":   {Data: []byte("<svg/>")},
		"s/sub/deep.css": {Data: []byte("three")},
	}
	s, err := newStudio(fsys, "s")
	if err != nil {
		t.Fatal(err)
	}
	want := `<script src="/ui/app.js?v=` + s.assets["app.js"].version + `"></script><link href="/ui/app.js.css?v=` + s.assets["app.js.css"].version + `">`
	if got := string(s.index.body); got != want {
		t.Errorf("page = %s\nwant   %s", got, want)
	}
	if s.assets["sub/deep.css"] == nil {
		t.Error("files in subfolders are not served")
	}
	if s.assets["app.js"].version == s.assets["app.js.css"].version {
		t.Error("different files share a fingerprint")
	}
}

func TestPublicPaths(t *testing.T) {
	t.Parallel()
	got := PublicPaths()
	if len(got) != 2 || got[0] != "/" || got[1] != AssetPrefix {
		t.Errorf("PublicPaths() = %v", got)
	}
}
