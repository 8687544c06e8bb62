// Command wasmproxy-image builds wasmproxy's container image without a
// Docker daemon and pushes it to a registry or writes it as a tarball
// that `docker load` and `crane push` read.
//
//	go -C deploy run ./cmd/wasmproxy-image -version 0.1.0 -push registry.example/wasmproxy:0.1.0
//	go -C deploy run ./cmd/wasmproxy-image -version 0.1.0 -tarball wasmproxy.tar
//
// Without -binary it compiles the checkout's cmd/wasmproxy (static,
// linux) with the version and commit stamped in. A push authenticates
// with the Docker config (~/.docker/config.json, $DOCKER_CONFIG), as
// `docker push` would.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/wasmproxy/wasmproxy/deploy/image"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "wasmproxy-image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wasmproxy-image", flag.ContinueOnError)
	version := fs.String("version", "", "the version to stamp into the binary and the image label (required)")
	binary := fs.String("binary", "", "a wasmproxy binary (linux, CGO_ENABLED=0) to package instead of building one")
	repo := fs.String("repo", "..", "the wasmproxy checkout to build (relative to the deploy module)")
	arch := fs.String("arch", "", "GOARCH of the image (default: this machine's)")
	push := fs.String("push", "", "push the image to this reference (REGISTRY/REPOSITORY:TAG)")
	tarPath := fs.String("tarball", "", "write the image as a tarball (docker load) to this file")
	caFile := fs.String("ca", "", "PEM file of CAs to trust for the registry, beside the system's")
	insecure := fs.Bool("insecure", false, "allow a registry over plain HTTP")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" {
		return errors.New("-version is required")
	}
	if *push == "" && *tarPath == "" {
		return errors.New("give -push REF, -tarball FILE or both")
	}
	bin := *binary
	revision := image.Revision(ctx, *repo)
	if bin == "" {
		dir, err := os.MkdirTemp("", "wasmproxy-image")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "wasmproxy")
		if err := image.BuildBinary(ctx, *repo, bin, *version, revision, *arch); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	img, err := image.Build(data, image.Info{Version: *version, Revision: revision, Source: "https://github.com/wasmproxy/wasmproxy", Arch: *arch})
	if err != nil {
		return err
	}
	var opts []name.Option
	if *insecure {
		opts = append(opts, name.Insecure)
	}
	refText := *push
	if refText == "" {
		refText = "wasmproxy:" + *version
	}
	ref, err := name.ParseReference(refText, opts...)
	if err != nil {
		return fmt.Errorf("-push %q: %w", refText, err)
	}
	if *tarPath != "" {
		if err := tarball.WriteToFile(*tarPath, ref, img); err != nil {
			return fmt.Errorf("-tarball %s: %w", *tarPath, err)
		}
		fmt.Println("wrote", *tarPath)
	}
	if *push != "" {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fmt.Errorf("-ca: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("-ca %s: no PEM certificate in it", *caFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		digest, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("pushed %s@%s\n", ref.Context(), digest)
	}
	return nil
}
