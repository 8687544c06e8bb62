package accesslog

import "strings"

// Flags derives Envoy's %RESPONSE_FLAGS% short codes from the response
// code details the proxy records (one owner for this mapping, so the data
// path needs no second bookkeeping). Empty when no flag applies.
func Flags(details string) string {
	d := details
	var f string
	switch {
	case d == "":
		return ""
	case d == "route_not_found":
		f = "NR"
	case d == "cluster_not_found":
		f = "NC"
	case d == "no_healthy_upstream":
		f = "UH"
	case d == "upstream_response_timeout", d == "upstream_rq_timeout":
		f = "UT"
	case d == "request_overall_timeout", d == "max_duration_timeout", d == "downstream_rq_timeout":
		f = "UT"
	case d == "upstream_max_stream_duration_reached":
		f = "UMSDR"
	case d == "stream_idle_timeout", d == "idle_timeout", d == "downstream_rq_idle_timeout", d == "downstream_cx_idle_timeout":
		f = "SI"
	case d == "downstream_remote_disconnect":
		f = "DC"
	case d == "upstream_cx_connect_timeout", d == "upstream_connect_failure":
		f = "UF"
	case d == "filter_config_not_found":
		// An ECDS filter whose config never came (Envoy's
		// MissingConfigFilter sets NoFilterConfigFound).
		f = "NFCF"
	case strings.HasPrefix(d, "upstream_reset_before_response_started"):
		switch {
		case strings.Contains(d, "connection_failure"), strings.Contains(d, "connect"):
			f = "UF"
		case strings.Contains(d, "overflow"):
			f = "UO"
		default:
			f = "UC"
		}
	case strings.HasPrefix(d, "upstream_reset_after_response_started"):
		f = "UPE"
	case strings.Contains(d, "rate_limited"):
		f = "RL"
	case strings.HasPrefix(d, "ext_authz"):
		f = "UAEX"
	case strings.HasPrefix(d, "http1.") || strings.HasPrefix(d, "http2.") || strings.HasPrefix(d, "codec_error"):
		f = "DPE"
	}
	return f
}
