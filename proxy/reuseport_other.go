//go:build !linux

package proxy

import "syscall"

// reusePortControl is never called off Linux: Envoy force-disables
// reuse_port for TCP on macOS (the last socket takes every connection)
// and Windows (undefined), and wasmproxy does the same.
func reusePortControl(_, _ string, _ syscall.RawConn) error { return nil }

// reusePortSupported: off Linux, enable_reuse_port is ignored for TCP.
const reusePortSupported = false
