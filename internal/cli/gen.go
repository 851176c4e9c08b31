package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/tmaxmax/go-sse"
	"golang.org/x/term"

	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// Environment variables read by "easel gen".
const (
	// EnvURL is the base URL of the easel server (or of any
	// OpenAI-compatible image API) that "easel gen" talks to.
	EnvURL = "EASEL_URL"
	// EnvAPIKey is the API key "easel gen" sends as a bearer token.
	EnvAPIKey = "EASEL_API_KEY"
)

// Limits of "easel gen".
const (
	defaultGenURL = "http://127.0.0.1:8080"
	// maxInputImageBytes bounds one -i file, as OpenAI's edits endpoint does.
	maxInputImageBytes = 50 << 20
	// maxInputImages is the most -i files one edit takes (OpenAI's limit).
	maxInputImages = 16
	// maxGenResponse bounds a JSON images response (n base64 images).
	maxGenResponse = 512 << 20
	// maxGenEvent bounds one SSE event: one base64 image, as the server
	// keeps each data line under the Go SDK's 32 MiB.
	maxGenEvent = 64 << 20
	// maxErrorBody bounds an error answer.
	maxErrorBody = 1 << 20
	// maxDownload bounds an image fetched from a "url" answer.
	maxDownload = 256 << 20
	// aspectArea is the pixel area a --size ratio ("16:9") aims at.
	aspectArea = 1024 * 1024
	// aspectMultiple rounds sizes derived from a ratio; the server fits
	// them to the backend's own rules anyway.
	aspectMultiple = 64
)

type genFlags struct {
	url      string
	apiKey   string
	config   string
	model    string
	images   []string
	size     string
	n        int
	seed     int64
	steps    int
	negative string
	output   string
	format   string
	progress string
	noStream bool
	timeout  time.Duration
}

