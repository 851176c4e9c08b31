package gen

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
)

// fittedInputs are a request's input images prepared for one set of
// backend limits.
type fittedInputs struct {
	images []provider.InputImage
	mask   *provider.InputImage
	err    error
}

// inputKey identifies the input limits of a backend, so backends with the
// same limits share one preparation.
func inputKey(caps provider.Capabilities) string {
	return strconv.Itoa(caps.MaxInputPixels) + "|" + strings.Join(caps.InputFormats, ",")
}

// fitInputs returns the job's input images scaled down and converted to
// what a backend with caps takes (imageio.Fit). It works once per distinct
// set of limits and records every change in the job (Snapshot.InputNotes
// and a log event) and in the log, so an operator can tell why a backend saw
// a smaller image than the client sent.
func (r *run) fitInputs(caps provider.Capabilities) ([]provider.InputImage, *provider.InputImage, error) {
	q := r.req
	if len(q.Images) == 0 && q.Mask == nil {
		return q.Images, q.Mask, nil
	}
	key := inputKey(caps)
	r.fitMu.Lock()
	defer r.fitMu.Unlock()
	if f, ok := r.fitted[key]; ok {
		return f.images, f.mask, f.err
	}
	if r.fitted == nil {
		r.fitted = map[string]*fittedInputs{}
	}
	f := &fittedInputs{}
	r.fitted[key] = f
	var notes []string
	fit := func(in provider.InputImage, what string) (provider.InputImage, error) {
		out, mime, w, h, err := imageio.Fit(in.Data, caps.MaxInputPixels, 0, caps.InputFormats)
		if err != nil {
			msg := what + " cannot be read"
			if errors.Is(err, imageio.ErrUnsupported) {
				msg = what + " is of a type the backend cannot take"
			}
			return in, &provider.Error{Kind: provider.KindBadRequest, Message: msg, Err: err}
		}
		if mime == in.MIME && w == in.Width && h == in.Height && len(out) == len(in.Data) {
			return in, nil
		}
		var changes []string
		if w != in.Width || h != in.Height {
			changes = append(changes, fmt.Sprintf("scaled from %dx%d to %dx%d", in.Width, in.Height, w, h))
		}
		if mime != in.MIME {
			changes = append(changes, fmt.Sprintf("converted from %s to %s", imageio.FormatOf(in.MIME), imageio.FormatOf(mime)))
		}
		notes = append(notes, what+" "+strings.Join(changes, " and "))
		name := strings.TrimSuffix(in.Name, "."+imageio.FormatOf(in.MIME))
		if name == "" {
			name = "image"
		}
		return provider.InputImage{Data: out, MIME: mime, Name: name + "." + imageio.FormatOf(mime), Width: w, Height: h}, nil
	}
	images := make([]provider.InputImage, len(q.Images))
	for i, in := range q.Images {
		out, err := fit(in, "input image "+strconv.Itoa(i+1))
		if err != nil {
			f.err = err
			return nil, nil, err
		}
		images[i] = out
	}
	f.images = images
	if q.Mask != nil {
		m, err := fit(*q.Mask, "mask")
		if err != nil {
			f.err = err
			return nil, nil, err
		}
		f.mask = &m
	}
	for _, n := range notes {
		r.log.Info("input image changed for the backend", slog.String("change", n),
			slog.Int("max_input_pixels", caps.MaxInputPixels), slog.Any("input_formats", caps.InputFormats))
		r.job.Publish(provider.Event{Type: provider.EventLog, Message: n}, func(sn *Snapshot) {
			if !slices.Contains(sn.InputNotes, n) {
				sn.InputNotes = append(sn.InputNotes, n)
			}
		})
	}
	return f.images, f.mask, nil
}
