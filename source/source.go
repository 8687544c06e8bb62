// Package source obtains Wasm modules from where a config says they are:
// http(s) URLs (Envoy's vm_config.code.remote, Istio's http(s) urls) and
// OCI images (oci://HOST/REPO[:TAG][@sha256:DIGEST]), and keeps them in a
// content-addressed on-disk cache so that a restart with a warm cache
// needs no network.
//
// It follows Istio's agent (istio/istio, pkg/wasm)
// where Envoy has no rule: sha256 means the manifest digest for oci:// and
// the module digest for http(s); the pull policy is IfNotPresent except
// for the tag "latest" (Always); Docker and OCI images carry plugin.wasm
// in a tar.gz last layer, the wasme variant has two layers one of which
// is the raw module. It also reads the CNCF Wasm artifact
// (application/wasm), which Istio does not.
//
// Every failure is one *Error naming the URL and the reason; nothing is
// written to the cache unless it was verified. Neither an error nor a log
// line shows the password of a URL with userinfo (which http(s) fetches
// send as basic auth).
package source

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/internal/codedigest"
	"github.com/wasmproxy/wasmproxy/stats"
)

// DefaultMaxModuleBytes is Istio's ISTIO_WASM_MAX_BINARY_SIZE_BYTES.
const DefaultMaxModuleBytes = 256 << 20

// PullPolicy says when an image is fetched again although a module for
// the URL is cached. It only matters when no digest is known in advance.
type PullPolicy string

const (
	// PullDefault is IfNotPresent, except Always for the tag "latest"
	// (and an OCI URL without a tag, which means latest), as Istio does.
	PullDefault PullPolicy = ""
	// PullIfNotPresent reuses the module last fetched for the URL.
	PullIfNotPresent PullPolicy = "IfNotPresent"
	// PullAlways asks the server every time; an unchanged digest still
	// comes from the cache without downloading layers.
	PullAlways PullPolicy = "Always"
)

// Options configure a Fetcher. The zero value works: no disk cache,
// system roots, no credentials beyond the default docker config.
type Options struct {
	// CacheDir holds fetched modules; "" keeps nothing on disk.
	CacheDir string
	// DockerConfig is a docker config.json to read registry credentials
	// from; "" means $DOCKER_CONFIG/config.json or ~/.docker/config.json
	// when present.
	DockerConfig string
	// InsecureRegistries are registry hosts ("host" or "host:port"; "*"
	// for all) whose TLS certificate is not verified and which may be
	// spoken to over plain HTTP when they answer HTTP to HTTPS, as
	// Istio's WASM_INSECURE_REGISTRIES. Loopback registries may always
	// fall back to plain HTTP (docker's rule).
	InsecureRegistries []string
	// RootCAs verifies servers; nil means the system roots.
	RootCAs *x509.CertPool
	// MaxModuleBytes bounds a download; 0 means DefaultMaxModuleBytes.
	MaxModuleBytes int64
	// Logger receives one line per fetch; nil discards.
	Logger *slog.Logger
	// Stats receives Envoy's wasm.remote_load_* counters; nil = none.
	Stats *stats.Store
}

// Request is one module to obtain.
type Request struct {
	// URL is http://, https:// or oci:// (a URL without a scheme is an
	// OCI reference, as in Istio).
	URL string
	// SHA256 is the expected digest, 64 hex characters or "": for oci://
	// the image manifest's digest, for http(s) the module's. An
	// @sha256: digest in an oci:// URL is used when SHA256 is "" and
	// must equal it otherwise.
	SHA256 string
	// PullPolicy: see the constants.
	PullPolicy PullPolicy
	// PullSecret is a file with registry credentials for this request: a
	// docker config.json, or a Kubernetes Secret of type
	// kubernetes.io/dockerconfigjson (YAML or JSON). "" = Options.
	PullSecret string
	// Timeout bounds each HTTP attempt; 0 means 15s (Istio's default).
	Timeout time.Duration
	// Retries after a failed http(s) attempt (network error or 5xx other
	// than 501/505/511); BackoffBase doubles per retry up to BackoffMax.
	// Zero values mean Envoy's defaults: 1 retry, 1s base, 10x max.
	Retries     int
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Progress, when set, is called while layers download.
	Progress func(done, total int64)
}

// Module is a fetched (or cached) Wasm module.
type Module struct {
	URL string
	// Code is the module's bytes, starting with the Wasm magic.
	Code []byte
	// Digest is what Request.SHA256 is compared with: the manifest digest
	// for oci://, the module digest for http(s), in hex.
	Digest string
	// ModuleDigest is Digest(Code).
	ModuleDigest string
	// Path is the cache file, "" without a cache.
	Path string
	// FromCache is true when no download happened.
	FromCache bool
	// Layout names the OCI layout the module came from ("" for http).
	Layout Layout
}

// Error is a failure to obtain one module. Unavailable is true when the
// server could not be reached or kept failing (network errors, timeouts,
// 5xx), as opposed to an answer that is wrong (404, digest mismatch, not
// Wasm, too large), so callers can tell "try again later" from "fix the
// config".
type Error struct {
	// URL is the URL as requested, credentials included; Error shows it
	// without them.
	URL         string
	Reason      string
	Unavailable bool
	Err         error
}

// Error reads "fetching URL: reason" with a password in the URL (or in
// the reason, which may quote a server) shown as "[redacted]".
func (e *Error) Error() string {
	return redact.Text(fmt.Sprintf("fetching %s: %s", e.URL, e.Reason))
}
func (e *Error) Unwrap() error { return e.Err }

