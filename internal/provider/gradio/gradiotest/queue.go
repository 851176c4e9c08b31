package gradiotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const maxJSONBody = 32 << 20

// event states, guarded by Server.mu.
const (
	stateWaiting = iota
	stateRunning
	stateDone
)

// event is one queued call of an endpoint.
type event struct {
	id     string
	ep     *endpoint
	sess   *session
	call   *Call
	ctx    context.Context
	cancel context.CancelFunc
	state  int  // guarded by Server.mu
	live   bool // guarded by sess.mu: false once completed, cancelled or dropped
}

// frame is one message waiting in a session buffer, pre-rendered for the
// queue/data stream and, where visible there, for the call API stream.
type frame struct {
	ev        *event
	msg       string
	body      []byte
	callEvent string
	callData  []byte
	end       bool // the stream ends after this frame
	abort     bool // the stream ends abruptly instead of writing this frame
}

// session buffers the messages of one session_hash from join time on, so a
// stream that connects late loses nothing.
type session struct {
	hash string
	wake chan struct{}

	mu       sync.Mutex
	buf      []frame
	pending  map[string]*event
	callIDs  []string
	silenced bool
	readers  int
	idle     time.Time // when pending last became empty
}

func newSession(hash string) *session {
	return &session{hash: hash, wake: make(chan struct{}, 1), pending: map[string]*event{}}
}

func (sess *session) notify() {
	select {
	case sess.wake <- struct{}{}:
	default:
	}
}

func (sess *session) pop() (frame, bool) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if len(sess.buf) == 0 {
		return frame{}, false
	}
	f := sess.buf[0]
	sess.buf[0] = frame{}
	sess.buf = sess.buf[1:]
	return f, true
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// pushFrame appends f to its event's session unless the event has ended.
func (s *Server) pushFrame(ev *event, f frame) {
	sess := ev.sess
	sess.mu.Lock()
	if !ev.live {
		sess.mu.Unlock()
		return
	}
	f.ev = ev
	sess.buf = append(sess.buf, f)
	sess.mu.Unlock()
	sess.notify()
}

// queueFull is the 503 a join gets when max_size waiting events exist.
type queueFull struct{ max, size int }

func (e *queueFull) Error() string {
	return fmt.Sprintf("Queue is full. Max size is %d and size is %d.", e.max, e.size)
}

// textError carries a user-facing message verbatim (Gradio's own wording,
// capitalised and punctuated).
type textError string

func (e textError) Error() string { return string(e) }

const errQueueStopped = textError("Queue is stopped.")

// enqueue creates an event, buffers its first estimation and hands it to
// the scheduler.
func (s *Server) enqueue(r *http.Request, ep *endpoint, data []any, hash, id string, call bool) (*event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		return nil, errQueueStopped
	default:
	}
	if s.opts.MaxQueue > 0 && len(s.waiting) >= s.opts.MaxQueue {
		return nil, &queueFull{max: s.opts.MaxQueue, size: len(s.waiting)}
	}
	sess := s.sessions[hash]
	if sess == nil {
		sess = newSession(hash)
		s.sessions[hash] = sess
	}
	ctx, cancel := context.WithCancel(s.baseCtx)
	ev := &event{id: id, ep: ep, sess: sess, ctx: ctx, cancel: cancel, state: stateWaiting}
	ev.call = &Call{
		Data: data, EventID: id, SessionHash: hash, APIName: ep.APIName, FnIndex: ep.fnIndex,
		Header: r.Header.Clone(), Root: rootURL(r), s: s, ev: ev,
	}
	sess.mu.Lock()
	ev.live = true
	sess.pending[id] = ev
	if call {
		sess.callIDs = append(sess.callIDs, id)
	}
	sess.mu.Unlock()
	if call {
		s.callSess[id] = sess
	}
	s.live[id] = ev
	s.waiting = append(s.waiting, ev)
	s.pushEstimation(ev, len(s.waiting)-1, len(s.waiting))
	s.dispatchLocked()
	return ev, nil
}

