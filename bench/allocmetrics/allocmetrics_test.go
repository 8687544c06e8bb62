package allocmetrics

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

var sink *[64]byte

// get fetches the samples over a real loopback connection.
func get(t *testing.T, url string) map[string]uint64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := map[string]uint64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("line %q: want NAME VALUE", sc.Text())
		}
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got[name] = n
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return got
}

func TestServesGrowingAllocationCounts(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	url := "http://" + ln.Addr().String() + "/"

	before := get(t, url)
	for _, n := range Names {
		if _, ok := before[n]; !ok {
			t.Fatalf("sample %s missing from %v", n, before)
		}
	}
	const allocs = 100000
	for range allocs {
		sink = new([64]byte)
	}
	after := get(t, url)
	// Counts are flushed per span, so a few hundred may still sit in a
	// cache; most of the 100000 must show.
	if d := after["/gc/heap/allocs:objects"] - before["/gc/heap/allocs:objects"]; d < allocs/2 {
		t.Errorf("/gc/heap/allocs:objects grew by %d after %d allocations, want at least %d", d, allocs, allocs/2)
	}
	if d := after["/gc/heap/allocs:bytes"] - before["/gc/heap/allocs:bytes"]; d < allocs/2*64 {
		t.Errorf("/gc/heap/allocs:bytes grew by %d after %d 64-byte allocations", d, allocs)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "example.com:1", ":0", "127.0.0.1"} {
		if ln, err := Listen(addr); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded, want an error", addr)
		}
	}
}
