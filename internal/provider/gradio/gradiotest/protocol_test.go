package gradiotest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestJoinStreamTranscript(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: ZImageTurbo(Behavior{Steps: 2})})
	id := join(t, s, "sess-transcript", 1, []any{"a red fox", 640, 512, 9, 42, false})
	st := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=sess-transcript", nil)
	if ct := st.resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	ms := st.all()
	want := []string{"estimation", "process_starts", "progress", "progress", "process_completed", "close_stream"}
	if diff := cmp.Diff(want, msgs(ms)); diff != "" {
		t.Fatalf("transcript (-want +got):\n%s", diff)
	}
	wantKeys := [][]string{
		{"msg", "event_id", "rank", "queue_size", "rank_eta"},
		{"msg", "event_id", "eta"},
		{"msg", "event_id", "progress_data"},
		{"msg", "event_id", "progress_data"},
		{"msg", "event_id", "output", "success", "title", "used_cache", "cache_duration", "avg_time"},
		{"msg", "event_id"},
	}
	for i, m := range ms {
		if diff := cmp.Diff(wantKeys[i], m.keys); diff != "" {
			t.Errorf("%s keys (-want +got):\n%s", m.msg(), diff)
		}
		wantID := any(id)
		if m.msg() == "close_stream" {
			wantID = nil
		}
		if m.m["event_id"] != wantID {
			t.Errorf("%s event_id = %v, want %v", m.msg(), m.m["event_id"], wantID)
		}
	}
	if ms[0].raw != fmt.Sprintf(`{"msg":"estimation","event_id":"%s","rank":0,"queue_size":1,"rank_eta":null}`, id) {
		t.Errorf("estimation frame = %s", ms[0].raw)
	}
	if ms[2].raw != fmt.Sprintf(`{"msg":"progress","event_id":"%s","progress_data":[{"index":0,"length":2,"unit":"steps","progress":null,"desc":null}]}`, id) {
		t.Errorf("progress frame = %s", ms[2].raw)
	}
	done := ms[4].m
	if done["success"] != true || done["title"] != nil {
		t.Errorf("completed = %s", ms[4].raw)
	}
	out := done["output"].(map[string]any)
	// Decoded maps lose key order, so the output's field order is checked
	// on the wire text.
	if !strings.Contains(ms[4].raw, `"output":{"data":[{"path":"/tmp/gradio/`) ||
		!strings.Contains(ms[4].raw, `"size":null,"orig_name":"image.png","mime_type":null,"is_stream":false,"meta":{"_type":"gradio.FileData"}},42],"is_generating":false,"duration":`) ||
		!strings.Contains(ms[4].raw, `"render_config":null,"changed_state_ids":[],"used_cache":null}`) {
		t.Errorf("completed output wire form = %s", ms[4].raw)
	}
	data := out["data"].([]any)
	fd := data[0].(map[string]any)
	path := fd["path"].(string)
	if !regexp.MustCompile(`^/tmp/gradio/[0-9a-f]{64}/image\.png$`).MatchString(path) {
		t.Errorf("path %q", path)
	}
	if fd["url"] != s.URL+"/gradio_api/file="+path {
		t.Errorf("url %v", fd["url"])
	}
	// Height is input 1 and width input 2: 640 high, 512 wide.
	if w, h := pngSize(t, fd["url"].(string), nil); w != 512 || h != 640 {
		t.Errorf("image %dx%d, want 512x640", w, h)
	}
	if data[1] != float64(42) {
		t.Errorf("seed %v", data[1])
	}
	joins := s.Joins()
	if len(joins) != 1 || joins[0].FnIndex != 1 || joins[0].APIName != "generate_image" || joins[0].Header.Get("X-Gradio-User") != "api" {
		t.Fatalf("joins = %+v", joins)
	}
	if diff := cmp.Diff([]any{"a red fox", float64(640), float64(512), float64(9), float64(42), false}, joins[0].Data); diff != "" {
		t.Errorf("join data (-want +got):\n%s", diff)
	}
}

func TestLateStreamConnectLosesNothing(t *testing.T) {
	t.Parallel()
	ran := make(chan struct{})
	s := start(t, Options{Endpoints: []Endpoint{textEndpoint("echo", func(ctx context.Context, c *Call) ([]any, error) {
		c.Log("info", "note", "hello")
		close(ran)
		return []any{"ok"}, nil
	})}})
	join(t, s, "late", 0, []any{"x"})
	waitFor(t, ran, "run")
	st := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=late", nil)
	ms := st.all()
	if diff := cmp.Diff([]string{"estimation", "process_starts", "log", "process_completed", "close_stream"}, msgs(ms)); diff != "" {
		t.Fatalf("transcript (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"msg", "event_id", "log", "level", "duration", "visible", "title"}, ms[2].keys); diff != "" {
		t.Errorf("log keys (-want +got):\n%s", diff)
	}
}

func TestUnknownSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version int
		want    string
	}{
		{6, `{"msg":"unexpected_error","event_id":null,"message":"404: Not Found","session_not_found":true,"success":false}`},
		{4, `{"msg":"unexpected_error","event_id":null,"message":"404: Not Found","success":false}`},
	} {
		t.Run(fmt.Sprint(tc.version), func(t *testing.T) {
			t.Parallel()
			s := start(t, Options{Version: tc.version})
			st := openStream(t, s.URL+s.Prefix()+"/queue/data?session_hash=nobody", nil)
			if st.resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", st.resp.StatusCode)
			}
			ms := st.all()
			if len(ms) != 1 || ms[0].raw != tc.want {
				t.Fatalf("frames = %+v", ms)
			}
		})
	}
}

