package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	wasmproxy "github.com/wasmproxy/wasmproxy"
	"github.com/wasmproxy/wasmproxy/wasm"
)

// buildInfo is what the binary knows about its build: the version set
// with -ldflags, the VCS stamp Go records (go build in a checkout), the
// Go and wazero versions and the Proxy-Wasm ABIs the host runs.
type buildInfo struct {
	Version, Commit, CommitTime, Go, Platform, Wazero string
	Modified                                          bool
	ABIs                                              []string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Wazero: "unknown", ABIs: wasm.ABIVersions()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.time":
			b.CommitTime = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	// An explicit -X main.commit wins: Go stamps nothing with
	// -buildvcs=false or in a git worktree (its .git is a file).
	if commit != "" {
		b.Commit = commit
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/tetratelabs/wazero" {
			b.Wazero = d.Version
			if d.Replace != nil {
				b.Wazero = d.Replace.Version
			}
		}
	}
	return b
}

// envoyLine is --version's one line, in Envoy's shape
// "<name>  version: <commit>/<version>/<Clean|Modified>/<build>/<extra>".
func (b buildInfo) envoyLine() string {
	state := "Clean"
	if b.Modified {
		state = "Modified"
	}
	return fmt.Sprintf("wasmproxy  version: %s/%s/%s/RELEASE/%s wazero %s\n", b.Commit, b.Version, state, b.Go, b.Wazero)
}

func (b buildInfo) write(w io.Writer) {
	commit := b.Commit
	if b.Modified {
		commit += " (modified)"
	}
	fmt.Fprintf(w, "version: %s\ncommit: %s\n", b.Version, commit)
	if b.CommitTime != "" {
		fmt.Fprintf(w, "commit time: %s\n", b.CommitTime)
	}
	fmt.Fprintf(w, "go: %s %s\nwazero: %s\nproxy-wasm ABI: %s\n", b.Go, b.Platform, b.Wazero, strings.Join(b.ABIs, ", "))
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and build information: commit, Go, wazero and Proxy-Wasm ABI versions",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			readBuildInfo().write(cmd.OutOrStdout())
		},
	}
}

// validateConfig is --mode validate: it loads the config and builds and
// starts every plugin as a run would (wasmproxy.New binds no socket),
// then releases everything. Like Envoy it prints "configuration '<path>'
// OK" and returns nil, or returns the error.
func validateConfig(ctx context.Context, rf *runFlags, w io.Writer) error {
	if err := rf.checkMonitorSlack(); err != nil {
		return err
	}
	logs, err := newLogs(rf)
	if err != nil {
		return err
	}
	p, err := wasmproxy.New(ctx, rf.options(logs))
	if err != nil {
		return err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = p.Shutdown(shutdownCtx)
	fmt.Fprintf(w, "configuration '%s' OK\n", rf.configPath)
	return nil
}
