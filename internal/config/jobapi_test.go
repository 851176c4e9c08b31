package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/provider/jobapi"
)

// TestNewPresetsLoad loads each preset added for image editing and job
// APIs by naming it in a model only, the shortest configuration an
// operator writes, and checks what it expands to.
func TestNewPresetsLoad(t *testing.T) {
	t.Parallel()
	cases := []struct {
		preset      string
		typ         string
		concurrency int
		model       string // jobapi upstream model
	}{
		{PresetFluxKontextDev, "gradio", 1, ""},
		{PresetAIImageToImage, "jobapi", 2, jobapi.ModelNanoBanana},
		{PresetAIImageToImageNanoBanana, "jobapi", 2, jobapi.ModelNanoBanana},
		{PresetAIImageToImageStandard, "jobapi", 2, jobapi.ModelStandard},
	}
	for _, tc := range cases {
		t.Run(tc.preset, func(t *testing.T) {
			t.Parallel()
			c, err := Load(writeConfig(t, "models:\n  - id: m\n    backends: ["+tc.preset+"]\n"), envMap(nil))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Backends) != 1 {
				t.Fatalf("backends = %+v", c.Backends)
			}
			b := c.Backends[0]
			if b.Name != tc.preset || b.Type != tc.typ || b.Concurrency != tc.concurrency || b.MaxQueue != DefaultBackendMaxQueue {
				t.Errorf("backend = %+v", b)
			}
			switch tc.typ {
			case "jobapi":
				if b.JobAPI == nil || b.Gradio != nil || b.JobAPI.Model != tc.model || !b.JobAPI.RequiresImage {
					t.Errorf("jobapi settings = %+v", b.JobAPI)
				}
			case "gradio":
				if b.Gradio == nil || b.JobAPI != nil {
					t.Fatalf("gradio settings = %+v", b.Gradio)
				}
				if b.Gradio.Inputs[0].From != "image" || b.Gradio.Inputs[4].Value != 2.5 || b.Gradio.Steps.Default != 28 {
					t.Errorf("kontext inputs = %+v", b.Gradio.Inputs)
				}
			}
		})
	}
}

