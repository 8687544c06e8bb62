package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// textUpstream serves /big (a compressible text body), /small (under 30
// bytes), /png (an image type) and /stream (two chunks: the second only
// after release is closed), on a real socket.
func textUpstream(t *testing.T, release chan struct{}) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("the quick brown fox jumps over the lazy dog. ", 200)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/small"):
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "tiny")
		case strings.HasPrefix(r.URL.Path, "/png"):
			w.Header().Set("Content-Type", "image/png")
			io.WriteString(w, big)
		case strings.HasPrefix(r.URL.Path, "/gz"):
			// A gzip-encoded body, for the decompressor.
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("X-Seen-Accept-Encoding", r.Header.Get("Accept-Encoding"))
			zw := gzip.NewWriter(w)
			io.WriteString(zw, big)
			zw.Close()
		case strings.HasPrefix(r.URL.Path, "/echo"):
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("X-Seen-Content-Encoding", r.Header.Get("Content-Encoding"))
			b, _ := io.ReadAll(r.Body) // all before writing: HTTP/1 handlers cannot interleave
			w.Write(b)
		case strings.HasPrefix(r.URL.Path, "/trailers"):
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Trailer", "X-Checksum")
			io.WriteString(w, big)
			w.(http.Flusher).Flush()
			w.Header().Set("X-Checksum", "abc")
		case strings.HasPrefix(r.URL.Path, "/stream"):
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "first chunk of the stream\n")
			w.(http.Flusher).Flush()
			<-release
			io.WriteString(w, "second chunk\n")
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("ETag", `"v1"`)
			io.WriteString(w, big)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// decoder opens a body of the given content-encoding.
func decoder(t *testing.T, enc string, r io.Reader) io.Reader {
	t.Helper()
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		return zr
	case "br":
		return brotli.NewReader(r)
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(zr.Close)
		return zr
	}
	return r
}

// TestCompressor: envoy.filters.http.compressor through the binary, with
// gzip, brotli and zstd filters in one chain and a Go client that sends
// Accept-Encoding and decodes what it gets. Bodies are compressed by the
// library the client accepts, with Vary and without content-length or a
// strong ETag; small bodies, other content types, q=0 and a route with
// CompressorPerRoute disabled pass uncompressed; a streamed response
// reaches the client chunk by chunk; stats count per library.
func TestCompressor(t *testing.T) {
	release := make(chan struct{})
	up := textUpstream(t, release)
	lib := func(name, typ, extra string) string {
		return fmt.Sprintf(`                  - name: %s
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
                      compressor_library:
                        name: %s
                        typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.%s%s}
`, name, name, typ, extra)
	}
	filters := lib("gz", "gzip.compressor.v3.Gzip", "") + lib("br", "brotli.compressor.v3.Brotli", "") + strings.TrimSuffix(lib("zs", "zstd.compressor.v3.Zstd", ", enable_checksum: true"), "\n")
	const off = `{"@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute, disabled: true}`
	routes := `                        - name: plain
                          match: {prefix: "/nocomp"}
                          route: {cluster: backend, prefix_rewrite: /big}
                          typed_per_filter_config: {gz: ` + off + `, br: ` + off + `, zs: ` + off + `}
                        - match: {prefix: "/"}
                          route: {cluster: backend}`
	dir, listen, admin := proxySetup(t, up, map[string]string{"{{FILTERS}}": filters, "{{ROUTES}}": routes})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	get := func(path, accept string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+listen+path, nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, raw
	}
	big := strings.Repeat("the quick brown fox jumps over the lazy dog. ", 200)

	for _, tt := range []struct{ accept, want string }{
		{"gzip", "gzip"},
		{"br", "br"},
		{"zstd", "zstd"},
		{"deflate, gzip;q=0.8", "gzip"},
		{"gzip;q=0, *", "br"}, // the first of the response path that is accepted
		{"gzip;q=0", ""},
		{"identity", ""},
		{"gzip;q=0.5, identity;q=1", ""},
		{"", ""},
	} {
		resp, raw := get("/big", tt.accept)
		enc := resp.Header.Get("Content-Encoding")
		if enc != tt.want {
			t.Errorf("Accept-Encoding %q: content-encoding %q, want %q", tt.accept, enc, tt.want)
			continue
		}
		if v := resp.Header.Get("Vary"); v != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Vary %q", tt.accept, v)
		}
		body, err := io.ReadAll(decoder(t, enc, bytes.NewReader(raw)))
		if err != nil || string(body) != big {
			t.Errorf("Accept-Encoding %q: decoded %d bytes (%v), want the %d-byte body", tt.accept, len(body), err, len(big))
		}
		if enc != "" {
			if len(raw) >= len(big)/4 {
				t.Errorf("%s: %d bytes compressed from %d", enc, len(raw), len(big))
			}
			if resp.Header.Get("ETag") != "" || resp.ContentLength != -1 {
				t.Errorf("%s: ETag %q, content-length %d: want both removed", enc, resp.Header.Get("ETag"), resp.ContentLength)
			}
		} else if resp.Header.Get("ETag") != `"v1"` {
			t.Errorf("uncompressed: ETag %q, want kept", resp.Header.Get("ETag"))
		}
	}
	for _, path := range []string{"/small", "/png", "/nocomp"} {
		resp, _ := get(path, "gzip, br, zstd")
		if enc := resp.Header.Get("Content-Encoding"); enc != "" {
			t.Errorf("%s: compressed with %q", path, enc)
		}
	}

	// A response ending with trailers: the compressed stream is finished
	// ahead of them.
	resp0, raw := get("/trailers", "gzip")
	if resp0.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("trailers: content-encoding %q", resp0.Header.Get("Content-Encoding"))
	} else if body, err := io.ReadAll(decoder(t, "gzip", bytes.NewReader(raw))); err != nil || string(body) != big {
		t.Errorf("trailers: decoded %d bytes (%v), want %d", len(body), err, len(big))
	}
	if v := resp0.Trailer.Get("X-Checksum"); v != "abc" {
		t.Errorf("trailers: X-Checksum trailer %q, want abc", v)
	}

	// Streaming: the first chunk is decoded before the upstream sends the
	// second.
	req, _ := http.NewRequest("GET", "http://"+listen+"/stream", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("stream: content-encoding %q", resp.Header.Get("Content-Encoding"))
	}
	zr := decoder(t, "gzip", resp.Body)
	first := make([]byte, len("first chunk of the stream\n"))
	if _, err := io.ReadFull(zr, first); err != nil || string(first) != "first chunk of the stream\n" {
		t.Fatalf("stream: first chunk %q, %v", first, err)
	}
	close(release)
	rest, err := io.ReadAll(zr)
	if err != nil || string(rest) != "second chunk\n" {
		t.Fatalf("stream: rest %q, %v", rest, err)
	}

	if n := adminStat(t, admin, "http.ingress_http.compressor.gz.gzip.compressed"); n != 4 {
		t.Errorf("gzip compressed = %d, want 4", n)
	}
	if n := adminStat(t, admin, "http.ingress_http.compressor.br.brotli.compressed"); n != 2 {
		t.Errorf("brotli compressed = %d, want 2", n)
	}
	if n := adminStat(t, admin, "http.ingress_http.compressor.zs.zstd.compressed"); n != 1 {
		t.Errorf("zstd compressed = %d, want 1", n)
	}
	if n := adminStat(t, admin, "http.ingress_http.compressor.zs.zstd.total_uncompressed_bytes"); n != len(big) {
		t.Errorf("zstd total_uncompressed_bytes = %d, want %d", n, len(big))
	}
	if n := adminStat(t, admin, "http.ingress_http.compressor.gz.gzip.content_length_too_small"); n != 1 {
		t.Errorf("gzip content_length_too_small = %d, want 1", n)
	}
}

