package gen

import (
	"testing"

	"github.com/easelgw/easel/internal/provider"
)

func TestFitSize(t *testing.T) {
	t.Parallel()
	free := provider.SizeRule{Min: 256, Max: 2048, Multiple: 64}
	choices := provider.SizeRule{Choices: []string{"1024x1024", "1344x768", "768x1344", "bogus"}}
	ratios := []string{"1:1", "16:9", "9:16", "4:3"}
	tests := []struct {
		name   string
		rule   provider.SizeRule
		ratios []string
		w, h   int
		aspect string
		want   fitted
	}{
		{"default from rule", provider.SizeRule{DefaultWidth: 768, DefaultHeight: 1344, Min: 256, Max: 2048}, nil, 0, 0, "", fitted{768, 1344, ""}},
		{"fallback default", free, nil, 0, 0, "", fitted{1024, 1024, ""}},
		{"ratio with no size", free, nil, 0, 0, "16:9", fitted{1344, 768, ""}},
		{"ratio with rule default area", provider.SizeRule{DefaultWidth: 512, DefaultHeight: 512, Multiple: 8}, nil, 0, 0, "1:2", fitted{360, 728, ""}},
		{"kept when inside", free, nil, 1024, 768, "", fitted{1024, 768, ""}},
		{"rounded to multiple", free, nil, 1000, 700, "", fitted{1024, 704, ""}},
		{"clamped keeps ratio", provider.SizeRule{Min: 256, Max: 2048, Multiple: 16}, nil, 4000, 1000, "", fitted{2048, 512, ""}},
		{"scaled up to min", provider.SizeRule{Min: 256, Max: 2048, Multiple: 8}, nil, 100, 50, "", fitted{512, 256, ""}},
		{"extreme ratio clamps both", provider.SizeRule{Min: 256, Max: 1024, Multiple: 64}, nil, 10000, 100, "", fitted{1024, 256, ""}},
		{"max not a multiple", provider.SizeRule{Max: 1000, Multiple: 64}, nil, 3000, 3000, "", fitted{960, 960, ""}},
		{"choice by ratio landscape", choices, nil, 1920, 1080, "", fitted{1344, 768, ""}},
		{"choice by ratio square", choices, nil, 500, 500, "", fitted{1024, 1024, ""}},
		{"choice by ratio portrait", choices, nil, 1000, 3000, "", fitted{768, 1344, ""}},
		{"choice default", choices, nil, 0, 0, "", fitted{1024, 1024, ""}},
		{"choice tie broken by area", provider.SizeRule{Choices: []string{"512x512", "1024x1024"}}, nil, 600, 600, "", fitted{512, 512, ""}},
		{"zero rule keeps size", provider.SizeRule{}, nil, 1234, 567, "", fitted{1234, 567, ""}},
		{"aspect ratio from size", provider.SizeRule{}, ratios, 1920, 1080, "", fitted{1920, 1080, "16:9"}},
		{"aspect ratio explicit nearest", provider.SizeRule{}, ratios, 0, 0, "3:2", fitted{1254, 836, "4:3"}},
		// Neither size nor ratio: the backend applies its own default.
		{"aspect ratio default", provider.SizeRule{}, ratios, 0, 0, "", fitted{0, 0, ""}},
		{"aspect ratio symbolic", provider.SizeRule{}, []string{"match_input_image", "1:1", "16:9"}, 0, 0, "MATCH_INPUT_IMAGE", fitted{1024, 1024, "match_input_image"}},
		{"aspect ratio listed exactly", provider.SizeRule{}, ratios, 0, 0, "9:16", fitted{768, 1365, "9:16"}},
		{"aspect ratio portrait", provider.SizeRule{}, ratios, 600, 1000, "", fitted{600, 1000, "9:16"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := fitSize(provider.Capabilities{Size: tc.rule, AspectRatios: tc.ratios}, tc.w, tc.h, tc.aspect)
			if got != tc.want {
				t.Fatalf("fitSize(%dx%d %q) = %+v, want %+v", tc.w, tc.h, tc.aspect, got, tc.want)
			}
		})
	}
}

func TestParsePair(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "x", "0x5", "-1x5", "5x", "axb", "1024", "99999999x1"} {
		if _, _, ok := parseSize(s); ok {
			t.Errorf("parseSize(%q) accepted", s)
		}
	}
	if w, h, ok := parseSize(" 1024X768 "); !ok || w != 1024 || h != 768 {
		t.Errorf("parseSize upper-case X: %d %d %v", w, h, ok)
	}
	if w, h, ok := provider.ParseAspectRatio("16:9"); !ok || w != 16 || h != 9 {
		t.Errorf("parseRatio: %d %d %v", w, h, ok)
	}
}

func FuzzFitSize(f *testing.F) {
	f.Add(1024, 768, "16:9", 256, 2048, 64)
	f.Add(0, 0, "", 0, 0, 0)
	f.Add(1, 100000, "1:0", 7, 3, 5)
	f.Fuzz(func(t *testing.T, w, h int, aspect string, lo, hi, mult int) {
		if w < 0 || h < 0 || w > 1<<20 || h > 1<<20 || (w == 0) != (h == 0) {
			return // validate refuses these before fitting
		}
		rule := provider.SizeRule{Min: max(lo, 0) % 5000, Max: max(hi, 0) % 5000, Multiple: max(mult, 0) % 257}
		got := fitSize(provider.Capabilities{Size: rule, AspectRatios: []string{"1:1", "x"}}, w, h, aspect)
		if w == 0 && aspect == "" {
			// Nothing asked of a ratio backend: nothing is sent.
			if got != (fitted{}) {
				t.Fatalf("fitSize gave %+v for an empty ask", got)
			}
			return
		}
		if got.Width <= 0 || got.Height <= 0 {
			t.Fatalf("fitSize gave %+v", got)
		}
		m := max(rule.Multiple, 1)
		satisfiable := rule.Max > 0 && (rule.Min+m-1)/m*m <= rule.Max && rule.Max >= m
		if satisfiable && (got.Width > rule.Max || got.Height > rule.Max || got.Width < rule.Min || got.Height < rule.Min || got.Width%m != 0 || got.Height%m != 0) {
			t.Fatalf("fitSize %+v breaks rule %+v", got, rule)
		}
	})
}
