// Package admin is wasmproxy's admin server: the subset of Envoy's admin
// API that operators and tools use (/ready, /server_info, /stats,
// /stats/prometheus, /listeners, /clusters, /config_dump, POST /logging,
// POST /quitquitquit), with Envoy's paths, status codes, content types
// and body formats, so that scripts, probes and dashboards written for
// Envoy work against wasmproxy unchanged.
//
// The server knows nothing of the proxy's internals: it reads them
// through the Provider interface, the stats store and the logging
// registry.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	// Every message a loaded config can hold, so /config_dump can read
	// (and redact) whatever the provider dumps.
	_ "github.com/wasmproxy/wasmproxy/config"
	"google.golang.org/protobuf/proto"

	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Provider is what the running proxy exposes to the admin server. Every
// method may be called concurrently from several admin requests and must
// be safe for that; none may block for long.
type Provider interface {
	// ServerInfo describes the process: version, state, start time,
	// command-line options and node identity.
	ServerInfo() ServerInfo
	// Listeners lists the active listeners with the address each one
	// actually bound (after port 0 was resolved).
	Listeners() []ListenerInfo
	// Clusters lists the upstream clusters with their endpoints.
	Clusters() []ClusterInfo
	// ConfigDump returns the loaded bootstrap as JSON (protojson of
	// envoy.config.bootstrap.v3.Bootstrap); nil means an empty bootstrap.
	// It may hold secrets: the server redacts them before showing it.
	ConfigDump() ([]byte, error)
	// Quit begins a graceful shutdown. It is called at most once per
	// Server, from its own goroutine, after the /quitquitquit response
	// has been sent, so it may call Server.Shutdown.
	Quit()
}

// ExtensionConfigDumper is implemented by a Provider whose configuration
// has filters delivered apart from the bootstrap (Istio WasmPlugins,
// which Envoy gets over ECDS): /config_dump shows them in an
// admin.v3.EcdsConfigDump entry, where istioctl looks for them.
type ExtensionConfigDumper interface {
	// ExtensionConfigs returns each as protojson of
	// envoy.config.core.v3.TypedExtensionConfig, redacted by the server
	// as the bootstrap is.
	ExtensionConfigs() ([]json.RawMessage, error)
}

// DynamicConfigDumper is implemented by a Provider run by a control
// plane (xDS): /config_dump shows what it delivered as Envoy does, in
// admin.v3 ClustersConfigDump (dynamic_active_clusters),
// ListenersConfigDump (dynamic_listeners with active_state or
// warming_state), RoutesConfigDump (dynamic_route_configs) and
// EcdsConfigDump (ecds_filters), each with the version_info and
// last_updated of the resource.
type DynamicConfigDumper interface {
	// DynamicConfigs returns those messages (envoy.admin.v3.*ConfigDump),
	// in any order and only those that have entries. The server orders
	// them as Envoy does, merges the EcdsConfigDump with
	// ExtensionConfigs' and redacts them as the bootstrap is; they are
	// not changed.
	DynamicConfigs() ([]proto.Message, error)
}

// State is the server state as Envoy's admin.v3.ServerInfo.State names it.
type State string

// The server states. The zero State reads as StateLive, as Envoy's enum
// default does.
const (
	StateLive            State = "LIVE"
	StateDraining        State = "DRAINING"
	StatePreInitializing State = "PRE_INITIALIZING"
	StateInitializing    State = "INITIALIZING"
)

func (s State) orLive() State {
	if s == "" {
		return StateLive
	}
	return s
}

// ServerInfo is what /server_info and /ready report.
type ServerInfo struct {
	// Version is the build's version string, e.g.
	// "wasmproxy/0.1.0/linux/amd64".
	Version string
	// State drives /ready: only StateLive (or "") answers 200.
	State State
	// StartTime is when the current process started serving; it gives
	// uptime_current_epoch.
	StartTime time.Time
	// FirstStartTime is the start of the first epoch (hot restarts keep
	// it); zero means StartTime. It gives uptime_all_epochs.
	FirstStartTime time.Time
	// HotRestartVersion is reported as is; wasmproxy has no hot restart,
	// so it is normally "".
	HotRestartVersion string
	// Options are the command-line options the process runs with.
	Options CommandLineOptions
	// Node is the bootstrap's node identity.
	Node NodeInfo
}

