package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider"
)

func TestStripHTML(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{`You have exceeded your GPU quota (60s requested vs. 56s left). <a style="x" href="https://huggingface.co/join">Create a free account</a> to get more usage quota.`,
			"You have exceeded your GPU quota (60s requested vs. 56s left). Create a free account to get more usage quota."},
		{"a < b &amp; c > d", "a < b & c > d"},
		{"a < b &amp; c", "a < b & c"},
		{"<html><head><title>429</title><style>p{color:red}</style></head><body><p>Too&nbsp;many</p><script>alert(1)</script>requests</body></html>", "429 Too many requests"},
		{"<html><head><title>Error</title><style>p{}</style></head><body><h1>error code: 1015</h1></body></html>", "Error error code: 1015"},
		{"<script>alert(1)</script>ok", "ok"},
		{`<SCRIPT type="text/javascript">if (a > b) {}</SCRIPT >ok`, "ok"},
		{"<script>a</scripts>still hidden</script>shown", "shown"},
		{"<scripts>kept</scripts>", "kept"},
		{"line<br>break", "line break"},
		{"line<br/>break<BR />again", "line break again"},
		{"a<span>b</span>c", "abc"},
		{"a<p class=x>b</p>c", "a b c"},
		{"<!-- note -->text<?xml?>", "text"},
		{"unterminated <b", "unterminated"},
		{"unterminated <b tag never ends", "unterminated"},
		{"<3 and 1<2", "<3 and 1<2"},
		{"trailing <", "trailing <"},
		{"  spaced \n\t out ", "spaced out"},
		{"&lt;b&gt;escaped&lt;/b&gt;", "<b>escaped</b>"},
	}
	for _, tt := range tests {
		if got := StripHTML(tt.in); got != tt.want {
			t.Errorf("StripHTML(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exact", 5, "exact"},
		{"toolong", 3, "too…"},
		{"héllo", 2, "h…"}, // 'é' spans bytes 1-2: the cut backs off to 1
		{"日本語", 4, "日…"},
		{"abc", 0, "…"},
		{strings.Repeat("x", 2*MaxMessageLen), MaxMessageLen, strings.Repeat("x", MaxMessageLen) + "…"},
	}
	for _, tt := range tests {
		if got := Clip(tt.in, tt.n); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestPlainText(t *testing.T) {
	t.Parallel()
	long := "<p>" + strings.Repeat("é", MaxMessageLen) + "</p>"
	got := PlainText(long)
	if want := strings.Repeat("é", MaxMessageLen/2) + "…"; got != want {
		t.Errorf("PlainText(long) = %d bytes %q…, want %d bytes", len(got), got[:10], len(want))
	}
	if got := PlainText("<b>quota</b> exceeded"); got != "quota exceeded" {
		t.Errorf("PlainText = %q", got)
	}
}

func TestReadLimited(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		limit  int64
		want   string
		tooBig bool
	}{
		{"under", "abc", 5, "abc", false},
		{"exact", "abcde", 5, "abcde", false},
		{"over", "abcdef", 5, "abcde", true},
		{"far over", strings.Repeat("z", 1<<16), 4, "zzzz", true},
		{"empty", "", 5, "", false},
		{"zero limit", "a", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, tooBig, err := ReadLimited(strings.NewReader(tt.in), tt.limit)
			if err != nil || string(got) != tt.want || tooBig != tt.tooBig {
				t.Errorf("ReadLimited = %q, %v, %v; want %q, %v, nil", got, tooBig, err, tt.want, tt.tooBig)
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		r := io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(boom))
		got, tooBig, err := ReadLimited(r, 10)
		if !errors.Is(err, boom) || string(got) != "ab" || tooBig {
			t.Errorf("ReadLimited = %q, %v, %v; want \"ab\", false, boom", got, tooBig, err)
		}
	})
}

func TestWriteFilePart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, field, file, ctype string
		wantFile, wantType       string
	}{
		{"plain", "image", "in.png", "image/png", "in.png", "image/png"},
		{"no type", "files", "blob", "", "blob", "application/octet-stream"},
		{"quotes", "image", `a"b\c.png`, "image/png", `a"b\c.png`, "image/png"},
		{"line breaks dropped", "image", "a\r\nContent-Type: text/html\r\n.png", "image/png", "aContent-Type: text/html.png", "image/png"},
		{"unicode", "image", "café 日本.webp", "image/webp", "café 日本.webp", "image/webp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			data := []byte("\x89PNG\r\n\x1a\n" + tt.name)
			if err := WriteFilePart(mw, tt.field, tt.file, tt.ctype, data); err != nil {
				t.Fatalf("WriteFilePart: %v", err)
			}
			if err := mw.Close(); err != nil {
				t.Fatal(err)
			}
			mr := multipart.NewReader(&buf, mw.Boundary())
			part, err := mr.NextPart()
			if err != nil {
				t.Fatalf("reading the part back: %v", err)
			}
			_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
			if err != nil {
				t.Fatalf("Content-Disposition %q: %v", part.Header.Get("Content-Disposition"), err)
			}
			got := map[string]string{"name": params["name"], "filename": params["filename"], "type": part.Header.Get("Content-Type")}
			want := map[string]string{"name": tt.field, "filename": tt.wantFile, "type": tt.wantType}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("part header (-want +got):\n%s", diff)
			}
			body, err := io.ReadAll(part)
			if err != nil || !bytes.Equal(body, data) {
				t.Errorf("part body = %q, %v; want %q", body, err, data)
			}
			if _, err := mr.NextPart(); !errors.Is(err, io.EOF) {
				t.Errorf("more than one part: %v", err)
			}
		})
	}
}

