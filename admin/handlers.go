package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/logging"
)

// writeHelp lists the endpoints the way Envoy's /help does: a header,
// then one line per path (marked "(POST)" when it mutates), then its
// parameters indented below it.
func (s *Server) writeHelp(b *strings.Builder) {
	b.WriteString("admin commands are:\n")
	for _, e := range s.sorted {
		post := ""
		if e.mutates {
			post = " (POST)"
		}
		fmt.Fprintf(b, "  %s%s: %s\n", e.path, post, e.help)
		for _, p := range e.params {
			fmt.Fprintf(b, "      %s: %s\n", p.name, p.help)
		}
	}
}

func (s *Server) handleHelp(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	s.writeHelp(&b)
	writeText(w, http.StatusOK, b.String())
}

// handleReady answers the state name and a newline: 200 when LIVE, 503
// otherwise, as Envoy's /ready.
func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	state := s.provider.ServerInfo().State.orLive()
	code := http.StatusOK
	if state != StateLive {
		code = http.StatusServiceUnavailable
	}
	writeText(w, code, string(state)+"\n")
}

// writeJSON writes v as protojson-looking JSON: one-space indentation
// like Envoy's pretty printer, no HTML escaping, trailing newline.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		writeText(w, http.StatusInternalServerError, "error: "+err.Error()+"\n")
		return
	}
	writeBody(w, code, contentTypeJSON, buf.Bytes())
}

// protoDuration formats d as protobuf's JSON mapping of Duration does:
// seconds with "s", and 3, 6 or 9 fractional digits when needed.
func protoDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	secs, nanos := int64(d/time.Second), int64(d%time.Second)
	if nanos == 0 {
		return fmt.Sprintf("%s%ds", sign, secs)
	}
	frac := fmt.Sprintf("%09d", nanos)
	switch {
	case strings.HasSuffix(frac, "000000"):
		frac = frac[:3]
	case strings.HasSuffix(frac, "000"):
		frac = frac[:6]
	}
	return fmt.Sprintf("%s%d.%ss", sign, secs, frac)
}

// Field names and order below follow admin.v3.ServerInfo,
// admin.v3.CommandLineOptions and config.core.v3.Node; Envoy prints every
// primitive field of /server_info, so none is omitted when empty.
type serverInfoJSON struct {
	Version            string                 `json:"version"`
	State              State                  `json:"state"`
	UptimeCurrentEpoch string                 `json:"uptime_current_epoch"`
	UptimeAllEpochs    string                 `json:"uptime_all_epochs"`
	HotRestartVersion  string                 `json:"hot_restart_version"`
	CommandLineOptions commandLineOptionsJSON `json:"command_line_options"`
	Node               nodeJSON               `json:"node"`
}

type commandLineOptionsJSON struct {
	BaseID                     string   `json:"base_id"` // uint64: a string in protojson
	Concurrency                uint32   `json:"concurrency"`
	ConfigPath                 string   `json:"config_path"`
	ConfigYAML                 string   `json:"config_yaml"`
	AllowUnknownStaticFields   bool     `json:"allow_unknown_static_fields"`
	RejectUnknownDynamicFields bool     `json:"reject_unknown_dynamic_fields"`
	AdminAddressPath           string   `json:"admin_address_path"`
	LocalAddressIPVersion      string   `json:"local_address_ip_version"`
	LogLevel                   string   `json:"log_level"`
	ComponentLogLevel          string   `json:"component_log_level"`
	LogFormat                  string   `json:"log_format"`
	LogPath                    string   `json:"log_path"`
	ServiceCluster             string   `json:"service_cluster"`
	ServiceNode                string   `json:"service_node"`
	ServiceZone                string   `json:"service_zone"`
	FileFlushInterval          string   `json:"file_flush_interval"`
	DrainTime                  string   `json:"drain_time"`
	ParentShutdownTime         string   `json:"parent_shutdown_time"`
	Mode                       string   `json:"mode"`
	DisableHotRestart          bool     `json:"disable_hot_restart"`
	EnableMutexTracing         bool     `json:"enable_mutex_tracing"`
	RestartEpoch               uint32   `json:"restart_epoch"`
	CPUSetThreads              bool     `json:"cpuset_threads"`
	DisabledExtensions         []string `json:"disabled_extensions"`
	DrainStrategy              string   `json:"drain_strategy"`
}

