package gradiotest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkRoundTrip measures one join + queue/data stream to close_stream
// over loopback, with the image served from the render cache.
func BenchmarkRoundTrip(b *testing.B) {
	s := New(Options{Endpoints: ZImageTurbo(Behavior{Steps: 1}), Concurrency: 1000})
	defer s.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sess := fmt.Sprintf("bench%d", n.Add(1))
			body := fmt.Sprintf(`{"data":["p",1024,1024,1,42,false],"fn_index":1,"session_hash":%q}`, sess)
			resp, err := client.Post(s.URL+"/gradio_api/queue/join", "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			resp, err = client.Get(s.URL + "/gradio_api/queue/data?session_hash=" + sess)
			if err != nil {
				b.Fatal(err)
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			done := false
			for sc.Scan() {
				if bytes.Contains(sc.Bytes(), []byte(`"msg":"process_completed"`)) {
					done = true
				}
			}
			resp.Body.Close()
			if !done {
				b.Fatal("no process_completed")
			}
		}
	})
	b.StopTimer()
	s.Requests("/join")
}

// BenchmarkRenderPNG measures drawing and encoding one 1024x1024 image,
// the cost a cache miss adds to a round trip.
func BenchmarkRenderPNG(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := encodeImage(Pattern(1024, 1024, int64(i)), "png"); err != nil {
			b.Fatal(err)
		}
	}
}
