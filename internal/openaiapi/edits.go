package openaiapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
)

// POST /v1/images/edits takes one or more input images, an optional mask
// and the generations fields, in either of two body forms:
//
//   - multipart/form-data (what every SDK sends): files in parts named
//     "image", "image[]" or "image[N]", in arrival order (several parts of
//     one name are several images), an optional "mask" file, and text
//     fields. Part Content-Types and file names are ignored (the SDKs send
//     application/octet-stream and "anonymous_file"): the type comes from
//     the bytes.
//   - application/json: {"images":[{"image_url":"data:…"|"https://…"}],
//     "mask":{"image_url":…}, "prompt":…, …}; http(s) URLs are fetched
//     through the guarded Fetcher. {"file_id":…} is refused: easel has no
//     Files API.
//
// Read fields: prompt, model, n, size, response_format, output_format,
// stream, partial_images, and the extensions seed, negative_prompt, steps
// and aspect_ratio (plus the aliases image_size, batch_size and
// num_inference_steps). Accepted and ignored, because no backend easel
// drives has an equivalent: background, input_fidelity, quality,
// moderation, output_compression, user, safety_identifier, and any other
// text field. A "markup" file is refused, because ignoring it would change
// the result silently.
//
// The multipart body is streamed part by part (never ParseMultipartForm,
// which would spill files to disk and keep a second copy): each file is
// read once, through its own limit, into the one byte slice that goes on to
// the job, and its header is checked against the pixel cap before the next
// part is read.

// Limits of the edits body that have no Options field.
const (
	// maxTextFieldBytes caps one text field of a multipart body.
	maxTextFieldBytes = 128 << 10
	// multipartReadAhead covers the bytes mime/multipart may have read
	// ahead of the part it returns (its buffer is 4 KiB).
	multipartReadAhead = 64 << 10
	// uploadReadTimeout bounds how long a client may take to send an edits
	// body (50 MiB at 0.4 MiB/s).
	uploadReadTimeout = 2 * time.Minute
)

// editParams is a decoded /v1/images/edits request.
type editParams struct {
	imageParams
	Images []provider.InputImage
	Mask   *provider.InputImage
	// imageURLs and maskURL are the JSON form's references, loaded by the
	// handler once the body is fully checked.
	imageURLs []string
	maskURL   string
}

// editsJSONKeys are the JSON form's keys easel reads.
var editsJSONKeys = append([]string{"images", "mask"}, generationsKeys...)

// editsIntFields and editsBoolFields are the multipart text fields that
// carry a number or a boolean: their text is handed to the shared JSON
// field readers as a literal, so both forms get the same checks.
var (
	editsIntFields  = map[string]bool{"n": true, "seed": true, "steps": true, "partial_images": true, "batch_size": true, "num_inference_steps": true}
	editsBoolFields = map[string]bool{"stream": true, "async": true}
)