type nodeJSON struct {
	ID               string         `json:"id"`
	Cluster          string         `json:"cluster"`
	Metadata         map[string]any `json:"metadata,omitempty"`
	UserAgentName    string         `json:"user_agent_name"`
	UserAgentVersion string         `json:"user_agent_version,omitempty"`
	Extensions       []any          `json:"extensions"`
	ClientFeatures   []string       `json:"client_features"`
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func uptime(now, start time.Time) string {
	if start.IsZero() || now.Before(start) {
		return "0s"
	}
	return protoDuration(now.Sub(start).Truncate(time.Second))
}

func (s *Server) handleServerInfo(w http.ResponseWriter, _ *http.Request) {
	info := s.provider.ServerInfo()
	now := s.now()
	o := info.Options
	disabled := o.DisabledExtensions
	if disabled == nil {
		disabled = []string{}
	}
	writeJSON(w, http.StatusOK, serverInfoJSON{
		Version:            info.Version,
		State:              info.State.orLive(),
		UptimeCurrentEpoch: uptime(now, info.StartTime),
		UptimeAllEpochs:    uptime(now, orDefault(info.FirstStartTime, info.StartTime)),
		HotRestartVersion:  info.HotRestartVersion,
		CommandLineOptions: commandLineOptionsJSON{
			BaseID:                strconv.FormatUint(o.BaseID, 10),
			Concurrency:           o.Concurrency,
			ConfigPath:            o.ConfigPath,
			ConfigYAML:            redactedConfigYAML(o.ConfigYAML),
			AdminAddressPath:      o.AdminAddressPath,
			LocalAddressIPVersion: orDefault(o.LocalAddressIPVersion, "v4"),
			LogLevel:              orDefault(o.LogLevel, "info"),
			ComponentLogLevel:     o.ComponentLogLevel,
			LogFormat:             o.LogFormat,
			LogPath:               o.LogPath,
			ServiceCluster:        o.ServiceCluster,
			ServiceNode:           o.ServiceNode,
			ServiceZone:           o.ServiceZone,
			FileFlushInterval:     protoDuration(orDefault(o.FileFlushInterval, 10*time.Second)),
			DrainTime:             protoDuration(orDefault(o.DrainTime, 600*time.Second)),
			ParentShutdownTime:    protoDuration(orDefault(o.ParentShutdownTime, 900*time.Second)),
			Mode:                  orDefault(o.Mode, "Serve"),
			DisableHotRestart:     o.DisableHotRestart,
			RestartEpoch:          o.RestartEpoch,
			DisabledExtensions:    disabled,
			DrainStrategy:         orDefault(o.DrainStrategy, "Gradual"),
		},
		Node: nodeJSON{
			ID:               info.Node.ID,
			Cluster:          info.Node.Cluster,
			Metadata:         info.Node.Metadata,
			UserAgentName:    orDefault(info.Node.UserAgentName, "wasmproxy"),
			UserAgentVersion: info.Node.UserAgentVersion,
			Extensions:       []any{},
			ClientFeatures:   []string{},
		},
	})
}

// redactedConfigYAML is --config-yaml with its secrets redacted: as a
// bootstrap in JSON (which is YAML too), or "[redacted]" when it does not
// read as one, since then what in it is secret cannot be told.
func redactedConfigYAML(text string) string {
	if strings.TrimSpace(text) == "" {
		return text
	}
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return redact.Redacted
	}
	out, err := redact.ProtoJSON(js, bootstrapName)
	if err != nil {
		return redact.Redacted
	}
	return string(out)
}