func TestJoinValidation(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: ZImageTurbo(Behavior{})})
	for _, tc := range []struct {
		name     string
		body     string
		code     int
		ctype    string
		contains string
	}{
		{"not json", `{nope`, 422, "application/json", `"type":"json_invalid"`},
		{"no data", `{"fn_index":1,"session_hash":"a"}`, 422, "application/json", `{"detail":[{"type":"missing","loc":["body","data"],"msg":"Field required"`},
		{"data not list", `{"data":3,"fn_index":1,"session_hash":"a"}`, 422, "application/json", `"type":"list_type"`},
		{"no session", `{"data":[],"fn_index":1}`, 400, "application/json", `{"detail":"Session hash not found."}`},
		{"no fn_index", `{"data":[],"session_hash":"a"}`, 400, "application/json", `{"detail":"No function index provided."}`},
		{"unknown fn_index", `{"data":[],"fn_index":99,"session_hash":"a"}`, 500, "text/plain; charset=utf-8", `Internal Server Error`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, h, b := do(t, http.MethodPost, s.URL+"/gradio_api/queue/join", []byte(tc.body), nil)
			if code != tc.code || h.Get("Content-Type") != tc.ctype || !strings.Contains(string(b), tc.contains) {
				t.Fatalf("got %d %q %s", code, h.Get("Content-Type"), b)
			}
		})
	}
	if n := len(s.Joins()); n != 0 {
		t.Errorf("rejected joins recorded: %d", n)
	}
}

func TestValidatorRejectsJoin(t *testing.T) {
	t.Parallel()
	ep := textEndpoint("echo", nil)
	ep.Validate = func(data []any) []Invalid {
		if data[0] == "" {
			return []Invalid{{Parameter: "prompt", Message: "Prompt is required"}}
		}
		return nil
	}
	s := start(t, Options{Endpoints: []Endpoint{ep}})
	code, _, b := do(t, http.MethodPost, s.URL+"/gradio_api/queue/join", []byte(`{"data":[""],"fn_index":0,"session_hash":"v"}`), nil)
	want := `{"detail":[{"__type__":"validate","is_valid":false,"message":"Prompt is required","parameter_name":"prompt"}]}`
	if code != 422 || string(b) != want {
		t.Fatalf("got %d %s", code, b)
	}
}

func TestQueueRanksAndFull(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := start(t, Options{Endpoints: []Endpoint{textEndpoint("slow", g.run)}, Concurrency: 1, MaxQueue: 2})
	a := join(t, s, "a", 0, []any{"1"})
	waitFor(t, g.started, "first start")
	join(t, s, "b", 0, []any{"2"})
	join(t, s, "c", 0, []any{"3"})
	code, h, b := do(t, http.MethodPost, s.URL+"/gradio_api/queue/join", []byte(`{"data":["4"],"fn_index":0,"session_hash":"d"}`), nil)
	if code != 503 || h.Get("Content-Type") != "application/json" || string(b) != `{"detail":"Queue is full. Max size is 2 and size is 2."}` {
		t.Fatalf("queue full: %d %s", code, b)
	}
	code, _, b = do(t, http.MethodGet, s.URL+"/gradio_api/queue/status", nil, nil)
	if code != 200 || string(b) != `{"msg":"estimation","event_id":null,"rank":null,"queue_size":2,"rank_eta":null}` {
		t.Fatalf("status: %d %s", code, b)
	}
	sa := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=a", nil)
	sc := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=c", nil)
	for _, want := range []string{"estimation", "process_starts"} {
		if m, _ := sa.nextNonHeartbeat(); m.msg() != want || m.m["event_id"] != a {
			t.Fatalf("a: got %s, want %s", m.raw, want)
		}
	}
	m, _ := sc.nextNonHeartbeat()
	if m.m["rank"] != float64(1) || m.m["queue_size"] != float64(2) {
		t.Fatalf("c first estimation %s", m.raw)
	}
	g.release <- struct{}{} // a finishes, b starts, c moves up
	if ms := sa.all(); len(ms) != 2 || ms[0].msg() != "process_completed" || ms[1].msg() != "close_stream" {
		t.Fatalf("a tail = %v", msgs(ms))
	}
	m, _ = sc.nextNonHeartbeat()
	if m.msg() != "estimation" || m.m["rank"] != float64(0) || m.m["queue_size"] != float64(1) {
		t.Fatalf("c second estimation %s", m.raw)
	}
	// rank_eta is known once the function has run.
	if _, ok := m.m["rank_eta"].(float64); !ok {
		t.Errorf("rank_eta after a run = %v", m.m["rank_eta"])
	}
	waitFor(t, g.started, "second start")
	g.release <- struct{}{}
	waitFor(t, g.started, "third start")
	g.release <- struct{}{}
	if got := msgs(sc.all()); !cmp.Equal(got, []string{"process_starts", "process_completed", "close_stream"}) {
		t.Fatalf("c tail = %v", got)
	}
}

