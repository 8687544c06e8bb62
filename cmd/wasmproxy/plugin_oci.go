package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmproxy/wasmproxy/config/redact"
	"github.com/wasmproxy/wasmproxy/source"
)

// ociFlags are shared by plugin push and pull.
type ociFlags struct {
	dockerConfig string
	pullSecret   string
	insecure     []string
	caFile       string
	jsonOutput   bool
	timeout      time.Duration
}

func (f *ociFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.dockerConfig, "docker-config", "", "docker config.json with registry credentials (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)")
	fl.StringVar(&f.pullSecret, "secret", "", "credentials file instead of the docker config: a docker config.json or a Kubernetes dockerconfigjson Secret")
	fl.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host whose TLS certificate is not verified (repeatable; \"*\" = all)")
	fl.StringVar(&f.caFile, "ca-file", "", "PEM file of CA certificates to trust besides the system's")
	fl.BoolVar(&f.jsonOutput, "json", false, "print the result as one JSON object (for scripts)")
	fl.DurationVar(&f.timeout, "timeout", 60*time.Second, "bound on each registry request")
}

func (f *ociFlags) fetcher(cacheDir string) (*source.Fetcher, error) {
	opts := source.Options{CacheDir: cacheDir, DockerConfig: f.dockerConfig, InsecureRegistries: f.insecure}
	if f.caFile != "" {
		pool, err := loadCAFile(f.caFile)
		if err != nil {
			return nil, err
		}
		opts.RootCAs = pool
	}
	return source.New(opts)
}

func newPluginPushCommand() *cobra.Command {
	var (
		of     ociFlags
		layout string
	)
	cmd := &cobra.Command{
		Use:   "push FILE.wasm oci://HOST/REPOSITORY:TAG",
		Short: "Publish a plugin as an OCI image that wasmproxy and Istio can pull",
		Long: "Publish a plugin as an OCI image. --layout picks the packing:\n" +
			"  oci     OCI image, plugin.wasm in a tar+gzip layer (default; Istio reads it)\n" +
			"  docker  the same with Docker media types (what docker build of FROM scratch makes)\n" +
			"  wasme   solo.io's two-layer wasme image (Istio reads it)\n" +
			"  wasm    CNCF Wasm artifact, application/wasm layer (Istio does not read it)\n" +
			"The printed digest is the manifest digest: put it in a WasmPlugin's sha256.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := source.ParseLayout(layout)
			if err != nil {
				return fmt.Errorf("--layout: %w", err)
			}
			code, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			f, err := of.fetcher("")
			if err != nil {
				return err
			}
			bar := newProgressBar(cmd.ErrOrStderr(), "pushing "+filepath.Base(args[0]), of.jsonOutput)
			pushed, err := f.Push(cmd.Context(), source.PushRequest{
				Code: code, URL: args[1], Layout: l, PullSecret: of.pullSecret, Timeout: of.timeout, Progress: bar.update,
			})
			bar.finish()
			if err != nil {
				return err
			}
			if of.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), pushed)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s (%s layout, %d bytes)\nsha256: %s\n", pushed.URL, pushed.Layout, pushed.Size, pushed.Digest)
			return nil
		},
	}
	of.register(cmd)
	cmd.Flags().StringVar(&layout, "layout", string(source.LayoutOCI), "image layout: oci, docker, wasme or wasm")
	return cmd
}

func newPluginPullCommand() *cobra.Command {
	var (
		of     ociFlags
		out    string
		sha    string
		always bool
	)
	cmd := &cobra.Command{
		Use:   "pull URL -o FILE.wasm",
		Short: "Fetch a plugin from an oci:// image or an http(s) URL, verified, into a file",
		Long: "Fetch a plugin the way `wasmproxy run` does: oci:// images in any layout\n" +
			"(oci, docker, wasme, wasm) or http(s) URLs, checked against --sha256 (the\n" +
			"manifest digest for oci://, the module digest for http(s)).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("-o FILE.wasm is required")
			}
			f, err := of.fetcher("")
			if err != nil {
				return err
			}
			policy := source.PullDefault
			if always {
				policy = source.PullAlways
			}
			bar := newProgressBar(cmd.ErrOrStderr(), "pulling "+args[0], of.jsonOutput)
			m, err := f.Fetch(cmd.Context(), source.Request{
				URL: args[0], SHA256: sha, PullPolicy: policy, PullSecret: of.pullSecret, Timeout: of.timeout, Progress: bar.update,
			})
			bar.finish()
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, m.Code, 0o644); err != nil {
				return err
			}
			result := struct {
				URL          string        `json:"url"`
				Digest       string        `json:"digest"`
				ModuleDigest string        `json:"module_digest"`
				Layout       source.Layout `json:"layout,omitempty"`
				Bytes        int           `json:"bytes"`
				Output       string        `json:"output"`
			}{m.URL, m.Digest, m.ModuleDigest, m.Layout, len(m.Code), out}
			if of.jsonOutput {
				return writeJSON(cmd.OutOrStdout(), result)
			}
			layout := ""
			if m.Layout != "" {
				layout = fmt.Sprintf(" (%s layout)", m.Layout)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s%s into %s, %d bytes\nsha256: %s\n", redact.Text(m.URL), layout, out, len(m.Code), m.Digest)
			return nil
		},
	}
	of.register(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the module to")
	cmd.Flags().StringVar(&sha, "sha256", "", "expected digest (manifest digest for oci://, module digest for http(s))")
	cmd.Flags().BoolVar(&always, "always", true, "ask the registry even for a tag seen before")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progressBar draws one line on a terminal while a transfer runs. It
// draws nothing when the output is not a terminal (CI logs, pipes) or
// when the result goes out as JSON, and only for transfers over 1 MiB
// or 1 second.
type progressBar struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	on      bool
	start   time.Time
	drawn   bool
	lastLen int
}

const progressMinBytes = 1 << 20

func newProgressBar(w io.Writer, label string, quiet bool) *progressBar {
	return &progressBar{w: w, label: label, on: !quiet && isTerminal(w), start: time.Now()}
}

func (p *progressBar) update(done, total int64) {
	if p == nil || !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if total < progressMinBytes && time.Since(p.start) < time.Second {
		return
	}
	const width = 30
	filled := width
	pct := 100.0
	if total > 0 {
		filled = int(float64(width) * float64(done) / float64(total))
		pct = 100 * float64(done) / float64(total)
	}
	filled = min(max(filled, 0), width)
	line := fmt.Sprintf("\r%s [%s%s] %5.1f%% %s/%s", p.label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), pct, humanBytes(done), humanBytes(total))
	pad := ""
	if n := p.lastLen - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.lastLen = len(line)
	fmt.Fprint(p.w, line+pad)
	p.drawn = true
}

func (p *progressBar) finish() {
	if p == nil || !p.drawn {
		return
	}
	fmt.Fprintln(p.w)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// isTerminal reports whether w is a character device (a TTY).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// loadCAFile returns the system roots plus the certificates in file.
func loadCAFile(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", file)
	}
	return pool, nil
}
