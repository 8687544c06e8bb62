package lua_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
	"github.com/wasmproxy/wasmproxy/internal/testpki"
)

// infoScript answers every request itself (respond()), with what it
// read in response headers: the downstream connection and its TLS
// session (/tls), signature checks (/verify), the filter context
// (/ctx...).
const infoScript = `
function envoy_on_request(handle)
  local path = handle:headers():get(":path")
  local out = {[":status"] = "200"}
  if path == "/tls" then
    local ssl = handle:connection():ssl()
    local si = handle:streamInfo()
    local ssl2 = si:downstreamSslConnection()
    if ssl == nil then
      out["x-ssl"] = "none"
      out["x-ssl2"] = tostring(ssl2)
    else
      out["x-ssl"] = "yes"
      out["x-presented"] = tostring(ssl:peerCertificatePresented())
      out["x-subject"] = ssl:subjectPeerCertificate()
      out["x-issuer"] = ssl:issuerPeerCertificate()
      out["x-uri"] = table.concat(ssl:uriSanPeerCertificate(), ",")
      out["x-dns"] = table.concat(ssl:dnsSansPeerCertificate(), ",")
      out["x-local-dns"] = table.concat(ssl:dnsSansLocalCertificate(), ",")
      out["x-local-subject"] = ssl:subjectLocalCertificate()
      out["x-serial"] = ssl:serialNumberPeerCertificate()
      out["x-digest"] = ssl:sha256PeerCertificateDigest()
      out["x-version"] = ssl:tlsVersion()
      out["x-not-after"] = tostring(ssl:expirationPeerCertificate())
      out["x-not-before"] = tostring(ssl:validFromPeerCertificate())
      out["x-pem"] = ssl:urlEncodedPemEncodedPeerCertificate()
      out["x-chain-is-leaf"] = tostring(ssl:urlEncodedPemEncodedPeerCertificateChain() == ssl:urlEncodedPemEncodedPeerCertificate())
      out["x-same"] = tostring(ssl2:sha256PeerCertificateDigest() == ssl:sha256PeerCertificateDigest())
    end
    out["x-sni"] = si:requestedServerName()
    out["x-local"] = si:downstreamLocalAddress()
    out["x-remote"] = si:downstreamRemoteAddress()
    out["x-direct"] = si:downstreamDirectRemoteAddress()
  elseif path == "/verify" then
    local data = handle:headers():get("x-data")
    local function check(hash, der, sig)
      local key = handle:importPublicKey(der, #der):get()
      if key == nil then return "no key" end
      local ok, err = handle:verifySignature(hash, key, sig, #sig, data, #data)
      return tostring(ok) .. ":" .. tostring(err)
    end
    out["x-rsa"] = check("sha256", RSA_DER, RSA_SIG)
    out["x-rsa-upper"] = check("SHA256", RSA_DER, RSA_SIG)
    out["x-ec"] = check("sha384", EC_DER, EC_SIG)
    out["x-md5"] = check("md5", RSA_DER, RSA_SIG)
    out["x-ed25519"] = check("sha512", ED_DER, RSA_SIG)
    out["x-garbage"] = check("sha256", "not a key", RSA_SIG)
    local ok, err = pcall(function() return handle:verifySignature("sha256", "a string", RSA_SIG, #RSA_SIG, data, #data) end)
    out["x-not-a-key"] = tostring(ok) .. ":" .. tostring(string.match(tostring(err), "invalid public key"))
  elseif string.sub(path, 1, 4) == "/ctx" then
    local c = handle:filterContext()
    local kv = {}
    for k, v in pairs(c) do kv[#kv + 1] = k .. "=" .. tostring(v) end
    out["x-ctx"] = table.concat(kv, ",")
    out["x-team"] = tostring(c:get("team"))
  end
  handle:respond(out, "")
end
`

// luaBytes is b as a Lua string literal of decimal escapes.
func luaBytes(b []byte) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range b {
		fmt.Fprintf(&sb, "\\%03d", c)
	}
	sb.WriteByte('"')
	return sb.String()
}

