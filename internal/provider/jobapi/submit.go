package jobapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
	"github.com/easelgw/easel/internal/retryafter"
)

// maxAPIBody caps a submit or poll answer: they are small JSON documents,
// and anything larger is a misbehaving upstream.
const maxAPIBody = 1 << 20

// maxJobIDLen bounds the upstream job id kept in job records and URLs.
const maxJobIDLen = 512

// buildBody encodes the configured fields for req. It returns the body and
// its Content-Type.
func (p *Provider) buildBody(req *provider.Request) ([]byte, string, error) {
	if p.cfg.Submit.Body == "json" {
		obj := make(map[string]any, len(p.cfg.Submit.Fields))
		for _, f := range p.cfg.Submit.Fields {
			switch f.From {
			case "image":
				if len(req.Images) > 0 {
					obj[f.Name] = encodeImage(req.Images[0], f.Encoding)
				}
			case "images":
				if len(req.Images) > 0 {
					list := make([]string, len(req.Images))
					for i, img := range req.Images {
						list[i] = encodeImage(img, f.Encoding)
					}
					obj[f.Name] = list
				}
			default:
				if v, ok := p.fieldValue(f, req); ok {
					obj[f.Name] = v
				}
			}
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, "", &provider.Error{Kind: provider.KindConfig, Message: "encoding the submit body failed", NotStarted: true, Err: err}
		}
		return b, "application/json", nil
	}

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range p.cfg.Submit.Fields {
		var err error
		switch f.From {
		case "image":
			if len(req.Images) > 0 {
				err = writeFilePart(mw, f.Name, req.Images[0], 0)
			}
		case "images":
			for i, img := range req.Images {
				if err = writeFilePart(mw, f.Name, img, i); err != nil {
					break
				}
			}
		default:
			if v, ok := p.fieldValue(f, req); ok {
				err = mw.WriteField(f.Name, formText(v))
			}
		}
		if err != nil {
			return nil, "", &provider.Error{Kind: provider.KindConfig, Message: "encoding the submit form failed", NotStarted: true, Err: err}
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", &provider.Error{Kind: provider.KindConfig, Message: "encoding the submit form failed", NotStarted: true, Err: err}
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// writeFilePart adds input image i as a file part labelled with its real
// type, named "image<i>.<ext>" when the client gave no file name.
func writeFilePart(mw *multipart.Writer, name string, img provider.InputImage, i int) error {
	file := img.Name
	if file == "" {
		file = "image" + itoa(i) + upstream.FileExt(img.MIME)
	}
	return upstream.WriteFilePart(mw, name, file, img.MIME, img.Data)
}

func encodeImage(img provider.InputImage, encoding string) string {
	b64 := base64.StdEncoding.EncodeToString(img.Data)
	if encoding == "base64" {
		return b64
	}
	mime := img.MIME
	if mime == "" {
		mime = "application/octet-stream"
	}
	return "data:" + mime + ";base64," + b64
}

// formText spells a field value for a multipart form.
func formText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	}
	return fmt.Sprint(v)
}

// fieldValue returns the value of a non-image field for req, or false when
// the field is to be left out.
func (p *Provider) fieldValue(f Field, req *provider.Request) (any, bool) {
	if f.From == "" {
		return f.Value, true
	}
	var v any
	switch f.From {
	case "prompt":
		if req.Prompt != "" {
			v = req.Prompt
		}
	case "negative_prompt":
		if req.NegativePrompt != "" {
			v = req.NegativePrompt
		}
	case "model":
		if p.cfg.Model != "" {
			v = p.cfg.Model
		}
	case "aspect_ratio":
		if r := p.aspectRatio(req); r != "" {
			v = r
		}
	case "size":
		if req.Width > 0 && req.Height > 0 {
			v = itoa(req.Width) + "x" + itoa(req.Height)
		}
	case "width":
		if req.Width > 0 {
			v = req.Width
		}
	case "height":
		if req.Height > 0 {
			v = req.Height
		}
	case "seed":
		if req.Seed != nil {
			v = *req.Seed
		}
	case "steps":
		if req.Steps > 0 {
			v = req.Steps
		}
	case "n":
		if req.N > 0 {
			v = req.N
		}
	}
	if v == nil {
		v = f.Default
	}
	return v, v != nil
}

// aspectRatio picks the ratio to send: the request's own when the upstream
// lists it, else the listed ratio nearest to the request's ratio or size,
// else DefaultAspectRatio. Without a list, the request's ratio or its size
// reduced to lowest terms is sent as is.
func (p *Provider) aspectRatio(req *provider.Request) string {
	list := p.cfg.AspectRatios
	if r := strings.TrimSpace(req.AspectRatio); r != "" {
		if len(list) == 0 || contains(list, r) {
			return r
		}
		if w, h, ok := provider.ParseAspectRatio(r); ok {
			if near := provider.NearestAspectRatio(list, w, h); near != "" {
				return near
			}
		}
	}
	if req.Width > 0 && req.Height > 0 {
		if len(list) == 0 {
			g := gcd(req.Width, req.Height)
			return itoa(req.Width/g) + ":" + itoa(req.Height/g)
		}
		if near := provider.NearestAspectRatio(list, req.Width, req.Height); near != "" {
			return near
		}
	}
	return p.cfg.DefaultAspectRatio
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return max(a, 1)
}

// submit sends the job and returns the upstream's job id.
func (p *Provider) submit(ctx context.Context, req *provider.Request) (string, error) {
	body, ctype, err := p.buildBody(req)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	hreq, err := p.newRequest(cctx, p.cfg.Submit.Method, p.cfg.Submit.URL, bytes.NewReader(body), callAPI)
	if err != nil {
		return "", err
	}
	hreq.Header.Set("Content-Type", ctype)
	resp, err := p.client.Do(hreq)
	if err != nil {
		return "", transportError(ctx, err, "submitting the job")
	}
	defer resp.Body.Close()
	raw, err := readAPIBody(resp)
	if err != nil {
		if ctx.Err() != nil {
			return "", upstream.CanceledError(ctx, "reading the submit answer")
		}
		return "", err
	}
	return p.acceptAnswer(resp, raw)
}

// readAPIBody reads a submit or poll answer through the size cap, refusing
// by Content-Length before reading.
func readAPIBody(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > maxAPIBody {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("the upstream's answer is too large (%d bytes)", resp.ContentLength)}
	}
	raw, tooBig, err := upstream.ReadLimited(resp.Body, maxAPIBody)
	if err != nil {
		return nil, &provider.Error{Kind: provider.KindUnavailable, Message: "reading the upstream's answer failed", Err: err}
	}
	if tooBig {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("the upstream's answer is larger than %d bytes", maxAPIBody)}
	}
	return raw, nil
}