func TestConcurrentSessionShared(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := start(t, Options{Endpoints: []Endpoint{textEndpoint("slow", g.run)}, Concurrency: 4})
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		ids[join(t, s, "shared", 0, []any{fmt.Sprint(i)})] = true
	}
	for i := 0; i < 3; i++ {
		waitFor(t, g.started, "start")
	}
	if s.Running() != 3 {
		t.Fatalf("running = %d, want 3", s.Running())
	}
	close(g.release)
	st := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=shared", nil)
	ms := st.all()
	completed := 0
	for i, m := range ms {
		if m.msg() == "process_completed" {
			completed++
			delete(ids, m.m["event_id"].(string))
		}
		if m.msg() == "close_stream" && i != len(ms)-1 {
			t.Fatalf("close_stream before the end: %v", msgs(ms))
		}
	}
	if completed != 3 || len(ids) != 0 || ms[len(ms)-1].msg() != "close_stream" {
		t.Fatalf("transcript %v", msgs(ms))
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := start(t, Options{Endpoints: []Endpoint{textEndpoint("slow", g.run)}})
	running := join(t, s, "x", 0, []any{"1"})
	waitFor(t, g.started, "start")
	waiting := join(t, s, "y", 0, []any{"2"})

	code, _, b := do(t, http.MethodPost, s.URL+"/gradio_api/cancel", []byte(`{"session_hash":"y","event_id":"`+waiting+`"}`), nil)
	if code != 422 || !strings.Contains(string(b), `"loc":["body","fn_index"]`) {
		t.Fatalf("partial cancel: %d %s", code, b)
	}
	code, _, b = do(t, http.MethodPost, s.URL+"/gradio_api/cancel", []byte(`{"session_hash":"y","fn_index":0,"event_id":"`+waiting+`"}`), nil)
	if code != 200 || string(b) != `{"success":true}` {
		t.Fatalf("cancel: %d %s", code, b)
	}
	sy := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=y", nil)
	ms := sy.all()
	if len(ms) != 3 || ms[1].raw != `{"msg":"process_completed","event_id":"`+waiting+`","output":{},"success":true,"title":null,"used_cache":null,"cache_duration":null,"avg_time":null}` || ms[2].msg() != "close_stream" {
		t.Fatalf("cancelled waiting transcript: %v", ms)
	}
	if s.QueueSize() != 0 {
		t.Errorf("queue size after cancel = %d", s.QueueSize())
	}

	// A running event: its ctx is cancelled and the completion is cancel-style.
	sx := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=x", nil)
	do(t, http.MethodPost, s.URL+"/gradio_api/cancel", []byte(`{"session_hash":"x","fn_index":0,"event_id":"`+running+`"}`), nil)
	if got := waitFor(t, g.canceled, "run ctx cancel"); got != running {
		t.Fatalf("cancelled %s", got)
	}
	ms = sx.all()
	if got := msgs(ms); !cmp.Equal(got, []string{"estimation", "process_starts", "process_completed", "close_stream"}) {
		t.Fatalf("running cancel transcript %v", got)
	}
	if out := ms[2].m["output"].(map[string]any); len(out) != 0 || ms[2].m["success"] != true {
		t.Fatalf("cancel completion %s", ms[2].raw)
	}
	if c := s.Cancels(); len(c) != 2 || c[0].EventID != waiting || c[1].FnIndex != 0 || c[1].SessionHash != "x" {
		t.Fatalf("cancels = %+v", c)
	}
	code, _, b = do(t, http.MethodPost, s.URL+"/gradio_api/reset", []byte(`{"event_id":"`+running+`"}`), nil)
	if code != 200 || string(b) != `{"success":true}` {
		t.Fatalf("reset: %d %s", code, b)
	}
	code, _, _ = do(t, http.MethodPost, s.URL+"/gradio_api/reset", []byte(`{}`), nil)
	if code != 422 {
		t.Fatalf("reset without event_id: %d", code)
	}
}

func TestDisconnectDropsEvents(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := start(t, Options{Endpoints: []Endpoint{textEndpoint("slow", g.run)}})
	running := join(t, s, "gone", 0, []any{"1"})
	waitFor(t, g.started, "start")
	join(t, s, "gone", 0, []any{"2"})
	if s.QueueSize() != 1 {
		t.Fatalf("queue size %d", s.QueueSize())
	}
	st := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=gone", nil)
	if m, _ := st.nextMsg(); m.msg() != "estimation" {
		t.Fatalf("first frame %s", m.raw)
	}
	st.close()
	if got := waitFor(t, g.canceled, "run ctx cancel"); got != running {
		t.Fatalf("cancelled %s", got)
	}
	for i := 0; i < 1000 && (s.QueueSize() != 0 || s.Running() != 0); i++ {
		time.Sleep(time.Millisecond) // bounded wait for the worker to return
	}
	if s.QueueSize() != 0 || s.Running() != 0 {
		t.Fatalf("after disconnect: queue %d running %d", s.QueueSize(), s.Running())
	}
	// The session is gone: a new stream is told so.
	ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=gone", nil).all()
	if len(ms) != 1 || ms[0].m["session_not_found"] != true {
		t.Fatalf("after disconnect: %v", ms)
	}
}

