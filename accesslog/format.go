// Package accesslog renders Envoy-style access log lines (the
// SubstitutionFormatString command operators) from a finished stream's
// filter.StreamInfo and headers, and derives Envoy's response flags from
// the response code details the proxy records.
package accesslog

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wasmproxy/wasmproxy/filter"
)

// DefaultFormat is Envoy's default access log format, used when a logger
// has no log_format (Envoy docs: "Default format string").
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// Lookup returns a header's first value; ok is false when it is absent.
type Lookup func(name string) (value string, ok bool)

// Entry is what one log line is rendered from. Nil lookups mean "no
// headers" (a TCP session).
type Entry struct {
	Info             *filter.StreamInfo
	RequestHeaders   Lookup
	ResponseHeaders  Lookup
	ResponseTrailers Lookup
	Hostname         string
	RequestedServer  string
	// LocalReplyBody is %LOCAL_REPLY_BODY%: the body of the local reply
	// being formatted (local_reply_config's body_format); "" elsewhere.
	LocalReplyBody string
}

type piece struct {
	lit  string
	op   string
	args []string // REQ/RESP/TRAILER: header, alternative
	max  int      // truncation length, 0 = none
	tfmt string   // START_TIME format
}

// Formatter is a parsed format string; safe for concurrent use.
type Formatter struct {
	pieces []piece
	// OmitEmpty (omit_empty_values) prints an absent value as "" rather
	// than "-". Set it before the first Format.
	OmitEmpty bool
}

var known = map[string]bool{
	"START_TIME": true, "REQ": true, "RESP": true, "TRAILER": true,
	"RESPONSE_CODE": true, "RESPONSE_CODE_DETAILS": true, "RESPONSE_FLAGS": true,
	"BYTES_RECEIVED": true, "BYTES_SENT": true, "DURATION": true,
	"UPSTREAM_HOST": true, "UPSTREAM_CLUSTER": true, "UPSTREAM_LOCAL_ADDRESS": true,
	"DOWNSTREAM_REMOTE_ADDRESS": true, "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": true,
	"DOWNSTREAM_LOCAL_ADDRESS": true, "PROTOCOL": true, "ROUTE_NAME": true,
	"CONNECTION_ID": true, "REQUESTED_SERVER_NAME": true, "HOSTNAME": true,
	"UPSTREAM_TRANSPORT_FAILURE_REASON": true, "LOCAL_REPLY_BODY": true,
	"DYNAMIC_METADATA": true,
}

// Parse parses an Envoy format string. Errors name the offending operator.
func Parse(format string) (*Formatter, error) {
	f := &Formatter{}
	var lit strings.Builder
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' { // "%%" is a literal %
			lit.WriteByte('%')
			i += 2
			continue
		}
		// The argument in parentheses may hold '%' (START_TIME's
		// strftime format), so the closing '%' is looked for after ')'.
		from := i + 1
		for from < len(format) && (format[from] == '_' || format[from] >= 'A' && format[from] <= 'Z' || format[from] >= '0' && format[from] <= '9') {
			from++
		}
		if from < len(format) && format[from] == '(' {
			if c := strings.IndexByte(format[from:], ')'); c >= 0 {
				from += c
			}
		}
		end := strings.IndexByte(format[from:], '%')
		if end >= 0 {
			end += from - (i + 1)
		}
		if end < 0 {
			return nil, fmt.Errorf("access log format: unterminated command at offset %d: %q", i, format[i:])
		}
		cmd := format[i+1 : i+1+end]
		p, err := parseCommand(cmd)
		if err != nil {
			return nil, fmt.Errorf("access log format: %v", err)
		}
		if lit.Len() > 0 {
			f.pieces = append(f.pieces, piece{lit: lit.String()})
			lit.Reset()
		}
		f.pieces = append(f.pieces, p)
		i += 2 + end
	}
	if lit.Len() > 0 {
		f.pieces = append(f.pieces, piece{lit: lit.String()})
	}
	return f, nil
}

// parseCommand parses NAME, NAME(args) and NAME(args):N, where N is a
// truncation length (Envoy's %REQ(X?Y):Z%).
func parseCommand(cmd string) (piece, error) {
	name, arg, hasArg, max := cmd, "", false, 0
	if o := strings.IndexByte(cmd, '('); o >= 0 {
		c := strings.LastIndexByte(cmd, ')')
		if c < o {
			return piece{}, fmt.Errorf("%%%s%%: missing ')'", cmd)
		}
		if tail := cmd[c+1:]; tail != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(tail, ":"))
			if !strings.HasPrefix(tail, ":") || err != nil || n <= 0 {
				return piece{}, fmt.Errorf("%%%s%%: %q after ')' is not a length ':N'", cmd, tail)
			}
			max = n
		}
		name, arg, hasArg = cmd[:o], cmd[o+1:c], true
	}
	if !known[name] {
		return piece{}, fmt.Errorf("%%%s%%: unknown or unsupported command operator %q", cmd, name)
	}
	p := piece{op: name, max: max}
	switch name {
	case "REQ", "RESP", "TRAILER":
		if !hasArg || arg == "" {
			return piece{}, fmt.Errorf("%%%s%%: needs a header name, as %s(X?Y):Z", cmd, name)
		}
		p.args = strings.SplitN(strings.ToLower(arg), "?", 2)
	case "START_TIME":
		p.tfmt = arg
	case "DYNAMIC_METADATA":
		// NAMESPACE:KEY:... — a namespace, then a path of keys into it.
		if !hasArg || arg == "" || strings.HasPrefix(arg, ":") {
			return piece{}, fmt.Errorf("%%%s%%: needs a metadata namespace, as DYNAMIC_METADATA(NAMESPACE:KEY*):Z", cmd)
		}
		p.args = strings.Split(arg, ":")
		for _, k := range p.args[1:] {
			if k == "" {
				return piece{}, fmt.Errorf("%%%s%%: an empty key in %q", cmd, arg)
			}
		}
	default:
		if hasArg {
			return piece{}, fmt.Errorf("%%%s%%: takes no argument", cmd)
		}
	}
	return p, nil
}

