// Package image builds wasmproxy's container image without a Docker
// daemon: one layer holding a static binary, a non-root user and the
// directories the Kubernetes manifests mount into, on no base image at
// all (the binary needs no libc, shell or CA bundle of the image's: Go
// carries its own resolver, and TLS roots come from the config's
// trusted_ca or the mounted secrets).
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths and identity inside the image. The manifests in
// deploy/kubernetes rely on them.
const (
	BinaryPath = "/usr/local/bin/wasmproxy"
	ConfigPath = "/etc/wasmproxy/envoy.yaml"
	// UID and GID are distroless's "nonroot" (65532), so that
	// runAsNonRoot holds and no file in the image is writable by it.
	UID = 65532
	GID = 65532
)

// Info describes the build; it becomes the image's OCI labels.
type Info struct {
	// Version is the binary's version (-X main.version), required.
	Version string
	// Revision is the source commit, if known.
	Revision string
	// Source is the repository URL, if known.
	Source string
	// Created is the build time; the zero time keeps the image
	// reproducible (the same binary gives the same digest).
	Created time.Time
	// Arch is the binary's GOARCH; empty means the builder's.
	Arch string
}

// Build returns the image for binary, a wasmproxy executable built for
// linux with CGO_ENABLED=0.
func Build(binary []byte, info Info) (v1.Image, error) {
	if info.Version == "" {
		return nil, fmt.Errorf("image: Info.Version is required (it becomes the org.opencontainers.image.version label)")
	}
	if len(binary) < 4 || string(binary[:4]) != "\x7fELF" {
		return nil, fmt.Errorf("image: the binary is not a Linux ELF executable (build it with GOOS=linux CGO_ENABLED=0)")
	}
	layerTar, err := rootFS(binary, info.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	arch := info.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: info.Created}
	labels := map[string]string{
		"org.opencontainers.image.title":       "wasmproxy",
		"org.opencontainers.image.description": "A proxy whose HTTP and TCP data path runs Proxy-Wasm plugins, configured with Envoy's v3 config",
		"org.opencontainers.image.version":     info.Version,
	}
	if info.Revision != "" {
		labels["org.opencontainers.image.revision"] = info.Revision
	}
	if info.Source != "" {
		labels["org.opencontainers.image.source"] = info.Source
	}
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"-c", ConfigPath},
		User:       fmt.Sprintf("%d:%d", UID, GID),
		WorkingDir: "/etc/wasmproxy",
		// The plugin compilation cache goes under $HOME/.cache: a
		// directory the user owns (an emptyDir in the manifests).
		Env:    []string{"HOME=/home/nonroot"},
		Labels: labels,
		ExposedPorts: map[string]struct{}{
			"8080/tcp": {}, // the listener of the example bootstrap
			"9901/tcp": {}, // admin: /ready, /stats/prometheus
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return img, nil
}

// rootFS is the layer: the binary, the nonroot user's passwd and group
// entries (so tools that resolve the user find it) and its home.
func rootFS(binary []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, uid, gid int, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: gid, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	steps := []func() error{
		func() error { return dir("etc/", 0, 0, 0o755) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/wasmproxy/", 0, 0, 0o755) },
		func() error { return dir("home/", 0, 0, 0o755) },
		func() error { return dir("home/nonroot/", UID, GID, 0o700) },
		func() error { return dir("tmp/", 0, 0, 0o1777) },
		func() error { return dir("usr/", 0, 0, 0o755) },
		func() error { return dir("usr/local/", 0, 0, 0o755) },
		func() error { return dir("usr/local/bin/", 0, 0, 0o755) },
		func() error { return file(BinaryPath[1:], 0o755, binary) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return buf.Bytes(), nil
}
