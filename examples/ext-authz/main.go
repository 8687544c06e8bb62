// Command ext-authz is a Proxy-Wasm HTTP filter that asks an external
// authorization service about every request before it reaches the
// upstream, the way Envoy's ext_authz filter does in HTTP mode.
//
// On the request headers the filter removes any client-sent user header
// (x-auth-user by default: only the auth service may set it), sends
// "GET /check" with the request's authorization header to the auth
// cluster with DispatchHttpCall, and pauses the request. When the reply
// comes:
//
//   - 200: the user named by the reply's x-auth-user header (or, without
//     one, its body) is added to the request as x-auth-user and the request
//     resumes;
//   - 5xx, or no reply at all (connection refused, reset, timeout): the
//     client gets status_on_error (503) "auth service unavailable";
//   - anything else: the client gets 403 with the auth service's body (and
//     its content-type and www-authenticate headers).
//
// A 200 that names no user is treated as an auth service fault (503).
//
// Configuration (JSON, every field optional):
//
//	{"cluster": "auth", "path": "/check", "authority": "auth",
//	 "timeout_ms": 1000, "user_header": "x-auth-user", "status_on_error": 503}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o main.wasm .
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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
	Cluster       string `json:"cluster"`
	Path          string `json:"path"`
	Authority     string `json:"authority"`
	TimeoutMs     uint32 `json:"timeout_ms"`
	UserHeader    string `json:"user_header"`
	StatusOnError uint32 `json:"status_on_error"`
}

func defaultConfig() config {
	return config{
		Cluster:       "auth",
		Path:          "/check",
		Authority:     "auth",
		TimeoutMs:     1000,
		UserHeader:    "x-auth-user",
		StatusOnError: 503,
	}
}

// parseConfig reads the JSON configuration over the defaults; empty data
// means the defaults.
func parseConfig(data []byte) (config, error) {
	c := defaultConfig()
	if len(strings.TrimSpace(string(data))) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, err
	}
	switch {
	case c.Cluster == "":
		return c, errors.New("cluster must not be empty")
	case !strings.HasPrefix(c.Path, "/"):
		return c, fmt.Errorf("path %q must start with /", c.Path)
	case c.UserHeader == "" || c.UserHeader != strings.ToLower(c.UserHeader):
		return c, fmt.Errorf("user_header %q must be a non-empty lower-case header name", c.UserHeader)
	case c.StatusOnError < 200 || c.StatusOnError > 599:
		return c, fmt.Errorf("status_on_error %d is not an HTTP status", c.StatusOnError)
	case c.TimeoutMs == 0:
		return c, errors.New("timeout_ms must be positive")
	}
	return c, nil
}

// pluginContext holds the configuration and makes one authzContext per
// stream.
type pluginContext struct {
	types.DefaultPluginContext
	config config
}

// OnPluginStart implements types.PluginContext: a configuration that does
// not parse refuses the plugin (the proxy then refuses the config).
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
	proxywasm.LogInfof("checking requests with cluster %q, path %s", c.Cluster, c.Path)
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &authzContext{config: &p.config}
}

// authzContext checks one request.
type authzContext struct {
	types.DefaultHttpContext
	config *config
}

// OnHttpRequestHeaders implements types.HttpContext: it drops the
// client's user header, asks the auth service and pauses until it
// answers.
func (a *authzContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	// Only the auth service names the user: a client-sent header is never
	// trusted, whatever the auth service answers.
	if err := proxywasm.RemoveHttpRequestHeader(a.config.UserHeader); err != nil {
		proxywasm.LogErrorf("removing %s: %v", a.config.UserHeader, err)
		a.fail("removing the client's user header failed")
		return types.ActionPause
	}
	headers := [][2]string{
		{":method", "GET"},
		{":path", a.config.Path},
		{":authority", a.config.Authority},
	}
	if v, err := proxywasm.GetHttpRequestHeader("authorization"); err == nil {
		headers = append(headers, [2]string{"authorization", v})
	}
	if _, err := proxywasm.DispatchHttpCall(a.config.Cluster, headers, nil, nil, a.config.TimeoutMs, a.onAuthReply); err != nil {
		proxywasm.LogErrorf("calling the auth service (cluster %q): %v", a.config.Cluster, err)
		a.fail("auth service call failed")
		return types.ActionPause
	}
	// Pausing in the headers callback holds the request (and its body)
	// here until onAuthReply resumes it or answers it.
	return types.ActionPause
}

// onAuthReply runs when the auth service answers, or when the call fails
// (numHeaders 0).
func (a *authzContext) onAuthReply(numHeaders, bodySize, numTrailers int) {
	if numHeaders == 0 {
		proxywasm.LogWarnf("the auth service did not answer (cluster %q)", a.config.Cluster)
		a.fail("no answer from the auth service")
		return
	}
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil {
		proxywasm.LogErrorf("reading the auth reply headers: %v", err)
		a.fail("unreadable auth reply")
		return
	}
	var body []byte
	if bodySize > 0 {
		if body, err = proxywasm.GetHttpCallResponseBody(0, bodySize); err != nil {
			proxywasm.LogErrorf("reading the auth reply body: %v", err)
			a.fail("unreadable auth reply")
			return
		}
	}
	status, _ := strconv.Atoi(header(headers, ":status"))
	switch {
	case status == 200:
		user := header(headers, a.config.UserHeader)
		if user == "" {
			user = strings.TrimSpace(string(body))
		}
		if !validUser(user) {
			proxywasm.LogErrorf("the auth service allowed the request but named no valid user: %q", user)
			a.fail("auth reply without a user")
			return
		}
		if err := proxywasm.ReplaceHttpRequestHeader(a.config.UserHeader, user); err != nil {
			proxywasm.LogErrorf("setting %s: %v", a.config.UserHeader, err)
			a.fail("setting the user header failed")
			return
		}
		proxywasm.LogDebugf("allowed user %q", user)
		if err := proxywasm.ResumeHttpRequest(); err != nil {
			proxywasm.LogErrorf("resuming the request: %v", err)
		}
	case status >= 500 || status < 100:
		proxywasm.LogWarnf("the auth service failed with status %d", status)
		a.fail("auth service error")
	default:
		proxywasm.LogDebugf("denied with status %d", status)
		var out [][2]string
		for _, k := range []string{"content-type", "www-authenticate"} {
			if v := header(headers, k); v != "" {
				out = append(out, [2]string{k, v})
			}
		}
		if err := proxywasm.SendHttpResponse(403, out, body, -1); err != nil {
			proxywasm.LogErrorf("sending the 403: %v", err)
		}
	}
}

// fail answers the paused request with status_on_error.
func (a *authzContext) fail(why string) {
	proxywasm.LogDebugf("answering %d: %s", a.config.StatusOnError, why)
	err := proxywasm.SendHttpResponse(a.config.StatusOnError,
		[][2]string{{"content-type", "text/plain"}}, []byte("auth service unavailable\n"), -1)
	if err != nil {
		proxywasm.LogErrorf("sending the %d: %v", a.config.StatusOnError, err)
	}
}

// header returns the first value of key in headers ("" when absent).
func header(headers [][2]string, key string) string {
	for _, h := range headers {
		if strings.EqualFold(h[0], key) {
			return h[1]
		}
	}
	return ""
}

// validUser accepts a non-empty printable header value of at most 256
// bytes.
func validUser(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
