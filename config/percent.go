package config

import (
	"math/rand/v2"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// Percent is a FractionalPercent (often a RuntimeFractionalPercent's
// default_value): Numerator out of Denominator. There is no runtime
// lookup, so a runtime key's default applies, as in Envoy when the key is
// unset. It is the one sampler of Envoy's fractions here: route
// runtime_fraction and the native filters' filter_enabled and the like.
type Percent struct {
	Numerator   uint32 `json:"numerator"`
	Denominator uint32 `json:"denominator"`
}

// Sample reports whether this request falls in the fraction; a nil
// Percent is 0%.
func (p *Percent) Sample() bool {
	switch {
	case p == nil || p.Numerator == 0:
		return false
	case p.Numerator >= p.Denominator:
		return true
	}
	return rand.Uint32N(p.Denominator) < p.Numerator
}

var percentDenominators = map[typev3.FractionalPercent_DenominatorType]uint32{
	typev3.FractionalPercent_HUNDRED:      100,
	typev3.FractionalPercent_TEN_THOUSAND: 10_000,
	typev3.FractionalPercent_MILLION:      1_000_000,
}

// BuildPercent reads a FractionalPercent at path; nil stays nil.
func BuildPercent(pb *typev3.FractionalPercent, path string) (*Percent, error) {
	if pb == nil {
		return nil, nil
	}
	d, ok := percentDenominators[pb.GetDenominator()]
	if !ok {
		return nil, fieldError(joinPath(path, "denominator"), "unknown denominator %v", pb.GetDenominator())
	}
	return &Percent{Numerator: pb.GetNumerator(), Denominator: d}, nil
}

// SampleStable is Sample with the caller's random value instead of a
// fresh one, as Envoy's featureEnabled(key, default, stable_random): the
// value modulo the denominator falls below the numerator. A stream
// passes its one random value (Envoy: its stream id), so every decision
// made with it for the stream agrees. A nil Percent is 0%.
func (p *Percent) SampleStable(random uint64) bool {
	if p == nil || p.Numerator == 0 || p.Denominator == 0 {
		return false
	}
	return random%uint64(p.Denominator) < uint64(p.Numerator)
}
