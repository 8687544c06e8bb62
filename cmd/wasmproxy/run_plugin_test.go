package main

import (
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
)

func TestPluginBootstrap(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		pf := &pluginRunFlags{upstream: "http://localhost:8080", listen: ":10001", admin: "127.0.0.1:9902", config: `{"a": "b c"}`}
		text, err := pluginBootstrap(pf, "/plugins/demo.wasm")
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse([]byte(text), "generated")
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if cfg.Admin == nil || cfg.Admin.Address != "127.0.0.1:9902" {
			t.Errorf("admin %+v", cfg.Admin)
		}
		if len(cfg.Clusters) != 1 || cfg.Clusters[0].Type != config.ClusterStrictDNS || cfg.Clusters[0].Endpoints[0].Address != "localhost:8080" {
			t.Errorf("cluster %+v", cfg.Clusters[0])
		}
		for _, want := range []string{`name: "demo"`, `filename: "/plugins/demo.wasm"`, `value: "{\"a\": \"b c\"}"`, "address: \"0.0.0.0\", port_value: 10001"} {
			if !strings.Contains(text, want) {
				t.Errorf("config lacks %q:\n%s", want, text)
			}
		}
	})
	errs := []struct {
		name string
		pf   pluginRunFlags
		want string
	}{
		{"no upstream", pluginRunFlags{listen: ":1"}, "--upstream URL is required"},
		{"https upstream", pluginRunFlags{upstream: "https://example.com", listen: ":1"}, "only http:// upstreams"},
		{"upstream path", pluginRunFlags{upstream: "http://example.com/api", listen: ":1"}, "a path or query is not supported"},
		{"upstream without host", pluginRunFlags{upstream: "example.com:80", listen: ":1"}, "want http://HOST:PORT"},
		{"bad listen", pluginRunFlags{upstream: "http://a:1", listen: "10000"}, `--listen "10000": want HOST:PORT`},
		{"bad admin port", pluginRunFlags{upstream: "http://a:1", listen: ":1", admin: "x:http"}, `--admin "x:http": bad port`},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pluginBootstrap(&tc.pf, "/p.wasm")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRunPluginFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--plugin", "x.wasm", "-c", "envoy.yaml", "--upstream", "http://a:1"}, "--plugin and -c are exclusive"},
		{[]string{"run", "--plugin", "/nonexistent/x.wasm", "--upstream", "http://a:1"}, "no such file or directory (build it with `wasmproxy plugin build`"},
		{[]string{"run", "--plugin", "/nonexistent/x.wasm", "--upstream", "http://a:1", "--watch"}, "run --watch: no Go plugin sources (go.mod, *.go) in /nonexistent"},
		{[]string{"run", "--plugin", "/nonexistent/x.wasm", "--upstream", "http://a:1", "--watch", "--admin", ""}, `run --watch: --admin "" turns off the admin server, where --watch reports each rebuild`},
	}
	for _, tc := range tests {
		_, stderr, code := runCLI(t, tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