// TestDecompressor: envoy.filters.http.decompressor through the binary:
// a gzip request body reaches the upstream decoded, without its
// content-encoding; a gzip response reaches a client that asked for
// none decoded; the upstream sees gzip advertised in Accept-Encoding;
// stats count per direction.
func TestDecompressor(t *testing.T) {
	up := textUpstream(t, nil)
	filters := `                  - name: envoy.filters.http.decompressor
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor
                      decompressor_library:
                        name: basic
                        typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip}`
	dir, listen, admin := proxySetup(t, up, map[string]string{"{{FILTERS}}": filters})
	run(t, dir, listen, admin, "-c", "envoy.yaml")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	big := strings.Repeat("the quick brown fox jumps over the lazy dog. ", 200)

	var zbody bytes.Buffer
	zw := gzip.NewWriter(&zbody)
	io.WriteString(zw, big)
	zw.Close()
	req, _ := http.NewRequest("POST", "http://"+listen+"/echo", bytes.NewReader(zbody.Bytes()))
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != big {
		t.Errorf("request: upstream echoed %d bytes, want the %d decoded", len(got), len(big))
	}
	if v := resp.Header.Get("X-Seen-Content-Encoding"); v != "" {
		t.Errorf("request: upstream saw content-encoding %q, want none", v)
	}

	resp, err = client.Get("http://" + listen + "/gz")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != big || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("response: %d bytes, content-encoding %q; want the %d decoded, none", len(got), resp.Header.Get("Content-Encoding"), len(big))
	}
	if v := resp.Header.Get("X-Seen-Accept-Encoding"); v != "gzip" {
		t.Errorf("upstream saw Accept-Encoding %q, want gzip advertised", v)
	}
	if n := adminStat(t, admin, "http.ingress_http.decompressor.basic.gzip.request.decompressed"); n != 1 {
		t.Errorf("request.decompressed = %d, want 1", n)
	}
	if n := adminStat(t, admin, "http.ingress_http.decompressor.basic.gzip.response.decompressed"); n != 1 {
		t.Errorf("response.decompressed = %d, want 1", n)
	}
	if n := adminStat(t, admin, "http.ingress_http.decompressor.basic.gzip.response.total_uncompressed_bytes"); n != len(big) {
		t.Errorf("response.total_uncompressed_bytes = %d, want %d", n, len(big))
	}
}
