package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// proxiedH2Requests are bench/h2load.sh's requests over h2c: a GET, and
// h2load's POST of the 52-byte JSON body (with content-length, as
// h2load -d sends it).
var proxiedH2Requests = []struct {
	name   string
	fields [][2]string
	body   string
}{
	{"GET", [][2]string{{":method", "GET"}, {":path", "/bench"}, {":scheme", "http"}, {":authority", "bench"},
		{"user-agent", "h2load"}}, ""},
	{"POST", [][2]string{{":method", "POST"}, {":path", "/bench"}, {":scheme", "http"}, {":authority", "bench"},
		{"user-agent", "h2load"}, {"content-type", "application/json"}, {"content-length", strconv.Itoa(len(benchBody))}}, benchBody},
}

// rawH2Client is an h2c client (prior knowledge) on a raw socket that
// sends one request at a time and reads frames without decoding their
// header blocks past the first response: it allocates nothing per round
// trip, so that the allocations a benchmark counts are the proxy's.
type rawH2Client struct {
	tb     testing.TB
	c      net.Conn
	br     *bufio.Reader
	stream uint32
	// head is the request's HEADERS frame (and its DATA frame, if any),
	// whose stream identifiers are rewritten for each request.
	head     []byte
	dataAt   int // offset of the DATA frame in head, 0 when none
	hdr      [9]byte
	checked  bool
	settings []byte // a SETTINGS ack
}

// dialRawH2 opens an h2c connection to addr for requests of the given
// header fields and body.
func dialRawH2(tb testing.TB, addr string, fields [][2]string, body string) *rawH2Client {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range fields {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	// Every field above is a static-table reference or a literal with
	// incremental indexing: sending the same block again stays valid
	// (the server adds the literals to its table again).
	var fr bytes.Buffer
	w := http2.NewFramer(&fr, nil)
	_ = w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: body == ""})
	cl := &rawH2Client{tb: tb, c: c, br: bufio.NewReaderSize(c, 16<<10), stream: 1}
	if body != "" {
		cl.dataAt = fr.Len()
		_ = w.WriteData(1, true, []byte(body))
	}
	cl.head = append([]byte(nil), fr.Bytes()...)
	fr.Reset()
	_ = w.WriteSettingsAck()
	cl.settings = append([]byte(nil), fr.Bytes()...)
	// The preface, empty SETTINGS and a connection window large enough
	// for any benchmark's responses.
	fr.Reset()
	fr.WriteString(http2Preface)
	_ = w.WriteSettings()
	_ = w.WriteWindowUpdate(0, 1<<31-1-65535)
	if _, err := c.Write(fr.Bytes()); err != nil {
		tb.Fatal(err)
	}
	return cl
}

// roundTrip sends the request on the next stream and reads until that
// stream's response ends.
func (cl *rawH2Client) roundTrip() {
	tb := cl.tb
	binary.BigEndian.PutUint32(cl.head[5:9], cl.stream)
	if cl.dataAt > 0 {
		binary.BigEndian.PutUint32(cl.head[cl.dataAt+5:cl.dataAt+9], cl.stream)
	}
	_ = cl.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := cl.c.Write(cl.head); err != nil {
		tb.Fatal(err)
	}
	bodyLen := 0
	for {
		if _, err := io.ReadFull(cl.br, cl.hdr[:]); err != nil {
			tb.Fatal(err)
		}
		n := int(cl.hdr[0])<<16 | int(cl.hdr[1])<<8 | int(cl.hdr[2])
		typ, flags := http2.FrameType(cl.hdr[3]), http2.Flags(cl.hdr[4])
		id := binary.BigEndian.Uint32(cl.hdr[5:9]) & (1<<31 - 1)
		switch {
		case typ == http2.FrameSettings && !flags.Has(http2.FlagSettingsAck):
			if _, err := cl.c.Write(cl.settings); err != nil {
				tb.Fatal(err)
			}
		case typ == http2.FrameGoAway || typ == http2.FrameRSTStream:
			tb.Fatalf("%v frame from the proxy", typ)
		case typ == http2.FrameHeaders && id == cl.stream && !cl.checked:
			cl.checkStatus(n)
			n = 0
		case typ == http2.FrameData && id == cl.stream:
			bodyLen += n
		}
		if _, err := cl.br.Discard(n); err != nil {
			tb.Fatal(err)
		}
		if id == cl.stream && flags.Has(http2.FlagDataEndStream) && (typ == http2.FrameData || typ == http2.FrameHeaders) {
			break
		}
	}
	if bodyLen != len("hello from the server") {
		tb.Fatalf("response body of %d bytes", bodyLen)
	}
	cl.stream += 2
}

// checkStatus decodes the first response's header block (n bytes,
// unpadded: x/net/http2 pads nothing) and wants :status 200.
func (cl *rawH2Client) checkStatus(n int) {
	cl.checked = true
	b := make([]byte, n)
	if _, err := io.ReadFull(cl.br, b); err != nil {
		cl.tb.Fatal(err)
	}
	fields, err := hpack.NewDecoder(4096, nil).DecodeFull(b)
	if err != nil {
		cl.tb.Fatal(err)
	}
	if len(fields) == 0 || fields[0].Name != ":status" || fields[0].Value != "200" {
		cl.tb.Fatalf("response header fields %v, want :status 200 first", fields)
	}
}

// BenchmarkProxiedH2Request is BenchmarkProxiedRequest over h2c: one
// request at a time on one HTTP/2 connection from a raw-socket client,
// through the proxy (router only) to the raw-socket HTTP/1.1 upstream.
// allocs/op is what the proxy allocates per HTTP/2 request.
func BenchmarkProxiedH2Request(b *testing.B) {
	addr := startProxiedRequestProxy(b)
	for _, bc := range proxiedH2Requests {
		b.Run(bc.name, func(b *testing.B) {
			cl := dialRawH2(b, addr, bc.fields, bc.body)
			cl.roundTrip() // the connection's setup and the upstream connection are done
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cl.roundTrip()
			}
		})
	}
}
