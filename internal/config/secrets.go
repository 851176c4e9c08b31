package config

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// SigningKeyFile is the name of the generated URL signing key in DataDir.
const SigningKeyFile = "signing.key"

// LoadSigningKey returns the URL signing key: EASEL_SIGNING_KEY when set;
// else the key in DataDir/signing.key, created with 32 random bytes and
// mode 0600 on first use so signed URLs survive restarts. Replicas that
// share URLs must share EASEL_SIGNING_KEY.
func (c *Config) LoadSigningKey() ([]byte, error) {
	if c.SigningKey != "" {
		key, err := DecodeSigningKey(c.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", EnvSigningKey, err)
		}
		return key, nil
	}
	path := filepath.Join(c.DataDir, SigningKeyFile)
	key, err := readKeyFile(path)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	key = make([]byte, minSigningKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating signing key: %w", err)
	}
	// Write a temporary file and link it into place: the key appears whole
	// or not at all, and a concurrent starter's key wins without being
	// overwritten.
	tmp, err := os.CreateTemp(c.DataDir, ".signing-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("creating signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("creating signing key: %w", err)
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing signing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("writing signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("writing signing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKeyFile(path)
		}
		return nil, fmt.Errorf("installing signing key: %w", err)
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	defer f.Close()
	key, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, fmt.Errorf("reading signing key %s: %w", path, err)
	}
	if len(key) < minSigningKeyBytes || len(key) > 4096 {
		return nil, fmt.Errorf("signing key %s holds %d bytes; want %d..4096", path, len(key), minSigningKeyBytes)
	}
	return key, nil
}

// Redacted returns the effective configuration as YAML that loads back as
// the same configuration. Secrets never appear: API keys, tokens and the
// signing key are read from the environment and shown only as comments
// saying whether they are set; credentials in URLs are masked.
func (c *Config) Redacted() ([]byte, error) {
	cp := *c
	// Validate refuses credentials in URLs; mask them anyway in case the
	// dump is taken of a config that did not pass.
	cp.PublicURL = redactURL(c.PublicURL)
	cp.SigningKey = ""
	cp.Auth.Keys = nil
	cp.Backends = make([]Backend, len(c.Backends))
	for i, b := range c.Backends {
		if b.Gradio != nil {
			g := *b.Gradio
			g.Space = redactURL(g.Space)
			g.Token = ""
			b.Gradio = &g
		}
		if b.JobAPI != nil {
			j := *b.JobAPI
			j.Submit.SecretHeaders = nil
			b.JobAPI = &j
		}
		cp.Backends[i] = b
	}
	var doc yaml.Node
	if err := doc.Encode(&cp); err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	doc.HeadComment = "Effective easel configuration (secrets hidden)."
	if auth := mapValue(&doc, "auth"); auth != nil {
		if k := mapKey(auth, "keys_env"); k != nil {
			k.LineComment = setComment(len(c.Auth.Keys) > 0, fmt.Sprintf("%d API key(s) set, values hidden", len(c.Auth.Keys)))
		}
	}
	if dd := mapKey(&doc, "data_dir"); dd != nil {
		if c.SigningKey != "" {
			dd.LineComment = "signing key from " + EnvSigningKey + " (hidden)"
		} else {
			dd.LineComment = "signing key in " + SigningKeyFile + " here"
		}
	}
	if bs := mapValue(&doc, "backends"); bs != nil {
		for i, b := range c.Backends {
			if b.JobAPI != nil && len(b.JobAPI.Submit.HeaderEnv) > 0 && i < len(bs.Content) {
				if j := mapValue(bs.Content[i], "jobapi"); j != nil {
					if s := mapValue(j, "submit"); s != nil {
						if k := mapKey(s, "header_env"); k != nil {
							n := len(b.JobAPI.Submit.SecretHeaders)
							k.LineComment = setComment(n > 0, fmt.Sprintf("%d secret header(s) set, values hidden", n))
						}
					}
				}
			}
			if b.Gradio == nil || i >= len(bs.Content) {
				continue
			}
			if g := mapValue(bs.Content[i], "gradio"); g != nil {
				if k := mapKey(g, "token_env"); k != nil {
					k.LineComment = setComment(b.Gradio.Token != "", "token set, value hidden")
				}
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	return out, nil
}

func setComment(set bool, msg string) string {
	if set {
		return msg
	}
	return "not set"
}

// mapKey returns the key node of a mapping entry; n may be a document.
func mapKey(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

// mapValue returns the value node of a mapping entry; n may be a document.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// redactURL masks the password of a URL's user info and any query (which
// may carry a token); other strings pass through.
func redactURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL hidden>"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
	}
	if u.RawQuery != "" {
		u.RawQuery = "xxxxx"
	}
	return u.String()
}
