package grpcweb_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmproxy/wasmproxy/filters/internal/inproc"
)

// seen is what the h2c upstream got: the request's headers and body.
type seen struct {
	header http.Header
	proto  string
	body   []byte
}

// setup runs the proxy with the gRPC-Web filter in front of: a grpc-go
// server (health service; /test.Echo/Bidi echoes every BytesValue it
// receives as it receives it; /test.Echo/Quota sends headers, then fails
// with a trailer of its own), an h2c upstream under /h2/ that reports
// the request it got and answers as a gRPC server, a plain HTTP/1
// upstream under /down/ answering 503 text, a direct_response under
// /missing, and /plain/ where the filter is disabled (to the h2c
// upstream).
func setup(t *testing.T) (*inproc.Proxy, string, chan seen) {
	t.Helper()
	gport := inproc.GRPCServer(t, func(gs *grpc.Server) {
		hs := health.NewServer()
		hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(gs, hs)
	}, grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		switch method {
		case "/test.Echo/Bidi":
			for {
				var m wrapperspb.BytesValue
				if err := stream.RecvMsg(&m); err == io.EOF {
					stream.SetTrailer(metadata.Pairs("x-echoed", "done"))
					return nil
				} else if err != nil {
					return err
				}
				if err := stream.SendMsg(&m); err != nil {
					return err
				}
			}
		case "/test.Echo/Quota":
			stream.SendHeader(metadata.MD{})
			stream.SetTrailer(metadata.Pairs("x-extra", "yes"))
			return grpcstatus.Error(codes.ResourceExhausted, "quota spent")
		}
		return grpcstatus.Error(codes.Unimplemented, "no "+method)
	}))

	got := make(chan seen, 4)
	h2 := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{header: r.Header.Clone(), proto: r.Proto, body: b}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(200)
		w.Write(frame(0, []byte("pong")))
		w.Header().Set("Grpc-Status", "0")
	})}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2.Protocols = &protos
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h2.Serve(ln)
	t.Cleanup(func() { h2.Close() })
	h2port := ln.Addr().(*net.TCPAddr).Port

	down := inproc.Upstream(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(503)
		io.WriteString(w, "upstream down ~ 100%\n")
	}))

	p := inproc.Start(t, inproc.Config(`
              routes:
              - match: {prefix: "/plain/"}
                route: {cluster: h2}
                typed_per_filter_config:
                  envoy.filters.http.grpc_web:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - {match: {prefix: "/h2/"}, route: {cluster: h2}}
              - {match: {prefix: "/down/"}, route: {cluster: down}}
              - {match: {prefix: "/missing"}, direct_response: {status: 404, body: {inline_string: "no such thing"}}}
              - {match: {prefix: "/"}, route: {cluster: grpc}}`, `
          - name: envoy.filters.http.grpc_web
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb`,
		inproc.H2Cluster("grpc", gport), inproc.H2Cluster("h2", h2port), inproc.Cluster("down", down)))
	return p, p.Addr("main"), got
}

