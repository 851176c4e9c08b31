package gradio

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"
)

// minLineCap is the smallest SSE line the reader accepts. Gradio frames
// are single lines of JSON; a completion carrying a data: URI image can be
// much longer, so the real cap grows with MaxResultBytes.
const minLineCap = 1 << 20

// errLineTooLong reports an SSE line over the cap.
var errLineTooLong = errors.New("SSE line exceeds the size limit")

// frameReader splits an SSE stream into the data payloads of its events.
// It accepts "data:x" and "data: x", LF, CRLF and CR line ends, frames split
// across reads or packed into one, and ignores event:, id:, retry: and
// comment lines. The stream carries Gradio's frames, so the event type is
// not needed: the JSON says what the message is.
type frameReader struct {
	sc   *bufio.Scanner
	data bytes.Buffer
	has  bool
	max  int
}

func newFrameReader(r io.Reader, lineCap int) *frameReader {
	lineCap = max(lineCap, minLineCap)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), lineCap)
	sc.Split(scanSSELines)
	return &frameReader{sc: sc, max: lineCap}
}

// scanSSELines splits on LF, CRLF or a lone CR.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			return i + 1, data[:i], nil
		}
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
		if atEOF {
			return i + 1, data[:i], nil
		}
		return 0, nil, nil // a CR at the end: wait to see if LF follows
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// Next returns the data of the next event. At the end of the stream it
// returns io.EOF; a last event without its blank line is still delivered,
// because a truncated but complete JSON frame is more useful than none.
func (f *frameReader) Next() ([]byte, error) {
	for f.sc.Scan() {
		line := f.sc.Bytes()
		if len(line) == 0 {
			if f.has {
				return f.take(), nil
			}
			continue
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if !found {
			value = nil
		}
		if len(field) == 0 {
			continue // comment
		}
		if string(field) != "data" {
			continue
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if f.has {
			f.data.WriteByte('\n')
		}
		if f.data.Len()+len(value) > f.max {
			return nil, errLineTooLong
		}
		f.data.Write(value)
		f.has = true
	}
	if err := f.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, errLineTooLong
		}
		return nil, err
	}
	if f.has {
		return f.take(), nil
	}
	return nil, io.EOF
}

func (f *frameReader) take() []byte {
	out := bytes.Clone(f.data.Bytes())
	f.data.Reset()
	f.has = false
	return out
}

// message is one queue/data frame. Every field is optional and may be null:
// the server's versions differ in which keys they send.
type message struct {
	Msg             string          `json:"msg"`
	EventID         *string         `json:"event_id"`
	Rank            *float64        `json:"rank"`
	QueueSize       *float64        `json:"queue_size"`
	RankETA         *float64        `json:"rank_eta"`
	ETA             *float64        `json:"eta"`
	ProgressData    []progressUnit  `json:"progress_data"`
	Log             *string         `json:"log"`
	Level           *string         `json:"level"`
	Title           *string         `json:"title"`
	Output          json.RawMessage `json:"output"`
	Success         *bool           `json:"success"`
	Message         *string         `json:"message"`
	SessionNotFound *bool           `json:"session_not_found"`
}

type progressUnit struct {
	Index    *float64 `json:"index"`
	Length   *float64 `json:"length"`
	Unit     *string  `json:"unit"`
	Progress *float64 `json:"progress"`
	Desc     *string  `json:"desc"`
}

// parseMessage decodes one frame.
func parseMessage(data []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// idleReader wraps a stream body and fires onIdle when no byte arrived for
// timeout. Heartbeats are bytes, so a live but busy upstream keeps it quiet.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
	once  sync.Once
}

// newIdleReader wraps r; timer is already armed (it also covers the wait
// for the response headers) and is reset by every read that brings bytes.
func newIdleReader(r io.Reader, timer *time.Timer, d time.Duration) *idleReader {
	return &idleReader{r: r, d: d, timer: timer}
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.timer.Reset(ir.d)
	}
	return n, err
}

func (ir *idleReader) stop() { ir.once.Do(func() { ir.timer.Stop() }) }
