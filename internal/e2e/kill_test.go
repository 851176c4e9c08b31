package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/easelgw/easel/internal/provider/jobapi/jobapitest"
)

// Settings of the kill storm (reliability spec D1, scaled to CI): jobs of
// 1.5 s at a job-API fake, submitted at 25 a second by a few clients,
// while the gateway is SIGKILLed at random moments and restarted.
const (
	stormJobs        = 200
	stormKills       = 6
	stormSubmitters  = 4
	stormRate        = 25 // submissions per second, all clients together
	stormJobDuration = 1500 * time.Millisecond
	stormConcurrency = 16
	// stormBudget bounds the whole test, kills and final checks included.
	stormBudget = 85 * time.Second
	// stormSettle bounds the wait for every job to end after the last
	// restart.
	stormSettle = 60 * time.Second
	// stormRequestTimeout bounds one HTTP exchange with easel, so a
	// request to a process that is being killed cannot hang a client.
	stormRequestTimeout = 10 * time.Second
	// stormResends is how many keys are sent again after the storm.
	stormResends = 20
)

// killConfig is the YAML of a gateway with one job-API backend at fake:
// the reference preset with its URLs and poll schedule pointed at the
// fake, serving model jobModel.
func killConfig(fake *jobapitest.Server, concurrency int, extraTop string) string {
	return extraTop + fmt.Sprintf(`log:
  level: info
images:
  url_ttl: 1h
backends:
  - name: i2i
    preset: aiimagetoimage-nano-banana
    concurrency: %d
    max_queue: 10000
    jobapi:
      submit:
        url: %q
      poll:
        url: %q
        interval: 100ms
        backoff: 2
        max_interval: 400ms
        deadline: 60s
models:
  - id: %s
    backends: [i2i]
`, concurrency, fake.SubmitURL(), fake.PollURLTemplate(), jobModel)
}

// stormJob is one client-side job of the storm.
type stormJob struct {
	index  int
	key    string
	prompt string
	w, h   int
	form   editForm

	// Written by the one submitter that owns the job until it is
	// accepted, read after the submitters are done.
	ids      []string // the id of every 202 answer
	attempts int
}

// killRecord says when one kill happened.
type killRecord struct {
	at       time.Duration // since the storm started
	accepted int64         // jobs accepted by then
	// polls is, per upstream job id known to the fake at the kill, how
	// many polls it had had: the process is dead, so any later poll
	// comes from a restarted process.
	polls map[string]int
}

