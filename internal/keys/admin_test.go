package keys_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/easelgw/easel/internal/keys"
)

func TestAdminCreateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{env: []string{envKey}})
	tests := []struct {
		name  string
		body  string
		param any
	}{
		{"not JSON", `{`, nil},
		{"empty", ``, nil},
		{"unknown field", `{"name":"a","scopes":["admin"]}`, nil},
		{"two objects", `{"name":"a"}{"name":"b"}`, nil},
		{"no name", `{}`, "name"},
		{"blank name", `{"name":"  "}`, "name"},
		{"control in name", `{"name":"a\u0007"}`, "name"},
		{"long name", `{"name":"` + strings.Repeat("n", keys.MaxNameLen+1) + `"}`, "name"},
		{"negative limit", `{"name":"a","limits":{"images_per_day":-1}}`, "limits.images_per_day"},
		{"huge limit", `{"name":"a","limits":{"requests_per_minute":2000000000}}`, "limits.requests_per_minute"},
		{"wrong type", `{"name":"a","limits":{"concurrent_jobs":"2"}}`, nil},
		{"ftp webhook", `{"name":"a","webhook_url":"ftp://x.example/"}`, "webhook_url"},
		{"relative webhook", `{"name":"a","webhook_url":"/hook"}`, "webhook_url"},
		{"webhook with user", `{"name":"a","webhook_url":"https://u:p@x.example/"}`, "webhook_url"},
		{"too large", `{"name":"` + strings.Repeat("n", 70<<10) + `"}`, nil},
	}
	for _, tt := range tests {
		r := b.do(t, "POST", "/admin/keys", bearer(envKey), tt.body)
		if r.status != 400 {
			t.Errorf("%s: %d, want 400: %s", tt.name, r.status, r.body)
			continue
		}
		var env struct {
			Error struct {
				Type  string `json:"type"`
				Param any    `json:"param"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(r.body), &env); err != nil || env.Error.Type != "invalid_request_error" {
			t.Errorf("%s: body %s", tt.name, r.body)
		}
		if env.Error.Param != tt.param {
			t.Errorf("%s: param %v, want %v", tt.name, env.Error.Param, tt.param)
		}
	}
	list, err := b.svc.ListKeys(t.Context())
	if err != nil || len(list) != 0 {
		t.Errorf("refused creates stored keys: %v, %v", list, err)
	}
}

func TestAdminRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{env: []string{envKey}, defaults: keys.Limits{ConcurrentJobs: 4}})
	r := b.do(t, "POST", "/admin/keys", bearer(envKey),
		`{"name":" ops ","admin":true,"limits":{"requests_per_minute":30,"images_per_day":0},"webhook_url":"https://hooks.example/ops"}`)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created keys.Created
	if err := json.Unmarshal([]byte(r.body), &created); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Key, "sk-admin_") {
		t.Errorf("admin key %q lacks the admin kind", created.Key)
	}
	want := keys.KeyInfo{
		ID: created.ID, Object: "api_key", Prefix: created.Prefix, Name: "ops",
		Scopes:          []string{"admin", "user"},
		CreatedAt:       b.clock.Now().Unix(),
		Limits:          keys.LimitSettings{RequestsPerMinute: ptr(30), ImagesPerDay: ptr(0)},
		EffectiveLimits: keys.Limits{RequestsPerMinute: 30, ConcurrentJobs: 4},
		WebhookURL:      "https://hooks.example/ops",
	}
	if diff := cmp.Diff(want, created.KeyInfo); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	r = b.do(t, "GET", "/admin/keys", bearer(created.Key), "")
	var list struct {
		Object string         `json:"object"`
		Data   []keys.KeyInfo `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	// The new key was just used, which shows as last used.
	now := b.clock.Now().Unix()
	want.LastUsedAt = &now
	if diff := cmp.Diff([]keys.KeyInfo{want}, list.Data); diff != "" || list.Object != "list" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	// The raw listing spells null for a default limit and 0 for unlimited.
	if !strings.Contains(r.body, `"limits":{"requests_per_minute":30,"concurrent_jobs":null,"images_per_day":0}`) {
		t.Errorf("limits not in the documented form: %s", r.body)
	}
}