// frame is a gRPC (or gRPC-Web) frame: the flag byte, the length, msg.
func frame(flag byte, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	out[0] = flag
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// webCall is a gRPC-Web client's request over one HTTP/1.1 connection:
// the body goes as one chunk per element of chunks.
type webCall struct {
	conn net.Conn
	br   *bufio.Reader
}

func open(t *testing.T, addr, path, contentType, accept string, extra ...string) *webCall {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { conn.Close() })
	req := "POST " + path + " HTTP/1.1\r\nHost: web.example\r\nContent-Type: " + contentType + "\r\nTransfer-Encoding: chunked\r\nX-Grpc-Web: 1\r\n"
	if accept != "" {
		req += "Accept: " + accept + "\r\n"
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req += extra[i] + ": " + extra[i+1] + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	return &webCall{conn: conn, br: bufio.NewReader(conn)}
}

func (c *webCall) send(t *testing.T, chunk []byte) {
	t.Helper()
	if _, err := fmt.Fprintf(c.conn, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
		t.Fatal(err)
	}
}

func (c *webCall) end(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(c.conn, "0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

func (c *webCall) response(t *testing.T) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// call sends the whole body in the given chunks and reads the answer.
func call(t *testing.T, addr, path, contentType, accept string, chunks ...[]byte) (*http.Response, []byte) {
	t.Helper()
	c := open(t, addr, path, contentType, accept)
	for _, ch := range chunks {
		c.send(t, ch)
	}
	c.end(t)
	resp := c.response(t)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// webFrame is one frame of a gRPC-Web response body.
type webFrame struct {
	flag byte
	data []byte
}

func parseFrames(t *testing.T, b []byte) []webFrame {
	t.Helper()
	var out []webFrame
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("short frame header %x", b)
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			t.Fatalf("frame of %d bytes, %d left", n, len(b)-5)
		}
		out = append(out, webFrame{b[0], b[5 : 5+n]})
		b = b[5+n:]
	}
	return out
}

// decodeText decodes a -text body: base64 segments, each padded on its
// own, one after the other.
func decodeText(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for len(s) > 0 {
		end := 0
		for end < len(s) {
			q := s[end : end+4]
			end += 4
			if strings.Contains(q, "=") {
				break
			}
		}
		b, err := base64.StdEncoding.DecodeString(s[:end])
		if err != nil {
			t.Fatalf("base64 %q: %v", s[:end], err)
		}
		out = append(out, b...)
		s = s[end:]
	}
	return out
}

// trailerFrame is the trailer frame a body ends with, as a header list.
func trailerFrame(t *testing.T, fs []webFrame) map[string]string {
	t.Helper()
	if len(fs) == 0 || fs[len(fs)-1].flag != 0x80 {
		t.Fatalf("the body does not end with a trailer frame: %v", fs)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(fs[len(fs)-1].data), "\r\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("trailer line %q", line)
		}
		m[k] = v
	}
	return m
}

// TestBinary: a binary gRPC-Web unary call reaches grpc-go and comes
// back as gRPC-Web: the answer's frame, then the trailers as a frame
// flagged 0x80 in the body, with no HTTP trailers; the cluster's
// grpc-web stats count the call.
func TestBinary(t *testing.T) {
	p, addr, _ := setup(t)
	req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "up"})
	want, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
	for _, ct := range []string{"application/grpc-web", "application/grpc-web+proto"} {
		resp, body := call(t, addr, "/grpc.health.v1.Health/Check", ct, "", frame(0, req))
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc-web+proto" || len(resp.Trailer) != 0 {
			t.Fatalf("%s: %d content-type %q trailers %v", ct, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Trailer)
		}
		fs := parseFrames(t, body)
		if len(fs) != 2 || fs[0].flag != 0 || !bytes.Equal(fs[0].data, want) {
			t.Fatalf("%s: frames %v, want the SERVING answer and the trailer frame", ct, fs)
		}
		if tr := trailerFrame(t, fs); tr["grpc-status"] != "0" {
			t.Errorf("%s: trailer frame %v, want grpc-status 0", ct, tr)
		}
	}
	for name, want := range map[string]int64{"0": 2, "success": 2, "failure": -1, "total": 2} {
		if got := p.Stat(t, "cluster.grpc.grpc-web.grpc.health.v1.Health.Check."+name); got != want {
			t.Errorf("cluster.grpc.grpc-web.grpc.health.v1.Health.Check.%s = %d, want %d", name, got, want)
		}
	}
}

