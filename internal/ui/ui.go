// Package ui serves easel's web studio: one page at / and its static files
// under /ui/, all embedded in the binary so the studio works offline and
// loads nothing from another origin.
//
// The page is the same for everyone and carries no configuration: the
// browser asks the API for models and jobs with the key its user typed,
// so no key or secret can ever be rendered into a served file.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var staticFiles embed.FS

// AssetPrefix is the path under which the studio's static files are
// served.
const AssetPrefix = "/ui/"

// indexName is the page served at /, the only file not served under
// AssetPrefix.
const indexName = "index.html"

// ContentSecurityPolicy is sent with every studio response. Scripts and
// styles come only from easel's own files (no inline code, no style
// attributes), images also from data: and blob: URLs (upload previews),
// and the page may talk to its own origin only.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// Cache lifetimes: a fingerprinted URL (?v=<content hash>) never changes
// meaning, so it may be kept for a year; anything else is revalidated
// with its ETag on every use.
const (
	cacheImmutable   = "public, max-age=31536000, immutable"
	cacheRevalidate  = "no-cache"
	versionParam     = "v"
	fingerprintChars = 16
)

// contentTypes are the only file types the studio ships; a file of any
// other type in static/ is a build mistake that New reports.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// PublicPaths are the studio's paths in the form server.Options.PublicPaths
// takes ("/" exact, a trailing slash for a prefix): the page and its files
// are the same for every visitor and hold no secrets, and a browser cannot
// attach the API key to a page load anyway.
func PublicPaths() []string { return []string{"/", AssetPrefix} }

// file is one embedded file, ready to serve.
type file struct {
	name    string
	body    []byte
	ctype   string
	etag    string
	version string
}

// Studio serves the page and its files.
type Studio struct {
	index  *file
	assets map[string]*file
}

// New loads the embedded files, fingerprints them and points the page's
// references at the fingerprinted URLs.
func New() (*Studio, error) {
	return newStudio(staticFiles, "static")
}

func newStudio(fsys fs.FS, root string) (*Studio, error) {
	s := &Studio{assets: map[string]*file{}}
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		name := strings.TrimPrefix(p, root+"/")
		ctype, ok := contentTypes[path.Ext(name)]
		if !ok {
			return &fs.PathError{Op: "serve", Path: name, Err: fs.ErrInvalid}
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		f := &file{name: name, body: body, ctype: ctype}
		if name == indexName {
			s.index = f
			return nil
		}
		s.assets[name] = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.index == nil {
		return nil, &fs.PathError{Op: "serve", Path: indexName, Err: fs.ErrNotExist}
	}
	for _, f := range s.assets {
		fingerprint(f)
		// Only quoted references are rewritten, so a name that is a
		// prefix of another ("app.js" in "app.js.map") is left alone.
		s.index.body = bytes.ReplaceAll(s.index.body,
			[]byte(`"`+AssetPrefix+f.name+`"`),
			[]byte(`"`+AssetPrefix+f.name+"?"+versionParam+"="+f.version+`"`))
	}
	fingerprint(s.index)
	return s, nil
}

func fingerprint(f *file) {
	sum := sha256.Sum256(f.body)
	f.version = hex.EncodeToString(sum[:])[:fingerprintChars]
	f.etag = `"` + f.version + `"`
}

// Register builds the studio and adds its routes to mux. The embedded
// files are checked by the package's tests, so a failure here means a
// broken build; it panics rather than serve a half-working page.
func Register(mux *http.ServeMux) {
	s, err := New()
	if err != nil {
		panic("ui: loading the embedded studio: " + err.Error())
	}
	s.Register(mux)
}

// Register adds the page at / (exactly) and the files under AssetPrefix.
func (s *Studio) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.serveIndex)
	mux.HandleFunc("GET "+AssetPrefix+"{name...}", s.serveAsset)
}

// setSecurityHeaders sets what every studio response carries, pages and
// files alike (an SVG opened on its own is a document too).
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	// Result URLs are signed; a Referer would hand them to any site the
	// page links to.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}

func (s *Studio) serveIndex(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, s.index, cacheRevalidate)
}

func (s *Studio) serveAsset(w http.ResponseWriter, r *http.Request) {
	f, ok := s.assets[r.PathValue("name")]
	if !ok {
		setSecurityHeaders(w.Header())
		w.Header().Set("Cache-Control", cacheRevalidate)
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	cache := cacheRevalidate
	if v := r.URL.Query().Get(versionParam); v == f.version {
		cache = cacheImmutable
	}
	s.serve(w, r, f, cache)
}

func (*Studio) serve(w http.ResponseWriter, r *http.Request, f *file, cache string) {
	h := w.Header()
	setSecurityHeaders(h)
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", cache)
	h.Set("ETag", f.etag)
	// Embedded files have no modification time; ServeContent answers
	// If-None-Match with 304 from the ETag set above.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
