package gradio

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"mime/multipart"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// maxSeed is the largest seed sent when easel picks one itself: Spaces
// commonly bound their seed slider by the int32 maximum.
const maxSeed = math.MaxInt32

// fileData is a Gradio FileData input value.
type fileData struct {
	Path     string            `json:"path"`
	OrigName string            `json:"orig_name"`
	Meta     map[string]string `json:"meta"`
}

func newFileData(p, name string) fileData {
	return fileData{Path: p, OrigName: name, Meta: map[string]string{"_type": "gradio.FileData"}}
}

// needsUpload reports whether any input takes the request's images.
func (p *Provider) needsUpload() bool {
	for _, in := range p.cfg.Inputs {
		if in.From == "image" || in.From == "images" {
			return true
		}
	}
	return false
}

// takesMask reports whether an input takes the request's mask.
func (p *Provider) takesMask() bool {
	for _, in := range p.cfg.Inputs {
		if in.From == "mask" {
			return true
		}
	}
	return false
}

// buildData turns the request into the endpoint's positional data.
// uploaded holds the FileData of req.Images, in order, and mask that of
// req.Mask (nil when there is none or no input takes it).
func (p *Provider) buildData(ep *endpoint, req *provider.Request, uploaded []fileData, mask *fileData) ([]any, error) {
	hasRandomize := false
	for _, in := range p.cfg.Inputs {
		if in.From == "randomize_seed" {
			hasRandomize = true
		}
	}
	data := make([]any, len(p.cfg.Inputs))
	for i, in := range p.cfg.Inputs {
		v, err := p.inputValue(ep, i, in, req, uploaded, mask, hasRandomize)
		if err != nil {
			return nil, err
		}
		typ := in.Type
		if typ == "" {
			typ = defaultType(in.From)
		}
		if v != nil && typ != "" {
			cv, err := coerce(v, typ)
			if err != nil {
				return nil, &provider.Error{Kind: provider.KindConfig, Message: fmt.Sprintf("input %d (%s): %v", i, nameOf(in), err), NotStarted: true}
			}
			v = cv
		}
		data[i] = v
	}
	return data, nil
}

func nameOf(in Input) string {
	if in.From != "" {
		return in.From
	}
	return "value"
}

func defaultType(from string) string {
	switch from {
	case "width", "height", "steps", "seed":
		return "int"
	case "prompt", "negative_prompt", "size", "size_choice":
		return "string"
	case "randomize_seed":
		return "bool"
	}
	return ""
}

func (p *Provider) inputValue(ep *endpoint, pos int, in Input, req *provider.Request, uploaded []fileData, mask *fileData, hasRandomize bool) (any, error) {
	orDefault := func(v any, given bool) any {
		if given {
			return v
		}
		return in.Default
	}
	switch in.From {
	case "":
		return in.Value, nil
	case "prompt":
		return req.Prompt, nil
	case "negative_prompt":
		if req.NegativePrompt == "" && in.Default == nil {
			return "", nil
		}
		return orDefault(req.NegativePrompt, req.NegativePrompt != ""), nil
	case "width":
		return p.side(req.Width, in.Default, p.cfg.Size.DefaultWidth), nil
	case "height":
		return p.side(req.Height, in.Default, p.cfg.Size.DefaultHeight), nil
	case "size":
		w, h := p.requestSize(req)
		if w == 0 || h == 0 {
			return in.Default, nil
		}
		return fmt.Sprintf("%dx%d", w, h), nil
	case "size_choice":
		return p.sizeChoice(ep, pos, in, req)
	case "steps":
		switch {
		case req.Steps > 0:
			return req.Steps, nil
		case in.Default != nil:
			return in.Default, nil
		case p.cfg.Steps.Default > 0:
			return p.cfg.Steps.Default, nil
		}
		return nil, nil
	case "seed":
		switch {
		case req.Seed != nil:
			return *req.Seed, nil
		case in.Default != nil:
			return in.Default, nil
		case hasRandomize:
			return 0, nil // ignored by the app: randomize_seed is true
		}
		// No randomize switch: pick a seed so repeated prompts differ.
		n, err := rand.Int(rand.Reader, big.NewInt(maxSeed))
		if err != nil {
			return nil, fmt.Errorf("picking a seed: %w", err)
		}
		return n.Int64(), nil
	case "randomize_seed":
		return req.Seed == nil, nil
	case "image":
		if len(uploaded) == 0 {
			return in.Default, nil
		}
		return uploaded[0], nil
	case "mask":
		if mask == nil {
			return in.Default, nil
		}
		return *mask, nil
	case "images":
		if len(uploaded) == 0 {
			if in.Default != nil {
				return in.Default, nil
			}
			return []any{}, nil
		}
		gal := make([]any, len(uploaded))
		for i, f := range uploaded {
			gal[i] = map[string]any{"image": f, "caption": nil}
		}
		return gal, nil
	}
	return nil, refuse(provider.KindConfig, "input %d: unknown from %q", pos, in.From)
}