func TestHeartbeats(t *testing.T) {
	t.Parallel()
	g := newGate()
	silent := make(chan struct{})
	s := start(t, Options{Heartbeat: 20 * time.Millisecond, Concurrency: 2, Endpoints: []Endpoint{
		textEndpoint("slow", g.run),
		textEndpoint("stall", func(ctx context.Context, c *Call) ([]any, error) {
			c.SilenceHeartbeats()
			close(silent)
			<-ctx.Done()
			return nil, ctx.Err()
		}),
	}})
	join(t, s, "hb", 0, []any{"1"})
	st := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=hb", nil)
	beats := 0
	for beats < 2 {
		m, ok := st.nextMsg()
		if !ok {
			t.Fatal("stream ended")
		}
		if m.msg() == "heartbeat" {
			beats++
			if m.raw != `{"msg":"heartbeat","event_id":null}` {
				t.Fatalf("heartbeat %s", m.raw)
			}
		}
	}
	close(g.release)

	join(t, s, "quiet", 1, []any{"1"})
	sq := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=quiet", nil)
	waitFor(t, silent, "silence")
	for _, want := range []string{"estimation", "process_starts"} {
		if m, _ := sq.nextMsg(); m.msg() != want {
			t.Fatalf("got %s want %s", m.raw, want)
		}
	}
	select {
	case f := <-sq.frames:
		t.Fatalf("silenced stream sent %q", f)
	case <-time.After(100 * time.Millisecond): // five heartbeat intervals of silence is the behaviour under test
	}

	hs := openStream(t, s.URL+"/gradio_api/heartbeat/hb", nil)
	for i := 0; i < 2; i++ {
		if f, _ := hs.next(); f != "data: ALIVE\n" {
			t.Fatalf("heartbeat route frame %q", f)
		}
	}
}

func TestUploadAndFiles(t *testing.T) {
	t.Parallel()
	s := start(t, Options{MaxFileSize: 1000})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("files", "cat.png")
	fw.Write([]byte("\x89PNG fake cat"))
	h := make(map[string][]string)
	h["Content-Disposition"] = []string{`form-data; name="files"`}
	pw, _ := mw.CreatePart(h)
	pw.Write([]byte("no name"))
	mw.Close()
	code, _, b := do(t, http.MethodPost, s.URL+"/gradio_api/upload", body.Bytes(), map[string]string{"Content-Type": mw.FormDataContentType()})
	if code != 200 {
		t.Fatalf("upload %d %s", code, b)
	}
	var paths []string
	if err := json.Unmarshal(b, &paths); err != nil || len(paths) != 2 {
		t.Fatalf("upload response %s", b)
	}
	if !regexp.MustCompile(`^/tmp/gradio/[0-9a-f]{64}/cat\.png$`).MatchString(paths[0]) ||
		!regexp.MustCompile(`^/tmp/gradio/[0-9a-f]{64}/tmp[0-9a-f]{10}$`).MatchString(paths[1]) {
		t.Fatalf("paths %v", paths)
	}
	ups := s.Uploads()
	if len(ups) != 2 || ups[0].Name != "cat.png" || string(ups[0].Data) != "\x89PNG fake cat" || ups[1].Path != paths[1] {
		t.Fatalf("uploads %+v", ups)
	}

	code, hdr, b := do(t, http.MethodGet, s.URL+"/gradio_api/file="+paths[0], nil, nil)
	if code != 200 || hdr.Get("Content-Type") != "image/png" || !strings.HasPrefix(hdr.Get("Content-Disposition"), "inline") ||
		hdr.Get("Accept-Ranges") != "bytes" || string(b) != "\x89PNG fake cat" {
		t.Fatalf("file=: %d %v %q", code, hdr, b)
	}
	code, _, b = do(t, http.MethodGet, s.URL+"/gradio_api/file="+paths[0], nil, map[string]string{"Range": "bytes=5-8"})
	if code != 206 || string(b) != "fake" {
		t.Fatalf("range: %d %q", code, b)
	}
	code, hdr, _ = do(t, http.MethodGet, s.URL+"/gradio_api/file="+paths[1], nil, nil)
	if code != 200 || hdr.Get("Content-Type") != "application/octet-stream" || !strings.HasPrefix(hdr.Get("Content-Disposition"), "attachment") {
		t.Fatalf("non-image file: %d %v", code, hdr)
	}
	code, _, b = do(t, http.MethodGet, s.URL+"/gradio_api/file=/etc/passwd", nil, nil)
	if code != 403 || string(b) != `{"detail":"File not allowed: /etc/passwd."}` {
		t.Fatalf("unknown file: %d %s", code, b)
	}
	s.ExpireFile(paths[0])
	if code, _, _ = do(t, http.MethodGet, s.URL+"/gradio_api/file="+paths[0], nil, nil); code != 403 {
		t.Fatalf("expired file: %d", code)
	}

	code, _, b = do(t, http.MethodPost, s.URL+"/gradio_api/upload", []byte(`{}`), nil)
	if code != 400 || string(b) != `{"detail":"Invalid content type."}` {
		t.Fatalf("non-multipart: %d %s", code, b)
	}
	body.Reset()
	mw = multipart.NewWriter(&body)
	fw, _ = mw.CreateFormFile("files", "big.bin")
	fw.Write(bytes.Repeat([]byte("x"), 1001))
	mw.Close()
	code, hdr, b = do(t, http.MethodPost, s.URL+"/gradio_api/upload", body.Bytes(), map[string]string{"Content-Type": mw.FormDataContentType()})
	if code != 413 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || string(b) != "File size exceeded maximum allowed size of 1000 bytes." {
		t.Fatalf("too large: %d %s", code, b)
	}
	if n := s.Requests("/file="); n != 5 {
		t.Errorf("Requests(/file=) = %d, want 5", n)
	}
}

