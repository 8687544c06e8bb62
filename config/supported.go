package config

import (
	"github.com/wasmproxy/wasmproxy/filters"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// fieldUse says what wasmproxy does with a field that is set.
type fieldUse int

const (
	// implemented fields are read into the model.
	implemented fieldUse = iota + 1
	// inert fields are accepted and change nothing in wasmproxy (the
	// note says why); their contents are not checked further.
	inert
)

// fieldRule is the allow-list entry of one proto field.
type fieldRule struct {
	use fieldUse
	// opaque: the value is taken whole (passed to plugins or ignored), so
	// the walk does not look inside it.
	opaque bool
	// payloads, for an Any field, are the message types accepted in it;
	// the walk continues into the payload. An Any field without payloads
	// is opaque.
	payloads []protoreflect.FullName
	// native: the Any may also carry a native HTTP or network filter's config
	// (package filters), which that filter's Parse checks.
	native bool
	// note is for readers of this table; docs/compatibility.md says the
	// same to users.
	note string
}

// supportedFields is the allow-list, keyed by "<message full name>.<field
// name>". A set field whose key is missing is "not supported yet".
// Messages shared by several places (Address, DataSource) have one entry;
// where a place takes less than the message allows (a direct_response
// body from a file), buildBootstrap rejects it with the path.
var supportedFields = map[string]fieldRule{
	// Bootstrap
	"envoy.config.bootstrap.v3.Bootstrap.node":             {use: implemented, opaque: true, note: "id and cluster in the model; the whole Node serialized for the xds.node property"},
	"envoy.config.bootstrap.v3.Bootstrap.static_resources": {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.admin":            {use: implemented},

	// dynamic_resources: listeners and clusters over ADS (config/dynamic.go)
	"envoy.config.bootstrap.v3.Bootstrap.dynamic_resources":               {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.DynamicResources.ads_config":     {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.DynamicResources.lds_config":     {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.DynamicResources.cds_config":     {use: implemented},
	"envoy.config.core.v3.ApiConfigSource.api_type":                       {use: implemented, note: "GRPC (state of the world) or DELTA_GRPC (incremental)"},
	"envoy.config.core.v3.ApiConfigSource.transport_api_version":          {use: implemented},
	"envoy.config.core.v3.ApiConfigSource.grpc_services":                  {use: implemented},
	"envoy.config.core.v3.ApiConfigSource.set_node_on_first_message_only": {use: implemented},
	"envoy.config.core.v3.GrpcService.envoy_grpc":                         {use: implemented},
	"envoy.config.core.v3.GrpcService.EnvoyGrpc.cluster_name":             {use: implemented},
	"envoy.config.core.v3.ConfigSource.ads":                               {use: implemented},
	"envoy.config.core.v3.ConfigSource.api_config_source":                 {use: implemented, note: "GRPC or DELTA_GRPC through a static cluster: a stream per config source and type"},
	"envoy.config.core.v3.ConfigSource.path":                              {use: implemented, note: "lds_config, cds_config: a DiscoveryResponse file"},
	"envoy.config.core.v3.ConfigSource.path_config_source":                {use: implemented},
	"envoy.config.core.v3.PathConfigSource.path":                          {use: implemented},
	"envoy.config.core.v3.ConfigSource.resource_api_version":              {use: implemented},
	"envoy.config.core.v3.ConfigSource.initial_fetch_timeout":             {use: implemented},

	// Metadata, bootstrap_extensions (Wasm services) and stats_config
	// (config/build_bootstrap.go).
	"envoy.config.listener.v3.Listener.metadata":                              {use: implemented},
	"envoy.config.route.v3.VirtualHost.metadata":                              {use: implemented},
	"envoy.config.route.v3.Route.metadata":                                    {use: implemented},
	"envoy.config.cluster.v3.Cluster.metadata":                                {use: implemented},
	"envoy.config.core.v3.Metadata.filter_metadata":                           {use: implemented, note: "read by plugins through the xds.*_metadata properties"},
	"envoy.config.bootstrap.v3.Bootstrap.bootstrap_extensions":                {use: implemented},
	"envoy.config.core.v3.TypedExtensionConfig.name":                          {use: implemented},
	"envoy.config.core.v3.TypedExtensionConfig.typed_config":                  {use: implemented, payloads: []protoreflect.FullName{wasmServiceName, uriTemplateMatchName, uriTemplateRewriteName, preserveCaseName}, note: "bootstrap_extensions: WasmService; path_match_policy, path_rewrite_policy: uri_template; header_key_format.stateful_formatter: preserve_case (each place refuses the others' types)"},
	"envoy.extensions.wasm.v3.WasmService.config":                             {use: implemented},
	"envoy.extensions.wasm.v3.WasmService.singleton":                          {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.stats_config":                        {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.layered_runtime":                     {use: implemented},
	"envoy.config.bootstrap.v3.LayeredRuntime.layers":                         {use: implemented},
	"envoy.config.bootstrap.v3.RuntimeLayer.name":                             {use: implemented},
	"envoy.config.bootstrap.v3.RuntimeLayer.static_layer":                     {use: implemented, opaque: true, note: "flattened into runtime entries"},
	"envoy.config.bootstrap.v3.RuntimeLayer.disk_layer":                       {use: implemented},
	"envoy.config.bootstrap.v3.RuntimeLayer.admin_layer":                      {use: implemented},
	"envoy.config.bootstrap.v3.RuntimeLayer.DiskLayer.symlink_root":           {use: implemented},
	"envoy.config.bootstrap.v3.RuntimeLayer.DiskLayer.subdirectory":           {use: implemented},
	"envoy.config.bootstrap.v3.RuntimeLayer.DiskLayer.append_service_cluster": {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.stats_sinks":                         {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.stats_flush_interval":                {use: implemented},
	"envoy.config.metrics.v3.StatsSink.name":                                  {use: implemented},
	"envoy.config.metrics.v3.StatsSink.typed_config":                          {use: implemented, payloads: []protoreflect.FullName{statsdSinkName, dogStatsdSinkName}},
	"envoy.config.metrics.v3.StatsdSink.address":                              {use: implemented, note: "UDP to an IP address"},
	"envoy.config.metrics.v3.StatsdSink.prefix":                               {use: implemented},
	"envoy.config.metrics.v3.DogStatsdSink.address":                           {use: implemented, note: "UDP to an IP address"},
	"envoy.config.metrics.v3.DogStatsdSink.prefix":                            {use: implemented},
	"envoy.config.metrics.v3.DogStatsdSink.max_bytes_per_datagram":            {use: implemented},
	"envoy.config.metrics.v3.StatsConfig.stats_tags":                          {use: implemented},
	"envoy.config.metrics.v3.StatsConfig.use_all_default_tags":                {use: implemented},
	"envoy.config.metrics.v3.TagSpecifier.tag_name":                           {use: implemented},
	"envoy.config.metrics.v3.TagSpecifier.regex":                              {use: implemented},
	"envoy.config.metrics.v3.TagSpecifier.fixed_value":                        {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources.listeners":           {use: implemented},
	"envoy.config.bootstrap.v3.Bootstrap.StaticResources.clusters":            {use: implemented},

	// overload_manager (config/overload.go, proxy/overload.go)
	"envoy.config.bootstrap.v3.Bootstrap.overload_manager":                                 {use: implemented},
	"envoy.config.overload.v3.OverloadManager.refresh_interval":                            {use: implemented},
	"envoy.config.overload.v3.OverloadManager.resource_monitors":                           {use: implemented},
	"envoy.config.overload.v3.OverloadManager.actions":                                     {use: implemented},
	"envoy.config.overload.v3.ResourceMonitor.name":                                        {use: implemented},
	"envoy.config.overload.v3.ResourceMonitor.typed_config":                                {use: implemented, payloads: []protoreflect.FullName{fixedHeapName, downstreamConnsName}},
	"envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig.max_heap_size_bytes": {use: implemented},
	"envoy.config.overload.v3.OverloadAction.name":                                         {use: implemented, note: "stop_accepting_requests, disable_http_keepalive, stop_accepting_connections, shrink_heap"},
	"envoy.config.overload.v3.OverloadAction.triggers":                                     {use: implemented},
	"envoy.config.overload.v3.Trigger.name":                                                {use: implemented},
	"envoy.config.overload.v3.Trigger.threshold":                                           {use: implemented},
	"envoy.config.overload.v3.Trigger.scaled":                                              {use: implemented},
	"envoy.config.overload.v3.ThresholdTrigger.value":                                      {use: implemented},
	"envoy.config.overload.v3.ScaledTrigger.scaling_threshold":                             {use: implemented},
	"envoy.config.overload.v3.ScaledTrigger.saturation_threshold":                          {use: implemented},

	// The global downstream connections monitor (proxy/overload.go).
	"envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig.max_active_downstream_connections": {use: implemented},
	"envoy.config.listener.v3.Listener.ignore_global_conn_limit":                                                                 {use: implemented, note: "the listener's connections do not count toward, nor are refused by, envoy.resource_monitors.global_downstream_max_connections"},

	// cluster_header, request_mirror_policies (config/mirror.go) and the
	// route stream timeouts (config/route_timeouts.go)
	"envoy.config.route.v3.RouteAction.cluster_header":                                        {use: implemented},
	"envoy.config.route.v3.RouteAction.idle_timeout":                                          {use: implemented},
	"envoy.config.route.v3.RouteAction.max_stream_duration":                                   {use: implemented},
	"envoy.config.route.v3.RouteAction.MaxStreamDuration.max_stream_duration":                 {use: implemented},
	"envoy.config.route.v3.RouteAction.MaxStreamDuration.grpc_timeout_header_max":             {use: implemented},
	"envoy.config.route.v3.RouteAction.MaxStreamDuration.grpc_timeout_header_offset":          {use: implemented},
	"envoy.config.route.v3.RouteAction.request_mirror_policies":                               {use: implemented},
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy.cluster":                           {use: implemented},
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy.cluster_header":                    {use: implemented},
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy.runtime_fraction":                  {use: implemented},
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy.disable_shadow_host_suffix_append": {use: implemented},
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy.trace_sampled":                     {use: inert, note: "mirrored requests are not traced"},

	// proxy_protocol listener filter (config/build_network.go)
	"envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol.allow_requests_without_proxy_protocol": {use: implemented},
	"envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol.disallowed_versions":                   {use: implemented},
	"envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol.stat_prefix":                           {use: implemented},

	// Admin
	"envoy.config.bootstrap.v3.Admin.address":                     {use: implemented},
	"envoy.config.bootstrap.v3.Admin.access_log_path":             {use: inert, note: "admin requests are logged by the process logger"},
	"envoy.config.bootstrap.v3.Admin.access_log":                  {use: inert, opaque: true, note: "admin requests are logged by the process logger"},
	"envoy.config.bootstrap.v3.Admin.profile_path":                {use: inert, note: "there is no CPU profiler endpoint"},
	"envoy.config.bootstrap.v3.Bootstrap.watchdog":                {use: inert, opaque: true, note: "no event-loop threads to watch; a Wasm call is bounded by its call deadline"},
	"envoy.config.bootstrap.v3.Bootstrap.watchdogs":               {use: inert, opaque: true, note: "no event-loop threads to watch; a Wasm call is bounded by its call deadline"},
	"envoy.config.bootstrap.v3.Bootstrap.deferred_stat_options":   {use: inert, opaque: true, note: "stats are created when first written"},
	"envoy.config.bootstrap.v3.Bootstrap.cluster_manager":         {use: implemented},
	"envoy.config.bootstrap.v3.ClusterManager.local_cluster_name": {use: implemented, note: "checked to name a static cluster; zone-aware routing is not implemented"},
	"envoy.config.bootstrap.v3.Admin.ignore_global_conn_limit":    {use: inert, note: "the admin listener's connections never count toward envoy.resource_monitors.global_downstream_max_connections"},

	// Addresses (listener, admin, endpoint)
	"envoy.config.core.v3.Address.socket_address":   {use: implemented},
	"envoy.config.core.v3.SocketAddress.address":    {use: implemented},
	"envoy.config.core.v3.SocketAddress.port_value": {use: implemented},

	// Listener
	"envoy.config.listener.v3.Listener.name":                                  {use: implemented},
	"envoy.config.listener.v3.Listener.address":                               {use: implemented},
	"envoy.config.listener.v3.Listener.filter_chains":                         {use: implemented},
	"envoy.config.listener.v3.Listener.per_connection_buffer_limit_bytes":     {use: implemented},
	"envoy.config.listener.v3.Listener.traffic_direction":                     {use: implemented, note: "the Istio context of the listener (INBOUND sidecar inbound, OUTBOUND sidecar outbound, unset gateway) for EnvoyFilter and WasmPlugin matches; OUTBOUND is tracing's egress operation"},
	"envoy.config.listener.v3.Listener.stat_prefix":                           {use: implemented},
	"envoy.config.listener.v3.Listener.enable_reuse_port":                     {use: implemented, note: "SO_REUSEPORT on the listening socket (Linux; default true as Envoy)"},
	"envoy.config.listener.v3.Listener.connection_balance_config":             {use: inert, note: "exact_balance: one accept loop per listener hands every connection out in order, so there is nothing to balance"},
	"envoy.config.listener.v3.Listener.ConnectionBalanceConfig.exact_balance": {use: inert, note: "see connection_balance_config"},
	"envoy.config.listener.v3.FilterChain.filters":                            {use: implemented},
	"envoy.config.listener.v3.FilterChain.name":                               {use: inert, note: "names the chain for filter_chain_matcher and draining; there is one chain"},
	"envoy.config.listener.v3.Filter.name":                                    {use: implemented},
	"envoy.config.listener.v3.Filter.typed_config":                            {use: implemented, payloads: []protoreflect.FullName{hcmName, tcpProxyName, networkWasmName}, native: true},

	// Filter chain match, listener filters, TLS transport sockets, TCP
	// proxy and network Wasm filters (config/build_network.go).
	"envoy.config.listener.v3.Listener.listener_filters":                                                   {use: implemented, note: "TLS inspector (always run where chains need it), HTTP inspector (application protocol of plaintext HTTP), proxy_protocol, original_dst"},
	"envoy.config.listener.v3.ListenerFilter.name":                                                         {use: implemented},
	"envoy.config.listener.v3.ListenerFilter.typed_config":                                                 {use: implemented, payloads: []protoreflect.FullName{tlsInspectorName, httpInspectorName, proxyProtocolName, originalDstName}},
	"envoy.config.listener.v3.FilterChain.filter_chain_match":                                              {use: implemented},
	"envoy.config.listener.v3.FilterChain.transport_socket":                                                {use: implemented},
	"envoy.config.listener.v3.FilterChainMatch.server_names":                                               {use: implemented},
	"envoy.config.listener.v3.FilterChainMatch.transport_protocol":                                         {use: implemented},
	"envoy.config.listener.v3.FilterChainMatch.application_protocols":                                      {use: implemented, note: "TLS ALPN; plaintext HTTP version with the http_inspector"},
	"envoy.config.core.v3.TransportSocket.name":                                                            {use: implemented},
	"envoy.config.core.v3.TransportSocket.typed_config":                                                    {use: implemented, payloads: []protoreflect.FullName{downstreamTLSName, upstreamTLSName, rawBufferName}},
	"envoy.config.cluster.v3.Cluster.transport_socket":                                                     {use: implemented},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.stat_prefix":                                   {use: implemented},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.cluster":                                       {use: implemented},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.idle_timeout":                                  {use: implemented},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.max_connect_attempts":                          {use: implemented},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.access_log":                                    {use: implemented, note: "one line per connection, when it ends"},
	"envoy.extensions.filters.network.wasm.v3.Wasm.config":                                                 {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext.common_tls_context":                    {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext.require_client_certificate":            {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext.common_tls_context":                      {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext.sni":                                     {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.tls_params":                                {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.tls_certificates":                          {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.validation_context":                        {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.alpn_protocols":                            {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.TlsParameters.tls_minimum_protocol_version":                 {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.TlsParameters.tls_maximum_protocol_version":                 {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate.certificate_chain":                           {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate.private_key":                                 {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext.trusted_ca":                    {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext.match_typed_subject_alt_names": {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher.san_type":                             {use: implemented},
	"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher.matcher":                              {use: implemented},

	// HTTP connection manager
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.codec_type":                   {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.stat_prefix":                  {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.route_config":                 {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.http_filters":                 {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.server_name":                  {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.max_request_headers_kb":       {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.request_headers_timeout":      {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.stream_idle_timeout":          {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.request_timeout":              {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.common_http_protocol_options": {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.http_protocol_options":        {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.upgrade_configs":              {use: implemented, note: "websocket (HTTP/1.1) and CONNECT (HTTP/1.1 and HTTP/2), config/upgrade.go"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig.upgrade_type":   {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig.enabled":        {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig.filters":        {use: implemented, note: "the upgrade's own HTTP filter chain (native filters and the router; a Wasm filter there is not supported yet), config/upgrade.go"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.strip_matching_host_port":     {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.strip_any_host_port":          {use: implemented},
	"envoy.config.core.v3.HttpProtocolOptions.idle_timeout":                                                          {use: implemented, note: "connection manager and cluster (upstream connections, default 1h)"},
	"envoy.config.core.v3.HttpProtocolOptions.max_requests_per_connection":                                           {use: implemented, note: "clusters only (HTTP/1.1 and HTTP/2 upstreams); refused on the connection manager"},
	"envoy.config.core.v3.HttpProtocolOptions.max_connection_duration":                                               {use: implemented},
	"envoy.config.core.v3.HttpProtocolOptions.max_stream_duration":                                                   {use: implemented},
	"envoy.config.core.v3.HttpProtocolOptions.headers_with_underscores_action":                                       {use: implemented},
	"envoy.config.core.v3.HttpProtocolOptions.max_headers_count":                                                     {use: implemented},
	"envoy.config.core.v3.Http1ProtocolOptions.accept_http_10":                                                       {use: implemented, note: "downstream: HTTP/1.0 requests get 426 without it, as on Envoy"},
	"envoy.config.core.v3.Http1ProtocolOptions.default_host_for_http_10":                                             {use: implemented},
	"envoy.config.core.v3.Http1ProtocolOptions.header_key_format":                                                    {use: implemented, note: "connection manager and cluster: proper_case_words, or the preserve_case stateful_formatter (config/codec.go)"},
	"envoy.config.core.v3.Http1ProtocolOptions.HeaderKeyFormat.proper_case_words":                                    {use: implemented, note: "HTTP/1.1 response and trailer field names, or a cluster's request field names, in Proper-Case (proxy/headerkey.go)"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.http2_protocol_options":       {use: implemented, note: "downstream HTTP/2 settings, config/http2.go; on a cluster the message selects HTTP/2 and its settings are refused"},
	"envoy.config.core.v3.Http2ProtocolOptions.max_concurrent_streams":                                               {use: implemented},
	"envoy.config.core.v3.Http2ProtocolOptions.initial_stream_window_size":                                           {use: implemented},
	"envoy.config.core.v3.Http2ProtocolOptions.initial_connection_window_size":                                       {use: implemented},
	"envoy.config.core.v3.Http2ProtocolOptions.hpack_table_size":                                                     {use: implemented},
	"envoy.config.core.v3.Http2ProtocolOptions.connection_keepalive":                                                 {use: implemented},
	"envoy.config.core.v3.Http2ProtocolOptions.allow_connect":                                                        {use: implemented, note: "RFC 8441 extended CONNECT (WebSocket over HTTP/2) offered on this connection manager's connections; x/net/http2 needs it on for the process (proxy/xconnect, imported by cmd/wasmproxy, or GODEBUG=http2xconnect=1)"},
	"envoy.config.core.v3.KeepaliveSettings.interval":                                                                {use: implemented},
	"envoy.config.core.v3.KeepaliveSettings.timeout":                                                                 {use: implemented},
	"envoy.config.core.v3.KeepaliveSettings.interval_jitter":                                                         {use: inert, note: "the PING goes when the connection has received nothing for the interval, without jitter"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.name":                                    {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.typed_config":                            {use: implemented, native: true, payloads: []protoreflect.FullName{routerName, httpWasmName, upstreamCodecTypeName}},

	// Codec options (config/codec.go, proxy/headerkey.go, proxy/h1close.go).
	"envoy.config.core.v3.Http1ProtocolOptions.HeaderKeyFormat.stateful_formatter":                                           {use: implemented, note: "preserve_case only: names keep the case they were received in over HTTP/1.1 when written over HTTP/1.1 on the other side"},
	"envoy.extensions.http.header_formatters.preserve_case.v3.PreserveCaseFormatterConfig.forward_reason_phrase":             {use: implemented, note: "a cluster's formatter keeps the upstream's reason phrase for the client"},
	"envoy.extensions.http.header_formatters.preserve_case.v3.PreserveCaseFormatterConfig.formatter_type_on_envoy_headers":   {use: implemented, note: "PROPER_CASE: names not received go out in Proper-Case"},
	"envoy.config.core.v3.Http1ProtocolOptions.override_stream_error_on_invalid_http_message":                                {use: implemented, note: "connection manager: false (default) closes an HTTP/1.1 connection after a 400 the proxy answers; a cluster's changes nothing (the pool closes a connection whose response it cannot read, as Envoy's client codec)"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.stream_error_on_invalid_http_message": {use: implemented, note: "HTTP/1.1 as Envoy; HTTP/2: x/net/http2 resets the stream of an invalid message whatever the value"},
	"envoy.config.core.v3.Http2ProtocolOptions.override_stream_error_on_invalid_http_message":                                {use: inert, note: "x/net/http2 resets the stream of an invalid message (Envoy's behaviour with true); false would close the connection on Envoy"},
	"envoy.config.core.v3.Http2ProtocolOptions.stream_error_on_invalid_http_messaging":                                       {use: inert, note: "deprecated spelling of override_stream_error_on_invalid_http_message"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.drain_timeout":                        {use: implemented, note: "HTTP/1.1: the grace period between draining (idle_timeout, max_connection_duration) and the close; HTTP/2: x/net's one GOAWAY"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.delayed_close_timeout":                {use: implemented, note: "HTTP/1.1: how long a connection the proxy closes after its answer waits for the client's close"},

	// Local replies, forwarding headers, path normalization
	// (config/build_hcm.go).
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.local_reply_config":                  {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.use_remote_address":                  {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.xff_num_trusted_hops":                {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.skip_xff_append":                     {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.via":                                 {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.add_user_agent":                      {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.internal_address_config":             {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig.cidr_ranges":   {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig.unix_sockets":  {use: inert, note: "listeners are TCP only: there are no Unix socket peers"},
	"envoy.config.core.v3.CidrRange.address_prefix":                                                                         {use: implemented},
	"envoy.config.core.v3.CidrRange.prefix_len":                                                                             {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.normalize_path":                      {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.merge_slashes":                       {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.path_with_escaped_slashes_action":    {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.server_header_transformation":        {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.forward_client_cert_details":         {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.set_current_client_cert_details":     {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails.subject": {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails.cert":    {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails.chain":   {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails.dns":     {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails.uri":     {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig.mappers":                                  {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.LocalReplyConfig.body_format":                              {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper.filter":                                     {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper.status_code":                                {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper.body":                                       {use: implemented, note: "inline_string or inline_bytes"},
	"envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper.body_format_override":                       {use: implemented},
	"envoy.extensions.filters.network.http_connection_manager.v3.ResponseMapper.headers_to_add":                             {use: implemented},

	// Access logs on the connection manager and tcp_proxy
	// (config/build_accesslog.go, package accesslog).
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.access_log": {use: implemented, note: "one line per stream, when it ends"},
	"envoy.config.accesslog.v3.AccessLog.name":                                                     {use: implemented},
	"envoy.config.accesslog.v3.AccessLog.typed_config":                                             {use: implemented, payloads: []protoreflect.FullName{fileAccessLogName, stdoutAccessLogName, stderrAccessLogName}},
	"envoy.config.accesslog.v3.AccessLog.filter":                                                   {use: implemented},
	"envoy.extensions.access_loggers.file.v3.FileAccessLog.path":                                   {use: implemented},
	"envoy.extensions.access_loggers.file.v3.FileAccessLog.format":                                 {use: implemented},
	"envoy.extensions.access_loggers.file.v3.FileAccessLog.json_format":                            {use: implemented},
	"envoy.extensions.access_loggers.file.v3.FileAccessLog.log_format":                             {use: implemented},
	"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog.log_format":                         {use: implemented},
	"envoy.extensions.access_loggers.stream.v3.StderrAccessLog.log_format":                         {use: implemented},
	"envoy.config.core.v3.SubstitutionFormatString.text_format":                                    {use: implemented},
	"envoy.config.core.v3.SubstitutionFormatString.text_format_source":                             {use: implemented, note: "inline_string or inline_bytes"},
	"envoy.config.core.v3.SubstitutionFormatString.json_format":                                    {use: implemented, note: "string values (format strings), keys written sorted"},
	"envoy.config.core.v3.SubstitutionFormatString.omit_empty_values":                              {use: implemented},
	"envoy.config.core.v3.SubstitutionFormatString.content_type":                                   {use: implemented, note: "a local reply's content-type; access logs have none"},
	"envoy.config.accesslog.v3.AccessLogFilter.status_code_filter":                                 {use: implemented},
	"envoy.config.accesslog.v3.AccessLogFilter.duration_filter":                                    {use: implemented},
	"envoy.config.accesslog.v3.AccessLogFilter.not_health_check_filter":                            {use: implemented, note: "there are no health check streams: every stream passes"},
	"envoy.config.accesslog.v3.AccessLogFilter.and_filter":                                         {use: implemented},
	"envoy.config.accesslog.v3.AccessLogFilter.or_filter":                                          {use: implemented},
	"envoy.config.accesslog.v3.AccessLogFilter.header_filter":                                      {use: implemented},
	"envoy.config.accesslog.v3.AccessLogFilter.response_flag_filter":                               {use: implemented, note: "flags as derived from the response code details (accesslog.Flags)"},
	"envoy.config.accesslog.v3.StatusCodeFilter.comparison":                                        {use: implemented},
	"envoy.config.accesslog.v3.DurationFilter.comparison":                                          {use: implemented},
	"envoy.config.accesslog.v3.ComparisonFilter.op":                                                {use: implemented},
	"envoy.config.accesslog.v3.ComparisonFilter.value":                                             {use: implemented},
	"envoy.config.core.v3.RuntimeUInt32.default_value":                                             {use: implemented},
	"envoy.config.core.v3.RuntimeUInt32.runtime_key":                                               {use: inert, note: "there is no runtime: the default_value applies"},
	"envoy.config.accesslog.v3.AndFilter.filters":                                                  {use: implemented},
	"envoy.config.accesslog.v3.OrFilter.filters":                                                   {use: implemented},
	"envoy.config.accesslog.v3.HeaderFilter.header":                                                {use: implemented},
	"envoy.config.accesslog.v3.ResponseFlagFilter.flags":                                           {use: implemented},

	// Routes
	"envoy.config.route.v3.RouteConfiguration.name":                                                {use: implemented},
	"envoy.config.route.v3.RouteConfiguration.virtual_hosts":                                       {use: implemented},
	"envoy.config.route.v3.RouteConfiguration.max_direct_response_body_size_bytes":                 {use: implemented, note: "default 4096, as in Envoy"},
	"envoy.config.route.v3.RouteConfiguration.ignore_port_in_host_matching":                        {use: implemented},
	"envoy.config.route.v3.VirtualHost.name":                                                       {use: implemented},
	"envoy.config.route.v3.VirtualHost.domains":                                                    {use: implemented},
	"envoy.config.route.v3.VirtualHost.routes":                                                     {use: implemented},
	"envoy.config.route.v3.Route.name":                                                             {use: implemented},
	"envoy.config.route.v3.Route.per_request_buffer_limit_bytes":                                   {use: implemented},
	"envoy.config.route.v3.Route.match":                                                            {use: implemented},
	"envoy.config.route.v3.Route.route":                                                            {use: implemented},
	"envoy.config.route.v3.Route.direct_response":                                                  {use: implemented},
	"envoy.config.route.v3.Route.stat_prefix":                                                      {use: inert, note: "names route stats, which wasmproxy does not emit"},
	"envoy.config.route.v3.RouteMatch.prefix":                                                      {use: implemented},
	"envoy.config.route.v3.RouteMatch.path":                                                        {use: implemented},
	"envoy.config.route.v3.RouteMatch.safe_regex":                                                  {use: implemented},
	"envoy.config.route.v3.RouteMatch.headers":                                                     {use: implemented},
	"envoy.config.route.v3.RouteMatch.case_sensitive":                                              {use: implemented},
	"envoy.config.route.v3.RouteMatch.path_separated_prefix":                                       {use: implemented},
	"envoy.config.route.v3.RouteMatch.path_match_policy":                                           {use: implemented, note: "the uri_template matcher (config/uritemplate.go)"},
	"envoy.config.route.v3.RouteAction.path_rewrite_policy":                                        {use: implemented, note: "the uri_template rewriter"},
	"envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig.path_template":             {use: implemented},
	"envoy.extensions.path.rewrite.uri_template.v3.UriTemplateRewriteConfig.path_template_rewrite": {use: implemented},
	"envoy.config.route.v3.RouteMatch.query_parameters":                                            {use: implemented},
	"envoy.config.route.v3.RouteMatch.connect_matcher":                                             {use: implemented},
	"envoy.config.route.v3.RouteAction.upgrade_configs":                                            {use: implemented, note: "websocket and CONNECT (config/upgrade.go)"},
	"envoy.config.route.v3.RouteAction.UpgradeConfig.upgrade_type":                                 {use: implemented},
	"envoy.config.route.v3.RouteAction.UpgradeConfig.enabled":                                      {use: implemented},
	"envoy.config.route.v3.RouteAction.UpgradeConfig.connect_config":                               {use: implemented, note: "terminate CONNECT: 200 and a raw TCP connection upstream"},
	"envoy.config.route.v3.RouteAction.UpgradeConfig.ConnectConfig.proxy_protocol_config":          {use: implemented, note: "a PROXY protocol header with the downstream addresses first on the connection (proxy/connect.go, proxy/proxyproto.go)"},
	"envoy.config.core.v3.ProxyProtocolConfig.version":                                             {use: implemented},
	"envoy.config.core.v3.ProxyProtocolConfig.pass_through_tlvs":                                   {use: inert, note: "connect_config's header carries no TLVs, as Envoy's (generateProxyProtoHeader); the proxy_protocol listener filter keeps none to pass"},
	"envoy.config.route.v3.RouteAction.UpgradeConfig.ConnectConfig.allow_post":                     {use: implemented, note: "a POST on the route is terminated as a CONNECT is: its body to the TCP connection, the connection's bytes as the 200's body (proxy/connect.go)"},
	"envoy.config.route.v3.RouteMatch.grpc":                                                        {use: implemented},
	"envoy.config.route.v3.RouteMatch.runtime_fraction":                                            {use: implemented},
	"envoy.config.route.v3.QueryParameterMatcher.name":                                             {use: implemented},
	"envoy.config.route.v3.QueryParameterMatcher.string_match":                                     {use: implemented},
	"envoy.config.route.v3.QueryParameterMatcher.present_match":                                    {use: implemented},
	"envoy.config.core.v3.RuntimeFractionalPercent.default_value":                                  {use: implemented},
	"envoy.config.core.v3.RuntimeFractionalPercent.runtime_key":                                    {use: inert, note: "the runtime's values are not read: default_value applies"},
	"envoy.type.v3.FractionalPercent.numerator":                                                    {use: implemented},
	"envoy.type.v3.FractionalPercent.denominator":                                                  {use: implemented},
	"envoy.config.route.v3.RouteAction.hedge_policy":                                               {use: inert, opaque: true, note: "no hedging: one request per attempt, as Envoy's default initial_requests 1 without hedge_on_per_try_timeout"},
	"envoy.config.route.v3.VirtualHost.hedge_policy":                                               {use: inert, opaque: true, note: "no hedging: one request per attempt, as Envoy's default initial_requests 1 without hedge_on_per_try_timeout"},
	"envoy.config.route.v3.VirtualHost.cors":                                                       {use: implemented, note: "the legacy policy of the CORS filter (legacycors.go)"},
	"envoy.config.route.v3.RouteAction.cors":                                                       {use: implemented, note: "the legacy policy of the CORS filter (legacycors.go)"},
	"envoy.config.route.v3.CorsPolicy.allow_origin_string_match":                                   {use: implemented},
	"envoy.config.route.v3.CorsPolicy.allow_methods":                                               {use: implemented},
	"envoy.config.route.v3.CorsPolicy.allow_headers":                                               {use: implemented},
	"envoy.config.route.v3.CorsPolicy.expose_headers":                                              {use: implemented},
	"envoy.config.route.v3.CorsPolicy.max_age":                                                     {use: implemented},
	"envoy.config.route.v3.CorsPolicy.allow_credentials":                                           {use: implemented},
	"envoy.config.route.v3.CorsPolicy.filter_enabled":                                              {use: implemented},
	"envoy.config.route.v3.CorsPolicy.shadow_enabled":                                              {use: implemented},
	"envoy.config.route.v3.CorsPolicy.allow_private_network_access":                                {use: implemented},
	"envoy.config.route.v3.CorsPolicy.forward_not_matching_preflights":                             {use: implemented},
	"envoy.config.route.v3.RouteAction.internal_redirect_policy":                                   {use: inert, opaque: true, note: "redirects are passed to the client, not followed inside the proxy"},
	"envoy.config.route.v3.HeaderMatcher.name":                                                     {use: implemented},
	"envoy.config.route.v3.HeaderMatcher.exact_match":                                              {use: implemented},
	"envoy.config.route.v3.HeaderMatcher.prefix_match":                                             {use: implemented},
	"envoy.config.route.v3.HeaderMatcher.suffix_match":                                             {use: implemented},
	"envoy.config.route.v3.HeaderMatcher.contains_match":                                           {use: implemented},
	"envoy.config.route.v3.HeaderMatcher.safe_regex_match":                                         {use: implemented},
	"envoy.config.route.v3.HeaderMatcher.present_match":                                            {use: implemented},
	"envoy.config.route.v3.HeaderMatcher.string_match":                                             {use: implemented},
	"envoy.config.route.v3.HeaderMatcher.invert_match":                                             {use: implemented},
	"envoy.type.matcher.v3.StringMatcher.exact":                                                    {use: implemented},
	"envoy.type.matcher.v3.StringMatcher.prefix":                                                   {use: implemented},
	"envoy.type.matcher.v3.StringMatcher.suffix":                                                   {use: implemented},
	"envoy.type.matcher.v3.StringMatcher.contains":                                                 {use: implemented},
	"envoy.type.matcher.v3.StringMatcher.safe_regex":                                               {use: implemented},
	"envoy.type.matcher.v3.StringMatcher.ignore_case":                                              {use: implemented, note: "ASCII letter case, as in Envoy; no effect on safe_regex"},
	"envoy.type.matcher.v3.RegexMatcher.regex":                                                     {use: implemented},
	"envoy.type.matcher.v3.RegexMatcher.google_re2":                                                {use: implemented, opaque: true, note: "RE2 is the only engine; its deprecated max_program_size is checked as Envoy does"},
	"envoy.config.route.v3.RouteAction.cluster":                                                    {use: implemented},
	"envoy.config.route.v3.RouteAction.prefix_rewrite":                                             {use: implemented},
	"envoy.config.route.v3.RouteAction.regex_rewrite":                                              {use: implemented},
	"envoy.config.route.v3.RouteAction.host_rewrite_literal":                                       {use: implemented},
	"envoy.config.route.v3.RouteAction.auto_host_rewrite":                                          {use: implemented},
	"envoy.config.route.v3.RouteAction.host_rewrite_header":                                        {use: implemented},
	"envoy.type.matcher.v3.RegexMatchAndSubstitute.pattern":                                        {use: implemented},
	"envoy.type.matcher.v3.RegexMatchAndSubstitute.substitution":                                   {use: implemented, note: "RE2's rewrite syntax: \\1 for a group"},
	"envoy.config.route.v3.RouteAction.retry_policy":                                               {use: implemented},
	// Global rate limit descriptors (ratelimit.go), read by envoy.filters.http.ratelimit.
	"envoy.config.route.v3.RouteAction.rate_limits":                                   {use: implemented},
	"envoy.config.route.v3.RouteAction.include_vh_rate_limits":                        {use: implemented},
	"envoy.config.route.v3.VirtualHost.rate_limits":                                   {use: implemented},
	"envoy.config.route.v3.RateLimit.stage":                                           {use: implemented},
	"envoy.config.route.v3.RateLimit.actions":                                         {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.source_cluster":                           {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.destination_cluster":                      {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.remote_address":                           {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.request_headers":                          {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.RequestHeaders.header_name":               {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.RequestHeaders.descriptor_key":            {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.RequestHeaders.skip_if_absent":            {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.generic_key":                              {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.GenericKey.descriptor_key":                {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.GenericKey.descriptor_value":              {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.header_value_match":                       {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.HeaderValueMatch.descriptor_key":          {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.HeaderValueMatch.descriptor_value":        {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.HeaderValueMatch.expect_match":            {use: implemented},
	"envoy.config.route.v3.RateLimit.Action.HeaderValueMatch.headers":                 {use: implemented},
	"envoy.config.route.v3.VirtualHost.retry_policy":                                  {use: implemented},
	"envoy.config.route.v3.VirtualHost.include_request_attempt_count":                 {use: implemented},
	"envoy.config.route.v3.VirtualHost.per_request_buffer_limit_bytes":                {use: implemented},
	"envoy.config.route.v3.RetryPolicy.retry_on":                                      {use: implemented},
	"envoy.config.route.v3.RetryPolicy.num_retries":                                   {use: implemented},
	"envoy.config.route.v3.RetryPolicy.per_try_timeout":                               {use: implemented},
	"envoy.config.route.v3.RetryPolicy.retry_back_off":                                {use: implemented},
	"envoy.config.route.v3.RetryPolicy.retriable_status_codes":                        {use: implemented},
	"envoy.config.route.v3.RetryPolicy.RetryBackOff.base_interval":                    {use: implemented},
	"envoy.config.route.v3.RetryPolicy.RetryBackOff.max_interval":                     {use: implemented},
	"envoy.config.route.v3.RouteAction.timeout":                                       {use: implemented},
	"envoy.config.route.v3.Route.redirect":                                            {use: implemented},
	"envoy.config.route.v3.RedirectAction.https_redirect":                             {use: implemented},
	"envoy.config.route.v3.RedirectAction.scheme_redirect":                            {use: implemented},
	"envoy.config.route.v3.RedirectAction.host_redirect":                              {use: implemented},
	"envoy.config.route.v3.RedirectAction.port_redirect":                              {use: implemented},
	"envoy.config.route.v3.RedirectAction.path_redirect":                              {use: implemented},
	"envoy.config.route.v3.RedirectAction.prefix_rewrite":                             {use: implemented},
	"envoy.config.route.v3.RedirectAction.response_code":                              {use: implemented},
	"envoy.config.route.v3.RedirectAction.strip_query":                                {use: implemented},
	"envoy.config.route.v3.DirectResponseAction.status":                               {use: implemented},
	"envoy.config.route.v3.DirectResponseAction.body":                                 {use: implemented},
	"envoy.config.route.v3.VirtualHost.typed_per_filter_config":                       {use: implemented, opaque: true, note: "FilterConfig disabled / config: {} (config/perfilter.go checks the entries)"},
	"envoy.config.route.v3.Route.typed_per_filter_config":                             {use: implemented, opaque: true, note: "FilterConfig disabled / config: {} (config/perfilter.go checks the entries)"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.disabled": {use: implemented},

	// Header mutations (config/headers.go): route configuration, virtual
	// host and route levels.
	"envoy.config.route.v3.RouteConfiguration.request_headers_to_add":                {use: implemented},
	"envoy.config.route.v3.RouteConfiguration.request_headers_to_remove":             {use: implemented},
	"envoy.config.route.v3.RouteConfiguration.response_headers_to_add":               {use: implemented},
	"envoy.config.route.v3.RouteConfiguration.response_headers_to_remove":            {use: implemented},
	"envoy.config.route.v3.RouteConfiguration.most_specific_header_mutations_wins":   {use: implemented},
	"envoy.config.route.v3.VirtualHost.request_headers_to_add":                       {use: implemented},
	"envoy.config.route.v3.VirtualHost.request_headers_to_remove":                    {use: implemented},
	"envoy.config.route.v3.VirtualHost.response_headers_to_add":                      {use: implemented},
	"envoy.config.route.v3.VirtualHost.response_headers_to_remove":                   {use: implemented},
	"envoy.config.route.v3.Route.request_headers_to_add":                             {use: implemented},
	"envoy.config.route.v3.Route.request_headers_to_remove":                          {use: implemented},
	"envoy.config.route.v3.Route.response_headers_to_add":                            {use: implemented},
	"envoy.config.route.v3.Route.response_headers_to_remove":                         {use: implemented},
	"envoy.config.core.v3.HeaderValueOption.header":                                  {use: implemented},
	"envoy.config.core.v3.HeaderValueOption.append":                                  {use: implemented, note: "deprecated: true is APPEND_IF_EXISTS_OR_ADD, false OVERWRITE_IF_EXISTS_OR_ADD"},
	"envoy.config.core.v3.HeaderValueOption.append_action":                           {use: implemented},
	"envoy.config.core.v3.HeaderValueOption.keep_empty_value":                        {use: implemented},
	"envoy.config.route.v3.RouteAction.weighted_clusters":                            {use: implemented},
	"envoy.config.route.v3.WeightedCluster.clusters":                                 {use: implemented},
	"envoy.config.route.v3.WeightedCluster.total_weight":                             {use: implemented, note: "deprecated: checked against the sum of the weights"},
	"envoy.config.route.v3.WeightedCluster.runtime_key_prefix":                       {use: inert, note: "there is no runtime: the configured weights apply"},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.name":                       {use: implemented},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.weight":                     {use: implemented},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.request_headers_to_add":     {use: implemented},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.request_headers_to_remove":  {use: implemented},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.response_headers_to_add":    {use: implemented},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight.response_headers_to_remove": {use: implemented},
	"envoy.config.core.v3.HeaderValue.key":                                           {use: implemented},
	"envoy.config.core.v3.HeaderValue.value":                                         {use: implemented, note: "Envoy's command operators as the access log formatter knows them (accesslog.Parse)"},

	// Data sources (direct_response body, Wasm code)
	"envoy.config.core.v3.DataSource.filename":      {use: implemented},
	"envoy.config.core.v3.DataSource.inline_bytes":  {use: implemented},
	"envoy.config.core.v3.DataSource.inline_string": {use: implemented},
	"envoy.config.core.v3.AsyncDataSource.local":    {use: implemented},
	// Remote code (config/remote.go): fetched by package source.
	"envoy.config.core.v3.AsyncDataSource.remote":        {use: implemented},
	"envoy.config.core.v3.RemoteDataSource.http_uri":     {use: implemented, note: "http://, https:// or oci:// (Istio's agent reads oci:// here too)"},
	"envoy.config.core.v3.RemoteDataSource.sha256":       {use: implemented, note: "module digest for http(s), manifest digest for oci://"},
	"envoy.config.core.v3.RemoteDataSource.retry_policy": {use: implemented},
	"envoy.config.core.v3.HttpUri.uri":                   {use: implemented},
	"envoy.config.core.v3.HttpUri.cluster":               {use: implemented, note: "the OTLP/HTTP collector's cluster; inert for remote code, which wasmproxy fetches directly, not through a cluster"},
	"envoy.config.core.v3.HttpUri.timeout":               {use: implemented},
	"envoy.config.core.v3.RetryPolicy.num_retries":       {use: implemented},
	"envoy.config.core.v3.RetryPolicy.retry_back_off":    {use: implemented},
	"envoy.config.core.v3.BackoffStrategy.base_interval": {use: implemented},
	"envoy.config.core.v3.BackoffStrategy.max_interval":  {use: implemented},

	// Wasm
	"envoy.extensions.filters.http.wasm.v3.Wasm.config":                         {use: implemented},
	"envoy.extensions.wasm.v3.PluginConfig.name":                                {use: implemented},
	"envoy.extensions.wasm.v3.PluginConfig.root_id":                             {use: implemented},
	"envoy.extensions.wasm.v3.PluginConfig.vm_config":                           {use: implemented},
	"envoy.extensions.wasm.v3.PluginConfig.configuration":                       {use: implemented, note: "opaque to the host: handed to the plugin as bytes"},
	"envoy.extensions.wasm.v3.PluginConfig.fail_open":                           {use: implemented},
	"envoy.extensions.wasm.v3.PluginConfig.failure_policy":                      {use: implemented},
	"envoy.extensions.wasm.v3.PluginConfig.reload_config":                       {use: implemented, note: "FAIL_RELOAD backoff"},
	"envoy.extensions.wasm.v3.ReloadConfig.backoff":                             {use: implemented},
	"envoy.extensions.wasm.v3.PluginConfig.allow_on_headers_stop_iteration":     {use: implemented},
	"envoy.extensions.wasm.v3.PluginConfig.capability_restriction_config":       {use: implemented},
	"envoy.extensions.wasm.v3.CapabilityRestrictionConfig.allowed_capabilities": {use: implemented, opaque: true, note: "keys only: Envoy's SanitizationConfig is empty"},
	"envoy.extensions.wasm.v3.VmConfig.vm_id":                                   {use: implemented},
	"envoy.extensions.wasm.v3.VmConfig.runtime":                                 {use: implemented, note: "checked, recorded; every module runs on wazero"},
	"envoy.extensions.wasm.v3.VmConfig.code":                                    {use: implemented},
	"envoy.extensions.wasm.v3.VmConfig.configuration":                           {use: implemented, note: "opaque to the host: handed to the VM as bytes"},
	"envoy.extensions.wasm.v3.VmConfig.environment_variables":                   {use: implemented},
	"envoy.extensions.wasm.v3.VmConfig.allow_precompiled":                       {use: inert, note: "engine-specific precompiled sections are never used; wazero compiles (and caches) the module itself"},
	"envoy.extensions.wasm.v3.VmConfig.nack_on_code_cache_miss":                 {use: inert, note: "remote code is fetched before the listener starts serving; there is no background fetch to NACK"},
	"envoy.extensions.wasm.v3.EnvironmentVariables.host_env_keys":               {use: implemented},
	"envoy.extensions.wasm.v3.EnvironmentVariables.key_values":                  {use: implemented},

	// Clusters
	"envoy.config.cluster.v3.Cluster.name":                                                             {use: implemented},
	"envoy.config.cluster.v3.Cluster.type":                                                             {use: implemented},
	"envoy.config.cluster.v3.Cluster.lb_policy":                                                        {use: implemented},
	"envoy.config.cluster.v3.Cluster.connect_timeout":                                                  {use: implemented},
	"envoy.config.cluster.v3.Cluster.upstream_connection_options":                                      {use: implemented},
	"envoy.config.cluster.v3.UpstreamConnectionOptions.tcp_keepalive":                                  {use: implemented},
	"envoy.config.core.v3.TcpKeepalive.keepalive_probes":                                               {use: implemented},
	"envoy.config.core.v3.TcpKeepalive.keepalive_time":                                                 {use: implemented},
	"envoy.config.core.v3.TcpKeepalive.keepalive_interval":                                             {use: implemented},
	"envoy.config.cluster.v3.Cluster.dns_lookup_family":                                                {use: implemented},
	"envoy.config.cluster.v3.Cluster.dns_refresh_rate":                                                 {use: implemented},
	"envoy.config.cluster.v3.Cluster.per_connection_buffer_limit_bytes":                                {use: implemented},
	"envoy.config.cluster.v3.Cluster.load_assignment":                                                  {use: implemented},
	"envoy.config.cluster.v3.Cluster.circuit_breakers":                                                 {use: implemented},
	"envoy.config.cluster.v3.CircuitBreakers.thresholds":                                               {use: implemented, note: "DEFAULT priority only; HTTP/1.1 upstreams (an HTTP/2 cluster's transport has its own limits)"},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.priority":                                      {use: implemented},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_connections":                               {use: implemented},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_pending_requests":                          {use: implemented},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_requests":                                  {use: implemented},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.max_retries":                                   {use: implemented},
	"envoy.config.cluster.v3.Cluster.http2_protocol_options":                                           {use: implemented},
	"envoy.config.cluster.v3.Cluster.http_protocol_options":                                            {use: implemented},
	"envoy.config.cluster.v3.Cluster.typed_extension_protocol_options":                                 {use: implemented, payloads: []protoreflect.FullName{httpProtocolOptName}},
	"envoy.config.cluster.v3.Cluster.health_checks":                                                    {use: implemented, note: "one checker per cluster, as Envoy"},
	"envoy.config.cluster.v3.Cluster.close_connections_on_host_health_failure":                         {use: implemented},
	"envoy.config.cluster.v3.Cluster.common_lb_config":                                                 {use: implemented},
	"envoy.config.cluster.v3.Cluster.CommonLbConfig.healthy_panic_threshold":                           {use: implemented},
	"envoy.config.core.v3.HealthCheck.timeout":                                                         {use: implemented},
	"envoy.config.core.v3.HealthCheck.interval":                                                        {use: implemented},
	"envoy.config.core.v3.HealthCheck.initial_jitter":                                                  {use: implemented},
	"envoy.config.core.v3.HealthCheck.interval_jitter":                                                 {use: implemented},
	"envoy.config.core.v3.HealthCheck.interval_jitter_percent":                                         {use: implemented},
	"envoy.config.core.v3.HealthCheck.unhealthy_threshold":                                             {use: implemented},
	"envoy.config.core.v3.HealthCheck.healthy_threshold":                                               {use: implemented},
	"envoy.config.core.v3.HealthCheck.reuse_connection":                                                {use: implemented},
	"envoy.config.core.v3.HealthCheck.no_traffic_interval":                                             {use: implemented},
	"envoy.config.core.v3.HealthCheck.no_traffic_healthy_interval":                                     {use: implemented},
	"envoy.config.core.v3.HealthCheck.unhealthy_interval":                                              {use: implemented},
	"envoy.config.core.v3.HealthCheck.unhealthy_edge_interval":                                         {use: implemented},
	"envoy.config.core.v3.HealthCheck.healthy_edge_interval":                                           {use: implemented},
	"envoy.config.core.v3.HealthCheck.http_health_check":                                               {use: implemented},
	"envoy.config.core.v3.HealthCheck.tcp_health_check":                                                {use: implemented},
	"envoy.config.core.v3.HealthCheck.grpc_health_check":                                               {use: implemented},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck.host":                                            {use: implemented},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck.path":                                            {use: implemented},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck.request_headers_to_add":                          {use: implemented},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck.request_headers_to_remove":                       {use: implemented},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck.expected_statuses":                               {use: implemented},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck.retriable_statuses":                              {use: implemented},
	"envoy.config.core.v3.HealthCheck.HttpHealthCheck.codec_client_type":                               {use: implemented},
	"envoy.type.v3.Percent.value":                                                                      {use: implemented},
	"envoy.type.v3.Int64Range.start":                                                                   {use: implemented},
	"envoy.type.v3.Int64Range.end":                                                                     {use: implemented},
	"envoy.config.core.v3.HealthCheck.TcpHealthCheck.send":                                             {use: implemented},
	"envoy.config.core.v3.HealthCheck.TcpHealthCheck.receive":                                          {use: implemented},
	"envoy.config.core.v3.HealthCheck.Payload.text":                                                    {use: implemented},
	"envoy.config.core.v3.HealthCheck.Payload.binary":                                                  {use: implemented},
	"envoy.config.core.v3.HealthCheck.GrpcHealthCheck.service_name":                                    {use: implemented},
	"envoy.config.core.v3.HealthCheck.GrpcHealthCheck.authority":                                       {use: implemented},
	"envoy.config.cluster.v3.Cluster.outlier_detection":                                                {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.consecutive_5xx":                                         {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.interval":                                                {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.base_ejection_time":                                      {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.max_ejection_percent":                                    {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.enforcing_consecutive_5xx":                               {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.enforcing_success_rate":                                  {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.success_rate_minimum_hosts":                              {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.success_rate_request_volume":                             {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.success_rate_stdev_factor":                               {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.consecutive_gateway_failure":                             {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.enforcing_consecutive_gateway_failure":                   {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.split_external_local_origin_errors":                      {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.consecutive_local_origin_failure":                        {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.enforcing_consecutive_local_origin_failure":              {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.enforcing_local_origin_success_rate":                     {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.failure_percentage_threshold":                            {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.enforcing_failure_percentage":                            {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.enforcing_failure_percentage_local_origin":               {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.failure_percentage_minimum_hosts":                        {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.failure_percentage_request_volume":                       {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.max_ejection_time":                                       {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.max_ejection_time_jitter":                                {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.successful_active_health_check_uneject_host":             {use: implemented},
	"envoy.config.cluster.v3.OutlierDetection.always_eject_one_host":                                   {use: implemented},
	"envoy.config.cluster.v3.Cluster.least_request_lb_config":                                          {use: implemented},
	"envoy.config.cluster.v3.Cluster.LeastRequestLbConfig.choice_count":                                {use: implemented},
	"envoy.config.cluster.v3.Cluster.ring_hash_lb_config":                                              {use: implemented},
	"envoy.config.cluster.v3.Cluster.RingHashLbConfig.minimum_ring_size":                               {use: implemented},
	"envoy.config.cluster.v3.Cluster.RingHashLbConfig.maximum_ring_size":                               {use: implemented},
	"envoy.config.cluster.v3.Cluster.RingHashLbConfig.hash_function":                                   {use: implemented},
	"envoy.config.cluster.v3.Cluster.maglev_lb_config":                                                 {use: implemented},
	"envoy.config.cluster.v3.Cluster.MaglevLbConfig.table_size":                                        {use: implemented},
	"envoy.config.endpoint.v3.LbEndpoint.load_balancing_weight":                                        {use: implemented},
	"envoy.config.endpoint.v3.LbEndpoint.health_status":                                                {use: implemented},
	"envoy.config.endpoint.v3.LocalityLbEndpoints.priority":                                            {use: implemented},
	"envoy.config.route.v3.RouteAction.hash_policy":                                                    {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.header":                                              {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.cookie":                                              {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.connection_properties":                               {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.query_parameter":                                     {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.terminal":                                            {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.Header.header_name":                                  {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.Cookie.name":                                         {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.Cookie.ttl":                                          {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.Cookie.path":                                         {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.Cookie.attributes":                                   {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.CookieAttribute.name":                                {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.CookieAttribute.value":                               {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties.source_ip":                      {use: implemented},
	"envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter.name":                                 {use: implemented},
	"envoy.config.endpoint.v3.LocalityLbEndpoints.load_balancing_weight":                               {use: inert, note: "locality weights apply only under common_lb_config.locality_weighted_lb_config, which is not supported yet; as Envoy without it, they change nothing"},
	"envoy.config.endpoint.v3.LocalityLbEndpoints.locality":                                            {use: inert, note: "shown nowhere yet; zone-aware routing is not supported"},
	"envoy.config.endpoint.v3.ClusterLoadAssignment.cluster_name":                                      {use: inert, note: "matches an EDS response to its cluster; a static assignment belongs to its cluster anyway"},
	"envoy.config.endpoint.v3.ClusterLoadAssignment.endpoints":                                         {use: implemented},
	"envoy.config.endpoint.v3.LocalityLbEndpoints.lb_endpoints":                                        {use: implemented},
	"envoy.config.endpoint.v3.LbEndpoint.endpoint":                                                     {use: implemented},
	"envoy.config.endpoint.v3.Endpoint.address":                                                        {use: implemented},
	"envoy.config.endpoint.v3.Endpoint.hostname":                                                       {use: implemented, note: "the Host auto_host_rewrite sends"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.explicit_http_config":                      {use: implemented},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig.http_protocol_options":  {use: implemented},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig.http2_protocol_options": {use: implemented},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.common_http_protocol_options":              {use: implemented, note: "config/cluster_http.go"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.upstream_http_protocol_options":            {use: implemented},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.auto_config":                               {use: implemented, note: "HTTP/2 or HTTP/1.1 by ALPN; TLS clusters only, as Envoy"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.AutoHttpConfig.http_protocol_options":      {use: implemented},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.AutoHttpConfig.http2_protocol_options":     {use: implemented},
	"envoy.config.core.v3.UpstreamHttpProtocolOptions.auto_sni":                                        {use: implemented},
	"envoy.config.core.v3.UpstreamHttpProtocolOptions.auto_san_validation":                             {use: implemented},
	"envoy.config.core.v3.UpstreamHttpProtocolOptions.override_auto_sni_header":                        {use: implemented},
	"envoy.config.cluster.v3.Cluster.common_http_protocol_options":                                     {use: implemented, note: "deprecated field; as HttpProtocolOptions.common_http_protocol_options"},
	"envoy.config.cluster.v3.Cluster.upstream_http_protocol_options":                                   {use: implemented, note: "deprecated field"},
	"envoy.config.cluster.v3.Cluster.max_requests_per_connection":                                      {use: implemented, note: "deprecated field"},
	"envoy.config.cluster.v3.Cluster.respect_dns_ttl":                                                  {use: implemented, note: "read to be refused with its reason: Go's resolver reports no TTL (config/cluster_http.go)"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.http_filters":                              {use: implemented, note: "upstream HTTP filters: Wasm, header_mutation and buffer, ending with upstream_codec"},
}

// checkSupported walks every set field of root and fails on the first
// one the allow-list does not accept.
func checkSupported(root proto.Message) error {
	return checkMessage(root.ProtoReflect(), "")
}

func checkMessage(m protoreflect.Message, path string) error {
	for _, fd := range populatedFields(m) {
		if _, ok := supportedFields[ruleKey(fd)]; !ok {
			return notSupported(joinPath(path, string(fd.Name())), "")
		}
	}
	return walkMessages(m, path, func(fd protoreflect.FieldDescriptor, child protoreflect.Message, childPath string) error {
		rule := supportedFields[ruleKey(fd)]
		if rule.use == inert || rule.opaque {
			return nil
		}
		return checkValue(child, childPath, rule)
	})
}

// ruleKey is the allow-list key of a field: "<message full name>.<field>".
func ruleKey(fd protoreflect.FieldDescriptor) string {
	return string(fd.ContainingMessage().FullName()) + "." + string(fd.Name())
}

// checkValue checks one message value of an implemented field.
func checkValue(m protoreflect.Message, path string, rule fieldRule) error {
	a, isAny := m.Interface().(*anypb.Any)
	if !isAny {
		if m.Descriptor().FullName().Parent() == "google.protobuf" {
			return nil // Duration, wrappers, Struct: values, not config trees
		}
		return checkMessage(m, path)
	}
	if len(rule.payloads) == 0 {
		return nil
	}
	payload, payloadPath, err := unpackAny(a, path)
	if err != nil || payload == nil {
		return err // an empty Any: the builder decides by the filter name
	}
	name := messageName(payload)
	if rule.native && (filters.Lookup(name) != nil || filters.LookupNetwork(name) != nil) {
		return nil // a native filter: its Parse checks its fields (the builder refuses one in the wrong place)
	}
	for _, allowed := range rule.payloads {
		if name == allowed {
			return checkMessage(payload.ProtoReflect(), payloadPath)
		}
	}
	return notSupportedType(path, "type.googleapis.com/"+string(name))
}