// addressJSON is config.core.v3.Address: a socket address, or a pipe for
// anything that is not host:port.
type addressJSON struct {
	SocketAddress *socketAddressJSON `json:"socket_address,omitempty"`
	Pipe          *pipeJSON          `json:"pipe,omitempty"`
}

type socketAddressJSON struct {
	Address   string `json:"address,omitempty"`
	PortValue uint32 `json:"port_value,omitempty"`
}

type pipeJSON struct {
	Path string `json:"path,omitempty"`
}

func toAddressJSON(hostport string) addressJSON {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return addressJSON{Pipe: &pipeJSON{Path: hostport}}
	}
	p, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return addressJSON{Pipe: &pipeJSON{Path: hostport}}
	}
	return addressJSON{SocketAddress: &socketAddressJSON{Address: host, PortValue: uint32(p)}}
}

func wantsJSON(r *http.Request) bool { return r.URL.Query().Get("format") == "json" }

// handleListeners prints "name::address" per listener, or with
// ?format=json admin.v3.Listeners.
func (s *Server) handleListeners(w http.ResponseWriter, r *http.Request) {
	listeners := s.provider.Listeners()
	if wantsJSON(r) {
		type listenerStatus struct {
			Name         string      `json:"name,omitempty"`
			LocalAddress addressJSON `json:"local_address"`
		}
		var out struct {
			ListenerStatuses []listenerStatus `json:"listener_statuses,omitempty"`
		}
		for _, l := range listeners {
			out.ListenerStatuses = append(out.ListenerStatuses, listenerStatus{Name: l.Name, LocalAddress: toAddressJSON(l.Address)})
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	var b strings.Builder
	for _, l := range listeners {
		fmt.Fprintf(&b, "%s::%s\n", l.Name, l.Address)
	}
	writeText(w, http.StatusOK, b.String())
}

func (c ClusterInfo) breakers() CircuitBreakers {
	if c.CircuitBreakers == nil {
		return CircuitBreakers{Default: DefaultThresholds, High: DefaultThresholds}
	}
	return *c.CircuitBreakers
}

// healthFlags is Envoy's host health-flag string: "healthy", or each
// failing flag with a leading slash.
func (e EndpointInfo) healthFlags() string {
	var flags string
	if !e.Healthy {
		flags += "/failed_active_hc"
	}
	if e.FailedOutlierCheck {
		flags += "/failed_outlier_check"
	}
	if e.FailedEDSHealth {
		flags += "/failed_eds_health"
	}
	if flags == "" {
		return "healthy"
	}
	return flags
}

// edsStatus is the host's eds_health_status in /clusters?format=json.
func edsStatus(e EndpointInfo) string {
	if e.FailedEDSHealth {
		return "UNHEALTHY"
	}
	return "HEALTHY"
}

func (e EndpointInfo) weight() uint32 { return orDefault(e.Weight, 1) }

// hostStat is one per-host statistic.
type hostStat struct {
	name  string
	value uint64
	gauge bool
}

// stats lists the host's counters then its gauges, each sorted by name,
// the order of Envoy's JSON.
func (e EndpointInfo) stats() []hostStat {
	st := e.Stats
	return []hostStat{
		{"cx_connect_fail", st.CxConnectFail, false},
		{"cx_total", st.CxTotal, false},
		{"rq_error", st.RqError, false},
		{"rq_success", st.RqSuccess, false},
		{"rq_timeout", st.RqTimeout, false},
		{"rq_total", st.RqTotal, false},
		{"cx_active", st.CxActive, true},
		{"rq_active", st.RqActive, true},
	}
}

// handleClusters prints Envoy's /clusters text ("cluster::key::value"
// and "cluster::host:port::key::value" lines) or, with ?format=json,
// admin.v3.Clusters.
func (s *Server) handleClusters(w http.ResponseWriter, r *http.Request) {
	clusters := s.provider.Clusters()
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, clustersJSON(clusters))
		return
	}
	var b strings.Builder
	for _, c := range clusters {
		fmt.Fprintf(&b, "%s::observability_name::%s\n", c.Name, orDefault(c.ObservabilityName, c.Name))
		cb := c.breakers()
		for _, p := range []struct {
			name string
			t    Thresholds
		}{{"default", cb.Default}, {"high", cb.High}} {
			fmt.Fprintf(&b, "%s::%s_priority::max_connections::%d\n", c.Name, p.name, p.t.MaxConnections)
			fmt.Fprintf(&b, "%s::%s_priority::max_pending_requests::%d\n", c.Name, p.name, p.t.MaxPendingRequests)
			fmt.Fprintf(&b, "%s::%s_priority::max_requests::%d\n", c.Name, p.name, p.t.MaxRequests)
			fmt.Fprintf(&b, "%s::%s_priority::max_retries::%d\n", c.Name, p.name, p.t.MaxRetries)
		}
		fmt.Fprintf(&b, "%s::added_via_api::%t\n", c.Name, c.AddedViaAPI)
		for _, e := range c.Endpoints {
			prefix := c.Name + "::" + e.Address + "::"
			// Text lists counters and gauges together, sorted by name.
			sts := e.stats()
			sort.Slice(sts, func(i, j int) bool { return sts[i].name < sts[j].name })
			for _, hs := range sts {
				fmt.Fprintf(&b, "%s%s::%d\n", prefix, hs.name, hs.value)
			}
			fmt.Fprintf(&b, "%shostname::%s\n", prefix, e.Hostname)
			fmt.Fprintf(&b, "%shealth_flags::%s\n", prefix, e.healthFlags())
			fmt.Fprintf(&b, "%sweight::%d\n", prefix, e.weight())
			fmt.Fprintf(&b, "%sregion::\n", prefix)
			fmt.Fprintf(&b, "%szone::\n", prefix)
			fmt.Fprintf(&b, "%ssub_zone::\n", prefix)
			fmt.Fprintf(&b, "%scanary::false\n", prefix)
			fmt.Fprintf(&b, "%spriority::%d\n", prefix, e.Priority)
			fmt.Fprintf(&b, "%ssuccess_rate::-1\n", prefix)
			fmt.Fprintf(&b, "%slocal_origin_success_rate::-1\n", prefix)
		}
	}
	writeText(w, http.StatusOK, b.String())
}

