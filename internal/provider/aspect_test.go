package provider

import "testing"

func TestNearestAspectRatio(t *testing.T) {
	t.Parallel()
	std := []string{"match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "21:9"}
	tests := []struct {
		name string
		list []string
		w, h int
		want string
	}{
		{"exact", std, 16, 9, "16:9"},
		{"size", std, 1920, 1080, "16:9"},
		{"portrait", std, 768, 1024, "3:4"},
		{"square", std, 512, 512, "1:1"},
		{"very wide", std, 4000, 1000, "21:9"},
		// On a log scale 2:1 and 1:2 are as far from 1:1, so the earlier
		// entry wins the tie.
		{"tie to earlier", []string{"2:1", "1:2"}, 1, 1, "2:1"},
		{"tie to earlier reversed", []string{"1:2", "2:1"}, 1, 1, "1:2"},
		{"spaces kept as written", []string{" 3 : 2 "}, 3, 2, " 3 : 2 "},
		{"only symbolic", []string{"match_input_image", "auto"}, 16, 9, ""},
		{"empty list", nil, 16, 9, ""},
		{"zero width", std, 0, 9, ""},
		{"negative height", std, 16, -9, ""},
	}
	for _, tt := range tests {
		if got := NearestAspectRatio(tt.list, tt.w, tt.h); got != tt.want {
			t.Errorf("%s: NearestAspectRatio(%q, %d, %d) = %q, want %q", tt.name, tt.list, tt.w, tt.h, got, tt.want)
		}
	}
}

func TestParseAspectRatio(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		w, h int
		ok   bool
	}{
		{"16:9", 16, 9, true},
		{" 4 : 3 ", 4, 3, true},
		{"1048576:1", 1 << 20, 1, true},
		{"1048577:1", 0, 0, false},
		{"0:1", 0, 0, false},
		{"-1:1", 0, 0, false},
		{"16x9", 0, 0, false},
		{"16:", 0, 0, false},
		{"a:b", 0, 0, false},
		{"1:2:3", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		w, h, ok := ParseAspectRatio(tt.in)
		if w != tt.w || h != tt.h || ok != tt.ok {
			t.Errorf("ParseAspectRatio(%q) = %d, %d, %v; want %d, %d, %v", tt.in, w, h, ok, tt.w, tt.h, tt.ok)
		}
	}
}
