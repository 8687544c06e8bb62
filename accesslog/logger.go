package accesslog

// Format renders one entry; *Formatter and *JSONFormatter implement it.
type Format interface{ Format(e *Entry) string }

// Logger is one configured access_log entry: an optional filter, a format
// and a shared writer.
type Logger struct {
	Filter Filter // nil logs every entry
	Format Format
	Out    *Writer
}

// Log renders and queues e when the filter passes. It never blocks.
func (l *Logger) Log(e *Entry) {
	if l.Filter != nil && !l.Filter.Match(e) {
		return
	}
	l.Out.Write(l.Format.Format(e))
}

// Loggers is a connection manager's or tcp_proxy's access_log list.
type Loggers []*Logger

// Log hands e to each logger; the data path calls it once per finished
// stream or TCP session.
func (ls Loggers) Log(e *Entry) {
	for _, l := range ls {
		l.Log(e)
	}
}