// pushEstimation buffers an estimation; s.mu is held.
func (s *Server) pushEstimation(ev *event, rank, size int) {
	var eta any
	if avg, ok := s.avgByFn[ev.ep.fnIndex].mean(); ok {
		eta = avg * (float64(rank)/float64(s.opts.Concurrency) + 1)
	}
	o := object{{"msg", "estimation"}, {"event_id", ev.id}, {"rank", rank}, {"queue_size", size}, {"rank_eta", eta}}
	s.pushFrame(ev, frame{msg: "estimation", body: mustJSON(o)})
}

// dispatchLocked starts waiting events while workers are free and tells
// the events still waiting their new rank; s.mu is held.
func (s *Server) dispatchLocked() {
	moved := false
	for s.running < s.opts.Concurrency && len(s.waiting) > 0 {
		ev := s.waiting[0]
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		ev.state = stateRunning
		s.running++
		moved = true
		s.runners.Add(1)
		go s.run(ev)
	}
	if moved {
		for i, ev := range s.waiting {
			s.pushEstimation(ev, i, len(s.waiting))
		}
	}
}

func (s *Server) removeWaitingLocked(ev *event) {
	for i, w := range s.waiting {
		if w == ev {
			s.waiting = append(s.waiting[:i:i], s.waiting[i+1:]...)
			return
		}
	}
}

func (s *Server) run(ev *event) {
	defer s.runners.Done()
	s.mu.Lock()
	var eta any
	if avg, ok := s.avgByFn[ev.ep.fnIndex].mean(); ok {
		eta = avg
	}
	s.mu.Unlock()
	s.pushFrame(ev, frame{msg: "process_starts", body: mustJSON(object{{"msg", "process_starts"}, {"event_id", ev.id}, {"eta", eta}})})
	start := time.Now()
	out, err := s.invoke(ev)
	s.finish(ev, out, err, time.Since(start))
}

// invoke runs the endpoint's scenario after Gradio-style preprocessing,
// turning a panic into an ordinary (hidden) failure.
func (s *Server) invoke(ev *event) (out []any, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("run function panicked: %v", p)
		}
	}()
	s.loadStates(ev)
	if err := s.preprocess(ev.ep, ev.call.Data); err != nil {
		return nil, err
	}
	if ev.ep.Run == nil {
		vals := make([]any, len(ev.ep.Outputs))
		for i, c := range ev.ep.Outputs {
			vals[i] = c.Value
		}
		return vals, nil
	}
	return ev.ep.Run(ev.ctx, ev.call)
}