// TestKillStorm is the SIGKILL storm: async jobs submitted while the
// gateway process is killed and restarted again and again must all
// succeed, each key with one job, each job with one readable result whose
// size proves it is the job's own, no job lost or listed twice, no partial
// file left, and the upstream called about once per job, resumed jobs
// polling their saved upstream id instead of submitting again.
func TestKillStorm(t *testing.T) {
	t.Parallel()
	budget, cancel := context.WithTimeout(context.Background(), stormBudget)
	defer cancel()
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 0x5eed))
	t.Logf("random seed %d", seed)

	fake := jobapitest.New(jobapitest.Options{JobDuration: stormJobDuration})
	t.Cleanup(fake.Close)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "easel.yaml")
	hooks := newHookReceiver()
	t.Cleanup(hooks.Close)
	hookTop := fmt.Sprintf("webhooks:\n  allow_private_networks: true\n  allowed_ports: [%d]\n", hooks.port())
	if err := os.WriteFile(cfgPath, []byte(killConfig(fake, stormConcurrency, hookTop)), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, cfgPath, dataDir, map[string]string{"EASEL_API_KEYS": testKey})
	client := &http.Client{Timeout: stormRequestTimeout}
	defer client.CloseIdleConnections()
	g.start()

	// Each job's input has its own size, and the fake's result takes the
	// input's size (match_input_image): a result of the wrong size is
	// another job's. Distinct sizes also make every result a distinct
	// blob, so each job writes a file of its own.
	run := strconv.FormatUint(seed%1e6, 36)
	jobs := make([]*stormJob, stormJobs)
	byPrompt := map[string]*stormJob{}
	for i := range jobs {
		w, h := 24+i%40, 24+i/40
		img, _ := gradient(w, h)
		j := &stormJob{index: i, key: fmt.Sprintf("storm-%s-%03d", run, i), prompt: fmt.Sprintf("storm %s job %03d", run, i), w: w, h: h}
		j.form = newEditForm(img, [][2]string{{"model", jobModel}, {"prompt", j.prompt}, {"async", "true"}, {"webhook_url", hooks.URL + "/hook"}})
		jobs[i] = j
		byPrompt[j.prompt] = j
	}

	// Submitters: paced together at stormRate, each re-sending a failed
	// submission with the same key and body until it gets a 202.
	var accepted atomic.Int64
	var failures sync.Map // error text -> count, for the log
	next := make(chan *stormJob)
	tokens := time.NewTicker(time.Second / stormRate)
	defer tokens.Stop()
	// Contract deviations that do not stop the storm: the first few are
	// reported, the rest counted.
	var deviations atomic.Int64
	deviation := func(format string, args ...any) {
		if deviations.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	var wg sync.WaitGroup
	// However the test ends, no submitter outlives it.
	defer func() { cancel(); wg.Wait() }()
	for range stormSubmitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				select {
				case <-tokens.C:
				case <-budget.Done():
					return
				}
				if err := submitUntilAccepted(budget, client, g, j, &failures, deviation); err != nil {
					// One refusal is enough to tell; stop the storm.
					t.Errorf("job %d (key %s): %v", j.index, j.key, err)
					cancel()
					return
				}
				accepted.Add(1)
			}
		}()
	}
	feedDone := make(chan struct{})
	go func() {
		defer close(feedDone)
		defer close(next)
		for _, j := range jobs {
			select {
			case next <- j:
			case <-budget.Done():
				return
			}
		}
	}()
	submitted := make(chan struct{})
	go func() { wg.Wait(); close(submitted) }()

	// The killer: each kill at a random moment after the last start; the
	// first two wait for some accepted jobs so they land mid-submission.
	start := time.Now()
	var kills []killRecord
	for k := range stormKills {
		if k < 2 {
			waitFor(t, 30*time.Second, "accepted jobs before a kill", func() bool { return budget.Err() != nil || accepted.Load() >= int64(10*(k+1)) })
		}
		delay := 400*time.Millisecond + time.Duration(rnd.Int64N(int64(1800*time.Millisecond)))
		select {
		case <-time.After(delay):
		case <-budget.Done():
			t.Fatalf("budget of %s spent (or the storm stopped) before kill %d", stormBudget, k+1)
		}
		g.kill()
		rec := killRecord{at: time.Since(start), accepted: accepted.Load(), polls: map[string]int{}}
		// A short outage: clients meanwhile see refused connections. The
		// poll counts are read at its end, so a poll the dead process had
		// already sent is counted before, not taken for a resumption.
		time.Sleep(50*time.Millisecond + time.Duration(rnd.Int64N(int64(250*time.Millisecond))))
		for _, id := range fake.JobIDs() {
			rec.polls[id] = fake.Polls(id)
		}
		kills = append(kills, rec)
		if budget.Err() != nil {
			t.FailNow()
		}
		g.start()
	}
	for k, r := range kills {
		t.Logf("kill %d at %s: %d/%d jobs accepted, %d upstream jobs known", k+1, r.at.Round(time.Millisecond), r.accepted, stormJobs, len(r.polls))
	}
	if kills[0].accepted >= stormJobs {
		t.Errorf("the first kill came after every submission; the storm must kill mid-submission")
	}

	select {
	case <-submitted:
	case <-budget.Done():
		t.Fatalf("submissions did not finish within %s; %d/%d accepted", stormBudget, accepted.Load(), stormJobs)
	}
	<-feedDone
	if n := deviations.Load(); n > 5 {
		t.Errorf("… and %d more such deviations", n-5)
	}
	if budget.Err() != nil {
		t.FailNow()
	}
	failures.Range(func(k, v any) bool {
		t.Logf("submission failures re-sent: %d× %s", v.(*atomic.Int64).Load(), k)
		return true
	})
	resent := 0
	for _, j := range jobs {
		resent += j.attempts - 1
	}

	// Every key maps to exactly one job id, whatever the number of
	// attempts it took.
	idOf := map[string]*stormJob{}
	for _, j := range jobs {
		for _, id := range j.ids[1:] {
			if id != j.ids[0] {
				t.Errorf("key %s got jobs %s and %s", j.key, j.ids[0], id)
			}
		}
		if o, dup := idOf[j.ids[0]]; dup {
			t.Errorf("keys %s and %s got the same job %s", o.key, j.key, j.ids[0])
		}
		idOf[j.ids[0]] = j
	}

	// Re-sending after restarts still gives the same job (D5 h).
	for _, i := range rnd.Perm(stormJobs)[:stormResends] {
		j := jobs[i]
		r, err := send(budget, client, g.url(), "/v1/images/edits", testKey, j.key, j.form)
		if err != nil {
			t.Fatalf("re-sending key %s: %v", j.key, err)
		}
		if r.status != http.StatusAccepted {
			t.Errorf("re-sending key %s: status %d, want 202: %s", j.key, r.status, truncateBytes(r.body))
			continue
		}
		var o jobObject
		if err := json.Unmarshal(r.body, &o); err != nil || o.ID != j.ids[0] {
			t.Errorf("re-sending key %s: job %q (%v), want %s", j.key, o.ID, err, j.ids[0])
		}
	}

	// Every accepted job ends, and succeeds, without operator action.
	settle, cancelSettle := context.WithTimeout(budget, stormSettle)
	defer cancelSettle()
	final := waitAllTerminal(t, settle, client, g, jobs)

	for _, j := range jobs {
		o := final[j.ids[0]]
		if o.Status != "succeeded" {
			t.Errorf("job %s (key %s) ended %s: %+v", o.ID, j.key, o.Status, o.Error)
			continue
		}
		if len(o.Data) != 1 {
			t.Errorf("job %s has %d images, want 1", o.ID, len(o.Data))
			continue
		}
		d := o.Data[0]
		if d.Width != j.w || d.Height != j.h || d.MIME != "image/png" {
			t.Errorf("job %s: image %dx%d %s, want its own input's %dx%d image/png", o.ID, d.Width, d.Height, d.MIME, j.w, j.h)
		}
		if err := fetchPNG(settle, client, g.url(), d.URL, j.w, j.h); err != nil {
			t.Errorf("job %s: %v", o.ID, err)
		}
	}

	// Webhooks: at least one delivery per job, every delivery of a job
	// with the same webhook-id (receivers de-duplicate on it).
	waitFor(t, stormSettle, "a webhook for every job", func() bool { return hooks.jobs() >= stormJobs || settle.Err() != nil })
	byJob := hooks.byJob()
	redelivered := 0
	for id, j := range idOf {
		ds := byJob[id]
		if len(ds) == 0 {
			t.Errorf("job %s (key %s) had no webhook delivery", id, j.key)
			continue
		}
		if len(ds) > 1 {
			redelivered++
		}
		for _, d := range ds {
			if d.msgID != ds[0].msgID || d.msgID == "" || d.typ != "image.job.succeeded" {
				t.Errorf("job %s: webhook deliveries %+v, want one webhook-id and type image.job.succeeded", id, ds)
				break
			}
		}
	}
	for id := range byJob {
		if _, ok := idOf[id]; !ok {
			t.Errorf("webhook for unknown job %q", id)
		}
	}
	t.Logf("webhooks: %d jobs notified, %d of them more than once (same webhook-id)", len(byJob), redelivered)

	// The list shows each accepted job exactly once, and nothing else.
	listed, err := listJobs(settle, client, g.url(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, id := range listed {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("job %s listed %d times", id, n)
		}
		if _, ok := idOf[id]; !ok {
			t.Errorf("job %s listed but never accepted", id)
		}
	}
	for id, j := range idOf {
		if seen[id] == 0 {
			t.Errorf("accepted job %s (key %s) is missing from the list", id, j.key)
		}
	}

	// Upstream cost: every job reached the service, and resubmissions are
	// bounded by what was in flight at the kills (at most the backend's
	// concurrency each time).
	submitsOf := map[string][]string{} // prompt -> upstream job ids
	upstreamJob := map[string]*stormJob{}
	log := fake.SubmitLog()
	for _, s := range log {
		if s.JobID == "" {
			t.Errorf("the fake refused a submit: %v", s.Fields)
			continue
		}
		j, ok := byPrompt[s.Fields["prompt"]]
		if !ok {
			t.Errorf("upstream submit with unknown prompt %q", s.Fields["prompt"])
			continue
		}
		submitsOf[j.prompt] = append(submitsOf[j.prompt], s.JobID)
		upstreamJob[s.JobID] = j
	}
	if len(log) != fake.Submits() {
		t.Errorf("fake journal holds %d submits of %d", len(log), fake.Submits())
	}
	var twice []string
	for _, j := range jobs {
		switch n := len(submitsOf[j.prompt]); {
		case n == 0:
			t.Errorf("job %s (key %s) never reached the upstream", j.ids[0], j.key)
		case n > 1:
			twice = append(twice, fmt.Sprintf("%s×%d", j.ids[0], n))
		}
	}
	// A job is submitted again only when a kill interrupted it: every
	// upstream job of it but the last was known to the fake at some kill.
	knownAtKill := map[string]bool{}
	for _, k := range kills {
		for uid := range k.polls {
			knownAtKill[uid] = true
		}
	}
	for _, j := range jobs {
		ups := submitsOf[j.prompt]
		for _, uid := range ups[:max(len(ups)-1, 0)] {
			if !knownAtKill[uid] {
				t.Errorf("job %s was submitted upstream again (%v) although no kill came after its upstream job %s", j.ids[0], ups, uid)
			}
		}
	}
	bound := stormJobs + len(kills)*stormConcurrency
	t.Logf("upstream: %d submits for %d jobs (bound %d); submitted more than once: %v", len(log), stormJobs, bound, twice)
	if len(log) > bound {
		t.Errorf("%d upstream submits for %d jobs, above the bound of %d (%d kills × concurrency %d in flight)", len(log), stormJobs, bound, len(kills), stormConcurrency)
	}

	// Resumption: an upstream job known before a kill, polled again by a
	// later process, whose easel job was never submitted a second time.
	resumed := map[string]bool{}
	for _, k := range kills {
		for uid, before := range k.polls {
			j, ok := upstreamJob[uid]
			if ok && fake.Polls(uid) > before && len(submitsOf[j.prompt]) == 1 {
				resumed[uid] = true
			}
		}
	}
	t.Logf("%d upstream jobs resumed by polling their saved id after a restart", len(resumed))
	if len(resumed) == 0 {
		t.Errorf("no job resumed polling its saved upstream id after a restart")
	}

	// A clean stop, then no temp file anywhere in the data directory and
	// every stored object whole: its name is the SHA-256 of its bytes.
	if err := g.stop(); err != nil {
		t.Errorf("SIGTERM: easel exited with %v, want status 0", err)
	}
	checkDataDir(t, dataDir, final)
	t.Logf("storm: %d jobs, %d kills, %d re-sent submissions, %s", stormJobs, len(kills), resent, time.Since(start).Round(time.Millisecond))
}

