package gradio

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider"
)

func readAllFrames(t *testing.T, r io.Reader, lineCap int) ([]string, error) {
	t.Helper()
	fr := newFrameReader(r, lineCap)
	var out []string
	for i := 0; i < 10000; i++ {
		f, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, string(f))
	}
	t.Fatal("frame reader did not end")
	return nil, nil
}

func TestFrameReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"two frames LF", "data: {\"a\":1}\n\ndata: {\"b\":2}\n\n", []string{`{"a":1}`, `{"b":2}`}},
		{"no space after colon", "data:{\"a\":1}\n\n", []string{`{"a":1}`}},
		{"only one space stripped", "data:  x\n\n", []string{" x"}},
		{"CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"a", "b"}},
		{"lone CR", "data: a\r\rdata: b\r\r", []string{"a", "b"}},
		{"multi-line data joined", "data: a\ndata: b\n\n", []string{"a\nb"}},
		{"event id retry and comments ignored", ": hi\nevent: complete\nid: 7\nretry: 10\ndata: x\n\n", []string{"x"}},
		{"blank lines without data", "\n\n\n", nil},
		{"last frame without blank line", "data: a\n\ndata: b", []string{"a", "b"}},
		{"bare data field is an empty line", "data\ndata: z\n\n", []string{"\nz"}},
		{"empty data field", "data:\n\n", []string{""}},
		{"unknown field", "foo: bar\ndata: q\n\n", []string{"q"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, mode := range []string{"whole", "bytewise", "half"} {
				var r io.Reader = strings.NewReader(tt.in)
				switch mode {
				case "bytewise":
					r = iotest.OneByteReader(r)
				case "half":
					r = iotest.HalfReader(r)
				}
				got, err := readAllFrames(t, r, 0)
				if err != nil {
					t.Fatalf("%s: %v", mode, err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("%s: frames (-want +got):\n%s", mode, diff)
				}
			}
		})
	}
}

func TestFrameReaderLineCap(t *testing.T) {
	t.Parallel()
	long := "data: " + strings.Repeat("x", minLineCap+10) + "\n\n"
	_, err := readAllFrames(t, strings.NewReader(long), 0)
	if !errors.Is(err, errLineTooLong) {
		t.Fatalf("err = %v, want errLineTooLong", err)
	}
	// Many short data lines must not grow one frame past the cap either.
	many := strings.Repeat("data: "+strings.Repeat("y", 1000)+"\n", minLineCap/1000+5) + "\n"
	_, err = readAllFrames(t, strings.NewReader(many), 0)
	if !errors.Is(err, errLineTooLong) {
		t.Fatalf("multi-line err = %v, want errLineTooLong", err)
	}
	// A larger cap admits the same line.
	got, err := readAllFrames(t, strings.NewReader(long), 2*minLineCap)
	if err != nil || len(got) != 1 {
		t.Fatalf("with larger cap: %d frames, err %v", len(got), err)
	}
}

