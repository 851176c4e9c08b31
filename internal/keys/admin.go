package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/easelgw/easel/internal/store"
)

// maxAdminBody caps an admin request body; a key spec is a few hundred
// bytes.
const maxAdminBody = 64 << 10

// Register adds the admin API and the webhook-secret endpoint to mux:
//
//	GET    /admin/keys          list database keys (admin scope)
//	POST   /admin/keys          create one; 201 with the key and its webhook secret, shown once
//	DELETE /admin/keys/{id}     revoke one; 200 with the record
//	GET    /v1/webhooks/secret  the caller's own webhook signing secret
//
// A key without the admin scope gets 403 insufficient_scope on /admin.
// Any key may read its own webhook secret: it is what the key's owner
// needs to verify the deliveries made for it, and it signs nothing the
// key could not already cause.
func (s *Service) Register(mux *http.ServeMux) {
	mux.Handle("GET /admin/keys", s.admin(handle(s.listKeys)))
	mux.Handle("POST /admin/keys", s.admin(handle(s.createKey)))
	mux.Handle("DELETE /admin/keys/{id}", s.admin(handle(s.revokeKey)))
	mux.Handle("GET /v1/webhooks/secret", handle(s.webhookSecret))
}

// apiError is an error with its place in the OpenAI envelope.
type apiError struct {
	status           int
	typ, code, param string
	message          string
}

func (e *apiError) Error() string { return e.message }

// handle adapts a JSON handler: the response is the handler's value with
// its status, or the error in the OpenAI envelope.
func handle[Resp any](f func(ctx context.Context, r *http.Request) (int, *Resp, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, resp, err := f(r.Context(), r)
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		if err != nil {
			writeAPIError(w, err)
			return
		}
		body, err := json.Marshal(resp)
		if err != nil {
			writeAPIError(w, fmt.Errorf("encoding response: %w", err))
			return
		}
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(append(body, '\n'))
	})
}

func writeAPIError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, typ: "server_error", code: "internal_error",
			message: "The server had an error while processing your request."}
	}
	var param any
	if ae.param != "" {
		param = ae.param
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": ae.message,
		"type":    ae.typ,
		"param":   param,
		"code":    ae.code,
	}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.status)
	_, _ = w.Write(append(body, '\n'))
}

// admin lets only keys with the admin scope through.
func (s *Service) admin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := FromContext(r.Context())
		switch {
		case !ok:
			w.Header().Set("Cache-Control", "no-store")
			writeAPIError(w, &apiError{status: http.StatusForbidden, typ: "invalid_request_error", code: "insufficient_scope",
				message: "The admin API needs an admin key, and auth is off (no keys exist): create one with `easel keys create --admin`."})
		case !id.Admin:
			w.Header().Set("Cache-Control", "no-store")
			writeAPIError(w, &apiError{status: http.StatusForbidden, typ: "invalid_request_error", code: "insufficient_scope",
				message: "This API key lacks the admin scope."})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// keyList is the body of GET /admin/keys.
type keyList struct {
	Object string    `json:"object"`
	Data   []KeyInfo `json:"data"`
}

func (s *Service) listKeys(ctx context.Context, _ *http.Request) (int, *keyList, error) {
	infos, err := s.ListKeys(ctx)
	if err != nil {
		s.log.Error("listing keys", "err", err)
		return 0, nil, err
	}
	return http.StatusOK, &keyList{Object: "list", Data: infos}, nil
}

// createRequest is the body of POST /admin/keys.
type createRequest struct {
	Name       string        `json:"name"`
	Admin      bool          `json:"admin"`
	Limits     LimitSettings `json:"limits"`
	WebhookURL string        `json:"webhook_url"`
}

func (s *Service) createKey(ctx context.Context, r *http.Request) (int, *Created, error) {
	var req createRequest
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return 0, nil, badRequest("", "The body must be a JSON object with name, and optionally admin, limits and webhook_url: "+decodeProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return 0, nil, badRequest("", "The body must hold one JSON object.")
	}
	created, err := s.CreateKey(ctx, Spec(req))
	var se *SpecError
	if errors.As(err, &se) {
		return 0, nil, badRequest(se.Param, se.Error())
	}
	if err != nil {
		s.log.Error("creating key", "err", err)
		return 0, nil, err
	}
	s.log.Info("API key created", "key_id", created.ID, "admin", req.Admin, "by", callerID(ctx))
	return http.StatusCreated, created, nil
}

func (s *Service) revokeKey(ctx context.Context, r *http.Request) (int, *KeyInfo, error) {
	id := r.PathValue("id")
	info, err := s.RevokeKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, &apiError{status: http.StatusNotFound, typ: "invalid_request_error", code: "key_not_found",
			param: "id", message: "No API key has that id."}
	}
	if err != nil {
		s.log.Error("revoking key", "err", err)
		return 0, nil, err
	}
	s.log.Info("API key revoked", "key_id", info.ID, "by", callerID(ctx))
	return http.StatusOK, info, nil
}

// webhookSecretResponse is the body of GET /v1/webhooks/secret.
type webhookSecretResponse struct {
	Object string `json:"object"`
	KeyID  string `json:"key_id"`
	Secret string `json:"secret"`
}

func (s *Service) webhookSecret(ctx context.Context, _ *http.Request) (int, *webhookSecretResponse, error) {
	id, ok := FromContext(ctx)
	if !ok {
		id = s.Anonymous()
	}
	return http.StatusOK, &webhookSecretResponse{Object: "webhook_secret", KeyID: id.KeyID, Secret: id.WebhookSecret}, nil
}

func callerID(ctx context.Context) string {
	id, _ := FromContext(ctx)
	return id.KeyID
}

func badRequest(param, msg string) error {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", code: "invalid_request", param: param, message: msg}
}

// decodeProblem describes a JSON decoding failure without echoing the
// body (which may hold anything).
func decodeProblem(err error) string {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return fmt.Sprintf("it is larger than %d bytes", maxAdminBody)
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	case errors.Is(err, io.EOF):
		return "it is empty"
	default:
		// Unknown fields: the decoder names the field, which came from
		// the client's own request.
		return err.Error()
	}
}