// TestConnectionAndCrypto runs the API that reads the connection, the
// stream's addresses, the TLS session and its certificates
// (connection():ssl(), streamInfo():downstreamSslConnection(), ...), the
// signature checks (importPublicKey, verifySignature) and the filter
// context, in the library proxy over real mTLS and plaintext listeners.
func TestConnectionAndCrypto(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	server := ca.Issue(t, testpki.Options{Subject: pkix.Name{CommonName: "proxy"}, DNSNames: []string{"proxy.example.com"}})
	alice := ca.Issue(t, testpki.Options{Client: true, Subject: pkix.Name{CommonName: "alice", Organization: []string{"Acme"}},
		URIs: []string{"spiffe://example.org/alice"}, DNSNames: []string{"alice.example.com", "a.example.com"}})

	// Keys and signatures over "hello".
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der := func(k any) []byte {
		b, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	h256 := sha256.Sum256([]byte("hello"))
	rsaSig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, h256[:])
	if err != nil {
		t.Fatal(err)
	}
	h384 := sha512.Sum384([]byte("hello"))
	ecSig, err := ecdsa.SignASN1(rand.Reader, ecKey, h384[:])
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("RSA_DER = %s\nRSA_SIG = %s\nEC_DER = %s\nEC_SIG = %s\nED_DER = %s\n",
		luaBytes(der(&rsaKey.PublicKey)), luaBytes(rsaSig), luaBytes(der(&ecKey.PublicKey)), luaBytes(ecSig), luaBytes(der(edPub))) + infoScript

	hcm := `
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /ctx-route}
                direct_response: {status: 500}
                typed_per_filter_config:
                  envoy.filters.http.lua:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute
                    filter_context: {team: edge}
              - match: {prefix: /ctx-empty}
                direct_response: {status: 500}
                typed_per_filter_config:
                  envoy.filters.http.lua:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute
                    filter_context: {}
              - match: {prefix: /}
                direct_response: {status: 500}
          http_filters:
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              filter_context: {team: core, level: 3}
              default_source_code: {inline_string: ` + strconv.Quote(script) + `}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`
	tlsProxy := inproc.Start(t, `static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates: [{certificate_chain: {inline_string: `+strconv.Quote(string(server.CertPEM))+`}, private_key: {inline_string: `+strconv.Quote(string(server.KeyPEM))+`}}]
            validation_context: {trusted_ca: {inline_string: `+strconv.Quote(string(ca.CertPEM))+`}}
      filters:`+hcm+"\n")
	plainProxy := inproc.Start(t, `static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:`+hcm+"\n")

	clientFor := func(c *testpki.Cert) *http.Client {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "proxy.example.com", MaxVersion: tls.VersionTLS12}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.TLS}
		}
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	get := func(c *http.Client, url string, hdr ...string) http.Header {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		for i := 0; i < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s (a script error?)", url, resp.Status)
		}
		return resp.Header
	}
	expect := func(what string, h http.Header, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", what, k, got, v)
			}
		}
	}

	tlsAddr, plainAddr := tlsProxy.Addr("main"), plainProxy.Addr("main")
	leaf := alice.TLS.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(alice.TLS.Certificate[0]); err != nil {
			t.Fatal(err)
		}
	}
	digest := sha256.Sum256(leaf.Raw)
	h := get(clientFor(alice), "https://"+tlsAddr+"/tls")
	expect("mTLS", h, map[string]string{
		"x-ssl": "yes", "x-presented": "true",
		"x-subject": "CN=alice,O=Acme", "x-issuer": leaf.Issuer.String(),
		"x-uri": "spiffe://example.org/alice", "x-dns": "alice.example.com,a.example.com",
		"x-local-dns": "proxy.example.com", "x-local-subject": "CN=proxy",
		"x-serial": fmt.Sprintf("%x", leaf.SerialNumber.Bytes()), "x-digest": fmt.Sprintf("%x", digest[:]),
		"x-version":   "TLSv1.2",
		"x-not-after": strconv.FormatInt(leaf.NotAfter.Unix(), 10), "x-not-before": strconv.FormatInt(leaf.NotBefore.Unix(), 10),
		"x-pem": filter.URLEncodedPEM(leaf), "x-chain-is-leaf": "true", "x-same": "true",
		"x-sni": "proxy.example.com", "x-local": tlsAddr,
	})
	if r := h.Get("x-remote"); !strings.HasPrefix(r, "127.0.0.1:") || r != h.Get("x-direct") {
		t.Errorf("mTLS: remote %q, direct remote %q, want the client's 127.0.0.1 address", r, h.Get("x-direct"))
	}
	expect("TLS without a client certificate", get(clientFor(nil), "https://"+tlsAddr+"/tls"), map[string]string{
		"x-ssl": "yes", "x-presented": "false", "x-subject": "", "x-uri": "", "x-serial": "", "x-digest": "",
		"x-not-after": "0", "x-pem": "", "x-local-subject": "CN=proxy", "x-version": "TLSv1.2",
	})
	client := &http.Client{Timeout: 60 * time.Second}
	expect("plaintext", get(client, "http://"+plainAddr+"/tls"), map[string]string{
		"x-ssl": "none", "x-ssl2": "nil", "x-sni": "", "x-local": plainAddr,
	})

	verified := map[string]string{
		"x-rsa": "true:nil", "x-rsa-upper": "true:nil", "x-ec": "true:nil",
		"x-md5":       "false:md5 is not supported.",
		"x-ed25519":   "false:Failed to initialize digest verify.",
		"x-garbage":   "no key",
		"x-not-a-key": "false:invalid public key",
	}
	expect("signatures over hello", get(client, "http://"+plainAddr+"/verify", "x-data", "hello"), verified)
	verified["x-rsa"], verified["x-rsa-upper"] = "false:Failed to verify digest. Error code: 0", "false:Failed to verify digest. Error code: 0"
	verified["x-ec"] = "false:Failed to verify digest. Error code: 0"
	expect("signatures over other data", get(client, "http://"+plainAddr+"/verify", "x-data", "hellO"), verified)

	for _, c := range []struct{ path, ctx, team string }{
		{"/ctx", "level=3,team=core", "core"}, // the filter's
		{"/ctx-route", "team=edge", "edge"},   // the route's replaces it
		{"/ctx-empty", "", "nil"},             // even when empty
	} {
		expect(c.path, get(client, "http://"+plainAddr+c.path), map[string]string{"x-ctx": c.ctx, "x-team": c.team})
	}
}
