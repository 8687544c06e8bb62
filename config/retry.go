package config

import (
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// RetryPolicy is a route's (or its virtual host's) retry_policy.
type RetryPolicy struct {
	// RetryOn are the retry_on conditions, each one of retryOnKnown.
	RetryOn []string `json:"retry_on"`
	// NumRetries is the most retries after the first attempt (Envoy's
	// default 1).
	NumRetries uint32 `json:"num_retries"`
	// PerTryTimeout bounds each attempt (0: only the route timeout).
	PerTryTimeout Duration `json:"per_try_timeout,omitempty"`
	// BackoffBase and BackoffMax are retry_back_off (Envoy's defaults
	// 25ms and ten times the base).
	BackoffBase Duration `json:"backoff_base"`
	BackoffMax  Duration `json:"backoff_max"`
	// RetriableStatusCodes are retried under "retriable-status-codes".
	RetriableStatusCodes []uint32 `json:"retriable_status_codes,omitempty"`
}

// Has reports whether cond is among the policy's retry_on conditions.
func (p *RetryPolicy) Has(cond string) bool {
	for _, c := range p.RetryOn {
		if c == cond {
			return true
		}
	}
	return false
}

// HasGRPC reports whether the policy has a gRPC condition (see
// RetryGRPCStatus), so a response's grpc-status is worth reading.
func (p *RetryPolicy) HasGRPC() bool {
	for _, c := range p.RetryOn {
		if grpcRetryOn[c] {
			return true
		}
	}
	return false
}

var grpcRetryOn = map[string]bool{
	"cancelled": true, "deadline-exceeded": true, "internal": true,
	"resource-exhausted": true, "unavailable": true,
}

// retryOnKnown are the retry_on conditions wasmproxy implements.
var retryOnKnown = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "connect-failure": true,
	"retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true,
	// gRPC conditions (x-envoy-retry-grpc-on): the grpc-status of a
	// trailers-only response, named by the code it retries.
	"cancelled": true, "deadline-exceeded": true, "internal": true,
	"resource-exhausted": true, "unavailable": true,
}

// RetryGRPCStatus is the gRPC retry_on condition that retries a response
// carrying grpc-status code in its headers ("" for none): Envoy's
// RETRY_ON_GRPC_* conditions.
func RetryGRPCStatus(code int) string {
	switch code {
	case 1:
		return "cancelled"
	case 4:
		return "deadline-exceeded"
	case 8:
		return "resource-exhausted"
	case 13:
		return "internal"
	case 14:
		return "unavailable"
	}
	return ""
}

// Envoy's retry back-off defaults (router/retry_state_impl.cc).
const (
	defaultRetryBackoffBase = 25 * time.Millisecond
	retryBackoffMaxFactor   = 10
)

// buildRetryPolicy reads a route.v3.RetryPolicy; nil when pb is nil.
func buildRetryPolicy(pb *routev3.RetryPolicy, path string) (*RetryPolicy, error) {
	if pb == nil {
		return nil, nil
	}
	p := &RetryPolicy{NumRetries: 1, RetriableStatusCodes: pb.GetRetriableStatusCodes()}
	for _, c := range strings.Split(pb.GetRetryOn(), ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !retryOnKnown[c] {
			return nil, notSupported(joinPath(path, "retry_on"), c)
		}
		p.RetryOn = append(p.RetryOn, c)
	}
	if n := pb.GetNumRetries(); n != nil {
		p.NumRetries = n.GetValue()
	}
	var err error
	if t := pb.GetPerTryTimeout(); t != nil {
		if p.PerTryTimeout, err = nonNegative(t, joinPath(path, "per_try_timeout")); err != nil {
			return nil, err
		}
	}
	p.BackoffBase = Duration(defaultRetryBackoffBase)
	if b := pb.GetRetryBackOff(); b != nil {
		if p.BackoffBase, err = nonNegative(b.GetBaseInterval(), joinPath(path, "retry_back_off.base_interval")); err != nil {
			return nil, err
		}
		if m := b.GetMaxInterval(); m != nil {
			if p.BackoffMax, err = nonNegative(m, joinPath(path, "retry_back_off.max_interval")); err != nil {
				return nil, err
			}
			// Envoy's words (router/retry_policy_impl.cc).
			if p.BackoffMax < p.BackoffBase {
				return nil, fieldError(joinPath(path, "retry_back_off.max_interval"), "max_interval must be greater than or equal to the base_interval")
			}
		}
	}
	if p.BackoffMax == 0 {
		p.BackoffMax = p.BackoffBase * retryBackoffMaxFactor
	}
	return p, nil
}
