package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/wasmproxy/wasmproxy/internal/prereq"
)

// requireChromium returns Debian's chromium, or skips the test
// (locally; the README's test command ends with a line naming the skip)
// or fails it (CI=true, where .ci/run installs it).
func requireChromium(t *testing.T) string {
	t.Helper()
	path, err := prereq.FindChromium()
	prereq.Skip(t, err)
	return path
}

// chromium runs headless Chromium on url with args and returns its
// standard output. Each run gets a profile of its own.
func chromium(t *testing.T, bin, url string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + t.TempDir(), "--hide-scrollbars",
	}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// TestStatusPageInChromium starts the real binary with the seed config
// and plugin, and looks at the admin home page in headless Chromium
// before and after putting load through the proxy: the DOM Chromium
// built has the plugin table whose request count rose by the load, the
// page's script ran and swapped in fresh numbers, and the screenshot is
// a PNG of the window size asked for.
func TestStatusPageInChromium(t *testing.T) {
	bin := requireChromium(t)
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), nil)
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	page := "http://" + in.admin + "/"

	before := requestCount(t, chromium(t, bin, page, "--dump-dom"))

	// Bounded load on 127.0.0.1: valid and invalid payloads, so the
	// plugin answers some itself (403) and passes the others on.
	const workers, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for i := range each {
				body := `{"id": "x", "token": "y"}`
				if (w+i)%3 == 0 {
					body = `{"id": "x"}`
				}
				resp, err := c.Post("http://"+in.listen+"/", "application/json", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("load: %v", err)
	}

	// --virtual-time-budget lets the page's refresh timer fire and its
	// fetch finish before the DOM is dumped.
	dom := chromium(t, bin, page, "--dump-dom", "--virtual-time-budget=10000")
	after := requestCount(t, dom)
	if after < before+workers*each {
		t.Fatalf("request count %d after %d requests, was %d", after, workers*each, before)
	}
	doc, _ := html.Parse(bytes.NewReader(dom))
	if n, _ := strconv.Atoi(attr(doc, "data-refreshed")); n < 1 {
		t.Errorf("the page's script did not refresh the live numbers (data-refreshed=%q)", attr(doc, "data-refreshed"))
	}
	for _, want := range []string{"Plugins", "Configuration", "Commands", "/reload_status"} {
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("the page lacks %q", want)
		}
	}

	const w, h = 1280, 900
	shot := filepath.Join(t.TempDir(), "status.png")
	chromium(t, bin, page, "--screenshot="+shot, fmt.Sprintf("--window-size=%d,%d", w, h))
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if keep := os.Getenv("WASMPROXY_TEST_SCREENSHOT"); keep != "" {
		// For a human to look at; nothing compares against it.
		if b, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(keep, b, 0o644)
		}
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Fatalf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
	}
	// Not a blank page: the table's borders and text make many colours.
	colours := map[uint32]bool{}
	for y := 0; y < h && len(colours) < 16; y += 7 {
		for x := 0; x < w; x += 7 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|b>>8] = true
		}
	}
	if len(colours) < 16 {
		t.Errorf("the screenshot has %d colours: a blank page?", len(colours))
	}
}

// requestCount is the request count of the only plugin row of a page
// Chromium dumped.
func requestCount(t *testing.T, dom []byte) int {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(dom))
	if err != nil {
		t.Fatal(err)
	}
	var rows []*html.Node
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" && hasClass(n, "plugin") {
			rows = append(rows, n)
		}
	})
	if len(rows) != 1 {
		t.Fatalf("%d plugin rows in the DOM, want 1:\n%s", len(rows), dom)
	}
	var cell *html.Node
	walk(rows[0], func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "td" && hasClass(n, "requests") {
			cell = n
		}
	})
	if cell == nil || cell.FirstChild == nil {
		t.Fatalf("no request count in the plugin row:\n%s", dom)
	}
	v, err := strconv.Atoi(strings.TrimSpace(cell.FirstChild.Data))
	if err != nil {
		t.Fatalf("request count %q: %v", cell.FirstChild.Data, err)
	}
	return v
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func hasClass(n *html.Node, c string) bool {
	for _, a := range n.Attr {
		if a.Key == "class" && strings.Contains(" "+a.Val+" ", " "+c+" ") {
			return true
		}
	}
	return false
}

// attr is the attribute key of the document's <html> element.
func attr(doc *html.Node, key string) string {
	var v string
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "html" {
			for _, a := range n.Attr {
				if a.Key == key {
					v = a.Val
				}
			}
		}
	})
	return v
}
