package e2e

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRuntimeMonitorSlack: the binary sets the timer slack of the Go
// runtime's monitor thread — 2 ms by default, --runtime-monitor-slack
// otherwise — names the thread in its log, and the kernel reports that
// slack for it (decisions §84). Without CAP_SYS_NICE the log says the
// slack is left as it was, and the proxy serves all the same.
func TestRuntimeMonitorSlack(t *testing.T) {
	code := plugin(t, "examples/json-validation")
	thread := regexp.MustCompile(`timer slack of the runtime's monitor thread set thread=(\d+) slack=(\S+)`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "2000000"},
		{[]string{"--runtime-monitor-slack", "3ms"}, "3000000"},
	} {
		dir, listen, admin := setup(t, seedConfig, code, nil)
		in := run(t, dir, listen, admin, append([]string{"-c", "envoy.yaml"}, tc.args...)...)
		waitFor(t, in, 20*time.Second, "wasmproxy started")
		logs := in.Logs()
		if strings.Contains(logs, "keeps the kernel's timer slack") && strings.Contains(logs, "permission denied") {
			t.Skipf("no CAP_SYS_NICE:\n%s", logs)
		}
		m := thread.FindStringSubmatch(logs)
		if m == nil {
			t.Fatalf("%v: no line naming the monitor thread:\n%s", tc.args, logs)
		}
		got, err := os.ReadFile("/proc/" + m[1] + "/timerslack_ns")
		if err != nil || strings.TrimSpace(string(got)) != tc.want {
			t.Errorf("%v: thread %s's timer slack %q (%v), want %s", tc.args, m[1], got, err, tc.want)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%s", in.cmd.Process.Pid, m[1])); err != nil {
			t.Errorf("%v: thread %s is not one of the proxy's (pid %d)", tc.args, m[1], in.cmd.Process.Pid)
		}
		in.stop()
	}
}