// decodeJSON parses an answer keeping numbers exact (a code of 200 must
// compare equal to "200", and job ids may be large integers).
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// acceptAnswer reads the submit answer into a job id or a typed error.
func (p *Provider) acceptAnswer(resp *http.Response, raw []byte) (string, error) {
	a := &p.cfg.Accept
	if !p.okStatus(resp.StatusCode) {
		return "", p.submitStatusError(resp, raw)
	}
	doc, err := decodeJSON(raw)
	if err != nil {
		return "", &provider.Error{Kind: provider.KindProtocol, Message: "the upstream's submit answer is not JSON: " + snippet(raw), Err: err}
	}
	msg := func() string {
		if v, ok := p.paths.acceptMessage.Lookup(doc); ok {
			return messageText(v)
		}
		return ""
	}
	if !p.paths.acceptCode.IsZero() {
		code, ok := p.paths.acceptCode.Lookup(doc)
		if !ok {
			return "", &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("the upstream's submit answer has no %s: %s", a.CodePath, snippet(raw))}
		}
		codeText, _ := scalarText(code)
		switch {
		case containsText(a.RateLimitCodes, code):
			ra := retryafter.Parse(resp.Header.Get("Retry-After"), p.now())
			if ra == 0 {
				ra = a.RateLimitRetryAfter
			}
			return "", &provider.Error{Kind: provider.KindRateLimited, NotStarted: true, RetryAfter: ra,
				Message: withDetail("the upstream is rate limiting requests (code "+codeText+")", msg())}
		case !containsText(a.CodeOK, code):
			e := &provider.Error{Kind: provider.KindUpstream, Message: withDetail("the upstream refused the job (code "+codeText+")", msg())}
			if n, err := strconv.Atoi(codeText); err == nil && n >= 400 && n < 500 {
				// A 4xx code with no job id is a refusal of these inputs:
				// no job exists upstream.
				e.Kind, e.NotStarted = provider.KindBadRequest, true
			}
			return "", e
		}
	}
	v, ok := p.paths.jobID.Lookup(doc)
	if !ok {
		return "", &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("the upstream's submit answer has no job id at %s: %s", a.JobIDPath, snippet(raw))}
	}
	id, ok := scalarText(v)
	if !ok || strings.TrimSpace(id) == "" || len(id) > maxJobIDLen {
		return "", &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("the upstream's job id at %s is not a usable id: %s", a.JobIDPath, snippet(raw))}
	}
	return id, nil
}

