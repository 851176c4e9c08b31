package upstream

import (
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strings"
)

// WriteFilePart adds one file part to mw under the form field name, labelled
// with filename and its real content type (application/octet-stream when
// ctype is empty). Quotes and backslashes in the names are escaped and line
// breaks dropped, so no name can break out of the part header.
func WriteFilePart(mw *multipart.Writer, name, filename, ctype string, data []byte) error {
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`, quoteEscaper.Replace(name), quoteEscaper.Replace(filename)))
	h.Set("Content-Type", ctype)
	w, err := mw.CreatePart(h)
	if err != nil {
		return fmt.Errorf("creating part %s: %w", name, err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("writing part %s: %w", name, err)
	}
	return nil
}

var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"", "\r", "", "\n", "")

// FileExt returns the file extension, dot included, of the image types
// easel handles ("image/jpeg" → ".jpg"), or "" for any other type. Upstreams
// such as Gradio pick the save format from it.
func FileExt(mime string) string {
	switch mime {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	case "image/gif":
		return ".gif"
	}
	return ""
}
