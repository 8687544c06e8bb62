package redact

import (
	"encoding/base64"
	"strings"
	"testing"

	xdsv3 "github.com/cncf/xds/go/xds/type/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The secrets below must never survive a redaction, in any encoding.
const (
	keyPEM       = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgSECRETKEYBYTES\n-----END PRIVATE KEY-----\n"
	keyPassword  = "pkcs8-passphrase-0451"
	ticketKey1   = "ticket-key-one-80-bytes-of-aes-and-hmac-material-0123456789abcdef0123456789abcd"
	ticketKey2   = "ticket-key-two-80-bytes-of-aes-and-hmac-material-0123456789abcdef0123456789abcd"
	hmacSecret   = "hmac-secret-for-oauth2-cookies-7f3e"
	genericValue = "generic-secret-map-value-91b2"
	upstreamKey  = "-----BEGIN EC PRIVATE KEY-----\nUPSTREAMKEYBYTES\n-----END EC PRIVATE KEY-----\n"
	urlPassword  = "registry-password-5521"
	providerText = "private-key-provider-config-secret"
)

var secrets = []string{keyPEM, "SECRETKEYBYTES", keyPassword, ticketKey1, ticketKey2, hmacSecret, genericValue, "UPSTREAMKEYBYTES", urlPassword, providerText}

func inlineString(s string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
}

func inlineBytes(s string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: []byte(s)}}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// secretBootstrap has a secret in every kind of place: a sensitive
// field of a message inside an Any, repeated sensitive messages, a map of
// secrets, a TypedStruct, an Any under a sensitive field, a URL with a
// password, and a key pasted into free-form metadata.
func secretBootstrap(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	downstream := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{
				CertificateChain: inlineString("-----BEGIN CERTIFICATE-----\npublic\n-----END CERTIFICATE-----\n"),
				PrivateKey:       inlineString(keyPEM),
				Password:         inlineString(keyPassword),
				PrivateKeyProvider: &tlsv3.PrivateKeyProvider{
					ProviderName: "cryptomb",
					ConfigType: &tlsv3.PrivateKeyProvider_TypedConfig{
						TypedConfig: mustAny(t, wrapperspb.String(providerText)),
					},
				},
			}},
		},
		SessionTicketKeysType: &tlsv3.DownstreamTlsContext_SessionTicketKeys{
			SessionTicketKeys: &tlsv3.TlsSessionTicketKeys{Keys: []*corev3.DataSource{inlineBytes(ticketKey1), inlineBytes(ticketKey2)}},
		},
	}
	upstream := &tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{PrivateKey: inlineBytes(upstreamKey)}},
		},
		Sni: "backend.internal",
	}
	upstreamJSON, err := protojson.Marshal(upstream)
	if err != nil {
		t.Fatal(err)
	}
	upstreamStruct := &structpb.Struct{}
	if err := protojson.Unmarshal(upstreamJSON, upstreamStruct); err != nil {
		t.Fatal(err)
	}
	metadata, err := structpb.NewStruct(map[string]any{
		"registry": "https://robot:" + urlPassword + "@registry.example/v2/",
		"pasted":   upstreamKey,
		"plain":    "nothing to hide",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &bootstrapv3.Bootstrap{
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Listeners: []*listenerv3.Listener{{
				Name: "tls",
				FilterChains: []*listenerv3.FilterChain{{
					TransportSocket: &corev3.TransportSocket{
						Name:       "envoy.transport_sockets.tls",
						ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, downstream)},
					},
				}},
				Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"ops": metadata}},
			}},
			Clusters: []*clusterv3.Cluster{{
				Name: "backend",
				TransportSocket: &corev3.TransportSocket{
					Name: "envoy.transport_sockets.tls",
					ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &xdsv3.TypedStruct{
						TypeUrl: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
						Value:   upstreamStruct,
					})},
				},
			}},
			Secrets: []*tlsv3.Secret{
				{Name: "hmac", Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{Secret: inlineString(hmacSecret)}}},
				{Name: "many", Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
					Secrets: map[string]*corev3.DataSource{"api-key": inlineBytes(genericValue)},
				}}},
				{Name: "from-file", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
					CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/certs/chain.pem"}},
					PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/certs/key.pem"}},
				}}},
			},
		},
	}
}

