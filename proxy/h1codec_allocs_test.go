package proxy

import (
	"bufio"
	"context"
	"strings"
	"testing"

	"github.com/wasmproxy/wasmproxy/internal/http1"
)

// TestH1CodecAllocs: the HTTP/1.1 codec's share of a proxied request of
// bench/run.sh's shape (the POST of bench/post.lua) costs no allocation
// once a connection's reused state is sized: the request head parsed
// (http1.ReadRequest), its body read (http1.BodyReader into the
// stream's inlineBody), its header map built in the stream's storage
// (h1RequestHeaders), the upstream request line and head written
// (buildUpstreamRequest, appendRequestHead into the connection's
// buffer) and the upstream's response head and body parsed
// (http1.ReadResponse, its body reader). One stream is used for every
// round, as one connection would use its reused state; the proxy makes
// a new one per request (the allocation TestProxiedRequestAllocs
// counts).
func TestH1CodecAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const body = `{"id": "xxx", "token": "xxx", "anotherField": "yyy"}`
	const rawReq = "POST / HTTP/1.1\r\nHost: 127.0.0.1:28001\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n" + body
	const rawResp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\nhello from the server\n"
	reqSrc, respSrc := strings.NewReader(rawReq), strings.NewReader(rawResp)
	reqBR, respBR := bufio.NewReaderSize(reqSrc, 4<<10), bufio.NewReaderSize(respSrc, 4<<10)
	var (
		head     http1.Request
		reqBody  http1.BodyReader
		resp     http1.Response
		respBody http1.BodyReader
		line     upstreamRequestLine
		s        stream
		out      = make([]byte, 0, 4<<10)
		wrote    []byte
		got      []byte
	)
	ctx := context.Background()
	roundTrip := func() {
		reqSrc.Reset(rawReq)
		reqBR.Reset(reqSrc)
		if err := http1.ReadRequest(reqBR, http1.Limits{}, &head); err != nil {
			t.Fatal(err)
		}
		reqBody.ResetForRequest(reqBR, &head, http1.Limits{})
		s.reqBodyStore.used = false // one stream for every round (see above)
		chunk, err := readChunk(&reqBody, head.ContentLength, &s.reqBodyStore)
		if err != nil || string(chunk) != body {
			t.Fatalf("body %q, %v", chunk, err)
		}
		h := s.h1RequestHeaders(&head, false)
		h.Set("x-forwarded-proto", "http")
		req := buildUpstreamRequest(ctx, h, "127.0.0.1:28099", &line)
		req.ContentLength = int64(len(chunk))
		uh := upstreamHead{pairs: h.Pairs(), scheme: "http"}
		if wrote, err = appendRequestHead(out[:0], req, &uh, len(chunk), false); err != nil {
			t.Fatal(err)
		}
		respSrc.Reset(rawResp)
		respBR.Reset(respSrc)
		if err := http1.ReadResponse(respBR, http1.Limits{}, false, &resp); err != nil {
			t.Fatal(err)
		}
		respBody.ResetForResponse(respBR, &resp, http1.Limits{})
		s.upStore.respBodyStore.used = false
		if got, err = readChunk(&respBody, resp.ContentLength, &s.upStore.respBodyStore); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip() // sizes the reused slices
	if n := testing.AllocsPerRun(1000, roundTrip); n > 0 {
		t.Errorf("%v allocations per request through the codec, want none", n)
	}
	// The client's content-length is framing: the pool writes its own.
	want := "POST / HTTP/1.1\r\nhost: 127.0.0.1:28001\r\ncontent-type: application/json\r\nx-forwarded-proto: http\r\ncontent-length: 52\r\n\r\n"
	if string(wrote) != want {
		t.Errorf("upstream head %q,\nwant %q", wrote, want)
	}
	if string(got) != "hello from the server\n" {
		t.Errorf("response body %q", got)
	}
}
