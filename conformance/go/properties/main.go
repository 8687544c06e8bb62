// Command properties is the Go SDK conformance plugin for properties:
// it copies request, connection, plugin and xds properties into request
// headers in a readable form (decoding Envoy's 8-byte integers), sets a
// property and reads it back, and reports the configurations, log level
// and clock (conformance/README.md, area "properties").
package main

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct {
	types.DefaultVMContext
	config []byte
}

func (v *vm) OnVMStart(size int) types.OnVMStartStatus {
	if size > 0 {
		cfg, err := proxywasm.GetVMConfiguration()
		if err != nil {
			return false
		}
		v.config = cfg
	}
	return true
}

func (v *vm) NewPluginContext(uint32) types.PluginContext { return &plugin{vm: v} }

type plugin struct {
	types.DefaultPluginContext
	vm     *vm
	config []byte
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		cfg, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			return false
		}
		p.config = cfg
	}
	return true
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{plugin: p} }

type stream struct {
	types.DefaultHttpContext
	plugin *plugin
}

func add(key, value string) {
	if err := proxywasm.AddHttpRequestHeader(key, value); err != nil {
		panic(err)
	}
}

func forward(header string, path ...string) {
	v, err := proxywasm.GetProperty(path)
	if err != nil {
		add(header, "<absent>")
		return
	}
	add(header, string(v))
}

// integer reads one of Envoy's integer properties: 8 bytes little-endian.
func integer(path ...string) (uint64, bool) {
	v, err := proxywasm.GetProperty(path)
	if err != nil || len(v) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(v), true
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	forward("x-conf-prop-path", "request", "path")
	forward("x-conf-prop-method", "request", "method")
	forward("x-conf-prop-protocol", "request", "protocol")
	forward("x-conf-prop-multi", "request", "headers", "x-multi")
	forward("x-conf-plugin-name", "plugin_name")
	forward("x-conf-plugin-root-id", "plugin_root_id")
	forward("x-conf-plugin-vm-id", "plugin_vm_id")
	if node, err := proxywasm.GetProperty([]string{"xds", "node"}); err == nil {
		add("x-conf-node", hex.EncodeToString(node))
	}
	for header, path := range map[string][]string{
		"x-conf-source-port":   {"source", "port"},
		"x-conf-request-time":  {"request", "time"},
		"x-conf-connection-id": {"connection_id"},
	} {
		if v, ok := integer(path...); ok {
			add(header, strconv.FormatUint(v, 10))
		}
	}
	if err := proxywasm.SetProperty([]string{"conformance_lang"}, []byte("go")); err == nil {
		forward("x-conf-set-property", "conformance_lang")
	}
	add("x-conf-vm-config", string(s.plugin.vm.config))
	add("x-conf-config", string(s.plugin.config))
	if level, err := proxywasm.GetLogLevel(); err == nil {
		add("x-conf-log-level", strconv.Itoa(int(level)))
	}
	add("x-conf-now", strconv.FormatInt(time.Now().UnixNano(), 10))
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	if code, ok := integer("response", "code"); ok {
		if err := proxywasm.AddHttpResponseHeader("x-conf-resp-code", strconv.FormatUint(code, 10)); err != nil {
			panic(err)
		}
	}
	return types.ActionContinue
}
