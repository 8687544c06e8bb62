package config

import (
	"encoding/hex"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// HealthCheck is a cluster's active health checker (Envoy's
// core.v3.HealthCheck): every endpoint is checked on its own schedule
// and leaves load balancing while it fails. Exactly one of HTTP, TCP and
// GRPC is set.
type HealthCheck struct {
	// Timeout bounds one check; past it the check is a network failure.
	Timeout Duration `json:"timeout"`
	// Interval is the time between checks of a healthy host once the
	// cluster has carried traffic.
	Interval Duration `json:"interval"`
	// UnhealthyInterval is the interval of a host marked unhealthy
	// (default Interval); the edge intervals are used while a transition
	// is pending (a threshold not reached yet).
	UnhealthyInterval     Duration `json:"unhealthy_interval"`
	UnhealthyEdgeInterval Duration `json:"unhealthy_edge_interval"`
	HealthyEdgeInterval   Duration `json:"healthy_edge_interval"`
	// NoTrafficInterval is the interval until the cluster has made its
	// first upstream connection (default 60s); NoTrafficHealthyInterval
	// replaces it for a healthy host when set.
	NoTrafficInterval        Duration `json:"no_traffic_interval"`
	NoTrafficHealthyInterval Duration `json:"no_traffic_healthy_interval,omitempty"`
	// InitialJitter delays the first check by a random time below it;
	// IntervalJitter and IntervalJitterPercent add a random time to each
	// interval.
	InitialJitter         Duration `json:"initial_jitter,omitempty"`
	IntervalJitter        Duration `json:"interval_jitter,omitempty"`
	IntervalJitterPercent uint32   `json:"interval_jitter_percent,omitempty"`
	// UnhealthyThreshold network failures in a row make a healthy host
	// unhealthy (a failed answer does at once); HealthyThreshold
	// successes in a row make an unhealthy host healthy (the first check
	// of a host needs one).
	UnhealthyThreshold uint32 `json:"unhealthy_threshold"`
	HealthyThreshold   uint32 `json:"healthy_threshold"`
	// ReuseConnection keeps the checker's connection between checks
	// (default true).
	ReuseConnection bool `json:"reuse_connection"`

	HTTP *HTTPHealthCheck `json:"http,omitempty"`
	TCP  *TCPHealthCheck  `json:"tcp,omitempty"`
	GRPC *GRPCHealthCheck `json:"grpc,omitempty"`
}

// HTTPHealthCheck sends GET Path with Host (the cluster's name when
// empty) and passes when the status is in ExpectedStatuses.
type HTTPHealthCheck struct {
	Host string `json:"host,omitempty"`
	Path string `json:"path"`
	// ExpectedStatuses are [start, end) ranges; default [200, 201).
	ExpectedStatuses []StatusRange `json:"expected_statuses"`
	// RetriableStatuses fail a check the way a network failure does
	// (counted toward unhealthy_threshold) instead of at once.
	RetriableStatuses []StatusRange    `json:"retriable_statuses,omitempty"`
	Headers           *HeaderMutations `json:"request_headers,omitempty"`
	// HTTP2 is codec_client_type HTTP2 (prior knowledge, h2c on plaintext).
	HTTP2 bool `json:"http2,omitempty"`
}

// StatusRange is an HTTP status range [Start, End).
type StatusRange struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// In reports that code is in one of ranges.
func InStatusRanges(ranges []StatusRange, code int) bool {
	for _, r := range ranges {
		if int64(code) >= r.Start && int64(code) < r.End {
			return true
		}
	}
	return false
}

// TCPHealthCheck connects and, when Send is set, writes it and passes
// once every Receive payload has arrived, in order (other bytes may
// come between them). Without Send and Receive a connect passes.
type TCPHealthCheck struct {
	Send    []byte   `json:"send,omitempty"`
	Receive [][]byte `json:"receive,omitempty"`
}

// GRPCHealthCheck calls grpc.health.v1.Health/Check over the cluster's
// HTTP/2 with ServiceName; SERVING passes.
type GRPCHealthCheck struct {
	ServiceName string `json:"service_name,omitempty"`
	// Authority is the :authority sent (the cluster's name when empty).
	Authority string `json:"authority,omitempty"`
}

const defaultNoTrafficInterval = 60 * time.Second

func durOr(d *durationpb.Duration, def time.Duration) Duration {
	if d == nil {
		return Duration(def)
	}
	return Duration(d.AsDuration())
}

// buildHealthChecks reads Cluster.health_checks. Envoy runs one checker
// per cluster and refuses more ("Multiple health checks not supported").
func buildHealthChecks(pbs []*corev3.HealthCheck, c *Cluster, path string) (*HealthCheck, error) {
	if len(pbs) == 0 {
		return nil, nil
	}
	if len(pbs) > 1 {
		return nil, fieldError(path, "Multiple health checks not supported")
	}
	pb := pbs[0]
	path = indexPath(path, 0)
	hc := &HealthCheck{
		Timeout:               durOr(pb.GetTimeout(), 0),
		Interval:              durOr(pb.GetInterval(), 0),
		NoTrafficInterval:     durOr(pb.GetNoTrafficInterval(), defaultNoTrafficInterval),
		InitialJitter:         durOr(pb.GetInitialJitter(), 0),
		IntervalJitter:        durOr(pb.GetIntervalJitter(), 0),
		IntervalJitterPercent: pb.GetIntervalJitterPercent(),
		UnhealthyThreshold:    pb.GetUnhealthyThreshold().GetValue(),
		HealthyThreshold:      pb.GetHealthyThreshold().GetValue(),
		ReuseConnection:       true,
	}
	if d := pb.GetNoTrafficHealthyInterval(); d != nil {
		hc.NoTrafficHealthyInterval = Duration(d.AsDuration())
	}
	hc.UnhealthyInterval = durOr(pb.GetUnhealthyInterval(), hc.Interval.D())
	hc.UnhealthyEdgeInterval = durOr(pb.GetUnhealthyEdgeInterval(), hc.UnhealthyInterval.D())
	hc.HealthyEdgeInterval = durOr(pb.GetHealthyEdgeInterval(), hc.Interval.D())
	if v := pb.GetReuseConnection(); v != nil {
		hc.ReuseConnection = v.GetValue()
	}
	// Envoy's validation requires these (PGV); a zero threshold would
	// never be reached, which Envoy accepts but means "at the first".
	if hc.UnhealthyThreshold == 0 {
		hc.UnhealthyThreshold = 1
	}
	if hc.HealthyThreshold == 0 {
		hc.HealthyThreshold = 1
	}
	switch {
	case pb.GetHttpHealthCheck() != nil:
		h := pb.GetHttpHealthCheck()
		hPath := joinPath(path, "http_health_check")
		out := &HTTPHealthCheck{Host: h.GetHost(), Path: h.GetPath(), HTTP2: h.GetCodecClientType() == typev3.CodecClientType_HTTP2}
		if h.GetCodecClientType() == typev3.CodecClientType_HTTP3 {
			return nil, notSupported(joinPath(hPath, "codec_client_type"), "HTTP3")
		}
		var err error
		if out.ExpectedStatuses, err = statusRanges(h.GetExpectedStatuses(), joinPath(hPath, "expected_statuses"), true); err != nil {
			return nil, err
		}
		if out.RetriableStatuses, err = statusRanges(h.GetRetriableStatuses(), joinPath(hPath, "retriable_statuses"), false); err != nil {
			return nil, err
		}
		if out.Headers, err = buildHeaderMutations(h.GetRequestHeadersToAdd(), h.GetRequestHeadersToRemove(),
			joinPath(hPath, "request_headers_to_add"), joinPath(hPath, "request_headers_to_remove")); err != nil {
			return nil, err
		}
		hc.HTTP = out
	case pb.GetTcpHealthCheck() != nil:
		t := pb.GetTcpHealthCheck()
		tPath := joinPath(path, "tcp_health_check")
		out := &TCPHealthCheck{}
		if s := t.GetSend(); s != nil {
			b, err := payloadBytes(s, joinPath(tPath, "send"))
			if err != nil {
				return nil, err
			}
			out.Send = b
		}
		for i, r := range t.GetReceive() {
			b, err := payloadBytes(r, indexPath(joinPath(tPath, "receive"), i))
			if err != nil {
				return nil, err
			}
			out.Receive = append(out.Receive, b)
		}
		hc.TCP = out
	case pb.GetGrpcHealthCheck() != nil:
		g := pb.GetGrpcHealthCheck()
		if !c.HTTP2 {
			// Envoy's words (health_checker_impl.cc).
			return nil, fieldError(joinPath(path, "grpc_health_check"), "%s cluster must support HTTP/2 for gRPC healthchecking", c.Name)
		}
		hc.GRPC = &GRPCHealthCheck{ServiceName: g.GetServiceName(), Authority: g.GetAuthority()}
	default:
		return nil, notSupported(joinPath(path, "custom_health_check"), pb.GetCustomHealthCheck().GetName())
	}
	return hc, nil
}

// statusRanges reads Int64Range lists as Envoy's HttpStatusChecker: each
// start < end, start >= 100, end <= 600; an empty expected list is 200.
func statusRanges(pbs []*typev3.Int64Range, path string, expected bool) ([]StatusRange, error) {
	var out []StatusRange
	for i, r := range pbs {
		p := indexPath(path, i)
		switch {
		case r.GetStart() >= r.GetEnd():
			return nil, fieldError(p, "Invalid http status range: expecting start < end, but found start=%d and end=%d", r.GetStart(), r.GetEnd())
		case r.GetStart() < 100:
			return nil, fieldError(p, "Invalid http status range: expecting start >= 100, but found start=%d", r.GetStart())
		case r.GetEnd() > 600:
			return nil, fieldError(p, "Invalid http status range: expecting end <= 600, but found end=%d", r.GetEnd())
		}
		out = append(out, StatusRange{r.GetStart(), r.GetEnd()})
	}
	if expected && len(out) == 0 {
		out = []StatusRange{{200, 201}}
	}
	return out, nil
}

// payloadBytes is a Payload's bytes: text is hex, as Envoy reads it.
func payloadBytes(p *corev3.HealthCheck_Payload, path string) ([]byte, error) {
	if p.GetPayload() == nil {
		return nil, fieldError(path, "a payload needs text or binary")
	}
	if _, ok := p.GetPayload().(*corev3.HealthCheck_Payload_Binary); ok {
		return p.GetBinary(), nil
	}
	b, err := hex.DecodeString(p.GetText())
	if err != nil || len(b) == 0 {
		return nil, fieldError(joinPath(path, "text"), "invalid hex string '%s'", p.GetText())
	}
	return b, nil
}
