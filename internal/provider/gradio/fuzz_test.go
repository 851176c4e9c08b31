package gradio

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/easelgw/easel/internal/provider"
)

// FuzzFrameReader feeds arbitrary bytes to the SSE frame reader: it must
// end, never panic, never return a frame over its cap, and read back any
// well-formed single-line frames it is given.
func FuzzFrameReader(f *testing.F) {
	seeds := []string{
		"data: {\"msg\":\"heartbeat\",\"event_id\":null}\n\n",
		"data:{\"a\":1}\r\n\r\n",
		"data: a\rdata: b\r\r",
		": comment\nevent: complete\ndata: [1, 2]\n\n",
		"data: unterminated",
		"\r\n\r\n\n",
		"data\ndata:\n\n",
		"id: 1\nretry: 5\n\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var r io.Reader = bytes.NewReader(in)
		if chunk%3 == 1 {
			r = &chunkReader{b: in, n: int(chunk%7) + 1}
		}
		const lineCap = 4096
		fr := newFrameReader(r, lineCap)
		fr.max = lineCap // exercise the cap at fuzz scale
		fr.sc.Buffer(make([]byte, 0, 64), lineCap)
		for i := 0; i <= len(in)+1; i++ {
			frame, err := fr.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, errLineTooLong) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(frame) > lineCap {
				t.Fatalf("frame of %d bytes over cap", len(frame))
			}
			if _, err := parseMessage(frame); err == nil {
				// Decoding any frame must be safe; nothing more to check.
				continue
			}
		}
		t.Fatalf("reader returned more frames than input bytes")
	})
}

// FuzzFrameRoundTrip checks that frames written the way Gradio writes them
// are read back unchanged, however the bytes are chunked.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add("{\"msg\":\"estimation\"}", "{\"msg\":\"process_completed\"}", uint8(3))
	f.Add("x", "", uint8(1))
	f.Fuzz(func(t *testing.T, a, b string, chunk uint8) {
		if strings.ContainsAny(a+b, "\r\n") {
			return
		}
		var buf bytes.Buffer
		for _, s := range []string{a, b} {
			buf.WriteString("data: " + s + "\n\n")
		}
		fr := newFrameReader(&chunkReader{b: buf.Bytes(), n: int(chunk%16) + 1}, 0)
		for _, want := range []string{a, b} {
			got, err := fr.Next()
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		if _, err := fr.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after two frames: %v", err)
		}
	})
}

// FuzzCompletion feeds arbitrary frames through message decoding and the
// completion parser: typed errors or file references, never a panic.
func FuzzCompletion(f *testing.F) {
	seeds := []string{
		`{"msg":"process_completed","event_id":"e","output":{"data":[{"path":"/tmp/a.png","url":"http://h/file=/tmp/a.png","meta":{"_type":"gradio.FileData"}},42]},"success":true,"title":null}`,
		`{"msg":"process_completed","event_id":"e","output":{"data":[[{"image":{"path":"/tmp/b.webp","url":null},"caption":null}],"1"]},"success":true}`,
		`{"msg":"process_completed","event_id":"e","output":{},"success":true}`,
		`{"msg":"process_completed","event_id":"e","output":{"error":null},"success":false,"title":"Error"}`,
		`{"msg":"process_completed","event_id":"e","output":{"error":"You have exceeded your free ZeroGPU quota. Try again in 0:01:02.","title":"ZeroGPU quota exceeded"},"success":false}`,
		`{"msg":"process_completed","output":{"data":["data:image/png;base64,iVBORw0KGgo="]}}`,
		`{"msg":"process_completed","output":{"data":null},"success":true}`,
		`{"msg":"process_completed","output":[1,2],"success":true}`,
		`{"msg":"process_generating","event_id":"e","output":{"data":[[["replace",[],{"path":"/tmp/c.png","url":null}]],[]],"is_generating":true},"success":true}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), int8(-1), uint8(0))
		f.Add([]byte(s), int8(0), uint8(1))
	}
	kinds := []string{"auto", "image", "gallery", "list"}
	f.Fuzz(func(t *testing.T, frame []byte, idx int8, kind uint8) {
		m, err := parseMessage(frame)
		if err != nil {
			return
		}
		_, _ = progressEvent(m.ProgressData, 0)
		k := kinds[int(kind)%len(kinds)]
		prev, _ := previewFile(nil, m.Output, int(idx), k, true)
		_, _ = previewFile(prev, m.Output, int(idx), k, true)
		out, err := completedOutput(m)
		if err != nil {
			if _, ok := provider.AsError(err); !ok {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		seed := 1
		c, err := parseCompletion(out, int(idx), kinds[int(kind)%len(kinds)], &seed)
		if err != nil {
			if _, ok := provider.AsError(err); !ok {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(c.files) == 0 {
			t.Fatal("success without files")
		}
		p := &Provider{base: "http://127.0.0.1:1"}
		for _, fr := range c.files {
			if fr.URL == "" && fr.Path == "" {
				t.Fatalf("empty file reference")
			}
			_, _ = p.fileURL(&spaceState{prefix: "/gradio_api"}, fr)
			if strings.HasPrefix(fr.URL, "data:") {
				_, _ = decodeDataURL(fr.URL, 1<<16)
			}
		}
	})
}

// chunkReader returns at most n bytes per Read, to split frames anywhere.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(c.n, len(p), len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}
