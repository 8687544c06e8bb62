package config

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// buildTCPKeepalive reads a TcpKeepalive. Envoy passes each set value to
// setsockopt, where Linux refuses 0 for all three, so that connection
// would fail; here a 0 is refused at load, naming the field.
func buildTCPKeepalive(pb *corev3.TcpKeepalive, path string) (*TCPKeepalive, error) {
	ka := &TCPKeepalive{}
	if v := pb.GetKeepaliveProbes(); v != nil {
		if v.GetValue() == 0 {
			return nil, fieldError(joinPath(path, "keepalive_probes"), "must be at least 1")
		}
		ka.Probes = v.GetValue()
	}
	if v := pb.GetKeepaliveTime(); v != nil {
		if v.GetValue() == 0 {
			return nil, fieldError(joinPath(path, "keepalive_time"), "must be at least 1 (seconds)")
		}
		ka.Time = Duration(time.Duration(v.GetValue()) * time.Second)
	}
	if v := pb.GetKeepaliveInterval(); v != nil {
		if v.GetValue() == 0 {
			return nil, fieldError(joinPath(path, "keepalive_interval"), "must be at least 1 (seconds)")
		}
		ka.Interval = Duration(time.Duration(v.GetValue()) * time.Second)
	}
	return ka, nil
}
