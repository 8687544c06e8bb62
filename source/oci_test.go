package source

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/wasmproxy/wasmproxy/internal/testregistry"
)

// module returns a distinct minimal Wasm binary: the magic, version 1
// and a custom section carrying name, so each test pushes its own bytes.
func module(name string) []byte {
	payload := append([]byte{byte(len(name))}, name...)
	return append([]byte("\x00asm\x01\x00\x00\x00\x00"+string(rune(len(payload)))), payload...)
}

// secureRegistry is a registry with TLS and basic auth, and a Fetcher
// (with its own cache) that trusts it and has its credentials.
func secureRegistry(t *testing.T) (*testregistry.Registry, Options) {
	t.Helper()
	reg := testregistry.Start(t, testregistry.Options{TLS: true, Users: map[string]string{"alice": "s3cret"}})
	return reg, Options{
		CacheDir:     t.TempDir(),
		RootCAs:      reg.CAPool,
		DockerConfig: reg.DockerConfig(t, "alice", "s3cret"),
	}
}

func newFetcher(t *testing.T, opts Options) *Fetcher {
	t.Helper()
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPushPullEachLayout pushes a module in every layout to a registry
// with TLS and basic auth, then pulls it back through a fresh cache: the
// bytes, the manifest digest and the detected layout must round-trip.
func TestPushPullEachLayout(t *testing.T) {
	reg, opts := secureRegistry(t)
	for _, layout := range Layouts {
		t.Run(string(layout), func(t *testing.T) {
			code := module("layout-" + string(layout))
			url := fmt.Sprintf("oci://%s/plugins/%s:v1", reg.Host, layout)
			pushed, err := newFetcher(t, opts).Push(ctxT(t), PushRequest{Code: code, URL: url, Layout: layout})
			if err != nil {
				t.Fatal(err)
			}
			if pushed.ModuleDigest != sha256Hex(code) || pushed.Layout != layout {
				t.Fatalf("pushed %+v", pushed)
			}
			pullOpts := opts
			pullOpts.CacheDir = t.TempDir()
			f := newFetcher(t, pullOpts)
			m, err := f.Fetch(ctxT(t), Request{URL: url, SHA256: pushed.Digest})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.Code, code) || m.Digest != pushed.Digest || m.Layout != layout || m.FromCache {
				t.Fatalf("pulled digest %s layout %s fromCache %v, bytes equal %v; want digest %s layout %s",
					m.Digest, m.Layout, m.FromCache, bytes.Equal(m.Code, code), pushed.Digest, layout)
			}
			// By digest in the URL, the second time: from the cache.
			m2, err := f.Fetch(ctxT(t), Request{URL: fmt.Sprintf("oci://%s/plugins/%s@sha256:%s", reg.Host, layout, pushed.Digest)})
			if err != nil || !m2.FromCache || !bytes.Equal(m2.Code, code) {
				t.Fatalf("second fetch: %v fromCache=%v", err, m2 != nil && m2.FromCache)
			}
		})
	}
}

