package jobapi

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// TestYAMLShape decodes the documented YAML shape of a jobapi backend, so
// the field tags and duration handling stay what the docs promise.
func TestYAMLShape(t *testing.T) {
	t.Parallel()
	const doc = `
submit:
  url: https://api.example.com/v1/jobs
  body: json
  fields:
    - {name: prompt, from: prompt}
    - {name: seed, from: seed, default: -1}
    - {name: image, from: image, encoding: base64}
    - {name: version, value: 3}
  headers: {Accept: application/json}
  header_env: {Authorization: EXAMPLE_API_KEY}
accept:
  job_id_path: data.id
  ok_status: [200, 201]
  code_path: code
  code_ok: ["0"]
  message_path: msg
poll:
  url: https://api.example.com/v1/jobs/{job_id}
  status_path: data.state
  progress_path: data.progress
  done_values: [succeeded]
  failed_values: [failed]
  result_path: data.outputs
  interval: 2s
  backoff: 2
  max_interval: 20s
  deadline: 15m
fetch:
  max_bytes: 1048576
model: v2
models: [v1, v2]
aspect_ratios: ["1:1", "16:9"]
default_aspect_ratio: "1:1"
request_timeout: 45s
`
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if err := cfg.ResolveEnv(func(string) (string, bool) { return "Bearer k", true }); err != nil {
		t.Fatal(err)
	}
	p, err := New("example", cfg, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	got := p.cfg
	if got.Poll.Interval != 2*time.Second || got.Poll.MaxInterval != 20*time.Second || got.Poll.Deadline != 15*time.Minute ||
		got.RequestTimeout != 45*time.Second || got.Poll.Backoff != 2 || got.Fetch.MaxBytes != 1<<20 {
		t.Errorf("decoded durations/limits: %+v %+v %v", got.Poll, got.Fetch, got.RequestTimeout)
	}
	wantFields := []Field{
		{Name: "prompt", From: "prompt"},
		{Name: "seed", From: "seed", Default: -1},
		{Name: "image", From: "image", Encoding: "base64"},
		{Name: "version", Value: 3},
	}
	if diff := cmp.Diff(wantFields, got.Submit.Fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if got.Submit.SecretHeaders["Authorization"] != "Bearer k" {
		t.Error("header_env not resolved")
	}
	// The resolved secret never goes back out as YAML.
	out, err := yaml.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "Bearer k") {
		t.Errorf("marshalled config leaks the secret:\n%s", out)
	}
}