// submitUntilAccepted sends j until a 202, re-sending the same key and
// bytes after transport errors, 5xx answers and 409 (a claim of the key
// still in flight). Anything else is a failure of the test.
func submitUntilAccepted(ctx context.Context, c *http.Client, g *gateway, j *stormJob, failures *sync.Map, deviation func(string, ...any)) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("not accepted after %d attempts: %w", j.attempts, err)
		}
		base := g.url()
		if base == "" {
			// Down between a kill and the next start.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		j.attempts++
		r, err := send(ctx, c, base, "/v1/images/edits", testKey, j.key, j.form)
		var why string
		switch {
		case err != nil:
			why = transportClass(err)
		case r.status >= 500 || r.status == http.StatusConflict:
			why = "status " + strconv.Itoa(r.status)
		default:
			if r.status == http.StatusAccepted {
				var o jobObject
				if jerr := json.Unmarshal(r.body, &o); jerr == nil {
					j.ids = append(j.ids, o.ID)
				}
			}
			o, aerr := checkAccepted(r.status, r.header, r.body)
			if aerr != nil {
				return fmt.Errorf("attempt %d: %w", j.attempts, aerr)
			}
			// A first answer is the creation: the contract says the job
			// is queued. A re-send may see it further on. A wrong status
			// is reported without stopping the storm.
			if len(j.ids) == 1 && j.attempts == 1 && o.Status != "queued" {
				deviation("the 202 creating job %s (key %s) has status %q, want queued", o.ID, j.key, o.Status)
			}
			return nil
		}
		v, _ := failures.LoadOrStore(why, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
	}
}

