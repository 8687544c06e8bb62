// Package wasmtest runs a compiled Proxy-Wasm plugin (.wasm) from go test
// on wasmproxy's real host: the same wazero runtime, ABI implementation
// and Envoy semantics the proxy uses, with nothing emulated on the plugin
// side. Tests catch what only breaks in Wasm (a missing import, a trap,
// the Go runtime under wasip1, Envoy's pause/buffer rules) before the
// plugin is deployed.
//
// The test plays the proxy around one filter: it creates HTTP streams,
// sends request and response headers, body chunks and trailers, and
// looks at what the plugin did with each of them — whether it continued
// or paused, what reached the upstream and the client (header and body
// edits), local responses, logs, metrics, properties it read, ticks,
// shared data, and the HTTP calls it made, which the test answers.
//
// A minimal test of a plugin in the current folder:
//
//	func TestPlugin(t *testing.T) {
//		p := wasmtest.Load(t, wasmtest.Build(t, "."), wasmtest.PluginConfig(`{"header": "x-demo"}`))
//		s := p.NewHTTPStream()
//		s.SendRequestHeaders(wasmtest.Request("GET", "/"), true).ExpectContinue()
//		s.SendResponseHeaders(wasmtest.Response(200), true).ExpectContinue()
//		s.ExpectClientHeader("x-demo", "added")
//		s.Complete()
//	}
//
// Stream semantics follow the proxy's filter chain (Envoy's): a paused
// request keeps its body at the filter ("Pause" from a body callback
// buffers, so the next call sees everything received so far); a pause
// from a headers callback holds the body before the filter until the
// plugin resumes; a local response runs back through the plugin's
// response callbacks; over the buffer limit the request fails with 413.
//
// The Expect methods of a Result (ExpectContinue, ExpectPause) stop the
// test, since the rest of the exchange would not make sense; the other
// Expect methods record the failure and let the test go on.
//
// Every call into the plugin is bounded by a timeout (Timeout; 10s by
// default): a callback that never returns fails the test naming the
// callback instead of hanging it. A stream the plugin leaves paused fails
// the test when it is completed (or when the test ends) with the callback
// that paused it. Failure messages show what was expected, what the
// plugin did on that stream, and its most recent log lines.
package wasmtest
