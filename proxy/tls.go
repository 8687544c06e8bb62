package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// tlsVersions maps the config's TlsParameters names to crypto/tls.
var tlsVersions = map[string]uint16{
	"TLSv1_0": tls.VersionTLS10,
	"TLSv1_1": tls.VersionTLS11,
	"TLSv1_2": tls.VersionTLS12,
	"TLSv1_3": tls.VersionTLS13,
}

// tlsVersionName is the version as Envoy reports it in tls_version
// properties (BoringSSL's SSL_get_version).
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return "unknown"
}

// tlsStats are Envoy's ssl.* counters of one listener or cluster.
type tlsStats struct {
	handshake       *stats.Counter
	connectionError *stats.Counter
	noCertificate   *stats.Counter
	failNoCert      *stats.Counter
	failVerifyError *stats.Counter
	failVerifySAN   *stats.Counter
}

func newTLSStats(st *stats.Store, prefix string) *tlsStats {
	p := prefix + "ssl."
	return &tlsStats{
		handshake:       st.Counter(p + "handshake"),
		connectionError: st.Counter(p + "connection_error"),
		noCertificate:   st.Counter(p + "no_certificate"),
		failNoCert:      st.Counter(p + "fail_verify_no_cert"),
		failVerifyError: st.Counter(p + "fail_verify_error"),
		failVerifySAN:   st.Counter(p + "fail_verify_san"),
	}
}

// peerVerifier checks the peer's certificate the way Envoy's default
// certificate validator does: the chain against trusted_ca when one is
// configured (no host name check), then the subject alternative name
// matchers. It runs from tls.Config.VerifyConnection, so it also covers
// resumed sessions, and counts why a handshake failed.
type peerVerifier struct {
	roots    *x509.CertPool // nil: the chain is not verified
	sans     []config.SANMatcher
	usage    x509.ExtKeyUsage
	required bool // downstream require_client_certificate
	stats    *tlsStats
}

// errNoPeerCertificate is returned when a required certificate is absent.
var errNoPeerCertificate = errors.New("peer did not present a certificate")

func (v *peerVerifier) verify(cs tls.ConnectionState) error {
	return v.verifyNames(cs, nil)
}

// verifyNames is verify with names (auto_san_validation) in place of the
// SAN matchers when there are any.
func (v *peerVerifier) verifyNames(cs tls.ConnectionState, names []string) error {
	if len(cs.PeerCertificates) == 0 {
		if v.required {
			v.stats.failNoCert.Inc()
			return errNoPeerCertificate
		}
		v.stats.noCertificate.Inc()
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if v.roots != nil {
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{v.usage}}); err != nil {
			v.stats.failVerifyError.Inc()
			return fmt.Errorf("certificate verification failed: %w", err)
		}
	}
	if len(names) > 0 {
		if !sanListMatch(leaf, names) {
			v.stats.failVerifySAN.Inc()
			return fmt.Errorf("certificate subject alternative names do not match %q (auto_san_validation)", names)
		}
		return nil
	}
	if len(v.sans) > 0 && !v.matchSAN(leaf) {
		v.stats.failVerifySAN.Inc()
		return errors.New("certificate subject alternative names match none of match_typed_subject_alt_names")
	}
	return nil
}

// matchSAN reports whether a SAN of c matches one of the matchers.
func (v *peerVerifier) matchSAN(c *x509.Certificate) bool {
	for i := range v.sans {
		if v.sans[i].Match(c) {
			return true
		}
	}
	return false
}

// tlsFiles reads the files a TLS context names. A relative name is
// opened relative to the working directory (Envoy's rule) and, when
// nothing is there, beside the config file, as Wasm code is
// (docs/decisions.md §4).
type tlsFiles struct {
	configDir string
}

