package accesslog

import "strings"

// Filter decides whether an entry is logged (Envoy's AccessLogFilter).
type Filter interface{ Match(e *Entry) bool }

// Op is a ComparisonFilter operator.
type Op int

// Envoy's ComparisonFilter.Op values.
const (
	EQ Op = iota
	GE
	LE
)

func compare(op Op, v, want int64) bool {
	switch op {
	case GE:
		return v >= want
	case LE:
		return v <= want
	}
	return v == want
}

// StatusCode is status_code_filter (the comparison's runtime default_value).
type StatusCode struct {
	Op    Op
	Value int64
}

// Match implements Filter.
func (f StatusCode) Match(e *Entry) bool {
	return compare(f.Op, int64(e.Info.ResponseCode), f.Value)
}

// Duration is duration_filter, in milliseconds.
type Duration struct {
	Op    Op
	Value int64
}

// Match implements Filter.
func (f Duration) Match(e *Entry) bool {
	if e.Info.EndTime.IsZero() {
		return false
	}
	return compare(f.Op, e.Info.EndTime.Sub(e.Info.StartTime).Milliseconds(), f.Value)
}

// NotHealthCheck is not_health_check_filter. The proxy has no health
// check filter, so no stream is a health check and every entry matches.
type NotHealthCheck struct{}

// Match implements Filter.
func (NotHealthCheck) Match(*Entry) bool { return true }

// And is and_filter: all must match.
type And []Filter

// Match implements Filter.
func (fs And) Match(e *Entry) bool {
	for _, f := range fs {
		if !f.Match(e) {
			return false
		}
	}
	return true
}

// Or is or_filter: one must match.
type Or []Filter

// Match implements Filter.
func (fs Or) Match(e *Entry) bool {
	for _, f := range fs {
		if f.Match(e) {
			return true
		}
	}
	return false
}

// ResponseFlag is response_flag_filter: with no flags it matches any entry
// with a flag set, otherwise one whose flag is listed.
type ResponseFlag struct{ Flags []string }

// Match implements Filter.
func (f ResponseFlag) Match(e *Entry) bool {
	got := Flags(e.Info.ResponseCodeDetails)
	if got == "" {
		return false
	}
	if len(f.Flags) == 0 {
		return true
	}
	for _, want := range f.Flags {
		for _, g := range strings.Split(got, ",") {
			if g == want {
				return true
			}
		}
	}
	return false
}

// HeaderFilter is header_filter: Matches reports whether the request
// headers match. The caller builds it from the config's HeaderMatcher with
// the proxy's existing matcher, so there is one header-matching code.
type HeaderFilter struct {
	Matches func(request Lookup) bool
}

// Match implements Filter; a TCP session has no headers and never matches.
func (f HeaderFilter) Match(e *Entry) bool {
	if e.RequestHeaders == nil {
		return false
	}
	return f.Matches(e.RequestHeaders)
}
