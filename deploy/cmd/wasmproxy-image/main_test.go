package main

import (
	"archive/tar"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wasmproxy/wasmproxy/deploy/image"
	"github.com/wasmproxy/wasmproxy/internal/testregistry"
)

// TestPushedImage builds the image from this checkout with the command,
// pushes it to a real registry over TLS, pulls it back and checks what
// a cluster would run: the OCI media types, a non-root user, the labels,
// one layer with the static binary, and that binary answering --version
// with the version it was labelled with.
func TestPushedImage(t *testing.T) {
	reg := testregistry.Start(t, testregistry.Options{TLS: true})
	ctx := context.Background()
	ref := reg.Host + "/wasmproxy/proxy:9.9.9-test"
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	if err := run(ctx, []string{"-version", "9.9.9-test", "-repo", "../../..", "-push", ref, "-ca", reg.CAFile, "-tarball", tarPath}); err != nil {
		t.Fatal(err)
	}

	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: reg.CAPool}
	img, err := remote.Image(parsed, remote.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type = %q, %v; want %q", mt, err, types.OCIManifestSchema1)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Config.User != "65532:65532" {
		t.Errorf("os %q user %q; want linux, 65532:65532", cf.OS, cf.Config.User)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != image.BinaryPath {
		t.Errorf("entrypoint %q, want %q", got, image.BinaryPath)
	}
	if got := cf.Config.Labels["org.opencontainers.image.version"]; got != "9.9.9-test" {
		t.Errorf("version label %q, want 9.9.9-test", got)
	}
	revision := image.Revision(ctx, "../../..")
	if got := cf.Config.Labels["org.opencontainers.image.revision"]; revision != "" && got != revision {
		t.Errorf("revision label %q, want %q", got, revision)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	bin := filepath.Join(t.TempDir(), "wasmproxy")
	found := map[string]*tar.Header{}
	tr2 := tar.NewReader(rc)
	for {
		h, err := tr2.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		found[h.Name] = h
		if "/"+h.Name == image.BinaryPath {
			f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr2); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	if h := found[image.BinaryPath[1:]]; h == nil || h.Mode&0o111 == 0 || h.Uid != 0 {
		t.Fatalf("binary entry %+v: want an executable owned by root (not writable by the user it runs as)", h)
	}
	if h := found["home/nonroot/"]; h == nil || h.Uid != image.UID {
		t.Errorf("home/nonroot/ entry %+v: want a directory owned by %d (the compilation cache goes there)", h, image.UID)
	}

	// The binary is static: it runs here, outside the image, and says
	// which version it is.
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "/9.9.9-test/") {
		t.Errorf("wasmproxy --version: %v\n%s\nwant the stamped version 9.9.9-test", err, out)
	}

	// The tarball holds the same image for `docker load`: the same
	// config (the image ID) under Docker's manifest format.
	fromTar, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := img.ConfigName()
	c2, _ := fromTar.ConfigName()
	if c1 != c2 {
		t.Errorf("tarball image config %s differs from the pushed one's %s", c2, c1)
	}
}

func TestRunRefusesIncompleteFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-push", "x/y:z"}, "-version is required"},
		{[]string{"-version", "1"}, "give -push REF, -tarball FILE or both"},
		{[]string{"-version", "1", "-binary", "/nonexistent/wasmproxy", "-tarball", "x.tar"}, "/nonexistent/wasmproxy"},
	}
	for _, tc := range tests {
		err := run(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
