package wasmtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/wasmtest"
)

func TestParseCaseFileErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown field", "cases:\n- name: a\n  request:\n    headers: {a: b}\n  expct: {}\n", `line 5: unknown field "expct"`},
		{"unknown nested field", "cases:\n- name: a\n  request:\n    headers: {a: b}\n    boddy: x\n", `line 5: unknown field "boddy"`},
		{"unknown field in a log expectation", "cases:\n- name: a\n  request:\n    headers: {a: b}\n  expect:\n    logs: [{levle: info}]\n", `unknown field "levle"`},
		{"no cases", "plugin: {name: x}\n", "no cases"},
		{"case without name", "cases:\n- request:\n    headers: {a: b}\n", "line 2: case 1 has no name"},
		{"duplicate name", "cases:\n- name: a\n  request: {headers: {a: b}}\n- name: a\n  request: {headers: {a: b}}\n", `line 4: case "a": the name is already used on line 2`},
		{"no request headers", "cases:\n- name: a\n  request: {body: x}\n", `case "a": request.headers is required`},
		{"body and chunks", "cases:\n- name: a\n  request: {headers: {a: b}, body: x, chunks: [y]}\n", "both body and chunks"},
		{"bad action", "cases:\n- name: a\n  request: {headers: {a: b}}\n  expect: {request_headers: stop}\n", `line 4: "stop" is not an action (want continue or pause)`},
		{"bad headers", "cases:\n- name: a\n  request: {headers: x}\n", "line 3: headers must be a mapping or a list of [key, value] pairs"},
		{"syntax", "cases: [\n", "did not find expected node content"},
		{"bad source address", "cases:\n- name: a\n  stream: {source: localhost}\n  request: {headers: {a: b}}\n", `line 2: case "a": stream.source: "localhost" is not ip:port`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := wasmtest.ParseCaseFile([]byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

const kitchensinkCases = `
plugin:
  name: ks
  vm_id: vm1
  clusters:
    auth: {status: 200, body: from-auth}
cases:
  - name: edits
    request:
      headers: [[":method", GET], [":path", /], ["x-test", edit-headers], ["x-remove", "1"]]
    response:
      headers: {":status": "200"}
    expect:
      request_headers: continue
      upstream:
        headers: {x-added: "yes", x-remove: null, ":path": /rewritten}
      client:
        status: 200
        headers: {x-plugin: kitchensink}
      metrics: {kitchensink_requests_total: 1, kitchensink_in_flight: 0}
  - name: body
    request:
      headers: {":path": /, x-test: body-upper}
      chunks: [abc, def]
    expect:
      request_body: [pause, continue]
      upstream: {body: ABCDEF}
  - name: shared data and ticks
    shared_data: {greeting: hello}
    ticks: 2
    request:
      headers: {":path": /p, x-test: shared}
    expect:
      upstream: {headers: {x-greeting: hello}}
      shared_data: {seen: /p}
      metrics: {kitchensink_ticks_total: 2}
      logs: [{level: debug, contains: tick 2}, kitchensink started]
  - name: callout
    request:
      headers: {":path": /, x-test: callout}
    expect:
      request_headers: pause
      http_calls: [{cluster: auth, headers: {":path": /check, x-user: alice}}]
      upstream: {headers: {x-auth: from-auth}}
  - name: properties
    stream: {source: "10.0.0.7:4321", route: r1}
    request:
      headers: {":path": /q, x-test: properties}
    expect:
      properties_read: [source.address, request.path, xds.route_name]
      upstream: {headers: {x-path: /q, x-plugin-name: ks, x-source: "10.0.0.7:4321", x-route-found: "true"}}
  - name: configuration override
    configuration: reject
    request:
      headers: {":path": /}
`

func TestRunCases(t *testing.T) {
	cf, err := wasmtest.ParseCaseFile([]byte(kitchensinkCases))
	if err != nil {
		t.Fatal(err)
	}
	wasm := kitchensink(t)
	for i, c := range cf.Cases {
		t.Run(c.Name, func(t *testing.T) {
			failures := wasmtest.Capture(func(tb wasmtest.TB) { cf.RunCase(tb, wasm, i) })
			if c.Name == "configuration override" {
				if len(failures) != 1 || !strings.Contains(failures[0], "proxy_on_configure returned false") {
					t.Errorf("want the load to fail, got %q", failures)
				}
				return
			}
			if len(failures) > 0 {
				t.Errorf("case failed:\n%s", strings.Join(failures, "\n"))
			}
		})
	}
}

// Unmet expectations are reported together, each naming its field, with
// the trace and logs once.
func TestCaseFailureMessages(t *testing.T) {
	cf, err := wasmtest.ParseCaseFile([]byte(`
cases:
  - name: wrong
    request:
      headers: {":path": /, x-test: local}
    expect:
      request_headers: continue
      local_response: {status: 403, body: nope}
      upstream: {headers: {x-a: b}}
      metrics: {missing_total: 1}
      shared_data: {k: v}
      http_calls: [{cluster: auth}]
      properties_read: [request.path]
      logs: [never logged]
  - name: trap
    request:
      headers: {":path": /, x-test: trap}
    expect:
      request_headers: continue
  - name: paused forever
    request:
      headers: {":path": /, x-test: pause-forever}
`))
	if err != nil {
		t.Fatal(err)
	}
	wasm := kitchensink(t)
	run := func(i int) string {
		return strings.Join(wasmtest.Capture(func(tb wasmtest.TB) { cf.RunCase(tb, wasm, i) }), "\n")
	}
	got := run(0)
	for _, want := range []string{
		"expect.request_headers: proxy_on_request_headers call 1: expected Continue, got Pause (StopAllIterationAndWatermark)",
		"expect.local_response.status: expected 403, got 418",
		`expect.local_response.body: expected "nope", got "short and stout"`,
		"expect.upstream: expected a message, but nothing reached it",
		"expect.metrics.missing_total: expected 1, but the plugin defined no such metric",
		`expect.shared_data.k: expected "v", but the key is not set`,
		"expect.http_calls: expected 1 calls, the plugin made 0",
		`expect.properties_read: the plugin did not read "request.path"`,
		`expect.logs: expected a log line containing "never logged", found none`,
		"what happened on the stream:",
		"plugin sent local response 418",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("failure lacks %q:\n%s", want, got)
		}
	}
	if got := run(1); !strings.Contains(got, "the plugin trapped in proxy_on_request_headers: panic: assignment to entry in nil map") {
		t.Errorf("trap case:\n%s", got)
	}
	if got := run(2); !strings.Contains(got, "the request was still paused when it completed: proxy_on_request_headers returned Pause and the plugin never resumed it") {
		t.Errorf("paused case:\n%s", got)
	}
}

func TestBenchCase(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmarks a case for about a second")
	}
	cf, err := wasmtest.ParseCaseFile([]byte(kitchensinkCases))
	if err != nil {
		t.Fatal(err)
	}
	r, err := cf.BenchCase(kitchensink(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.N == 0 || r.NsPerOp() <= 0 || r.AllocsPerOp() <= 0 {
		t.Errorf("benchmark result %+v", r)
	}
}

func TestReadCaseFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cases.yaml")
	os.WriteFile(path, []byte("cases:\n- name: a\n  request: {headers: {a: b}}\n  expect: {upstream: {header: {}}}\n"), 0o644)
	_, err := wasmtest.ReadCaseFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": line 4: unknown field \"header\"") {
		t.Errorf("error %v", err)
	}
}
