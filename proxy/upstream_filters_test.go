package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// TestUpstreamFilterChainPerAttempt: an upstream filter that stops the
// request headers and continues from another goroutine (as a Wasm
// plugin's HTTP call reply does) holds the request until it continues;
// its request edit reaches the endpoint once per attempt (a retry makes
// a fresh chain from the request as the router had it), it sees every
// attempt's response, the router decides on a retry on the status it
// hands on (/rescue: a 503 it turns into 200 is not retried), its
// response edit reaches the downstream filter, and each attempt's
// filter ends (OnLog, OnDestroy).
func TestUpstreamFilterChainPerAttempt(t *testing.T) {
	var mu sync.Mutex
	var seen [][]string // x-upstream-filter values per request
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Values("X-Upstream-Filter"))
		n := len(seen)
		mu.Unlock()
		if r.URL.Path != "/plain" && n == 1 {
			if r.URL.Path == "/rescue" {
				w.Header().Set("X-Rescue", "1")
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "upstream got %q", b)
	})
	upHooks := &hooks{
		decodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
			h.Add("x-upstream-filter", "1")
			go cb.Continue(filter.Request)
			return filter.HeadersStopIteration
		},
		encodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
			if v, _ := h.Get("x-rescue"); v == "1" {
				h.Set(":status", "200") // the router decides on what the filters hand on
			}
			h.Set("x-upstream-filter-response", "1")
			return filter.HeadersContinue
		},
	}
	downHooks := &hooks{
		encodeHeaders: func(cb filter.Callbacks, h *filter.HeaderMap, end bool) filter.HeadersStatus {
			v, _ := h.Get("x-upstream-filter-response")
			h.Set("x-downstream-saw", v)
			return filter.HeadersContinue
		},
	}
	cl := staticCluster("web", up)
	cl.UpstreamHTTPFilters = []*config.HTTPFilter{{Name: "up-async"}}
	retry := prefixRoute("/retry", "web")
	retry.RetryPolicy = &config.RetryPolicy{RetryOn: []string{"5xx"}, NumRetries: 2, BackoffBase: config.Duration(time.Millisecond), BackoffMax: config.Duration(10 * time.Millisecond)}
	rescue := prefixRoute("/rescue", "web")
	rescue.RetryPolicy = retry.RetryPolicy
	f := start(t, []*config.Route{retry, rescue, prefixRoute("/", "web")}, []string{"down"}, loader{"up-async": upHooks, "down": downHooks}, cl)

	tests := []struct {
		path         string
		wantRequests int
		wantBody     string
	}{
		{"/plain", 1, `upstream got "some body"`},
		{"/retry", 2, `upstream got "some body"`},
		{"/rescue", 1, ""}, // the 503's empty body, as a 200
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.path, "/"), func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			before := len(upHooks.events())
			req, _ := http.NewRequest("POST", "http://"+f.addr+tt.path, strings.NewReader("some body"))
			resp, body := do(t, req)
			if resp.StatusCode != 200 || body != tt.wantBody {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Downstream-Saw"); got != "1" {
				t.Errorf("the downstream filter saw x-upstream-filter-response %q, want \"1\"", got)
			}
			mu.Lock()
			got := fmt.Sprint(seen)
			mu.Unlock()
			want := strings.TrimSuffix(strings.Repeat("[1] ", tt.wantRequests), " ")
			if got != "["+want+"]" {
				t.Errorf("endpoint saw x-upstream-filter per request %s, want [%s]", got, want)
			}
			// Each attempt's filter ends; the last one with the stream,
			// which may be just after the client got the response.
			deadline := time.Now().Add(30 * time.Second)
			for {
				ev := upHooks.events()[before:]
				count := func(name string) (n int) {
					for _, e := range ev {
						if e == name {
							n++
						}
					}
					return n
				}
				n := tt.wantRequests
				if count("decodeHeaders") == n && count("encodeHeaders") == n && count("log") == n && count("destroy") == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("upstream filter events %q, want %d of decodeHeaders, encodeHeaders, log and destroy", ev, tt.wantRequests)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
