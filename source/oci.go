package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

// Layout is one way of packing a Wasm module into an OCI image.
type Layout string

const (
	// LayoutOCI is an OCI image whose last layer is a tar+gzip holding
	// plugin.wasm (the "compat" variant Istio reads; the push default).
	LayoutOCI Layout = "oci"
	// LayoutDocker is the same with Docker's media types (what
	// `docker build` of `FROM scratch` + `COPY plugin.wasm` produces).
	LayoutDocker Layout = "docker"
	// LayoutWasme is solo.io's wasme variant: exactly two layers, one of
	// them the raw module (application/vnd.module.wasm.content.layer.v1+wasm).
	LayoutWasme Layout = "wasme"
	// LayoutWasm is the CNCF TAG Runtime Wasm artifact: config
	// application/vnd.wasm.config.v0+json, one application/wasm layer.
	// Istio cannot read it.
	LayoutWasm Layout = "wasm"
)

// Layouts lists every layout, push default first.
var Layouts = []Layout{LayoutOCI, LayoutDocker, LayoutWasme, LayoutWasm}

// Media types of the layouts.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeWasmeConfig        = "application/vnd.module.wasm.config.v1+json"
	mediaTypeWasmeContent       = "application/vnd.module.wasm.content.layer.v1+wasm"
	mediaTypeWasmConfig         = "application/vnd.wasm.config.v0+json"
	mediaTypeWasmLayer          = "application/wasm"
	pluginFileName              = "plugin.wasm"
)

// ociRef is a parsed oci:// URL.
type ociRef struct {
	ref    registry.Reference
	name   string // registry/repository: the cache name
	tag    string // "" when the URL pins a digest only
	digest string // hex, from @sha256:
}

func parseOCIRef(rawURL, rest string) (*ociRef, error) {
	ref, err := registry.ParseReference(rest)
	if err != nil {
		return nil, &Error{URL: rawURL, Reason: "not a valid image reference (want oci://HOST/REPOSITORY[:TAG][@sha256:DIGEST]): " + strings.TrimPrefix(err.Error(), "invalid reference: ")}
	}
	r := &ociRef{ref: ref, name: ref.Registry + "/" + ref.Repository}
	if d, err := ref.Digest(); err == nil {
		if d.Algorithm() != digest.SHA256 {
			return nil, &Error{URL: rawURL, Reason: "only sha256 digests are supported"}
		}
		r.digest = d.Encoded()
	} else {
		r.tag = ref.Reference
		if r.tag == "" {
			r.tag = "latest"
			r.ref.Reference = "latest"
		}
	}
	return r, nil
}