// preprocess imitates the component checks Gradio runs before the
// function: input count, dropdown choices and slider bounds.
func (s *Server) preprocess(ep *endpoint, data []any) error {
	if len(data) < len(ep.Inputs) {
		return textError(fmt.Sprintf("An event handler (%s) didn't receive enough input values (needed: %d, got: %d).\n"+
			"Check if the event handler calls a Javascript function, and make sure its return value is correct.",
			ep.APIName, len(ep.Inputs), len(data)))
	}
	for i, c := range ep.Inputs {
		v := data[i]
		switch c.Type {
		case "dropdown":
			if v == nil || propOr(c, "allow_custom_value", false) == true {
				continue
			}
			choices := choiceValues(c)
			str, _ := v.(string)
			found := false
			for _, ch := range choices {
				if ch == str && v != nil {
					found = true
					break
				}
			}
			if !found {
				quoted := make([]string, len(choices))
				for j, ch := range choices {
					quoted[j] = pyRepr(ch)
				}
				return &AppError{Title: "Error", Message: fmt.Sprintf("Value: %s is not in the list of choices: [%s]", pyReprAny(v), strings.Join(quoted, ", "))}
			}
		case "slider":
			f, ok := v.(float64)
			if !ok || s.opts.Version < 5 {
				continue
			}
			if lo, ok := toFloat(c.Props["minimum"]); ok && f < lo {
				return &AppError{Title: "Error", Message: fmt.Sprintf("Value %v is less than minimum value %v.", f, lo)}
			}
			if hi, ok := toFloat(c.Props["maximum"]); ok && f > hi {
				return &AppError{Title: "Error", Message: fmt.Sprintf("Value %v is greater than maximum value %v.", f, hi)}
			}
		}
	}
	return nil
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func pyRepr(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

func pyReprAny(v any) string {
	switch x := v.(type) {
	case string:
		return pyRepr(x)
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	default:
		return fmt.Sprint(x)
	}
}

// finish buffers the event's ending and frees its worker.
func (s *Server) finish(ev *event, out []any, runErr error, dur time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer ev.cancel()
	s.running--
	ev.state = stateDone
	delete(s.live, ev.id)
	if runErr == nil {
		a := s.avgByFn[ev.ep.fnIndex]
		if a == nil {
			a = &avgDur{}
			s.avgByFn[ev.ep.fnIndex] = a
		}
		a.n++
		a.total += dur
	}
	avg, _ := s.avgByFn[ev.ep.fnIndex].mean()
	sess := ev.sess
	sess.mu.Lock()
	if ev.live {
		ev.live = false
		delete(sess.pending, ev.id)
		switch {
		case errors.Is(runErr, ErrDropStream):
			sess.buf = append(sess.buf, frame{ev: ev, abort: true})
			s.dropPendingLocked(sess)
		case errors.Is(runErr, ErrServerStopped):
			o := object{{"msg", "unexpected_error"}, {"event_id", nil}, {"message", "Server stopped unexpectedly."}}
			if s.opts.Version >= 5 {
				o = append(o, kv{"session_not_found", false})
			}
			o = append(o, kv{"success", false})
			sess.buf = append(sess.buf, frame{ev: ev, msg: "unexpected_error", body: mustJSON(o), end: true,
				callEvent: "error", callData: pythonJSON(mustJSON("Server stopped unexpectedly."))})
			s.dropPendingLocked(sess)
		default:
			sess.buf = append(sess.buf, s.completedFrame(ev, out, runErr, dur.Seconds(), avg))
			s.closeIfIdleLocked(sess)
		}
		sess.notify()
	}
	sess.mu.Unlock()
	s.dispatchLocked()
}

// closeIfIdleLocked appends close_stream when the session has nothing
// pending (sse_v3); s.mu and sess.mu are held.
func (s *Server) closeIfIdleLocked(sess *session) {
	if len(sess.pending) == 0 {
		sess.idle = time.Now()
		sess.buf = append(sess.buf, frame{msg: "close_stream", body: []byte(`{"msg":"close_stream","event_id":null}`), end: true})
	}
}

// dropPendingLocked forgets every pending event of a session, as Gradio
// does when the session's stream goes away; s.mu and sess.mu are held.
func (s *Server) dropPendingLocked(sess *session) {
	for id, ev := range sess.pending {
		ev.live = false
		ev.cancel()
		if ev.state == stateWaiting {
			s.removeWaitingLocked(ev)
			ev.state = stateDone
		}
		delete(s.live, id)
		delete(sess.pending, id)
	}
}

// dropSession handles a client that went away: its waiting events leave
// the queue, running ones are cancelled and nothing more is delivered.
func (s *Server) dropSession(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.mu.Lock()
	s.dropPendingLocked(sess)
	sess.buf = nil
	ids := sess.callIDs
	sess.callIDs = nil
	sess.mu.Unlock()
	if s.sessions[sess.hash] == sess {
		delete(s.sessions, sess.hash)
	}
	for _, id := range ids {
		if s.callSess[id] == sess {
			delete(s.callSess, id)
		}
	}
}

// releaseSession forgets a session whose stream ended normally, unless a
// new event joined it meanwhile.
func (s *Server) releaseSession(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.mu.Lock()
	idle := len(sess.pending) == 0 && len(sess.buf) == 0
	sess.mu.Unlock()
	if idle && s.sessions[sess.hash] == sess {
		delete(s.sessions, sess.hash)
	}
}

// outputObject is the success output of process_generating/completed.
// State outputs stay on the server: their slot is null and their id is
// listed in changed_state_ids. s.mu is held when !generating.
func (s *Server) outputObject(data []any, generating bool, dur float64, ep *endpoint) object {
	var d, avg any
	changed := []any{}
	if !generating {
		d = dur
		if a, ok := s.avgByFn[ep.fnIndex].mean(); ok {
			avg = a
		}
		data = append([]any(nil), data...)
		for i, c := range ep.Outputs {
			if c.Type == "state" && i < len(data) {
				data[i] = nil
				changed = append(changed, ep.outputIDs[i])
			}
		}
	}
	o := object{{"data", data}, {"is_generating", generating}, {"duration", d}, {"average_duration", avg},
		{"render_config", nil}, {"changed_state_ids", changed}}
	if s.cacheFields() {
		o = append(o, kv{"used_cache", nil})
	}
	return o
}

func (s *Server) cacheFields() bool { return s.opts.Version == 6 && s.opts.Minor >= 12 }

// completedFrame renders process_completed for a result or a failure;
// s.mu is held.
func (s *Server) completedFrame(ev *event, out []any, runErr error, dur, avg float64) frame {
	o := object{{"msg", "process_completed"}, {"event_id", ev.id}}
	var (
		title     any
		success   = runErr == nil
		callEvent = "complete"
		callData  []byte
	)
	if success {
		if out == nil {
			out = []any{}
		}
		o = append(o, kv{"output", s.outputObject(out, false, dur, ev.ep)}, kv{"success", true})
		callData = pythonJSON(mustJSON(out))
		s.saveStates(ev, out)
	} else {
		payload, t := s.errorPayload(runErr)
		title = t
		o = append(o, kv{"output", payload}, kv{"success", false})
		callEvent = "error"
		callData = []byte("null")
		if s.opts.Version == 6 && s.opts.Minor >= 13 {
			callData = pythonJSON(mustJSON(payload))
		}
	}
	if s.opts.Version >= 5 {
		o = append(o, kv{"title", title})
	}
	if s.cacheFields() {
		if success {
			o = append(o, kv{"used_cache", nil}, kv{"cache_duration", dur}, kv{"avg_time", avg})
		} else {
			o = append(o, kv{"used_cache", nil}, kv{"cache_duration", nil}, kv{"avg_time", nil})
		}
	}
	return frame{ev: ev, msg: "process_completed", body: mustJSON(o), callEvent: callEvent, callData: callData}
}

// cancelledFrame is the output:{} success:true completion Gradio pushes for
// a cancelled event.
func (s *Server) cancelledFrame(ev *event) frame {
	o := object{{"msg", "process_completed"}, {"event_id", ev.id}, {"output", object{}}, {"success", true}}
	if s.opts.Version >= 5 {
		o = append(o, kv{"title", nil})
	}
	if s.cacheFields() {
		o = append(o, kv{"used_cache", nil}, kv{"cache_duration", nil}, kv{"avg_time", nil})
	}
	return frame{ev: ev, msg: "process_completed", body: mustJSON(o), callEvent: "error", callData: []byte("null")}
}

// errorPayload builds output for a failed event and the message title.
func (s *Server) errorPayload(err error) (object, string) {
	var ae *AppError
	if errors.As(err, &ae) {
		title := ae.Title
		if title == "" {
			title = "Error"
		}
		o := object{{"error", ae.Message}, {"duration", 10}, {"visible", true}}
		if s.opts.Version >= 5 {
			o = append(o, kv{"title", title})
		}
		return o, title
	}
	if s.opts.ShowError && !errors.Is(err, ErrHidden) {
		return object{{"error", err.Error()}, {"visible", true}}, "Error"
	}
	return object{{"error", nil}}, "Error"
}

// joinBody is PredictBody with presence tracking.
type joinBody struct {
	data        []any
	sessionHash *string
	fnIndex     *int
}

// parsePredictBody decodes a join-style body, answering FastAPI-shaped
// 422s for malformed ones. It returns false when it wrote a response.
func parsePredictBody(w http.ResponseWriter, raw []byte) (joinBody, map[string]json.RawMessage, bool) {
	var jb joinBody
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
			{"type", "json_invalid"}, {"loc", []any{"body", 0}}, {"msg", "JSON decode error"}, {"input", object{}},
			{"ctx", object{{"error", "Expecting value"}}},
		}}}})
		return jb, nil, false
	}
	rawData, ok := m["data"]
	if !ok {
		writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
			{"type", "missing"}, {"loc", []any{"body", "data"}}, {"msg", "Field required"}, {"input", json.RawMessage(raw)},
		}}}})
		return jb, nil, false
	}
	if err := json.Unmarshal(rawData, &jb.data); err != nil || jb.data == nil {
		writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
			{"type", "list_type"}, {"loc", []any{"body", "data"}}, {"msg", "Input should be a valid list"}, {"input", rawData},
		}}}})
		return jb, nil, false
	}
	if v, ok := m["session_hash"]; ok && string(v) != "null" {
		var h string
		if err := json.Unmarshal(v, &h); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
				{"type", "string_type"}, {"loc", []any{"body", "session_hash"}}, {"msg", "Input should be a valid string"}, {"input", v},
			}}}})
			return jb, nil, false
		}
		jb.sessionHash = &h
	}
	if v, ok := m["fn_index"]; ok && string(v) != "null" {
		var f float64
		if err := json.Unmarshal(v, &f); err != nil || f != float64(int(f)) {
			writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
				{"type", "int_parsing"}, {"loc", []any{"body", "fn_index"}}, {"msg", "Input should be a valid integer"}, {"input", v},
			}}}})
			return jb, nil, false
		}
		n := int(f)
		jb.fnIndex = &n
	}
	return jb, m, true
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(w, r, maxJSONBody)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, object{{"detail", "Request body too large."}})
		return
	}
	jb, _, ok := parsePredictBody(w, raw)
	if !ok {
		return
	}
	if jb.sessionHash == nil {
		writeJSON(w, http.StatusBadRequest, object{{"detail", "Session hash not found."}})
		return
	}
	if jb.fnIndex == nil {
		writeJSON(w, http.StatusBadRequest, object{{"detail", "No function index provided."}})
		return
	}
	if *jb.fnIndex < 0 || *jb.fnIndex >= len(s.endpoints) {
		internalError(w)
		return
	}
	ep := s.endpoints[*jb.fnIndex]
	s.admit(w, r, ep, raw, jb.data, *jb.sessionHash, "", false)
}