// Format renders one line.
func (f *Formatter) Format(e *Entry) string {
	var b strings.Builder
	b.Grow(256) // one allocation for a typical line rather than a doubling series
	for _, p := range f.pieces {
		if p.op == "" {
			b.WriteString(p.lit)
			continue
		}
		v := value(&p, e)
		if f.OmitEmpty && v == "-" {
			continue
		}
		if p.max > 0 && len(v) > p.max {
			v = v[:p.max]
		}
		b.WriteString(v)
	}
	return b.String()
}

func header(l Lookup, names []string) string {
	if l == nil {
		return "-"
	}
	for _, n := range names {
		if v, ok := l(n); ok {
			return v
		}
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func value(p *piece, e *Entry) string {
	si := e.Info
	switch p.op {
	case "REQ":
		return header(e.RequestHeaders, p.args)
	case "RESP":
		return header(e.ResponseHeaders, p.args)
	case "TRAILER":
		return header(e.ResponseTrailers, p.args)
	case "START_TIME":
		return StrfTime(si.StartTime.UTC(), p.tfmt)
	case "RESPONSE_CODE":
		return strconv.Itoa(si.ResponseCode) // Envoy prints 0 when there was none
	case "RESPONSE_CODE_DETAILS":
		return orDash(si.ResponseCodeDetails)
	case "RESPONSE_FLAGS":
		return orDash(Flags(si.ResponseCodeDetails))
	case "BYTES_RECEIVED":
		return strconv.FormatUint(si.RequestBodyBytes.Load(), 10)
	case "BYTES_SENT":
		return strconv.FormatUint(si.ResponseBodyBytes.Load(), 10)
	case "DURATION":
		if si.EndTime.IsZero() {
			return "-"
		}
		return strconv.FormatInt(si.EndTime.Sub(si.StartTime).Milliseconds(), 10)
	case "UPSTREAM_HOST":
		return orDash(si.UpstreamAddr)
	case "UPSTREAM_CLUSTER":
		return orDash(si.ClusterName)
	case "UPSTREAM_LOCAL_ADDRESS":
		if !si.UpstreamLocalAddr.IsValid() {
			return "-"
		}
		return si.UpstreamLocalAddr.String()
	case "DOWNSTREAM_REMOTE_ADDRESS":
		if !si.DownstreamAddr.IsValid() {
			return "-"
		}
		return si.DownstreamAddr.String()
	case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
		if !si.DownstreamAddr.IsValid() {
			return "-"
		}
		return si.DownstreamAddr.Addr().String()
	case "DOWNSTREAM_LOCAL_ADDRESS":
		if !si.LocalAddr.IsValid() {
			return "-"
		}
		return si.LocalAddr.String()
	case "PROTOCOL":
		return orDash(si.Protocol)
	case "ROUTE_NAME":
		return orDash(si.RouteName)
	case "CONNECTION_ID":
		return strconv.FormatUint(si.ConnectionID, 10)
	case "DYNAMIC_METADATA":
		v, ok := dynamicMetadata(p, si)
		if !ok {
			return "-"
		}
		if s, isString := v.(string); isString {
			return s
		}
		b, err := json.Marshal(v)
		if err != nil {
			return "-"
		}
		return string(b)
	case "REQUESTED_SERVER_NAME":
		return orDash(e.RequestedServer)
	case "HOSTNAME":
		return orDash(e.Hostname)
	case "LOCAL_REPLY_BODY":
		// Envoy renders the body as it is, empty included (never "-").
		return e.LocalReplyBody
	}
	return "-" // UPSTREAM_TRANSPORT_FAILURE_REASON: not recorded yet
}

// StrfTime renders t with a strftime-style format; empty means Envoy's
// default %Y-%m-%dT%H:%M:%E3SZ. Supports %Y %m %d %H %M %S %E3S..%E9S %f
// %z %s %j %b %a %%; others are copied as written.
func StrfTime(t time.Time, format string) string {
	if format == "" {
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch format[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 's':
			fmt.Fprintf(&b, "%d", t.Unix())
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'b':
			b.WriteString(t.Format("Jan"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'f':
			fmt.Fprintf(&b, "%09d", t.Nanosecond())
		case '%':
			b.WriteByte('%')
		case 'E':
			// %E<n>S: seconds with n fractional digits.
			if i+2 < len(format) && format[i+1] >= '1' && format[i+1] <= '9' && format[i+2] == 'S' {
				n := int(format[i+1] - '0')
				frac := fmt.Sprintf("%09d", t.Nanosecond())
				fmt.Fprintf(&b, "%02d.%s", t.Second(), frac[:n])
				i += 2
				continue
			}
			b.WriteString("%E")
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

// dynamicMetadata is the value a DYNAMIC_METADATA piece names in the
// stream's dynamic metadata (filter.DynamicMetadata); ok is false when
// it is absent. A string renders as itself, anything else as JSON, as
// Envoy's metadata formatter does.
func dynamicMetadata(p *piece, si *filter.StreamInfo) (any, bool) {
	if si == nil {
		return nil, false
	}
	return si.DynamicMetadata.Lookup(p.args[0], p.args[1:]...)
}
