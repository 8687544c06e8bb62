// Command tcpload drives the TCP benchmark (bench/tcp.sh):
//
//	tcpload sink -listen 127.0.0.1:29000
//	    a TCP service that reads and discards everything (the upstream)
//	tcpload stream -target 127.0.0.1:29001 -conns 50 -duration 10s
//	    each connection writes 64 KiB blocks as fast as the target takes
//	    them; prints "mbps <MB/s> bytes <n>"
//	tcpload handshake -target 127.0.0.1:29101 -ca ca.pem -conns 50 -duration 10s
//	    each worker opens a TLS 1.3 connection (a full handshake, X25519,
//	    no session resumption), then closes it; prints
//	    "hps <handshakes/s> n <n> errors <n>"
//
// MB is 10^6 bytes. Errors during a run are counted, not fatal, so a
// target that drops connections shows up in the numbers.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: tcpload sink|stream|handshake [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:29000", "sink: address to listen on")
	target := fs.String("target", "", "stream, handshake: address to connect to")
	conns := fs.Int("conns", 1, "concurrent connections (stream) or workers (handshake)")
	duration := fs.Duration("duration", 10*time.Second, "measured run")
	caFile := fs.String("ca", "", "handshake: CA certificate (PEM) that signed the target's")
	serverName := fs.String("sni", "localhost", "handshake: server name")
	_ = fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "sink":
		sink(*listen)
	case "stream":
		stream(*target, *conns, *duration)
	case "handshake":
		handshake(*target, *caFile, *serverName, *conns, *duration)
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

func sink(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	buf := sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			b := buf.Get().(*[]byte)
			defer buf.Put(b)
			for {
				if _, err := c.Read(*b); err != nil {
					return
				}
			}
		}()
	}
}

func stream(target string, conns int, d time.Duration) {
	var total atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", target)
			if err != nil {
				log.Printf("dial: %v", err)
				return
			}
			defer c.Close()
			block := make([]byte, 64<<10)
			for i := range block {
				block[i] = byte(i * 7)
			}
			_ = c.SetWriteDeadline(deadline)
			for time.Now().Before(deadline) {
				n, err := c.Write(block)
				total.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("mbps %.1f bytes %d\n", float64(total.Load())/secs/1e6, total.Load())
}

func handshake(target, caFile, serverName string, workers int, d time.Duration) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		log.Fatalf("%s: no certificate", caFile)
	}
	// No ClientSessionCache: every connection is a full handshake. X25519
	// only: Go would offer the hybrid X25519MLKEM768 first, which a Go
	// server takes and HAProxy's OpenSSL 3.0 cannot, so the servers would
	// not do the same work.
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519}}
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", target, cfg)
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				_ = c.SetDeadline(time.Now().Add(time.Second))
				_ = c.CloseWrite()
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("hps %.0f n %d errors %d\n", float64(ok.Load())/secs, ok.Load(), failed.Load())
}