func TestParseMessage(t *testing.T) {
	t.Parallel()
	m, err := parseMessage([]byte(`{"msg":"progress","event_id":"e1","progress_data":[{"index":null,"length":null,"unit":"steps","progress":0.4,"desc":"ZeroGPU init"},{"index":3,"length":9,"unit":"steps","progress":null,"desc":null}],"extra":{"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	ev, ok := progressEvent(m.ProgressData, 2)
	if !ok {
		t.Fatal("no progress event")
	}
	want := provider.Event{Type: provider.EventProgress, Index: 2, Step: 3, Total: 9, Fraction: 3.0 / 9, Unit: "steps"}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	m, err = parseMessage([]byte(`{"msg":"progress","event_id":"e1","progress_data":[{"index":null,"length":null,"unit":"steps","progress":0.4,"desc":"ZeroGPU init"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	ev, _ = progressEvent(m.ProgressData, 0)
	want = provider.Event{Type: provider.EventProgress, Fraction: 0.4, Unit: "ZeroGPU init"}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("float progress (-want +got):\n%s", diff)
	}
	if _, ok := progressEvent(nil, 0); ok {
		t.Error("empty progress_data gave an event")
	}
	if _, err := parseMessage([]byte("ALIVE")); err == nil {
		t.Error("non-JSON frame parsed")
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Tongyi-MAI/Z-Image-Turbo", "https://tongyi-mai-z-image-turbo.hf.space", true},
		{"black-forest-labs/FLUX.1-schnell", "https://black-forest-labs-flux-1-schnell.hf.space", true},
		{"mrfakename/Z_Image_Turbo", "https://mrfakename-z-image-turbo.hf.space", true},
		{"https://example.com/app/", "https://example.com/app", true},
		{"http://127.0.0.1:7860", "http://127.0.0.1:7860", true},
		{"  owner/name  ", "https://owner-name.hf.space", true},
		{"", "", false},
		{"owner", "", false},
		{"owner/", "", false},
		{"/name", "", false},
		{"a/b/c", "", false},
		{"ftp://example.com", "", false},
		{"https://", "", false},
		{"https://example.com/?x=1", "", false},
		{"owner/na me", "", false},
	}
	for _, tt := range tests {
		got, err := BaseURL(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestAppError(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	tests := []struct {
		name  string
		msg   *string
		title string
		kind  provider.ErrorKind
		retry time.Duration
		text  string
	}{
		{"hidden", nil, "Error", provider.KindUpstream, 0, "upstream error (details hidden by the Space)"},
		{"quota current", str("You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). Try again in 0:14:33. Subscribe to Hugging Face PRO"), "ZeroGPU quota exceeded",
			provider.KindRateLimited, 14*time.Minute + 33*time.Second, "You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). Try again in 0:14:33. Subscribe to Hugging Face PRO"},
		{"quota by text only", str("You have exceeded your GPU quota (46s left vs. 60s requested). Sign-up on Hugging Face to get more quotas or retry in 0:09:48."), "Error",
			provider.KindRateLimited, 9*time.Minute + 48*time.Second, ""},
		{"runs limit", str("You have exceeded your ZeroGPU runs limit. "), "", provider.KindRateLimited, 0, "You have exceeded your ZeroGPU runs limit."},
		{"quota html", str(`You have exceeded your GPU quota (60s requested vs. 56s left). <a href="https://huggingface.co/join">Create a free account</a> to get more usage quota.`), "",
			provider.KindRateLimited, 0, "You have exceeded your GPU quota (60s requested vs. 56s left). Create a free account to get more usage quota."},
		{"title only", str("Space app has reached its GPU limit."), "ZeroGPU quota exceeded", provider.KindRateLimited, 0, ""},
		{"queue timeout", str("No GPU was available after 60s."), "ZeroGPU queue timeout", provider.KindUnavailable, 0, ""},
		{"app error", str("Value: 13x7 is not in the list of choices"), "Bad size", provider.KindUpstream, 0, "Value: 13x7 is not in the list of choices"},
		{"empty message", str(""), "Error", provider.KindUpstream, 0, "upstream error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := appError(tt.msg, tt.title)
			if e.Kind != tt.kind || e.RetryAfter != tt.retry {
				t.Errorf("kind %v retry %v, want %v %v", e.Kind, e.RetryAfter, tt.kind, tt.retry)
			}
			if tt.text != "" && e.Message != tt.text {
				t.Errorf("message %q, want %q", e.Message, tt.text)
			}
			if e.Title != tt.title {
				t.Errorf("title %q, want %q", e.Title, tt.title)
			}
		})
	}
}

func TestStatusError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		code       int
		header     http.Header
		body       string
		kind       provider.ErrorKind
		notStarted bool
		retry      time.Duration
		contains   string
	}{
		{"429 html", 429, http.Header{"Retry-After": {"12"}}, "<html><body>Too Many Requests</body></html>", provider.KindRateLimited, true, 12 * time.Second, "rate limiting"},
		{"429 plain no header", 429, nil, "slow down", provider.KindRateLimited, true, 0, ""},
		{"401 html", 401, nil, "<h1>Unauthorized</h1>", provider.KindConfig, true, 0, "authorization"},
		{"403", 403, nil, `{"detail":"nope"}`, provider.KindConfig, true, 0, "authorization"},
		{"422 list", 422, nil, `{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required"}]}`, provider.KindBadRequest, true, 0, "body.data: Field required"},
		{"422 validator", 422, nil, `{"detail":[{"__type__":"validate","is_valid":false,"message":"too long","parameter_name":"prompt"}]}`, provider.KindBadRequest, true, 0, "prompt: too long"},
		{"400 string", 400, nil, `{"detail":"Session hash not found."}`, provider.KindBadRequest, true, 0, "Session hash not found."},
		{"502 html", 502, nil, "<html>bad gateway</html>", provider.KindUnavailable, true, 0, ""},
		{"404", 404, nil, `{"detail":"Not Found"}`, provider.KindUnavailable, true, 0, ""},
		{"418", 418, nil, "teapot", provider.KindUpstream, true, 0, "418"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, _ := url.Parse("http://x/gradio_api/queue/join")
			resp := &http.Response{StatusCode: tt.code, Header: tt.header, Request: &http.Request{URL: u}}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			err := statusError(resp, []byte(tt.body), true)
			pe, ok := provider.AsError(err)
			if !ok {
				t.Fatalf("not a provider error: %v", err)
			}
			if pe.Kind != tt.kind || pe.NotStarted != tt.notStarted || pe.RetryAfter != tt.retry {
				t.Errorf("got kind %v notStarted %v retry %v; want %v %v %v", pe.Kind, pe.NotStarted, pe.RetryAfter, tt.kind, tt.notStarted, tt.retry)
			}
			if !strings.Contains(pe.Message, tt.contains) {
				t.Errorf("message %q does not contain %q", pe.Message, tt.contains)
			}
		})
	}
}

func TestNearestChoice(t *testing.T) {
	t.Parallel()
	choices := []string{"1024x1024 ( 1:1 )", "1280x720 ( 16:9 )", "720x1280 ( 9:16 )", "832x1248 ( 2:3 )", "1536x1536 ( 1:1 )", "bogus"}
	tests := []struct {
		w, h int
		want string
	}{
		{1024, 1024, "1024x1024 ( 1:1 )"},
		{1536, 1536, "1536x1536 ( 1:1 )"},
		{1400, 1400, "1536x1536 ( 1:1 )"},
		{1920, 1080, "1280x720 ( 16:9 )"},
		{1080, 1920, "720x1280 ( 9:16 )"},
		{1024, 1536, "832x1248 ( 2:3 )"},
		{512, 512, "1024x1024 ( 1:1 )"},
	}
	for _, tt := range tests {
		got, ok := nearestChoice(choices, float64(tt.w)/float64(tt.h), float64(tt.w*tt.h))
		if !ok || got != tt.want {
			t.Errorf("%dx%d → %q, want %q", tt.w, tt.h, got, tt.want)
		}
	}
	if _, ok := nearestChoice([]string{"auto", "big"}, 1, 1); ok {
		t.Error("choice found among non-WxH entries")
	}
}

func TestParseWxH(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		w, h int
		ok   bool
	}{
		{"1024x768", 1024, 768, true},
		{"1024 x 768 (4:3)", 1024, 768, true},
		{"832X1248", 832, 1248, true},
		{"640×480", 640, 480, true},
		{"0x10", 0, 0, false},
		{"x10", 0, 0, false},
		{"10x", 0, 0, false},
		{"1234567x1", 0, 0, false},
		{"square", 0, 0, false},
	}
	for _, tt := range tests {
		w, h, ok := parseWxH(tt.in)
		if w != tt.w || h != tt.h || ok != tt.ok {
			t.Errorf("parseWxH(%q) = %d,%d,%v", tt.in, w, h, ok)
		}
	}
}

func TestCoerce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		typ  string
		want any
		ok   bool
	}{
		{1024, "int", int64(1024), true},
		{1024.4, "int", int64(1024), true},
		{"42", "int", int64(42), true},
		{"4.0", "int", int64(4), true},
		{json.Number("7"), "int", int64(7), true},
		{"x", "int", nil, false},
		{3, "float", 3.0, true},
		{"2.5", "float", 2.5, true},
		{7, "string", "7", true},
		{"true", "bool", true, true},
		{0, "bool", false, true},
		{"maybe", "bool", nil, false},
		{[]any{}, "int", nil, false},
	}
	for _, tt := range tests {
		got, err := coerce(tt.in, tt.typ)
		if (err == nil) != tt.ok || !cmp.Equal(got, tt.want) {
			t.Errorf("coerce(%v, %s) = %#v, %v; want %#v ok=%v", tt.in, tt.typ, got, err, tt.want, tt.ok)
		}
	}
	// JSON integers, not floats, on the wire.
	v, _ := coerce(512.0, "int")
	b, _ := json.Marshal(v)
	if string(b) != "512" {
		t.Errorf("int encodes as %s", b)
	}
}

