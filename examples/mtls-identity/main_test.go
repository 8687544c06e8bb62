package main

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// alice is a verified client certificate; Envoy reports its subject as
// connection.subject_peer_certificate "CN=alice,O=Acme".
var alice = &x509.Certificate{Subject: pkix.Name{CommonName: "alice", Organization: []string{"Acme"}}}

const aliceID = "CN=alice,O=Acme"

// mtls is a connection on which the client presented cert.
func mtls(cert *x509.Certificate) wasmtest.StreamOption {
	return wasmtest.WithInfo(func(i *filter.StreamInfo) {
		i.DownstreamTLS = &filter.TLSInfo{Version: "TLSv1.3", ServerName: "localhost", PeerCertificates: []*x509.Certificate{cert}}
	})
}

// tlsNoCert is a TLS connection without a client certificate.
var tlsNoCert = wasmtest.WithInfo(func(i *filter.StreamInfo) {
	i.DownstreamTLS = &filter.TLSInfo{Version: "TLSv1.3", ServerName: "localhost"}
})

// values is every value of request header key the upstream received.
func values(s *wasmtest.HTTPStream, key string) []string {
	var vs []string
	for _, p := range s.Upstream().Headers.Pairs() {
		if strings.EqualFold(p.Key, key) {
			vs = append(vs, p.Value)
		}
	}
	return vs
}

func TestHTTP(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`{"protocol": "http", "header": "x-client-identity"}`))

	t.Run("the identity reaches the upstream", func(t *testing.T) {
		s := p.NewHTTPStream(mtls(alice))
		s.SendRequestHeaders(wasmtest.Request("GET", "/"), true).ExpectContinue()
		s.ExpectNoLocalResponse()
		if got := values(s, "x-client-identity"); len(got) != 1 || got[0] != aliceID {
			t.Errorf("the upstream got x-client-identity %q, want [%q]", got, aliceID)
		}
		s.SendResponseHeaders(wasmtest.Response(200), true).ExpectContinue()
		s.ExpectClientStatus(200)
		s.Complete()
	})
	t.Run("a forged header is replaced", func(t *testing.T) {
		s := p.NewHTTPStream(mtls(alice))
		s.SendRequestHeaders(wasmtest.Request("POST", "/admin",
			"x-client-identity", "admin", "X-Client-Identity", "CN=root", "content-type", "text/plain"), false).ExpectContinue()
		s.SendRequestBody([]byte("data"), true).ExpectContinue()
		if got := values(s, "x-client-identity"); len(got) != 1 || got[0] != aliceID {
			t.Errorf("the upstream got x-client-identity %q, want only [%q]", got, aliceID)
		}
		s.ExpectUpstreamHeader("content-type", "text/plain")
		if got := string(s.Upstream().Body); got != "data" {
			t.Errorf("the upstream got body %q, want %q", got, "data")
		}
		s.SendResponseHeaders(wasmtest.Response(204), true).ExpectContinue()
		s.Complete()
	})
	for _, c := range []struct {
		name string
		opts []wasmtest.StreamOption
	}{
		{"plaintext", nil},
		{"TLS without a client certificate", []wasmtest.StreamOption{tlsNoCert}},
	} {
		t.Run(c.name+" gets 403", func(t *testing.T) {
			s := p.NewHTTPStream(c.opts...)
			s.SendRequestHeaders(wasmtest.Request("GET", "/", "x-client-identity", aliceID), true).ExpectPause()
			s.ExpectLocalResponse(403, "client certificate required\n")
			s.ExpectClientStatus(403)
			if up := s.Upstream().Headers; up != nil {
				t.Errorf("the request reached the upstream: %v", up.Pairs())
			}
			s.Complete()
		})
	}
	t.Run("another header name", func(t *testing.T) {
		p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`{"header": "x-peer"}`))
		s := p.NewHTTPStream(mtls(alice))
		s.SendRequestHeaders(wasmtest.Request("GET", "/", "x-peer", "forged", "x-client-identity", "kept"), true).ExpectContinue()
		if got := values(s, "x-peer"); len(got) != 1 || got[0] != aliceID {
			t.Errorf("the upstream got x-peer %q, want [%q]", got, aliceID)
		}
		s.ExpectUpstreamHeader("x-client-identity", "kept")
		s.SendResponseHeaders(wasmtest.Response(200), true).ExpectContinue()
		s.Complete()
	})
}

func TestTCP(t *testing.T) {
	p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`{"protocol": "tcp"}`))

	t.Run("an identity line before the first data only", func(t *testing.T) {
		s := p.NewTCPStream(mtls(alice))
		s.Connect().ExpectContinue()
		s.SendDownstream([]byte("hello\n"), false).ExpectContinue()
		s.SendDownstream([]byte("more\n"), false).ExpectContinue()
		s.ExpectUpstream("x-client-identity: " + aliceID + "\nhello\nmore\n")
		s.SendUpstream([]byte("welcome\n"), false).ExpectContinue()
		s.ExpectClient("welcome\n")
		if closed, why := s.Closed(); closed {
			t.Errorf("the plugin closed the connection: %s", why)
		}
		s.Close()
	})
	t.Run("a bare end of stream first gets no line", func(t *testing.T) {
		s := p.NewTCPStream(mtls(alice))
		s.Connect().ExpectContinue()
		s.SendDownstream(nil, true).ExpectContinue()
		data, ended := s.Upstream()
		if len(data) != 0 || !ended {
			t.Errorf("the upstream got %q (ended %v), want nothing and the end of stream", data, ended)
		}
		s.Close()
	})
	for _, c := range []struct {
		name string
		opts []wasmtest.StreamOption
	}{
		{"plaintext", nil},
		{"TLS without a client certificate", []wasmtest.StreamOption{tlsNoCert}},
	} {
		t.Run(c.name+" is closed", func(t *testing.T) {
			s := p.NewTCPStream(c.opts...)
			s.Connect().ExpectPause()
			if closed, _ := s.Closed(); !closed {
				t.Errorf("the plugin did not close the connection")
			}
			s.SendDownstream([]byte("hello\n"), false)
			if data, _ := s.Upstream(); len(data) != 0 {
				t.Errorf("the upstream got %q, want nothing", data)
			}
			s.Close()
			p.ExpectLog("warning", "closing a connection without a client certificate")
		})
	}
}

func TestConfiguration(t *testing.T) {
	wasm := wasmtest.Build(t, ".")
	for _, c := range []struct{ conf, log string }{
		{`{"protocol": "udp"}`, `protocol "udp": want http or tcp`},
		{`{"header": ""}`, "header must not be empty"},
		{`{"protocol": `, "plugin configuration"},
	} {
		failures := wasmtest.Capture(func(t wasmtest.TB) {
			wasmtest.Load(t, wasm, wasmtest.PluginConfig(c.conf))
		})
		if len(failures) == 0 || !strings.Contains(failures[0], c.log) {
			t.Errorf("configuration %s: want a load failure quoting %q, got %q", c.conf, c.log, failures)
		}
	}
}