// fetchOCI pulls an image: the manifest digest is checked before any
// layer is downloaded, every blob against its descriptor.
func (f *Fetcher) fetchOCI(ctx context.Context, req Request, rest, want string) (*Module, error) {
	r, err := parseOCIRef(req.URL, rest)
	if err != nil {
		return nil, err
	}
	if r.digest != "" {
		if want != "" && want != r.digest {
			return nil, &Error{URL: req.URL, Reason: fmt.Sprintf("sha256 %s differs from the digest in the URL (%s)", want, r.digest)}
		}
		want = r.digest
	}
	if code, path, ok := f.cache.get(r.name, want); ok {
		return &Module{URL: req.URL, Code: code, Digest: want, ModuleDigest: Digest(code), Path: path, FromCache: true}, nil
	}
	policy := req.PullPolicy
	if policy == PullDefault {
		policy = PullIfNotPresent
		if r.tag == "latest" {
			policy = PullAlways
		}
	}
	if want == "" && policy == PullIfNotPresent {
		if last := f.cache.ref(r.name, "tag-"+r.tag); last != "" {
			if code, path, ok := f.cache.get(r.name, last); ok {
				return &Module{URL: req.URL, Code: code, Digest: last, ModuleDigest: Digest(code), Path: path, FromCache: true}, nil
			}
		}
	}

	repo, err := f.repository(req, r)
	if err != nil {
		return nil, err
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultHTTPTimeout
	}
	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	desc, manifest, err := f.fetchManifest(mctx, req.URL, repo, r.ref.Reference)
	if err != nil {
		return nil, err
	}
	got := desc.Digest.Encoded()
	if want != "" && got != want {
		return nil, &Error{URL: req.URL, Reason: fmt.Sprintf("manifest digest mismatch: the registry serves sha256:%s, the config wants sha256:%s", got, want)}
	}
	if code, path, ok := f.cache.get(r.name, got); ok {
		f.rememberTag(r, got)
		return &Module{URL: req.URL, Code: code, Digest: got, ModuleDigest: Digest(code), Path: path, FromCache: true}, nil
	}
	if isIndex(desc.MediaType) {
		child, err := pickFromIndex(req.URL, manifest)
		if err != nil {
			return nil, err
		}
		if desc, manifest, err = f.fetchManifest(mctx, req.URL, repo, child.Digest.String()); err != nil {
			return nil, err
		}
	}
	code, layout, err := f.extract(ctx, req, repo, desc, manifest)
	if err != nil {
		return nil, err
	}
	if err := f.checkModule(req.URL, code); err != nil {
		return nil, err
	}
	m := &Module{URL: req.URL, Code: code, Digest: got, ModuleDigest: Digest(code), Layout: layout}
	if m.Path, err = f.cache.put(r.name, got, code); err != nil {
		f.log.Warn("wasm module cache write failed", "url", redact.Text(req.URL), "err", err)
	}
	f.rememberTag(r, got)
	return m, nil
}

func (f *Fetcher) rememberTag(r *ociRef, checksum string) {
	if r.tag == "" {
		return
	}
	if err := f.cache.setRef(r.name, "tag-"+r.tag, checksum); err != nil {
		f.log.Warn("wasm module cache write failed", "image", r.name, "err", err)
	}
}

// repository is a client for the image's repository with the request's
// credentials and the registry's TLS settings.
func (f *Fetcher) repository(req Request, r *ociRef) (*remote.Repository, error) {
	repo, err := remote.NewRepository(r.name)
	if err != nil {
		return nil, &Error{URL: req.URL, Reason: err.Error()}
	}
	creds, err := f.credentials(req.PullSecret)
	if err != nil {
		return nil, &Error{URL: req.URL, Reason: err.Error()}
	}
	host := r.ref.Registry
	client := f.httpClient(host, 0)
	if tr, ok := client.Transport.(*http.Transport); ok {
		timeout := req.Timeout
		if timeout <= 0 {
			timeout = defaultHTTPTimeout
		}
		tr.ResponseHeaderTimeout = timeout
	}
	repo.Client = &auth.Client{Client: client, Cache: auth.NewCache(), Credential: creds}
	return repo, nil
}

// fetchManifest resolves reference (a tag or digest) and reads the
// manifest, verified against the digest the registry reports. A
// registry that speaks plain HTTP is retried over HTTP when it is listed
// as insecure or on loopback.
func (f *Fetcher) fetchManifest(ctx context.Context, rawURL string, repo *remote.Repository, reference string) (ocispec.Descriptor, []byte, error) {
	desc, rc, err := repo.FetchReference(ctx, reference)
	if err != nil && !repo.PlainHTTP && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") &&
		(f.insecure(repo.Reference.Registry) || isLoopback(repo.Reference.Registry)) {
		repo.PlainHTTP = true
		desc, rc, err = repo.FetchReference(ctx, reference)
	}
	if err != nil {
		return desc, nil, registryError(rawURL, "fetching the manifest", err)
	}
	defer rc.Close()
	if desc.Size > 4<<20 {
		return desc, nil, &Error{URL: rawURL, Reason: fmt.Sprintf("manifest is %d bytes, over the 4 MiB limit", desc.Size)}
	}
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		return desc, nil, blobError(rawURL, "manifest", desc, err)
	}
	return desc, b, nil
}

