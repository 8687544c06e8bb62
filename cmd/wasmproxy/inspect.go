package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wasmproxy/wasmproxy/logging"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// inspectReport is the --json form of `plugin inspect`: the file name
// and the host's Inspection.
type inspectReport struct {
	File string `json:"file"`
	*wasm.Inspection
	CanRun bool `json:"can_run"`
	// Timings is the start-up by phase (--timings), when the module can run.
	Timings *wasm.StartupTimings `json:"startup_timings,omitempty"`
}

// newInspectCommand is `wasmproxy plugin inspect FILE.wasm`: it runs the
// check LoadPlugin runs and prints what it found. The exit status is
// non-zero when the module cannot run, so scripts and CI can gate on it.
func newInspectCommand() *cobra.Command {
	var asJSON, timings bool
	var kind string
	cmd := &cobra.Command{
		Use:   "inspect FILE.wasm",
		Short: "Show a module's ABI version, callbacks and imports, and whether wasmproxy can run it",
		Long: "inspect prints a Proxy-Wasm module's ABI version, exported callbacks, imports and size.\n" +
			"It flags each import the host does not provide (or provides only as a stub) and each\n" +
			"callback a filter of --type would need but the module lacks. It runs the same check as\n" +
			"loading a plugin, and exits non-zero when the module cannot run.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timings {
				return runInspectTimings(cmd.Context(), cmd.OutOrStdout(), args[0], wasm.FilterKind(kind), asJSON)
			}
			return runInspect(cmd.Context(), cmd.OutOrStdout(), args[0], wasm.FilterKind(kind), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&timings, "timings", false, "also start the module as a plugin (empty configuration, the default cache dir, a pool of GOMAXPROCS instances) and print how long each start-up phase took")
	cmd.Flags().StringVar(&kind, "type", "http", "how the module is used: http, network or any (decides which callbacks are expected)")
	return cmd
}

func runInspect(parent context.Context, out io.Writer, file string, kind wasm.FilterKind, asJSON bool) error {
	code, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	ctx := parent
	if ctx == nil {
		ctx = context.Background()
	}
	// A host of its own, with no cache and one instance per plugin: only
	// its import table and compiler are used, nothing is instantiated.
	// Its logs are discarded; the report says everything.
	host, err := wasm.NewHost(ctx, wasm.Options{PoolSize: 1, Logs: logging.NewRegistry(io.Discard, logging.LevelError)})
	if err != nil {
		return err
	}
	defer host.Close(context.Background())
	in, err := host.Inspect(ctx, code, kind)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(inspectReport{File: file, Inspection: in, CanRun: in.CanRun()}); err != nil {
			return err
		}
	} else {
		printInspection(out, file, in)
	}
	if !in.CanRun() {
		return fmt.Errorf("%s cannot run: %s", file, in.Errors[0])
	}
	return nil
}

// printInspection writes the human-readable report: facts first, then
// imports with anything the host lacks marked in capitals, then warnings
// and errors, then the verdict.
func printInspection(out io.Writer, file string, in *wasm.Inspection) {
	orNone := func(s string) string {
		if s == "" {
			return "(none)"
		}
		return s
	}
	fmt.Fprintf(out, "file:        %s\n", file)
	fmt.Fprintf(out, "size:        %d bytes\n", in.Size)
	fmt.Fprintf(out, "abi:         %s\n", orNone(in.ABIVersion))
	fmt.Fprintf(out, "initializer: %s\n", orNone(in.Initializer))
	fmt.Fprintf(out, "allocator:   %s\n", orNone(in.Allocator))
	fmt.Fprintf(out, "callbacks (%d):\n", len(in.Callbacks))
	for _, c := range in.Callbacks {
		fmt.Fprintf(out, "  %s\n", c)
	}
	fmt.Fprintf(out, "imports (%d):\n", len(in.Imports))
	for _, im := range in.Imports {
		status := im.Status
		if status != "ok" {
			status = strings.ToUpper(status)
		}
		fmt.Fprintf(out, "  %-13s %s.%s %s\n", status, im.Module, im.Name, im.Signature)
	}
	for _, w := range in.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	for _, e := range in.Errors {
		fmt.Fprintf(out, "error: %s\n", e)
	}
	if in.CanRun() {
		fmt.Fprintln(out, "result: can run")
	} else {
		fmt.Fprintln(out, "result: cannot run")
	}
}