// TestRequestHeaders: what the upstream gets from a gRPC-Web request:
// content-type application/grpc, te: trailers, grpc-accept-encoding
// identity unless the client sent one, no content-length, x-grpc-web
// kept, the body unchanged. On a route where the filter is disabled the
// request goes up as it came.
func TestRequestHeaders(t *testing.T) {
	_, addr, got := setup(t)
	body := frame(0, []byte("ping"))
	resp, rb := call(t, addr, "/h2/svc.S/M", "application/grpc-web", "", body)
	s := <-got
	if s.proto != "HTTP/2.0" || s.header.Get("Content-Type") != "application/grpc" || s.header.Get("Te") != "trailers" || s.header.Get("Grpc-Accept-Encoding") != "identity" || s.header.Get("Content-Length") != "" || s.header.Get("X-Grpc-Web") != "1" || !bytes.Equal(s.body, body) {
		t.Errorf("upstream got %s %v %x", s.proto, s.header, s.body)
	}
	if fs := parseFrames(t, rb); resp.StatusCode != 200 || len(fs) != 2 || string(fs[0].data) != "pong" || trailerFrame(t, fs)["grpc-status"] != "0" {
		t.Errorf("answer %d %v", resp.StatusCode, fs)
	}

	c := open(t, addr, "/h2/svc.S/M", "application/grpc-web-text", "", "Grpc-Accept-Encoding", "gzip")
	c.send(t, []byte(base64.StdEncoding.EncodeToString(body)))
	c.end(t)
	c.response(t)
	if s := <-got; s.header.Get("Grpc-Accept-Encoding") != "gzip" || !bytes.Equal(s.body, body) {
		t.Errorf("with grpc-accept-encoding gzip the upstream got %v %x", s.header, s.body)
	}

	resp, rb = call(t, addr, "/plain/svc.S/M", "application/grpc-web", "", body)
	s = <-got
	if s.header.Get("Content-Type") != "application/grpc-web" || s.header.Get("Grpc-Accept-Encoding") != "" {
		t.Errorf("disabled route: the upstream got %v", s.header)
	}
	if resp.Header.Get("Content-Type") != "application/grpc" || !bytes.Equal(rb, frame(0, []byte("pong"))) {
		t.Errorf("disabled route: answer content-type %q body %x, want the gRPC answer unchanged", resp.Header.Get("Content-Type"), rb)
	}
}

// TestTextStreaming: a -text call whose base64 is cut at a place that is
// not a multiple of 4: the first chunk holds the whole first message and
// two characters of the second, which the filter keeps until the rest
// comes. The grpc-go handler echoes the first message before the client
// sends the rest, so the cut really reached the filter as two chunks.
// The answer is -text: each frame base64-encoded on its own, then the
// trailer frame.
func TestTextStreaming(t *testing.T) {
	p, addr, _ := setup(t)
	m1, _ := proto.Marshal(wrapperspb.Bytes([]byte("first message")))
	m2, _ := proto.Marshal(wrapperspb.Bytes([]byte("second, longer message")))
	raw := append(frame(0, m1), frame(0, m2)...)
	text := base64.StdEncoding.EncodeToString(raw)
	cut := (len(frame(0, m1))+2)/3*4 + 2 // whole first frame, then 2 more characters
	if cut%4 == 0 || cut >= len(text) {
		t.Fatalf("bad cut %d of %d", cut, len(text))
	}
	c := open(t, addr, "/test.Echo/Bidi", "application/grpc-web-text", "application/grpc-web-text")
	c.send(t, []byte(text[:cut]))
	resp := c.response(t)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc-web-text+proto" {
		t.Fatalf("%d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The first echo is one base64 segment of a whole frame.
	firstLen := (len(frame(0, m1)) + 2) / 3 * 4
	first := make([]byte, firstLen)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	if got := decodeText(t, string(first)); !bytes.Equal(got, frame(0, m1)) {
		t.Fatalf("first echo %x, want %x", got, frame(0, m1))
	}
	c.send(t, []byte(text[cut:cut+1]))
	c.send(t, []byte(text[cut+1:]))
	c.end(t)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	fs := parseFrames(t, decodeText(t, string(rest)))
	if len(fs) != 2 || !bytes.Equal(fs[0].data, m2) {
		t.Fatalf("rest of the answer: %v", fs)
	}
	if tr := trailerFrame(t, fs); tr["grpc-status"] != "0" || tr["x-echoed"] != "done" {
		t.Errorf("trailer frame %v, want grpc-status 0 and x-echoed done", tr)
	}
	if got := p.Stat(t, "cluster.grpc.grpc-web.test.Echo.Bidi.success"); got != 1 {
		t.Errorf("cluster.grpc.grpc-web.test.Echo.Bidi.success = %d, want 1", got)
	}

	// A -text request whose answer is binary (no text accept header).
	req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "up"})
	enc := base64.StdEncoding.EncodeToString(frame(0, req))
	r, body := call(t, addr, "/grpc.health.v1.Health/Check", "application/grpc-web-text+proto", "", []byte(enc[:1]), []byte(enc[1:3]), []byte(enc[3:]))
	want, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
	if fs := parseFrames(t, body); r.Header.Get("Content-Type") != "application/grpc-web+proto" || len(fs) != 2 || !bytes.Equal(fs[0].data, want) {
		t.Errorf("text request, binary answer: %q %v", r.Header.Get("Content-Type"), fs)
	}
}

