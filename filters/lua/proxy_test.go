package lua_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
	"github.com/wasmproxy/wasmproxy/filters/lua"
)

// script is the filter's default source: the API calls the Envoy
// examples make.
const script = `
function envoy_on_request(handle)
  local h = handle:headers()
  local path = h:get(":path")
  if path == "/deny" then
    handle:respond({[":status"] = "403", ["x-lua"] = "denied"}, "no entry")
    return
  end
  if path == "/error" then
    error("boom")
  end
  if path == "/spin" then
    while true do end
  end
  if path == "/body" then
    local body = handle:body()
    local text = body:getBytes(0, body:length())
    body:setBytes(string.upper(text))
    h:add("x-body-length", tostring(body:length()))
  end
  h:replace("x-from-lua", "yes")
  h:remove("x-secret")
  handle:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "path", path)
  handle:logInfo("saw " .. path)
end

function envoy_on_response(handle)
  local md = handle:streamInfo():dynamicMetadata():get("envoy.filters.http.lua")
  if md ~= nil then
    handle:headers():add("x-lua-path", md["path"])
  end
  local team = handle:metadata():get("team")
  if team ~= nil then
    handle:headers():add("x-team", team)
  end
  handle:headers():add("x-protocol", handle:streamInfo():protocol())
end
`

// TestProxy runs Lua scripts in the library proxy over real sockets:
// headers read and edited both ways, respond() from the request, the
// request body read and replaced, dynamic metadata written on the
// request and read on the response, route metadata, logs, a route with
// its own script and one with the filter disabled; a script error and a
// runaway loop are counted and the stream goes on (Envoy's rule), and
// the proxy keeps serving.
func TestProxy(t *testing.T) {
	lua.SetBudget(200 * time.Millisecond)
	defer lua.SetBudget(time.Second)
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "from-lua=%s secret=%s length=%s body=%s", r.Header.Get("X-From-Lua"), r.Header.Get("X-Secret"), r.Header.Get("X-Body-Length"), b)
	}))
	q := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) }
	logs := &inproc.Logs{}
	p := inproc.StartLogged(t, inproc.Config(`
              routes:
              - match: {prefix: "/named"}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.lua:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute
                    name: other
              - match: {prefix: "/off"}
                route: {cluster: upstream}
                typed_per_filter_config:
                  envoy.filters.http.lua:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute
                    disabled: true
              - match: {prefix: "/"}
                route: {cluster: upstream}
                metadata: {filter_metadata: {envoy.filters.http.lua: {team: edge}}}`, `
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code: {inline_string: "`+q(script)+`"}
              source_codes:
                other: {inline_string: "function envoy_on_request(h) h:headers():add('x-from-lua', 'other') end"}`, inproc.Cluster("upstream", up)), logs)
	base := "http://" + p.Addr("main")
	client := &http.Client{Timeout: 60 * time.Second}
	do := func(method, path, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for i := 0; i < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	resp, body := do("GET", "/hello", "", "X-Secret", "s3")
	if resp.StatusCode != 200 || body != "from-lua=yes secret= length= body=" {
		t.Errorf("/hello: %d %q", resp.StatusCode, body)
	}
	for k, v := range map[string]string{"X-Lua-Path": "/hello", "X-Team": "edge", "X-Protocol": "HTTP/1.1"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("/hello: %s = %q, want %q", k, got, v)
		}
	}
	if resp, body = do("GET", "/deny", ""); resp.StatusCode != 403 || body != "no entry" || resp.Header.Get("X-Lua") != "denied" {
		t.Errorf("/deny: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, body = do("POST", "/body", "make me loud"); resp.StatusCode != 200 || body != "from-lua=yes secret= length=12 body=MAKE ME LOUD" {
		t.Errorf("/body: %d %q", resp.StatusCode, body)
	}
	if resp, body = do("GET", "/named", ""); resp.StatusCode != 200 || body != "from-lua=other secret= length= body=" || resp.Header.Get("X-Lua-Path") != "" {
		t.Errorf("/named: %d %q", resp.StatusCode, body)
	}
	if resp, body = do("GET", "/off", "", "X-Secret", "kept"); resp.StatusCode != 200 || body != "from-lua= secret=kept length= body=" {
		t.Errorf("/off: %d %q", resp.StatusCode, body)
	}
	// Errors: the stream goes on without the script's later effects.
	for _, path := range []string{"/error", "/spin"} {
		if resp, body = do("GET", path, ""); resp.StatusCode != 200 || body != "from-lua= secret= length= body=" {
			t.Errorf("%s: %d %q, want 200 untouched", path, resp.StatusCode, body)
		}
	}
	// The proxy still serves, with a fresh state where one broke.
	if resp, body = do("GET", "/again", ""); resp.StatusCode != 200 || body != "from-lua=yes secret= length= body=" {
		t.Errorf("/again: %d %q", resp.StatusCode, body)
	}

	// Concurrent streams each hold their own pooled state.
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				path := fmt.Sprintf("/c/%d/%d", w, i)
				req, _ := http.NewRequest("POST", base+"/body", strings.NewReader(path))
				resp, err := client.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("from-lua=yes secret= length=%d body=%s", len(path), strings.ToUpper(path)); string(b) != want {
					errs <- fmt.Sprintf("%q, want %q", b, want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	rec := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
	// executions: one per entry point run: two each for the 40
	// concurrent requests, /hello, /deny
	// (its local reply runs envoy_on_response too), /body, /error,
	// /spin and /again; one for /named (its script has no
	// envoy_on_response); none for /off.
	for _, want := range []string{"http.ingress_http.lua.errors: 2", "http.ingress_http.lua.executions: 93"} {
		if !strings.Contains(rec.Body.String(), want+"\n") {
			t.Errorf("/stats lacks %q:\n%s", want, grep(rec.Body.String(), "lua"))
		}
	}
	for _, want := range []string{"script log: saw /hello", "boom", "context deadline exceeded"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