// side picks one pixel side: the request's, else the input's default, else
// the backend's default size; nil when none is known.
func (p *Provider) side(req int, def any, cfgDef int) any {
	switch {
	case req > 0:
		return req
	case def != nil:
		return def
	case cfgDef > 0:
		return cfgDef
	}
	return nil
}

// requestSize is the request's size, or the backend default.
func (p *Provider) requestSize(req *provider.Request) (int, int) {
	if req.Width > 0 && req.Height > 0 {
		return req.Width, req.Height
	}
	return p.cfg.Size.DefaultWidth, p.cfg.Size.DefaultHeight
}

func (p *Provider) sizeChoice(ep *endpoint, pos int, in Input, req *provider.Request) (any, error) {
	choices := ep.choices(pos)
	if len(choices) == 0 {
		choices = in.Choices
	}
	ratio := 0.0
	if rw, rh, ok := parseRatio(req.AspectRatio); ok {
		ratio = rw / rh
	}
	area := 0.0
	if req.Width > 0 && req.Height > 0 {
		area = float64(req.Width) * float64(req.Height)
		if ratio == 0 {
			ratio = float64(req.Width) / float64(req.Height)
		}
	}
	if ratio == 0 {
		// Nothing asked: the app's own default, else the configured one.
		if in.Default != nil {
			return in.Default, nil
		}
		if v, ok := ep.dropdownValue(pos); ok {
			return v, nil
		}
		if w, h := p.requestSize(req); w > 0 && h > 0 {
			ratio, area = float64(w)/float64(h), float64(w)*float64(h)
		}
	}
	if len(choices) == 0 {
		return nil, refuse(provider.KindConfig, "input %d (size_choice): no choices in the app's /config nor in the configuration", pos)
	}
	if ratio == 0 {
		return choices[0], nil
	}
	if c, ok := nearestChoice(choices, ratio, area); ok {
		return c, nil
	}
	return nil, refuse(provider.KindConfig, "input %d (size_choice): no choice starts with WxH", pos)
}

// nearestChoice picks the choice whose "WxH" prefix has the aspect ratio
// nearest to ratio (compared in log space, so 2:1 and 1:2 are equally far
// from 1:1), then the area nearest to area (if area > 0).
func nearestChoice(choices []string, ratio, area float64) (string, bool) {
	best, found := "", false
	var bestR, bestA float64
	for _, c := range choices {
		w, h, ok := parseWxH(c)
		if !ok {
			continue
		}
		dr := math.Abs(math.Log(float64(w)/float64(h)) - math.Log(ratio))
		da := 0.0
		if area > 0 {
			da = math.Abs(math.Log(float64(w) * float64(h) / area))
		}
		const eps = 1e-9
		if !found || dr < bestR-eps || (math.Abs(dr-bestR) <= eps && da < bestA-eps) {
			best, bestR, bestA, found = c, dr, da, true
		}
	}
	return best, found
}

// parseWxH reads a leading "WxH" (x, X or ×) from s, e.g. "1024x768 ( 4:3 )".
func parseWxH(s string) (int, int, bool) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 6 {
		return 0, 0, false
	}
	w, _ := strconv.Atoi(s[:i])
	rest := strings.TrimLeft(s[i:], " ")
	switch {
	case strings.HasPrefix(rest, "x"), strings.HasPrefix(rest, "X"):
		rest = rest[1:]
	case strings.HasPrefix(rest, "×"):
		rest = rest[len("×"):]
	default:
		return 0, 0, false
	}
	rest = strings.TrimLeft(rest, " ")
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	if j == 0 || j > 6 {
		return 0, 0, false
	}
	h, _ := strconv.Atoi(rest[:j])
	if w == 0 || h == 0 {
		return 0, 0, false
	}
	return w, h, true
}