// TestGRPCErrors: a trailers-only answer keeps grpc-status in its
// headers and has no body; an error in trailers after headers (no data
// at all) becomes a body of just the trailer frame, in both modes.
func TestGRPCErrors(t *testing.T) {
	p, addr, _ := setup(t)
	req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "nope"})
	resp, body := call(t, addr, "/grpc.health.v1.Health/Check", "application/grpc-web+proto", "", frame(0, req))
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "5" || resp.Header.Get("Grpc-Message") != "unknown service" ||
		resp.Header.Get("Content-Type") != "application/grpc-web+proto" || len(body) != 0 {
		t.Errorf("trailers-only: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if got := p.Stat(t, "cluster.grpc.grpc-web.grpc.health.v1.Health.Check.5"); got != 1 {
		t.Errorf("cluster.grpc.grpc-web.grpc.health.v1.Health.Check.5 = %d, want 1", got)
	}

	resp, body = call(t, addr, "/test.Echo/Quota", "application/grpc-web", "", frame(0, nil))
	tr := trailerFrame(t, parseFrames(t, body))
	if resp.StatusCode != 200 || len(parseFrames(t, body)) != 1 || tr["grpc-status"] != "8" || tr["grpc-message"] != "quota spent" || tr["x-extra"] != "yes" {
		t.Errorf("error in trailers: %d frames %v", resp.StatusCode, parseFrames(t, body))
	}
	resp, body = call(t, addr, "/test.Echo/Quota", "application/grpc-web-text", "application/grpc-web-text+proto", []byte(base64.StdEncoding.EncodeToString(frame(0, nil))))
	fs := parseFrames(t, decodeText(t, string(body)))
	if tr := trailerFrame(t, fs); resp.Header.Get("Content-Type") != "application/grpc-web-text+proto" || len(fs) != 1 || tr["grpc-status"] != "8" {
		t.Errorf("error in trailers, -text: %q %v", resp.Header.Get("Content-Type"), fs)
	}
	for name, want := range map[string]int64{"8": 2, "failure": 2, "total": 2} {
		if got := p.Stat(t, "cluster.grpc.grpc-web.test.Echo.Quota."+name); got != want {
			t.Errorf("cluster.grpc.grpc-web.test.Echo.Quota.%s = %d, want %d", name, got, want)
		}
	}
}