// CommandLineOptions is the part of Envoy's admin.v3.CommandLineOptions
// that wasmproxy's CLI has. Fields left zero print as Envoy's defaults
// where Envoy has one (see each field).
type CommandLineOptions struct {
	BaseID      uint64
	Concurrency uint32
	ConfigPath  string // -c
	// ConfigYAML is --config-yaml. /server_info shows it redacted, as
	// JSON, like /config_dump (or "[redacted]" whole when it does not
	// read as a bootstrap), since it may hold private keys.
	ConfigYAML string
	// LogLevel is the -l level name ("info" when "").
	LogLevel string
	// ComponentLogLevel is --component-log-level as given,
	// e.g. "wasm:debug,http:info".
	ComponentLogLevel string
	LogFormat         string
	LogPath           string
	ServiceCluster    string
	ServiceNode       string
	ServiceZone       string
	// Mode is "Serve" (default when ""), "Validate" or "InitOnly".
	Mode string
	// LocalAddressIPVersion is "v4" (default when "") or "v6".
	LocalAddressIPVersion string
	AdminAddressPath      string
	DisableHotRestart     bool
	RestartEpoch          uint32
	// DrainTime defaults to 600s, ParentShutdownTime to 900s and
	// FileFlushInterval to 10s when zero, as in Envoy.
	DrainTime          time.Duration
	ParentShutdownTime time.Duration
	FileFlushInterval  time.Duration
	// DrainStrategy is "Gradual" (default when "") or "Immediate".
	DrainStrategy      string
	DisabledExtensions []string
}

// NodeInfo is the node identity (envoy.config.core.v3.Node) shown in
// /server_info.
type NodeInfo struct {
	ID      string
	Cluster string
	// Metadata is the node's free-form metadata; nil prints nothing.
	Metadata map[string]any
	// UserAgentName is "wasmproxy" when "".
	UserAgentName    string
	UserAgentVersion string
}

// ListenerInfo is one active listener.
type ListenerInfo struct {
	Name string
	// Address is the bound "host:port" ("[::1]:80" for IPv6); anything
	// else is shown as a pipe path.
	Address string
}

// ClusterInfo is one upstream cluster as /clusters shows it.
type ClusterInfo struct {
	Name string
	// ObservabilityName is the name used in stats; Name when "".
	ObservabilityName string
	// AddedViaAPI is true for clusters that came from CDS.
	AddedViaAPI bool
	// CircuitBreakers are the limits at default and high priority; nil
	// means Envoy's defaults (1024 connections, pending and requests, 3
	// retries) for both.
	CircuitBreakers *CircuitBreakers
	// Endpoints are the cluster's hosts, in load-balancing order.
	Endpoints []EndpointInfo
}

// CircuitBreakers are one cluster's thresholds per routing priority.
type CircuitBreakers struct {
	Default, High Thresholds
}

// Thresholds are one priority's circuit-breaker limits.
type Thresholds struct {
	MaxConnections, MaxPendingRequests, MaxRequests, MaxRetries uint32
}

// DefaultThresholds are Envoy's circuit-breaker defaults.
var DefaultThresholds = Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3}

// EndpointInfo is one upstream host of a cluster.
type EndpointInfo struct {
	// Address is the resolved "host:port" ("[::1]:80" for IPv6).
	Address string
	// Hostname is the configured DNS name, if any.
	Hostname string
	// Healthy is false when health checking has failed the host; /clusters
	// then shows the health flag "/failed_active_hc".
	Healthy bool
	// FailedOutlierCheck: outlier detection has ejected the host
	// (health flag "/failed_outlier_check").
	FailedOutlierCheck bool
	// FailedEDSHealth: the endpoint's health_status is UNHEALTHY,
	// DRAINING or TIMEOUT (health flag "/failed_eds_health").
	FailedEDSHealth bool
	// Weight is the load-balancing weight; 0 means 1.
	Weight   uint32
	Priority uint32
	Stats    EndpointStats
}

// EndpointStats are Envoy's per-host statistics.
type EndpointStats struct {
	// Gauges.
	CxActive, RqActive uint64
	// Counters.
	CxConnectFail, CxTotal, RqError, RqSuccess, RqTimeout, RqTotal uint64
}

// Server is the admin HTTP server. Create it with New; it is safe for
// concurrent use.
type Server struct {
	provider Provider
	stats    *stats.Store
	logs     *logging.Registry
	log      *slog.Logger

	endpoints map[string]*endpoint
	sorted    []*endpoint // by path, for help and the index page
	handler   http.Handler
	http      *http.Server
	quitOnce  sync.Once

	// now is the clock for uptimes; tests replace it.
	now func() time.Time
}

// endpoint is one admin path.
type endpoint struct {
	path    string
	help    string
	mutates bool // must be POSTed
	params  []param
	handle  func(w http.ResponseWriter, r *http.Request)
}

