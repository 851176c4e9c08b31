package jobapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/easelgw/easel/internal/imageio"
	"github.com/easelgw/easel/internal/provider"
	"github.com/easelgw/easel/internal/provider/upstream"
)

// fetchRetryBase is the wait before the second download attempt; each
// later attempt waits twice as long.
const fetchRetryBase = 500 * time.Millisecond

// errExpired marks a result URL answering 403: typically a signed URL that
// expired, which a fresh status answer replaces.
var errExpired = errors.New("result URL refused (HTTP 403)")

// collect downloads the results of finished job id: the first req.N URLs
// (at least one). A URL answering 403 triggers one fresh poll for new URLs.
func (p *Provider) collect(ctx context.Context, id string, req *provider.Request, urls []string) (*provider.Result, error) {
	want := min(max(req.N, 1), len(urls))
	res := &provider.Result{UpstreamID: id}
	refreshed := false
	for i := 0; i < want; i++ {
		img, err := p.fetchOne(ctx, id, urls[i])
		if errors.Is(err, errExpired) && !refreshed {
			refreshed = true
			st, _, _, perr := p.pollOnce(ctx, id)
			if perr == nil && st.done && len(st.urls) > i {
				urls = st.urls
				want = min(max(req.N, 1), len(urls))
				img, err = p.fetchOne(ctx, id, urls[i])
			}
		}
		if err != nil {
			if pe, ok := provider.AsError(err); ok {
				return nil, pe
			}
			return nil, &provider.Error{Kind: provider.KindUpstream, Message: fmt.Sprintf("result of upstream job %s unavailable (HTTP 403)", id), Err: err}
		}
		res.Images = append(res.Images, img)
	}
	return res, nil
}

// fetchOne downloads one result URL, resolved against the poll URL, trying
// up to Fetch.Attempts times on 404, 429, 5xx and broken transfers.
func (p *Provider) fetchOne(ctx context.Context, id, raw string) (provider.Image, error) {
	base, _ := url.Parse(p.pollURL(id))
	ref, err := url.Parse(raw)
	if err != nil {
		return provider.Image{}, &provider.Error{Kind: provider.KindProtocol, Message: "the upstream job gave an unreadable result URL", Err: err}
	}
	u := base.ResolveReference(ref)
	if u.Scheme != "http" && u.Scheme != "https" {
		return provider.Image{}, &provider.Error{Kind: provider.KindProtocol, Message: fmt.Sprintf("the upstream job gave a result URL with scheme %q", u.Scheme)}
	}
	var last error
	wait := fetchRetryBase
	for attempt := 1; attempt <= p.cfg.Fetch.Attempts; attempt++ {
		if attempt > 1 {
			if err := p.sleep(ctx, wait); err != nil {
				return provider.Image{}, upstream.CanceledError(ctx, "downloading the result")
			}
			wait *= 2
		}
		img, retry, err := p.download(ctx, u)
		if err == nil {
			return img, nil
		}
		if !retry {
			return provider.Image{}, err
		}
		last = err
		if ra, ok := retryAfterOf(err); ok {
			wait = max(wait, min(ra, 10*time.Second))
		}
	}
	msg := fmt.Sprintf("result unavailable: upstream job %s finished but its result could not be downloaded after %d attempts", id, p.cfg.Fetch.Attempts)
	if pe, ok := provider.AsError(last); ok && pe.Message != "" {
		msg += " (" + pe.Message + ")"
	}
	return provider.Image{}, &provider.Error{Kind: provider.KindUpstream, Message: msg, Err: last}
}

func retryAfterOf(err error) (time.Duration, bool) {
	pe, ok := provider.AsError(err)
	if !ok || pe.RetryAfter <= 0 {
		return 0, false
	}
	return pe.RetryAfter, true
}

// download makes one GET of a result. retry tells whether another attempt
// may succeed.
func (p *Provider) download(ctx context.Context, u *url.URL) (img provider.Image, retry bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	req, err := p.newRequest(cctx, http.MethodGet, u.String(), nil, callFetch)
	if err != nil {
		return img, false, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		te := transportError(ctx, err, "downloading the result")
		return img, te.Kind != provider.KindCanceled, te
	}
	defer resp.Body.Close()
	code := resp.StatusCode
	switch {
	case code == http.StatusForbidden:
		return img, false, errExpired
	case code == http.StatusNotFound || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return img, true, &provider.Error{Kind: provider.KindUpstream, Message: fmt.Sprintf("HTTP %d", code),
			RetryAfter: p.retryAfterOr(resp, 0)}
	case code < 200 || code > 299:
		return img, false, &provider.Error{Kind: provider.KindUpstream, Message: fmt.Sprintf("result unavailable (HTTP %d)", code)}
	}
	limit := p.cfg.Fetch.MaxBytes
	if resp.ContentLength > limit {
		return img, false, &provider.Error{Kind: provider.KindProtocol,
			Message: fmt.Sprintf("upstream response too large: the result is %d bytes, over the %d-byte limit", resp.ContentLength, limit)}
	}
	data, tooBig, err := upstream.ReadLimited(resp.Body, limit)
	if tooBig {
		return img, false, &provider.Error{Kind: provider.KindProtocol,
			Message: fmt.Sprintf("upstream response too large: the result exceeds the %d-byte limit", limit)}
	}
	if err != nil {
		if ctx.Err() != nil {
			return img, false, upstream.CanceledError(ctx, "downloading the result")
		}
		return img, true, &provider.Error{Kind: provider.KindUpstream, Message: "the result download broke off", Err: err}
	}
	mime, ok := imageio.Sniff(data)
	if !ok {
		return img, false, &provider.Error{Kind: provider.KindProtocol,
			Message: fmt.Sprintf("the result is not a PNG, JPEG, WebP or GIF image (its bytes look like %s)", http.DetectContentType(data))}
	}
	return provider.Image{Data: data, MIME: mime}, false, nil
}