func (p *Provider) okStatus(code int) bool {
	if len(p.cfg.Accept.OKStatus) == 0 {
		return code >= 200 && code <= 299
	}
	for _, c := range p.cfg.Accept.OKStatus {
		if c == code {
			return true
		}
	}
	return false
}

// submitStatusError maps an HTTP error answer to the submit. Only answers
// that prove the job was not taken (429, 503, auth and input refusals) are
// NotStarted; any other 5xx may have come after the upstream began.
func (p *Provider) submitStatusError(resp *http.Response, raw []byte) error {
	code := resp.StatusCode
	detail := p.errorDetail(raw, p.paths.acceptMessage)
	e := &provider.Error{Err: fmt.Errorf("HTTP %d from %s", code, resp.Request.URL.Redacted())}
	switch {
	case code == http.StatusTooManyRequests:
		e.Kind, e.NotStarted = provider.KindRateLimited, true
		e.RetryAfter = retryafter.Parse(resp.Header.Get("Retry-After"), p.now())
		e.Message = withDetail("the upstream is rate limiting requests (HTTP 429)", detail)
	case code == http.StatusServiceUnavailable:
		e.Kind, e.NotStarted = provider.KindUnavailable, true
		e.RetryAfter = retryafter.Parse(resp.Header.Get("Retry-After"), p.now())
		e.Message = withDetail("the upstream is unavailable (HTTP 503)", detail)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e.Kind, e.NotStarted = provider.KindConfig, true
		e.Message = withDetail(fmt.Sprintf("the upstream refused the request (HTTP %d): check the backend's headers and key", code), detail)
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		e.Kind, e.NotStarted = provider.KindConfig, true
		e.Message = fmt.Sprintf("the submit URL answered HTTP %d: check submit.url and submit.method", code)
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusUnprocessableEntity:
		e.Kind, e.NotStarted = provider.KindBadRequest, true
		e.Message = withDetail(fmt.Sprintf("the upstream rejected the inputs (HTTP %d)", code), detail)
	case code >= 500:
		e.Kind = provider.KindUnavailable
		e.Message = withDetail(fmt.Sprintf("the upstream failed (HTTP %d)", code), detail)
	default:
		e.Kind = provider.KindUpstream
		e.Message = withDetail(fmt.Sprintf("unexpected HTTP %d from the upstream", code), detail)
	}
	return e
}

// errorDetail extracts the upstream's message from an error body: the
// configured message member of a JSON body, else the body's text with
// HTML stripped.
func (p *Provider) errorDetail(raw []byte, msgPath Path) string {
	if doc, err := decodeJSON(raw); err == nil {
		if v, ok := msgPath.Lookup(doc); ok {
			if s := messageText(v); s != "" {
				return s
			}
		}
		if obj, ok := doc.(map[string]any); ok {
			if s := messageText(obj); s != "" {
				return s
			}
		}
	}
	return bodyText(raw)
}

// snippet shows the start of an unreadable answer in an error message.
func snippet(raw []byte) string {
	const n = 120
	s := bodyText(raw)
	if s == "" {
		return "(empty body)"
	}
	return upstream.Clip(s, n)
}

func withDetail(msg, detail string) string {
	if detail == "" {
		return msg
	}
	return msg + ": " + detail
}

// retryAfterOr returns the Retry-After of resp, or def when it has none.
func (p *Provider) retryAfterOr(resp *http.Response, def time.Duration) time.Duration {
	if d := retryafter.Parse(resp.Header.Get("Retry-After"), p.now()); d > 0 {
		return d
	}
	return def
}