// IsUnavailable reports whether err is an *Error for a source that could
// not be reached.
func IsUnavailable(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.Unavailable
}

// Fetcher obtains modules. It is safe for concurrent use.
type Fetcher struct {
	opts  Options
	log   *slog.Logger
	cache *cache
	stats fetchStats
}

type fetchStats struct {
	hits, misses, successes, failures *stats.Counter
}

// New returns a Fetcher; it creates the cache directory if needed.
func New(opts Options) (*Fetcher, error) {
	if opts.MaxModuleBytes <= 0 {
		opts.MaxModuleBytes = DefaultMaxModuleBytes
	}
	f := &Fetcher{opts: opts, log: opts.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if opts.CacheDir != "" {
		c, err := openCache(opts.CacheDir)
		if err != nil {
			return nil, err
		}
		f.cache = c
	}
	st := opts.Stats
	if st == nil {
		st = stats.New()
	}
	// Envoy's remote-load counters (reference §5).
	f.stats = fetchStats{
		hits:      st.Counter("wasm.remote_load_cache_hits"),
		misses:    st.Counter("wasm.remote_load_cache_misses"),
		successes: st.Counter("wasm.remote_load_fetch_successes"),
		failures:  st.Counter("wasm.remote_load_fetch_failures"),
	}
	return f, nil
}

// Fetch returns the module req names: from the cache when the digest is
// known (or the pull policy allows reusing the last one), otherwise from
// the network, verified, then cached.
func (f *Fetcher) Fetch(ctx context.Context, req Request) (*Module, error) {
	want := strings.ToLower(strings.TrimSpace(req.SHA256))
	if want == "nil" {
		want = "" // istiod's placeholder for "no checksum"
	}
	if want != "" && !isHexDigest(want) {
		return nil, &Error{URL: req.URL, Reason: fmt.Sprintf("sha256 %q is not 64 hexadecimal characters", req.SHA256)}
	}
	scheme, rest, hasScheme := strings.Cut(req.URL, "://")
	if !hasScheme {
		scheme, rest = "oci", req.URL
	}
	var (
		m   *Module
		err error
	)
	switch strings.ToLower(scheme) {
	case "http", "https":
		m, err = f.fetchHTTP(ctx, req, want)
	case "oci":
		m, err = f.fetchOCI(ctx, req, rest, want)
	default:
		err = &Error{URL: req.URL, Reason: fmt.Sprintf("unsupported scheme %q (want http://, https:// or oci://)", scheme)}
	}
	if err != nil {
		f.stats.failures.Inc()
		f.log.Error("wasm module fetch failed", "url", redact.Text(req.URL), "err", err)
		return nil, err
	}
	if m.FromCache {
		f.stats.hits.Inc()
	} else {
		f.stats.misses.Inc()
		f.stats.successes.Inc()
	}
	f.log.Info("wasm module ready", "url", redact.Text(req.URL), "digest", m.Digest, "from_cache", m.FromCache, "layout", string(m.Layout), "bytes", len(m.Code))
	return m, nil
}

// checkModule is the validity check Istio applies (magic and length),
// plus the size limit.
func (f *Fetcher) checkModule(url string, code []byte) error {
	if int64(len(code)) > f.opts.MaxModuleBytes {
		return &Error{URL: url, Reason: fmt.Sprintf("module is %d bytes, over the %d-byte limit", len(code), f.opts.MaxModuleBytes)}
	}
	if len(code) < 8 || !bytes.Equal(code[:4], wasmMagic) {
		return &Error{URL: url, Reason: fmt.Sprintf("not a WebAssembly module (starts with %q, want \"\\x00asm\")", head(code))}
	}
	return nil
}

var wasmMagic = []byte("\x00asm")

func head(b []byte) string {
	if len(b) > 8 {
		b = b[:8]
	}
	return string(b)
}

// Digest is the digest of a module's code, the one every part of the
// proxy uses: Module.ModuleDigest, and the CodeDigest a load stamps on
// each plugin config (local file, inline or remote alike), which reloads
// compare. It is the hex sha256 of code.
func Digest(code []byte) string { return codedigest.Of(code) }

func sha256Hex(b []byte) string { return codedigest.Of(b) }

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// insecure reports whether host is in InsecureRegistries.
func (f *Fetcher) insecure(host string) bool {
	hostOnly := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostOnly = h
	}
	for _, r := range f.opts.InsecureRegistries {
		r = strings.TrimSpace(r)
		if r == "*" || strings.EqualFold(r, host) || strings.EqualFold(r, hostOnly) {
			return true
		}
	}
	return false
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpClient is the client for one host: TLS verification off only for
// insecure registries.
func (f *Fetcher) httpClient(host string, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: f.opts.RootCAs, InsecureSkipVerify: f.insecure(host)} //nolint:gosec // the operator listed this registry as insecure
	return &http.Client{Transport: tr, Timeout: timeout}
}

// describeNetErr turns a transport error into a short reason.
func describeNetErr(err error) string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "timed out"
	case errors.As(err, &certErr):
		return "TLS certificate not trusted: " + certErr.Err.Error() + " (add the registry to the insecure registries, or trust its CA)"
	case errors.As(err, &dnsErr):
		return "cannot resolve host: " + dnsErr.Err
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "cannot connect: " + opErr.Err.Error()
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
