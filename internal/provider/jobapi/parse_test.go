package jobapi

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider"
)

func TestParsePathLookup(t *testing.T) {
	t.Parallel()
	doc, err := decodeJSON([]byte(`{"code":200,"result":{"job_id":"j1","image_url":["u0","u1"],"n":{"a.b":1}},"data":[{"url":"x"},[1,[2,3]]],"nil":null}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path string
		want any
		ok   bool
	}{
		{"code", "200", true},
		{"result.job_id", "j1", true},
		{"result.image_url[1]", "u1", true},
		{"result.image_url[2]", nil, false},
		{"data[0].url", "x", true},
		{"data[1][1][0]", "2", true},
		{"data.url", nil, false},
		{"result.job_id.x", nil, false},
		{"missing", nil, false},
		{"nil", nil, false},
	}
	for _, tc := range cases {
		p, err := ParsePath(tc.path)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tc.path, err)
			continue
		}
		if p.String() != tc.path {
			t.Errorf("String() = %q, want %q", p.String(), tc.path)
		}
		v, ok := p.Lookup(doc)
		if ok != tc.ok {
			t.Errorf("Lookup(%q) ok = %v, want %v", tc.path, ok, tc.ok)
			continue
		}
		if ok {
			got, _ := scalarText(v)
			if got != tc.want {
				t.Errorf("Lookup(%q) = %v, want %v", tc.path, got, tc.want)
			}
		}
	}
	root, err := ParsePath("[0]")
	if err != nil {
		t.Fatal(err)
	}
	list, _ := decodeJSON([]byte(`["first"]`))
	if v, ok := root.Lookup(list); !ok || v != "first" {
		t.Errorf("[0] on a root list = %v %v", v, ok)
	}
}

func TestParsePathErrors(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", ".", "a.", ".a", "a..b", "a[", "a[]", "a[-1]", "a[x]", "a]", "a[1]b", "a[+1]", "a[99999999999]", strings.Repeat("a.", 70) + "a"} {
		if _, err := ParsePath(s); err == nil {
			t.Errorf("ParsePath(%q) accepted", s)
		}
	}
}

func TestEscapeID(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"job_8f2c1a":    "job_8f2c1a",
		"a&b=c":         "a%26b%3Dc",
		"x/y z":         "x%2Fy%20z",
		"p+q?r#s%t~.-_": "p%2Bq%3Fr%23s%25t~.-_",
		"é":             "%C3%A9",
	}
	for in, want := range cases {
		if got := escapeID(in); got != want {
			t.Errorf("escapeID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProgressFraction(t *testing.T) {
	t.Parallel()
	doc, _ := decodeJSON([]byte(`[0.25, 40, "45%", "0.5", 1, 150, -1, "x", true, "NaN"]`))
	list := doc.([]any)
	want := []struct {
		f  float64
		ok bool
	}{{0.25, true}, {0.4, true}, {0.45, true}, {0.5, true}, {1, true}, {1, true}, {0, false}, {0, false}, {0, false}, {0, false}}
	for i, v := range list {
		f, ok := progressFraction(v)
		if ok != want[i].ok || (ok && f != want[i].f) {
			t.Errorf("progressFraction(%v) = %v %v, want %v %v", v, f, ok, want[i].f, want[i].ok)
		}
	}
}

func TestMessageText(t *testing.T) {
	t.Parallel()
	obj, _ := decodeJSON([]byte(`{"error":"<i>quota</i> exceeded"}`))
	if got := messageText(obj); got != "quota exceeded" {
		t.Errorf("messageText(object) = %q", got)
	}
	other, _ := decodeJSON([]byte(`{"reason":1}`))
	if got := messageText(other); got != `{"reason":1}` {
		t.Errorf("messageText(other object) = %q", got)
	}
}

func TestAspectRatioChoice(t *testing.T) {
	t.Parallel()
	cfg, _ := Preset(PresetAIImageToImage)
	cfg.Submit.URL, cfg.Poll.URL = "http://127.0.0.1:1/s", "http://127.0.0.1:1/p?id={job_id}"
	p := newTestProvider(t, cfg, nil, Options{})
	cases := []struct {
		w, h  int
		ratio string
		want  string
	}{
		{0, 0, "", "match_input_image"},
		{0, 0, "match_input_image", "match_input_image"},
		{0, 0, "16:9", "16:9"},
		{0, 0, "21:9", "16:9"},
		{0, 0, "1:3", "9:16"},
		{1024, 1024, "", "1:1"},
		{1920, 1080, "", "16:9"},
		{1080, 1920, "", "9:16"},
		{832, 1248, "", "2:3"},
		{1000, 750, "", "4:3"},
		{1500, 1000, "", "3:2"},
		{768, 1024, "", "3:4"},
		{5000, 1000, "", "16:9"},
		{1024, 1024, "garbage", "1:1"},
	}
	for _, tc := range cases {
		req := &provider.Request{Width: tc.w, Height: tc.h, AspectRatio: tc.ratio}
		if got := p.aspectRatio(req); got != tc.want {
			t.Errorf("aspect ratio for %dx%d %q = %q, want %q", tc.w, tc.h, tc.ratio, got, tc.want)
		}
	}

	// Without a list: the request's ratio, or its size in lowest terms.
	cfg.AspectRatios, cfg.DefaultAspectRatio = nil, ""
	free := newTestProvider(t, cfg, nil, Options{})
	if got := free.aspectRatio(&provider.Request{Width: 1920, Height: 1080}); got != "16:9" {
		t.Errorf("free ratio of 1920x1080 = %q", got)
	}
	if got := free.aspectRatio(&provider.Request{AspectRatio: "7:5"}); got != "7:5" {
		t.Errorf("free explicit ratio = %q", got)
	}
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	_, err := New("", Config{
		Submit: SubmitConfig{Method: "DELETE", URL: "ftp://x", Body: "xml", Fields: []Field{
			{Name: "a"},
			{Name: "b", From: "colour"},
			{Name: "c", From: "prompt", Value: "x"},
			{Name: "c", Value: "y"},
			{Name: "d", Value: []any{1}},
		}, Headers: map[string]string{"User-Agent": "Mozilla/5.0"}},
		Accept:             AcceptConfig{JobIDPath: "a..b", CodePath: "code"},
		Poll:               PollConfig{URL: "http://h/p", Backoff: 0.5, Interval: 5 * time.Second, MaxInterval: time.Second, Deadline: -1},
		Fetch:              FetchConfig{MaxBytes: -1, Attempts: 11},
		RequiresImage:      true,
		Model:              "x",
		Models:             []string{"y"},
		AspectRatios:       []string{"1:1"},
		DefaultAspectRatio: "2:1",
	}, Options{})
	if err == nil {
		t.Fatal("New accepted a broken config")
	}
	for _, want := range []string{
		"backend name is empty", "submit.method", "submit.url", "submit.body", "unknown from \"colour\"",
		"set from or value, not both", "name \"c\" is used twice", "set from or value", "multipart field takes a scalar",
		"User-Agent", "accept.job_id_path", "accept.code_ok", "poll.url: must contain {job_id}", "poll.backoff",
		"poll.deadline is negative", "poll.max_interval", "poll: set done_values", "poll.result_path",
		"fetch.max_bytes", "fetch.attempts", "requires_image", "model: \"x\" is not one of models", "default_aspect_ratio",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestPresets(t *testing.T) {
	t.Parallel()
	for _, name := range PresetNames() {
		cfg, ok := Preset(name)
		if !ok {
			t.Fatalf("Preset(%q) missing", name)
		}
		p, err := New(name, cfg, Options{})
		if err != nil {
			t.Fatalf("preset %s does not validate: %v", name, err)
		}
		caps := p.Capabilities()
		want := provider.Capabilities{
			ImageToImage: true, MaxInputImages: 1, MaxN: 1, NegativePrompt: true,
			AspectRatios: []string{"match_input_image", "1:1", "3:2", "2:3", "9:16", "16:9", "3:4", "4:3"},
		}
		if diff := cmp.Diff(want, caps); diff != "" {
			t.Errorf("%s capabilities (-want +got):\n%s", name, diff)
		}
		// Defaults are the documented ones.
		pc := p.cfg.Poll
		if pc.Interval != time.Second || pc.Backoff != 1.5 || pc.MaxInterval != 10*time.Second || pc.Deadline != 600*time.Second ||
			p.cfg.Fetch.MaxBytes != 50<<20 || p.cfg.RequestTimeout != 30*time.Second || p.cfg.Fetch.Attempts != 3 {
			t.Errorf("%s defaults: %+v fetch %+v timeout %v", name, pc, p.cfg.Fetch, p.cfg.RequestTimeout)
		}
	}
	nb, _ := Preset(PresetAIImageToImage)
	st, _ := Preset(PresetAIImageToImageStandard)
	if nb.Model != ModelNanoBanana || st.Model != ModelStandard {
		t.Errorf("preset models %q %q", nb.Model, st.Model)
	}
	if _, ok := Preset("nope"); ok {
		t.Error("unknown preset found")
	}
	// Presets are fresh values.
	nb.AspectRatios[0] = "changed"
	again, _ := Preset(PresetAIImageToImage)
	if again.AspectRatios[0] != MatchInputImage {
		t.Error("Preset shares its slices between calls")
	}
}

func TestResolveEnv(t *testing.T) {
	t.Parallel()
	cfg := Config{Submit: SubmitConfig{HeaderEnv: map[string]string{"Authorization": "JOBAPI_KEY", "X-Other": "UNSET_VAR"}}}
	env := map[string]string{"JOBAPI_KEY": "Bearer s3cret"}
	err := cfg.ResolveEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "UNSET_VAR") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("ResolveEnv error = %v, want one naming UNSET_VAR and no secret", err)
	}
	if cfg.Submit.SecretHeaders["Authorization"] != "Bearer s3cret" {
		t.Errorf("secret headers = %v", cfg.Submit.SecretHeaders)
	}
}

func TestParsePollStates(t *testing.T) {
	t.Parallel()
	cfg, _ := Preset(PresetAIImageToImage)
	cfg.Submit.URL, cfg.Poll.URL = "http://127.0.0.1:1/s", "http://127.0.0.1:1/p?id={job_id}"
	p := newTestProvider(t, cfg, nil, Options{})
	cases := []struct {
		body    string
		want    pollState
		errKind *provider.ErrorKind
	}{
		{`{"code":200,"result":{"status":"processing"}}`, pollState{status: "processing", running: true, progress: -1}, nil},
		{`{"code":200,"result":{"status":"weird"}}`, pollState{status: "weird", progress: -1}, nil},
		{`{"code":200,"result":{"status":"processing","progress":"30%"}}`, pollState{status: "processing", running: true, progress: 0.3}, nil},
		{`{"code":200,"result":{"status":"Completed","image_url":["http://x/a.png"]}}`, pollState{status: "Completed", done: true, progress: -1, urls: []string{"http://x/a.png"}}, nil},
		// done_on_result: a URL means done whatever the status says.
		{`{"code":200,"result":{"image_url":"http://x/b.png"}}`, pollState{done: true, progress: -1, urls: []string{"http://x/b.png"}}, nil},
		{`{"code":200,"result":{"status":"failed"},"message":"NSFW"}`, pollState{status: "failed", failed: true, progress: -1, message: "NSFW"}, nil},
		{`{"code":500,"message":{"error":"model crashed"}}`, pollState{failed: true, progress: -1, message: "code 500: model crashed"}, nil},
		{`{"code":"429","message":"slow down"}`, pollState{rateLimited: true, progress: -1, message: "slow down"}, nil},
		{`{"code":200,"result":{"status":"completed","image_url":[]}}`, pollState{}, kindp(provider.KindProtocol)},
		{`{"result":{}}`, pollState{}, kindp(provider.KindProtocol)},
		{`<html>oops</html>`, pollState{}, kindp(provider.KindProtocol)},
		{`{"code":200}{"code":200}`, pollState{}, kindp(provider.KindProtocol)},
		{strings.Repeat("[", 10001) + strings.Repeat("]", 10001), pollState{}, kindp(provider.KindProtocol)},
	}
	for _, tc := range cases {
		st, err := p.parsePoll([]byte(tc.body))
		if tc.errKind != nil {
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Kind != *tc.errKind {
				t.Errorf("parsePoll(%.40s) error = %v, want kind %v", tc.body, err, *tc.errKind)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePoll(%.40s): %v", tc.body, err)
			continue
		}
		if diff := cmp.Diff(tc.want, st, cmp.AllowUnexported(pollState{})); diff != "" {
			t.Errorf("parsePoll(%s) (-want +got):\n%s", tc.body, diff)
		}
	}
}

func kindp(k provider.ErrorKind) *provider.ErrorKind { return &k }

func TestScheduleDefaults(t *testing.T) {
	t.Parallel()
	s := newSchedule(PollConfig{Interval: time.Second, Backoff: 1.5, MaxInterval: 10 * time.Second}, false)
	var got []time.Duration
	for range 9 {
		got = append(got, s.next())
	}
	want := []time.Duration{time.Second, 1500 * time.Millisecond, 2250 * time.Millisecond, 3375 * time.Millisecond,
		5062500 * time.Microsecond, 7593750 * time.Microsecond, 10 * time.Second, 10 * time.Second, 10 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schedule (-want +got):\n%s", diff)
	}
	r := newSchedule(PollConfig{Interval: time.Second, Backoff: 1.5, MaxInterval: 10 * time.Second}, true)
	if a, b := r.next(), r.next(); a != 0 || b != time.Second {
		t.Errorf("immediate schedule starts %v, %v", a, b)
	}
}
