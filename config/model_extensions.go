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
