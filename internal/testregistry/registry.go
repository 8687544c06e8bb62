// Package testregistry runs a real OCI registry on 127.0.0.1 for tests:
// Debian's docker-registry (github.com/docker/distribution, the code
// behind Docker's registry image) as a child process, with TLS from a
// CA generated on the spot and htpasswd basic auth, storing blobs on
// disk so that a test can tamper with them.
//
// The registry runs out of process so that the module does not depend
// on distribution (and, through it, on redis and OpenTelemetry): an
// embedder of wasmproxy inherits none of that. .ci/run installs the
// package; without it the tests that need a registry are skipped, or
// fail when CI=true.
package testregistry

import (
	"bytes"
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
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/wasmproxy/wasmproxy/internal/prereq"
	"github.com/wasmproxy/wasmproxy/internal/testnet"
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

	cmd      *exec.Cmd
	output   *bytes.Buffer
	exited   chan struct{}
	stopOnce sync.Once
}

// Binary is the registry program Start runs, found on PATH.
const Binary = prereq.RegistryBinary

// Start runs a registry until the test ends. Without the registry
// program the test is skipped (failed when CI=true, where .ci/run has
// installed it).
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	bin, err := prereq.FindRegistry()
	prereq.Skip(t, err)
	dir := t.TempDir()
	r := &Registry{Root: filepath.Join(dir, "storage")}
	r.Host = fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t))
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n")
	fmt.Fprintf(&cfg, "storage:\n  filesystem:\n    rootdirectory: %q\n  maintenance:\n    uploadpurging:\n      enabled: false\n", r.Root)
	fmt.Fprintf(&cfg, "http:\n  addr: %q\n  secret: wasmproxy-test-secret\n", r.Host)
	if opts.TLS {
		cert, caPEM, err := certificates()
		if err != nil {
			t.Fatal(err)
		}
		r.CAFile = filepath.Join(dir, "ca.pem")
		certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		for file, data := range map[string][]byte{
			r.CAFile: caPEM,
			certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
			keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		} {
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		r.CAPool = x509.NewCertPool()
		r.CAPool.AppendCertsFromPEM(caPEM)
		fmt.Fprintf(&cfg, "  tls:\n    certificate: %q\n    key: %q\n", certFile, keyFile)
	}
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
		fmt.Fprintf(&cfg, "auth:\n  htpasswd:\n    realm: wasmproxy-test\n    path: %q\n", htpasswd)
	}
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r.output = &bytes.Buffer{}
	r.cmd = exec.Command(bin, "serve", cfgFile)
	r.cmd.Stdout, r.cmd.Stderr = r.output, r.output
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("testregistry: starting %s: %v", bin, err)
	}
	r.exited = make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(r.Stop)
	if err := r.waitReady(opts.TLS); err != nil {
		r.Stop()
		t.Fatalf("testregistry: %v\n%s", err, r.output)
	}
	return r
}

// waitReady waits (bounded) until the registry answers its API root.
func (r *Registry) waitReady(overTLS bool) error {
	scheme := "http"
	client := &http.Client{Timeout: 5 * time.Second}
	if overTLS {
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.CAPool}}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-r.exited:
			return errors.New("the registry exited during start-up")
		default:
		}
		resp, err := client.Get(scheme + "://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return nil // 200, or 401 with auth: it serves
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the registry did not answer on %s within 60 s: %v", r.Host, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the registry down (connections refused from then on).
func (r *Registry) Stop() {
	r.stopOnce.Do(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
	})
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