func newGenCommand(o *Options) *cobra.Command {
	var f genFlags
	cmd := &cobra.Command{
		Use:   "gen [flags] PROMPT",
		Short: "Generate or edit images through an easel server",
		Long: `Send a prompt to an easel server, or to any OpenAI-compatible Images API, and
save the resulting images.

The server is found by --url, else $` + EnvURL + `, else the listen address of
the config file given by --config (or $` + EnvConfig + `), else
` + defaultGenURL + `. The API key is --api-key, else $` + EnvAPIKey + `, else
the first key of the config's auth.keys_env variable. A base URL may end in
/v1 or not.

Without -i the request goes to /v1/images/generations; with one or more -i
images it goes to /v1/images/edits as multipart form data.

Progress (queue position, then steps) is shown as a bar when stderr is a
terminal and as plain lines ("queued 2/3", "step 3/9") otherwise; each saved
file is printed on stdout as "saved PATH". Ctrl-C cancels the job on the
server.

Output: -o DIR/ (or an existing directory) saves img-1.png, img-2.png, ...
there without overwriting anything; -o FILE saves one image as FILE, or
FILE-1.png, FILE-2.png, ... when -n is above 1. Default: the current
directory.

` + exitCodesHelp,
		Example: `  # One image into the current directory
  easel gen "a red fox in snow, watercolor"

  # Four wide images from a given model into out/, fixed seed
  easel gen -m z-image-turbo -n 4 -s 16:9 --seed 42 -o out/ "a lighthouse at dusk"

  # Edit an image (multipart /v1/images/edits)
  easel gen -i cat.png -o cat-sofa.png "put the cat on a red sofa"

  # A remote server with a key
  EASEL_URL=https://images.example.com EASEL_API_KEY=... easel gen "a teapot"`,
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return usageErrorf("missing the prompt")
			case len(args) > 1:
				return usageErrorf("the prompt must be one argument: quote it (easel gen \"a red fox\"); got %d arguments", len(args))
			}
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGen(cmd, o, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "", "base URL of the server (env "+EnvURL+"; default "+defaultGenURL+")")
	fl.StringVarP(&f.apiKey, "api-key", "k", "", "API key (env "+EnvAPIKey+")")
	fl.StringVarP(&f.config, "config", "c", "", "easel config file to take the URL and key from (env "+EnvConfig+")")
	fl.StringVarP(&f.model, "model", "m", "", "model id (default: the server's default model)")
	fl.StringArrayVarP(&f.images, "image", "i", nil, "input image file for an edit; repeat for several")
	fl.StringVarP(&f.size, "size", "s", "", `size as WIDTHxHEIGHT ("1024x768"), an aspect ratio ("16:9") or "auto"`)
	fl.IntVarP(&f.n, "n", "n", 1, "number of images")
	fl.Int64Var(&f.seed, "seed", 0, "seed (default: random)")
	fl.IntVar(&f.steps, "steps", 0, "inference steps (default: the backend's)")
	fl.StringVar(&f.negative, "negative", "", "negative prompt, for backends that take one")
	fl.StringVarP(&f.output, "output", "o", "", "output file, or directory when it ends in / or exists (default: current directory)")
	fl.StringVar(&f.format, "format", "", "output format: png, jpeg or webp (default: the server's)")
	fl.StringVar(&f.progress, "progress", "auto", "progress display: auto, bar, plain or none")
	fl.BoolVar(&f.noStream, "no-stream", false, "ask for one JSON answer instead of a progress stream")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up after this long (0: never)")
	_ = cmd.MarkFlagFilename("image", "png", "jpg", "jpeg", "webp", "gif")
	_ = cmd.MarkFlagFilename("config", "yaml", "yml")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"png", "jpeg", "webp"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("progress", cobra.FixedCompletions([]string{"auto", "bar", "plain", "none"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("size", cobra.FixedCompletions([]string{"auto", "1024x1024", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// usageArgs marks cobra's argument errors as usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError(err)
		}
		return nil
	}
}

// genRequest is one validated "easel gen" call.
type genRequest struct {
	endpoint string // full URL of generations or edits
	apiKey   string
	edit     bool
	stream   bool
	fields   map[string]any // JSON body fields (also the multipart fields)
	images   []inputFile
	n        int
}

type inputFile struct {
	name string
	data []byte
	mime string
}

func runGen(cmd *cobra.Command, o *Options, f genFlags, prompt string) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := buildGenRequest(cmd, o, f, prompt)
	if err != nil {
		return err
	}
	out, err := newOutputPlan(f.output, req.n)
	if err != nil {
		return err
	}
	rep, err := newReporter(f.progress, o.Stderr, req.n)
	if err != nil {
		return err
	}
	defer rep.close()

	runCtx := ctx
	if f.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	saved := 0
	save := func(data []byte) error {
		path, err := out.save(data)
		if err != nil {
			return err
		}
		saved++
		rep.saved(path)
		_, err = fmt.Fprintf(o.Stdout, "saved %s\n", path)
		return err
	}
	err = doGen(runCtx, req, rep, save)
	switch {
	case err != nil && ctx.Err() != nil:
		// The request's connection is closed, which makes the server cancel
		// the job.
		return &ExitError{Code: ExitInterrupted, Err: errors.New("interrupted: the job was canceled")}
	case err != nil && runCtx.Err() != nil:
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("no result within --timeout %s", f.timeout)}
	case err != nil:
		return err
	case saved < req.n:
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("the server sent %d of %d images", saved, req.n)}
	}
	return nil
}

// buildGenRequest resolves the server and the key and validates the flags.
func buildGenRequest(cmd *cobra.Command, o *Options, f genFlags, prompt string) (*genRequest, error) {
	if strings.TrimSpace(prompt) == "" {
		return nil, usageErrorf("the prompt is empty")
	}
	if f.n < 1 {
		return nil, usageErrorf("-n must be at least 1, not %d", f.n)
	}
	if f.steps < 0 {
		return nil, usageErrorf("--steps must not be negative")
	}
	switch f.format {
	case "", "png", "jpeg", "webp":
	default:
		return nil, usageErrorf("--format %q is not png, jpeg or webp", f.format)
	}
	if len(f.images) > maxInputImages {
		return nil, usageErrorf("at most %d -i images, not %d", maxInputImages, len(f.images))
	}
	size, err := parseGenSize(f.size)
	if err != nil {
		return nil, usageError(err)
	}
	base, key, err := resolveServer(o, f)
	if err != nil {
		return nil, err
	}
	r := &genRequest{apiKey: key, edit: len(f.images) > 0, stream: !f.noStream, n: f.n}
	r.fields = map[string]any{"prompt": prompt, "n": f.n}
	if f.model != "" {
		r.fields["model"] = f.model
	}
	if size != "" {
		r.fields["size"] = size
	}
	if cmd.Flags().Changed("seed") {
		r.fields["seed"] = f.seed
	}
	if f.steps > 0 {
		r.fields["steps"] = f.steps
	}
	if f.negative != "" {
		r.fields["negative_prompt"] = f.negative
	}
	if f.format != "" {
		r.fields["output_format"] = f.format
	}
	if r.stream {
		r.fields["stream"] = true
	}
	if r.edit {
		r.endpoint = base + "/images/edits"
		for _, p := range f.images {
			in, err := readInputImage(p)
			if err != nil {
				return nil, err
			}
			r.images = append(r.images, in)
		}
	} else {
		r.endpoint = base + "/images/generations"
	}
	return r, nil
}

// resolveServer returns the API base URL (ending in /v1) and the key from
// flags, environment, then config.
func resolveServer(o *Options, f genFlags) (string, string, error) {
	base := firstNonEmpty(f.url, o.Getenv(EnvURL))
	key := firstNonEmpty(f.apiKey, o.Getenv(EnvAPIKey))
	if path := configPath(f.config, o.Getenv); path != "" && (base == "" || key == "") {
		cfg, err := config.Load(path, o.Getenv)
		if err != nil {
			return "", "", fmt.Errorf("reading the server's config for its URL and key: %w", err)
		}
		if base == "" {
			base = "http://" + dialableListen(cfg.Listen)
		}
		if key == "" && len(cfg.Auth.Keys) > 0 {
			key = cfg.Auth.Keys[0]
		}
	}
	if base == "" {
		base = defaultGenURL
	}
	norm, err := apiBase(base)
	if err != nil {
		return "", "", usageError(err)
	}
	return norm, key, nil
}

// dialableListen turns a listen address into one a client can dial: an
// unspecified host (":8080", "0.0.0.0:8080") becomes loopback.
func dialableListen(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// apiBase checks a server URL and returns it ending in /v1.
func apiBase(s string) (string, error) {
	u, err := urlParse(s)
	if err != nil {
		return "", err
	}
	b := strings.TrimRight(u, "/")
	if !strings.HasSuffix(b, "/v1") {
		b += "/v1"
	}
	return b, nil
}

func urlParse(s string) (string, error) {
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.HasPrefix(rest, "/") {
		return "", fmt.Errorf("server URL %q is not an http(s) URL", s)
	}
	if strings.ContainsAny(rest, "?#") {
		return "", fmt.Errorf("server URL %q must not carry a query or fragment", s)
	}
	return s, nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// parseGenSize accepts "WxH", "W:H" (turned into a size of about one
// megapixel) and "auto"; "" means not given.
func parseGenSize(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "" || s == "auto":
		return s, nil
	case strings.Contains(s, ":"):
		a, b, _ := strings.Cut(s, ":")
		rw, err1 := strconv.ParseFloat(a, 64)
		rh, err2 := strconv.ParseFloat(b, 64)
		if err1 != nil || err2 != nil || !(rw > 0) || !(rh > 0) || rw/rh > 16 || rh/rw > 16 {
			return "", fmt.Errorf("--size %q is not a ratio like 16:9", s)
		}
		r := rw / rh
		w := roundTo(math.Sqrt(aspectArea*r), aspectMultiple)
		h := roundTo(math.Sqrt(aspectArea/r), aspectMultiple)
		return fmt.Sprintf("%dx%d", w, h), nil
	default:
		a, b, ok := strings.Cut(s, "x")
		w, err1 := strconv.Atoi(a)
		h, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || w < 1 || h < 1 || w > 16384 || h > 16384 {
			return "", fmt.Errorf("--size %q is not WIDTHxHEIGHT (1024x768), a ratio (16:9) or auto", s)
		}
		return fmt.Sprintf("%dx%d", w, h), nil
	}
}

func roundTo(v float64, m int) int {
	return max(m, int(math.Round(v/float64(m)))*m)
}

func readInputImage(path string) (inputFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return inputFile{}, fmt.Errorf("opening input image: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxInputImageBytes+1))
	if err != nil {
		return inputFile{}, fmt.Errorf("reading input image %s: %w", path, err)
	}
	if len(data) > maxInputImageBytes {
		return inputFile{}, usageErrorf("input image %s is larger than %d MiB", path, maxInputImageBytes>>20)
	}
	ct := http.DetectContentType(data)
	if !strings.HasPrefix(ct, "image/") {
		return inputFile{}, usageErrorf("input image %s is not an image (%s)", path, ct)
	}
	return inputFile{name: filepath.Base(path), data: data, mime: ct}, nil
}

// doGen sends the request and hands every image to save, reporting
// progress on the way.
func doGen(ctx context.Context, r *genRequest, rep reporter, save func([]byte) error) error {
	body, contentType, err := r.body()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, bytes.NewReader(body))
	if err != nil {
		return usageErrorf("building the request: %v", err)
	}
	req.Header.Set("Content-Type", contentType)
	if r.stream {
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if r.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.apiKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sending the request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusFailure(resp)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "text/event-stream" {
		return readImageStream(ctx, resp.Body, rep, save)
	}
	return readImagesJSON(ctx, resp.Body, save)
}

// body encodes the request as JSON (generations) or multipart (edits).
func (r *genRequest) body() ([]byte, string, error) {
	if !r.edit {
		b, err := json.Marshal(r.fields)
		return b, "application/json", err
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, k := range []string{"model", "prompt", "n", "size", "seed", "steps", "negative_prompt", "output_format", "stream"} {
		v, ok := r.fields[k]
		if !ok {
			continue
		}
		if err := mw.WriteField(k, fmt.Sprint(v)); err != nil {
			return nil, "", err
		}
	}
	// One image goes as "image", several as "image[]", as the official
	// SDKs send them.
	field := "image"
	if len(r.images) > 1 {
		field = "image[]"
	}
	for _, in := range r.images {
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", mime.FormatMediaType("form-data", map[string]string{"name": field, "filename": in.name}))
		h.Set("Content-Type", in.mime)
		pw, err := mw.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		if _, err := pw.Write(in.data); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// apiErrorBody is the OpenAI error envelope.
type apiErrorBody struct {
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    any    `json:"code"`
	} `json:"error"`
}

// statusFailure turns a non-2xx answer into an error with its exit code.
func statusFailure(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(body))
	var env apiErrorBody
	if json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Message != "" {
		msg = env.Error.Message
	}
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	err := fmt.Errorf("server answered %d: %s", resp.StatusCode, msg)
	if ra := resp.Header.Get("Retry-After"); ra != "" && resp.StatusCode == http.StatusTooManyRequests {
		err = fmt.Errorf("%w (retry after %ss)", err, ra)
	}
	return &ExitError{Code: exitForStatus(resp.StatusCode), Err: err}
}

func exitForStatus(status int) int {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return ExitAuth
	case http.StatusTooManyRequests:
		return ExitRateLimited
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return ExitUpstream
	case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return ExitBadRequest
	}
	return ExitFailure
}

// exitForErrorType maps the error object of a stream's error event, which
// has no HTTP status, by its type and code.
func exitForErrorType(typ, code string) int {
	switch {
	case typ == "authentication_error" || typ == "permission_error" || code == "invalid_api_key":
		return ExitAuth
	case typ == "rate_limit_error" || code == "rate_limit_exceeded":
		return ExitRateLimited
	case code == "internal_error":
		return ExitFailure
	case typ == "server_error":
		return ExitUpstream
	case typ == "invalid_request_error":
		return ExitBadRequest
	}
	return ExitFailure
}

// streamEvent is the union of the image stream's event payloads.
type streamEvent struct {
	Type       string  `json:"type"`
	B64JSON    string  `json:"b64_json"`
	Stage      string  `json:"stage"`
	ImageIndex int     `json:"image_index"`
	Position   int     `json:"position"`
	QueueSize  int     `json:"queue_size"`
	Step       int     `json:"step"`
	Total      int     `json:"total"`
	Progress   float64 `json:"progress"`
	Error      *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    any    `json:"code"`
	} `json:"error"`
}

// readImageStream follows an image SSE stream (image_generation.* or
// image_edit.*, plus easel's progress extension) to its end.
func readImageStream(ctx context.Context, r io.Reader, rep reporter, save func([]byte) error) error {
	for ev, err := range sse.Read(r, &sse.ReadConfig{MaxEventSize: maxGenEvent}) {
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading the image stream: %w", err)
		}
		data := strings.TrimSpace(ev.Data)
		if data == "" || data == "[DONE]" {
			continue
		}
		var se streamEvent
		if err := json.Unmarshal([]byte(data), &se); err != nil {
			return fmt.Errorf("reading the image stream: event %q is not JSON: %w", ev.Type, err)
		}
		typ := se.Type
		if typ == "" {
			typ = ev.Type
		}
		switch {
		case se.Error != nil || typ == "error":
			msg, etype, code := "the server reported an error", "", ""
			if se.Error != nil {
				msg, etype, code = se.Error.Message, se.Error.Type, fmt.Sprint(se.Error.Code)
			}
			return &ExitError{Code: exitForErrorType(etype, code), Err: fmt.Errorf("server error: %s", msg)}
		case strings.HasSuffix(typ, ".progress"):
			rep.progress(se)
		case strings.HasSuffix(typ, ".completed"):
			img, err := base64.StdEncoding.DecodeString(se.B64JSON)
			if err != nil || len(img) == 0 {
				return fmt.Errorf("reading the image stream: a completed event carries no valid b64_json")
			}
			if err := save(img); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// readImagesJSON reads a plain images response and saves every image,
// downloading "url" results.
func readImagesJSON(ctx context.Context, r io.Reader, save func([]byte) error) error {
	body, err := io.ReadAll(io.LimitReader(r, maxGenResponse+1))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > maxGenResponse {
		return fmt.Errorf("the answer is larger than %d MiB", maxGenResponse>>20)
	}
	var resp struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
			URL     string `json:"url"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("the answer is not an images response: %w", err)
	}
	for i, d := range resp.Data {
		var img []byte
		switch {
		case d.B64JSON != "":
			img, err = base64.StdEncoding.DecodeString(d.B64JSON)
			if err != nil {
				return fmt.Errorf("image %d: b64_json: %w", i+1, err)
			}
		case d.URL != "":
			img, err = download(ctx, d.URL)
			if err != nil {
				return fmt.Errorf("image %d: %w", i+1, err)
			}
		default:
			return fmt.Errorf("image %d has neither b64_json nor url", i+1)
		}
		if err := save(img); err != nil {
			return err
		}
	}
	return nil
}

func download(ctx context.Context, u string) ([]byte, error) {
	if _, err := urlParse(u); err != nil && !strings.HasPrefix(u, "data:") {
		return nil, fmt.Errorf("result URL: %w", err)
	}
	if strings.HasPrefix(u, "data:") {
		_, b64, ok := strings.Cut(u, ";base64,")
		if !ok {
			return nil, errors.New("result data URL is not base64")
		}
		return base64.StdEncoding.DecodeString(b64)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("downloading the result: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading the result: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusFailure(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDownload+1))
	if err != nil {
		return nil, fmt.Errorf("downloading the result: %w", err)
	}
	if len(data) > maxDownload {
		return nil, fmt.Errorf("the result is larger than %d MiB", maxDownload>>20)
	}
	return data, nil
}

// outputPlan decides where each image goes.
type outputPlan struct {
	dir  string // save into dir as img-K.ext, never overwriting
	file string // else: this file (n == 1) or file-K.ext
	n    int
	next int // images saved so far
}

func newOutputPlan(output string, n int) (*outputPlan, error) {
	p := &outputPlan{n: n}
	switch {
	case output == "":
		p.dir = "."
	case strings.HasSuffix(output, "/") || strings.HasSuffix(output, string(os.PathSeparator)):
		p.dir = filepath.Clean(output)
	default:
		if st, err := os.Stat(output); err == nil && st.IsDir() {
			p.dir = output
		} else {
			p.file = output
		}
	}
	if p.dir != "" {
		if err := os.MkdirAll(p.dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating the output directory: %w", err)
		}
	}
	return p, nil
}

// maxNameTries bounds the search for a free img-K name.
const maxNameTries = 100000

func (p *outputPlan) save(data []byte) (string, error) {
	p.next++
	ext := imageExt(data)
	if p.file != "" {
		path := p.file
		if p.n > 1 {
			stem := strings.TrimSuffix(p.file, filepath.Ext(p.file))
			path = fmt.Sprintf("%s-%d%s", stem, p.next, ext)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return "", fmt.Errorf("saving the image: %w", err)
		}
		return path, nil
	}
	for k := 1; k <= maxNameTries; k++ {
		path := filepath.Join(p.dir, fmt.Sprintf("img-%d%s", k, ext))
		fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("saving the image: %w", err)
		}
		_, werr := fh.Write(data)
		cerr := fh.Close()
		if err := errors.Join(werr, cerr); err != nil {
			return "", fmt.Errorf("saving the image: %w", err)
		}
		return path, nil
	}
	return "", fmt.Errorf("saving the image: no free img-K name in %s", p.dir)
}

// imageExt names a saved file by what its bytes are, whatever the server
// said; anything that is not an image easel knows is saved as .bin.
func imageExt(data []byte) string {
	if mime, ok := imageio.Sniff(data); ok {
		return upstream.FileExt(mime)
	}
	return ".bin"
}

// reporter shows a job's progress.
type reporter interface {
	progress(ev streamEvent)
	saved(path string)
	close()
}

func newReporter(mode string, w io.Writer, n int) (reporter, error) {
	switch mode {
	case "auto", "":
		if isTerminal(w) {
			return newBarReporter(w, n), nil
		}
		return &plainReporter{w: w, n: n}, nil
	case "bar":
		return newBarReporter(w, n), nil
	case "plain":
		return &plainReporter{w: w, n: n}, nil
	case "none":
		return nopReporter{}, nil
	}
	return nil, usageErrorf("--progress %q is not auto, bar, plain or none", mode)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressText describes one progress event in a few words: "queued 2/3",
// "started", "step 3/9", "progress 45%"; "" for events worth no line.
func progressText(ev streamEvent) string {
	switch ev.Stage {
	case "queued":
		switch {
		case ev.Position > 0 && ev.QueueSize > 0:
			return fmt.Sprintf("queued %d/%d", ev.Position, ev.QueueSize)
		case ev.Position > 0:
			return fmt.Sprintf("queued %d", ev.Position)
		}
		return "queued"
	case "started":
		return "started"
	case "progress":
		switch {
		case ev.Total > 0:
			return fmt.Sprintf("step %d/%d", ev.Step, ev.Total)
		case ev.Progress > 0:
			return fmt.Sprintf("progress %d%%", int(math.Round(ev.Progress*100)))
		}
	}
	return ""
}

type plainReporter struct {
	w    io.Writer
	n    int
	last string
}

func (p *plainReporter) progress(ev streamEvent) {
	line := progressText(ev)
	if line == "" {
		return
	}
	if p.n > 1 {
		line = fmt.Sprintf("image %d/%d: %s", ev.ImageIndex+1, p.n, line)
	}
	if line == p.last {
		return
	}
	p.last = line
	fmt.Fprintln(p.w, line)
}

func (p *plainReporter) saved(string) {}
func (p *plainReporter) close()       {}

type nopReporter struct{}

func (nopReporter) progress(streamEvent) {}
func (nopReporter) saved(string)         {}
func (nopReporter) close()               {}

// barReporter draws one progress bar on a terminal: the queue position
// while waiting, then the steps. With n > 1 images the bar sums the steps
// of all of them, which run side by side.
type barReporter struct {
	w      io.Writer
	n      int
	bar    *progressbar.ProgressBar
	max    int
	steps  map[int]int
	totals map[int]int
	saves  int
	busy   bool // some image is past its queue
}

func newBarReporter(w io.Writer, n int) *barReporter {
	return &barReporter{w: w, n: n, steps: map[int]int{}, totals: map[int]int{}}
}

func (b *barReporter) ensure() {
	if b.bar != nil {
		return
	}
	// A known length throughout: an unknown one animates a spinner from a
	// goroutine of its own.
	b.bar = progressbar.NewOptions(1,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(50*time.Millisecond),
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "=", SaucerHead: ">", SaucerPadding: " ", BarStart: "[", BarEnd: "]"}),
	)
	b.max = 1
}

func (b *barReporter) progress(ev streamEvent) {
	text := progressText(ev)
	if text == "" {
		return
	}
	b.ensure()
	if ev.Stage != "progress" {
		if b.busy && b.n > 1 {
			return // the bar already shows the steps of all images
		}
		if b.n > 1 {
			text = fmt.Sprintf("image %d/%d %s", ev.ImageIndex+1, b.n, text)
		}
		b.bar.Describe(text)
		_ = b.bar.Add(0)
		return
	}
	b.busy = true
	switch {
	case ev.Total > 0:
		b.steps[ev.ImageIndex], b.totals[ev.ImageIndex] = ev.Step, ev.Total
	default:
		b.steps[ev.ImageIndex], b.totals[ev.ImageIndex] = int(math.Round(ev.Progress*100)), 100
	}
	total, done := 0, 0
	for i := range b.n {
		t := b.totals[i]
		if t == 0 {
			t = b.totals[ev.ImageIndex]
		}
		total += t
		done += min(b.steps[i], t)
	}
	if total != b.max {
		b.max = total
		b.bar.ChangeMax(total)
	}
	desc := "generating"
	if b.n > 1 {
		desc = fmt.Sprintf("generating %d images", b.n)
	}
	b.bar.Describe(desc)
	_ = b.bar.Set(done)
}

func (b *barReporter) saved(string) {
	b.saves++
	if b.bar == nil {
		return
	}
	if b.saves < b.n {
		// Make room for the "saved" line; the next update redraws the bar.
		_ = b.bar.Clear()
		return
	}
	_ = b.bar.Finish()
	fmt.Fprintln(b.w)
	b.bar = nil
}

func (b *barReporter) close() {
	if b.bar == nil {
		return
	}
	_ = b.bar.Exit()
	fmt.Fprintln(b.w)
	b.bar = nil
}