func TestVersionDifferences(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version, minor int
		prefix         string
		doneKeys       []string
	}{
		{4, 0, "", []string{"msg", "event_id", "output", "success"}},
		{5, 0, "/gradio_api", []string{"msg", "event_id", "output", "success", "title"}},
		{6, 11, "/gradio_api", []string{"msg", "event_id", "output", "success", "title"}},
		{6, 0, "/gradio_api", []string{"msg", "event_id", "output", "success", "title", "used_cache", "cache_duration", "avg_time"}},
	} {
		t.Run(fmt.Sprintf("%d.%d", tc.version, tc.minor), func(t *testing.T) {
			t.Parallel()
			s := start(t, Options{Version: tc.version, Minor: tc.minor, Endpoints: FluxSchnell(Behavior{Steps: 1})})
			if s.Prefix() != tc.prefix {
				t.Fatalf("prefix %q", s.Prefix())
			}
			code, _, b := do(t, http.MethodGet, s.URL+"/config", nil, nil)
			if code != 200 {
				t.Fatalf("config %d", code)
			}
			var cfg map[string]any
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			if p, ok := cfg["api_prefix"]; (tc.prefix == "") == ok || (ok && p != tc.prefix) {
				t.Errorf("api_prefix = %v (present %v)", p, ok)
			}
			if !strings.HasPrefix(cfg["version"].(string), fmt.Sprint(tc.version)+".") || cfg["protocol"] != "sse_v3" || cfg["root"] != s.URL {
				t.Errorf("config version %v protocol %v root %v", cfg["version"], cfg["protocol"], cfg["root"])
			}
			if tc.prefix == "" {
				if code, _, _ := do(t, http.MethodGet, s.URL+"/gradio_api/info", nil, nil); code != 404 {
					t.Errorf("prefixed route in 4.x mode: %d", code)
				}
			}
			join(t, s, "v", 0, []any{"p", 5, false, 512, 256, 1})
			ms := openStream(t, s.URL+tc.prefix+"/queue/data?session_hash=v", nil).all()
			done := ms[len(ms)-2]
			if diff := cmp.Diff(tc.doneKeys, done.keys); diff != "" {
				t.Errorf("process_completed keys (-want +got):\n%s", diff)
			}
			fd := done.m["output"].(map[string]any)["data"].([]any)[0].(map[string]any)
			if !strings.HasPrefix(fd["url"].(string), s.URL+tc.prefix+"/file=/tmp/gradio/") {
				t.Errorf("url %v", fd["url"])
			}
			if w, h := pngSize(t, fd["url"].(string), nil); w != 512 || h != 256 {
				t.Errorf("flux image %dx%d, want 512x256", w, h)
			}
		})
	}
}

func TestAuthToken(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Token: "hf_secret", Endpoints: ZImageTurbo(Behavior{Steps: 1})})
	auth := map[string]string{"Authorization": "Bearer hf_secret"}
	for _, p := range []string{"/config", "/gradio_api/info", "/gradio_api/queue/data?session_hash=a", "/gradio_api/file=/tmp/gradio/x/y.png", "/gradio_api/heartbeat/a"} {
		code, h, b := do(t, http.MethodGet, s.URL+p, nil, map[string]string{"Authorization": "Bearer wrong"})
		if code != 401 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || json.Valid(b) {
			t.Errorf("%s without token: %d %q", p, code, h.Get("Content-Type"))
		}
	}
	if code, _, _ := do(t, http.MethodGet, s.URL+"/config", nil, auth); code != 200 {
		t.Fatalf("config with token: %d", code)
	}
	if code, _, _ := do(t, http.MethodGet, s.URL+"/config", nil, map[string]string{"X-HF-Authorization": "Bearer hf_secret"}); code != 200 {
		t.Fatalf("config with X-HF-Authorization: %d", code)
	}
	body := []byte(`{"data":["p",512,512,1,1,false],"fn_index":1,"session_hash":"s"}`)
	code, _, b := do(t, http.MethodPost, s.URL+"/gradio_api/queue/join", body, auth)
	if code != 200 {
		t.Fatalf("join with token: %d %s", code, b)
	}
	ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=s", auth).all()
	fd := ms[len(ms)-2].m["output"].(map[string]any)["data"].([]any)[0].(map[string]any)
	if code, _, _ := do(t, http.MethodGet, fd["url"].(string), nil, nil); code != 401 {
		t.Errorf("file without token: %d", code)
	}
	if w, _ := pngSize(t, fd["url"].(string), auth); w != 512 {
		t.Errorf("file with token: width %d", w)
	}
	if got := s.Joins()[0].Header.Get("Authorization"); got != "Bearer hf_secret" {
		t.Errorf("recorded auth header %q", got)
	}
}