// admit validates, enqueues and records one event, answering the join.
// call marks a call-API event, whose stream is fetched by event id.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, ep *endpoint, raw []byte, data []any, hash, id string, call bool) {
	if ep.Validate != nil {
		if bad := ep.Validate(data); len(bad) > 0 {
			detail := make([]any, len(bad))
			for i, b := range bad {
				detail[i] = object{{"__type__", "validate"}, {"is_valid", false}, {"message", b.Message}, {"parameter_name", b.Parameter}}
			}
			writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", detail}})
			return
		}
	}
	if id == "" {
		id = newID()
	}
	if hash == "" {
		hash = id
	}
	ev, err := s.enqueue(r, ep, data, hash, id, call)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, object{{"detail", err.Error()}})
		return
	}
	s.record(func() {
		s.joins = append(s.joins, Join{
			Path: r.URL.Path, Header: r.Header.Clone(), Body: raw, Data: data,
			FnIndex: ep.fnIndex, APIName: ep.APIName, SessionHash: hash, EventID: ev.id,
		})
	})
	writeJSON(w, http.StatusOK, object{{"event_id", ev.id}})
}

func sseHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleData(w http.ResponseWriter, r *http.Request) {
	hash := r.URL.Query().Get("session_hash")
	s.mu.Lock()
	sess := s.sessions[hash]
	s.mu.Unlock()
	sseHeaders(w)
	rc := http.NewResponseController(w)
	if sess == nil {
		o := object{{"msg", "unexpected_error"}, {"event_id", nil}, {"message", "404: Not Found"}}
		if s.opts.Version >= 5 {
			o = append(o, kv{"session_not_found", true})
		}
		o = append(o, kv{"success", false})
		_, _ = fmt.Fprintf(w, "data: %s\n\n", mustJSON(o))
		_ = rc.Flush()
		return
	}
	s.stream(w, r, sess, "")
}

