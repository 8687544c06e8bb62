package lua_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
	"github.com/wasmproxy/wasmproxy/filters/lua"
)

// streamScript uses the waiting parts of the stream API: bodyChunks()
// (each chunk upper-cased as it passes), trailers(), and httpCall() to
// a real cluster, synchronous (its answer lands in a header, or a 403)
// and asynchronous.
const streamScript = `
function envoy_on_request(handle)
  local h = handle:headers()
  local path = h:get(":path")
  if path == "/chunks" then
    local n = 0
    for chunk in handle:bodyChunks() do
      n = n + 1
      chunk:setBytes(string.upper(chunk:getBytes(0, chunk:length())))
    end
    handle:logInfo("chunks " .. n)
  elseif path == "/trailers" then
    local t = handle:trailers()
    if t ~= nil then
      t:replace("x-checksum", t:get("x-checksum") .. "-seen")
    end
  elseif path == "/call" or path == "/call-deny" then
    local who = "alice"
    if path == "/call-deny" then who = "mallory" end
    local rh, rb = handle:httpCall("auth", {[":method"] = "POST", [":path"] = "/check", [":authority"] = "auth", ["x-who"] = who}, "token", 30000)
    if rh[":status"] ~= "200" then
      handle:respond({[":status"] = "403", ["x-auth-status"] = rh[":status"]}, "denied by auth: " .. (rb or ""))
      return
    end
    h:add("x-auth", rb)
    local body = handle:body()
    if body ~= nil then h:add("x-body", body:getBytes(0, body:length())) end
  elseif path == "/async" then
    handle:httpCall("auth", {[":method"] = "GET", [":path"] = "/note", [":authority"] = "auth"}, nil, 30000, true)
    h:add("x-async", "sent")
  elseif path == "/async-forever" then
    handle:httpCall("auth", {[":method"] = "GET", [":path"] = "/forever", [":authority"] = "auth"}, nil, 0, true)
  elseif path == "/hang" then
    handle:httpCall("auth", {[":method"] = "GET", [":path"] = "/hang", [":authority"] = "auth"}, nil, 0)
  elseif path == "/spin-after-call" then
    handle:httpCall("auth", {[":method"] = "POST", [":path"] = "/check", [":authority"] = "auth", ["x-who"] = "alice"}, "token", 30000)
    h:add("x-auth", "lost")
    while true do end
  elseif path == "/timeout" then
    local rh, rb = handle:httpCall("auth", {[":method"] = "GET", [":path"] = "/slow", [":authority"] = "auth"}, nil, 20)
    handle:respond({[":status"] = "200", ["x-call-status"] = rh[":status"]}, "")
  elseif path == "/nocluster" then
    handle:httpCall("nowhere", {[":method"] = "GET", [":path"] = "/", [":authority"] = "x"}, nil, 1000)
  end
end

function envoy_on_response(handle)
  if handle:headers():get("x-up-trailers") ~= nil then
    local n = 0
    for c in handle:bodyChunks() do n = n + c:length() end
    local t = handle:trailers()
    if t ~= nil then t:add("x-lua-bytes", tostring(n)) end
  end
end
`