// The JSON types below follow admin.v3.Clusters as protojson prints it
// without default values: zero fields are omitted, uint64 values are
// strings, and the COUNTER metric type (the enum default) is omitted.
type clusterStatusJSON struct {
	Name              string              `json:"name,omitempty"`
	AddedViaAPI       bool                `json:"added_via_api,omitempty"`
	HostStatuses      []hostStatusJSON    `json:"host_statuses,omitempty"`
	CircuitBreakers   circuitBreakersJSON `json:"circuit_breakers"`
	ObservabilityName string              `json:"observability_name,omitempty"`
}

type circuitBreakersJSON struct {
	Thresholds []thresholdsJSON `json:"thresholds"`
}

type thresholdsJSON struct {
	Priority           string `json:"priority,omitempty"`
	MaxConnections     uint32 `json:"max_connections"`
	MaxPendingRequests uint32 `json:"max_pending_requests"`
	MaxRequests        uint32 `json:"max_requests"`
	MaxRetries         uint32 `json:"max_retries"`
}

type hostStatusJSON struct {
	Address      addressJSON      `json:"address"`
	Stats        []simpleMetric   `json:"stats,omitempty"`
	HealthStatus hostHealthStatus `json:"health_status"`
	Weight       uint32           `json:"weight,omitempty"`
	Hostname     string           `json:"hostname,omitempty"`
	Priority     uint32           `json:"priority,omitempty"`
	Locality     struct{}         `json:"locality"`
}

type simpleMetric struct {
	Type  string `json:"type,omitempty"`
	Value string `json:"value,omitempty"`
	Name  string `json:"name,omitempty"`
}