// stream delivers a session's buffered frames until the stream ends. With
// callID set it renders the call API's event:/data: format for that event.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, sess *session, callID string) {
	sess.mu.Lock()
	sess.readers++
	sess.mu.Unlock()
	defer func() {
		sess.mu.Lock()
		sess.readers--
		sess.mu.Unlock()
	}()
	rc := http.NewResponseController(w)
	tick := time.NewTicker(s.opts.Heartbeat)
	defer tick.Stop()
	write := func(p []byte) bool {
		if _, err := w.Write(p); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		for {
			f, ok := sess.pop()
			if !ok {
				break
			}
			if f.abort {
				s.dropSession(sess)
				return
			}
			if callID != "" {
				if f.ev != nil && f.ev.id != callID {
					continue
				}
				if f.callEvent != "" {
					if !write([]byte("event: " + f.callEvent + "\ndata: " + string(f.callData) + "\n\n")) {
						s.dropSession(sess)
						return
					}
					if f.msg == "process_completed" || f.end {
						s.releaseCall(sess, callID)
						return
					}
				}
				if f.end {
					s.releaseCall(sess, callID)
					return
				}
				continue
			}
			if !write([]byte("data: " + string(f.body) + "\n\n")) {
				s.dropSession(sess)
				return
			}
			if f.end {
				s.releaseSession(sess)
				return
			}
		}
		select {
		case <-sess.wake:
		case <-tick.C:
			sess.mu.Lock()
			quiet := sess.silenced
			sess.mu.Unlock()
			if quiet {
				continue
			}
			hb := "data: {\"msg\":\"heartbeat\",\"event_id\":null}\n\n"
			if callID != "" {
				hb = "event: heartbeat\ndata: null\n\n"
			}
			if !write([]byte(hb)) {
				s.dropSession(sess)
				return
			}
		case <-r.Context().Done():
			s.dropSession(sess)
			return
		case <-s.closing:
			return
		}
	}
}

