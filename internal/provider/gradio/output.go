package gradio

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// fileRef is an output file as the completion names it.
type fileRef struct {
	URL  string // may be empty, absolute, relative or a data: URI
	Path string // may be empty
}

// completion is the parsed output of a successful process_completed.
type completion struct {
	files []fileRef
	seed  *int64
}

// errNoData reports a success:true completion without data: Gradio's way
// of saying that the event was cancelled. A fresh value each time, because
// callers may annotate it.
func errNoData() error {
	return &provider.Error{Kind: provider.KindCanceled, Message: "the upstream cancelled the job"}
}

// parseCompletion reads a successful output object and locates the image
// files: at idx when idx >= 0, else the first value shaped like an image,
// a gallery or a list of files. kind restricts the accepted shape.
func parseCompletion(output []byte, idx int, kind string, seedIdx *int) (*completion, error) {
	var out struct {
		Data *[]json.RawMessage `json:"data"`
	}
	if len(output) == 0 || string(output) == "null" {
		return nil, errNoData()
	}
	if err := json.Unmarshal(output, &out); err != nil {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "the completion output is not an object with data", Err: err}
	}
	if out.Data == nil {
		return nil, errNoData()
	}
	data := *out.Data
	c := &completion{}
	if idx >= 0 {
		if idx >= len(data) {
			return nil, provider.Errorf(provider.KindProtocol, "the completion has %d outputs, the image is expected at %d", len(data), idx)
		}
		files, err := filesOf(data[idx], kind)
		if err != nil {
			return nil, err
		}
		c.files = files
	} else {
		for _, v := range data {
			if files, err := filesOf(v, kind); err == nil && len(files) > 0 {
				c.files = files
				break
			}
		}
	}
	if len(c.files) == 0 {
		return nil, provider.Errorf(provider.KindUpstream, "the upstream returned no image")
	}
	if seedIdx != nil && *seedIdx < len(data) {
		c.seed = seedOf(data[*seedIdx])
	}
	return c, nil
}

// filesOf extracts the file references of one output value by shape.
func filesOf(raw json.RawMessage, kind string) ([]fileRef, error) {
	raw = bytes.TrimSpace(raw)
	bad := func(what string) error {
		return provider.Errorf(provider.KindProtocol, "the image output is not %s", what)
	}
	switch kind {
	case "image":
		f, ok := fileOf(raw)
		if !ok {
			return nil, bad("a file")
		}
		return []fileRef{f}, nil
	case "gallery", "list":
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil, bad("a list")
		}
		var files []fileRef
		for _, it := range items {
			f, ok := galleryItem(it)
			if kind == "list" {
				f, ok = fileOf(it)
			}
			if !ok {
				return nil, bad("a " + kind + " of files")
			}
			files = append(files, f)
		}
		return files, nil
	}
	// auto
	if f, ok := fileOf(raw); ok {
		return []fileRef{f}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, bad("an image, a gallery or a list of files")
	}
	var files []fileRef
	for _, it := range items {
		f, ok := fileOf(it)
		if !ok {
			f, ok = galleryItem(it)
		}
		if !ok {
			return nil, bad("an image, a gallery or a list of files")
		}
		files = append(files, f)
	}
	return files, nil
}

// fileOf reads a FileData (or ImageData) object; also a bare URL string.
func fileOf(raw json.RawMessage) (fileRef, bool) {
	var fd struct {
		Path *string `json:"path"`
		URL  *string `json:"url"`
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil && (strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "data:")) {
			return fileRef{URL: s}, true
		}
		return fileRef{}, false
	}
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &fd) != nil {
		return fileRef{}, false
	}
	var f fileRef
	if fd.Path != nil {
		f.Path = *fd.Path
	}
	if fd.URL != nil {
		f.URL = *fd.URL
	}
	return f, f.Path != "" || f.URL != ""
}

// galleryItem reads one Gallery entry {"image": FileData, "caption": …}.
func galleryItem(raw json.RawMessage) (fileRef, bool) {
	var it struct {
		Image json.RawMessage `json:"image"`
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &it) != nil || len(it.Image) == 0 {
		return fileRef{}, false
	}
	return fileOf(it.Image)
}

// seedOf reads a seed output: a number or a numeric string.
func seedOf(raw json.RawMessage) *int64 {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return nil
	}
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return &n
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
		return nil
	}
	n := int64(f)
	return &n
}