func TestParseCompletion(t *testing.T) {
	t.Parallel()
	fd := `{"path":"/tmp/gradio/ab/image.png","url":"https://s.hf.space/gradio_api/file=/tmp/gradio/ab/image.png","size":null,"orig_name":"image.png","mime_type":null,"is_stream":false,"meta":{"_type":"gradio.FileData"}}`
	fd2 := `{"path":"/tmp/gradio/cd/image.webp","url":null,"meta":{"_type":"gradio.FileData"}}`
	one := fileRef{URL: "https://s.hf.space/gradio_api/file=/tmp/gradio/ab/image.png", Path: "/tmp/gradio/ab/image.png"}
	two := fileRef{Path: "/tmp/gradio/cd/image.webp"}
	i0, i1 := 0, 1
	tests := []struct {
		name    string
		out     string
		idx     int
		kind    string
		seedIdx *int
		files   []fileRef
		seed    any
		errKind provider.ErrorKind
		wantErr bool
	}{
		{"image auto", `{"data":[` + fd + `,184467]}`, -1, "auto", &i1, []fileRef{one}, int64(184467), 0, false},
		{"image by index", `{"data":[` + fd + `,"42"]}`, 0, "image", &i1, []fileRef{one}, int64(42), 0, false},
		{"gallery", `{"data":[[{"image":` + fd + `,"caption":null},{"image":` + fd2 + `,"caption":"x"}],"Seed: 1","1"]}`, 0, "gallery", nil, []fileRef{one, two}, nil, 0, false},
		{"gallery auto after update", `{"data":[{"__type__":"update","visible":true},[{"image":` + fd + `,"caption":null}]]}`, -1, "auto", nil, []fileRef{one}, nil, 0, false},
		{"list", `{"data":[[` + fd + `,` + fd2 + `]]}`, 0, "list", nil, []fileRef{one, two}, nil, 0, false},
		{"float seed", `{"data":[` + fd + `,12.0]}`, 0, "auto", &i1, []fileRef{one}, int64(12), 0, false},
		{"non-numeric seed ignored", `{"data":[` + fd + `,"abc"]}`, 0, "auto", &i1, []fileRef{one}, nil, 0, false},
		{"seed index out of range ignored", `{"data":[` + fd + `]}`, 0, "auto", &i1, []fileRef{one}, nil, 0, false},
		{"cancelled", `{}`, -1, "auto", nil, nil, nil, provider.KindCanceled, true},
		{"null output", `null`, -1, "auto", nil, nil, nil, provider.KindCanceled, true},
		{"index out of range", `{"data":[1]}`, 3, "auto", nil, nil, nil, provider.KindProtocol, true},
		{"wrong shape", `{"data":[5]}`, 0, "image", nil, nil, nil, provider.KindProtocol, true},
		{"no image anywhere", `{"data":[5, "x"]}`, -1, "auto", nil, nil, nil, provider.KindUpstream, true},
		{"empty gallery", `{"data":[[]]}`, 0, "gallery", nil, nil, nil, provider.KindUpstream, true},
		{"not json", `{"data":`, -1, "auto", nil, nil, nil, provider.KindProtocol, true},
		{"data url string", `{"data":["data:image/png;base64,iVBORw0KGgo="]}`, 0, "auto", nil, []fileRef{{URL: "data:image/png;base64,iVBORw0KGgo="}}, nil, 0, false},
		{"file with null path and url", `{"data":[{"path":null,"url":null}]}`, 0, "image", nil, nil, nil, provider.KindProtocol, true},
		{"dependency with index 0 seed", `{"data":[7,` + fd + `]}`, 1, "image", &i0, []fileRef{one}, int64(7), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseCompletion([]byte(tt.out), tt.idx, tt.kind, tt.seedIdx)
			if tt.wantErr {
				pe, ok := provider.AsError(err)
				if !ok || pe.Kind != tt.errKind {
					t.Fatalf("err = %v, want kind %v", err, tt.errKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.files, c.files, cmp.AllowUnexported(fileRef{})); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			var seed any
			if c.seed != nil {
				seed = *c.seed
			}
			if !cmp.Equal(seed, tt.seed) {
				t.Errorf("seed = %v, want %v", seed, tt.seed)
			}
		})
	}
}

func TestFileURL(t *testing.T) {
	t.Parallel()
	p := &Provider{base: "http://127.0.0.1:9/app"}
	sp := &spaceState{prefix: "/gradio_api"}
	tests := []struct {
		f    fileRef
		want string
		ok   bool
	}{
		{fileRef{URL: "https://other.example/x.png"}, "https://other.example/x.png", true},
		{fileRef{URL: "/gradio_api/file=/tmp/a.png"}, "http://127.0.0.1:9/gradio_api/file=/tmp/a.png", true},
		{fileRef{URL: "gradio_api/file=/tmp/a.png"}, "http://127.0.0.1:9/app/gradio_api/file=/tmp/a.png", true},
		{fileRef{Path: "/tmp/gradio/x/image.webp"}, "http://127.0.0.1:9/app/gradio_api/file=/tmp/gradio/x/image.webp", true},
		{fileRef{Path: "https://cdn.example/y.png"}, "https://cdn.example/y.png", true},
		{fileRef{URL: "data:image/png;base64,AAAA"}, "data:image/png;base64,AAAA", true},
		{fileRef{URL: "file:///etc/passwd"}, "", false},
		{fileRef{}, "", false},
	}
	for _, tt := range tests {
		got, err := p.fileURL(sp, tt.f)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("fileURL(%+v) = %q, %v; want %q ok=%v", tt.f, got, err, tt.want, tt.ok)
		}
	}
}

