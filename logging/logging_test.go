package logging

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestLinesHideSecrets: whatever a component logs — a message, a string
// attribute, an error, a value printed with %+v — a password in a URL and
// a PEM private key never reach the output.
func TestLinesHideSecrets(t *testing.T) {
	const password = "s3cret-registry-pass"
	const keyBody = "MIGHAgEAMBMGByqGSM49LOGGEDKEY"
	key := "-----BEGIN PRIVATE KEY-----\n" + keyBody + "\n-----END PRIVATE KEY-----\n"
	url := "https://robot:" + password + "@registry.example/plugin.wasm"

	var out bytes.Buffer
	logs := NewRegistry(&out, LevelDebug)
	log := logs.Logger("wasm")
	log.Info("fetching "+url, "url", url)
	log.Error("wasm module fetch failed", "err", fmt.Errorf("fetching %s: server answered 404", url))
	log.Warn("config rejected", "err", errors.New("inline_bytes: expected base64 text, got "+fmt.Sprintf("%q", key)))
	log.Debug("plugin configuration", "value", struct{ Key, URL string }{key, url}, "raw", []byte(key))
	log.Info("wasm log auth root: loaded key " + key)

	text := out.String()
	for _, secret := range []string{password, keyBody} {
		if strings.Contains(text, secret) {
			t.Errorf("the log holds %q:\n%s", secret, text)
		}
	}
	for _, want := range []string{"https://robot:[redacted]@registry.example/plugin.wasm", "[redacted]", "][error][wasm] wasm module fetch failed err=", "][debug][wasm] plugin configuration"} {
		if !strings.Contains(text, want) {
			t.Errorf("the log lacks %q:\n%s", want, text)
		}
	}
	// The plugin's line ends in the key's newline, printed verbatim.
	if n := strings.Count(text, "\n["); n != 4 {
		t.Errorf("%d lines, want 5:\n%s", n, text)
	}
}
