package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/wasmproxy/wasmproxy/logging"
)

// envoyFlags are Envoy's command-line options beyond -c, -l,
// --component-log-level, --concurrency and --base-id (commands.go):
// logging, modes, drain timing and the ones accepted for compatibility.
// Envoy's options this host has no equivalent for are registered too, so
// using one is an error that names it as not supported yet rather than
// pflag's "unknown flag".
type envoyFlags struct {
	logFormat          string
	logFormatEscaped   bool
	logPath            string
	fileFlushMsec      int
	mode               string
	version            bool
	parentShutdownTime seconds
	disableHotRestart  bool
	localAddressIP     string
	configYAML         string
	serviceNode        string
	serviceCluster     string
	serviceZone        string
	unsupported        map[string]*string
}

// envoyUnsupported are Envoy's options (envoy --help, v1.3x) that
// wasmproxy does not implement yet, with the value-less ones marked.
var envoyUnsupported = []struct {
	name   string
	isBool bool
}{
	{"restart-epoch", false}, {"hot-restart-version", true}, {"enable-mutex-tracing", true},
	{"cpuset-threads", true}, {"allow-unknown-static-fields", true}, {"reject-unknown-dynamic-fields", true},
	{"ignore-unknown-dynamic-fields", true}, {"bootstrap-version", false}, {"admin-address-path", false},
	{"socket-path", false}, {"socket-mode", false}, {"use-dynamic-base-id", true}, {"base-id-path", false},
	{"stats-tag", false}, {"enable-fine-grain-logging", true}, {"enable-core-dump", true},
	{"disable-extensions", false}, {"log-format-prefix-with-location", false},
	{"skip-hot-restart-on-no-parent", true}, {"skip-hot-restart-parent-stats", true},
}

func (f *envoyFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.logFormat, "log-format", logging.DefaultFormat, "log line format, Envoy's (spdlog's) flags; for JSON lines give a JSON object with %j for the message (docs/compatibility.md)")
	fl.BoolVar(&f.logFormatEscaped, "log-format-escaped", false, "escape control characters in messages (%v), so each message is one line")
	fl.StringVar(&f.logPath, "log-path", "", "append logs to this file instead of stderr")
	fl.IntVar(&f.fileFlushMsec, "file-flush-interval-msec", 10000, "accepted for Envoy compatibility: every log line is written at once, nothing waits for a flush")
	fl.StringVar(&f.mode, "mode", "serve", "serve, or validate: load the config and every plugin, bind nothing, exit 0 or print every error and exit 1")
	fl.BoolVar(&f.version, "version", false, "print the version and build information and exit")
	f.parentShutdownTime = seconds(15 * time.Minute)
	fl.Var(&f.parentShutdownTime, "parent-shutdown-time-s", "accepted for Envoy compatibility (hot restart is not used); integer seconds")
	fl.BoolVar(&f.disableHotRestart, "disable-hot-restart", false, "accepted for Envoy compatibility: wasmproxy never hot restarts (reloads replace the config in process)")
	fl.StringVar(&f.localAddressIP, "local-address-ip-version", "v4", "v4 or v6: the address family of the host's own address, as Envoy's")
	fl.StringVar(&f.configYAML, "config-yaml", "", "a bootstrap in YAML merged over -c's, as Envoy's (protobuf merge: scalars replace, lists append)")
	fl.StringVar(&f.serviceNode, "service-node", "", "node.id, overriding the bootstrap's")
	fl.StringVar(&f.serviceCluster, "service-cluster", "", "node.cluster, overriding the bootstrap's")
	fl.StringVar(&f.serviceZone, "service-zone", "", "node.locality.zone, overriding the bootstrap's")
	f.unsupported = map[string]*string{}
	for _, u := range envoyUnsupported {
		v := new(string)
		fl.StringVar(v, u.name, "", "Envoy's option: not supported yet")
		if u.isBool {
			fl.Lookup(u.name).NoOptDefVal = "true"
		}
		fl.Lookup(u.name).Hidden = true
		f.unsupported[u.name] = v
	}
}

// check reports Envoy options given that wasmproxy does not support and
// values out of range.
func (f *envoyFlags) check() error {
	var bad []string
	for _, u := range envoyUnsupported {
		if *f.unsupported[u.name] != "" {
			bad = append(bad, "--"+u.name)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: Envoy's option, not supported yet by wasmproxy", strings.Join(bad, ", "))
	}
	switch f.mode {
	case "serve", "validate":
	default:
		return fmt.Errorf("--mode %q: want serve or validate (Envoy's init_only is not supported yet)", f.mode)
	}
	switch f.localAddressIP {
	case "v4", "v6":
	default:
		return fmt.Errorf("--local-address-ip-version %q: want v4 or v6", f.localAddressIP)
	}
	if f.fileFlushMsec < 0 {
		return fmt.Errorf("--file-flush-interval-msec: must not be negative, got %d", f.fileFlushMsec)
	}
	return nil
}

// seconds is Envoy's integer-seconds flag value (--drain-time-s 30). It
// also reads a Go duration ("30s", "1m30s"), the form wasmproxy took
// before, so existing command lines keep working.
type seconds time.Duration

func (s *seconds) String() string {
	return strconv.FormatFloat(time.Duration(*s).Seconds(), 'f', -1, 64)
}

func (s *seconds) Set(v string) error {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		*s = seconds(time.Duration(n) * time.Second)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("%q is not a whole number of seconds (or a duration such as 30s)", v)
	}
	*s = seconds(d)
	return nil
}

func (s *seconds) Type() string { return "seconds" }

// openLogOutput is --log-path's file, appended to, or stderr.
func openLogOutput(path string) (*os.File, error) {
	if path == "" {
		return os.Stderr, nil
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--log-path: %w", err)
	}
	return out, nil
}