type hostHealthStatus struct {
	FailedActiveHealthCheck bool   `json:"failed_active_health_check,omitempty"`
	FailedOutlierCheck      bool   `json:"failed_outlier_check,omitempty"`
	EDSHealthStatus         string `json:"eds_health_status"`
}

func clustersJSON(clusters []ClusterInfo) any {
	var out struct {
		ClusterStatuses []clusterStatusJSON `json:"cluster_statuses,omitempty"`
	}
	for _, c := range clusters {
		cb := c.breakers()
		cs := clusterStatusJSON{
			Name:        c.Name,
			AddedViaAPI: c.AddedViaAPI,
			CircuitBreakers: circuitBreakersJSON{Thresholds: []thresholdsJSON{
				{"", cb.Default.MaxConnections, cb.Default.MaxPendingRequests, cb.Default.MaxRequests, cb.Default.MaxRetries},
				{"HIGH", cb.High.MaxConnections, cb.High.MaxPendingRequests, cb.High.MaxRequests, cb.High.MaxRetries},
			}},
			ObservabilityName: orDefault(c.ObservabilityName, c.Name),
		}
		for _, e := range c.Endpoints {
			hs := hostStatusJSON{
				Address:      toAddressJSON(e.Address),
				HealthStatus: hostHealthStatus{FailedActiveHealthCheck: !e.Healthy, FailedOutlierCheck: e.FailedOutlierCheck, EDSHealthStatus: edsStatus(e)},
				Weight:       e.weight(),
				Hostname:     e.Hostname,
				Priority:     e.Priority,
			}
			for _, st := range e.stats() {
				m := simpleMetric{Name: st.name}
				if st.gauge {
					m.Type = "GAUGE"
				}
				if st.value != 0 {
					m.Value = strconv.FormatUint(st.value, 10)
				}
				hs.Stats = append(hs.Stats, m)
			}
			cs.HostStatuses = append(cs.HostStatuses, hs)
		}
		out.ClusterStatuses = append(out.ClusterStatuses, cs)
	}
	return out
}

// Full names of the messages /config_dump shows.
const (
	bootstrapName       protoreflect.FullName = "envoy.config.bootstrap.v3.Bootstrap"
	extensionConfigName protoreflect.FullName = "envoy.config.core.v3.TypedExtensionConfig"
)

