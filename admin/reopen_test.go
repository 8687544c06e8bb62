package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/stats"
)

// reopenProvider is the test provider plus a LogReopener that counts.
type reopenProvider struct {
	*testProvider
	reopens atomic.Int32
}

func (p *reopenProvider) ReopenLogs() { p.reopens.Add(1) }

// TestReopenLogs: POST /reopen_logs reaches the provider's ReopenLogs and
// answers "OK" as Envoy does; GET is refused and reopens nothing; a
// provider without log files has no such endpoint.
func TestReopenLogs(t *testing.T) {
	p := &reopenProvider{testProvider: newTestProvider()}
	srv := httptest.NewServer(New(p, stats.New(), logging.NewRegistry(io.Discard, logging.LevelInfo)).Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/reopen_logs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || p.reopens.Load() != 0 {
		t.Errorf("GET: %d, %d reopens; want 405 and none", resp.StatusCode, p.reopens.Load())
	}
	resp, err = http.Post(srv.URL+"/reopen_logs", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "OK\n" || p.reopens.Load() != 1 {
		t.Errorf("POST: %d %q, %d reopens; want 200 \"OK\\n\" and one", resp.StatusCode, body, p.reopens.Load())
	}
	resp, err = http.Get(srv.URL + "/help")
	if err != nil {
		t.Fatal(err)
	}
	help, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(help), "/reopen_logs") {
		t.Errorf("/help does not list /reopen_logs:\n%s", help)
	}

	plain := httptest.NewServer(New(newTestProvider(), stats.New(), logging.NewRegistry(io.Discard, logging.LevelInfo)).Handler())
	defer plain.Close()
	resp, err = http.Post(plain.URL+"/reopen_logs", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without a LogReopener: %d, want 404", resp.StatusCode)
	}
}
