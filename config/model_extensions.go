package config

// WasmService is one bootstrap_extensions entry of type
// envoy.extensions.wasm.v3.WasmService (envoy.bootstrap.wasm): a plugin
// with no traffic of its own, started with the proxy. Only its root
// context runs: on_vm_start, on_configure, ticks, queues, callouts.
type WasmService struct {
	// Name is the extension's name.
	Name string `json:"name"`
	// Singleton runs one instance (Envoy: one VM on the main thread);
	// otherwise the service runs in every instance of the VM's pool (one
	// per worker in Envoy) and shares the VM with filters whose VM key
	// matches.
	Singleton bool        `json:"singleton,omitempty"`
	Wasm      *WasmPlugin `json:"wasm"`
}

// StatsConfig is stats_config: how stat names become Prometheus metric
// names and labels.
type StatsConfig struct {
	// Tags are stats_tags in config order.
	Tags []StatsTag `json:"stats_tags,omitempty"`
	// UseAllDefaultTags keeps Envoy's default tag extractors (default
	// true); a tag in Tags with a default's name replaces that default.
	UseAllDefaultTags bool `json:"use_all_default_tags"`
}

// StatsTag is one TagSpecifier: exactly one of Regex and FixedValue is
// set. A regex's first capture group is cut from the name and its second
// (or, without one, its first) is the tag's value, as in Envoy.
type StatsTag struct {
	Name       string  `json:"tag_name"`
	Regex      *Regexp `json:"regex,omitempty"`
	FixedValue *string `json:"fixed_value,omitempty"`
}

// AccessLog is one access_log entry of an HTTP connection manager or a
// tcp_proxy: envoy.access_loggers.file, .stdout or .stderr. The proxy
// renders it with package accesslog.
type AccessLog struct {
	// Name is the logger's name as configured.
	Name string `json:"name"`
	// Path is the file written: a file logger's path, "/dev/stdout" or
	// "/dev/stderr" for the stream loggers.
	Path string `json:"path"`
	// Format is the text format (format, log_format.text_format or
	// .text_format_source); "" with no JSON is Envoy's default format.
	Format string `json:"format,omitempty"`
	// JSON is log_format.json_format (or the deprecated json_format):
	// key → format string.
	JSON map[string]any `json:"json_format,omitempty"`
	// OmitEmptyValues is log_format.omit_empty_values: absent values
	// print as "" (text) or leave their key out (JSON).
	OmitEmptyValues bool `json:"omit_empty_values,omitempty"`
	// Filter is the optional access-log filter.
	Filter *AccessLogFilter `json:"filter,omitempty"`
}

// AccessLogFilter is one AccessLogFilter: exactly one field is set.
type AccessLogFilter struct {
	// StatusCode and Duration compare the response code and the
	// stream's duration in milliseconds with a RuntimeUInt32's
	// default_value (there is no runtime).
	StatusCode *AccessLogComparison `json:"status_code_filter,omitempty"`
	Duration   *AccessLogComparison `json:"duration_filter,omitempty"`
	// NotHealthCheck is not_health_check_filter.
	NotHealthCheck bool `json:"not_health_check_filter,omitempty"`
	// And, Or hold and_filter / or_filter's filters.
	And []*AccessLogFilter `json:"and_filter,omitempty"`
	Or  []*AccessLogFilter `json:"or_filter,omitempty"`
	// Header is header_filter's matcher on the request headers.
	Header *HeaderMatcher `json:"header_filter,omitempty"`
	// ResponseFlag is response_flag_filter.
	ResponseFlag *AccessLogResponseFlags `json:"response_flag_filter,omitempty"`
}

// AccessLogResponseFlags is a response_flag_filter: Flags are Envoy's
// short codes (NR, UH, …); none means any flag.
type AccessLogResponseFlags struct {
	Flags []string `json:"flags,omitempty"`
}

// AccessLogComparison is a ComparisonFilter: Op is "EQ", "GE" or "LE".
type AccessLogComparison struct {
	Op    string `json:"op"`
	Value uint32 `json:"value"`
}