// TestStreamAPI: bodyChunks() passes each chunk on as it arrives (the
// upstream reads the first, edited, before the client sends the
// second), trailers() edits the request's and the response's trailers,
// httpCall() asks a real server in a cluster while the request (body
// included) is held, denies on its answer, fires and forgets, is
// cancelled when the client goes away, and names a missing cluster as
// a script error. A script that runs away after its call resumed is
// stopped by the budget; the held request goes on.
func TestStreamAPI(t *testing.T) {
	lua.SetBudget(500 * time.Millisecond)
	defer lua.SetBudget(time.Second)
	gotFirst := make(chan string, 1)
	noted := make(chan struct{}, 1)
	hangGone := make(chan struct{}, 1)
	hanging := make(chan struct{}, 1)
	foreverArrived := make(chan struct{})
	foreverGone := make(chan struct{}, 1)
	var checks atomic.Int32
	up := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/async-forever":
			// The stream ends only once its call has reached the server.
			<-foreverArrived
			io.WriteString(w, "answered")
		case "/chunks":
			first := make([]byte, 5)
			if _, err := io.ReadFull(r.Body, first); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			gotFirst <- string(first)
			rest, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s%s", first, rest)
		case "/trailers":
			io.ReadAll(r.Body)
			fmt.Fprintf(w, "checksum=%s", r.Trailer.Get("X-Checksum"))
		case "/resp-trailers":
			w.Header().Set("Trailer", "X-Up")
			w.Header().Set("X-Up-Trailers", "1")
			io.WriteString(w, "0123456789")
			w.(http.Flusher).Flush()
			io.WriteString(w, "abcde")
			w.Header().Set("X-Up", "done")
		default:
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "auth=%s body=%s async=%s", r.Header.Get("X-Auth"), b, r.Header.Get("X-Async"))
		}
	}))
	auth := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/check":
			checks.Add(1)
			b, _ := io.ReadAll(r.Body)
			if r.Header.Get("X-Who") != "alice" || string(b) != "token" {
				w.WriteHeader(401)
				io.WriteString(w, "who are you")
				return
			}
			io.WriteString(w, "ok:"+r.Header.Get("X-Who"))
		case "/note":
			noted <- struct{}{}
		case "/slow":
			<-r.Context().Done()
		case "/forever":
			close(foreverArrived)
			<-r.Context().Done()
			foreverGone <- struct{}{}
		case "/hang":
			hanging <- struct{}{}
			<-r.Context().Done()
			hangGone <- struct{}{}
		}
	}))
	p := inproc.Start(t, inproc.Config(`
              routes:
              - match: {prefix: "/"}
                route: {cluster: upstream}`, `
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code: {inline_string: "`+strings.ReplaceAll(strings.ReplaceAll(streamScript, `\`, `\\`), `"`, `\"`)+`"}`, inproc.Cluster("upstream", up), inproc.Cluster("auth", auth)))
	base := "http://" + p.Addr("main")
	client := &http.Client{Timeout: 60 * time.Second}
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(60 * time.Second):
			t.Fatalf("no %s", what)
		}
	}

	// bodyChunks: the first chunk reaches the upstream, upper-cased,
	// while the client still holds the rest.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", base+"/chunks", pr)
	type answer struct {
		body string
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- answer{string(b), err}
	}()
	io.WriteString(pw, "hello")
	select {
	case first := <-gotFirst:
		if first != "HELLO" {
			t.Errorf("/chunks: the upstream's first chunk is %q, want HELLO", first)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("/chunks: the first chunk never reached the upstream while the body was open")
	}
	io.WriteString(pw, " world")
	pw.Close()
	if a := <-done; a.err != nil || a.body != "HELLO WORLD" {
		t.Errorf("/chunks: %q %v, want HELLO WORLD", a.body, a.err)
	}

	// trailers() on the request.
	req, _ = http.NewRequest("POST", base+"/trailers", io.MultiReader(strings.NewReader("data")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Checksum": {"abc"}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "checksum=abc-seen" {
		t.Errorf("/trailers: %q, want checksum=abc-seen", b)
	}

	// bodyChunks() then trailers() on the response.
	resp, err = client.Get(base + "/resp-trailers")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "0123456789abcde" || resp.Trailer.Get("X-Up") != "done" || resp.Trailer.Get("X-Lua-Bytes") != "15" {
		t.Errorf("/resp-trailers: %q trailers %v", b, resp.Trailer)
	}

	// httpCall, synchronous: allowed (its answer in a header, the body
	// held meanwhile and read after), and denied.
	resp, err = client.Post(base+"/call", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "auth=ok:alice body=payload async=" {
		t.Errorf("/call: %d %q", resp.StatusCode, b)
	}
	resp, err = client.Get(base + "/call-deny")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || string(b) != "denied by auth: who are you" || resp.Header.Get("X-Auth-Status") != "401" {
		t.Errorf("/call-deny: %d %q %v", resp.StatusCode, b, resp.Header)
	}
	if n := checks.Load(); n != 2 {
		t.Errorf("the auth server saw %d checks, want 2", n)
	}

	// Asynchronous: the request goes on at once; the call still arrives.
	resp, err = client.Get(base + "/async")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "auth= body= async=sent" {
		t.Errorf("/async: %q", b)
	}
	wait("asynchronous call", noted)

	// Asynchronous without a timeout (timeout_ms 0, unbounded in Envoy):
	// the stream's end cancels it.
	resp, err = client.Get(base + "/async-forever")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "answered" {
		t.Errorf("/async-forever: %q", b)
	}
	wait("end of the unbounded asynchronous call with its stream", foreverGone)

	// The client leaves while the call waits: the call is cancelled.
	gone := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	hreq, _ := http.NewRequestWithContext(ctx, "GET", base+"/hang", nil)
	go func() {
		defer close(gone)
		resp, err := client.Do(hreq)
		if err == nil {
			resp.Body.Close()
		}
	}()
	wait("hanging call", hanging)
	cancel()
	wait("cancel of the call when the client left", hangGone)
	<-gone

	// A call past its timeout_ms answers the script 504 (the cluster
	// path's timeout answer, as Envoy's async client).
	resp, err = client.Get(base + "/timeout")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Call-Status") != "504" {
		t.Errorf("/timeout: %d x-call-status %q, want 504", resp.StatusCode, resp.Header.Get("X-Call-Status"))
	}

	// A runaway after the call: an error, and the request goes on with
	// the header the script added before the loop (Envoy keeps edits made
	// before an error).
	resp, err = client.Get(base + "/spin-after-call")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "auth=lost body= async=" {
		t.Errorf("/spin-after-call: %d %q", resp.StatusCode, b)
	}

	// A cluster that is not configured is a script error; the request goes on.
	resp, err = client.Get(base + "/nocluster")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/nocluster: %d, want 200", resp.StatusCode)
	}
	if n := p.Stat(t, "http.ingress_http.lua.errors"); n != 2 {
		t.Errorf("lua.errors = %d, want 2", n)
	}
	// Every script goroutine ended with its stream (after respond(), a
	// cancelled call, errors); none is left waiting.
	for deadline := time.Now().Add(60 * time.Second); lua.RunningScripts() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d script goroutines outlived their streams", lua.RunningScripts())
		}
	}
}
