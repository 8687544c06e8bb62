package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAccessLogRotation runs the binary with the seed's Wasm plugin and
// two access_logs on its connection manager (a file, and stdout in JSON):
// each request writes its line
// beside the plugin's own work, and after the file is renamed, SIGUSR1
// and then admin POST /reopen_logs make the next lines go to a new file
// at the configured path (logrotate's rename-then-signal).
func TestAccessLogRotation(t *testing.T) {
	dir, listen, admin := setup(t, seedConfig, plugin(t, "examples/json-validation"), func(s string) string {
		return strings.Replace(s, "                stat_prefix: ingress_http\n", `                stat_prefix: ingress_http
                access_log:
                  - name: envoy.access_loggers.file
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: ./access.log
                      log_format:
                        text_format: "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %REQ(:METHOD)% %REQ(:PATH)% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_CLUSTER%\n"
                  - name: envoy.access_loggers.stdout
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                      log_format:
                        json_format: {kind: "stdout-access", path: "%REQ(:PATH)%", code: "%RESPONSE_CODE%"}
`, 1) // the first connection manager: the plugin's listener
	})
	in := run(t, dir, listen, admin, "-c", "envoy.yaml")
	waitFor(t, in, 20*time.Second, "wasmproxy started") // the signals are caught from here on
	logPath := filepath.Join(dir, "access.log")
	fileHolds := func(path string, want ...string) {
		t.Helper()
		eventually(t, 20*time.Second, path, func() (bool, string) {
			b, _ := os.ReadFile(path)
			return string(b) == strings.Join(want, ""), string(b)
		})
	}
	valid := `{"id": "xxx", "token": "xxx"}`
	line := func(path string) string {
		return fmt.Sprintf("200 - via_upstream POST %s %d 22 web_service\n", path, len(valid))
	}
	send := func(path, body string, want int) {
		t.Helper()
		resp, got := post(t, http.DefaultClient, "http://"+listen+path, "application/json", strings.NewReader(body))
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d %q, want %d", path, resp.StatusCode, got, want)
		}
	}

	send("/one", valid, 200)
	fileHolds(logPath, line("/one"))
	// The stdout logger's line, in the process output.
	waitFor(t, in, 20*time.Second, `{"code":200,"kind":"stdout-access","path":"/one"}`)
	send("/bad", "not JSON", 403) // the plugin's local reply
	eventually(t, 20*time.Second, "the plugin's 403 logged", func() (bool, string) {
		b, _ := os.ReadFile(logPath)
		lines := strings.Split(string(b), "\n")
		return len(lines) == 3 && strings.HasPrefix(lines[1], "403 ") && strings.Contains(lines[1], " POST /bad 8 "), string(b)
	})

	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := in.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, in, 20*time.Second, "reopening access logs")
	send("/two", valid, 200)
	fileHolds(logPath, line("/two"))

	if err := os.Rename(logPath, logPath+".2"); err != nil {
		t.Fatal(err)
	}
	if code, body := postEmpty(t, "http://"+admin+"/reopen_logs"); code != 200 || body != "OK\n" {
		t.Fatalf("POST /reopen_logs = %d %q", code, body)
	}
	send("/three", valid, 200)
	fileHolds(logPath, line("/three"))
	fileHolds(logPath+".2", line("/two"))
	b, _ := os.ReadFile(logPath + ".1")
	if lines := strings.Split(string(b), "\n"); len(lines) != 3 || lines[0]+"\n" != line("/one") {
		t.Errorf("first rotated file:\n%s", b)
	}
}
