package openaiapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Request bodies are read through a size cap and decoded strictly for the
// fields easel uses. encoding/json alone is too lenient for a gateway: it
// lets the last of two duplicate keys win, matches keys case-insensitively,
// accepts trailing garbage after the value and silently replaces invalid
// UTF-8 and lone surrogates with U+FFFD. Each of those could make easel act
// on something other than what a client (or a validating proxy in front of
// it) saw, so each is refused here with a 400 naming the field.

// bodyReadTimeout bounds how long a client may take to send a JSON body.
const bodyReadTimeout = 30 * time.Second

// readBody reads the whole body up to limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		// Refuse at once, without waiting for a body we will not read.
		return nil, tooLarge(limit)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Code: "invalid_body", Message: "The request body could not be read.", cause: err}
	}
	return data, nil
}

// object is a decoded JSON object: its non-null members by exact key.
type object map[string]json.RawMessage

// decodeObject parses data as exactly one JSON object. known are the keys
// the caller reads: a key that differs from one of them only in case is
// refused (param names the known key), and so is any duplicate key. Members
// whose value is null are dropped, because null means "not given".
// param names the object in errors ("" for the request body itself).
func decodeObject(data []byte, known []string, param string) (object, *apiError) {
	what := "The request body"
	if param != "" {
		what = "'" + param + "'"
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, invalidJSON(param, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, badRequest(param, "invalid_type", what+" must be a JSON object.")
	}
	obj := object{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalidJSON(param, err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalidJSON(param, err)
		}
		for _, k := range known {
			if key != k && strings.EqualFold(key, k) {
				return nil, badRequest(join(param, k), "invalid_value",
					"The key '"+truncate(key, 64)+"' differs from '"+k+"' only in case; send '"+k+"'.")
			}
		}
		if seen[key] {
			return nil, badRequest(join(param, truncate(key, 64)), "duplicate_key",
				"The key '"+truncate(key, 64)+"' appears more than once.")
		}
		seen[key] = true
		if string(raw) != "null" {
			obj[key] = raw
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, invalidJSON(param, err)
	}
	if param == "" {
		if _, err := dec.Token(); err != io.EOF {
			return nil, badRequest("", "invalid_json", "The request body has data after the JSON object.")
		}
	}
	return obj, nil
}

// decodeArray parses raw as a JSON array and returns its elements.
func decodeArray(raw json.RawMessage, param string) ([]json.RawMessage, *apiError) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, badRequest(param, "invalid_type", "'"+param+"' must be an array.")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, invalidJSON(param, err)
	}
	return elems, nil
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func invalidJSON(param string, err error) *apiError {
	e := badRequest(param, "invalid_json", "The request body is not valid JSON.")
	e.cause = err
	return e
}

// has reports whether the member is present and not null.
func (o object) has(key string) bool {
	_, ok := o[key]
	return ok
}

// str reads a string member. It refuses invalid UTF-8, lone surrogates and
// U+0000, which encoding/json would pass on altered or as is.
func (o object) str(key, param string) (string, bool, *apiError) {
	raw, ok := o[key]
	if !ok {
		return "", false, nil
	}
	s, err := strictString(raw)
	if err != nil {
		return "", false, badRequest(param, err.code, "'"+param+"' "+err.msg)
	}
	return s, true, nil
}

// integer reads an integer member within [lo, hi]. Only plain integer
// literals count: 1.5, 1e3, "2" and out-of-range values are refused.
func (o object) integer(key, param string, lo, hi int64) (int64, bool, *apiError) {
	raw, ok := o[key]
	if !ok {
		return 0, false, nil
	}
	bad := func() *apiError {
		return badRequest(param, "invalid_value", "'"+param+"' must be an integer between "+
			strconv.FormatInt(lo, 10)+" and "+strconv.FormatInt(hi, 10)+".")
	}
	if !isIntLiteral(raw) {
		if len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
			return 0, false, bad()
		}
		e := bad()
		e.Code = "invalid_type"
		return 0, false, e
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, false, bad()
	}
	return v, true, nil
}

// boolean reads a true/false member.
func (o object) boolean(key, param string) (bool, bool, *apiError) {
	raw, ok := o[key]
	if !ok {
		return false, false, nil
	}
	switch string(raw) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, badRequest(param, "invalid_type", "'"+param+"' must be a boolean.")
}

func isIntLiteral(raw []byte) bool {
	s := raw
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

type stringError struct {
	code, msg string
}

// strictString decodes a JSON string literal, refusing what encoding/json
// would silently repair.
func strictString(raw []byte) (string, *stringError) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", &stringError{"invalid_type", "must be a string."}
	}
	if !utf8.Valid(raw) {
		return "", &stringError{"invalid_encoding", "is not valid UTF-8."}
	}
	// Walk the escapes: every \u escape must be a scalar value or a proper
	// surrogate pair, and none may be U+0000.
	for i := 1; i < len(raw)-1; i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if raw[i] != 'u' {
			continue
		}
		v, ok := hex4(raw, i+1)
		if !ok {
			return "", &stringError{"invalid_json", "has a malformed escape."}
		}
		i += 4
		switch {
		case v == 0:
			return "", &stringError{"invalid_value", "must not contain U+0000."}
		case v >= 0xDC00 && v <= 0xDFFF:
			return "", &stringError{"invalid_encoding", "contains a lone surrogate."}
		case v >= 0xD800 && v <= 0xDBFF:
			if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return "", &stringError{"invalid_encoding", "contains a lone surrogate."}
			}
			lo, ok := hex4(raw, i+3)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return "", &stringError{"invalid_encoding", "contains a lone surrogate."}
			}
			i += 6
		}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &stringError{"invalid_json", "must be a valid JSON string."}
	}
	return s, nil
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var v rune
	for _, c := range b[at : at+4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			v |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			v |= rune(c-'A') + 10
		default:
			return 0, false
		}
	}
	return v, true
}

// maxPromptBytes caps a prompt's encoded size whatever its character count.
const maxPromptBytes = 128 << 10

// checkPrompt applies the prompt limits: non-blank, at most maxChars code
// points and maxPromptBytes bytes.
func checkPrompt(s, param string, maxChars int) *apiError {
	if strings.TrimSpace(s) == "" {
		return badRequest(param, "missing_required_parameter", "'"+param+"' must not be empty.")
	}
	if len(s) > maxPromptBytes || utf8.RuneCountInString(s) > maxChars {
		return badRequest(param, "string_above_max_length", "'"+param+"' is longer than "+
			strconv.Itoa(maxChars)+" characters or "+strconv.Itoa(maxPromptBytes)+" bytes.")
	}
	return nil
}

// maxSide bounds each side of a requested size.
const maxSide = 16384

// parseSize reads "auto" (0, 0) or "WIDTHxHEIGHT" with each side in
// 1..maxSide.
func parseSize(s string) (w, h int, ok bool) {
	if s == "auto" {
		return 0, 0, true
	}
	ws, hs, found := strings.Cut(s, "x")
	if !found {
		return 0, 0, false
	}
	w, ok1 := side(ws)
	h, ok2 := side(hs)
	return w, h, ok1 && ok2
}

func side(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 1 && n <= maxSide
}