// fileURL resolves where to fetch f: its url (absolute, relative to the
// base, or data:), else the app's file route for its path.
func (p *Provider) fileURL(sp *spaceState, f fileRef) (string, error) {
	u := strings.TrimSpace(f.URL)
	if u == "" {
		pth := strings.TrimSpace(f.Path)
		if strings.HasPrefix(pth, "http://") || strings.HasPrefix(pth, "https://") {
			return pth, nil
		}
		if pth == "" {
			return "", provider.Errorf(provider.KindProtocol, "an output file has neither url nor path")
		}
		return p.base + sp.prefix + "/file=" + pth, nil
	}
	if strings.HasPrefix(u, "data:") {
		return u, nil
	}
	ref, err := url.Parse(u)
	if err != nil {
		return "", &provider.Error{Kind: provider.KindProtocol, Message: "an output file URL is malformed", Err: err}
	}
	if ref.IsAbs() {
		if ref.Scheme != "http" && ref.Scheme != "https" {
			return "", provider.Errorf(provider.KindProtocol, "an output file URL has scheme %q", ref.Scheme)
		}
		return u, nil
	}
	base, err := url.Parse(p.base + "/")
	if err != nil {
		return "", &provider.Error{Kind: provider.KindConfig, Message: "the base URL is malformed", Err: err}
	}
	// "/file=…" and "/gradio_api/file=…" are relative to the host root;
	// ResolveReference would also treat ":" after "file=" fine because the
	// reference starts with "/".
	return base.ResolveReference(ref).String(), nil
}

// fetchImage downloads one output and checks that it is an image.
func (p *Provider) fetchImage(ctx context.Context, sp *spaceState, f fileRef) (provider.Image, error) {
	u, err := p.fileURL(sp, f)
	if err != nil {
		return provider.Image{}, err
	}
	var data []byte
	if strings.HasPrefix(u, "data:") {
		data, err = decodeDataURL(u, p.cfg.MaxResultBytes)
	} else {
		data, err = p.download(ctx, u)
	}
	if err != nil {
		return provider.Image{}, err
	}
	mime, ok := imageio.Sniff(data)
	if !ok {
		return provider.Image{}, provider.Errorf(provider.KindProtocol, "the upstream returned a file that is not a PNG, JPEG, WebP or GIF image (%d bytes)", len(data))
	}
	return provider.Image{Data: data, MIME: mime}, nil
}

func (p *Provider) download(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	req, err := p.newRequest(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "image/*")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, downloadFailure(transportError(ctx, err))
	}
	defer resp.Body.Close()
	limit := p.cfg.MaxResultBytes
	if resp.StatusCode != http.StatusOK {
		body, _, _ := upstream.ReadLimited(resp.Body, maxSmallBody)
		e := statusError(resp, body, false).(*provider.Error)
		if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound {
			e.Kind = provider.KindUpstream
			e.Message = fmt.Sprintf("the result file is gone or not allowed (HTTP %d)", resp.StatusCode)
		}
		return nil, downloadFailure(e)
	}
	if resp.ContentLength > limit {
		return nil, provider.Errorf(provider.KindUpstream, "the result is %d bytes, over the %d-byte limit", resp.ContentLength, limit)
	}
	data, tooBig, err := upstream.ReadLimited(resp.Body, limit)
	if err != nil {
		return nil, downloadFailure(transportError(ctx, err))
	}
	if tooBig {
		return nil, provider.Errorf(provider.KindUpstream, "the result exceeds the %d-byte limit", limit)
	}
	return data, nil
}

// downloadFailure marks an error as happening after the work was done:
// never NotStarted, so the runner does not blindly rerun a finished job.
func downloadFailure(err error) error {
	if pe, ok := provider.AsError(err); ok {
		pe.NotStarted = false
		pe.Message = "downloading the result: " + pe.Message
		return pe
	}
	return err
}

// decodeDataURL decodes a data: URI, refusing payloads over limit before
// decoding them.
func decodeDataURL(u string, limit int64) ([]byte, error) {
	meta, payload, ok := strings.Cut(strings.TrimPrefix(u, "data:"), ",")
	if !ok {
		return nil, provider.Errorf(provider.KindProtocol, "a data: URL has no comma")
	}
	if strings.HasSuffix(strings.ToLower(meta), ";base64") {
		if int64(base64.StdEncoding.DecodedLen(len(payload))) > limit+3 {
			return nil, provider.Errorf(provider.KindUpstream, "the result exceeds the %d-byte limit", limit)
		}
		payload = strings.TrimRight(strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, payload), "=")
		data, err := base64.RawStdEncoding.DecodeString(payload)
		if err != nil {
			data, err = base64.RawURLEncoding.DecodeString(payload)
		}
		if err != nil {
			return nil, &provider.Error{Kind: provider.KindProtocol, Message: "a data: URL has bad base64", Err: err}
		}
		if int64(len(data)) > limit {
			return nil, provider.Errorf(provider.KindUpstream, "the result exceeds the %d-byte limit", limit)
		}
		return data, nil
	}
	if int64(len(payload)) > 3*limit {
		return nil, provider.Errorf(provider.KindUpstream, "the result exceeds the %d-byte limit", limit)
	}
	s, err := url.PathUnescape(payload)
	if err != nil {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "a data: URL has bad escapes", Err: err}
	}
	if int64(len(s)) > limit {
		return nil, provider.Errorf(provider.KindUpstream, "the result exceeds the %d-byte limit", limit)
	}
	return []byte(s), nil
}