// transportClass names a transport error without its addresses, to count
// failures by kind.
func transportClass(err error) string {
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "EOF", "broken pipe", "Client.Timeout", "deadline exceeded"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return "transport error"
}

// waitAllTerminal polls every job until it is terminal or ctx ends, and
// returns the last object of each.
func waitAllTerminal(t *testing.T, ctx context.Context, c *http.Client, g *gateway, jobs []*stormJob) map[string]*jobObject {
	t.Helper()
	final := map[string]*jobObject{}
	pending := make([]string, 0, len(jobs))
	for _, j := range jobs {
		pending = append(pending, j.ids[0])
	}
	for len(pending) > 0 {
		var still []string
		for _, id := range pending {
			o, err := getJob(ctx, c, g.url(), testKey, id)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				t.Fatalf("%v", err)
			}
			final[id] = o
			if !terminalStatus(o.Status) {
				still = append(still, id)
			}
		}
		if ctx.Err() != nil {
			counts := map[string]int{}
			for _, id := range pending {
				if o := final[id]; o != nil {
					counts[o.Status]++
				}
			}
			t.Fatalf("%d jobs not terminal in time (by status %v), e.g. %s", len(pending), counts, pending[0])
		}
		pending = still
		if len(pending) > 0 {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	return final
}

// fetchPNG downloads a result URL without credentials and checks it is a
// whole PNG of w×h.
func fetchPNG(ctx context.Context, c *http.Client, base, u string, w, h int) error {
	if !strings.HasPrefix(u, base+"/v1/files/") {
		return fmt.Errorf("result URL %q is not under %s/v1/files/", u, base)
	}
	r, err := getJSON(ctx, c, "", u, "")
	if err != nil {
		return fmt.Errorf("downloading %s: %w", u, err)
	}
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "image/png" {
		return fmt.Errorf("downloading %s: %d %s", u, r.status, r.header.Get("Content-Type"))
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(r.body))
	if err != nil {
		return fmt.Errorf("result is not a PNG: %w", err)
	}
	if _, err := png.Decode(bytes.NewReader(r.body)); err != nil {
		return fmt.Errorf("result PNG does not decode: %w", err)
	}
	if cfg.Width != w || cfg.Height != h {
		return fmt.Errorf("result PNG is %dx%d, want %dx%d", cfg.Width, cfg.Height, w, h)
	}
	return nil
}

// checkDataDir walks the data directory after a clean stop: no temp file
// anywhere, every blob named by the SHA-256 of its bytes, and every
// result of final present.
func checkDataDir(t *testing.T, dataDir string, final map[string]*jobObject) {
	t.Helper()
	blobs := map[string]bool{}
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if strings.HasPrefix(name, ".tmp-") || strings.HasSuffix(name, ".tmp") {
			t.Errorf("temp file left: %s", path)
			return nil
		}
		rel, _ := filepath.Rel(dataDir, path)
		if d.IsDir() || !strings.HasPrefix(rel, "blobs"+string(filepath.Separator)) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		if stem, _, _ := strings.Cut(name, "."); stem != hex.EncodeToString(sum[:]) {
			t.Errorf("blob %s does not match its SHA-256 (%d bytes): a partial or corrupt file", rel, len(data))
		}
		blobs[name] = true
		return nil
	})
	if err != nil {
		t.Fatalf("walking the data directory: %v", err)
	}
	for id, o := range final {
		for _, d := range o.Data {
			key := blobKeyOf(d.URL)
			if key == "" || !blobs[key] {
				t.Errorf("job %s: result %q has no file in the blob store", id, d.URL)
			}
		}
	}
}

