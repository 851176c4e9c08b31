package gradiotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// routeCall serves the simple call API: POST call/{api}, GET
// call/{api}/{id} and, from 6.13, their call/v2 forms.
func (s *Server) routeCall(w http.ResponseWriter, r *http.Request, rest string) {
	v2 := false
	if s.opts.Version == 6 && s.opts.Minor >= 13 && strings.HasPrefix(rest, "v2/") {
		v2 = true
		rest = rest[len("v2/"):]
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 1 && r.Method == http.MethodPost:
		s.handleCallPost(w, r, parts[0], v2)
	case len(parts) == 2 && r.Method == http.MethodGet:
		s.handleCallGet(w, r, parts[1])
	case len(parts) <= 2:
		methodIs(w, r, map[bool]string{true: http.MethodPost, false: http.MethodGet}[len(parts) == 1])
	default:
		notFound(w)
	}
}

func (s *Server) handleCallPost(w http.ResponseWriter, r *http.Request, api string, v2 bool) {
	raw, err := readBody(w, r, maxJSONBody)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, object{{"detail", "Request body too large."}})
		return
	}
	ep := s.byName[api]
	var data []any
	var hash string
	if v2 {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil || m == nil {
			writeJSON(w, http.StatusUnprocessableEntity, object{{"detail", []any{object{
				{"type", "json_invalid"}, {"loc", []any{"body", 0}}, {"msg", "JSON decode error"}, {"input", object{}},
			}}}})
			return
		}
		if ep == nil {
			internalError(w)
			return
		}
		if v, ok := m["session_hash"]; ok {
			_ = json.Unmarshal(v, &hash)
		}
		var missing []string
		for i, c := range ep.Inputs {
			if describe(c).skipAPI {
				data = append(data, nil)
				continue
			}
			name := c.Name
			if name == "" {
				name = fmt.Sprintf("param_%d", i)
			}
			v, ok := m[name]
			if !ok {
				if c.Value == nil {
					missing = append(missing, name)
				}
				// Defaults reach the function as JSON values, as if sent.
				var x any
				_ = json.Unmarshal(mustJSON(c.Value), &x)
				data = append(data, x)
				continue
			}
			var x any
			_ = json.Unmarshal(v, &x)
			data = append(data, x)
		}
		if missing != nil {
			missingFields(w, raw, m, missing...)
			return
		}
	} else {
		jb, m, ok := parsePredictBody(w, raw)
		if !ok {
			return
		}
		if ep == nil {
			internalError(w)
			return
		}
		if v, ok := m["session_hash"]; ok {
			_ = json.Unmarshal(v, &hash)
		}
		data = padSkipped(ep, jb.data)
	}
	id := newID()
	if hash == "" {
		hash = id
	}
	s.admit(w, r, ep, raw, data, hash, id, true)
}

// padSkipped inserts nulls for skip_api inputs (gr.State) when the caller
// sent only the API-visible values, as prepare_simple_api_data does.
func padSkipped(ep *endpoint, data []any) []any {
	visible := 0
	for _, c := range ep.Inputs {
		if !describe(c).skipAPI {
			visible++
		}
	}
	if len(data) != visible || visible == len(ep.Inputs) {
		return data
	}
	out := make([]any, 0, len(ep.Inputs))
	j := 0
	for _, c := range ep.Inputs {
		if describe(c).skipAPI {
			out = append(out, nil)
			continue
		}
		out = append(out, data[j])
		j++
	}
	return out
}

func (s *Server) handleCallGet(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	sess := s.callSess[id]
	s.mu.Unlock()
	if sess == nil {
		notFound(w)
		return
	}
	sseHeaders(w)
	s.stream(w, r, sess, id)
}
