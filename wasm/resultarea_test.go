package wasm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
)

// TestResultAreaSkipsAllocator: with a plugin on our Go SDK, which
// offers the host memory for its next result (wasmproxy_result_area),
// the host copies header values and bodies there instead of calling
// proxy_on_memory_allocate, one guest entry less per result, and the
// plugin reads them right: bench/jsoncmp/noop reads the request's
// content-type and body and pauses the request if either is missing.
// A result that does not fit the offer (a body larger than the SDK's
// chunked results) still goes through the allocator.
func TestResultAreaSkipsAllocator(t *testing.T) {
	file := filepath.Join(testDir, "sdk-noop.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", file, ".")
	cmd.Dir = filepath.Join("..", "bench", "jsoncmp", "noop")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building bench/jsoncmp/noop: %v\n%s", err, out)
	}
	h := newTestHost(t, 1)
	p := h.load(t, &config.WasmPlugin{Name: "sdknoop", CodeFile: file})
	inst := p.currentInstances()[0]
	request := func(body string) (filter.HeadersStatus, filter.DataStatus) {
		s := newStream(p)
		hs := s.decodeHeaders(false, ":method", "POST", ":path", "/", "content-type", "application/json")
		ds := s.DecodeData(&filter.Buffer{Bytes: []byte(body)}, true)
		s.encodeHeaders(true, ":status", "200")
		s.finish()
		return hs, ds
	}
	// The first result comes before the SDK has memory to offer.
	request(`{"id": "x"}`)
	before := inst.allocCalls
	for range 200 {
		if hs, ds := request(`{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`); hs != filter.HeadersContinue || ds != filter.DataContinue {
			t.Fatalf("the plugin did not find its header and body: %v, %v", hs, ds)
		}
	}
	if inst.area == 0 {
		t.Fatal("the host did not find the SDK's result area")
	}
	// 400 results of 16 and 52 bytes: one allocator call per 2 KiB
	// chunk the SDK needs for them, about 14, instead of 400.
	if n := inst.allocCalls - before; n > 20 {
		t.Errorf("200 requests called proxy_on_memory_allocate %d times, want at most 20", n)
	}
	big := make([]byte, 4096)
	for i := range big {
		big[i] = 'a'
	}
	before = inst.allocCalls
	if _, ds := request(string(big)); ds != filter.DataContinue {
		t.Fatalf("a 4 KiB body: %v", ds)
	}
	if inst.allocCalls == before {
		t.Error("a 4 KiB body did not go through the allocator")
	}
}