func TestRootAndRoutes(t *testing.T) {
	t.Parallel()
	s := start(t, Options{SpaceID: "someone/space", Endpoints: ZImageTurbo(Behavior{})})
	_, _, b := do(t, http.MethodGet, s.URL+"/config/", nil, map[string]string{"X-Forwarded-Host": "someone-space.hf.space", "X-Forwarded-Proto": "https"})
	var cfg struct {
		Root    string `json:"root"`
		SpaceID string `json:"space_id"`
		AppID   int64  `json:"app_id"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Root != "https://someone-space.hf.space" || cfg.SpaceID != "someone/space" {
		t.Fatalf("config %s", b)
	}
	code, _, b := do(t, http.MethodGet, s.URL+"/gradio_api/app_id", nil, nil)
	if code != 200 || string(b) != fmt.Sprintf(`{"app_id":%d}`, cfg.AppID) {
		t.Fatalf("app_id %d %s", code, b)
	}
	for _, p := range []string{"/nope", "/gradio_api/nope", "/gradio_api/queue/joinx"} {
		code, _, b := do(t, http.MethodGet, s.URL+p, nil, nil)
		if code != 404 || string(b) != `{"detail":"Not Found"}` {
			t.Errorf("%s: %d %s", p, code, b)
		}
	}
	code, _, b = do(t, http.MethodPost, s.URL+"/gradio_api/run/generate_image", []byte(`{"data":[]}`), nil)
	if code != 404 || !strings.Contains(string(b), "join the queue") {
		t.Errorf("run route: %d %s", code, b)
	}
	if n := s.Requests("/config/"); n != 1 {
		t.Errorf("Requests(/config/) = %d", n)
	}
}

func TestConfigAndInfoAgree(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: ZImageTurbo(Behavior{})})
	var cfg struct {
		Components []struct {
			ID   int    `json:"id"`
			Type string `json:"type"`
		} `json:"components"`
		Dependencies []struct {
			ID      int     `json:"id"`
			Targets [][]any `json:"targets"`
			Inputs  []int   `json:"inputs"`
			Outputs []int   `json:"outputs"`
			APIName string  `json:"api_name"`
			Queue   bool    `json:"queue"`
		} `json:"dependencies"`
		EnableQueue bool `json:"enable_queue"`
	}
	_, _, b := do(t, http.MethodGet, s.URL+"/config", nil, nil)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range cfg.Dependencies {
		names = append(names, d.APIName)
	}
	if diff := cmp.Diff([]string{"toggle_seed", "generate_image", "generate_image_1"}, names); diff != "" {
		t.Fatalf("dependencies (-want +got):\n%s", diff)
	}
	gen := cfg.Dependencies[1]
	if gen.ID != 1 || !cmp.Equal(gen.Inputs, []int{4, 7, 8, 9, 12, 11}) || !cmp.Equal(gen.Outputs, []int{16, 17}) ||
		gen.Targets[0][0] != float64(13) || !gen.Queue || !cfg.EnableQueue {
		t.Fatalf("generate_image dependency %+v", gen)
	}
	ids := map[int]bool{}
	for _, c := range cfg.Components {
		ids[c.ID] = true
	}
	for _, d := range cfg.Dependencies {
		for _, id := range append(append([]int{}, d.Inputs...), d.Outputs...) {
			if !ids[id] {
				t.Errorf("dependency %s uses unknown component %d", d.APIName, id)
			}
		}
	}
	var info struct {
		Named map[string]struct {
			Parameters []struct {
				Label      string `json:"label"`
				Name       string `json:"parameter_name"`
				HasDefault bool   `json:"parameter_has_default"`
				Default    any    `json:"parameter_default"`
				Component  string `json:"component"`
			} `json:"parameters"`
			Returns []struct {
				Component string `json:"component"`
			} `json:"returns"`
		} `json:"named_endpoints"`
	}
	_, _, b = do(t, http.MethodGet, s.URL+"/gradio_api/info", nil, nil)
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	ep, ok := info.Named["/generate_image"]
	if !ok || len(ep.Parameters) != 6 || len(ep.Returns) != 2 || ep.Returns[0].Component != "Image" {
		t.Fatalf("info %s", b)
	}
	var pnames []string
	for _, p := range ep.Parameters {
		pnames = append(pnames, p.Name)
	}
	if diff := cmp.Diff([]string{"prompt", "height", "width", "num_inference_steps", "seed", "randomize_seed"}, pnames); diff != "" {
		t.Errorf("parameters (-want +got):\n%s", diff)
	}
	if ep.Parameters[0].HasDefault || !ep.Parameters[1].HasDefault || ep.Parameters[1].Default != float64(1024) || ep.Parameters[3].Default != float64(9) {
		t.Errorf("defaults %+v", ep.Parameters)
	}
}

func TestStateInputSkippedInAPI(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: StatefulGenerate(Behavior{Steps: 1})})
	_, _, b := do(t, http.MethodGet, s.URL+"/gradio_api/info", nil, nil)
	var info struct {
		Named map[string]struct {
			Parameters []struct {
				Name string `json:"parameter_name"`
			} `json:"parameters"`
		} `json:"named_endpoints"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if p := info.Named["/generate"].Parameters; len(p) != 3 || p[1].Name != "width" {
		t.Fatalf("parameters %+v", p)
	}
	_, _, b = do(t, http.MethodGet, s.URL+"/config", nil, nil)
	if !strings.Contains(string(b), `"connect_heartbeat":true`) || !strings.Contains(string(b), `"inputs":[402,403,405,406]`) {
		t.Fatalf("config lacks state wiring: %s", b)
	}
	// Queue join sends null at the State position; the server keeps the
	// history per session, so the second image differs from the first.
	var urls []string
	for i := 0; i < 2; i++ {
		join(t, s, "stateful", 0, []any{fmt.Sprint("p", i), nil, 256, 320})
		ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=stateful", nil).all()
		done := ms[len(ms)-2]
		data := done.m["output"].(map[string]any)["data"].([]any)
		if data[1] != nil || !strings.Contains(done.raw, `"changed_state_ids":[403]`) {
			t.Fatalf("state output leaked: %s", done.raw)
		}
		urls = append(urls, data[0].(map[string]any)["path"].(string))
	}
	if urls[0] == urls[1] {
		t.Errorf("state was not carried between events: both %s", urls[0])
	}
	// The call API pads the missing State position.
	code, _, b := do(t, http.MethodPost, s.URL+"/gradio_api/call/generate", []byte(`{"data":["p",256,320]}`), nil)
	if code != 200 {
		t.Fatalf("call: %d %s", code, b)
	}
	if j := s.Joins(); len(j[2].Data) != 4 || j[2].Data[1] != nil {
		t.Fatalf("padded data %v", j[2].Data)
	}
}

func TestCallAPI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		minor     int
		errorData string
	}{
		{12, "null"},
		{25, `{"error": "bad pr\u00f6mpt", "duration": 10, "visible": true, "title": "Nope"}`},
	} {
		t.Run(fmt.Sprint(tc.minor), func(t *testing.T) {
			t.Parallel()
			eps := append(ZImageTurbo(Behavior{Steps: 3}), textEndpoint("fail", func(ctx context.Context, c *Call) ([]any, error) {
				return nil, &AppError{Message: "bad prömpt", Title: "Nope"}
			}))
			s := start(t, Options{Version: 6, Minor: tc.minor, Endpoints: eps, Heartbeat: time.Hour})
			code, _, b := do(t, http.MethodPost, s.URL+"/gradio_api/call/generate_image", []byte(`{"data":["a fox",512,768,9,42,false]}`), nil)
			var r struct {
				EventID string `json:"event_id"`
			}
			if code != 200 || json.Unmarshal(b, &r) != nil || len(r.EventID) != 32 {
				t.Fatalf("call post: %d %s", code, b)
			}
			st := openStream(t, s.URL+"/gradio_api/call/generate_image/"+r.EventID, nil)
			f, _ := st.next()
			if !strings.HasPrefix(f, "event: complete\ndata: [{\"path\": \"/tmp/gradio/") || !strings.HasSuffix(f, "\"meta\": {\"_type\": \"gradio.FileData\"}}, 42]\n") {
				t.Fatalf("complete frame %q", f)
			}
			if _, more := st.next(); more {
				t.Fatal("call stream did not end after complete")
			}
			var data []map[string]any
			json.Unmarshal([]byte(strings.TrimPrefix(strings.SplitN(f, "\n", 3)[1], "data: ")), &data)
			if w, h := pngSize(t, data[0]["url"].(string), nil); w != 768 || h != 512 {
				t.Errorf("call image %dx%d", w, h)
			}

			_, _, b = do(t, http.MethodPost, s.URL+"/gradio_api/call/fail", []byte(`{"data":["x"],"session_hash":"mine"}`), nil)
			json.Unmarshal(b, &r)
			f, _ = openStream(t, s.URL+"/gradio_api/call/fail/"+r.EventID, nil).next()
			if f != "event: error\ndata: "+tc.errorData+"\n" {
				t.Fatalf("error frame %q", f)
			}
			if j := s.Joins(); j[1].SessionHash != "mine" {
				t.Errorf("session_hash not honoured: %q", j[1].SessionHash)
			}
			code, h, b := do(t, http.MethodPost, s.URL+"/gradio_api/call/nope", []byte(`{"data":[]}`), nil)
			if code != 500 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") || string(b) != "Internal Server Error" {
				t.Fatalf("unknown api: %d %s", code, b)
			}
			code, _, _ = do(t, http.MethodPost, s.URL+"/gradio_api/call/generate_image", []byte(`{}`), nil)
			if code != 422 {
				t.Fatalf("call without data: %d", code)
			}
		})
	}
}

