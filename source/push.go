package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PushRequest is one module to publish as an image.
type PushRequest struct {
	// Code is the module (checked for the Wasm magic).
	Code []byte
	// URL is oci://HOST/REPOSITORY:TAG.
	URL string
	// Layout defaults to LayoutOCI.
	Layout Layout
	// PullSecret: as in Request, for the push credentials.
	PullSecret string
	// Timeout bounds each registry request; 0 = 15s.
	Timeout time.Duration
	// Progress, when set, is called while blobs upload.
	Progress func(done, total int64)
}

// Pushed describes a published image.
type Pushed struct {
	URL string `json:"url"`
	// Digest is the manifest digest: the sha256 an Istio WasmPlugin (or
	// an Envoy remote source with an oci:// URL) pins.
	Digest       string `json:"digest"`
	ModuleDigest string `json:"module_digest"`
	Layout       Layout `json:"layout"`
	// Size is the total of the blobs and the manifest, in bytes.
	Size int64 `json:"size"`
}

// ParseLayout reads a layout name.
func ParseLayout(s string) (Layout, error) {
	for _, l := range Layouts {
		if string(l) == s {
			return l, nil
		}
	}
	names := make([]string, len(Layouts))
	for i, l := range Layouts {
		names[i] = string(l)
	}
	return "", fmt.Errorf("unknown layout %q (want one of %s)", s, strings.Join(names, ", "))
}

// Push publishes a module as an image in the requested layout. The
// images are reproducible: the same module and layout give the same
// manifest digest.
func (f *Fetcher) Push(ctx context.Context, req PushRequest) (*Pushed, error) {
	if err := f.checkModule(req.URL, req.Code); err != nil {
		return nil, err
	}
	layout := req.Layout
	if layout == "" {
		layout = LayoutOCI
	}
	scheme, rest, ok := strings.Cut(req.URL, "://")
	if !ok {
		rest = req.URL
	} else if scheme != "oci" {
		return nil, &Error{URL: req.URL, Reason: "push needs an oci:// URL"}
	}
	r, err := parseOCIRef(req.URL, rest)
	if err != nil {
		return nil, err
	}
	if r.tag == "" {
		return nil, &Error{URL: req.URL, Reason: "push needs a tag (oci://HOST/REPOSITORY:TAG), not a digest"}
	}
	img, err := buildImage(req.Code, layout)
	if err != nil {
		return nil, &Error{URL: req.URL, Reason: err.Error()}
	}
	repo, err := f.repository(Request{URL: req.URL, PullSecret: req.PullSecret, Timeout: req.Timeout}, r)
	if err != nil {
		return nil, err
	}

	var total, done int64
	for _, b := range img.blobs {
		total += int64(len(b.data))
	}
	progress := func(n int64) {
		if req.Progress != nil {
			req.Progress(done+n, total)
		}
	}
	for i, b := range img.blobs {
		exists, err := repo.Exists(ctx, b.desc)
		if err != nil && i == 0 && !repo.PlainHTTP && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") &&
			(f.insecure(r.ref.Registry) || isLoopback(r.ref.Registry)) {
			repo.PlainHTTP = true
			exists, err = repo.Exists(ctx, b.desc)
		}
		if err != nil {
			return nil, registryError(req.URL, "checking blob "+b.desc.Digest.String(), err)
		}
		if !exists {
			var body io.Reader = bytes.NewReader(b.data)
			if req.Progress != nil {
				body = &progressReader{r: body, total: total, fn: func(n, _ int64) { progress(n) }}
			}
			if err := repo.Push(ctx, b.desc, body); err != nil {
				return nil, registryError(req.URL, "uploading blob "+b.desc.Digest.String(), err)
			}
		}
		done += int64(len(b.data))
		progress(0)
	}
	if err := repo.PushReference(ctx, img.manifest, bytes.NewReader(img.manifestBytes), r.tag); err != nil {
		return nil, registryError(req.URL, "uploading the manifest", err)
	}
	return &Pushed{
		URL:          req.URL,
		Digest:       img.manifest.Digest.Encoded(),
		ModuleDigest: Digest(req.Code),
		Layout:       layout,
		Size:         total + img.manifest.Size,
	}, nil
}

type blob struct {
	desc ocispec.Descriptor
	data []byte
}

type image struct {
	blobs         []blob // config first
	manifest      ocispec.Descriptor
	manifestBytes []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

// buildImage lays code out as layout says.
func buildImage(code []byte, layout Layout) (*image, error) {
	var (
		config       blob
		layers       []blob
		manifestType = ocispec.MediaTypeImageManifest
	)
	switch layout {
	case LayoutOCI, LayoutDocker:
		tarball, err := pluginTar(code)
		if err != nil {
			return nil, err
		}
		gz, err := gzipBytes(tarball)
		if err != nil {
			return nil, err
		}
		// A minimal image config: docker and podman accept it, and its
		// diff_ids name the uncompressed layer as the spec asks.
		cfg, err := json.Marshal(map[string]any{
			"architecture": "wasm",
			"os":           "wasip1",
			"config":       map[string]any{},
			"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digest.FromBytes(tarball).String()}},
		})
		if err != nil {
			return nil, err
		}
		if layout == LayoutDocker {
			manifestType = mediaTypeDockerManifest
			config = newBlob(mediaTypeDockerConfig, cfg)
			layers = []blob{newBlob(mediaTypeDockerLayer, gz)}
		} else {
			config = newBlob(ocispec.MediaTypeImageConfig, cfg)
			layers = []blob{newBlob(ocispec.MediaTypeImageLayerGzip, gz)}
		}
	case LayoutWasme:
		// wasme's runtime config, also pushed as the second layer: Istio
		// reads a wasme image only when it has exactly two layers.
		cfg := []byte(`{"type":"envoy_proxy","abiVersions":["v0.2.1"],"config":{"rootIds":[]}}`)
		config = newBlob(mediaTypeWasmeConfig, cfg)
		content := newBlob(mediaTypeWasmeContent, code)
		content.desc.Annotations = map[string]string{ocispec.AnnotationTitle: pluginFileName}
		layers = []blob{content, newBlob(mediaTypeWasmeConfig, cfg)}
	case LayoutWasm:
		layer := newBlob(mediaTypeWasmLayer, code)
		cfg, err := json.Marshal(map[string]any{
			"architecture": "wasm",
			"os":           "wasip1",
			"layerDigests": []string{layer.desc.Digest.String()},
		})
		if err != nil {
			return nil, err
		}
		config = newBlob(mediaTypeWasmConfig, cfg)
		layers = []blob{layer}
	default:
		return nil, fmt.Errorf("unknown layout %q", layout)
	}
	m := manifestJSON{MediaType: manifestType, Config: config.desc}
	for _, l := range layers {
		m.Layers = append(m.Layers, l.desc)
	}
	mb, err := json.Marshal(struct {
		SchemaVersion int `json:"schemaVersion"`
		manifestJSON
	}{2, m})
	if err != nil {
		return nil, err
	}
	img := &image{blobs: append([]blob{config}, layers...), manifestBytes: mb}
	img.manifest = ocispec.Descriptor{MediaType: manifestType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	return img, nil
}

// pluginTar is a tar archive with one file, plugin.wasm, with fixed
// metadata so that the same module gives the same layer.
func pluginTar(code []byte) ([]byte, error) { return pluginTarNamed(pluginFileName, code) }

func pluginTarNamed(name string, code []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(code)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(code); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
