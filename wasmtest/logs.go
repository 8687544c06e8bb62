package wasmtest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// LogEntry is one line the host logged for the plugin: either a line the
// plugin wrote (proxy_log, or stdout/stderr through WASI) or a host
// message about it (a trap with its stack, a call that is not
// implemented).
type LogEntry struct {
	// Level is Envoy's level name: trace, debug, info, warning, error,
	// critical.
	Level string
	// Message is the text without the host's "wasm log <plugin>: " prefix.
	Message string
	// FromPlugin is true for lines the plugin wrote itself.
	FromPlugin bool
	// Attrs are the host's structured fields (for a trap: "stack").
	Attrs map[string]string
}

func (e LogEntry) String() string {
	who := "host"
	if e.FromPlugin {
		who = "plugin"
	}
	return fmt.Sprintf("[%s] %s: %s", e.Level, who, e.Message)
}

// logCapture is the io.Writer behind the plugin's logging.Registry. The
// registry (logging.NewTextRegistry) writes one record per Write; each is parsed
// back into a LogEntry.
type logCapture struct {
	mu      sync.Mutex
	entries []LogEntry
	partial []byte
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		line := string(c.partial[:i])
		c.partial = c.partial[i+1:]
		if e, ok := parseLogLine(line); ok {
			c.entries = append(c.entries, e)
		}
	}
	return len(p), nil
}

func (c *logCapture) snapshot() []LogEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]LogEntry(nil), c.entries...)
}

func (c *logCapture) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// pluginLinePrefix starts every line the plugin logs ("wasm log" then the
// plugin name, root id and vm id when set, then ": ").
const pluginLinePrefix = "wasm log"

// parseLogLine reads one slog text record (key=value pairs, values quoted
// Go-style when they contain spaces or quotes).
func parseLogLine(line string) (LogEntry, bool) {
	attrs := map[string]string{}
	rest := strings.TrimSpace(line)
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return LogEntry{}, false
		}
		key := rest[:eq]
		rest = rest[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return LogEntry{}, false
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		attrs[key] = val
		rest = strings.TrimLeft(rest, " ")
	}
	msg, ok := attrs["msg"]
	if !ok {
		return LogEntry{}, false
	}
	e := LogEntry{Level: attrs["level"], Message: msg}
	if strings.HasPrefix(msg, pluginLinePrefix) {
		if i := strings.Index(msg, ": "); i >= 0 {
			e.Message, e.FromPlugin = msg[i+2:], true
		}
	}
	for _, k := range []string{"time", "level", "msg", "component"} {
		delete(attrs, k)
	}
	if len(attrs) > 0 {
		e.Attrs = attrs
	}
	return e, true
}

// recentLogs renders the last n entries for failure messages.
func recentLogs(entries []LogEntry, n int) string {
	if len(entries) == 0 {
		return "  (the plugin logged nothing)"
	}
	var b strings.Builder
	if len(entries) > n {
		fmt.Fprintf(&b, "  (%d earlier lines omitted)\n", len(entries)-n)
		entries = entries[len(entries)-n:]
	}
	for i, e := range entries {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("  ")
		// A trap's stack trace is shown once, in the trap's own report.
		b.WriteString(e.String())
	}
	return b.String()
}
