package gradiotest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"unicode/utf8"
)

// kv is one member of an ordered JSON object.
type kv struct {
	k string
	v any
}

// object is a JSON object that keeps its member order, because Gradio
// (orjson over pydantic models) emits fields in model order and clients and
// tests may read transcripts byte by byte.
type object []kv

// MarshalJSON writes the members in order, without HTML escaping.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := compactJSON(m.k)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := compactJSON(m.v)
		if err != nil {
			return nil, fmt.Errorf("encoding field %q: %w", m.k, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// compactJSON encodes v like orjson: compact, raw UTF-8, no HTML escaping.
func compactJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// mustJSON is compactJSON for values built by the fake itself; a failure
// there is a programming error in a RunFunc's output, reported as a string.
func mustJSON(v any) []byte {
	b, err := compactJSON(v)
	if err != nil {
		b, _ = compactJSON(fmt.Sprintf("unencodable value: %v", err))
	}
	return b
}

// pythonJSON re-spaces compact JSON the way Python's json.dumps does by
// default: ", " and ": " separators and non-ASCII escaped as \uXXXX.
func pythonJSON(compact []byte) []byte {
	out := make([]byte, 0, len(compact)+len(compact)/8)
	inStr := false
	for i := 0; i < len(compact); {
		c := compact[i]
		if inStr {
			switch {
			case c == '\\':
				out = append(out, c, compact[i+1])
				i += 2
				continue
			case c == '"':
				inStr = false
			case c >= utf8.RuneSelf:
				r, n := utf8.DecodeRune(compact[i:])
				if r >= 0x10000 {
					r -= 0x10000
					out = appendU(out, 0xD800+(r>>10))
					out = appendU(out, 0xDC00+(r&0x3FF))
				} else {
					out = appendU(out, r)
				}
				i += n
				continue
			}
			out = append(out, c)
			i++
			continue
		}
		switch c {
		case '"':
			inStr = true
			out = append(out, c)
		case ',':
			out = append(out, ',', ' ')
		case ':':
			out = append(out, ':', ' ')
		default:
			out = append(out, c)
		}
		i++
	}
	return out
}

func appendU(b []byte, r rune) []byte {
	s := strconv.FormatInt(int64(r), 16)
	b = append(b, '\\', 'u')
	for i := len(s); i < 4; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// FileData is Gradio's file descriptor (gradio.data_classes.FileData). It is
// a map so callers can read and adjust it freely; it encodes known fields in
// Gradio's model order, then any others sorted.
type FileData map[string]any

var fileDataOrder = []string{"path", "url", "size", "orig_name", "mime_type", "is_stream", "meta"}

// MarshalJSON writes the fields in Gradio's model order.
func (f FileData) MarshalJSON() ([]byte, error) {
	o := make(object, 0, len(f))
	seen := map[string]bool{}
	for _, k := range fileDataOrder {
		if v, ok := f[k]; ok {
			o = append(o, kv{k, v})
			seen[k] = true
		}
	}
	var rest []string
	for k := range f {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		o = append(o, kv{k, f[k]})
	}
	return o.MarshalJSON()
}

// GalleryItem builds one Gallery value entry: {"image": FileData, "caption": …}.
func GalleryItem(img FileData, caption *string) any {
	var c any
	if caption != nil {
		c = *caption
	}
	return object{{"image", img}, {"caption", c}}
}

// Update builds a component update value such as {"__type__":"update","visible":true}.
func Update(props map[string]any) any {
	o := object{{"__type__", "update"}}
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		o = append(o, kv{k, props[k]})
	}
	return o
}

// fileMeta is the meta object every FileData carries.
func fileMeta() object { return object{{"_type", "gradio.FileData"}} }

// ExternalFile is an output FileData whose path and url are an external
// http(s) URL, as when an app returns a link instead of a file.
func ExternalFile(url, name string) FileData {
	return FileData{"path": url, "url": url, "size": nil, "orig_name": name, "mime_type": nil,
		"is_stream": false, "meta": map[string]any{"_type": "gradio.FileData"}}
}

// DataURLFile is an output FileData carried inline as a data: URL with a
// null path, as Gradio sends SVG and base64-streamed images.
func DataURLFile(mimeType string, data []byte) FileData {
	return FileData{"path": nil, "url": "data:" + mimeType + ";base64," + base64.StdEncoding.EncodeToString(data),
		"size": nil, "orig_name": nil, "mime_type": nil, "is_stream": false, "meta": map[string]any{"_type": "gradio.FileData"}}
}
