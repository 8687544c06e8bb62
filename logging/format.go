package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

// DefaultFormat is the line format Envoy documents for --log-format:
// time to the millisecond, thread, level, logger, message.
const DefaultFormat = "[%Y-%m-%d %T.%e][%t][%l][%n] %v"

// FormatFlags lists the spdlog pattern flags ParseFormat understands,
// with what each prints; docs/compatibility.md repeats it.
var FormatFlags = [][2]string{
	{"%Y", "year, 4 digits"}, {"%y", "year, 2 digits"}, {"%m", "month 01-12"}, {"%d", "day 01-31"},
	{"%H", "hour 00-23"}, {"%M", "minute"}, {"%S", "second"}, {"%T", "%H:%M:%S"}, {"%D", "%m/%d/%y"},
	{"%F", "nanoseconds, 9 digits"}, {"%f", "microseconds, 6 digits"}, {"%e", "milliseconds, 3 digits"},
	{"%E", "seconds since the epoch"}, {"%z", "UTC offset, +HH:MM"},
	{"%t", "thread id (the OS thread that wrote the line)"}, {"%P", "process id"},
	{"%l", "level: trace, debug, info, warning, error, critical"}, {"%L", "level, one letter: T D I W E C"},
	{"%n", "logger (component) name"}, {"%v", "the message (escaped with --log-format-escaped)"},
	{"%_", "the message with newlines and other control characters escaped (Envoy's flag)"},
	{"%j", "the message escaped for a JSON string (Envoy's flag, for JSON formats)"},
	{"%s", "source file, base name"}, {"%g", "source file, full path"}, {"%#", "source line"}, {"%!", "source function"},
	{"%^ %$", "start and end of spdlog's color range: accepted, print nothing"}, {"%%", "a %"},
}

// Format is a compiled spdlog pattern (Envoy's --log-format).
type Format struct {
	pattern string
	parts   []formatPart
	// Escaped is --log-format-escaped: %v escapes control characters
	// (a newline prints as \n), so each message stays on one line.
	Escaped bool
	source  bool // a part needs the caller's file/line
}

type formatPart struct {
	lit  string
	flag byte // 0 for a literal
}

// ParseFormat compiles pattern; an unknown flag is an error naming it.
func ParseFormat(pattern string) (*Format, error) {
	f := &Format{pattern: pattern}
	var lit strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '%' {
			lit.WriteByte(c)
			continue
		}
		if i+1 == len(pattern) {
			return nil, fmt.Errorf("log format %q ends with a lone %%", pattern)
		}
		i++
		flag := pattern[i]
		switch flag {
		case '%':
			lit.WriteByte('%')
			continue
		case '^', '$':
			continue
		case 'Y', 'y', 'm', 'd', 'H', 'M', 'S', 'T', 'D', 'F', 'f', 'e', 'E', 'z', 't', 'P', 'l', 'L', 'n', 'v', '_', 'j':
		case 's', 'g', '#', '!':
			f.source = true
		default:
			return nil, fmt.Errorf("log format %q: flag %%%c is not supported (supported: %s)", pattern, flag, supportedFlags())
		}
		if lit.Len() > 0 {
			f.parts = append(f.parts, formatPart{lit: lit.String()})
			lit.Reset()
		}
		f.parts = append(f.parts, formatPart{flag: flag})
	}
	if lit.Len() > 0 {
		f.parts = append(f.parts, formatPart{lit: lit.String()})
	}
	return f, nil
}

func supportedFlags() string {
	var s []string
	for _, f := range FormatFlags {
		s = append(s, f[0])
	}
	return strings.Join(s, " ")
}

// String is the pattern.
func (f *Format) String() string { return f.pattern }

// lineWriter serializes whole lines onto one output, shared by every
// component's handler.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *lineWriter) write(b []byte) {
	w.mu.Lock()
	_, _ = w.out.Write(b)
	w.mu.Unlock()
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// formatHandler is the slog.Handler that prints Envoy's lines. The
// message is printed as given; attributes follow it as key=value (the
// value quoted when it holds a space, a quote or a control character),
// so a plugin's line, which has none, is exactly what the plugin wrote.
type formatHandler struct {
	f         *Format
	w         *lineWriter
	level     slog.Leveler
	component string
	attrs     string // preformatted " k=v" of With
	group     string // "g." prefix of WithGroup
}

func (h *formatHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *formatHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		writeAttr(&b, h.group, a)
	}
	c := *h
	c.attrs += b.String()
	return &c
}

func (h *formatHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group += name + "."
	return &c
}