// TestJobAPIPresetMerge overrides a few keys of the reference preset, as
// a deployment pointing it at another host does, and checks every other
// key is the preset's.
func TestJobAPIPresetMerge(t *testing.T) {
	t.Parallel()
	c, err := Load(writeConfig(t, `backends:
  - name: i2i
    preset: aiimagetoimage-nano-banana
    concurrency: 3
    jobapi:
      submit: {url: "http://127.0.0.1:9/submit"}
      poll: {url: "http://127.0.0.1:9/poll?id={job_id}", interval: 50ms, max_interval: 200ms, deadline: 2s}
      aspect_ratios: ["1:1", "16:9"]
      default_aspect_ratio: "1:1"
models:
  - id: nano-banana
    backends: [i2i]
`), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Backends[0]
	if got.Type != "jobapi" || got.Concurrency != 3 {
		t.Errorf("backend = %+v", got)
	}
	want, _ := jobapi.Preset(jobapi.PresetAIImageToImageNanoBanana)
	want.Submit.URL = "http://127.0.0.1:9/submit"
	want.Poll.URL = "http://127.0.0.1:9/poll?id={job_id}"
	want.Poll.Interval, want.Poll.MaxInterval, want.Poll.Deadline = 50*time.Millisecond, 200*time.Millisecond, 2*time.Second
	want.AspectRatios = []string{"1:1", "16:9"}
	want.DefaultAspectRatio = "1:1"
	if diff := cmp.Diff(&want, got.JobAPI); diff != "" {
		t.Errorf("merged jobapi config (-want +got):\n%s", diff)
	}
	// The merge must not write into the preset table.
	fresh, _ := jobapi.Preset(jobapi.PresetAIImageToImageNanoBanana)
	if fresh.Submit.URL == want.Submit.URL || Presets()[PresetAIImageToImage].JobAPI.Poll.Interval != 0 {
		t.Error("merging changed the presets")
	}
}

// TestJobAPIValidationPaths checks that the provider's own rules surface
// as field errors under the backend's key path, with file lines.
func TestJobAPIValidationPaths(t *testing.T) {
	t.Parallel()
	_, err := Load(writeConfig(t, `backends:
  - name: i2i
    type: jobapi
    jobapi:
      submit:
        url: ftp://example.com/submit
        fields:
          - {name: prompt, from: prompt}
          - {name: seed, from: wat}
      accept: {job_id_path: result.job_id}
      poll:
        url: https://example.com/poll
        result_path: result.url
        done_values: [done]
        status_path: result.status
      max_n: -1
  - name: both
    type: jobapi
    gradio: {space: a/b, api_name: /x, inputs: [{from: prompt}]}
    jobapi: {submit: {url: "https://example.com/s", fields: [{name: p, from: prompt}]}, accept: {job_id_path: id}, poll: {url: "https://example.com/{job_id}", result_path: url, done_on_result: true}}
  - name: bare
    type: jobapi
models:
  - id: m
    backends: [i2i, both, bare]
`), envMap(nil))
	if err == nil {
		t.Fatal("Load accepted an invalid jobapi backend")
	}
	paths := fieldPaths(err)
	for _, want := range []string{
		"backends[0].jobapi.submit.url",
		"backends[0].jobapi.submit.fields[1]",
		"backends[0].jobapi.poll.url",
		"backends[0].jobapi.max_n",
		"backends[1].gradio",
		"backends[2].jobapi",
	} {
		if !slices.Contains(paths, want) {
			t.Errorf("no problem reported at %s; got %v", want, paths)
		}
	}
	if !strings.Contains(err.Error(), `unknown from "wat"`) {
		t.Errorf("error lacks the provider's message: %v", err)
	}
	// Lines come from the file: submit.url is on line 6.
	if !strings.Contains(err.Error(), "line 6: backends[0].jobapi.submit.url") {
		t.Errorf("error lacks the line of submit.url:\n%v", err)
	}
}

// TestJobAPISecrets resolves header_env from the environment and reports
// a missing variable by name only.
func TestJobAPISecrets(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `backends:
  - name: i2i
    preset: aiimagetoimage
    jobapi:
      submit: {header_env: {Authorization: I2I_KEY, X-Extra: I2I_EXTRA}}
models:
  - id: m
    backends: [i2i]
`)
	c, err := Load(path, envMap(map[string]string{"I2I_KEY": "Bearer s3cr3t-value", "I2I_EXTRA": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Backends[0].JobAPI.Submit.SecretHeaders; got["Authorization"] != "Bearer s3cr3t-value" || got["X-Extra"] != "x" {
		t.Errorf("secret headers = %d entries", len(got))
	}
	out, err := c.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cr3t") {
		t.Errorf("dump shows a secret:\n%s", out)
	}
	back, err := Load(writeConfig(t, string(out)), envMap(map[string]string{"I2I_KEY": "Bearer s3cr3t-value", "I2I_EXTRA": "x"}))
	if err != nil {
		t.Fatalf("dump does not load back: %v\n%s", err, out)
	}
	if diff := cmp.Diff(c.Backends, back.Backends); diff != "" {
		t.Errorf("dump round trip (-want +got):\n%s", diff)
	}

	_, err = Load(path, envMap(map[string]string{"I2I_KEY": "Bearer s3cr3t-value"}))
	if err == nil || !strings.Contains(err.Error(), "I2I_EXTRA") || !slices.Contains(fieldPaths(err), "backends[0].jobapi.submit.header_env") {
		t.Fatalf("missing variable = %v", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Error("error shows a secret")
	}
}

// TestStorageFSync covers the default, the file and the environment.
func TestStorageFSync(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file, env string
		want            bool
		bad             bool
	}{
		{name: "default", want: true},
		{name: "file off", file: "storage: {fsync: false}\n", want: false},
		{name: "env off", env: "false", want: false},
		{name: "env wins", file: "storage: {fsync: false}\n", env: "true", want: true},
		{name: "env bad", env: "sometimes", bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tc.file != "" {
				path = writeConfig(t, tc.file)
			}
			c, err := Load(path, envMap(map[string]string{EnvStorageFSync: tc.env}))
			if tc.bad {
				if err == nil || !slices.Contains(fieldPaths(err), "storage.fsync") {
					t.Fatalf("bad %s = %v", EnvStorageFSync, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Storage.FSync != tc.want {
				t.Errorf("storage.fsync = %v, want %v", c.Storage.FSync, tc.want)
			}
		})
	}
}

// TestExampleJobAPIBlockLoads uncomments the example file's job-API
// backends and models, as its comment tells operators to, and loads the
// result: the documented opt-in must work as written.
func TestExampleJobAPIBlockLoads(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../easel.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "# A job API") })
	if start < 0 {
		t.Fatal("easel.example.yaml has no job-API block")
	}
	uncomment := regexp.MustCompile(`^  # (- |  )`)
	changed := 0
	for i := start; i < len(lines); i++ {
		if uncomment.MatchString(lines[i]) {
			lines[i] = "  " + strings.TrimPrefix(lines[i], "  # ")
			changed++
		}
	}
	c, err := Load(writeConfig(t, strings.Join(lines, "\n")), envMap(nil))
	if err != nil {
		t.Fatalf("example with the job-API block enabled (%d lines uncommented): %v", changed, err)
	}
	want := map[string]string{"nano-banana": jobapi.ModelNanoBanana, "img2img-standard": jobapi.ModelStandard}
	for _, m := range c.Models {
		up, ok := want[m.ID]
		if !ok {
			continue
		}
		delete(want, m.ID)
		i := slices.IndexFunc(c.Backends, func(b Backend) bool { return b.Name == m.Backends[0] })
		if i < 0 || c.Backends[i].Type != "jobapi" || c.Backends[i].JobAPI.Model != up {
			t.Errorf("model %s is not served by a jobapi backend running %s", m.ID, up)
		}
	}
	if len(want) > 0 {
		t.Errorf("models missing after uncommenting: %v", want)
	}
}
