package accesslog

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoggersShareFile: two loggers on one path write through one writer;
// a filtered-out entry writes nothing.
func TestLoggersShareFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	var fs Files
	w1, _ := fs.Get(path)
	w2, _ := fs.Get(path)
	def, _ := Parse(DefaultFormat)
	short, _ := Parse("%RESPONSE_CODE% %RESPONSE_FLAGS%\n")
	ls := Loggers{
		{Format: short, Out: w1},
		{Filter: StatusCode{GE, 400}, Format: def, Out: w2},
	}
	ok := entry()
	nr := entry()
	nr.Info.ResponseCode, nr.Info.ResponseCodeDetails = 404, "route_not_found"
	nr.Info.UpstreamAddr = ""
	ls.Log(ok)
	ls.Log(nr)
	w1.Close()
	b, _ := os.ReadFile(path)
	want := "200 -\n404 NR\n" +
		`[2026-12-05T16:01:02.345Z] "GET /p?q=1 HTTP/1.1" 404 NR 3 11 15 4 "-" "curl/8.5.0" "abc" "example.com" "-"` + "\n"
	if string(b) != want {
		t.Errorf("file:\n%s\nwant:\n%s", b, want)
	}
}
