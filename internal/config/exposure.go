package config

import "fmt"

// CheckExposure refuses to serve without authentication beyond loopback.
// With no key in the environment and no live key in the database
// (databaseKeys false) the listen address must be a loopback one. Validate
// cannot decide this, because database keys are known only once the store
// is open; serve calls CheckExposure then. The error is a *FieldError for
// "listen".
func (c *Config) CheckExposure(databaseKeys bool) error {
	if len(c.Auth.Keys) > 0 || databaseKeys || IsLoopbackListen(c.Listen) {
		return nil
	}
	return &FieldError{Path: "listen", Message: fmt.Sprintf("%q is not a loopback address and no API keys exist; "+
		"create one with `easel keys create --name NAME --admin`, or set %s to one or more comma-separated keys "+
		"of at least %d random characters (for example from `openssl rand -hex 24`), or listen on 127.0.0.1",
		c.Listen, orDefault(c.Auth.KeysEnv, DefaultKeysEnv), MinAPIKeyLength)}
}