func TestMessageRedactsEverySensitiveField(t *testing.T) {
	b := secretBootstrap(t)
	Message(b)
	sr := b.GetStaticResources()

	var downstream tlsv3.DownstreamTlsContext
	if err := sr.GetListeners()[0].GetFilterChains()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(&downstream); err != nil {
		t.Fatal(err)
	}
	cert := downstream.GetCommonTlsContext().GetTlsCertificates()[0]
	check := func(what string, got, want proto.Message) {
		t.Helper()
		if !proto.Equal(got, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("private_key", cert.GetPrivateKey(), inlineString(Redacted))
	check("password", cert.GetPassword(), inlineString(Redacted))
	check("certificate_chain (not sensitive)", cert.GetCertificateChain(), inlineString("-----BEGIN CERTIFICATE-----\npublic\n-----END CERTIFICATE-----\n"))
	check("session_ticket_keys", downstream.GetSessionTicketKeys(), &tlsv3.TlsSessionTicketKeys{Keys: []*corev3.DataSource{inlineBytes(Redacted), inlineBytes(Redacted)}})
	// An Any under a sensitive field: its payload is redacted whole.
	var provider wrapperspb.StringValue
	if err := cert.GetPrivateKeyProvider().GetTypedConfig().UnmarshalTo(&provider); err != nil {
		t.Fatal(err)
	}
	if provider.GetValue() != Redacted || cert.GetPrivateKeyProvider().GetProviderName() != "cryptomb" {
		t.Errorf("private_key_provider = %v, typed_config %q", cert.GetPrivateKeyProvider(), provider.GetValue())
	}

	// A TypedStruct is read as the message its type_url names.
	ts := &xdsv3.TypedStruct{}
	if err := sr.GetClusters()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(ts); err != nil {
		t.Fatal(err)
	}
	js, _ := protojson.Marshal(ts.GetValue())
	var upstream tlsv3.UpstreamTlsContext
	if err := protojson.Unmarshal(js, &upstream); err != nil {
		t.Fatal(err)
	}
	check("TypedStruct private_key", upstream.GetCommonTlsContext().GetTlsCertificates()[0].GetPrivateKey(), inlineBytes(Redacted))
	if upstream.GetSni() != "backend.internal" {
		t.Errorf("TypedStruct sni = %q, want it kept", upstream.GetSni())
	}

	check("generic_secret.secret", sr.GetSecrets()[0].GetGenericSecret(), &tlsv3.GenericSecret{Secret: inlineString(Redacted)})
	check("generic_secret.secrets (map)", sr.GetSecrets()[1].GetGenericSecret(), &tlsv3.GenericSecret{Secrets: map[string]*corev3.DataSource{"api-key": inlineBytes(Redacted)}})
	// Envoy redacts every string under a sensitive field, a file name
	// too (utility.cc cannot tell a DataSource's specifiers apart).
	check("tls_certificate from files", sr.GetSecrets()[2].GetTlsCertificate(), &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/certs/chain.pem"}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: Redacted}},
	})

	md := sr.GetListeners()[0].GetMetadata().GetFilterMetadata()["ops"].AsMap()
	if got, want := md["registry"], "https://robot:[redacted]@registry.example/v2/"; got != want {
		t.Errorf("URL in metadata = %q, want %q", got, want)
	}
	if md["pasted"] != Redacted+"\n" || md["plain"] != "nothing to hide" {
		t.Errorf("metadata = %v", md)
	}
}

// holds reports whether a JSON text holds s, as is, JSON-escaped or in
// base64 (how protojson prints bytes).
func holds(text, s string) bool {
	for _, form := range []string{s, strings.ReplaceAll(s, "\n", `\n`), base64.StdEncoding.EncodeToString([]byte(s))} {
		if strings.Contains(text, form) {
			return true
		}
	}
	return false
}

func TestProtoJSONLeavesNoSecret(t *testing.T) {
	raw, err := protojson.Marshal(secretBootstrap(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if !holds(string(raw), s) {
			t.Fatalf("the input lacks %q: the test would prove nothing", s)
		}
	}
	out, err := ProtoJSON(raw, "envoy.config.bootstrap.v3.Bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, s := range secrets {
		if holds(text, s) {
			t.Errorf("output holds the secret %q:\n%s", s, text)
		}
	}
	for _, want := range []string{
		`"private_key":{"inline_string":"[redacted]"}`,
		`"inline_bytes":"W3JlZGFjdGVkXQ=="`, // base64 of [redacted], as in Envoy's dump
		`"static_resources"`,                // proto field names
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %s:\n%s", want, text)
		}
	}
}

func TestProtoJSONErrorQuotesNothing(t *testing.T) {
	_, err := ProtoJSON([]byte(`{"static_resources":{"secrets":[{"generic_secret":{"secret":{"inline_bytes":"not base64 `+hmacSecret+`"}}}]}}`), "envoy.config.bootstrap.v3.Bootstrap")
	if err == nil || strings.Contains(err.Error(), hmacSecret) {
		t.Errorf("err = %v, want an error that does not quote the input", err)
	}
	if _, err := ProtoJSON([]byte(`{}`), "no.such.Type"); err == nil {
		t.Error("an unknown type was accepted")
	}
}

func TestText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://user:pw@host/x.wasm", "https://user:[redacted]@host/x.wasm"},
		{"fetching http://robot:p%40ss@127.0.0.1:8080/p.wasm: 404", "fetching http://robot:[redacted]@127.0.0.1:8080/p.wasm: 404"},
		{`url="oci://ghp_token123@ghcr.io/org/plugin:1"`, `url="oci://[redacted]@ghcr.io/org/plugin:1"`},
		{"two: https://a:b@h1/ and http://c:d@[::1]:80/", "two: https://a:[redacted]@h1/ and http://c:[redacted]@[::1]:80/"},
		{"no userinfo: https://host/path@v2 and user@example.com", "no userinfo: https://host/path@v2 and user@example.com"},
		{"plain text", "plain text"},
		{"key: " + keyPEM + "after", "key: [redacted]\nafter"},
		{`quoted: "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----" end`, `quoted: "[redacted]" end`},
		{"cut short: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg", "cut short: [redacted]"},
		{"a certificate stays: -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "a certificate stays: -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
	}
	for _, tt := range tests {
		if got := Text(tt.in); got != tt.want {
			t.Errorf("Text(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkTextPlainLine(b *testing.B) {
	line := `wasm log httpfilter: request to /api/v1/items accepted after validation, 2 keys checked`
	for b.Loop() {
		_ = Text(line)
	}
}
