// Package testregistry runs a real OCI registry (distribution v3, the
// code behind Docker's registry image) on 127.0.0.1 for tests, with TLS
// from a CA generated on the spot and htpasswd basic auth, storing blobs
// on disk so that a test can tamper with them.
package testregistry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// Options choose the registry's security.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost
	// signed by a fresh CA (Registry.CAFile, Registry.CAPool).
	TLS bool
	// Users enables basic auth (htpasswd, bcrypt) with these
	// user → password pairs.
	Users map[string]string
}

// Registry is a running registry.
type Registry struct {
	// Host is "127.0.0.1:PORT", what goes after oci://.
	Host string
	// CAFile and CAPool trust the registry's certificate (TLS only).
	CAFile string
	CAPool *x509.CertPool
	// Root is the storage directory.
	Root string

	srv *http.Server
	ln  net.Listener
}

func init() {
	// distribution logs every request through logrus.
	logrus.SetOutput(io.Discard)
}

// Start runs a registry until the test ends.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	dir := t.TempDir()
	r := &Registry{Root: filepath.Join(dir, "storage")}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem":  configuration.Parameters{"rootdirectory": r.Root},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
		},
	}
	cfg.HTTP.Secret = "wasmproxy-test-secret"
	if len(opts.Users) > 0 {
		var lines []string
		for user, pass := range opts.Users {
			hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, user+":"+string(hash))
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "wasmproxy-test", "path": htpasswd}}
	}
	app, err := newApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Host = ln.Addr().String()
	if opts.TLS {
		cert, caPEM, err := certificates()
		if err != nil {
			t.Fatal(err)
		}
		r.CAFile = filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(r.CAFile, caPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		r.CAPool = x509.NewCertPool()
		r.CAPool.AppendCertsFromPEM(caPEM)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	r.ln = ln
	r.srv = &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(r.Stop)
	return r
}

func newApp(cfg *configuration.Configuration) (app http.Handler, err error) {
	defer func() {
		// NewApp panics on a bad configuration.
		if p := recover(); p != nil {
			err = fmt.Errorf("starting the registry: %v", p)
		}
	}()
	return handlers.NewApp(context.Background(), cfg), nil
}

// Stop shuts the registry down (connections refused from then on).
func (r *Registry) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	_ = r.ln.Close() // in case Serve had not started yet
}

// BlobPath is the file holding a blob ("sha256:…" or its hex).
func (r *Registry) BlobPath(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.Root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// Tamper flips one byte of a stored blob, keeping its size, so the
// registry serves content that no longer matches its digest.
func (r *Registry) Tamper(digest string) error {
	path := r.BlobPath(digest)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("empty blob")
	}
	b[len(b)/2] ^= 0xff
	return os.WriteFile(path, b, 0o644)
}

// DockerConfig writes a docker config.json with the user's credentials
// for this registry and returns its path.
func (r *Registry) DockerConfig(t testing.TB, user, password string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	auth := basicAuth(user, password)
	body := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.Host, auth)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func basicAuth(user, password string) string {
	return base64Std(user + ":" + password)
}

// ServerTLS returns a TLS config for a server on 127.0.0.1/localhost,
// with a certificate signed by a fresh CA, and that CA as PEM.
func ServerTLS() (*tls.Config, []byte, error) {
	cert, caPEM, err := certificates()
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, caPEM, nil
}

// certificates makes a CA and a server certificate for 127.0.0.1 and
// localhost signed by it.
func certificates() (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "wasmproxy test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caPEM, nil
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
