package gradiotest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/HugoSmits86/nativewebp"
)

// cacheDir is where Gradio keeps files by default on Linux.
const cacheDir = "/tmp/gradio"

// defaultUploadCap bounds one uploaded file when Options.MaxFileSize is 0,
// so a fake can never be made to buffer unbounded input.
const defaultUploadCap = 64 << 20

// maxSide bounds rendered images; the built-in sliders stop at 2048.
const maxSide = 4096

type storedFile struct {
	data  []byte
	ctype string
	mod   time.Time
}

// fileStore is the app's file cache, bounded FIFO so demo servers stay small.
type fileStore struct {
	mu    sync.Mutex
	max   int
	files map[string]*storedFile
	order []string
}

func newFileStore(max int) *fileStore {
	return &fileStore{max: max, files: map[string]*storedFile{}}
}

// put stores data under /tmp/gradio/<sha256>/<name> and returns the path.
func (fs *fileStore) put(name string, data []byte) string {
	sum := sha256.Sum256(data)
	return fs.putAt(cacheDir+"/"+hex.EncodeToString(sum[:])+"/"+name, data)
}

func (fs *fileStore) putAt(p string, data []byte) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, ok := fs.files[p]; ok {
		return p
	}
	fs.files[p] = &storedFile{data: data, ctype: contentType(p), mod: time.Now()}
	fs.order = append(fs.order, p)
	for len(fs.order) > fs.max {
		delete(fs.files, fs.order[0])
		fs.order[0] = ""
		fs.order = fs.order[1:]
	}
	return p
}

func (fs *fileStore) get(p string) (*storedFile, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, ok := fs.files[p]
	return f, ok
}

func (fs *fileStore) remove(p string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.files, p)
}

func (fs *fileStore) clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.files = map[string]*storedFile{}
	fs.order = nil
}

// ExpireFile forgets one cached path, so fetching it answers 403 as an
// expired Space cache does.
func (s *Server) ExpireFile(path string) { s.files.remove(path) }

// ExpireFiles forgets every cached file.
func (s *Server) ExpireFiles() { s.files.clear() }

// AddFile puts bytes into the file cache as if the app had produced them
// and returns the cached path.
func (s *Server) AddFile(name string, data []byte) string { return s.files.put(name, data) }

// safeMIME are the types Gradio serves inline; everything else is an
// attachment of type application/octet-stream.
var safeMIME = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true, "image/bmp": true,
	"image/avif": true, "image/x-icon": true, "audio/mpeg": true, "audio/wav": true, "audio/ogg": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "text/plain": true,
}

func contentType(p string) string {
	ext := strings.ToLower(path.Ext(p))
	switch ext {
	case ".png":
		return "image/png"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".webp":
		return "image/webp"
	case ".gif":
		return "image/gif"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		if i := strings.IndexByte(t, ';'); i >= 0 {
			t = t[:i]
		}
		return t
	}
	return "application/octet-stream"
}

// fileData builds the output FileData for a cached path.
func (s *Server) fileData(root, p, name string) FileData {
	return FileData{
		"path": p, "url": root + s.prefix + "/file=" + p, "size": nil, "orig_name": name,
		"mime_type": nil, "is_stream": false, "meta": map[string]any{"_type": "gradio.FileData"},
	}
}

func (s *Server) handleFile(w http.ResponseWriter, r *http.Request, p string) {
	f, ok := s.files.get(p)
	if !ok {
		writeJSON(w, http.StatusForbidden, object{{"detail", "File not allowed: " + p + "."}})
		return
	}
	name := path.Base(p)
	if safeMIME[f.ctype] {
		w.Header().Set("Content-Type", f.ctype)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": name}))
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	http.ServeContent(w, r, name, f.mod, bytes.NewReader(f.data))
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		writeJSON(w, http.StatusBadRequest, object{{"detail", "Invalid content type."}})
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	limit := s.opts.MaxFileSize
	if limit <= 0 {
		limit = defaultUploadCap
	}
	type part struct {
		name, stored string
		data         []byte
	}
	var parts []part
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			http.Error(w, "There was an error parsing the body", http.StatusBadRequest)
			return
		}
		if p.FormName() != "files" {
			_, _ = io.Copy(io.Discard, io.LimitReader(p, limit))
			continue
		}
		data, err := io.ReadAll(io.LimitReader(p, limit+1))
		if err != nil {
			http.Error(w, "There was an error parsing the body", http.StatusBadRequest)
			return
		}
		if int64(len(data)) > limit {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = fmt.Fprintf(w, "File size exceeded maximum allowed size of %d bytes.", limit)
			return
		}
		orig := p.FileName()
		stored, ok := sanitizeName(orig)
		if !ok {
			writeJSON(w, http.StatusBadRequest, object{{"detail", "Invalid file name: " + orig}})
			return
		}
		parts = append(parts, part{name: orig, stored: stored, data: data})
	}
	paths := make([]string, 0, len(parts))
	for _, p := range parts {
		sp := s.files.put(p.stored, p.data)
		paths = append(paths, sp)
		s.record(func() { s.uploads = append(s.uploads, Upload{Name: p.name, Data: p.data, Path: sp}) })
	}
	writeJSON(w, http.StatusOK, paths)
}

