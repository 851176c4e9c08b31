package config

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFetchDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load("", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := FetchConfig{AllowedPorts: []int{80, 443}, MaxBytes: 20 << 20, Timeout: 15 * time.Second}
	if diff := cmp.Diff(want, c.Fetch); diff != "" {
		t.Errorf("fetch defaults (-want +got):\n%s", diff)
	}
}

func TestFetchFromFileAndEnv(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, `fetch:
  allowed_ports: [8080]
  max_bytes: 1048576
  timeout: 5s
`)
	c, err := Load(path, envMap(map[string]string{EnvFetchAllowPrivate: "true"}))
	if err != nil {
		t.Fatal(err)
	}
	want := FetchConfig{AllowPrivateNetworks: true, AllowedPorts: []int{8080}, MaxBytes: 1 << 20, Timeout: 5 * time.Second}
	if diff := cmp.Diff(want, c.Fetch); diff != "" {
		t.Errorf("fetch (-want +got):\n%s", diff)
	}
}

func TestFetchValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{"bad port", "fetch:\n  allowed_ports: [0, 443, 70000]\n", nil,
			[]string{"fetch.allowed_ports[0]", "fetch.allowed_ports[2]"}},
		{"too big", "fetch:\n  max_bytes: 104857600\n", nil, []string{"fetch.max_bytes"}},
		{"short timeout", "fetch:\n  timeout: 10ms\n", nil, []string{"fetch.timeout"}},
		{"bad env", "", map[string]string{EnvFetchAllowPrivate: "maybe"}, []string{"fetch.allow_private_networks"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := ""
			if tc.yaml != "" {
				path = writeConfig(t, tc.yaml)
			}
			_, err := Load(path, envMap(tc.env))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			got := fieldPaths(err)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("error paths %v lack %s (err: %v)", got, w, err)
				}
			}
		})
	}
}