func (s *Server) releaseCall(sess *session, id string) {
	s.mu.Lock()
	if s.callSess[id] == sess {
		delete(s.callSess, id)
	}
	s.mu.Unlock()
	// A call session only ever carries call events; once this one is
	// delivered the trailing close_stream has no reader.
	sess.mu.Lock()
	if len(sess.pending) == 0 {
		sess.buf = nil
	}
	sess.mu.Unlock()
	s.releaseSession(sess)
}

func (s *Server) handleStatus(w http.ResponseWriter) {
	s.mu.Lock()
	n := len(s.waiting)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, object{{"msg", "estimation"}, {"event_id", nil}, {"rank", nil}, {"queue_size", n}, {"rank_eta", nil}})
}

func missingFields(w http.ResponseWriter, raw []byte, m map[string]json.RawMessage, fields ...string) bool {
	var detail []any
	for _, f := range fields {
		if v, ok := m[f]; !ok || string(v) == "null" {
			detail = append(detail, object{{"type", "missing"}, {"loc", []any{"body", f}}, {"msg", "Field required"}, {"input", json.RawMessage(raw)}})
		}
	}
	if detail == nil {
		return false
	}
	writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", detail}})
	return true
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(w, r, maxJSONBody)
	var m map[string]json.RawMessage
	if err != nil || json.Unmarshal(raw, &m) != nil || m == nil {
		writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
			{"type", "json_invalid"}, {"loc", []any{"body", 0}}, {"msg", "JSON decode error"}, {"input", object{}},
		}}}})
		return
	}
	if missingFields(w, raw, m, "session_hash", "fn_index", "event_id") {
		return
	}
	var c Cancel
	c.Body = raw
	if json.Unmarshal(m["session_hash"], &c.SessionHash) != nil || json.Unmarshal(m["fn_index"], &c.FnIndex) != nil ||
		json.Unmarshal(m["event_id"], &c.EventID) != nil {
		writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
			{"type", "model_attributes_type"}, {"loc", []any{"body"}}, {"msg", "Input should be a valid dictionary or object to extract fields from"},
		}}}})
		return
	}
	s.record(func() { s.cancels = append(s.cancels, c) })
	s.cancelEvent(c.SessionHash, c.EventID)
	writeJSON(w, http.StatusOK, object{{"success", true}})
}

