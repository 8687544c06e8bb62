package istio

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	netwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	extensions "istio.io/api/extensions/v1alpha1"
)

// ExtensionConfig renders the plugin as istiod delivers it to Envoy over
// ECDS: an envoy.config.core.v3.TypedExtensionConfig named after the
// plugin whose typed_config is the HTTP (or, for a NETWORK plugin, the
// network) Wasm filter, with the code as a remote data source (the
// image URL and sha256 istiod sends; a file:// URL stays local). The
// result is protojson, for /config_dump's EcdsConfigDump.
func (p *Plugin) ExtensionConfig() ([]byte, error) {
	f, err := p.Filter()
	if err != nil {
		return nil, err
	}
	w := f.Wasm
	vm := &wasmv3.VmConfig{Runtime: w.Runtime}
	switch {
	case w.Remote != nil:
		vm.Code = &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
			HttpUri: &corev3.HttpUri{Uri: w.Remote.URL, Timeout: durationpb.New(time.Duration(w.Remote.Timeout))},
			Sha256:  w.Remote.SHA256,
		}}}
	default:
		vm.Code = &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{Local: &corev3.DataSource{
			Specifier: &corev3.DataSource_Filename{Filename: w.CodeFile},
		}}}
	}
	if len(w.EnvKeyValues) > 0 || len(w.EnvHostKeys) > 0 {
		vm.EnvironmentVariables = &wasmv3.EnvironmentVariables{HostEnvKeys: w.EnvHostKeys, KeyValues: w.EnvKeyValues}
	}
	pc := &wasmv3.PluginConfig{
		Name:   w.Name,
		RootId: w.RootID,
		Vm:     &wasmv3.PluginConfig_VmConfig{VmConfig: vm},
		// The model's policy names are wasmv3's enum value names.
		FailurePolicy: wasmv3.FailurePolicy(wasmv3.FailurePolicy_value[string(w.FailurePolicy)]),
	}
	if len(w.PluginConfiguration) > 0 {
		if pc.Configuration, err = anypb.New(wrapperspb.String(string(w.PluginConfiguration))); err != nil {
			return nil, p.errorf("pluginConfig: %v", err)
		}
	}
	var filter proto.Message = &httpwasmv3.Wasm{Config: pc}
	if p.Spec.GetType() == extensions.PluginType_NETWORK {
		filter = &netwasmv3.Wasm{Config: pc}
	}
	typed, err := anypb.New(filter)
	if err != nil {
		return nil, p.errorf("%v", err)
	}
	return protojson.Marshal(&corev3.TypedExtensionConfig{Name: p.FullName(), TypedConfig: typed})
}