type param struct{ name, help string }

// New returns an admin server over p (required), reading stats from st
// and log levels from logs. A nil st serves an empty store; a nil logs
// uses logging.Default.
func New(p Provider, st *stats.Store, logs *logging.Registry) *Server {
	if p == nil {
		panic("admin.New: nil Provider")
	}
	if st == nil {
		st = stats.New()
	}
	if logs == nil {
		logs = logging.Default
	}
	s := &Server{provider: p, stats: st, logs: logs, log: logs.Logger("admin"), now: time.Now}
	s.register()
	s.handler = http.HandlerFunc(s.serveHTTP)
	s.http = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
	}
	return s
}

func (s *Server) register() {
	eps := []*endpoint{
		{path: "/", help: "Admin home page", handle: s.handleIndex},
		{path: "/help", help: "List the admin commands", handle: s.handleHelp},
		{path: "/ready", help: "Print the server state; 200 only when LIVE", handle: s.handleReady},
		{path: "/server_info", help: "Print server version, state, uptime, options and node (JSON)", handle: s.handleServerInfo},
		{path: "/listeners", help: "Print the listeners and their bound addresses", handle: s.handleListeners,
			params: []param{{"format", "text (default) or json"}}},
		{path: "/clusters", help: "Print upstream clusters, their hosts and per-host stats", handle: s.handleClusters,
			params: []param{{"format", "text (default) or json"}}},
		{path: "/config_dump", help: "Print the loaded configuration (JSON)", handle: s.handleConfigDump},
		{path: "/stats", help: "Print server stats", handle: s.handleStats,
			params: []param{
				{"usedonly", "only stats that have been written"},
				{"filter", "regular expression (RE2) the stat name must contain a match of"},
				{"format", "text (default), json or prometheus"},
			}},
		{path: "/stats/prometheus", help: "Print server stats in Prometheus text format", handle: s.handlePrometheus,
			params: []param{
				{"usedonly", "only stats that have been written"},
				{"filter", "regular expression (RE2) the stat name must contain a match of"},
			}},
		{path: "/logging", help: "Query or change log levels", mutates: true, handle: s.handleLogging,
			params: []param{
				{"level", "set every logger to this level"},
				{"<logger>", "set one logger, e.g. wasm=debug"},
				{"paths", "set several loggers: name:level,name:level"},
			}},
		{path: "/quitquitquit", help: "Begin a graceful shutdown", mutates: true, handle: s.handleQuit},
	}
	eps = append(eps, s.reloadEndpoints()...)  // reload.go
	eps = append(eps, s.reopenEndpoints()...)  // reopen.go
	eps = append(eps, s.runtimeEndpoints()...) // runtime.go
	s.endpoints = make(map[string]*endpoint, len(eps))
	for _, e := range eps {
		s.endpoints[e.path] = e
	}
	s.sorted = eps
	sort.Slice(s.sorted, func(i, j int) bool { return s.sorted[i].path < s.sorted[j].path })
}

// Handler returns the admin API as an http.Handler, for mounting in a
// server of the caller's own.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts admin connections on l until Shutdown; it then returns
// nil. Any other error from accepting is returned. Serve closes l.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits, until ctx is done, for
// the requests in progress to finish (see http.Server.Shutdown).
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Content types as Envoy sets them.
const (
	contentTypeText = "text/plain; charset=UTF-8"
	contentTypeJSON = "application/json"
	contentTypeHTML = "text/html; charset=UTF-8"
)

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		s.log.Debug("admin request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery, "status", rec.status)
	}()
	h := w.Header()
	// Envoy sends these on every admin response.
	h.Set("Cache-Control", "no-cache, max-age=0")
	h.Set("X-Content-Type-Options", "nosniff")

	e, ok := s.endpoints[r.URL.Path]
	if !ok {
		var b strings.Builder
		b.WriteString("invalid path. ")
		s.writeHelp(&b)
		writeText(rec, http.StatusNotFound, b.String())
		return
	}
	if e.mutates && r.Method != http.MethodPost {
		// Envoy answers 405 (since v1.11; older documentation says 400)
		// and changes nothing.
		s.log.Error("admin path mutates state, method is not POST", "path", r.URL.Path, "method", r.Method)
		rec.Header().Set("Allow", http.MethodPost)
		writeText(rec, http.StatusMethodNotAllowed, "Method "+r.Method+" not allowed, POST required.")
		return
	}
	e.handle(rec, r)
}

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets handlers push a response out before acting (quitquitquit).
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", contentTypeText)
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

func writeBody(w http.ResponseWriter, code int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