// TestPushIsReproducible: the same module and layout give the same
// manifest digest, so a WasmPlugin's sha256 stays valid across pushes.
func TestPushIsReproducible(t *testing.T) {
	reg, opts := secureRegistry(t)
	f := newFetcher(t, opts)
	code := module("reproducible")
	a, err := f.Push(ctxT(t), PushRequest{Code: code, URL: "oci://" + reg.Host + "/r:a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Push(ctxT(t), PushRequest{Code: code, URL: "oci://" + reg.Host + "/r:b"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Fatalf("digests differ: %s vs %s", a.Digest, b.Digest)
	}
}

// pushRaw publishes a hand-made image (for layouts Push never makes).
func pushRaw(t *testing.T, f *Fetcher, url, manifestType string, config blob, layers ...blob) string {
	t.Helper()
	r, err := parseOCIRef(url, strings.TrimPrefix(url, "oci://"))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := f.repository(Request{URL: url}, r)
	if err != nil {
		t.Fatal(err)
	}
	m := manifestJSON{MediaType: manifestType, Config: config.desc}
	for _, b := range append([]blob{config}, layers...) {
		if err := repo.Push(ctxT(t), b.desc, bytes.NewReader(b.data)); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, l.desc)
	}
	mb, _ := json.Marshal(struct {
		SchemaVersion int `json:"schemaVersion"`
		manifestJSON
	}{2, m})
	desc := ocispec.Descriptor{MediaType: manifestType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	if err := repo.PushReference(ctxT(t), desc, bytes.NewReader(mb), r.tag); err != nil {
		t.Fatal(err)
	}
	return desc.Digest.Encoded()
}

func tarGz(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	gz, err := gzipBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return gz
}

// TestOCIBadInput: each broken image or setting gives one error naming
// the URL and the reason, and leaves nothing in the cache.
func TestOCIBadInput(t *testing.T) {
	reg, opts := secureRegistry(t)
	setup := newFetcher(t, opts)
	host := reg.Host
	emptyConfig := newBlob(ocispec.MediaTypeImageConfig, []byte("{}"))

	good, err := setup.Push(ctxT(t), PushRequest{Code: module("good"), URL: "oci://" + host + "/good:v1"})
	if err != nil {
		t.Fatal(err)
	}
	pushRaw(t, setup, "oci://"+host+"/unknown:v1", ocispec.MediaTypeImageManifest, emptyConfig,
		newBlob("application/vnd.example.thing", []byte("x")))
	pushRaw(t, setup, "oci://"+host+"/nowasm:v1", ocispec.MediaTypeImageManifest, emptyConfig,
		newBlob(ocispec.MediaTypeImageLayerGzip, tarGz(t, "main.wasm", module("named-main"))))
	pushRaw(t, setup, "oci://"+host+"/notwasm:v1", ocispec.MediaTypeImageManifest, emptyConfig,
		newBlob(ocispec.MediaTypeImageLayerGzip, tarGz(t, "plugin.wasm", []byte("#!/bin/sh\necho not wasm\n"))))
	big := append(module("big"), make([]byte, 4096)...)
	pushRaw(t, setup, "oci://"+host+"/big:v1", ocispec.MediaTypeImageManifest, newBlob(mediaTypeWasmConfig, []byte("{}")),
		newBlob(mediaTypeWasmLayer, big))
	tampered, err := setup.Push(ctxT(t), PushRequest{Code: module("tampered"), URL: "oci://" + host + "/tampered:v1", Layout: LayoutWasm})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Tamper(digest.FromBytes(module("tampered")).String()); err != nil {
		t.Fatal(err)
	}

	closed := testregistry.Start(t, testregistry.Options{})
	closed.Stop()
	wrongCreds := opts
	wrongCreds.DockerConfig = reg.DockerConfig(t, "alice", "wrong")
	noCA := opts
	noCA.RootCAs = nil
	small := opts
	small.MaxModuleBytes = 1024

	tests := []struct {
		name        string
		opts        Options
		url, sha    string
		want        []string
		unavailable bool
	}{
		{name: "unreachable registry", url: "oci://" + closed.Host + "/x:v1", want: []string{"cannot connect"}, unavailable: true},
		{name: "404 tag", url: "oci://" + host + "/good:nope", want: []string{"not found", "404"}},
		{name: "unknown layout", url: "oci://" + host + "/unknown:v1", want: []string{"unknown image layout", "application/vnd.example.thing"}},
		{name: "layer without plugin.wasm", url: "oci://" + host + "/nowasm:v1", want: []string{"has no plugin.wasm", "main.wasm"}},
		{name: "digest mismatch", url: "oci://" + host + "/good:v1", sha: strings.Repeat("ab", 32), want: []string{"manifest digest mismatch", good.Digest}},
		{name: "digest in URL differs from sha256", url: "oci://" + host + "/good@sha256:" + good.Digest, sha: strings.Repeat("cd", 32), want: []string{"differs from the digest in the URL"}},
		{name: "non-Wasm file", url: "oci://" + host + "/notwasm:v1", want: []string{"not a WebAssembly module", "#!/bin/s"}},
		{name: "oversized module", opts: small, url: "oci://" + host + "/big:v1", want: []string{"over the 1024-byte limit"}},
		{name: "tampered blob", url: "oci://" + host + "/tampered:v1", sha: tampered.Digest, want: []string{"does not match its digest", "tampered"}},
		{name: "wrong password", opts: wrongCreds, url: "oci://" + host + "/good:v1", want: []string{"401", "credentials"}},
		{name: "untrusted certificate", opts: noCA, url: "oci://" + host + "/good:v1", want: []string{"certificate"}, unavailable: true},
		{name: "bad sha256", url: "oci://" + host + "/good:v1", sha: "xyz", want: []string{`sha256 "xyz" is not 64 hexadecimal`}},
		{name: "bad reference", url: "oci://" + host, want: []string{"not a valid image reference"}},
		{name: "unsupported scheme", url: "ftp://" + host + "/x.wasm", want: []string{`unsupported scheme "ftp"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if o.DockerConfig == "" {
				o = opts
			}
			o.CacheDir = t.TempDir()
			f := newFetcher(t, o)
			m, err := f.Fetch(ctxT(t), Request{URL: tc.url, SHA256: tc.sha, Timeout: 5 * time.Second})
			if err == nil {
				t.Fatalf("fetched %d bytes, want an error", len(m.Code))
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "fetching "+tc.url+": ") {
				t.Errorf("error %q does not start with the URL", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Count(msg, "\n") > 0 {
				t.Errorf("error spans lines: %q", msg)
			}
			if IsUnavailable(err) != tc.unavailable {
				t.Errorf("IsUnavailable = %v, want %v (%v)", !tc.unavailable, tc.unavailable, err)
			}
			if entries, _ := filepath.Glob(filepath.Join(o.CacheDir, "*", "*.wasm")); len(entries) != 0 {
				t.Errorf("cache holds %v after a failed fetch", entries)
			}
		})
	}
}

// TestRegistryDownStartsFromCache: once a module is cached, a new
// Fetcher on the same cache (a restart) gets it with the registry
// stopped, by digest or by an IfNotPresent tag; an Always tag needs the
// registry and says so.
func TestRegistryDownStartsFromCache(t *testing.T) {
	reg, opts := secureRegistry(t)
	code := module("cached")
	url := "oci://" + reg.Host + "/cached:v1"
	pushed, err := newFetcher(t, opts).Push(ctxT(t), PushRequest{Code: code, URL: url})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newFetcher(t, opts).Fetch(ctxT(t), Request{URL: url}); err != nil {
		t.Fatal(err)
	}
	reg.Stop()

	tests := []struct {
		name    string
		req     Request
		wantErr string
	}{
		{name: "sha256 given", req: Request{URL: url, SHA256: pushed.Digest}},
		{name: "digest in URL", req: Request{URL: "oci://" + reg.Host + "/cached@sha256:" + pushed.Digest}},
		{name: "tag, IfNotPresent", req: Request{URL: url, PullPolicy: PullIfNotPresent}},
		{name: "tag, default policy", req: Request{URL: url}},
		{name: "tag, Always", req: Request{URL: url, PullPolicy: PullAlways}, wantErr: "cannot connect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := newFetcher(t, opts).Fetch(ctxT(t), tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !IsUnavailable(err) {
					t.Fatalf("err = %v, want unavailable %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !m.FromCache || !bytes.Equal(m.Code, code) || m.Digest != pushed.Digest {
				t.Fatalf("fromCache=%v digest=%s", m.FromCache, m.Digest)
			}
		})
	}
}

// TestLatestIsAlwaysPulled: the tag latest is re-resolved each time, so
// a new push under it is seen without a policy in the request.
func TestLatestIsAlwaysPulled(t *testing.T) {
	reg, opts := secureRegistry(t)
	f := newFetcher(t, opts)
	for _, name := range []string{"one", "two"} {
		code := module("latest-" + name)
		if _, err := f.Push(ctxT(t), PushRequest{Code: code, URL: "oci://" + reg.Host + "/l:latest"}); err != nil {
			t.Fatal(err)
		}
		m, err := f.Fetch(ctxT(t), Request{URL: "oci://" + reg.Host + "/l"})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Code, code) {
			t.Fatalf("%s: got the previous module", name)
		}
	}
}

// TestCredentialSources: credentials from a Kubernetes pull secret (as
// Istio's imagePullSecret names), and an insecure registry reached
// without trusting its CA.
func TestCredentialSources(t *testing.T) {
	reg, opts := secureRegistry(t)
	url := "oci://" + reg.Host + "/creds:v1"
	if _, err := newFetcher(t, opts).Push(ctxT(t), PushRequest{Code: module("creds"), URL: url}); err != nil {
		t.Fatal(err)
	}
	dockerJSON, _ := os.ReadFile(opts.DockerConfig)
	secret := filepath.Join(t.TempDir(), "secret.yaml")
	os.WriteFile(secret, []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '"+string(dockerJSON)+"'\n"), 0o600)
	noCreds := filepath.Join(t.TempDir(), "empty.json")
	os.WriteFile(noCreds, []byte(`{"auths":{}}`), 0o600)

	tests := []struct {
		name   string
		mutate func(*Options, *Request)
	}{
		{"kubernetes pull secret", func(o *Options, r *Request) { o.DockerConfig = noCreds; r.PullSecret = secret }},
		{"docker config pull secret", func(o *Options, r *Request) { o.DockerConfig = noCreds; r.PullSecret = opts.DockerConfig }},
		{"insecure registry", func(o *Options, r *Request) { o.RootCAs = nil; o.InsecureRegistries = []string{reg.Host} }},
		{"insecure wildcard", func(o *Options, r *Request) { o.RootCAs = nil; o.InsecureRegistries = []string{"*"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.CacheDir = t.TempDir()
			req := Request{URL: url}
			tc.mutate(&o, &req)
			if _, err := newFetcher(t, o).Fetch(ctxT(t), req); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Without credentials the registry refuses.
	o := opts
	o.CacheDir, o.DockerConfig = t.TempDir(), noCreds
	if _, err := newFetcher(t, o).Fetch(ctxT(t), Request{URL: url}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without credentials: %v", err)
	}
}

// TestPlainHTTPRegistryOnLoopback: a registry without TLS on 127.0.0.1
// is reached over plain HTTP, for push and pull (docker's rule).
func TestPlainHTTPRegistryOnLoopback(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{})
	f := newFetcher(t, Options{CacheDir: t.TempDir()})
	url := "oci://" + reg.Host + "/plain:v1"
	code := module("plain")
	if _, err := f.Push(ctxT(t), PushRequest{Code: code, URL: url, Layout: LayoutDocker}); err != nil {
		t.Fatal(err)
	}
	m, err := f.Fetch(ctxT(t), Request{URL: url})
	if err != nil || !bytes.Equal(m.Code, code) {
		t.Fatalf("%v", err)
	}
}
