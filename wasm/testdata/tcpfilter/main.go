// Command tcpfilter is a Proxy-Wasm network (TCP) test plugin for the
// wasm package's tests, written against the raw ABI (no SDK). Its plugin
// configuration selects a behaviour ("mode"); every callback logs its
// name and arguments so tests can check the life cycle.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"hash"
	"hash/fnv"
	"strconv"
	"strings"
)

func main() {}

var (
	mode string
	// paused is the connection a "pause_tick" tick continues.
	paused uint32
	// Per-connection byte counts and running hashes ("count" mode).
	counts = map[uint32]*counter{}
)

type counter struct {
	down, up uint64
	downHash hash.Hash64
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_context_create
func onContextCreate(ctx, parent uint32) {
	resetAllocations()
	info("create " + itoa(ctx) + " " + itoa(parent))
}

//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	resetAllocations()
	cfg, _ := getBuffer(7, 0, size)
	mode = string(cfg)
	info("configure " + mode)
	return 1
}

//go:wasmexport proxy_on_new_connection
func onNewConnection(ctx uint32) uint32 {
	resetAllocations()
	info("new_connection " + itoa(ctx))
	switch mode {
	case "properties":
		for _, p := range []string{
			"source.address", "destination.address", "connection.id", "connection_id",
			"connection.mtls", "connection.requested_server_name", "connection.tls_version",
			"connection.subject_peer_certificate", "connection.uri_san_peer_certificate",
			"connection.dns_san_peer_certificate", "connection.sha256_peer_certificate_digest",
			"connection.subject_local_certificate", "connection.dns_san_local_certificate",
			"connection.uri_san_local_certificate", "xds.cluster_name", "plugin_name",
		} {
			logProperty(p)
		}
	case "pause_tick":
		// The tick is armed once data is held (onDownstreamData), so it
		// continues a held connection however late the data comes.
		paused = ctx
		return 1
	case "count":
		counts[ctx] = &counter{downHash: fnv.New64a()}
	}
	return 0
}

//go:wasmexport proxy_on_tick
func onTick(root uint32) {
	resetAllocations()
	if paused == 0 {
		return
	}
	proxySetTickPeriod(0)
	st := proxySetEffectiveContext(paused)
	info("tick: effective " + itoa(st) + ", continue upstream " + itoa(proxyContinueStream(3)) +
		", continue downstream " + itoa(proxyContinueStream(2)))
	paused = 0
}

//go:wasmexport proxy_on_downstream_data
func onDownstreamData(ctx, size, eos uint32) uint32 {
	resetAllocations()
	info("downstream_data " + itoa(ctx) + " " + itoa(size) + " " + itoa(eos))
	switch mode {
	case "prepend":
		if size > 0 {
			info("prepend " + itoa(setBuffer(2, 0, 0, "prefix:")))
		}
	case "replace":
		if size > 0 {
			info("replace " + itoa(setBuffer(2, 0, size, "replaced")))
		}
	case "pause_tick":
		if paused != 0 {
			if size > 0 {
				proxySetTickPeriod(20)
			}
			return 1 // held until the tick continues the connection
		}
	case "rules":
		if size == 0 {
			break
		}
		data, st := getBuffer(2, 0, size)
		n, _ := bufferStatus(2)
		_, other := getBuffer(3, 0, 10)
		info("rules: data " + string(data) + " " + itoa(st) + ", status size " + itoa(n) +
			", upstream buffer " + itoa(other) + ", middle " + itoa(setBuffer(2, 1, 1, "x")) +
			", type 9 " + itoa(setBuffer(9, 0, 0, "x")) + ", from 2 " + string(mustBuffer(2, 2, 100)))
		info("append " + itoa(setBuffer(2, size, 0, "!")))
	case "pause":
		if eos == 0 {
			return 1
		}
	case "close":
		if data, _ := getBuffer(2, 0, size); strings.Contains(string(data), "quit") {
			info("close " + itoa(proxyCloseStream(2)))
			return 1
		}
	case "close_upstream":
		info("close upstream " + itoa(proxyCloseStream(3)))
		return 1
	case "trap":
		data, _ := getBuffer(2, 0, size)
		if strings.Contains(string(data), "trap") {
			panic("trap requested")
		}
		if strings.Contains(string(data), "hold") {
			info("hold " + itoa(ctx))
			return 1 // never resumed
		}
	case "count":
		c := counts[ctx]
		data, _ := getBuffer(2, 0, size)
		c.down += uint64(len(data))
		c.downHash.Write(data)
	}
	return 0
}

func mustBuffer(t, start, size uint32) []byte {
	b, _ := getBuffer(t, start, size)
	return b
}

//go:wasmexport proxy_on_upstream_data
func onUpstreamData(ctx, size, eos uint32) uint32 {
	resetAllocations()
	info("upstream_data " + itoa(ctx) + " " + itoa(size) + " " + itoa(eos))
	switch mode {
	case "prepend":
		if size > 0 {
			info("append " + itoa(setBuffer(3, size, 0, ":suffix")))
		}
	case "properties":
		if size > 0 {
			for _, p := range []string{"upstream.address", "upstream.port", "upstream.local_address",
				"upstream.tls_version", "upstream.subject_peer_certificate", "upstream.subject_local_certificate",
				"upstream.dns_san_peer_certificate"} {
				logProperty(p)
			}
		}
	case "count":
		if c := counts[ctx]; c != nil {
			data, _ := getBuffer(3, 0, size)
			c.up += uint64(len(data))
		}
	}
	return 0
}

//go:wasmexport proxy_on_downstream_connection_close
func onDownstreamClose(ctx, peer uint32) {
	resetAllocations()
	info("downstream_close " + itoa(ctx) + " " + itoa(peer))
}

//go:wasmexport proxy_on_upstream_connection_close
func onUpstreamClose(ctx, peer uint32) {
	resetAllocations()
	info("upstream_close " + itoa(ctx) + " " + itoa(peer))
}

//go:wasmexport proxy_on_done
func onDone(ctx uint32) uint32 {
	info("done " + itoa(ctx))
	return 1
}

//go:wasmexport proxy_on_log
func onLog(ctx uint32) {
	info("log " + itoa(ctx))
	if c := counts[ctx]; c != nil {
		info("count: down " + strconv.FormatUint(c.down, 10) + " fnv " +
			strconv.FormatUint(c.downHash.Sum64(), 16) + " up " + strconv.FormatUint(c.up, 10))
	}
}

//go:wasmexport proxy_on_delete
func onDelete(ctx uint32) {
	info("delete " + itoa(ctx))
	delete(counts, ctx)
}

// logProperty logs "<path>=<value>" with Envoy's encodings decoded:
// 8-byte integers as numbers, 1-byte bools as true/false, strings as is;
// "<path>: status N" when absent.
func logProperty(path string) {
	v, st := getProperty(path)
	if st != 0 {
		info(path + ": status " + itoa(st))
		return
	}
	s := string(v)
	switch {
	case strings.HasSuffix(path, "id") || strings.HasSuffix(path, "port"):
		s = strconv.FormatUint(binary.LittleEndian.Uint64(v), 10)
	case strings.HasSuffix(path, "mtls"):
		s = strconv.FormatBool(v[0] == 1) + "/" + hex.EncodeToString(v)
	}
	info(path + "=" + s)
}