func TestDecodeDataURLAndSniff(t *testing.T) {
	t.Parallel()
	png := "\x89PNG\r\n\x1a\nrest"
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"data:image/png;base64,iVBORw0KGgpyZXN0", png, true},
		{"data:image/png;base64,iVBORw0KGgpyZXN0\n", png, true},
		{"data:image/png;base64,iVBORw0KGgpyZXN0==", png, true},
		{"data:text/plain,hello%20world", "hello world", true},
		{"data:image/png;base64,!!!", "", false},
		{"data:nocomma", "", false},
	}
	for _, tt := range tests {
		got, err := decodeDataURL(tt.in, 1<<20)
		if (err == nil) != tt.ok || string(got) != tt.want {
			t.Errorf("decodeDataURL(%q) = %q, %v", tt.in, got, err)
		}
	}
	if _, err := decodeDataURL("data:image/png;base64,"+strings.Repeat("A", 400), 100); err == nil {
		t.Error("oversized data URL accepted")
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	neg := -1
	_, err := New("b", Config{
		Space:          "not a space",
		FnIndex:        &neg,
		Inputs:         []Input{{From: "colour"}, {From: "prompt", Value: "x"}, {From: "size_choice", Choices: []string{"big"}}, {Type: "decimal"}},
		Output:         Output{Kind: "video", Index: &neg},
		StallTimeout:   -time.Second,
		MaxResultBytes: -1,
		Size:           SizeConfig{Min: 2048, Max: 512},
		Steps:          StepsConfig{Min: 50, Max: 4},
	}, Options{})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"space", "fn_index -1", `unknown field "colour"`, "from or value", `"big" does not start with WxH`, `"decimal"`, "output.kind", "output.index", "stall_timeout", "max_result_bytes", "size: min", "steps: min"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if _, err := New("b", Config{Space: "a/b", Inputs: []Input{{From: "prompt"}}}, Options{}); err == nil || !strings.Contains(err.Error(), "api_name") {
		t.Errorf("missing endpoint selector: %v", err)
	}
	p, err := New("b", Config{Space: "a/b", APIName: "/gen", Inputs: []Input{{From: "prompt"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.APIName != "gen" || p.cfg.StallTimeout != DefaultStallTimeout || p.cfg.RequestTimeout != DefaultRequestTimeout ||
		p.cfg.ConfigTTL != DefaultConfigTTL || p.cfg.MaxResultBytes != DefaultMaxResultBytes || p.cfg.Output.Kind != "auto" {
		t.Errorf("defaults not applied: %+v", p.cfg)
	}
}

func TestCapabilities(t *testing.T) {
	t.Parallel()
	p, err := New("z", Config{
		Space:   "a/b",
		APIName: "generate",
		Inputs: []Input{
			{From: "prompt"}, {From: "size_choice", Choices: []string{"1024x1024 ( 1:1 )", "1280x720 ( 16:9 )"}},
			{From: "seed"}, {From: "steps"}, {Value: 3}, {From: "randomize_seed"}, {Value: []any{}},
		},
		Steps: StepsConfig{Default: 8, Min: 1, Max: 20},
		Size:  SizeConfig{DefaultWidth: 1024, DefaultHeight: 1024},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := provider.Capabilities{
		TextToImage: true, MaxN: 1, Seed: true, Steps: true, DefaultSteps: 8, MinSteps: 1, MaxSteps: 20,
		Size: provider.SizeRule{DefaultWidth: 1024, DefaultHeight: 1024, Choices: []string{"1024x1024", "1280x720"}},
	}
	if diff := cmp.Diff(want, p.Capabilities()); diff != "" {
		t.Errorf("capabilities (-want +got):\n%s", diff)
	}
	e, err := New("e", Config{Space: "a/b", APIName: "infer", Inputs: []Input{{From: "image"}, {From: "prompt"}, {From: "negative_prompt"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := e.Capabilities()
	if c.TextToImage || !c.ImageToImage || c.MaxInputImages != 1 || !c.NegativePrompt || c.Seed {
		t.Errorf("edit capabilities: %+v", c)
	}
}

func TestUploadName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		img  provider.InputImage
		want string
	}{
		{provider.InputImage{Name: "cat.png", MIME: "image/png"}, "cat.png"},
		{provider.InputImage{Name: "cat", MIME: "image/jpeg"}, "cat.jpg"},
		{provider.InputImage{Name: "cat.jpeg", MIME: "image/jpeg"}, "cat.jpeg"},
		{provider.InputImage{Name: "../../etc/x.txt", MIME: "image/webp"}, "x.webp"},
		{provider.InputImage{Data: []byte("GIF89a"), Name: ""}, "image0.gif"},
		// Without a MIME type the extension comes from the bytes.
		{provider.InputImage{Data: []byte("\x89PNG\r\n\x1a\n"), Name: "drawing"}, "drawing.png"},
		{provider.InputImage{Data: []byte("\xff\xd8\xff\xe0"), Name: "photo"}, "photo.jpg"},
		{provider.InputImage{Data: []byte("RIFF\x00\x00\x00\x00WEBPVP"), Name: "x.bin"}, "x.webp"},
		{provider.InputImage{Data: []byte("<html>"), Name: "page"}, "page"},
		{provider.InputImage{Name: "empty"}, "empty"},
	}
	for _, tt := range tests {
		if got := uploadName(tt.img, 0); got != tt.want {
			t.Errorf("uploadName(%+v) = %q, want %q", tt.img, got, tt.want)
		}
	}
}

func TestSizeChoiceSources(t *testing.T) {
	t.Parallel()
	p, err := New("s", Config{Space: "a/b", APIName: "g", Inputs: []Input{{From: "prompt"}, {From: "size_choice", Choices: []string{"512x512", "768x512 (3:2)"}}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	live := &spaceState{comps: map[int]component{9: {ID: 9, Type: "dropdown", Props: map[string]any{
		"choices": []any{[]any{"Square", "1024x1024"}, []any{"Wide", "1344x768 ( 7:4 )"}, "bogus", 5},
		"value":   "1024x1024",
	}}}}
	withLive := &endpoint{sp: live, dep: dependency{Inputs: []int{8, 9}}}
	without := &endpoint{sp: &spaceState{comps: map[int]component{}}, dep: dependency{Inputs: []int{8, 9}}}
	tests := []struct {
		name string
		ep   *endpoint
		req  provider.Request
		want any
	}{
		{"live wide", withLive, provider.Request{Width: 1920, Height: 1080}, "1344x768 ( 7:4 )"},
		{"live default value", withLive, provider.Request{}, "1024x1024"},
		{"aspect ratio only", withLive, provider.Request{AspectRatio: "16:9"}, "1344x768 ( 7:4 )"},
		{"configured fallback", without, provider.Request{Width: 600, Height: 400}, "768x512 (3:2)"},
		{"configured first when nothing asked", without, provider.Request{}, "512x512"},
	}
	for _, tt := range tests {
		data, err := p.buildData(tt.ep, &tt.req, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if data[1] != tt.want {
			t.Errorf("%s: chose %v, want %v", tt.name, data[1], tt.want)
		}
	}
}
