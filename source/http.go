package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

const (
	defaultHTTPTimeout = 15 * time.Second // Istio's WASM_HTTP_REQUEST_TIMEOUT
	defaultRetries     = 1                // Envoy's retry_policy.num_retries
	defaultBackoffBase = time.Second      // Envoy's retry_back_off.base_interval
)

// fetchHTTP downloads an http(s) module, with Envoy's retry policy, and
// checks it against want (the module digest).
func (f *Fetcher) fetchHTTP(ctx context.Context, req Request, want string) (*Module, error) {
	u, err := url.Parse(req.URL)
	if err != nil || u.Host == "" {
		return nil, &Error{URL: req.URL, Reason: "not a valid URL"}
	}
	name := req.URL
	if code, path, ok := f.cache.get(name, want); ok {
		return &Module{URL: req.URL, Code: code, Digest: want, ModuleDigest: Digest(code), Path: path, FromCache: true}, nil
	}
	if want == "" && req.PullPolicy != PullAlways {
		if last := f.cache.ref(name, "url"); last != "" {
			if code, path, ok := f.cache.get(name, last); ok {
				return &Module{URL: req.URL, Code: code, Digest: last, ModuleDigest: last, Path: path, FromCache: true}, nil
			}
		}
	}

	raw, err := f.download(ctx, req, u.Host)
	if err != nil {
		return nil, err
	}
	code, err := unbox(raw, f.opts.MaxModuleBytes)
	if err != nil {
		return nil, &Error{URL: req.URL, Reason: err.Error()}
	}
	if err := f.checkModule(req.URL, code); err != nil {
		return nil, err
	}
	digest := sha256Hex(code)
	// Istio compares the unboxed module; Envoy (which never unboxes)
	// the downloaded bytes. Either matching is the same file.
	if want != "" && want != digest && want != sha256Hex(raw) {
		return nil, &Error{URL: req.URL, Reason: fmt.Sprintf("sha256 mismatch: the module's digest is %s, the config wants %s", digest, want)}
	}
	m := &Module{URL: req.URL, Code: code, Digest: digest, ModuleDigest: digest}
	if m.Path, err = f.cache.put(name, digest, code); err != nil {
		f.log.Warn("wasm module cache write failed", "url", redact.Text(req.URL), "err", err)
	} else if err := f.cache.setRef(name, "url", digest); err != nil {
		f.log.Warn("wasm module cache write failed", "url", redact.Text(req.URL), "err", err)
	}
	return m, nil
}

// download GETs the URL, retrying network errors and retriable 5xx
// answers with exponential backoff.
func (f *Fetcher) download(ctx context.Context, req Request, host string) ([]byte, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultHTTPTimeout
	}
	retries := req.Retries
	if retries <= 0 {
		retries = defaultRetries
	}
	backoff := req.BackoffBase
	if backoff <= 0 {
		backoff = defaultBackoffBase
	}
	maxBackoff := req.BackoffMax
	if maxBackoff <= 0 {
		maxBackoff = 10 * backoff
	}
	client := f.httpClient(host, timeout)
	defer client.CloseIdleConnections()

	var last *Error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			f.log.Debug("retrying wasm module download", "url", redact.Text(req.URL), "attempt", attempt+1, "after", backoff, "err", redact.Text(last.Reason))
			select {
			case <-ctx.Done():
				return nil, &Error{URL: req.URL, Reason: last.Reason + " (gave up: " + ctx.Err().Error() + ")", Unavailable: true, Err: ctx.Err()}
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
		}
		body, err := f.get(ctx, client, req.URL)
		if err == nil {
			return body, nil
		}
		last = err
		if !err.Unavailable {
			return nil, err
		}
	}
	if retries > 0 {
		last.Reason = fmt.Sprintf("%s (after %d attempts)", last.Reason, retries+1)
	}
	return nil, last
}

func (f *Fetcher) get(ctx context.Context, client *http.Client, rawURL string) ([]byte, *Error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &Error{URL: rawURL, Reason: err.Error()}
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, &Error{URL: rawURL, Reason: describeNetErr(err), Unavailable: true, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		e := &Error{URL: rawURL, Reason: "server answered " + resp.Status}
		// Istio's rule: 5xx is worth another try, except the answers
		// that will not change (501, 505, 511).
		switch c := resp.StatusCode; {
		case c == http.StatusNotImplemented, c == http.StatusHTTPVersionNotSupported, c == http.StatusNetworkAuthenticationRequired:
		case c >= 500:
			e.Unavailable = true
		}
		return nil, e
	}
	limit := f.opts.MaxModuleBytes
	if resp.ContentLength > limit {
		return nil, &Error{URL: rawURL, Reason: fmt.Sprintf("module is %d bytes, over the %d-byte limit", resp.ContentLength, limit)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &Error{URL: rawURL, Reason: "reading the body: " + describeNetErr(err), Unavailable: true, Err: err}
	}
	if int64(len(body)) > limit {
		return nil, &Error{URL: rawURL, Reason: fmt.Sprintf("module is over the %d-byte limit", limit)}
	}
	return body, nil
}

// unbox removes gzip and tar wrappers (a tar's first regular file)
// until the Wasm magic appears, as Istio's HTTP fetcher does. Content
// that is neither is returned as is, for checkModule to judge.
func unbox(b []byte, limit int64) ([]byte, error) {
	for range 4 {
		switch {
		case bytes.HasPrefix(b, wasmMagic):
			return b, nil
		case len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b:
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, fmt.Errorf("bad gzip data: %v", err)
			}
			out, err := io.ReadAll(io.LimitReader(zr, limit+1))
			if err != nil {
				return nil, fmt.Errorf("bad gzip data: %v", err)
			}
			if int64(len(out)) > limit {
				return nil, fmt.Errorf("module is over the %d-byte limit once decompressed", limit)
			}
			b = out
		case len(b) > 262 && string(b[257:262]) == "ustar":
			tr := tar.NewReader(bytes.NewReader(b))
			for {
				h, err := tr.Next()
				if err != nil {
					return nil, fmt.Errorf("tar archive without a regular file")
				}
				if h.Typeflag == tar.TypeReg {
					if b, err = io.ReadAll(io.LimitReader(tr, limit+1)); err != nil {
						return nil, fmt.Errorf("bad tar data: %v", err)
					}
					break
				}
			}
		default:
			return b, nil
		}
	}
	return b, nil
}
