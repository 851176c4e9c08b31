package jobapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// Generate submits one job for req, follows it to its end and downloads
// its results. It returns when ctx ends, without sending another request.
func (p *Provider) Generate(ctx context.Context, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
	if emit == nil {
		emit = func(provider.Event) {}
	}
	if err := p.checkRequest(req); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, upstream.CanceledError(ctx, "starting the job")
	}
	id, err := p.submit(ctx, req)
	if err != nil {
		return nil, err
	}
	p.log.Info("upstream job accepted", "job", req.JobID, "upstream_job", id)
	if p.onID != nil {
		p.onID(req.JobID, id)
	}
	emit(provider.Event{Type: provider.EventAccepted, Index: req.Index, UpstreamID: id})
	// The upstream's id travels only in EventAccepted: clients see that
	// the work was accepted, operators see the id in the log.
	emit(provider.Event{Type: provider.EventLog, Index: req.Index, Message: "accepted by the upstream"})
	emit(provider.Event{Type: provider.EventQueued, Index: req.Index, Source: "upstream"})
	return p.follow(ctx, id, req, emit, false)
}

// Resume follows an upstream job submitted earlier (by a gateway that has
// since restarted) and downloads its results, as Generate would have. It
// polls at once, then on the usual schedule; the deadline counts from the
// call, since the original submit time is not known here.
func (p *Provider) Resume(ctx context.Context, upstreamID string, req *provider.Request, emit func(provider.Event)) (*provider.Result, error) {
	if emit == nil {
		emit = func(provider.Event) {}
	}
	if req == nil {
		return nil, provider.Errorf(provider.KindBadRequest, "no request")
	}
	if strings.TrimSpace(upstreamID) == "" || len(upstreamID) > maxJobIDLen {
		return nil, provider.Errorf(provider.KindBadRequest, "resuming needs a saved upstream job id")
	}
	emit(provider.Event{Type: provider.EventAccepted, Index: req.Index, UpstreamID: upstreamID})
	emit(provider.Event{Type: provider.EventLog, Index: req.Index, Message: "following the upstream's job again after a restart"})
	return p.follow(ctx, upstreamID, req, emit, true)
}

// checkRequest refuses requests the backend cannot run before anything is
// sent.
func (p *Provider) checkRequest(req *provider.Request) error {
	refuse := func(format string, args ...any) error {
		e := provider.Errorf(provider.KindBadRequest, format, args...)
		e.NotStarted = true
		return e
	}
	switch {
	case req == nil:
		return refuse("no request")
	case req.N > p.cfg.MaxN:
		return refuse("backend %s makes at most %d image(s) per job, %d asked", p.name, p.cfg.MaxN, req.N)
	case p.cfg.RequiresImage && len(req.Images) == 0:
		return refuse("backend %s edits images only: send an input image", p.name)
	case len(req.Images) > p.cfg.MaxInputImages:
		return refuse("backend %s takes at most %d input image(s), %d given", p.name, p.cfg.MaxInputImages, len(req.Images))
	}
	return nil
}

// schedule yields the waits before successive polls: Interval, then each
// wait times Backoff, capped at MaxInterval. An immediate schedule (for
// Resume) starts with a zero wait.
type schedule struct {
	cur, max  time.Duration
	backoff   float64
	immediate bool
}

func newSchedule(pc PollConfig, immediate bool) *schedule {
	return &schedule{cur: pc.Interval, max: pc.MaxInterval, backoff: pc.Backoff, immediate: immediate}
}

func (s *schedule) next() time.Duration {
	if s.immediate {
		s.immediate = false
		return 0
	}
	d := s.cur
	grown := float64(s.cur) * s.backoff
	if grown >= float64(s.max) {
		s.cur = s.max
	} else {
		s.cur = time.Duration(grown)
	}
	return d
}

