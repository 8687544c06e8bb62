// Package logging gives each component (Envoy calls them loggers: "wasm",
// "http", "admin", "main", ...) its own level on top of log/slog, so that
// --component-log-level wasm:debug and POST /logging?wasm=debug change
// one component at run time. No line it writes holds a password in a URL
// or a PEM private key: those show as "[redacted]".
package logging

import (
	"context"
	"encoding"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

// Envoy's level names, in order. "critical" maps to slog's Error+4 and
// "off" above everything.
const (
	LevelTrace    = slog.Level(-8)
	LevelDebug    = slog.LevelDebug
	LevelInfo     = slog.LevelInfo
	LevelWarn     = slog.LevelWarn
	LevelError    = slog.LevelError
	LevelCritical = slog.Level(12)
	LevelOff      = slog.Level(100)
)

// Components known up front, so /logging lists them before first use.
var Components = []string{"admin", "config", "conn_handler", "http", "main", "router", "upstream", "wasm"}

// ParseLevel reads an Envoy level name: trace, debug, info, warning/warn,
// error, critical, off.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return LevelDebug, nil
	case "info":
		return LevelInfo, nil
	case "warning", "warn":
		return LevelWarn, nil
	case "error":
		return LevelError, nil
	case "critical":
		return LevelCritical, nil
	case "off":
		return LevelOff, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want trace, debug, info, warning, error, critical or off)", s)
}

// LevelName is the Envoy name of a level.
func LevelName(l slog.Level) string {
	switch {
	case l <= LevelTrace:
		return "trace"
	case l <= LevelDebug:
		return "debug"
	case l <= LevelInfo:
		return "info"
	case l <= LevelWarn:
		return "warning"
	case l <= LevelError:
		return "error"
	case l <= LevelCritical:
		return "critical"
	}
	return "off"
}

// Registry owns the output and the per-component levels.
type Registry struct {
	// text, when set, writes slog's logfmt (NewTextRegistry) instead of
	// format.
	text    io.Writer
	mu      sync.Mutex
	out     *lineWriter
	format  *Format
	levels  map[string]*slog.LevelVar
	loggers map[string]*slog.Logger
	base    slog.Level
}

// NewRegistry writes logs to out in Envoy's DefaultFormat with every
// component at level.
func NewRegistry(out io.Writer, level slog.Level) *Registry {
	f, err := ParseFormat(DefaultFormat)
	if err != nil {
		panic(err) // DefaultFormat is a constant
	}
	return NewRegistryFormat(out, level, f)
}

// NewRegistryFormat writes logs to out in format f (Envoy's --log-format)
// with every component at level.
func NewRegistryFormat(out io.Writer, level slog.Level, f *Format) *Registry {
	r := &Registry{out: &lineWriter{out: out}, format: f, levels: map[string]*slog.LevelVar{}, loggers: map[string]*slog.Logger{}, base: level}
	for _, c := range Components {
		r.Logger(c)
	}
	return r
}

// NewTextRegistry writes slog's key=value text lines (time=… level=…
// msg=… component=…), redacted as every line is, for a reader that parses
// records back (wasmtest) rather than a person or Envoy's log tooling.
func NewTextRegistry(out io.Writer, level slog.Level) *Registry {
	r := &Registry{text: out, levels: map[string]*slog.LevelVar{}, loggers: map[string]*slog.Logger{}, base: level}
	for _, c := range Components {
		r.Logger(c)
	}
	return r
}

// Default is a registry on stderr at info.
var Default = NewRegistry(os.Stderr, LevelInfo)

// Logger returns the logger of a component, creating it at the base level.
func (r *Registry) Logger(component string) *slog.Logger {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.loggers[component]; ok {
		return l
	}
	lv := &slog.LevelVar{}
	lv.Set(r.base)
	var l *slog.Logger
	if r.text != nil {
		l = slog.New(slog.NewTextHandler(r.text, &slog.HandlerOptions{Level: lv, ReplaceAttr: replaceAttr})).With("component", component)
	} else {
		l = slog.New(&formatHandler{f: r.format, w: r.out, level: lv, component: component})
	}
	r.levels[component] = lv
	r.loggers[component] = l
	return l
}

// Enabled reports whether component logs at level; cheap enough for hot
// paths.
func (r *Registry) Enabled(component string, level slog.Level) bool {
	return r.Logger(component).Enabled(context.Background(), level)
}

// SetLevel changes one component, or all when component is "".
func (r *Registry) SetLevel(component string, level slog.Level) error {
	r.Logger("main") // make sure the defaults exist
	r.mu.Lock()
	defer r.mu.Unlock()
	if component == "" {
		r.base = level
		for _, lv := range r.levels {
			lv.Set(level)
		}
		return nil
	}
	lv, ok := r.levels[component]
	if !ok {
		return fmt.Errorf("unknown logger %q", component)
	}
	lv.Set(level)
	return nil
}

// Levels lists every component with its level name, sorted.
func (r *Registry) Levels() [][2]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][2]string, 0, len(r.levels))
	for c, lv := range r.levels {
		out = append(out, [2]string{c, LevelName(lv.Level())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// replaceAttr prints levels with Envoy's names (text registry) and hides the secrets a
// line may carry (redact.Text: passwords in URLs, PEM private keys), in
// the message and in every attribute, whoever logged it: a plugin, a
// library's error, a URL from the config.
func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		s := a.Value.String()
		if red := redact.Text(s); red != s {
			a.Value = slog.StringValue(red)
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case slog.Level: // slog's text handler only

			if a.Key == slog.LevelKey {
				a.Value = slog.StringValue(LevelName(v))
			}
		default:
			// What the text handler would print for it.
			var text string
			switch v := v.(type) {
			case encoding.TextMarshaler:
				b, err := v.MarshalText()
				if err != nil {
					return a
				}
				text = string(b)
			case []byte:
				text = string(v)
			default:
				text = fmt.Sprintf("%+v", v)
			}
			if red := redact.Text(text); red != text {
				a.Value = slog.StringValue(red)
			}
		}
	}
	return a
}