// registryError classifies a registry failure: unreachable servers and
// 5xx are Unavailable, the rest (404, 401, ...) are not.
func registryError(rawURL, step string, err error) error {
	var resp *errcode.ErrorResponse
	switch {
	case errors.As(err, &resp):
		reason := fmt.Sprintf("%s: registry answered %d %s", step, resp.StatusCode, http.StatusText(resp.StatusCode))
		if len(resp.Errors) > 0 {
			reason += ": " + resp.Errors.Error()
		}
		if resp.StatusCode == http.StatusUnauthorized {
			reason += " (check the credentials: docker config or pull secret)"
		}
		return &Error{URL: rawURL, Reason: reason, Unavailable: resp.StatusCode >= 500, Err: err}
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return &Error{URL: rawURL, Reason: step + ": registry answered 401 Unauthorized and no credentials for it were found (docker config or pull secret)", Err: err}
	case errors.Is(err, errdef.ErrNotFound):
		return &Error{URL: rawURL, Reason: step + ": not found (404): no such tag, digest or repository", Err: err}
	}
	return &Error{URL: rawURL, Reason: step + ": " + describeNetErr(err), Unavailable: true, Err: err}
}

func blobError(rawURL, what string, desc ocispec.Descriptor, err error) error {
	if errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{URL: rawURL, Reason: fmt.Sprintf("%s %s does not match its digest or size (tampered or corrupt blob)", what, desc.Digest), Err: err}
	}
	return registryError(rawURL, "reading "+what+" "+desc.Digest.String(), err)
}

func isIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == mediaTypeDockerManifestList
}

// pickFromIndex chooses the image of an index: the only one, or the one
// for wasm/wasip1.
func pickFromIndex(rawURL string, b []byte) (ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Descriptor{}, &Error{URL: rawURL, Reason: "image index is not valid JSON: " + err.Error()}
	}
	if len(idx.Manifests) == 1 {
		return idx.Manifests[0], nil
	}
	for _, m := range idx.Manifests {
		if p := m.Platform; p != nil && (p.Architecture == "wasm" || p.OS == "wasip1" || p.OS == "wasi") {
			return m, nil
		}
	}
	return ocispec.Descriptor{}, &Error{URL: rawURL, Reason: fmt.Sprintf("image index with %d images, none for wasm/wasip1", len(idx.Manifests))}
}

// manifestJSON covers both Docker v2 and OCI manifests.
type manifestJSON struct {
	MediaType    string               `json:"mediaType,omitempty"`
	ArtifactType string               `json:"artifactType,omitempty"`
	Config       ocispec.Descriptor   `json:"config"`
	Layers       []ocispec.Descriptor `json:"layers"`
}

// extract finds the module in an image, trying the layouts in Istio's
// order (Docker, OCI compat, wasme) and then the CNCF artifact.
func (f *Fetcher) extract(ctx context.Context, req Request, repo *remote.Repository, desc ocispec.Descriptor, b []byte) ([]byte, Layout, error) {
	var m manifestJSON
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, "", &Error{URL: req.URL, Reason: "manifest is not valid JSON: " + err.Error()}
	}
	mediaType := desc.MediaType
	if mediaType == "" {
		mediaType = m.MediaType
	}
	fetch := func(layer ocispec.Descriptor) ([]byte, error) { return f.fetchBlob(ctx, req, repo, layer) }
	var last ocispec.Descriptor
	if len(m.Layers) > 0 {
		last = m.Layers[len(m.Layers)-1]
	}

	if mediaType == mediaTypeDockerManifest {
		if last.MediaType != mediaTypeDockerLayer {
			return nil, "", &Error{URL: req.URL, Reason: fmt.Sprintf("Docker image whose last layer is %q, want %s holding %s", last.MediaType, mediaTypeDockerLayer, pluginFileName)}
		}
		code, err := f.pluginFromTarGz(req.URL, last, fetch)
		return code, LayoutDocker, err
	}
	if last.MediaType == ocispec.MediaTypeImageLayerGzip {
		code, err := f.pluginFromTarGz(req.URL, last, fetch)
		return code, LayoutOCI, err
	}
	if len(m.Layers) == 2 {
		for _, l := range m.Layers {
			if l.MediaType == mediaTypeWasmeContent {
				code, err := fetch(l)
				return code, LayoutWasme, err
			}
		}
	}
	var wasmLayers []ocispec.Descriptor
	for _, l := range m.Layers {
		if l.MediaType == mediaTypeWasmLayer {
			wasmLayers = append(wasmLayers, l)
		}
	}
	if m.Config.MediaType == mediaTypeWasmConfig || len(wasmLayers) > 0 {
		if len(wasmLayers) != 1 {
			return nil, "", &Error{URL: req.URL, Reason: fmt.Sprintf("Wasm artifact with %d application/wasm layers, want exactly 1", len(wasmLayers))}
		}
		code, err := fetch(wasmLayers[0])
		return code, LayoutWasm, err
	}

	types := make([]string, len(m.Layers))
	for i, l := range m.Layers {
		types[i] = l.MediaType
	}
	return nil, "", &Error{URL: req.URL, Reason: fmt.Sprintf(
		"unknown image layout (manifest %s, config %s, layers [%s]): want a Docker or OCI image with %s in a tar+gzip last layer, a wasme image (2 layers, one %s), or a Wasm artifact (%s layer)",
		mediaType, m.Config.MediaType, strings.Join(types, ", "), pluginFileName, mediaTypeWasmeContent, mediaTypeWasmLayer)}
}

