package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmproxy/wasmproxy/pluginbuild"
)

// runFlags are Envoy's command-line options that wasmproxy accepts.
type runFlags struct {
	configPath         string
	concurrency        int
	logLevel           string
	componentLogLevels string
	baseID             int
	drainTime          seconds // envoy_flags.go
	cacheDir           string
	monitorSlack       time.Duration // run.go: applyMonitorSlack
	sources            sourceFlags   // sources.go
	envoy              envoyFlags    // envoy_flags.go
}

func (f *runFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.configPath, "config-path", "c", "", "Envoy v3 bootstrap file (YAML or JSON)")
	fl.IntVar(&f.concurrency, "concurrency", 0, "worker count, as Envoy's: sizes each plugin's instance pool (default: number of CPUs)")
	fl.StringVarP(&f.logLevel, "log-level", "l", "info", "log level: trace, debug, info, warning, error, critical, off")
	fl.StringVar(&f.componentLogLevels, "component-log-level", "", "per-component levels, e.g. wasm:debug,http:trace")
	fl.IntVar(&f.baseID, "base-id", 0, "accepted for Envoy compatibility (hot restart is not used)")
	f.drainTime = seconds(10 * time.Second)
	fl.Var(&f.drainTime, "drain-time-s", "how long to let in-flight requests finish on shutdown, in seconds as Envoy's (a duration such as 30s is accepted too)")
	fl.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "directory for compiled and fetched Wasm modules (\"\" disables the cache)")
	fl.DurationVar(&f.monitorSlack, "runtime-monitor-slack", 2*time.Millisecond, "timer slack of the Go runtime's monitor thread (Linux, needs CAP_SYS_NICE): fewer of its wake-ups, which cost up to a tenth of the proxy's CPU under load on a VM; 0 keeps the kernel's default (50µs)")
	f.sources.register(fl)
	f.envoy.register(fl)
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "wasmproxy")
	}
	return ""
}

func newRootCommand() *cobra.Command {
	var rf runFlags
	root := &cobra.Command{
		Use:   "wasmproxy",
		Short: "An HTTP proxy extended by Proxy-Wasm plugins, configured like Envoy",
		Long: "wasmproxy runs Proxy-Wasm plugins in the HTTP data path. It reads Envoy's v3\n" +
			"bootstrap format: `wasmproxy -c envoy.yaml` works like `envoy -c envoy.yaml`.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := rf.envoy.check(); err != nil {
				return err
			}
			if rf.envoy.version {
				fmt.Fprint(cmd.OutOrStdout(), readBuildInfo().envoyLine())
				return nil
			}
			if rf.configPath == "" {
				return cmd.Help()
			}
			return runConfig(cmd.Context(), cmd, &rf)
		},
	}
	rf.register(root)
	root.AddCommand(newRunCommand(), newPluginCommand(), newVersionCommand())
	return root
}

func newRunCommand() *cobra.Command {
	var rf runFlags
	var pf pluginRunFlags // run_plugin.go
	cmd := &cobra.Command{
		Use:   "run -c FILE | run --plugin FILE.wasm --upstream URL",
		Short: "Run the proxy from an Envoy v3 bootstrap file, or one plugin in front of one upstream",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pf.file != "" {
				return runPluginProxy(cmd.Context(), cmd, &rf, &pf)
			}
			if err := rf.envoy.check(); err != nil {
				return err
			}
			if rf.envoy.version {
				fmt.Fprint(cmd.OutOrStdout(), readBuildInfo().envoyLine())
				return nil
			}
			if rf.configPath == "" {
				return errors.New("run: -c FILE (or --plugin FILE.wasm --upstream URL) is required")
			}
			return runConfig(cmd.Context(), cmd, &rf)
		},
	}
	rf.register(cmd)
	pf.register(cmd)
	return cmd
}

func newPluginCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "plugin", Short: "Work with Proxy-Wasm plugins"}
	var out string
	build := &cobra.Command{
		Use:   "build DIR -o FILE.wasm",
		Short: "Build a Go plugin with the standard toolchain (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dst := out
			if dst == "" {
				dst = filepath.Join(args[0], "main.wasm")
			}
			if err := pluginbuild.Build(cmd.Context(), args[0], dst); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "built %s\n", dst)
			return nil
		},
	}
	build.Flags().StringVarP(&out, "output", "o", "", "output file (default DIR/main.wasm)")
	cmd.AddCommand(build, newInspectCommand())
	cmd.AddCommand(newPluginPushCommand(), newPluginPullCommand()) // plugin_oci.go
	cmd.AddCommand(newPluginInitCommand(), newPluginTestCommand()) // plugin_test_cmd.go
	return cmd
}

func newPluginInitCommand() *cobra.Command {
	var dir, src, testStyle string
	var noTidy bool
	cmd := &cobra.Command{
		Use:   "init NAME",
		Short: "Create a Go plugin: code, a Go test (wasmtest or proxytest), declarative cases, envoy.yaml, README, Makefile",
		Long: "Creates the folder NAME (or --dir) holding a working plugin whose test passes\n" +
			"right away (`go test ./...`). NAME is the Go module path; its last element names\n" +
			"the plugin. The SDK and wasmtest are not published yet, so go.mod points at a\n" +
			"local wasmproxy checkout: the one this binary was built from, or --wasmproxy-src.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return pluginbuild.Init(cmd.Context(), cmd.OutOrStdout(), args[0], dir, src, testStyle, !noTidy)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "", "folder to create (default: the plugin's name)")
	fl.StringVar(&src, "wasmproxy-src", os.Getenv("WASMPROXY_SRC"), "wasmproxy checkout providing the SDK and wasmtest (default $WASMPROXY_SRC, else the checkout this binary was built from)")
	fl.StringVar(&testStyle, "test-style", pluginbuild.TestStyles[0].Name, "main_test.go on wasmtest (the compiled plugin on the real host) or proxytest (proxy-wasm-go-sdk's emulator API, on the Go code and the compiled plugin)")
	fl.BoolVar(&noTidy, "no-tidy", false, "do not run `go mod tidy` (which fills go.sum, and may download modules)")
	return cmd
}

// runConfig runs the proxy of -c FILE, or validates it (--mode validate).
func runConfig(ctx context.Context, cmd *cobra.Command, rf *runFlags) error {
	if rf.envoy.mode == "validate" {
		return validateConfig(ctx, rf, cmd.OutOrStdout())
	}
	logs, err := newLogs(rf)
	if err != nil {
		return err
	}
	return runProxy(ctx, rf, logs, nil)
}
