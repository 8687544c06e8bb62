// Command mtls-identity passes the identity of an mTLS client to the
// upstream, the second seed's Kafka idea generalised: on a listener that
// verifies client certificates, it reads the certificate's subject
// (the connection.subject_peer_certificate property, e.g.
// "CN=alice,O=Acme") and hands it on.
//
//   - As an HTTP filter it sets the request header (default
//     x-client-identity) after removing any value the client sent, so
//     the upstream can trust it.
//   - As a network (TCP) filter it sends one line before the client's
//     data: "x-client-identity: CN=alice,O=Acme\n".
//
// A connection without a client certificate is refused: 403 for HTTP,
// closed for TCP. The plugin configuration is JSON:
//
//	{"protocol": "http" | "tcp", "header": "x-client-identity"}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o main.wasm .
package main

import (
	"encoding/json"
	"errors"
	"fmt"

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

// settings is the plugin configuration.
type settings struct {
	Protocol string `json:"protocol"`
	Header   string `json:"header"`
}

// pluginContext is the root context: it reads the configuration and
// makes HTTP or TCP contexts accordingly.
type pluginContext struct {
	types.DefaultPluginContext
	settings settings
}

// OnPluginStart implements types.PluginContext.
func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	p.settings = settings{Protocol: "http", Header: "x-client-identity"}
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("reading the plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &p.settings); err != nil {
			proxywasm.LogCriticalf("plugin configuration %q: %v", data, err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.settings.Protocol != "http" && p.settings.Protocol != "tcp" {
		proxywasm.LogCriticalf("plugin configuration: protocol %q: want http or tcp", p.settings.Protocol)
		return types.OnPluginStartStatusFailed
	}
	if p.settings.Header == "" {
		proxywasm.LogCritical("plugin configuration: header must not be empty")
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext (protocol "http").
func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	if p.settings.Protocol != "http" {
		return nil
	}
	return &httpIdentity{header: p.settings.Header}
}

// NewTcpContext implements types.PluginContext (protocol "tcp").
func (p *pluginContext) NewTcpContext(uint32) types.TcpContext {
	if p.settings.Protocol != "tcp" {
		return nil
	}
	return &tcpIdentity{header: p.settings.Header}
}

// clientIdentity returns the verified client certificate's subject, or
// ok false when the connection is not mutual TLS.
func clientIdentity() (string, bool) {
	mtls, err := proxywasm.GetProperty([]string{"connection", "mtls"})
	if err != nil || len(mtls) != 1 || mtls[0] != 1 {
		return "", false
	}
	subject, err := proxywasm.GetProperty([]string{"connection", "subject_peer_certificate"})
	if err != nil || len(subject) == 0 {
		return "", false
	}
	return string(subject), true
}

// httpIdentity handles one HTTP request.
type httpIdentity struct {
	types.DefaultHttpContext
	header string
}

// OnHttpRequestHeaders implements types.HttpContext.
func (c *httpIdentity) OnHttpRequestHeaders(int, bool) types.Action {
	// Whatever the client says about itself is dropped first.
	if err := proxywasm.RemoveHttpRequestHeader(c.header); err != nil {
		proxywasm.LogErrorf("removing %s: %v", c.header, err)
	}
	id, ok := clientIdentity()
	if !ok {
		if err := proxywasm.SendHttpResponse(403, [][2]string{{"content-type", "text/plain"}}, []byte("client certificate required\n"), -1); err != nil {
			proxywasm.LogErrorf("sending 403: %v", err)
		}
		return types.ActionPause
	}
	if err := proxywasm.ReplaceHttpRequestHeader(c.header, id); err != nil {
		proxywasm.LogErrorf("setting %s: %v", c.header, err)
	}
	return types.ActionContinue
}

// tcpIdentity handles one TCP connection.
type tcpIdentity struct {
	types.DefaultTcpContext
	header string
	id     string
	sent   bool
}

// OnNewConnection implements types.TcpContext: a connection without a
// client certificate is closed.
func (c *tcpIdentity) OnNewConnection() types.Action {
	id, ok := clientIdentity()
	if !ok {
		proxywasm.LogWarn("closing a connection without a client certificate")
		if err := proxywasm.CloseDownstream(); err != nil {
			proxywasm.LogErrorf("closing: %v", err)
		}
		return types.ActionPause
	}
	c.id = id
	return types.ActionContinue
}

// OnDownstreamData implements types.TcpContext: the identity line goes
// in front of the first data.
func (c *tcpIdentity) OnDownstreamData(dataSize int, endOfStream bool) types.Action {
	if c.sent || dataSize == 0 {
		return types.ActionContinue
	}
	if c.id == "" {
		return types.ActionPause // refused in OnNewConnection
	}
	line := fmt.Sprintf("%s: %s\n", c.header, c.id)
	if err := proxywasm.PrependDownstreamData([]byte(line)); err != nil {
		proxywasm.LogErrorf("prepending the identity: %v", err)
		if err := proxywasm.CloseDownstream(); err != nil {
			proxywasm.LogErrorf("closing: %v", err)
		}
		return types.ActionPause
	}
	c.sent = true
	return types.ActionContinue
}