// blobKeyOf extracts the key from a /v1/files/<key>?... URL.
func blobKeyOf(u string) string {
	_, rest, ok := strings.Cut(u, "/v1/files/")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(rest, "?")
	return key
}

// Settings of the events-across-a-restart test.
const (
	eventsJobDuration = 3 * time.Second
	eventsBudget      = 60 * time.Second
)

// TestKillEventsReplay opens a running job's event stream, kills the
// gateway mid-job, restarts it and opens the stream again. Per the
// contract ("first replays every event so far, then streams live; ends
// after the terminal event"): each open starts with the job's queued
// event; after the restart the stream continues to the end and closes
// after one terminal event carrying the finished job; ids name their
// server run, so a Last-Event-ID from before the restart replays from the
// start and one from this run resumes after it; an open after the end
// replays the same history.
func TestKillEventsReplay(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), eventsBudget)
	defer cancel()
	fake, g, client, job := oneAsyncJob(ctx, t, eventsJobDuration, "events-replay", "events across a restart")

	// Open the stream once the job runs upstream (the fake has its
	// submit): the replay must still start with the job's queued event.
	// Read up to the first live progress report, then kill with the
	// stream open.
	waitFor(t, 20*time.Second, "the job's upstream submit", func() bool { return len(fake.JobIDs()) > 0 })
	before, ended, err := readEvents(ctx, client, g.url(), job.ID, func(seen []sseEvent) bool {
		return seen[len(seen)-1].Event == "progress"
	})
	if err != nil {
		t.Fatalf("events before the kill: %v", err)
	}
	if ended {
		t.Fatalf("the stream ended before the kill (job shorter than the test assumes): %v", eventTypes(before))
	}
	checkEventStream(t, job.ID, before, false)
	g.kill()
	g.start()

	after, ended, err := readEvents(ctx, client, g.url(), job.ID, nil)
	if err != nil {
		t.Fatalf("events after the restart: %v", err)
	}
	if !ended {
		t.Fatalf("the stream after the restart did not end: %v", eventTypes(after))
	}
	t.Logf("events before the kill %v, after the restart %v", eventTypes(before), eventTypes(after))
	t.Run("reopened stream runs to the finished job", func(t *testing.T) {
		checkEventStream(t, job.ID, after, true)
	})
	t.Run("an id from before the restart replays from the start", func(t *testing.T) {
		// The earlier run's live progress died with it, so the new run's
		// sequence does not line up with it: event ids name their run,
		// and a client reconnecting with an old id gets everything again
		// instead of silently skipping events it never saw.
		if epochOf(before[0].ID) == epochOf(after[0].ID) {
			t.Fatalf("ids before (%s) and after (%s) the restart name the same run", before[0].ID, after[0].ID)
		}
		again, ended, err := readEventsAfter(ctx, client, g.url(), job.ID, before[len(before)-1].ID, nil)
		if err != nil || !ended {
			t.Fatalf("reconnect with an old id: ended %v, %v", ended, err)
		}
		if a, b := eventTypes(again), eventTypes(after); !slices.Equal(a, b) {
			t.Errorf("reconnect with an id from before the restart:\n%v\nwant the full replay\n%v", a, b)
		}
	})
	t.Run("an id from this run resumes after it", func(t *testing.T) {
		k := len(after) / 2
		rest, ended, err := readEventsAfter(ctx, client, g.url(), job.ID, after[k].ID, nil)
		if err != nil || !ended {
			t.Fatalf("reconnect with Last-Event-ID %s: ended %v, %v", after[k].ID, ended, err)
		}
		if a, b := eventTypes(rest), eventTypes(after[k+1:]); !slices.Equal(a, b) {
			t.Errorf("resumed after %s:\n%v\nwant\n%v", after[k].ID, a, b)
		}
	})
	t.Run("replay after the end is the same history", func(t *testing.T) {
		again, ended, err := readEvents(ctx, client, g.url(), job.ID, nil)
		if err != nil || !ended {
			t.Fatalf("events after the end: ended %v, %v", ended, err)
		}
		if a, b := eventTypes(again), eventTypes(after); !slices.Equal(a, b) {
			t.Errorf("a second replay differs:\n%v\n%v", a, b)
		}
	})
	if err := g.stop(); err != nil {
		t.Errorf("SIGTERM: easel exited with %v, want status 0", err)
	}
}