// follow polls upstream job id until it ends, then fetches its results.
// Poll times are anchored to the schedule (acceptance + 1s, + 2.5s, ...),
// not to the end of the previous answer, so slow answers do not stretch
// the schedule; a Retry-After only ever delays it.
func (p *Provider) follow(ctx context.Context, id string, req *provider.Request, emit func(provider.Event), immediate bool) (*provider.Result, error) {
	pc := p.cfg.Poll
	start := p.now()
	deadline := start.Add(pc.Deadline)
	sched := newSchedule(pc, immediate)
	due := start.Add(sched.next())
	failures := 0
	started := false
	lastFraction := -1.0
	var lastErr error
	for {
		final := false
		if !due.Before(deadline) {
			// One last look at the deadline itself: a job that finished in
			// the meantime is still a success.
			due, final = deadline, true
		}
		if err := p.sleep(ctx, due.Sub(p.now())); err != nil {
			return nil, upstream.CanceledError(ctx, "waiting for upstream job "+id)
		}
		st, retryAfter, transient, err := p.pollOnce(ctx, id)
		due = due.Add(sched.next())
		if gap := p.now().Add(pc.Interval / 2); due.Before(gap) {
			// Answers slower than the schedule must not turn into
			// back-to-back polls.
			due = gap
		}
		switch {
		case err != nil && !transient:
			return nil, err
		case err != nil:
			lastErr = err
			if retryAfter == 0 {
				failures++
			}
			if later := p.now().Add(retryAfter); later.After(due) {
				due = later
			}
			if failures >= pc.MaxErrors {
				return nil, wrapUpstream(err, fmt.Sprintf("polling upstream job %s failed %d times in a row", id, failures))
			}
			p.log.Warn("polling upstream job failed; will poll again", "job", req.JobID, "upstream_job", id, "err", err)
		default:
			failures, lastErr = 0, nil
			if st.failed {
				msg := st.message
				if msg == "" {
					msg = "no message given"
				}
				return nil, &provider.Error{Kind: provider.KindUpstream, Message: "the upstream job failed: " + msg}
			}
			if st.progress >= 0 && st.progress != lastFraction {
				if !started {
					started = true
					emit(provider.Event{Type: provider.EventStarted, Index: req.Index})
				}
				lastFraction = st.progress
				emit(provider.Event{Type: provider.EventProgress, Index: req.Index, Fraction: st.progress})
			}
			if st.done {
				if !started {
					emit(provider.Event{Type: provider.EventStarted, Index: req.Index})
				}
				return p.collect(ctx, id, req, st.urls)
			}
			if !started && st.running {
				started = true
				emit(provider.Event{Type: provider.EventStarted, Index: req.Index})
			}
		}
		if final {
			e := &provider.Error{Kind: provider.KindTimeout, Message: "the upstream job did not finish within " + formatSeconds(pc.Deadline), Err: lastErr}
			return nil, e
		}
	}
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// wrapUpstream prefixes a typed error's message with context, keeping its
// kind.
func wrapUpstream(err error, doing string) error {
	if pe, ok := provider.AsError(err); ok {
		c := *pe
		c.Message = doing + ": " + pe.Message
		c.NotStarted = false
		return &c
	}
	return &provider.Error{Kind: provider.KindUpstream, Message: doing, Err: err}
}

// pollURL substitutes the escaped job id into the poll URL template.
func (p *Provider) pollURL(id string) string {
	return strings.ReplaceAll(p.cfg.Poll.URL, "{job_id}", escapeID(id))
}

// escapeID percent-encodes everything but RFC 3986's unreserved
// characters, so the id is one opaque token in a query value and in a path
// segment alike ("a&b/c d" becomes "a%26b%2Fc%20d").
func escapeID(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// pollOnce asks for the job's status once. transient marks a failure worth
// another poll (HTTP 429, 5xx, 404, a broken connection, a body-level rate
// limit); retryAfter is the wait the upstream asked for, if any.
func (p *Provider) pollOnce(ctx context.Context, id string) (st pollState, retryAfter time.Duration, transient bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	hreq, err := p.newRequest(cctx, http.MethodGet, p.pollURL(id), nil, callAPI)
	if err != nil {
		return st, 0, false, err
	}
	resp, err := p.client.Do(hreq)
	if err != nil {
		te := transportError(ctx, err, "polling upstream job "+id)
		return st, 0, te.Kind != provider.KindCanceled && ctx.Err() == nil, te
	}
	defer resp.Body.Close()
	raw, err := readAPIBody(resp)
	if err != nil {
		if ctx.Err() != nil {
			return st, 0, false, upstream.CanceledError(ctx, "polling upstream job "+id)
		}
		pe, _ := provider.AsError(err)
		return st, 0, pe != nil && pe.Kind == provider.KindUnavailable, err
	}
	code := resp.StatusCode
	switch {
	case code == http.StatusTooManyRequests:
		ra := p.retryAfterOr(resp, 0)
		return st, ra, true, &provider.Error{Kind: provider.KindRateLimited, RetryAfter: ra,
			Message: withDetail("the upstream is rate limiting status polls (HTTP 429)", p.errorDetail(raw, p.paths.pollMessage))}
	case code >= 500 || code == http.StatusNotFound || code == http.StatusRequestTimeout:
		ra := 0 * time.Second
		if code == http.StatusServiceUnavailable {
			ra = p.retryAfterOr(resp, 0)
		}
		return st, ra, true, &provider.Error{Kind: provider.KindUnavailable,
			Message: withDetail(fmt.Sprintf("polling upstream job %s: HTTP %d", id, code), p.errorDetail(raw, p.paths.pollMessage))}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return st, 0, false, &provider.Error{Kind: provider.KindConfig,
			Message: fmt.Sprintf("the upstream refused the status poll (HTTP %d): check the backend's headers and key", code)}
	case code < 200 || code > 299:
		return st, 0, false, &provider.Error{Kind: provider.KindUpstream,
			Message: withDetail(fmt.Sprintf("polling upstream job %s: unexpected HTTP %d", id, code), p.errorDetail(raw, p.paths.pollMessage))}
	}
	st, err = p.parsePoll(raw)
	if err != nil {
		return st, 0, false, err
	}
	if st.rateLimited {
		ra := p.retryAfterOr(resp, p.cfg.Accept.RateLimitRetryAfter)
		return st, ra, true, &provider.Error{Kind: provider.KindRateLimited, RetryAfter: ra,
			Message: withDetail("the upstream is rate limiting status polls", st.message)}
	}
	return st, 0, false, nil
}

// pollState is one decoded status answer.
type pollState struct {
	status string
	// done, failed and running classify status; rateLimited marks a
	// body-level rate-limit code.
	done, failed, running, rateLimited bool
	// progress is in [0,1], or -1 when the answer has none.
	progress float64
	urls     []string
	message  string
}

// parsePoll decodes a status answer. A body that is not JSON is a protocol
// error; everything else becomes a state.
func (p *Provider) parsePoll(raw []byte) (pollState, error) {
	pc := &p.cfg.Poll
	st := pollState{progress: -1}
	doc, err := decodeJSON(raw)
	if err != nil {
		return st, &provider.Error{Kind: provider.KindProtocol, Message: "the upstream's status answer is not JSON: " + snippet(raw), Err: err}
	}
	if v, ok := p.paths.pollMessage.Lookup(doc); ok {
		st.message = messageText(v)
	}
	if !p.paths.pollCode.IsZero() {
		code, ok := p.paths.pollCode.Lookup(doc)
		if !ok {
			return st, &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("the upstream's status answer has no %s: %s", pc.CodePath, snippet(raw))}
		}
		switch {
		case containsText(pc.RateLimitCodes, code):
			st.rateLimited = true
			return st, nil
		case !containsText(pc.CodeOK, code):
			text, _ := scalarText(code)
			st.failed = true
			st.message = withDetail("code "+text, st.message)
			return st, nil
		}
	}
	if v, ok := p.paths.status.Lookup(doc); ok {
		if s, ok := scalarText(v); ok {
			st.status = s
		}
	}
	status := strings.ToLower(strings.TrimSpace(st.status))
	if v, ok := p.paths.result.Lookup(doc); ok {
		st.urls = resultURLs(v, p.paths.resultItem)
	}
	if v, ok := p.paths.progress.Lookup(doc); ok {
		if f, ok := progressFraction(v); ok {
			st.progress = f
		}
	}
	switch {
	case p.failed[status]:
		st.failed = true
		if st.message == "" {
			st.message = "status " + st.status
		}
	case p.done[status] || (pc.DoneOnResult && len(st.urls) > 0):
		st.done = true
		if len(st.urls) == 0 {
			return st, &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("the upstream reports the job %q but gives no result URL at %s", st.status, pc.ResultPath)}
		}
	default:
		st.running = contains(lowerList(pc.RunningValues), status) || st.progress > 0
	}
	return st, nil
}

