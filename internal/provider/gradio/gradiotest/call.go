package gradiotest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RunFunc is the scenario of one event: it may emit queue messages through
// c and returns one value per output component. ctx is cancelled when the
// event is cancelled, its client disconnects or the server closes.
type RunFunc func(ctx context.Context, c *Call) ([]any, error)

// Call is one event being processed.
type Call struct {
	// Data is the positional input data as sent (after call-API padding).
	Data []any
	// EventID is the event's id.
	EventID string
	// SessionHash is the session the event belongs to.
	SessionHash string
	// APIName is the endpoint's api_name.
	APIName string
	// FnIndex is the endpoint's dependency id.
	FnIndex int
	// Header is a copy of the join request's headers.
	Header http.Header
	// Root is the public root computed from the join request; output URLs
	// are Root + prefix + "/file=" + path.
	Root string

	s  *Server
	ev *event

	genMu   sync.Mutex
	lastGen []any
}

// AppError is a gr.Error raised by the app: it ends the event with
// success:false and an error that is always visible, with its title.
type AppError struct {
	// Message is the error text shown to the user.
	Message string
	// Title is the error title ("Error" when empty).
	Title string
}

// Error implements error.
func (e *AppError) Error() string {
	if e.Title != "" {
		return e.Title + ": " + e.Message
	}
	return e.Message
}

var (
	// ErrHidden makes the event fail like an ordinary exception with
	// show_error off: output {"error":null}, title "Error".
	ErrHidden = errors.New("gradiotest: hidden app exception")
	// ErrDropStream ends the session stream abruptly with no
	// process_completed, as when a Space's process dies mid-event.
	ErrDropStream = errors.New("gradiotest: stream dropped")
	// ErrServerStopped ends the session stream with unexpected_error
	// "Server stopped unexpectedly.".
	ErrServerStopped = errors.New("gradiotest: server stopped")
)

// QuotaError is the ZeroGPU quota failure a free account's API call gets,
// with the wait formatted as "Try again in H:MM:SS".
func QuotaError(left time.Duration) *AppError {
	secs := int64(math.Ceil(left.Seconds()))
	if secs < 0 {
		secs = 0
	}
	return &AppError{
		Title: "ZeroGPU quota exceeded",
		Message: fmt.Sprintf("You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). Try again in %d:%02d:%02d. "+
			"Subscribe to Hugging Face PRO to get 25 min of ZeroGPU quota a day - https://huggingface.co/subscribe/pro?from=ZeroGPU",
			secs/3600, secs/60%60, secs%60),
	}
}

// Progress emits a step-style progress frame (index of length, in unit).
func (c *Call) Progress(index, length int, unit string) {
	c.ProgressBars(ProgressBar{Index: &index, Length: &length, Unit: unit})
}

// ProgressFloat emits a fractional progress frame (p in 0..1) with an
// optional description such as "ZeroGPU init".
func (c *Call) ProgressFloat(p float64, desc string) {
	c.ProgressBars(ProgressBar{Progress: &p, Unit: "steps", Desc: desc})
}

// ProgressBar is one entry of progress_data; nil fields encode as null.
type ProgressBar struct {
	// Index and Length are the step counter, when step-based.
	Index, Length *int
	// Unit is the free-text unit ("steps" by default in Gradio).
	Unit string
	// Progress is the 0..1 fraction, when fraction-based.
	Progress *float64
	// Desc is the bar description; empty encodes as null.
	Desc string
}

// ProgressBars emits one progress frame with several (nested) bars.
func (c *Call) ProgressBars(bars ...ProgressBar) {
	list := make([]any, 0, len(bars))
	for _, b := range bars {
		o := object{{"index", intOrNil(b.Index)}, {"length", intOrNil(b.Length)}, {"unit", nullIfEmpty(b.Unit)}}
		if b.Progress != nil {
			o = append(o, kv{"progress", *b.Progress})
		} else {
			o = append(o, kv{"progress", nil})
		}
		o = append(o, kv{"desc", nullIfEmpty(b.Desc)})
		list = append(list, o)
	}
	c.emit("progress", object{{"msg", "progress"}, {"event_id", c.EventID}, {"progress_data", list}})
}

func intOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// Log emits a log frame (gr.Info / gr.Warning / ZeroGPU notices). level is
// info, warning, success or error.
func (c *Call) Log(level, title, message string) {
	o := object{{"msg", "log"}, {"event_id", c.EventID}, {"log", message}, {"level", level}, {"duration", 10.0}, {"visible", true}}
	if c.s.opts.Version >= 5 {
		o = append(o, kv{"title", title})
	}
	c.emit("log", o)
}

// Estimation emits an extra estimation frame, for scripts that imitate a
// queue in front of the app (ZeroGPU waits).
func (c *Call) Estimation(rank, queueSize int) {
	c.emit("estimation", object{{"msg", "estimation"}, {"event_id", c.EventID}, {"rank", rank}, {"queue_size", queueSize}, {"rank_eta", nil}})
}

