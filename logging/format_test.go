package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
)

// envoyTime is when the Envoy lines below were printed (UTC, as in a
// container).
var envoyTime = time.Date(2021, 1, 18, 19, 28, 55, 133_456_789, time.UTC)

var threadField = regexp.MustCompile(`^\[([^\]]*)\]\[\d+\]`)

// logLine formats one record at envoyTime through a registry in pattern
// and returns the line with the thread id replaced by 15 (the thread id
// of the Envoy lines below), as the OS thread varies from run to run.
func logLine(t *testing.T, pattern string, escaped bool, component string, level slog.Level, msg string, args ...any) string {
	t.Helper()
	f, err := ParseFormat(pattern)
	if err != nil {
		t.Fatal(err)
	}
	f.Escaped = escaped
	var out bytes.Buffer
	logs := NewRegistryFormat(&out, LevelTrace, f)
	h := logs.Logger(component).Handler()
	r := slog.NewRecord(envoyTime, level, msg, 0)
	r.Add(args...)
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return threadField.ReplaceAllString(out.String(), "[$1][15]")
}

// TestEnvoyLines: lines as Envoy prints them with its documented
// default --log-format, for a plugin's proxy_log call (logger "wasm",
// message "wasm log <name> <root_id> <vm_id>: <message>" with the
// message verbatim, quotes and all) and for a server line.
func TestEnvoyLines(t *testing.T) {
	for _, tt := range []struct {
		component string
		level     slog.Level
		msg       string
		want      string
	}{
		{"wasm", LevelInfo, `wasm log my_plugin my_root_id: auth header is "cookie"`,
			`[2021-01-18 19:28:55.133][15][info][wasm] wasm log my_plugin my_root_id: auth header is "cookie"` + "\n"},
		{"wasm", LevelWarn, "wasm log add_header: onRequestHeaders: 3 headers",
			"[2021-01-18 19:28:55.133][15][warning][wasm] wasm log add_header: onRequestHeaders: 3 headers\n"},
		{"wasm", LevelCritical, "wasm log: panic",
			"[2021-01-18 19:28:55.133][15][critical][wasm] wasm log: panic\n"},
		{"main", LevelDebug, "starting main dispatch loop",
			"[2021-01-18 19:28:55.133][15][debug][main] starting main dispatch loop\n"},
		{"upstream", LevelTrace, "a multi-line\nmessage",
			"[2021-01-18 19:28:55.133][15][trace][upstream] a multi-line\nmessage\n"},
	} {
		if got := logLine(t, DefaultFormat, false, tt.component, tt.level, tt.msg); got != tt.want {
			t.Errorf("got  %q\nwant %q", got, tt.want)
		}
	}
}

// TestFormatFlags: each supported spdlog flag, and Envoy's %_ and %j.
func TestFormatFlags(t *testing.T) {
	for _, tt := range []struct {
		pattern string
		escaped bool
		want    string
	}{
		{"%y %D %H:%M:%S %F %f %e %E %z %v", false, "21 01/18/21 19:28:55 133456789 133456 133 1610998135 +00:00 a\tb\nc x\n"},
		{"%L|%l|%n|%%|%^%v%$", false, "W|warning|http|%|a\tb\nc x\n"},
		{"%v", true, `a\tb\nc x` + "\n"},
		{"%_", false, `a\tb\nc x` + "\n"},
		{`{"msg":"%j"}`, false, `{"msg":"a\tb\nc x"}` + "\n"},
	} {
		got := logLine(t, tt.pattern, tt.escaped, "http", LevelWarn, "a\tb\nc x")
		if got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.pattern, got, tt.want)
		}
	}
}

// TestSourceFlags: %s and %# name the caller, as Envoy's [%g:%#].
func TestSourceFlags(t *testing.T) {
	f, err := ParseFormat("[%s:%#] %v")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	NewRegistryFormat(&out, LevelInfo, f).Logger("main").Info("here")
	if !regexp.MustCompile(`^\[format_test\.go:\d+\] here\n$`).MatchString(out.String()) {
		t.Errorf("got %q", out.String())
	}
}

// TestJSONFormat: Envoy's way to get JSON lines, a --log-format that is
// a JSON object with %j for the message, gives one valid JSON object per
// line whatever the message holds.
func TestJSONFormat(t *testing.T) {
	const pattern = `{"time":"%Y-%m-%dT%T.%eZ","level":"%l","logger":"%n","thread":%t,"msg":"%j"}`
	msg := "wasm log p r: \"quoted\" \\ back\nslash \x01 ctl ünï"
	line := logLine(t, pattern, false, "wasm", LevelError, msg, "err", "x=\"y\"")
	var got struct{ Time, Level, Logger, Msg string }
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	want := msg + ` err="x=\"y\""`
	if got.Time != "2021-01-18T19:28:55.133Z" || got.Level != "error" || got.Logger != "wasm" || got.Msg != want {
		t.Errorf("got %+v\nwant msg %q", got, want)
	}
}

// TestParseFormatErrors: a flag spdlog has but this host does not print,
// and a lone %, are errors naming the flag.
func TestParseFormatErrors(t *testing.T) {
	for pattern, want := range map[string]string{
		"[%c] %v": `flag %c is not supported`,
		"%v %":    `ends with a lone %`,
	} {
		_, err := ParseFormat(pattern)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", pattern, err, want)
		}
	}
}

// TestAttributesFollowMessage: a host line's attributes follow its
// message as key=value, quoted only when needed; groups prefix keys.
func TestAttributesFollowMessage(t *testing.T) {
	var out bytes.Buffer
	f, _ := ParseFormat("%v")
	log := NewRegistryFormat(&out, LevelInfo, f).Logger("main").With("config", "envoy.yaml").WithGroup("reload")
	log.Info("config reloaded", "trigger", "watch", "version", 3, "err", "a b")
	if want := "config reloaded config=envoy.yaml reload.trigger=watch reload.version=3 reload.err=\"a b\"\n"; out.String() != want {
		t.Errorf("got %q\nwant %q", out.String(), want)
	}
}
