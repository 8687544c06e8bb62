package proxy

import (
	"os"

	"github.com/wasmproxy/wasmproxy/accesslog"
	"github.com/wasmproxy/wasmproxy/config"
	"github.com/wasmproxy/wasmproxy/filter"
	"github.com/wasmproxy/wasmproxy/stats"
)

// Access logging (package accesslog renders and writes; this file builds
// a connection manager's or TCP proxy's loggers from the model and makes
// the entry of a finished stream or connection). The server's Files open
// each path once, across listeners and reloads.

// newAccessLoggers builds the loggers of one access_log list. An error
// (a file that cannot be opened) names the path.
func (s *Server) newAccessLoggers(cfgs []*config.AccessLog) (accesslog.Loggers, error) {
	var out accesslog.Loggers
	for _, c := range cfgs {
		var format accesslog.Format
		if c.JSON != nil {
			j, err := accesslog.ParseJSON(c.JSON)
			if err != nil {
				return nil, err
			}
			j.OmitEmpty = c.OmitEmptyValues
			format = j
		} else {
			text := c.Format
			if text == "" {
				text = accesslog.DefaultFormat
			}
			f, err := accesslog.Parse(text)
			if err != nil {
				return nil, err
			}
			f.OmitEmpty = c.OmitEmptyValues
			format = f
		}
		w, err := s.accessLogs.Get(c.Path)
		if err != nil {
			return nil, err
		}
		out = append(out, &accesslog.Logger{Filter: accessLogFilter(c.Filter), Format: format, Out: w})
	}
	return out, nil
}

// accessLogFilter turns the model's filter into accesslog's; nil logs
// everything.
func accessLogFilter(f *config.AccessLogFilter) accesslog.Filter {
	if f == nil {
		return nil
	}
	cmp := func(c *config.AccessLogComparison) (accesslog.Op, int64) {
		op := map[string]accesslog.Op{"EQ": accesslog.EQ, "GE": accesslog.GE, "LE": accesslog.LE}[c.Op]
		return op, int64(c.Value)
	}
	list := func(fs []*config.AccessLogFilter) []accesslog.Filter {
		out := make([]accesslog.Filter, len(fs))
		for i, f := range fs {
			if out[i] = accessLogFilter(f); out[i] == nil {
				out[i] = accesslog.And{} // an empty filter matches
			}
		}
		return out
	}
	switch {
	case f.StatusCode != nil:
		op, v := cmp(f.StatusCode)
		return accesslog.StatusCode{Op: op, Value: v}
	case f.Duration != nil:
		op, v := cmp(f.Duration)
		return accesslog.Duration{Op: op, Value: v}
	case f.NotHealthCheck:
		return accesslog.NotHealthCheck{}
	case f.And != nil:
		return accesslog.And(list(f.And))
	case f.Or != nil:
		return accesslog.Or(list(f.Or))
	case f.Header != nil:
		m := f.Header
		return accesslog.HeaderFilter{Matches: func(req accesslog.Lookup) bool {
			// The first value only: the Lookup of an entry gives one.
			if v, ok := req(m.Name); ok {
				return m.Match([]string{v})
			}
			return m.Match(nil)
		}}
	case f.ResponseFlag != nil:
		return accesslog.ResponseFlag{Flags: f.ResponseFlag.Flags}
	}
	return nil
}

// accessLogCounters are Envoy's filesystem.* counters over every access
// log file, plus filesystem.write_dropped (wasmproxy's: a line dropped
// because the file's queue was full).
func accessLogCounters(st *stats.Store) *accesslog.Counters {
	return &accesslog.Counters{
		WriteBuffered:  st.Counter("filesystem.write_buffered"),
		WriteCompleted: st.Counter("filesystem.write_completed"),
		WriteFailed:    st.Counter("filesystem.write_failed"),
		WriteDropped:   st.Counter("filesystem.write_dropped"),
		ReopenFailed:   st.Counter("filesystem.reopen_failed"),
	}
}

// hostname is %HOSTNAME%, read once.
var hostname, _ = os.Hostname()

// headerLookup is a header map's Lookup; nil for no map.
func headerLookup(h *filter.HeaderMap) accesslog.Lookup {
	if h == nil {
		return nil
	}
	return h.Get
}

// ReopenAccessLogs reopens every access log file (SIGUSR1, admin POST
// /reopen_logs): after a rotation renamed them, lines go to new files at
// the configured paths.
func (s *Server) ReopenAccessLogs() { s.accessLogs.ReopenAll() }

// FlushAccessLogs waits until every access log line logged so far is
// written.
func (s *Server) FlushAccessLogs() { s.accessLogs.Flush() }

// logAccess writes a finished stream's (or, without header maps, a TCP
// connection's) line to each logger. It only formats and queues.
func logAccess(ls accesslog.Loggers, info *filter.StreamInfo, req, resp, trailers *filter.HeaderMap) {
	if len(ls) == 0 {
		return
	}
	e := accesslog.Entry{
		Info:             info,
		RequestHeaders:   headerLookup(req),
		ResponseHeaders:  headerLookup(resp),
		ResponseTrailers: headerLookup(trailers),
		Hostname:         hostname,
	}
	if info.DownstreamTLS != nil {
		e.RequestedServer = info.DownstreamTLS.ServerName
	}
	ls.Log(&e)
}
