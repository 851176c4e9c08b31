package jobapi

import (
	"testing"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// FuzzPath parses arbitrary paths and walks them over a fixed document:
// never a panic, a parsed path prints as written, and a lookup that
// succeeds returns a non-nil value.
func FuzzPath(f *testing.F) {
	for _, s := range []string{"code", "result.job_id", "data[0].url", "[0]", "a[1][2].b", "a..b", "a[", "]", "[-1]", "x[99999999999999999999]"} {
		f.Add(s)
	}
	doc, err := decodeJSON([]byte(`{"code":200,"result":{"job_id":"j","image_url":["u"]},"data":[{"url":"x"},[[1]]],"a":[[0,1,[2,{"b":3}]]]}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("String() = %q, want %q", p.String(), s)
		}
		if v, ok := p.Lookup(doc); ok && v == nil {
			t.Fatalf("Lookup(%q) ok with nil", s)
		}
	})
}

// FuzzParsePoll feeds arbitrary bytes to the status-answer parser of the
// reference preset: never a panic, only protocol errors, and a "done"
// state always carries at least one URL.
func FuzzParsePoll(f *testing.F) {
	for _, s := range []string{
		`{"code":200,"result":{"job_id":"j","status":"processing","progress":40}}`,
		`{"code":200,"result":{"job_id":"j","status":"completed","image_url":["https://x/out.png"]}}`,
		`{"code":200,"result":{"image_url":"https://x/out.png"}}`,
		`{"code":200,"result":{"status":"completed","image_url":[]}}`,
		`{"code":429,"message":"limit"}`,
		`{"code":500,"message":{"error":"x"}}`,
		`{"code":200,"result":{"status":"failed"},"message":"<b>bad</b>"}`,
		`{"code": 200, "result": {"job_id": "job_trunc`,
		`<html>error code: 1015</html>`,
		`[[[[[[[[[[]]]]]]]]]]`,
		`{"code":200,"result":{"status":null,"progress":"NaN%","image_url":[{"url":"u"},1,null,""]}}`,
	} {
		f.Add([]byte(s))
	}
	cfg, _ := Preset(PresetAIImageToImage)
	cfg.Submit.URL, cfg.Poll.URL = "http://127.0.0.1:1/s", "http://127.0.0.1:1/p?id={job_id}"
	p, err := New("fuzz", cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		st, err := p.parsePoll(raw)
		if err != nil {
			pe, ok := provider.AsError(err)
			if !ok || pe.Kind != provider.KindProtocol {
				t.Fatalf("error %v is not a protocol error", err)
			}
			return
		}
		if st.done && len(st.urls) == 0 {
			t.Fatal("done without URLs")
		}
		if st.done && st.failed {
			t.Fatal("both done and failed")
		}
		if st.progress != -1 && (st.progress < 0 || st.progress > 1) {
			t.Fatalf("progress %v out of range", st.progress)
		}
		if len(st.message) > upstream.MaxMessageLen+len("code ")+64+len("…")+upstream.MaxMessageLen {
			t.Fatalf("message of %d bytes", len(st.message))
		}
	})
}