func (a *API) handleEdits(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var p *editParams
	switch {
	case err == nil && mt == "multipart/form-data":
		p, err = a.decodeEditsMultipart(w, r)
	case err == nil && mt == "application/json":
		p, err = a.decodeEditsJSON(w, r)
	default:
		err = &apiError{Status: http.StatusUnsupportedMediaType, Type: "invalid_request_error",
			Code: "unsupported_media_type", Message: "Send the edit as multipart/form-data or application/json."}
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	model, err := a.resolveModel(p.Model)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if len(p.imageURLs) > 0 {
		// The model is checked before any URL is fetched, so a request
		// that would be refused anyway costs no download.
		if mi, ok := a.svc.Model(model); ok && !mi.Capabilities.ImageToImage {
			a.writeError(w, r, notAnEditModel(mi.ID, "images"))
			return
		}
		if err := a.loadEditURLs(r, p); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	req := p.request(model, provider.KindEdit)
	req.Images = p.Images
	req.Mask = p.Mask
	a.runImages(w, r, req, &p.imageParams, editEvents)
}

func notAnEditModel(id, param string) error {
	return &gen.InvalidError{Param: param, Code: "unsupported_value",
		Message: "model '" + id + "' does not support image edits (image input); use a model that does"}
}

// loadEditURLs turns the JSON form's references into checked images.
func (a *API) loadEditURLs(r *http.Request, p *editParams) error {
	budget := &imageBudget{left: a.maxUpload}
	for i, u := range p.imageURLs {
		img, err := a.loadImageURL(r.Context(), u, fmt.Sprintf("images[%d]", i), i, budget)
		if err != nil {
			return err
		}
		p.Images = append(p.Images, img)
	}
	if p.maskURL != "" {
		m, err := a.loadImageURL(r.Context(), p.maskURL, "mask", 0, budget)
		if err != nil {
			return err
		}
		p.Mask = &m
	}
	return nil
}

// decodeEditsJSON reads the JSON form. Image references are only
// collected here; they are loaded after the model is known.
func (a *API) decodeEditsJSON(w http.ResponseWriter, r *http.Request) (*editParams, error) {
	body, err := readBody(w, r, a.maxUpload)
	if err != nil {
		return nil, err
	}
	o, e := decodeObject(body, editsJSONKeys, "")
	if e != nil {
		return nil, e
	}
	ip, e := a.imageParamsFrom(o)
	if e != nil {
		return nil, e
	}
	p := &editParams{imageParams: *ip}
	raw, ok := o["images"]
	if !ok {
		return nil, badRequest("images", "missing_required_parameter", "'images' is required: a list of {\"image_url\": …}.")
	}
	refs, e := decodeArray(raw, "images")
	if e != nil {
		return nil, e
	}
	if len(refs) == 0 {
		return nil, badRequest("images", "missing_required_parameter", "'images' must hold at least one image.")
	}
	if len(refs) > a.maxImages {
		return nil, a.tooManyImages("images")
	}
	for i, ref := range refs {
		u, e := imageRef(ref, fmt.Sprintf("images[%d]", i))
		if e != nil {
			return nil, e
		}
		p.imageURLs = append(p.imageURLs, u)
	}
	if raw, ok := o["mask"]; ok {
		u, e := imageRef(raw, "mask")
		if e != nil {
			return nil, e
		}
		p.maskURL = u
	}
	return p, nil
}

var imageRefKeys = []string{"image_url", "file_id"}

// imageRef reads one {"image_url": "…"} reference.
func imageRef(raw json.RawMessage, param string) (string, *apiError) {
	o, e := decodeObject(raw, imageRefKeys, param)
	if e != nil {
		return "", e
	}
	if o.has("file_id") {
		return "", badRequest(param+".file_id", "unsupported_value",
			"'file_id' is not supported: easel has no Files API; send 'image_url' with a data: or http(s) URL.")
	}
	u, ok, e := o.str("image_url", param+".image_url")
	if e != nil {
		return "", e
	}
	if !ok || u == "" {
		return "", badRequest(param+".image_url", "missing_required_parameter", "'"+param+".image_url' is required.")
	}
	return u, nil
}

// decodeEditsMultipart streams a multipart body. The whole body is capped
// at MaxUploadBytes (413), each file at MaxImageBytes (413 naming the
// part), the number of images at MaxInputImages (400), the number of parts
// at MaxParts (400) and each text field at maxTextFieldBytes (400).
func (a *API) decodeEditsMultipart(w http.ResponseWriter, r *http.Request) (*editParams, error) {
	if r.ContentLength > a.maxUpload {
		// Refuse at once, without waiting for a body we will not read.
		return nil, tooLarge(a.maxUpload)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(uploadReadTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	counted := &countingReader{r: r.Body}
	r.Body = http.MaxBytesReader(w, io.NopCloser(counted), a.maxUpload)
	// left bounds the size of the next part: what the Content-Length says
	// is still to come, plus what the multipart reader may have buffered.
	left := func() int64 {
		if r.ContentLength < 0 {
			return -1
		}
		return max(r.ContentLength-counted.n, 0) + multipartReadAhead
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_body",
			Message: "The request body is not a valid multipart form.", cause: err}
	}
	p := &editParams{}
	fields := object{}
	for parts := 1; ; parts++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, a.bodyError(err)
		}
		if parts > a.maxParts {
			part.Close()
			return nil, badRequest("", "too_many_parts", "The multipart body has more than "+strconv.Itoa(a.maxParts)+" parts.")
		}
		err = a.readEditPart(part, left(), p, fields)
		part.Close()
		if err != nil {
			return nil, err
		}
	}
	ip, e := a.imageParamsFrom(fields)
	if e != nil {
		return nil, e
	}
	p.imageParams = *ip
	if len(p.Images) == 0 {
		return nil, badRequest("image", "missing_required_parameter", "'image' is required: send one or more image files.")
	}
	return p, nil
}

// readEditPart consumes one part into p (files) or fields (text).
func (a *API) readEditPart(part *multipart.Part, left int64, p *editParams, fields object) error {
	name := part.FormName()
	switch {
	case isImageField(name):
		if len(p.Images) == a.maxImages {
			return a.tooManyImages("image")
		}
		what := fmt.Sprintf("The file in part '%s' (image %d)", truncate(name, 32), len(p.Images)+1)
		data, err := a.readFile(part, left, "image", what)
		if err != nil {
			return err
		}
		img, e := a.checkImage(data, "image", "Input image "+strconv.Itoa(len(p.Images)+1), len(p.Images))
		if e != nil {
			return e
		}
		p.Images = append(p.Images, img)
	case name == "mask":
		if p.Mask != nil {
			return badRequest("mask", "duplicate_key", "Send at most one 'mask'.")
		}
		data, err := a.readFile(part, left, "mask", "The file in part 'mask'")
		if err != nil {
			return err
		}
		m, e := a.checkImage(data, "mask", "The mask", 0)
		if e != nil {
			return e
		}
		m.Name = "mask." + imageio.FormatOf(m.MIME)
		p.Mask = &m
	case name == "markup":
		return badRequest("markup", "unsupported_value", "'markup' is not supported; use 'mask'.")
	default:
		return a.readTextField(part, name, fields)
	}
	return nil
}

// isImageField reports whether a part name carries an input image:
// "image", "image[]" or "image[N]".
func isImageField(name string) bool {
	if name == "image" || name == "image[]" {
		return true
	}
	idx, ok := strings.CutPrefix(name, "image[")
	if !ok {
		return false
	}
	idx, ok = strings.CutSuffix(idx, "]")
	if !ok || idx == "" || len(idx) > 3 {
		return false
	}
	for _, c := range idx {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// readFile reads one file part into a single slice of at most
// MaxImageBytes: the one copy of the upload easel keeps. left is an upper
// bound of the part's size (what remains of a body with a
// Content-Length), or -1 when unknown.
func (a *API) readFile(part *multipart.Part, left int64, param, what string) ([]byte, error) {
	var data []byte
	var err error
	if left >= 0 {
		data, err = readHinted(part, a.maxImageBytes+1, left)
	} else {
		data, err = readExact(part, a.maxImageBytes+1)
	}
	if err != nil {
		return nil, a.bodyError(err)
	}
	if int64(len(data)) > a.maxImageBytes {
		return nil, imageTooBig(param, a.maxImageBytes, what)
	}
	return data, nil
}

// readHinted reads at most limit bytes of r into one slice allocated for
// the bound hint, so an upload whose body length is known costs one
// allocation of its size and no garbage. When the part turns out much
// smaller than the bound (the first of several images), it is copied into
// an exact slice so the spare capacity is not kept for the job's life.
func readHinted(r io.Reader, limit, hint int64) ([]byte, error) {
	buf := make([]byte, 0, max(min(limit, hint), 512))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(int64(cap(buf)), limit)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if spare := cap(buf) - len(buf); spare > 64<<10 && spare > len(buf)/8 {
		buf = append([]byte(nil), buf...)
	}
	return buf, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// chunkSize is the unit readExact reads in.
const chunkSize = 256 << 10

// chunkPool recycles readExact's chunks between uploads.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// readExact reads at most limit bytes of r into a slice of exactly the
// size read. A part's size is not known in advance, and io.ReadAll's
// doubling would leave up to twice the upload in memory (the final slice's
// spare capacity plus the arrays it outgrew) for the GC to find; reading
// into recycled chunks and copying once keeps the retained memory at the
// upload's size and the garbage near zero.
func readExact(r io.Reader, limit int64) ([]byte, error) {
	var chunks []*[]byte
	defer func() {
		for _, c := range chunks {
			chunkPool.Put(c)
		}
	}()
	var total int64
	last := 0 // bytes used in the last chunk
	for total < limit {
		if len(chunks) == 0 || last == chunkSize {
			chunks = append(chunks, chunkPool.Get().(*[]byte))
			last = 0
		}
		c := *chunks[len(chunks)-1]
		n, err := r.Read(c[last:min(chunkSize, last+int(limit-total))])
		last += n
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, total)
	for i, c := range chunks {
		if i == len(chunks)-1 {
			out = append(out, (*c)[:last]...)
		} else {
			out = append(out, *c...)
		}
	}
	return out, nil
}

// readTextField stores a known text field as a JSON literal for the shared
// readers; unknown fields are read and dropped.
func (a *API) readTextField(part *multipart.Part, name string, fields object) error {
	known := ""
	for _, k := range generationsKeys {
		if name == k {
			known = k
			break
		}
		if strings.EqualFold(name, k) {
			return badRequest(k, "invalid_value",
				"The field '"+truncate(name, 64)+"' differs from '"+k+"' only in case; send '"+k+"'.")
		}
	}
	if known == "" {
		if _, err := io.Copy(io.Discard, part); err != nil {
			return a.bodyError(err)
		}
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(part, maxTextFieldBytes+1))
	if err != nil {
		return a.bodyError(err)
	}
	if len(data) > maxTextFieldBytes {
		return badRequest(name, "string_above_max_length", "'"+name+"' is longer than "+strconv.Itoa(maxTextFieldBytes)+" bytes.")
	}
	if fields.has(name) {
		return badRequest(name, "duplicate_key", "The field '"+name+"' appears more than once.")
	}
	if !utf8.Valid(data) {
		return badRequest(name, "invalid_encoding", "'"+name+"' is not valid UTF-8.")
	}
	v := string(data)
	switch {
	case editsIntFields[name] && isIntLiteral(data):
		fields[name] = json.RawMessage(v)
	case editsBoolFields[name] && (v == "true" || v == "false"):
		fields[name] = json.RawMessage(v)
	default:
		// Marshal escapes U+0000, which the string reader then refuses.
		enc, err := json.Marshal(v)
		if err != nil {
			return badRequest(name, "invalid_value", "'"+name+"' cannot be read.")
		}
		fields[name] = enc
	}
	return nil
}

// bodyError maps a failure reading the request body: the total cap (413)
// or a malformed or aborted body (400).
func (a *API) bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(a.maxUpload)
	}
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "invalid_body",
		Message: "The multipart body is malformed or was cut short.", cause: err}
}