// Generating emits a process_generating frame: the first carries full
// values, later ones per-output edit lists (a whole-value replace, or no
// edits when unchanged), as Gradio does for sse_v2+ clients.
func (c *Call) Generating(outputs []any) {
	c.genMu.Lock()
	data := make([]any, len(outputs))
	if c.lastGen == nil {
		copy(data, outputs)
	} else {
		for i, v := range outputs {
			if i < len(c.lastGen) && string(mustJSON(c.lastGen[i])) == string(mustJSON(v)) {
				data[i] = []any{}
			} else {
				data[i] = []any{[]any{"replace", []any{}, v}}
			}
		}
	}
	c.lastGen = append([]any(nil), outputs...)
	c.genMu.Unlock()
	o := object{
		{"msg", "process_generating"}, {"event_id", c.EventID},
		{"output", c.s.outputObject(data, true, 0, c.ev.ep)},
		{"success", true}, {"time_limit", nil},
	}
	c.s.pushFrame(c.ev, frame{msg: "process_generating", body: mustJSON(o), callEvent: "generating", callData: pythonJSON(mustJSON(outputs))})
}

// SilenceHeartbeats stops heartbeat frames on this event's session stream,
// so a client's stall detection can be exercised.
func (c *Call) SilenceHeartbeats() {
	sess := c.ev.sess
	sess.mu.Lock()
	sess.silenced = true
	sess.mu.Unlock()
}

// PNG renders a width x height image whose pattern derives from seed,
// stores it in the file cache and returns its output FileData.
func (c *Call) PNG(width, height int, seed int64) FileData {
	fd, err := c.Image(width, height, seed, "png")
	if err != nil {
		// Only reachable with absurd sizes, which RunFuncs validate first.
		return c.StoreFile("image.png", nil)
	}
	return fd
}

// Image is PNG with a chosen format ("png" or "webp").
func (c *Call) Image(width, height int, seed int64, format string) (FileData, error) {
	data, err := c.s.render(width, height, seed, format)
	if err != nil {
		return nil, err
	}
	return c.StoreFile("image."+format, data), nil
}

// StoreFile stores arbitrary bytes in the file cache under name and returns
// the output FileData pointing at them.
func (c *Call) StoreFile(name string, data []byte) FileData {
	path := c.s.files.put(name, data)
	return c.s.fileData(c.Root, path, name)
}

// FileURL is the absolute URL the app serves a cached path at.
func (c *Call) FileURL(path string) string {
	return c.Root + c.s.prefix + "/file=" + path
}

// Input returns Data[i], or nil when the client sent fewer values.
func (c *Call) Input(i int) any {
	if i < 0 || i >= len(c.Data) {
		return nil
	}
	return c.Data[i]
}

// Number reads input i as a number, accepting JSON numbers and numeric
// strings as Gradio's Number and Slider do.
func (c *Call) Number(i int) (float64, error) {
	switch v := c.Input(i).(type) {
	case float64:
		return v, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("could not convert string to float: %q", v)
		}
		return f, nil
	case nil:
		return 0, fmt.Errorf("input %d is missing", i)
	default:
		return 0, fmt.Errorf("input %d is %T, not a number", i, v)
	}
}

// String reads input i as a string (nil reads as "").
func (c *Call) String(i int) (string, error) {
	switch v := c.Input(i).(type) {
	case string:
		return v, nil
	case nil:
		return "", nil
	default:
		return "", fmt.Errorf("input %d is %T, not a string", i, v)
	}
}

// Bool reads input i as a checkbox value (nil reads as false).
func (c *Call) Bool(i int) (bool, error) {
	switch v := c.Input(i).(type) {
	case bool:
		return v, nil
	case nil:
		return false, nil
	default:
		return false, fmt.Errorf("input %d is %T, not a boolean", i, v)
	}
}

// File resolves input i, a FileData, to its bytes: an uploaded or
// generated path, a URL served by this app, or a data: URL. Anything else
// fails as Gradio does for files not uploaded by a user.
func (c *Call) File(i int) ([]byte, error) {
	m, ok := c.Input(i).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("input %d is not a file", i)
	}
	meta, _ := m["meta"].(map[string]any)
	if meta == nil || meta["_type"] != "gradio.FileData" {
		return nil, fmt.Errorf("input %d: file data is missing meta._type", i)
	}
	p, _ := m["path"].(string)
	u, _ := m["url"].(string)
	if p != "" {
		if f, ok := c.s.files.get(p); ok {
			return f.data, nil
		}
	}
	if strings.HasPrefix(u, "data:") {
		return decodeDataURL(u)
	}
	if strings.HasPrefix(p, "data:") {
		return decodeDataURL(p)
	}
	if u != "" {
		if pu, err := url.Parse(u); err == nil {
			if j := strings.Index(pu.Path, "/file="); j >= 0 {
				if f, ok := c.s.files.get(pu.Path[j+len("/file="):]); ok {
					return f.data, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("cannot move %s to the gradio cache dir because it was not uploaded by a user", p)
}

func decodeDataURL(u string) ([]byte, error) {
	comma := strings.IndexByte(u, ',')
	if comma < 0 || !strings.HasSuffix(u[:comma], ";base64") {
		return nil, errors.New("unsupported data URL")
	}
	b, err := base64.StdEncoding.DecodeString(u[comma+1:])
	if err != nil {
		return nil, fmt.Errorf("decoding data URL: %w", err)
	}
	return b, nil
}

// emit queues a message for this event unless it has already ended.
func (c *Call) emit(msg string, o object) {
	c.s.pushFrame(c.ev, frame{msg: msg, body: mustJSON(o)})
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