// fetchBlob downloads one blob, verified against its descriptor and
// bounded by MaxModuleBytes.
func (f *Fetcher) fetchBlob(ctx context.Context, req Request, repo *remote.Repository, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > f.opts.MaxModuleBytes {
		return nil, &Error{URL: req.URL, Reason: fmt.Sprintf("layer %s is %d bytes, over the %d-byte limit", desc.Digest, desc.Size, f.opts.MaxModuleBytes)}
	}
	rc, err := repo.Fetch(ctx, desc)
	if err != nil {
		return nil, registryError(req.URL, "fetching layer "+desc.Digest.String(), err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if req.Progress != nil {
		r = &progressReader{r: rc, total: desc.Size, fn: req.Progress}
	}
	b, err := content.ReadAll(r, desc)
	if err != nil {
		return nil, blobError(req.URL, "layer", desc, err)
	}
	return b, nil
}

// pluginFromTarGz reads plugin.wasm from a tar+gzip layer.
func (f *Fetcher) pluginFromTarGz(rawURL string, layer ocispec.Descriptor, fetch func(ocispec.Descriptor) ([]byte, error)) ([]byte, error) {
	b, err := fetch(layer)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, &Error{URL: rawURL, Reason: fmt.Sprintf("layer %s is not gzip data: %v", layer.Digest, err)}
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &Error{URL: rawURL, Reason: fmt.Sprintf("layer %s is not a valid tar archive: %v", layer.Digest, err)}
		}
		if path.Base(h.Name) != pluginFileName {
			if h.Typeflag == tar.TypeReg {
				names = append(names, h.Name)
			}
			continue
		}
		if h.Size > f.opts.MaxModuleBytes {
			return nil, &Error{URL: rawURL, Reason: fmt.Sprintf("%s is %d bytes, over the %d-byte limit", pluginFileName, h.Size, f.opts.MaxModuleBytes)}
		}
		code, err := io.ReadAll(tr)
		if err != nil {
			return nil, &Error{URL: rawURL, Reason: fmt.Sprintf("reading %s from layer %s: %v", pluginFileName, layer.Digest, err)}
		}
		return code, nil
	}
	found := "it is empty"
	if len(names) > 0 {
		if len(names) > 5 {
			names = append(names[:5], "…")
		}
		found = "it holds " + strings.Join(names, ", ")
	}
	return nil, &Error{URL: rawURL, Reason: fmt.Sprintf("the last layer (%s) has no %s (%s); Istio and wasmproxy read the module from a file named %s", layer.Digest, pluginFileName, found, pluginFileName)}
}

// progressReader reports bytes read so far.
type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
	last  time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if now := time.Now(); err != nil || now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.fn(p.done, p.total)
	}
	return n, err
}