// handleConfigDump wraps the bootstrap in admin.v3.ConfigDump with one
// BootstrapConfigDump entry, followed, as Envoy orders them, by what a
// control plane delivered (ClustersConfigDump, EcdsConfigDump,
// ListenersConfigDump, RoutesConfigDump; see DynamicConfigDumper) and
// the filters delivered apart from the bootstrap (Istio WasmPlugins) in
// the EcdsConfigDump. Everything shown is redacted first as Envoy's dump
// is (package redact): private keys, session ticket keys, generic
// secrets, passwords in URLs. What cannot be read to be redacted is not
// shown at all.
func (s *Server) handleConfigDump(w http.ResponseWriter, _ *http.Request) {
	raw, err := s.provider.ConfigDump()
	if err != nil {
		writeText(w, http.StatusInternalServerError, "error: "+redact.Text(err.Error())+"\n")
		return
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	bootstrap, err := redact.ProtoJSON(raw, bootstrapName)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "error: the loaded bootstrap cannot be shown: "+err.Error()+"\n")
		return
	}
	type bootstrapConfigDump struct {
		Type      string          `json:"@type"`
		Bootstrap json.RawMessage `json:"bootstrap"`
	}
	configs := []any{bootstrapConfigDump{Type: "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", Bootstrap: bootstrap}}
	var dynamic []proto.Message
	if d, ok := s.provider.(DynamicConfigDumper); ok {
		if dynamic, err = d.DynamicConfigs(); err != nil {
			writeText(w, http.StatusInternalServerError, "error: "+redact.Text(err.Error())+"\n")
			return
		}
	}
	ecds := &adminv3.EcdsConfigDump{}
	for _, m := range dynamic {
		if e, ok := m.(*adminv3.EcdsConfigDump); ok {
			ecds.EcdsFilters = append(ecds.EcdsFilters, e.GetEcdsFilters()...)
		}
	}
	if d, ok := s.provider.(ExtensionConfigDumper); ok {
		ecs, err := d.ExtensionConfigs()
		if err != nil {
			writeText(w, http.StatusInternalServerError, "error: "+redact.Text(err.Error())+"\n")
			return
		}
		for i, ec := range ecs {
			tec := &corev3.TypedExtensionConfig{}
			// protojson quotes what it cannot read: say where, not what.
			if protojson.Unmarshal(ec, tec) != nil {
				writeText(w, http.StatusInternalServerError, fmt.Sprintf("error: extension config %d cannot be shown: not valid protojson of %s\n", i, extensionConfigName))
				return
			}
			a, err := anypb.New(tec)
			if err != nil {
				writeText(w, http.StatusInternalServerError, fmt.Sprintf("error: extension config %d cannot be shown: %v\n", i, err))
				return
			}
			ecds.EcdsFilters = append(ecds.EcdsFilters, &adminv3.EcdsConfigDump_EcdsFilterConfig{EcdsFilter: a})
		}
	}
	// Envoy's order: bootstrap, clusters, ECDS, listeners, routes.
	byName := map[protoreflect.FullName]proto.Message{}
	for _, m := range dynamic {
		byName[m.ProtoReflect().Descriptor().FullName()] = m
	}
	if len(ecds.EcdsFilters) > 0 {
		byName[ecds.ProtoReflect().Descriptor().FullName()] = ecds
	}
	for _, name := range []protoreflect.FullName{"envoy.admin.v3.ClustersConfigDump", "envoy.admin.v3.EcdsConfigDump", "envoy.admin.v3.ListenersConfigDump", "envoy.admin.v3.RoutesConfigDump"} {
		m, ok := byName[name]
		if !ok {
			continue
		}
		shown, err := redactedAny(m)
		if err != nil {
			writeText(w, http.StatusInternalServerError, fmt.Sprintf("error: %s cannot be shown: %v\n", name, err))
			return
		}
		configs = append(configs, shown)
	}
	writeJSON(w, http.StatusOK, struct {
		Configs []any `json:"configs"`
	}{configs})
}

