package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildBinary compiles cmd/wasmproxy of the checkout at repoDir into
// out, static and for linux/arch (empty: the builder's GOARCH), with
// version and revision stamped where `wasmproxy version` reads them.
func BuildBinary(ctx context.Context, repoDir, out, version, revision, arch string) error {
	ldflags := "-s -w -X main.version=" + version
	if revision != "" {
		ldflags += " -X main.commit=" + revision
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", abs, "./cmd/wasmproxy")
	cmd.Dir = repoDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if arch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+arch)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building wasmproxy in %s: %v\n%s", repoDir, err, stderr.String())
	}
	return nil
}

// Revision is the commit checked out at repoDir, or "" outside git.
func Revision(ctx context.Context, repoDir string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", repoDir, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