func TestFileExt(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
		"": "", "image/bmp": "", "text/html": "", "IMAGE/PNG": "",
	}
	got := make(map[string]string, len(want))
	for m := range want {
		got[m] = FileExt(m)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FileExt (-want +got):\n%s", diff)
	}
}

func TestClientDefaults(t *testing.T) {
	t.Parallel()
	c, own := ClientOr(nil)
	if !own || c == nil {
		t.Fatalf("ClientOr(nil) = %v, %v; want a new client that is owned", c, own)
	}
	if c.Timeout != 0 {
		t.Errorf("default client has an overall timeout %v: it would cut long streams", c.Timeout)
	}
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("default transport is %T", c.Transport)
	}
	if tr.TLSHandshakeTimeout != 10*time.Second || tr.MaxIdleConnsPerHost != 16 || tr.Proxy == nil || tr.DialContext == nil {
		t.Errorf("default transport not tuned: %+v", tr)
	}
	if c2, _ := ClientOr(nil); c2.Transport == c.Transport {
		t.Error("two default clients share a transport")
	}
	given := &http.Client{}
	if c, own := ClientOr(given); c != given || own {
		t.Errorf("ClientOr(given) = %p, %v; want %p, false", c, own, given)
	}
	if got := UserAgentOr(""); got != DefaultUserAgent {
		t.Errorf("UserAgentOr(\"\") = %q", got)
	}
	if got := UserAgentOr("easel/1.2"); got != "easel/1.2" {
		t.Errorf("UserAgentOr kept %q", got)
	}
}

func TestBackendLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := BackendLogger(slog.New(slog.NewTextHandler(&buf, nil)), "spaces")
	log.Info("hello")
	if !strings.Contains(buf.String(), "backend=spaces") {
		t.Errorf("log line %q lacks the backend", buf.String())
	}
	// A nil logger must still be usable.
	BackendLogger(nil, "x").Info("discarded")
}

func TestCanceledError(t *testing.T) {
	t.Parallel()
	custom := errors.New("client went away")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	withCause, cancelCause := context.WithCancelCause(context.Background())
	cancelCause(custom)
	deadline, cancelDeadline := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancelDeadline()
	tests := []struct {
		name  string
		ctx   context.Context
		kind  provider.ErrorKind
		cause error
		msg   string
	}{
		{"canceled", canceled, provider.KindCanceled, context.Canceled, "canceled while polling"},
		{"custom cause", withCause, provider.KindCanceled, custom, "canceled while polling"},
		{"deadline", deadline, provider.KindTimeout, context.DeadlineExceeded, "job deadline exceeded while polling"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := CanceledError(tt.ctx, "polling")
			if e.Kind != tt.kind || !errors.Is(e, tt.cause) || e.Message != tt.msg || e.NotStarted {
				t.Errorf("CanceledError = %+v; want kind %v, cause %v, message %q", e, tt.kind, tt.cause, tt.msg)
			}
		})
	}
}