// TestNonGRPCAnswers: answers that are not gRPC become gRPC-Web errors:
// an upstream's 503 text, a direct_response 404 and the filter's own 400
// for bad base64 (bad size, bad characters) keep their status, get
// grpc-status from it and grpc-message from the body (percent-encoded
// as Envoy does), content-length 0 and no body.
func TestNonGRPCAnswers(t *testing.T) {
	_, addr, _ := setup(t)
	for _, tc := range []struct {
		name, path, ct, accept string
		body                   []byte
		status                 int
		grpcStatus, message    string
	}{
		{"upstream 503", "/down/x.S/M", "application/grpc-web", "", frame(0, nil), 503, "14", "upstream down %7E 100%25%0A"},
		{"direct_response", "/missing/x.S/M", "application/grpc-web", "", frame(0, nil), 404, "12", "no such thing"},
		{"bad size", "/h2/x.S/M", "application/grpc-web-text", "application/grpc-web-text", []byte("AAAAAA"), 400, "13", "Bad gRPC-web request, invalid base64 data."},
		{"bad data", "/h2/x.S/M", "application/grpc-web-text", "", []byte("AA!!AAAA"), 400, "13", "Bad gRPC-web request, invalid base64 data."},
	} {
		resp, body := call(t, addr, tc.path, tc.ct, tc.accept, tc.body)
		wantCT := "application/grpc-web+proto"
		if tc.accept != "" {
			wantCT = "application/grpc-web-text+proto"
		}
		if resp.StatusCode != tc.status || resp.Header.Get("Grpc-Status") != tc.grpcStatus || resp.Header.Get("Grpc-Message") != tc.message ||
			resp.Header.Get("Content-Type") != wantCT || resp.ContentLength != 0 || len(body) != 0 {
			t.Errorf("%s: %d grpc-status %q grpc-message %q content-type %q content-length %d body %q; want %d %s %q %s, empty",
				tc.name, resp.StatusCode, resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message"), resp.Header.Get("Content-Type"),
				resp.ContentLength, body, tc.status, tc.grpcStatus, tc.message, wantCT)
		}
	}
	// A request that is not gRPC-Web passes untouched.
	resp, body := call(t, addr, "/down/plain", "text/plain", "", []byte("hi"))
	if resp.StatusCode != 503 || resp.Header.Get("Grpc-Status") != "" || string(body) != "upstream down ~ 100%\n" {
		t.Errorf("plain request: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

// TestHTTP2Client: a gRPC-Web client over HTTP/2 (prior knowledge, as a
// browser's h2 without TLS here) gets the same answer: the trailers in a
// trailer frame of the body, no HTTP/2 trailers; a trailers-only answer
// with grpc-status in its headers.
func TestHTTP2Client(t *testing.T) {
	_, addr, _ := setup(t)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{Protocols: &protos}}
	post := func(path string, body []byte) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		req.Header.Set("X-Grpc-Web", "1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s: answered over %s, want HTTP/2", path, resp.Proto)
		}
		return resp, b
	}
	req, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "up"})
	want, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
	resp, body := post("/grpc.health.v1.Health/Check", frame(0, req))
	fs := parseFrames(t, body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc-web+proto" || len(fs) != 2 ||
		!bytes.Equal(fs[0].data, want) || trailerFrame(t, fs)["grpc-status"] != "0" || len(resp.Trailer) != 0 {
		t.Errorf("SERVING over HTTP/2: %d %v frames %v trailers %v", resp.StatusCode, resp.Header, fs, resp.Trailer)
	}
	resp, body = post("/test.Echo/Quota", frame(0, nil))
	if fs := parseFrames(t, body); len(fs) != 1 || trailerFrame(t, fs)["grpc-status"] != "8" || len(resp.Trailer) != 0 {
		t.Errorf("error in trailers over HTTP/2: frames %v trailers %v", fs, resp.Trailer)
	}
	req, _ = proto.Marshal(&healthpb.HealthCheckRequest{Service: "nope"})
	resp, body = post("/grpc.health.v1.Health/Check", frame(0, req))
	if resp.Header.Get("Grpc-Status") != "5" || len(body) != 0 {
		t.Errorf("trailers-only over HTTP/2: %v %q", resp.Header, body)
	}
}