func lowerList(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToLower(strings.TrimSpace(s))
	}
	return out
}

// maxResultURLs bounds how many URLs one answer may list.
const maxResultURLs = 64

// resultURLs reads a string, a list of strings or a list of objects with a
// url member; empty entries are skipped.
func resultURLs(v any, item Path) []string {
	var out []string
	addURL := func(x any) {
		if s, ok := x.(string); ok && strings.TrimSpace(s) != "" && len(out) < maxResultURLs {
			out = append(out, strings.TrimSpace(s))
		}
	}
	switch x := v.(type) {
	case string:
		addURL(x)
	case []any:
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				u, _ := item.Lookup(m)
				addURL(u)
				continue
			}
			addURL(e)
		}
	case map[string]any:
		u, _ := item.Lookup(x)
		addURL(u)
	}
	return out
}

// progressFraction reads 0..1 or 0..100 (a number, or text with an
// optional '%'); values above 1 are percentages.
func progressFraction(v any) (float64, bool) {
	var f float64
	percent := false
	switch x := v.(type) {
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, false
		}
	case float64:
		f = x
	case string:
		s := strings.TrimSpace(x)
		if strings.HasSuffix(s, "%") {
			percent = true
			s = strings.TrimSpace(strings.TrimSuffix(s, "%"))
		}
		var err error
		if f, err = strconv.ParseFloat(s, 64); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, false
	}
	if percent || f > 1 {
		f /= 100
	}
	return min(f, 1), true
}