// sanitizeName turns a client file name into a cache file name; an empty
// name becomes tmp<10 hex> as in Gradio.
func sanitizeName(name string) (string, bool) {
	name = strings.ReplaceAll(name, "\\", "/")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(`<>:"|?*`, r) {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if name == "" {
		var b [5]byte
		_, _ = rand.Read(b[:])
		return "tmp" + hex.EncodeToString(b[:]), true
	}
	if name == "." || name == ".." || len(name) > 255 {
		return "", false
	}
	return name, true
}

// renderKey identifies a rendered image in the render cache.
type renderKey struct {
	w, h   int
	seed   int64
	format string
}

// renderCache keeps recent encodings, because encoding dominates the fake's
// cost and benchmarks repeat sizes and seeds.
type renderCache struct {
	mu    sync.Mutex
	items map[renderKey][]byte
	order []renderKey
}

const renderCacheSize = 64

var pngEncoder = &png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngPool{}}

type pngPool struct{ p sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

// render returns an encoded width x height image derived from seed.
func (s *Server) render(width, height int, seed int64, format string) ([]byte, error) {
	if width < 1 || height < 1 || width > maxSide || height > maxSide {
		return nil, fmt.Errorf("image size %dx%d out of range", width, height)
	}
	if format == "" {
		format = "png"
	}
	key := renderKey{width, height, seed, format}
	rc := &s.renders
	rc.mu.Lock()
	if b, ok := rc.items[key]; ok {
		rc.mu.Unlock()
		return b, nil
	}
	rc.mu.Unlock()
	b, err := encodeImage(Pattern(width, height, seed), format)
	if err != nil {
		return nil, err
	}
	rc.mu.Lock()
	if rc.items == nil {
		rc.items = map[renderKey][]byte{}
	}
	if _, ok := rc.items[key]; !ok {
		rc.items[key] = b
		rc.order = append(rc.order, key)
		if len(rc.order) > renderCacheSize {
			delete(rc.items, rc.order[0])
			rc.order = rc.order[1:]
		}
	}
	rc.mu.Unlock()
	return b, nil
}

func encodeImage(img image.Image, format string) ([]byte, error) {
	var buf bytes.Buffer
	switch format {
	case "png":
		if err := pngEncoder.Encode(&buf, img); err != nil {
			return nil, fmt.Errorf("encoding png: %w", err)
		}
	case "webp":
		if err := nativewebp.Encode(&buf, img, nil); err != nil {
			return nil, fmt.Errorf("encoding webp: %w", err)
		}
	default:
		return nil, fmt.Errorf("unsupported image format %q", format)
	}
	return buf.Bytes(), nil
}

// Pattern draws the deterministic test image for a seed: diagonal colour
// bands whose colours and width come from the seed, so different seeds give
// different pixels. It is paletted (one byte a pixel, no PNG filtering)
// because encoding dominates the fake's cost under benchmarks.
func Pattern(width, height int, seed int64) *image.Paletted {
	h := fnv.New64a()
	var sb [8]byte
	for i := range sb {
		sb[i] = byte(seed >> (8 * i))
	}
	_, _ = h.Write(sb[:])
	x := h.Sum64()
	r0, g0, b0 := byte(x), byte(x>>8), byte(x>>16)
	dr, dg, db := byte(x>>24)|1, byte(x>>32)|1, byte(x>>40)|1
	band := 8 + int(x>>48)%24
	pal := make(color.Palette, 256)
	for k := range pal {
		kb := byte(k)
		pal[k] = color.NRGBA{R: r0 + kb*dr, G: g0 + kb*dg, B: b0 + kb*db, A: 0xff}
	}
	img := image.NewPaletted(image.Rect(0, 0, width, height), pal)
	for y := 0; y < height; y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+width]
		for xx := range row {
			row[xx] = byte((xx + y) / band)
		}
	}
	return img
}