// readEvents opens the job's event stream and reads it until it ends
// (ended true) or stop, called after each event, returns true.
func readEvents(ctx context.Context, c *http.Client, base, id string, stop func([]sseEvent) bool) ([]sseEvent, bool, error) {
	return readEventsAfter(ctx, c, base, id, "", stop)
}

// readEventsAfter is readEvents reconnecting with Last-Event-ID lastID.
func readEventsAfter(ctx context.Context, c *http.Client, base, id, lastID string, stop func([]sseEvent) bool) ([]sseEvent, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/images/jobs/"+id+"/events", nil)
	if err != nil {
		return nil, false, err
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, false, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return nil, false, fmt.Errorf("Content-Type %q", ct)
	}
	var seen []sseEvent
	stopped := false
	err = readSSE(resp.Body, func(e sseEvent) bool {
		seen = append(seen, e)
		if stop != nil && stop(seen) {
			stopped = true
			return false
		}
		return true
	})
	if err != nil {
		return seen, false, err
	}
	return seen, !stopped, nil
}

func eventTypes(evs []sseEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID + ":" + e.Event
	}
	return out
}

// checkEventStream checks the contract's event shape: numeric increasing
// ids, data naming its type and job, queued first, and (complete) exactly
// one terminal event, last, carrying the succeeded job with its image.
// epochOf is the run part of an event id.
func epochOf(id string) string {
	run, _, _ := strings.Cut(id, ".")
	return run
}

