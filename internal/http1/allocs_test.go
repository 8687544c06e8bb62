package http1

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"unsafe"
)

// TestReadRequestAllocs: reading a keep-alive request head of
// bench/run.sh's shape costs no allocation: the common method and field
// names are interned, the Request's slices reused from one request to
// the next, and the string that holds its target and field values (which
// the header map then references) is the previous request's when the
// head repeats it (gathered.last). The body of the POST is read into
// a caller's buffer through a BodyReader reused the same way
// (ResetForRequest), without any.
func TestReadRequestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const body = `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`
	for _, tc := range []struct{ name, raw string }{
		{"GET", "GET /bench HTTP/1.1\r\nHost: 127.0.0.1:28001\r\nUser-Agent: wrk\r\n\r\n"},
		{"POST", "POST / HTTP/1.1\r\nHost: 127.0.0.1:28001\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n" + body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.NewReader(tc.raw)
			br := bufio.NewReaderSize(src, 4<<10)
			var req Request
			var bodyR BodyReader // reused, as the server reuses its connection's
			buf := make([]byte, 512)
			var got []byte
			read := func() {
				src.Reset(tc.raw)
				br.Reset(src)
				if err := ReadRequest(br, Limits{}, &req); err != nil {
					t.Fatal(err)
				}
				if req.ContentLength > 0 {
					bodyR.ResetForRequest(br, &req, Limits{})
					n, err := io.ReadFull(&bodyR, buf[:req.ContentLength])
					if err != nil || int64(n) != req.ContentLength {
						t.Fatalf("body: %d bytes, %v", n, err)
					}
					got = buf[:n]
				}
			}
			read() // sizes the reused slices
			if n := testing.AllocsPerRun(100, read); n > 0 {
				t.Errorf("%.1f allocations per request head, want none", n)
			}
			if req.Fields[0].Value != "127.0.0.1:28001" || req.Target != strings.Fields(tc.raw)[1] {
				t.Errorf("parsed %+v", req)
			}
			if req.ContentLength > 0 && !bytes.Equal(got, []byte(body)) {
				t.Errorf("body %q", got)
			}
		})
	}
}

// TestReadResponseAllocs: reading a keep-alive response head of the
// benchmark upstream's shape costs no allocation: the common names are
// interned, the Response's slices reused from one response to the next,
// and the string that holds its field values and uncommon names is the
// previous response's when the head repeats it.
func TestReadResponseAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nX-Upstream: a\r\n\r\nhello from the server"
	src := strings.NewReader(raw)
	br := bufio.NewReaderSize(src, 4<<10)
	var resp Response
	read := func() {
		src.Reset(raw)
		br.Reset(src)
		if err := ReadResponse(br, Limits{}, false, &resp); err != nil {
			t.Fatal(err)
		}
	}
	read() // sizes the reused slices
	if n := testing.AllocsPerRun(100, read); n > 0 {
		t.Errorf("%.1f allocations per response head, want none", n)
	}
	want := []Field{{"Content-Type", "text/plain"}, {"Content-Length", "21"}, {"X-Upstream", "a"}}
	if len(resp.Fields) != len(want) || resp.ContentLength != 21 {
		t.Fatalf("parsed %+v", resp)
	}
	for i, f := range want {
		if resp.Fields[i] != f {
			t.Errorf("field %d: %+v, want %+v", i, resp.Fields[i], f)
		}
	}
}

// TestRepeatedHeadStrings: a head that repeats the previous one shares
// its string; one that differs gets its own, and the strings handed out
// for the previous head keep their values (a header map may still hold
// them).
func TestRepeatedHeadStrings(t *testing.T) {
	heads := []string{
		"GET /a HTTP/1.1\r\nHost: h\r\nX-Id: 1\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\nX-Id: 1\r\n\r\n",
		"GET /b HTTP/1.1\r\nHost: h\r\nX-Id: 2\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: h\r\nX-Id: 1\r\n\r\n",
	}
	br := bufio.NewReader(strings.NewReader(strings.Join(heads, "")))
	var req Request
	var targets, ids []string
	for range heads {
		if err := ReadRequest(br, Limits{}, &req); err != nil {
			t.Fatal(err)
		}
		targets = append(targets, req.Target)
		ids = append(ids, req.Fields[1].Value)
	}
	if want := []string{"/a", "/a", "/b", "/a"}; strings.Join(targets, ",") != strings.Join(want, ",") {
		t.Errorf("targets %q, want %q", targets, want)
	}
	if want := []string{"1", "1", "2", "1"}; strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Errorf("x-id values %q, want %q", ids, want)
	}
	if unsafe.StringData(targets[0]) != unsafe.StringData(targets[1]) {
		t.Error("a repeated head did not reuse the previous head's string")
	}

	const raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n"
	const other = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: 2\r\n\r\n"
	rbr := bufio.NewReader(strings.NewReader(raw + other + raw))
	var resp Response
	var vals []string
	for range 3 {
		if err := ReadResponse(rbr, Limits{}, false, &resp); err != nil {
			t.Fatal(err)
		}
		vals = append(vals, resp.Fields[1].Value)
	}
	if strings.Join(vals, ",") != "1,2,1" {
		t.Errorf("x-a values %q, want 1, 2, 1", vals)
	}
}