// cancelEvent ends a waiting or running event with the cancel-style
// completion; a running function's ctx is cancelled and its output dropped.
func (s *Server) cancelEvent(hash, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.live[id]
	if ev == nil || ev.sess.hash != hash {
		return
	}
	if ev.state == stateWaiting {
		s.removeWaitingLocked(ev)
		ev.state = stateDone
		delete(s.live, id)
	}
	sess := ev.sess
	sess.mu.Lock()
	if ev.live {
		ev.live = false
		delete(sess.pending, id)
		sess.buf = append(sess.buf, s.cancelledFrame(ev))
		s.closeIfIdleLocked(sess)
		sess.notify()
	}
	sess.mu.Unlock()
	ev.cancel()
}

func (s *Server) handleReset(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(w, r, maxJSONBody)
	var m map[string]json.RawMessage
	if err != nil || json.Unmarshal(raw, &m) != nil || m == nil {
		writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
			{"type", "json_invalid"}, {"loc", []any{"body", 0}}, {"msg", "JSON decode error"}, {"input", object{}},
		}}}})
		return
	}
	if missingFields(w, raw, m, "event_id") {
		return
	}
	writeJSON(w, http.StatusOK, object{{"success", true}})
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	sseHeaders(w)
	rc := http.NewResponseController(w)
	tick := time.NewTicker(s.opts.Heartbeat)
	defer tick.Stop()
	for {
		if _, err := w.Write([]byte("data: ALIVE\n\n")); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
}

// maxStates bounds the per-session state table of a long-running fake.
const maxStates = 10000

func stateKey(hash string, id int) string { return hash + "/" + strconv.Itoa(id) }

// loadStates replaces State inputs with the session's stored values, as
// Gradio ignores what the client sends there.
func (s *Server) loadStates(ev *event) {
	var data []any
	for i, c := range ev.ep.Inputs {
		if c.Type != "state" {
			continue
		}
		if data == nil {
			data = append([]any(nil), ev.call.Data...)
		}
		for len(data) <= i {
			data = append(data, nil)
		}
		s.mu.Lock()
		v, ok := s.states[stateKey(ev.sess.hash, ev.ep.inputIDs[i])]
		s.mu.Unlock()
		if !ok {
			v = c.Value
		}
		data[i] = v
	}
	if data != nil {
		ev.call.Data = data
	}
}

// saveStates stores State outputs for the session; s.mu is held.
func (s *Server) saveStates(ev *event, out []any) {
	for i, c := range ev.ep.Outputs {
		if c.Type != "state" || i >= len(out) {
			continue
		}
		if len(s.states) >= maxStates {
			clear(s.states)
		}
		s.states[stateKey(ev.sess.hash, ev.ep.outputIDs[i])] = out[i]
	}
}

// sessionTTL is how long a finished session whose stream never came is
// kept; real clients connect within milliseconds of joining.
const sessionTTL = 10 * time.Minute

// janitor forgets sessions nobody will read, so a long-running demo server
// does not accumulate the results of clients that never opened a stream.
func (s *Server) janitor(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

func (s *Server) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for hash, sess := range s.sessions {
		sess.mu.Lock()
		stale := len(sess.pending) == 0 && sess.readers == 0 && !sess.idle.IsZero() && now.Sub(sess.idle) > sessionTTL
		ids := sess.callIDs
		sess.mu.Unlock()
		if !stale {
			continue
		}
		delete(s.sessions, hash)
		for _, id := range ids {
			if s.callSess[id] == sess {
				delete(s.callSess, id)
			}
		}
	}
}
