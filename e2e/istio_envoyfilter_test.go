package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// istioExample lays out examples/istio in a work dir: the bootstrap and
// the EnvoyFilters with every port (listeners and the patches'
// portNumber alike) moved to a free one, and the three plugins built
// from their examples under the file names the EnvoyFilters give.
type istioExample struct {
	dir, gateway, inboundHTTP, inboundTCP, admin string
}

func setupIstioExample(t *testing.T, echoPort int) *istioExample {
	t.Helper()
	dir := t.TempDir()
	ports := map[string]int{"18000": freePort(t), "8080": freePort(t), "8083": freePort(t), "8099": freePort(t), "8001": freePort(t), "9000": echoPort}
	rewrite := func(s string) string {
		for old, p := range ports {
			s = strings.ReplaceAll(s, "port_value: "+old+" ", fmt.Sprintf("port_value: %d ", p))
			s = strings.ReplaceAll(s, "port_value: "+old+"\n", fmt.Sprintf("port_value: %d\n", p))
			s = strings.ReplaceAll(s, "portNumber: "+old+"\n", fmt.Sprintf("portNumber: %d\n", p))
		}
		return strings.ReplaceAll(s, "address: 0.0.0.0", "address: 127.0.0.1")
	}
	src := filepath.Join(repoRoot, "examples", "istio")
	copyRewritten := func(rel string) {
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(rewrite(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyRewritten("envoy.yaml")
	copyRewritten("resources/json-validation.yaml")
	copyRewritten("resources/frontpage.yaml")
	for name, example := range map[string]string{"json-validation.wasm": "examples/json-validation", "add-header.wasm": "examples/add-header", "tcp-prepend.wasm": "examples/tcp-prepend"} {
		b, err := os.ReadFile(plugin(t, example))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addr := func(k string) string { return fmt.Sprintf("127.0.0.1:%d", ports[k]) }
	return &istioExample{dir: dir, gateway: addr("18000"), inboundHTTP: addr("8080"), inboundTCP: addr("8083"), admin: addr("8001")}
}

// TestIstioEnvoyFilterSeeds (issue 18) runs the real binary on
// examples/istio: the seeds' EnvoyFilters, applied to a bootstrap that
// has none of their filters, give the gateway the first seed's
// transcripts, the inbound HTTP listener the second seed's
// resp-header-demo and the inbound TCP listener its prepended payload;
// listeners the patches do not match are left alone.
func TestIstioEnvoyFilterSeeds(t *testing.T) {
	echo := tcpService(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
	ex := setupIstioExample(t, echo)
	in := run(t, ex.dir, ex.gateway, ex.admin, "-c", "envoy.yaml", "--istio-resources", "resources", "--istio-version", "1.5.2")

	for _, x := range seedTranscript {
		t.Run("gateway/"+x.name, func(t *testing.T) {
			var body io.Reader
			if x.body != "" {
				body = strings.NewReader(x.body)
			}
			resp, got := post(t, http.DefaultClient, "http://"+ex.gateway+"/post", x.contentType, body)
			checkExchange(t, x, resp, got)
			if resp.Header.Get("Resp-Header-Demo") != "" {
				t.Errorf("the gateway got the inbound listener's filter")
			}
		})
	}
	t.Run("inbound HTTP 8080", func(t *testing.T) {
		resp, err := http.Get("http://" + ex.inboundHTTP + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello from the server\n" {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
		if got := resp.Header.Get("Resp-Header-Demo"); got != "added by our filter" {
			t.Fatalf("resp-header-demo %q, want %q", got, "added by our filter")
		}
	})
	t.Run("inbound TCP 8083", func(t *testing.T) {
		c, err := net.Dial("tcp", ex.inboundTCP)
		if err != nil {
			t.Fatal(err)
		}
		got, err := roundTrip(t, c, "hello")
		if want := "prepend payload to downstream datahello"; err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	})
	t.Run("config_dump shows the patched config", func(t *testing.T) {
		_, dump := get(t, "http://"+ex.admin+"/config_dump")
		for _, want := range []string{"json-validation", "example-filter", "./tcp-prepend.wasm", "./add-header.wasm"} {
			if !strings.Contains(dump, want) {
				t.Errorf("/config_dump lacks %q", want)
			}
		}
	})
	logs := in.Logs()
	for _, want := range []string{"EnvoyFilter patch applied", "istio-system/json-validation", "backyards-demo/frontpage-v1-examplefilter-tcp"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// TestIstioEnvoyFilterProxyVersion: with the default --istio-version the
// second seed's patches (proxyVersion ^1\.5.*) match nothing, as they
// would on a current Istio; each is logged once with its name and why,
// and the inbound listeners run without the filters.
func TestIstioEnvoyFilterProxyVersion(t *testing.T) {
	echo := tcpService(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
	ex := setupIstioExample(t, echo)
	in := run(t, ex.dir, ex.gateway, ex.admin, "-c", "envoy.yaml", "--istio-resources", "resources")
	resp, err := http.Get("http://" + ex.inboundHTTP + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Resp-Header-Demo") != "" {
		t.Errorf("the HTTP patch applied though its proxyVersion does not match")
	}
	c, err := net.Dial("tcp", ex.inboundTCP)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(t, c, "hello"); err != nil || got != "hello" {
		t.Errorf("TCP: got %q, %v; want the echo alone", got, err)
	}
	logs := in.Logs()
	for _, name := range []string{"backyards-demo/frontpage-v1-examplefilter ", "backyards-demo/frontpage-v1-examplefilter-tcp"} {
		found := 0
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "EnvoyFilter patch matched nothing") && strings.Contains(line, strings.TrimSpace(name)) &&
				strings.Contains(line, "proxyVersion") && (strings.HasSuffix(name, "tcp") == strings.Contains(line, "-tcp")) {
				found++
			}
		}
		if found != 1 {
			t.Errorf("%d log lines say %s matched nothing because of its proxyVersion, want 1:\n%s", found, name, logs)
		}
	}
}

// TestIstioEnvoyFilterBadPatch: a patch value with an unknown field is
// refused at start-up with the file, the resource, the patch index and
// the field, and the process exits without a panic.
func TestIstioEnvoyFilterBadPatch(t *testing.T) {
	ex := setupIstioExample(t, freePort(t))
	f := filepath.Join(ex.dir, "resources", "json-validation.yaml")
	b, _ := os.ReadFile(f)
	bad := strings.Replace(string(b), "        name: json-validation\n", "        name: json-validation\n        no_such_field: 1\n", 1)
	if bad == string(b) {
		t.Fatal("could not edit the resource")
	}
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	in := start(t, ex.dir, "-c", "envoy.yaml", "--istio-resources", "resources")
	if code := in.wait(60 * time.Second); code == 0 {
		t.Fatalf("exit code 0 with a bad patch:\n%s", in.Logs())
	}
	logs := in.Logs()
	for _, want := range []string{"json-validation.yaml", "EnvoyFilter istio-system/json-validation", "spec.configPatches[0].patch.value", "no_such_field"} {
		if !strings.Contains(logs, want) {
			t.Errorf("error lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "panic") || strings.Contains(logs, "goroutine ") {
		t.Errorf("panicked:\n%s", logs)
	}
}

// TestIstioEnvoyFilterReload: EnvoyFilters go through the one reload
// pipeline. Removing the TCP patch from the resources and reloading
// takes the filter out of the inbound TCP listener; a patch that breaks
// the resource is refused on reload with its name, patch index and
// field, and the running configuration keeps serving.
func TestIstioEnvoyFilterReload(t *testing.T) {
	echo := tcpService(t, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
	ex := setupIstioExample(t, echo)
	in := run(t, ex.dir, ex.gateway, ex.admin, "-c", "envoy.yaml", "--istio-resources", "resources", "--istio-version", "1.5.2", "--reload-poll-interval", "0")
	tcp := func() string {
		c, err := net.Dial("tcp", ex.inboundTCP)
		if err != nil {
			t.Fatal(err)
		}
		got, err := roundTrip(t, c, "hello")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	reload := func() (int, reloadStatus) {
		var st reloadStatus
		code := adminJSON(t, "POST", "http://"+ex.admin+"/reload", &st)
		return code, st
	}
	if got := tcp(); got != "prepend payload to downstream datahello" {
		t.Fatalf("before: %q", got)
	}
	f := filepath.Join(ex.dir, "resources", "frontpage.yaml")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	httpOnly, _, ok := strings.Cut(string(b), "\n---\n")
	if !ok {
		t.Fatal("frontpage.yaml has no second document")
	}
	if err := os.WriteFile(f, []byte(httpOnly), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, st := reload(); code != 200 {
		t.Fatalf("reload: %d %+v\n%s", code, st, in.Logs())
	}
	if got := tcp(); got != "hello" {
		t.Fatalf("after removing the TCP patch: %q", got)
	}

	bad := strings.Replace(httpOnly, "operation: INSERT_BEFORE", "operation: INSERT_BEFORE\n      no_such_field: 1", 1)
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, st := reload()
	if code != 500 || !strings.Contains(st.LastError, "frontpage.yaml") || !strings.Contains(st.LastError, "backyards-demo/frontpage-v1-examplefilter") ||
		!strings.Contains(st.LastError, "spec.configPatches[0]") || !strings.Contains(st.LastError, "no_such_field") {
		t.Fatalf("bad reload: %d %+v", code, st)
	}
	resp, err := http.Get("http://" + ex.inboundHTTP + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Resp-Header-Demo") != "added by our filter" {
		t.Errorf("after the bad reload the HTTP patch no longer serves")
	}
	if got := tcp(); got != "hello" {
		t.Errorf("after the bad reload: %q", got)
	}
}