// redactedAny is m, redacted (a copy), as protojson of an Any: "@type"
// first, proto field names.
func redactedAny(m proto.Message) (json.RawMessage, error) {
	m = proto.Clone(m)
	redact.Message(m)
	a, err := anypb.New(m)
	if err != nil {
		return nil, err
	}
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(a)
	if err != nil {
		return nil, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

// statsParams reads ?usedonly and ?filter=; a bad regular expression is
// reported to the client with 400.
func statsParams(w http.ResponseWriter, q url.Values) (filter *regexp.Regexp, usedOnly, ok bool) {
	_, usedOnly = q["usedonly"]
	if f := q.Get("filter"); f != "" {
		re, err := regexp.Compile(f)
		if err != nil {
			writeText(w, http.StatusBadRequest, "Invalid re2 regex: "+err.Error()+"\n")
			return nil, false, false
		}
		filter = re
	}
	return filter, usedOnly, true
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	filter, usedOnly, ok := statsParams(w, q)
	if !ok {
		return
	}
	snap := s.stats.Snapshot()
	var buf bytes.Buffer
	var err error
	contentType := contentTypeText
	switch format := q.Get("format"); format {
	case "", "text":
		err = snap.WriteText(&buf, filter, usedOnly)
	case "json":
		contentType = contentTypeJSON
		err = snap.WriteJSON(&buf, filter, usedOnly)
	case "prometheus":
		err = snap.Filter(filter).WritePrometheus(&buf, usedOnly)
	default:
		writeText(w, http.StatusBadRequest, "usage: /stats?format=(text|json|prometheus)\n\n")
		return
	}
	if err != nil {
		writeText(w, http.StatusInternalServerError, "error: "+err.Error()+"\n")
		return
	}
	writeBody(w, http.StatusOK, contentType, buf.Bytes())
}

func (s *Server) handlePrometheus(w http.ResponseWriter, r *http.Request) {
	filter, usedOnly, ok := statsParams(w, r.URL.Query())
	if !ok {
		return
	}
	var buf bytes.Buffer
	if err := s.stats.Snapshot().Filter(filter).WritePrometheus(&buf, usedOnly); err != nil {
		writeText(w, http.StatusInternalServerError, "error: "+err.Error()+"\n")
		return
	}
	writeBody(w, http.StatusOK, contentTypeText, buf.Bytes())
}

// handleLogging prints the level of every logger and, given parameters,
// first changes levels: ?level=L (all), ?<logger>=L (one), or
// ?paths=a:L1,b:L2 (several). Exactly one parameter is allowed; a bad
// request changes nothing and answers 400 with the error and a usage
// note before the listing.
func (s *Server) handleLogging(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	code := http.StatusOK
	if r.URL.RawQuery != "" {
		if err := s.changeLogLevels(r.URL.RawQuery); err != nil {
			code = http.StatusBadRequest
			fmt.Fprintf(&b, "error: %v\n\n", err)
			b.WriteString("usage: /logging?<name>=<level>             change one logger\n" +
				"       /logging?paths=<name>:<level>,...   change several loggers\n" +
				"       /logging?level=<level>              change every logger\n" +
				"levels: trace debug info warning error critical off\n")
		}
	}
	b.WriteString("active loggers:\n")
	for _, l := range s.logs.Levels() {
		fmt.Fprintf(&b, "  %s: %s\n", l[0], l[1])
	}
	b.WriteString("\n")
	writeText(w, code, b.String())
}

func (s *Server) changeLogLevels(rawQuery string) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fmt.Errorf("bad query string: %v", err)
	}
	n := 0
	var key, value string
	for k, vs := range q {
		n += len(vs)
		key, value = k, vs[0]
	}
	if n != 1 {
		return fmt.Errorf("invalid number of parameters: want exactly one, got %d", n)
	}
	parse := func(v string) (slog.Level, error) {
		l, err := logging.ParseLevel(v)
		if err != nil {
			return 0, fmt.Errorf("unknown logger level %q", v)
		}
		return l, nil
	}

	if key == "level" {
		l, err := parse(value)
		if err != nil {
			return err
		}
		s.log.Info("change all log levels", "level", logging.LevelName(l))
		return s.logs.SetLevel("", l)
	}

	type change struct {
		name  string
		level slog.Level
	}
	var changes []change
	if key == "paths" {
		for _, pair := range strings.Split(value, ",") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			name, lvl, _ := strings.Cut(pair, ":")
			name, lvl = strings.TrimSpace(name), strings.TrimSpace(lvl)
			if name == "" || lvl == "" {
				return fmt.Errorf("empty logger name or empty logger level in %q", pair)
			}
			l, err := parse(lvl)
			if err != nil {
				return err
			}
			changes = append(changes, change{name, l})
		}
		if len(changes) == 0 {
			return fmt.Errorf("paths names no logger")
		}
	} else {
		l, err := parse(value)
		if err != nil {
			return err
		}
		changes = []change{{key, l}}
	}

	// Check every name before changing anything, so a bad request has no
	// effect.
	known := map[string]bool{}
	for _, l := range s.logs.Levels() {
		known[l[0]] = true
	}
	for _, c := range changes {
		if !known[c.name] {
			return fmt.Errorf("unknown logger name %q", c.name)
		}
	}
	for _, c := range changes {
		if err := s.logs.SetLevel(c.name, c.level); err != nil {
			return err
		}
		s.log.Info("change log level", "logger", c.name, "level", logging.LevelName(c.level))
	}
	return nil
}

// handleQuit answers "OK" and then, once the response is on its way,
// asks the provider to shut down.
func (s *Server) handleQuit(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "OK\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.log.Info("shutdown requested through /quitquitquit")
	go s.quitOnce.Do(s.provider.Quit)
}