func checkEventStream(t *testing.T, id string, evs []sseEvent, complete bool) {
	t.Helper()
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	last := int64(-1)
	terminals := 0
	for i, e := range evs {
		// Ids are "<run>.<n>": one run per stream, n increasing.
		run, num, _ := strings.Cut(e.ID, ".")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n <= last || run == "" || run != epochOf(evs[0].ID) {
			t.Errorf("event %d: id %q after %d, want <run>.<increasing number>", i, e.ID, last)
		}
		last = n
		var d eventData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Errorf("event %s (%s): data is not JSON: %v: %s", e.ID, e.Event, err, truncateBytes(e.Data))
			continue
		}
		if d.Type != e.Event || d.JobID != id {
			t.Errorf("event %s: event %q, data type %q job %q", e.ID, e.Event, d.Type, d.JobID)
		}
		if _, err := time.Parse(time.RFC3339Nano, d.Time); err != nil {
			t.Errorf("event %s: time %q: %v", e.ID, d.Time, err)
		}
		if terminalStatus(e.Event) {
			terminals++
			if i != len(evs)-1 {
				t.Errorf("terminal event %s (%s) is not the last", e.ID, e.Event)
			}
			if e.Event != "succeeded" {
				t.Errorf("job ended %s: %s", e.Event, truncateBytes(e.Data))
			} else if d.Job == nil || d.Job.Status != "succeeded" || len(d.Job.Data) != 1 {
				t.Errorf("terminal event's job: %s", truncateBytes(e.Data))
			}
		}
	}
	if evs[0].Event != "queued" {
		t.Errorf("first event %s, want queued: %s", evs[0].Event, truncateBytes(evs[0].Data))
	}
	if complete && terminals != 1 {
		t.Errorf("%d terminal events, want exactly 1: %v", terminals, eventTypes(evs))
	}
	if !complete && terminals != 0 {
		t.Errorf("terminal event before the end: %v", eventTypes(evs))
	}
}

// oneAsyncJob starts a gateway subprocess on a job-API fake whose jobs take
// d, and submits one async edit; the caller stops the gateway.
func oneAsyncJob(ctx context.Context, t *testing.T, d time.Duration, idemKey, prompt string) (*jobapitest.Server, *gateway, *http.Client, *jobObject) {
	t.Helper()
	fake := jobapitest.New(jobapitest.Options{JobDuration: d, Progress: true})
	t.Cleanup(fake.Close)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "easel.yaml")
	if err := os.WriteFile(cfgPath, []byte(killConfig(fake, 2, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, cfgPath, filepath.Join(dir, "data"), map[string]string{"EASEL_API_KEYS": testKey})
	client := &http.Client{}
	t.Cleanup(client.CloseIdleConnections)
	g.start()
	img, _ := gradient(48, 32)
	r, err := send(ctx, client, g.url(), "/v1/images/edits", testKey, idemKey, asyncEdit(jobModel, prompt, img))
	if err != nil {
		t.Fatal(err)
	}
	requireAPI(t, r)
	job, err := checkAccepted(r.status, r.header, r.body)
	if err != nil {
		t.Fatal(err)
	}
	return fake, g, client, job
}

// hookReceiver is a webhook endpoint on loopback that records every
// delivery and answers 200.
type hookReceiver struct {
	*httptest.Server
	mu         sync.Mutex
	deliveries map[string][]hookDelivery // by data.id
}

type hookDelivery struct {
	msgID, typ string
}

func newHookReceiver() *hookReceiver {
	h := &hookReceiver{deliveries: map[string][]hookDelivery{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Type string `json:"type"`
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.deliveries[p.Data.ID] = append(h.deliveries[p.Data.ID], hookDelivery{msgID: r.Header.Get("webhook-id"), typ: p.Type})
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	return h
}

func (h *hookReceiver) port() int {
	return h.Listener.Addr().(*net.TCPAddr).Port
}

// jobs is how many distinct jobs were notified.
func (h *hookReceiver) jobs() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.deliveries)
}

func (h *hookReceiver) byJob() map[string][]hookDelivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]hookDelivery, len(h.deliveries))
	for k, v := range h.deliveries {
		out[k] = append([]hookDelivery(nil), v...)
	}
	return out
}
