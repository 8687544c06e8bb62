package config

// HCMRequestHandling is what an HTTP connection manager does to requests
// and to its own replies beyond routing (config/build_hcm.go): local
// reply rewriting, the forwarding headers, path normalization and the
// client certificate header. It is embedded in HTTPConnectionManager, so
// its fields print at the connection manager's level.
type HCMRequestHandling struct {
	// LocalReply is local_reply_config; nil when the config has none
	// (every local reply is sent as the proxy made it).
	LocalReply *LocalReplyConfig `json:"local_reply_config,omitempty"`

	// UseRemoteAddress: the downstream connection's address is the
	// client's (appended to x-forwarded-for, x-forwarded-proto set from
	// the connection); else the request came through a proxy that set
	// them. XFFNumTrustedHops proxies in front are trusted: the client is
	// that many addresses from the end of x-forwarded-for.
	UseRemoteAddress  bool   `json:"use_remote_address,omitempty"`
	XFFNumTrustedHops uint32 `json:"xff_num_trusted_hops,omitempty"`
	// SkipXFFAppend leaves x-forwarded-for as it came.
	SkipXFFAppend bool `json:"skip_xff_append,omitempty"`
	// Via is appended to the via header of requests and responses ("":
	// none).
	Via string `json:"via,omitempty"`
	// AddUserAgent is add_user_agent: requests get
	// x-envoy-downstream-service-cluster (node.cluster),
	// x-envoy-downstream-service-node (node.id, when set) and, when they
	// have none, a user-agent of node.cluster.
	AddUserAgent bool `json:"add_user_agent,omitempty"`
	// InternalAddresses are internal_address_config.cidr_ranges, as
	// "addr/len" with the host bits cleared: a request whose trusted
	// client address is in one is internal (x-envoy-internal). None by
	// default, as in Envoy since 1.36.
	InternalAddresses []string `json:"internal_addresses,omitempty"`

	// Path normalization, before the filters and the route see :path
	// (and sent upstream so): PathWithEscapedSlashes is
	// path_with_escaped_slashes_action ("" keeps %2F and %5C, Envoy's
	// default; REJECT_REQUEST, UNESCAPE_AND_REDIRECT,
	// UNESCAPE_AND_FORWARD), then NormalizePath resolves the path as
	// RFC 3986 (dot segments, backslashes, percent-encoded unreserved
	// characters), then MergeSlashes folds repeated slashes.
	PathWithEscapedSlashes string `json:"path_with_escaped_slashes_action,omitempty"`
	NormalizePath          bool   `json:"normalize_path,omitempty"`
	MergeSlashes           bool   `json:"merge_slashes,omitempty"`

	// ServerHeaderTransformation is server_header_transformation: ""
	// (OVERWRITE, the default) sets server to ServerName on every
	// response, APPEND_IF_ABSENT only where the response has none,
	// PASS_THROUGH never.
	ServerHeaderTransformation string `json:"server_header_transformation,omitempty"`

	// ForwardClientCertDetails is forward_client_cert_details: ""
	// (SANITIZE, the default) removes x-forwarded-client-cert,
	// FORWARD_ONLY and ALWAYS_FORWARD_ONLY pass it on, APPEND_FORWARD
	// appends and SANITIZE_SET sets this connection's client certificate
	// details (mTLS connections only; others lose the header, except
	// under ALWAYS_FORWARD_ONLY).
	ForwardClientCertDetails string `json:"forward_client_cert_details,omitempty"`
	// ClientCertDetails is set_current_client_cert_details: which fields
	// beside By and Hash go into the header.
	ClientCertDetails *ClientCertDetails `json:"set_current_client_cert_details,omitempty"`
}

// ClientCertDetails are the optional x-forwarded-client-cert fields.
type ClientCertDetails struct {
	Subject bool `json:"subject,omitempty"`
	URI     bool `json:"uri,omitempty"`
	Cert    bool `json:"cert,omitempty"`
	Chain   bool `json:"chain,omitempty"`
	DNS     bool `json:"dns,omitempty"`
}

// LocalReplyConfig is local_reply_config: the mappers are tried in order
// on every reply the proxy makes itself (a filter's, the router's, a
// timeout's); the first whose filter matches rewrites it, then the body
// is formatted by that mapper's BodyFormatOverride, else BodyFormat,
// else left as it is.
type LocalReplyConfig struct {
	Mappers []*ResponseMapper `json:"mappers,omitempty"`
	// BodyFormat is body_format; nil leaves the body as it is, with
	// content type text/plain.
	BodyFormat *BodyFormat `json:"body_format,omitempty"`
}

// ResponseMapper is one local_reply_config mapper. Its rules apply in
// Envoy's order: Body, then HeadersToAdd (seeing the original status),
// then StatusCode, then the body format (seeing the new status).
type ResponseMapper struct {
	// Filter is an access-log filter held against the reply (its status
	// code, the request headers, the response code details).
	Filter *AccessLogFilter `json:"filter"`
	// StatusCode replaces the status when non-zero.
	StatusCode uint32 `json:"status_code,omitempty"`
	// Body replaces the body when set (inline only).
	Body *string `json:"body,omitempty"`
	// BodyFormatOverride formats the body instead of BodyFormat.
	BodyFormatOverride *BodyFormat `json:"body_format_override,omitempty"`
	// HeadersToAdd are added to the reply's headers (format strings).
	HeadersToAdd *HeaderMutations `json:"headers_to_add,omitempty"`
}

// BodyFormat is a SubstitutionFormatString used as a local reply's body:
// a text format (Text) or a JSON format (JSON), with Envoy's command
// operators, %LOCAL_REPLY_BODY% being the body before formatting.
type BodyFormat struct {
	Text string         `json:"text_format,omitempty"`
	JSON map[string]any `json:"json_format,omitempty"`
	// OmitEmptyValues: absent values print as "" (text) or leave their
	// key out (JSON).
	OmitEmptyValues bool `json:"omit_empty_values,omitempty"`
	// ContentType is the reply's content-type: content_type, else
	// application/json for a JSON format, else text/plain.
	ContentType string `json:"content_type"`
}
