package gen

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
)

func input(t *testing.T, data []byte) provider.InputImage {
	t.Helper()
	w, h, mime, err := imageio.DecodeConfig(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	return provider.InputImage{Data: data, MIME: mime, Name: "image-1." + imageio.FormatOf(mime), Width: w, Height: h}
}

func TestInputsFitBackendLimits(t *testing.T) {
	t.Parallel()
	caps := basicCaps
	caps.MaxN = 2
	caps.MaxInputPixels = 100 * 50
	caps.InputFormats = []string{"png", "jpeg"}
	fake := newFake(caps, nil)
	b := setup(t, one("b", fake), nil)
	big := input(t, pngBytes(400, 200, 1))
	small := input(t, webpBytes(20, 10, 2))
	mask := input(t, pngBytes(400, 200, 3))
	req := genReq(3)
	req.Kind = provider.KindEdit
	req.Images = []provider.InputImage{big, small}
	req.Mask = &mask
	job, snap := runJob(t, b.svc, context.Background(), req)
	if snap.Status != StatusSucceeded {
		t.Fatalf("status %s: %v", snap.Status, snap.Err)
	}
	calls := fake.recorded()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2 (n=3 over MaxN 2)", len(calls))
	}
	for _, c := range calls {
		got := c.req.Images
		if len(got) != 2 || got[0].Width != 100 || got[0].Height != 50 || got[0].MIME != imageio.MIMEPNG {
			t.Errorf("first input %s %dx%d, want png 100x50", got[0].MIME, got[0].Width, got[0].Height)
		}
		if got[1].MIME != imageio.MIMEPNG || got[1].Width != 20 || got[1].Name != "image-1.png" {
			t.Errorf("second input %s %dx%d %s, want png 20x10", got[1].MIME, got[1].Width, got[1].Height, got[1].Name)
		}
		if c.req.Mask == nil || c.req.Mask.Width != 100 {
			t.Errorf("mask %+v", c.req.Mask)
		}
	}
	// The client's request keeps what it sent.
	if !bytes.Equal(req.Images[0].Data, big.Data) {
		t.Error("the request's input was modified in place")
	}
	want := []string{
		"input image 1 scaled from 400x200 to 100x50",
		"input image 2 converted from webp to png",
		"mask scaled from 400x200 to 100x50",
	}
	if !slices.Equal(snap.InputNotes, want) {
		t.Errorf("notes %q, want %q", snap.InputNotes, want)
	}
	var logged int
	for _, ev := range events(job) {
		if ev.Type == provider.EventLog && strings.Contains(ev.Message, "input image") {
			logged++
		}
	}
	if logged != 2 {
		t.Errorf("%d input log events, want 2 (prepared once for both calls)", logged)
	}
}

func TestInputsUnchangedWhenTheyFit(t *testing.T) {
	t.Parallel()
	fake := newFake(basicCaps, nil)
	b := setup(t, one("b", fake), nil)
	in := input(t, pngBytes(64, 64, 1))
	req := genReq(1)
	req.Kind = provider.KindEdit
	req.Images = []provider.InputImage{in}
	_, snap := runJob(t, b.svc, context.Background(), req)
	if snap.Status != StatusSucceeded || len(snap.InputNotes) != 0 {
		t.Fatalf("status %s notes %q", snap.Status, snap.InputNotes)
	}
	got := fake.recorded()[0].req.Images[0]
	if &got.Data[0] != &in.Data[0] {
		t.Error("a fitting input was copied or re-encoded")
	}
}

func TestInputsUnreadableFailTheJob(t *testing.T) {
	t.Parallel()
	caps := basicCaps
	caps.MaxInputPixels = 10
	fake := newFake(caps, nil)
	b := setup(t, one("b", fake), nil)
	// A header that claims 64x64 with no pixel data behind it.
	in := input(t, pngBytes(64, 64, 1)[:60])
	req := genReq(1)
	req.Kind = provider.KindEdit
	req.Images = []provider.InputImage{in}
	_, snap := runJob(t, b.svc, context.Background(), req)
	if snap.Status != StatusFailed || snap.Err == nil || snap.Err.Kind != provider.KindBadRequest {
		t.Fatalf("status %s err %v", snap.Status, snap.Err)
	}
	if n := len(fake.recorded()); n != 0 {
		t.Errorf("the provider was called %d times", n)
	}
}
