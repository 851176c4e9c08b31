package openaiapi

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func TestReadersKeepOneExactCopy(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 17} {
		data := bytes.Repeat([]byte{7, 1, 9}, size/3+1)[:size]
		for _, limit := range []int64{int64(size) + 1, int64(size), int64(size / 2)} {
			want := data[:min(int64(size), limit)]
			readers := map[string]func(io.Reader) ([]byte, error){
				"exact":         func(r io.Reader) ([]byte, error) { return readExact(r, limit) },
				"hinted":        func(r io.Reader) ([]byte, error) { return readHinted(r, limit, int64(size)+64) },
				"hint too low":  func(r io.Reader) ([]byte, error) { return readHinted(r, limit, 10) },
				"hint too high": func(r io.Reader) ([]byte, error) { return readHinted(r, limit, 50<<20) },
			}
			for name, read := range readers {
				// One byte per Read exercises every boundary.
				got, err := read(iotest.OneByteReader(bytes.NewReader(data)))
				if err != nil {
					t.Fatalf("%s size %d limit %d: %v", name, size, limit, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s size %d limit %d: got %d bytes, want %d", name, size, limit, len(got), len(want))
				}
				if name == "exact" && cap(got) != len(got) {
					t.Errorf("exact: cap %d for %d bytes", cap(got), len(got))
				}
				if name == "hint too high" && cap(got) > len(got)+64<<10 {
					t.Errorf("hinted kept %d spare bytes for %d", cap(got)-len(got), len(got))
				}
			}
		}
	}
	if _, err := readExact(iotest.ErrReader(io.ErrUnexpectedEOF), 10); err != io.ErrUnexpectedEOF {
		t.Errorf("read error lost: %v", err)
	}
}

func TestIsImageField(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"image": true, "image[]": true, "image[0]": true, "image[15]": true,
		"image[-1]": false, "image[x]": false, "image[1234]": false, "images": false,
		"Image": false, "image[": false, "mask": false, "": false,
	} {
		if got := isImageField(name); got != want {
			t.Errorf("isImageField(%q) = %v", name, got)
		}
	}
}
