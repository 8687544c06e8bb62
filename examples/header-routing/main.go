// Command header-routing is a Proxy-Wasm HTTP filter that picks the
// upstream version of a request from a header: "x-version: v2" sets
// "x-route-to: v2", and the route configuration sends requests by
// x-route-to to one cluster per version. A missing or unknown version gets
// the default. The filter always sets x-route-to itself, so a client
// cannot pick a route by sending x-route-to.
//
// The proxy matches the route before the filters run (Envoy's route
// cache), so after changing the header the filter calls the
// clear_route_cache foreign function: the router then matches again on
// the new header. On the response the filter adds "x-route-name" with the
// route that served the request (the xds.route_name property).
//
// Configuration (JSON, every field optional):
//
//	{"header": "x-version", "route_header": "x-route-to",
//	 "versions": ["v1", "v2"], "default": "v1"}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o main.wasm .
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wasmproxy/wasmproxy/sdk/proxywasm"
	"github.com/wasmproxy/wasmproxy/sdk/proxywasm/types"
)

func main() {
	proxywasm.SetVMContext(&vmContext{})
}

type vmContext struct {
	types.DefaultVMContext
}

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{}
}

// config is the plugin configuration.
type config struct {
	Header      string   `json:"header"`
	RouteHeader string   `json:"route_header"`
	Versions    []string `json:"versions"`
	Default     string   `json:"default"`
}

func parseConfig(data []byte) (config, error) {
	c := config{Header: "x-version", RouteHeader: "x-route-to", Versions: []string{"v1", "v2"}, Default: "v1"}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, err
	}
	for _, h := range []string{c.Header, c.RouteHeader} {
		if h == "" || h != strings.ToLower(h) {
			return c, fmt.Errorf("header %q must be a non-empty lower-case name", h)
		}
	}
	if c.Header == c.RouteHeader {
		return c, errors.New("header and route_header must differ")
	}
	for i, v := range c.Versions {
		c.Versions[i] = strings.ToLower(v)
	}
	c.Default = strings.ToLower(c.Default)
	if !slices.Contains(c.Versions, c.Default) {
		return c, fmt.Errorf("default %q is not one of the versions %q", c.Default, c.Versions)
	}
	return c, nil
}

// pluginContext holds the configuration.
type pluginContext struct {
	types.DefaultPluginContext
	config config
}

// OnPluginStart implements types.PluginContext.
func (p *pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("reading the plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	c, err := parseConfig(data)
	if err != nil {
		proxywasm.LogCriticalf("invalid plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.config = c
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &routingContext{config: &p.config}
}

// routingContext routes one request.
type routingContext struct {
	types.DefaultHttpContext
	config *config
}

// OnHttpRequestHeaders implements types.HttpContext: it sets the route
// header from the version header and has the route matched again.
func (r *routingContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	target := r.config.Default
	if v, err := proxywasm.GetHttpRequestHeader(r.config.Header); err == nil {
		v = strings.ToLower(strings.TrimSpace(v))
		if slices.Contains(r.config.Versions, v) {
			target = v
		} else {
			proxywasm.LogDebugf("unknown %s %q, routing to %s", r.config.Header, v, target)
		}
	}
	// Replace, never add: whatever the client sent as the route header is
	// gone.
	if err := proxywasm.ReplaceHttpRequestHeader(r.config.RouteHeader, target); err != nil {
		proxywasm.LogErrorf("setting %s: %v", r.config.RouteHeader, err)
		return types.ActionContinue
	}
	if _, err := proxywasm.CallForeignFunction("clear_route_cache", nil); err != nil {
		proxywasm.LogWarnf("clear_route_cache: %v", err)
	}
	return types.ActionContinue
}

// OnHttpResponseHeaders implements types.HttpContext: it tells the client
// which route served it.
func (r *routingContext) OnHttpResponseHeaders(numHeaders int, endOfStream bool) types.Action {
	if name, err := proxywasm.GetProperty([]string{"xds", "route_name"}); err == nil && len(name) > 0 {
		if err := proxywasm.ReplaceHttpResponseHeader("x-route-name", string(name)); err != nil {
			proxywasm.LogErrorf("setting x-route-name: %v", err)
		}
	}
	return types.ActionContinue
}
