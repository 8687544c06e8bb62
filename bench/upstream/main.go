// Command upstream is the benchmark's origin server: it answers every
// request, whatever the method, with the 22-byte text/plain body
// "hello from the server\n" after draining the request body. It is the
// Go upstream of docs/perf.md;
// GOMAXPROCS is whatever the environment gives (the Go default: all CPUs).
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
)

var body = []byte("hello from the server\n") // 22 bytes

func main() {
	port := flag.Int("port", 8099, "TCP port to listen on")
	host := flag.String("host", "127.0.0.1", "address to listen on (loopback by default)")
	flag.Parse()

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	})
	addr := net.JoinHostPort(*host, strconv.Itoa(*port))
	log.Printf("upstream listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, h))
}
