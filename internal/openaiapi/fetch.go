package openaiapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/easelgw/easel/internal/netguard"
)

// fetchImage downloads an http(s) image URL through the guarded Fetcher and
// maps its failures to client errors. The messages are deliberately
// generic: a refusal never says which address a name resolved to, and an
// upstream's error body is never echoed, so the endpoint cannot be used to
// map the gateway's network. The details go to the log only.
//
// A fetch that times out is a 400 (code image_url_timeout), not a 504: the
// URL is the client's input, and a 5xx would make the SDKs retry the whole
// request against the same slow host.
func (a *API) fetchImage(ctx context.Context, u, param string) ([]byte, error) {
	// The Fetcher enforces its own size cap (fetch.max_bytes); the request's
	// total budget still applies after it.
	resp, err := a.fetcher.Get(ctx, u)
	if err == nil {
		return resp.Body, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var blocked *netguard.BlockedError
	var status *netguard.StatusError
	e := badRequest(param, "image_url_fetch_failed", "The image URL could not be fetched.")
	switch {
	case errors.As(err, &blocked) && blocked.Reason == netguard.ReasonPort:
		e.Code, e.Message = "image_url_blocked", "The image URL uses a port that is not allowed."
	case errors.As(err, &blocked):
		e.Code, e.Message = "image_url_blocked", "The image URL points to a private or reserved address."
	case errors.Is(err, netguard.ErrCredentials):
		e.Code, e.Message = "invalid_value", "The image URL must not contain credentials."
	case errors.Is(err, netguard.ErrInvalidURL):
		e.Code, e.Message = "invalid_value", "The image URL is not a valid http(s) URL."
	case errors.Is(err, netguard.ErrTooLarge):
		e = tooLarge(0)
		e.Param, e.Message = param, "The image at the URL is larger than the fetch limit."
	case errors.As(err, &status):
		e.Message = "Fetching the image URL failed with HTTP " + strconv.Itoa(status.StatusCode) + "."
	case errors.Is(err, netguard.ErrTooManyRedirects):
		e.Message = "The image URL redirects too many times."
	case errors.Is(err, netguard.ErrTimeout):
		e.Code, e.Message = "image_url_timeout", "Fetching the image URL took too long."
	}
	e.cause = err
	if e.Status == 0 {
		e.Status = http.StatusBadRequest
	}
	return nil, e
}
