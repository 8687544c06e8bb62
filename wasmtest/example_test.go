package wasmtest_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/wasmproxy/wasmproxy/wasmtest"
)

// In a plugin's own folder a test reads:
//
//	func TestPlugin(t *testing.T) {
//		p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`...`))
//		...
//	}
//
// The examples below run outside a Go test, so they get their TB from
// Capture and print what a test would assert.

// The seed's JSON-validation plugin, compiled to Wasm and run on the real
// host: a request without a content type is answered locally.
func Example() {
	failures := wasmtest.Capture(func(t wasmtest.TB) {
		p := wasmtest.Load(t, wasmtest.Build(t, "../examples/json-validation"),
			wasmtest.PluginConfig(`{"requiredKeys": ["id", "token"]}`))
		s := p.NewHTTPStream()
		r := s.SendRequestHeaders(wasmtest.Request("POST", "/"), true)
		fmt.Println(r.Callback, r.Action)
		reply := s.LocalResponse()
		fmt.Println(reply.Status, string(reply.Body))
		s.Complete()
	})
	fmt.Println("failures:", len(failures))
	// Output:
	// proxy_on_request_headers Pause
	// 403 content-type must be provided
	// failures: 0
}

// A body callback that pauses buffers: the next call sees everything
// received so far, and the upstream gets the body once the plugin
// continues.
func ExampleHTTPStream_SendRequestBody() {
	wasmtest.Capture(func(t wasmtest.TB) {
		p := wasmtest.Load(t, wasmtest.Build(t, "../examples/json-validation"),
			wasmtest.PluginConfig(`{"requiredKeys": ["id"]}`))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("POST", "/", "content-type", "application/json"), false)
		fmt.Println(s.SendRequestBody([]byte(`{"id":`), false).Action)
		fmt.Println(s.SendRequestBody([]byte(` 7}`), true).Action)
		fmt.Println(string(s.Upstream().Body))
		s.Complete()
	})
	// Output:
	// Pause
	// Continue
	// {"id": 7}
}

// What reached the client after the plugin's response callback.
func ExampleHTTPStream_Client() {
	wasmtest.Capture(func(t wasmtest.TB) {
		p := wasmtest.Load(t, wasmtest.Build(t, "../examples/add-header"))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("GET", "/"), true)
		s.SendResponseHeaders(wasmtest.Response(200), true)
		v, _ := s.Client().Headers.Get("resp-header-demo")
		fmt.Println(v)
		s.Complete()
	})
	// Output: added by our filter
}

// The test answers the plugin's HTTP calls (testdata/kitchensink asks
// cluster "auth" before letting a request through).
func ExamplePlugin_NextHTTPCall() {
	wasmtest.Capture(func(t wasmtest.TB) {
		p := wasmtest.Load(t, wasmtest.Build(t, "testdata/kitchensink"), wasmtest.Cluster("auth", nil))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("GET", "/", "x-test", "callout"), true)
		call := p.NextHTTPCall()
		fmt.Println(call)
		fmt.Println("paused:", s.RequestPaused())
		call.Respond(200, nil, []byte("alice"))
		fmt.Println("paused:", s.RequestPaused())
		v, _ := s.Upstream().Headers.Get("x-auth")
		fmt.Println("x-auth:", v)
		s.Complete()
	})
	// Output:
	// GET /check on cluster "auth"
	// paused: true
	// paused: false
	// x-auth: alice
}

// A gRPC service the plugin calls, served by the test: here
// grpc.health.v1.Health/Check answering SERVING.
func ExampleGrpcCluster() {
	wasmtest.Capture(func(t wasmtest.TB) {
		health := wasmtest.GrpcCluster("grpc", func(call *wasmtest.GrpcCall) {
			req, _ := call.Recv()
			fmt.Printf("%s: request %x\n", call, req)
			call.Send([]byte{0x08, 0x01}) // HealthCheckResponse{status: SERVING}
		})
		p := wasmtest.Load(t, wasmtest.Build(t, "../e2e/testdata/grpcsdk"), health)
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("GET", "/call/db"), true)
		s.AwaitResumed(true)
		v, _ := s.Upstream().Headers.Get("x-grpc-result")
		fmt.Println("x-grpc-result:", v)
		s.Complete()
	})
	// Output:
	// /grpc.health.v1.Health/Check on cluster "grpc": request 0a026462
	// x-grpc-result: OK SERVING
}

// Time moves only when the test says so.
func ExamplePlugin_Advance() {
	wasmtest.Capture(func(t wasmtest.TB) {
		p := wasmtest.Load(t, wasmtest.Build(t, "testdata/kitchensink"))
		fmt.Println("period:", p.TickPeriod())
		fmt.Println("ticks:", p.Advance(3500*time.Millisecond))
		n, _ := p.Metric("kitchensink_ticks_total")
		fmt.Println("counter:", n)
	})
	// Output:
	// period: 1s
	// ticks: 3
	// counter: 3
}

// A network filter on a TCP connection.
func ExampleTCPStream() {
	wasmtest.Capture(func(t wasmtest.TB) {
		p := wasmtest.Load(t, wasmtest.Build(t, "testdata/kitchensink"), wasmtest.PluginConfig("tcp"))
		c := p.NewTCPStream()
		c.Connect()
		fmt.Println(c.SendDownstream([]byte("ping"), false).Action)
		fmt.Println(c.SendDownstream([]byte("\n"), false).Action)
		up, _ := c.Upstream()
		fmt.Printf("%q\n", up)
		c.SendUpstream([]byte("pong\n"), true)
		down, _ := c.Client()
		fmt.Printf("%q\n", down)
		c.Close()
	})
	// Output:
	// Pause
	// Continue
	// "> ping\n"
	// "PONG\n"
}

// Failures say what was expected, what the plugin did and what it logged.
func ExampleCapture() {
	failures := wasmtest.Capture(func(t wasmtest.TB) {
		p := wasmtest.Load(t, wasmtest.Build(t, "../examples/json-validation"))
		s := p.NewHTTPStream()
		s.SendRequestHeaders(wasmtest.Request("POST", "/"), true).ExpectContinue()
	})
	fmt.Println(strings.SplitN(failures[0], "\n", 2)[0])
	// Output: wasmtest: plugin json-validation, stream 1: proxy_on_request_headers: expected Continue, got Pause (StopAllIterationAndWatermark)
}

// Declarative cases, as `wasmproxy plugin test` runs them.
func ExampleCaseFile_RunCase() {
	cf, err := wasmtest.ParseCaseFile([]byte(`
plugin:
  configuration: {requiredKeys: [id]}
cases:
  - name: valid
    request:
      headers: {":method": POST, ":path": /, content-type: application/json}
      body: '{"id": 1}'
    expect:
      request_body: continue
      upstream: {body: '{"id": 1}'}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	wasm := ""
	wasmtest.Capture(func(t wasmtest.TB) { wasm = wasmtest.Build(t, "../examples/json-validation") })
	failures := wasmtest.Capture(func(t wasmtest.TB) { cf.RunCase(t, wasm, 0) })
	fmt.Println(cf.Cases[0].Name, "failures:", len(failures))
	// Output: valid failures: 0
}
