package config

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckExposure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		dbKeys  bool
		refused bool
	}{
		{name: "no keys on loopback"},
		{name: "no keys on localhost", env: map[string]string{"EASEL_LISTEN": "localhost:8080"}},
		{name: "no keys on all interfaces", env: map[string]string{"EASEL_LISTEN": ":8080"}, refused: true},
		{name: "no keys on a LAN address", env: map[string]string{"EASEL_LISTEN": "192.168.1.2:80"}, refused: true},
		{name: "database keys on all interfaces", env: map[string]string{"EASEL_LISTEN": "0.0.0.0:8080"}, dbKeys: true},
		{name: "env keys on all interfaces", env: map[string]string{"EASEL_LISTEN": "0.0.0.0:8080", "EASEL_API_KEYS": goodKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load("", envMap(tt.env))
			if err != nil {
				t.Fatalf("Load: %v (a non-loopback listen alone must load)", err)
			}
			err = c.CheckExposure(tt.dbKeys)
			if !tt.refused {
				if err != nil {
					t.Errorf("CheckExposure = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Path != "listen" || !strings.Contains(err.Error(), "EASEL_API_KEYS") ||
				!strings.Contains(err.Error(), "easel keys create") {
				t.Errorf("CheckExposure = %v, want a listen refusal naming both ways to add a key", err)
			}
		})
	}
}