func (f tlsFiles) read(ds config.DataSource, what string) ([]byte, error) {
	if ds.Filename == "" {
		return ds.Inline, nil
	}
	name := ds.Filename
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) && !filepath.IsAbs(name) && f.configDir != "" {
		if alt, err2 := os.ReadFile(filepath.Join(f.configDir, name)); err2 == nil {
			return alt, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

// common builds the parts of a tls.Config both sides share: versions,
// ALPN, certificates and the peer verifier.
func (f tlsFiles) common(c *config.CommonTLS, st *tlsStats, usage x509.ExtKeyUsage) (*tls.Config, *peerVerifier, error) {
	cfg := &tls.Config{
		MinVersion: tlsVersions[c.MinVersion],
		MaxVersion: tlsVersions[c.MaxVersion],
		NextProtos: c.ALPN,
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.MaxVersion == 0 {
		cfg.MaxVersion = tls.VersionTLS13
	}
	for i, cert := range c.Certificates {
		what := fmt.Sprintf("tls_certificates[%d]", i)
		chain, err := f.read(cert.CertificateChain, what+".certificate_chain")
		if err != nil {
			return nil, nil, err
		}
		key, err := f.read(cert.PrivateKey, what+".private_key")
		if err != nil {
			return nil, nil, err
		}
		pair, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	v := &peerVerifier{usage: usage, stats: st}
	if c.TrustedCA != nil {
		pem, err := f.read(*c.TrustedCA, "validation_context.trusted_ca")
		if err != nil {
			return nil, nil, err
		}
		v.roots = x509.NewCertPool()
		if !v.roots.AppendCertsFromPEM(pem) {
			return nil, nil, errors.New("validation_context.trusted_ca: no PEM certificate found")
		}
	}
	v.sans = c.MatchSANs
	return cfg, v, nil
}

// serverTLS builds the tls.Config of a filter chain's DownstreamTlsContext.
// A client certificate is requested when the context can verify one
// (trusted_ca or SAN matchers) or requires one; it is verified when
// presented and its absence fails the handshake only when required.
func (f tlsFiles) serverTLS(c *config.DownstreamTLS, st *tlsStats) (*tls.Config, error) {
	cfg, v, err := f.common(&c.CommonTLS, st, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	v.required = c.RequireClientCertificate
	if v.required || v.roots != nil || len(v.sans) > 0 {
		cfg.ClientAuth = tls.RequestClientCert
		if v.roots != nil {
			// Sent in the CertificateRequest so clients pick a matching
			// certificate; verification itself is peerVerifier's.
			cfg.ClientCAs = v.roots
		}
		cfg.VerifyConnection = v.verify
	}
	return cfg, nil
}

// clientTLS builds the tls.Config of a cluster's UpstreamTlsContext. As in
// Envoy the server certificate is verified only against trusted_ca and
// the SAN matchers, never against the SNI or the endpoint's address.
func (f tlsFiles) clientTLS(c *config.UpstreamTLS, st *tlsStats) (*tls.Config, *peerVerifier, error) {
	cfg, v, err := f.common(&c.CommonTLS, st, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, nil, err
	}
	cfg.ServerName = c.SNI
	// Go's own verification would demand a host name; peerVerifier does
	// what Envoy does instead.
	cfg.InsecureSkipVerify = true
	v.required = true
	cfg.VerifyConnection = v.verify
	return cfg, v, nil
}

// tlsInfo describes a completed handshake for properties. local is the
// certificate this side presented (nil for none).
func tlsInfo(cs tls.ConnectionState, local *x509.Certificate) *filter.TLSInfo {
	return &filter.TLSInfo{
		Version:            tlsVersionName(cs.Version),
		ServerName:         cs.ServerName,
		NegotiatedProtocol: cs.NegotiatedProtocol,
		PeerCertificates:   cs.PeerCertificates,
		LocalCertificate:   local,
	}
}

// leafOf returns the parsed leaf of a configured certificate.
func leafOf(c *tls.Certificate) *x509.Certificate {
	if c == nil {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}