// parseRatio reads "16:9".
func parseRatio(s string) (float64, float64, bool) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, 0, false
	}
	x, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err1 != nil || err2 != nil || !(x > 0) || !(y > 0) || math.IsInf(x, 0) || math.IsInf(y, 0) {
		return 0, 0, false
	}
	return x, y, true
}

// coerce converts v to the JSON type the endpoint expects. Integers are
// sent as JSON integers: Gradio validates integer schemas strictly.
func coerce(v any, typ string) (any, error) {
	switch typ {
	case "int":
		switch x := v.(type) {
		case int:
			return int64(x), nil
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		case uint64:
			if x > math.MaxInt64 {
				return nil, fmt.Errorf("%d overflows int64", x)
			}
			return int64(x), nil
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > 1<<53 {
				return nil, fmt.Errorf("%v is not a usable integer", x)
			}
			return int64(math.Round(x)), nil
		case json.Number:
			return coerceString(string(x), typ)
		case string:
			return coerceString(x, typ)
		case bool:
			if x {
				return int64(1), nil
			}
			return int64(0), nil
		}
	case "float":
		switch x := v.(type) {
		case int:
			return float64(x), nil
		case int64:
			return float64(x), nil
		case float64:
			return x, nil
		case json.Number:
			return coerceString(string(x), typ)
		case string:
			return coerceString(x, typ)
		}
	case "string":
		switch x := v.(type) {
		case string:
			return x, nil
		case int, int64, float64, bool, json.Number:
			return fmt.Sprint(x), nil
		}
	case "bool":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			b, err := strconv.ParseBool(x)
			if err != nil {
				return nil, fmt.Errorf("%q is not a boolean", x)
			}
			return b, nil
		case int:
			return x != 0, nil
		case int64:
			return x != 0, nil
		case float64:
			return x != 0, nil
		}
	default:
		return v, nil
	}
	return nil, fmt.Errorf("cannot turn %T into %s", v, typ)
}

func coerceString(s, typ string) (any, error) {
	s = strings.TrimSpace(s)
	if typ == "int" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("%q is not a number", s)
	}
	return coerce(f, typ)
}

// uploadName gives a safe file name whose extension matches the bytes.
func uploadName(img provider.InputImage, i int) string {
	ext := upstream.FileExt(img.MIME)
	if ext == "" {
		sniffed, _ := imageio.Sniff(img.Data)
		ext = upstream.FileExt(sniffed)
	}
	name := path.Base(strings.ReplaceAll(img.Name, "\\", "/"))
	if name == "." || name == "/" || name == "" {
		name = fmt.Sprintf("image%d", i)
	}
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == '"' || r == 0x7f {
			return '_'
		}
		return r
	}, name)
	if ext != "" && !strings.EqualFold(path.Ext(name), ext) &&
		!(ext == ".jpg" && strings.EqualFold(path.Ext(name), ".jpeg")) {
		name = strings.TrimSuffix(name, path.Ext(name)) + ext
	}
	return name
}

// upload sends the request's images in one multipart POST and returns their
// FileData values, in order.
func (p *Provider) upload(ctx context.Context, sp *spaceState, imgs []provider.InputImage) ([]fileData, error) {
	if len(imgs) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	names := make([]string, len(imgs))
	for i, img := range imgs {
		names[i] = uploadName(img, i)
		if err := upstream.WriteFilePart(mw, "files", names[i], img.MIME, img.Data); err != nil {
			return nil, fmt.Errorf("building the upload: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("building the upload: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	req, err := p.newRequest(ctx, http.MethodPost, p.base+sp.prefix+"/upload", &buf)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, tooBig, rerr := upstream.ReadLimited(resp.Body, maxSmallBody)
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, body, true)
	}
	if rerr != nil || tooBig {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "reading the upload answer failed", NotStarted: true, Err: rerr}
	}
	var paths []string
	if err := json.Unmarshal(body, &paths); err != nil {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "the upload answer is not a list of paths", NotStarted: true, Err: err}
	}
	if len(paths) != len(imgs) {
		return nil, provider.Errorf(provider.KindProtocol, "uploaded %d files but the app returned %d paths", len(imgs), len(paths))
	}
	out := make([]fileData, len(paths))
	for i, pth := range paths {
		if pth == "" {
			return nil, provider.Errorf(provider.KindProtocol, "the app returned an empty upload path")
		}
		out[i] = newFileData(pth, names[i])
	}
	return out, nil
}
