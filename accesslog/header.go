package accesslog

// FormatHeaderValue renders f as a header value, the way Envoy's header
// parser uses the substitution formatter (omit_empty_values): a command
// with no value renders as nothing, not as the access log's "-". A
// REQ/RESP/TRAILER header whose value is literally "-" is kept.
func (f *Formatter) FormatHeaderValue(e *Entry) string {
	if len(f.pieces) == 1 && f.pieces[0].op == "" {
		return f.pieces[0].lit
	}
	var b []byte
	for _, p := range f.pieces {
		if p.op == "" {
			b = append(b, p.lit...)
			continue
		}
		var v string
		switch p.op {
		case "REQ":
			v = headerOrEmpty(e.RequestHeaders, p.args)
		case "RESP":
			v = headerOrEmpty(e.ResponseHeaders, p.args)
		case "TRAILER":
			v = headerOrEmpty(e.ResponseTrailers, p.args)
		default:
			if v = value(&p, e); v == "-" {
				v = ""
			}
		}
		if p.max > 0 && len(v) > p.max {
			v = v[:p.max]
		}
		b = append(b, v...)
	}
	return string(b)
}

func headerOrEmpty(l Lookup, names []string) string {
	if l == nil {
		return ""
	}
	for _, n := range names {
		if v, ok := l(n); ok {
			return v
		}
	}
	return ""
}