func TestCallV2Keywords(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: ZImageTurbo(Behavior{Steps: 1})})
	code, _, b := do(t, http.MethodPost, s.URL+"/gradio_api/call/v2/generate_image", []byte(`{"prompt":"x","width":320,"randomize_seed":false}`), nil)
	if code != 200 {
		t.Fatalf("v2: %d %s", code, b)
	}
	if diff := cmp.Diff([]any{"x", float64(1024), float64(320), float64(9), float64(42), false}, s.Joins()[0].Data); diff != "" {
		t.Errorf("v2 data (-want +got):\n%s", diff)
	}
	code, _, b = do(t, http.MethodPost, s.URL+"/gradio_api/call/v2/generate_image", []byte(`{"width":320}`), nil)
	if code != 422 || !strings.Contains(string(b), `"loc":["body","prompt"]`) {
		t.Fatalf("v2 missing prompt: %d %s", code, b)
	}
}

func TestFailureTranscripts(t *testing.T) {
	t.Parallel()
	hb := 20 * time.Millisecond
	for _, tc := range []struct {
		name    string
		err     error
		opts    Options
		msgs    []string
		done    string // expected process_completed or unexpected_error frame, %s = event id
		version int
	}{
		{name: "gr.Error", err: &AppError{Message: "Boom", Title: "Oops"},
			msgs: []string{"estimation", "process_starts", "process_completed", "close_stream"},
			done: `{"msg":"process_completed","event_id":"%s","output":{"error":"Boom","duration":10,"visible":true,"title":"Oops"},"success":false,"title":"Oops","used_cache":null,"cache_duration":null,"avg_time":null}`},
		{name: "quota", err: QuotaError(14*time.Minute + 33*time.Second),
			msgs: []string{"estimation", "process_starts", "process_completed", "close_stream"},
			done: `{"msg":"process_completed","event_id":"%s","output":{"error":"You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). Try again in 0:14:33. Subscribe to Hugging Face PRO to get 25 min of ZeroGPU quota a day - https://huggingface.co/subscribe/pro?from=ZeroGPU","duration":10,"visible":true,"title":"ZeroGPU quota exceeded"},"success":false,"title":"ZeroGPU quota exceeded","used_cache":null,"cache_duration":null,"avg_time":null}`},
		{name: "hidden", err: ErrHidden,
			msgs: []string{"estimation", "process_starts", "process_completed", "close_stream"},
			done: `{"msg":"process_completed","event_id":"%s","output":{"error":null},"success":false,"title":"Error","used_cache":null,"cache_duration":null,"avg_time":null}`},
		{name: "plain error hidden", err: fmt.Errorf("secret detail"),
			msgs: []string{"estimation", "process_starts", "process_completed", "close_stream"},
			done: `{"msg":"process_completed","event_id":"%s","output":{"error":null},"success":false,"title":"Error","used_cache":null,"cache_duration":null,"avg_time":null}`},
		{name: "plain error shown", err: fmt.Errorf("shown detail"), opts: Options{ShowError: true},
			msgs: []string{"estimation", "process_starts", "process_completed", "close_stream"},
			done: `{"msg":"process_completed","event_id":"%s","output":{"error":"shown detail","visible":true},"success":false,"title":"Error","used_cache":null,"cache_duration":null,"avg_time":null}`},
		{name: "drop", err: ErrDropStream, msgs: []string{"estimation", "process_starts"}},
		{name: "server stopped", err: ErrServerStopped,
			msgs: []string{"estimation", "process_starts", "unexpected_error"},
			done: `{"msg":"unexpected_error","event_id":null,"message":"Server stopped unexpectedly.","session_not_found":false,"success":false}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := tc.opts
			opts.Heartbeat = hb
			opts.Endpoints = []Endpoint{textEndpoint("f", func(ctx context.Context, c *Call) ([]any, error) { return nil, tc.err })}
			s := start(t, opts)
			id := join(t, s, "f", 0, []any{"x"})
			ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=f", nil).all()
			if diff := cmp.Diff(tc.msgs, msgs(ms)); diff != "" {
				t.Fatalf("transcript (-want +got):\n%s", diff)
			}
			if tc.done != "" {
				want := tc.done
				if strings.Contains(want, "%s") {
					want = fmt.Sprintf(want, id)
				}
				got := ""
				for _, m := range ms {
					if m.msg() == "process_completed" || m.msg() == "unexpected_error" {
						got = m.raw
					}
				}
				if got != want {
					t.Fatalf("final frame\n got %s\nwant %s", got, want)
				}
			}
		})
	}
}

func TestOfficialZImageShapes(t *testing.T) {
	t.Parallel()
	s := start(t, Options{Endpoints: ZImageOfficial(Behavior{Steps: 1})})
	join(t, s, "ok", 0, []any{"a fox", "1280x720 ( 16:9 )", 42, 8, 3, false, []any{}})
	ms := openStream(t, s.URL+"/gradio_api/queue/data?session_hash=ok", nil).all()
	data := ms[len(ms)-2].m["output"].(map[string]any)["data"].([]any)
	item := data[0].([]any)[0].(map[string]any)
	if w, h := pngSize(t, item["image"].(map[string]any)["url"].(string), nil); w != 1280 || h != 720 {
		t.Errorf("gallery image %dx%d", w, h)
	}
	if data[1] != "42" || data[2] != float64(42) || item["caption"] != nil {
		t.Errorf("outputs %v", data)
	}
	join(t, s, "bad", 0, []any{"a fox", "1000x1000", 42, 8, 3, false, []any{}})
	ms = openStream(t, s.URL+"/gradio_api/queue/data?session_hash=bad", nil).all()
	errText := ms[len(ms)-2].m["output"].(map[string]any)["error"].(string)
	if !strings.HasPrefix(errText, "Value: '1000x1000' is not in the list of choices: ['1024x1024 ( 1:1 )', ") {
		t.Errorf("dropdown error %q", errText)
	}
}

func TestPythonJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"a":1,"b":[1,2]}`:     `{"a": 1, "b": [1, 2]}`,
		`["x, y: z","é😀"]`:      `["x, y: z", "\u00e9\ud83d\ude00"]`,
		`{"q":"say \"a,b\":c"}`: `{"q": "say \"a,b\":c"}`,
	} {
		if got := string(pythonJSON([]byte(in))); got != want {
			t.Errorf("pythonJSON(%s) = %s, want %s", in, got, want)
		}
	}
}

func FuzzPythonJSON(f *testing.F) {
	f.Add(`{"a":["b, c",1.5,null,true]}`)
	f.Add(`"😀\u0000"`)
	f.Fuzz(func(t *testing.T, s string) {
		compact, err := compactJSON(s)
		if err != nil {
			return
		}
		var want, back string
		if err := json.Unmarshal(compact, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(pythonJSON(compact), &back); err != nil || back != want {
			t.Fatalf("round trip of %q: %q, %v", s, back, err)
		}
		for _, c := range pythonJSON(compact) {
			if c >= 0x80 {
				t.Fatalf("non-ASCII byte in %q", pythonJSON(compact))
			}
		}
	})
}

func TestStartRejectsNonLoopback(t *testing.T) {
	t.Parallel()
	if _, err := Start("0.0.0.0:0", Options{}); err == nil {
		t.Fatal("Start on 0.0.0.0 succeeded")
	}
	if _, err := Start("127.0.0.1:0", Options{Endpoints: []Endpoint{{APIName: "/bad"}}}); err == nil {
		t.Fatal("bad api name accepted")
	}
}
