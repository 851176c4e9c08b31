package jobapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// maxPathSteps bounds a path so that a configuration typo cannot describe
// an absurd walk.
const maxPathSteps = 64

// Path is a parsed location in a JSON value: object members by name and
// list elements by index.
//
// Syntax: member names separated by dots, each optionally followed by one
// or more [i] indexes; a path may start with an index. Examples: "code",
// "result.job_id", "data[0].url", "[0]", "outputs[1][0]". Member names
// cannot contain '.', '[' or ']'; that covers every API this backend
// targets and keeps the syntax free of quoting rules.
type Path struct {
	raw   string
	steps []step
}

type step struct {
	key   string
	index int // used when isIndex
	// isIndex selects a list element instead of an object member.
	isIndex bool
}

// ParsePath parses a path; an empty string is an error.
func ParsePath(s string) (Path, error) {
	if s == "" {
		return Path{}, errors.New("path is empty")
	}
	p := Path{raw: s}
	i := 0
	first := true
	for {
		if !first {
			if i >= len(s) || s[i] != '.' {
				return Path{}, fmt.Errorf("path %q: expected '.' at offset %d", s, i)
			}
			i++
		}
		start := i
		for i < len(s) && s[i] != '.' && s[i] != '[' && s[i] != ']' {
			i++
		}
		key := s[start:i]
		if key == "" && !(first && i < len(s) && s[i] == '[') {
			return Path{}, fmt.Errorf("path %q: empty member name at offset %d", s, start)
		}
		if key != "" {
			p.steps = append(p.steps, step{key: key})
		}
		for i < len(s) && s[i] == '[' {
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return Path{}, fmt.Errorf("path %q: unclosed '[' at offset %d", s, i)
			}
			digits := s[i+1 : i+end]
			n, err := strconv.Atoi(digits)
			if err != nil || n < 0 || digits == "" || digits[0] == '+' || digits[0] == '-' || n > 1<<20 {
				return Path{}, fmt.Errorf("path %q: index %q is not a small non-negative integer", s, digits)
			}
			p.steps = append(p.steps, step{index: n, isIndex: true})
			i += end + 1
		}
		if i < len(s) && s[i] == ']' {
			return Path{}, fmt.Errorf("path %q: unexpected ']' at offset %d", s, i)
		}
		if len(p.steps) > maxPathSteps {
			return Path{}, fmt.Errorf("path %q: more than %d steps", s, maxPathSteps)
		}
		first = false
		if i >= len(s) {
			return p, nil
		}
	}
}

// String returns the path as written.
func (p Path) String() string { return p.raw }

// IsZero reports whether p is the zero Path (no path configured).
func (p Path) IsZero() bool { return len(p.steps) == 0 }

// Lookup walks v (as decoded by encoding/json) along p. It reports false
// when a member or element is missing, when a step meets the wrong kind of
// value, or when p is zero. A JSON null found at the end counts as
// missing.
func (p Path) Lookup(v any) (any, bool) {
	if p.IsZero() {
		return nil, false
	}
	cur := v
	for _, s := range p.steps {
		if s.isIndex {
			list, ok := cur.([]any)
			if !ok || s.index >= len(list) {
				return nil, false
			}
			cur = list[s.index]
			continue
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[s.key]; !ok {
			return nil, false
		}
	}
	if cur == nil {
		return nil, false
	}
	return cur, true
}

// scalarText renders a scalar JSON value as text for comparisons: strings
// as they are, numbers in their JSON spelling, booleans as true/false.
// Objects and lists give false.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}