func (h *formatHandler) Handle(_ context.Context, r slog.Record) error {
	var msg strings.Builder
	msg.WriteString(redact.Text(r.Message))
	msg.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&msg, h.group, a)
		return true
	})
	m := msg.String()
	var frame runtime.Frame
	if h.f.source && r.PC != 0 {
		frame, _ = runtime.CallersFrames([]uintptr{r.PC}).Next()
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	t := r.Time
	var num [20]byte
	pad := func(n, width int) {
		s := strconv.AppendInt(num[:0], int64(n), 10)
		for i := len(s); i < width; i++ {
			buf.WriteByte('0')
		}
		buf.Write(s)
	}
	for _, p := range h.f.parts {
		switch p.flag {
		case 0:
			buf.WriteString(p.lit)
		case 'Y':
			pad(t.Year(), 4)
		case 'y':
			pad(t.Year()%100, 2)
		case 'm':
			pad(int(t.Month()), 2)
		case 'd':
			pad(t.Day(), 2)
		case 'H':
			pad(t.Hour(), 2)
		case 'M':
			pad(t.Minute(), 2)
		case 'S':
			pad(t.Second(), 2)
		case 'T':
			pad(t.Hour(), 2)
			buf.WriteByte(':')
			pad(t.Minute(), 2)
			buf.WriteByte(':')
			pad(t.Second(), 2)
		case 'D':
			pad(int(t.Month()), 2)
			buf.WriteByte('/')
			pad(t.Day(), 2)
			buf.WriteByte('/')
			pad(t.Year()%100, 2)
		case 'F':
			pad(t.Nanosecond(), 9)
		case 'f':
			pad(t.Nanosecond()/1e3, 6)
		case 'e':
			pad(t.Nanosecond()/1e6, 3)
		case 'E':
			buf.Write(strconv.AppendInt(num[:0], t.Unix(), 10))
		case 'z':
			_, off := t.Zone()
			sign := byte('+')
			if off < 0 {
				sign, off = '-', -off
			}
			buf.WriteByte(sign)
			pad(off/3600, 2)
			buf.WriteByte(':')
			pad(off%3600/60, 2)
		case 't':
			buf.Write(strconv.AppendInt(num[:0], int64(threadID()), 10))
		case 'P':
			buf.Write(strconv.AppendInt(num[:0], int64(os.Getpid()), 10))
		case 'l':
			buf.WriteString(LevelName(r.Level))
		case 'L':
			buf.WriteByte(strings.ToUpper(LevelName(r.Level))[0])
		case 'n':
			buf.WriteString(h.component)
		case 'v':
			if h.f.Escaped {
				escapeC(buf, m)
			} else {
				buf.WriteString(m)
			}
		case '_':
			escapeC(buf, m)
		case 'j':
			escapeJSON(buf, m)
		case 's':
			buf.WriteString(filepath.Base(frame.File))
		case 'g':
			buf.WriteString(frame.File)
		case '#':
			buf.Write(strconv.AppendInt(num[:0], int64(frame.Line), 10))
		case '!':
			buf.WriteString(frame.Function)
		}
	}
	buf.WriteByte('\n')
	h.w.write(buf.Bytes())
	bufPool.Put(buf)
	return nil
}

// writeAttr appends " key=value" after redaction, as slog's text handler
// would quote the value.
func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			writeAttr(b, g, ga)
		}
		return
	}
	a = replaceAttr(nil, a)
	var v string
	switch a.Value.Kind() {
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			v = redact.Text(err.Error())
		} else {
			v = redact.Text(fmt.Sprintf("%+v", a.Value.Any()))
		}
	default:
		v = a.Value.String()
	}
	b.WriteByte(' ')
	b.WriteString(group)
	b.WriteString(a.Key)
	b.WriteByte('=')
	if needsQuote(v) {
		b.WriteString(strconv.Quote(v))
	} else {
		b.WriteString(v)
	}
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '=' || r == utf8.RuneError || r == 0x7f {
			return true
		}
	}
	return false
}

// escapeC writes s with control characters as C escapes (\n, \t, \x01),
// as Envoy's --log-format-escaped and %_ do.
func escapeC(buf *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		case '\\':
			buf.WriteString(`\\`)
		default:
			if c < ' ' || c == 0x7f {
				fmt.Fprintf(buf, `\x%02x`, c)
			} else {
				buf.WriteByte(c)
			}
		}
	}
}

// escapeJSON writes s escaped for the inside of a JSON string.
func escapeJSON(buf *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			if c < ' ' {
				fmt.Fprintf(buf, `\u%04x`, c)
			} else {
				buf.WriteByte(c)
			}
		}
	}
}
