package accesslog

import (
	"strings"
	"testing"
)

func TestJSONFormat(t *testing.T) {
	j, err := ParseJSON(map[string]any{
		"code":     "%RESPONSE_CODE%",
		"method":   "%REQ(:METHOD)%",
		"missing":  "%RESP(x-none)%",
		"line":     "%REQ(:METHOD)% %RESPONSE_CODE%",
		"duration": "%DURATION%",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"code":200,"duration":15,"line":"GET 200","method":"GET","missing":null}` + "\n"
	if got := j.Format(entry()); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	_, err = ParseJSON(map[string]any{"nested": map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), `key "nested"`) {
		t.Errorf("nested value: err = %v", err)
	}
	_, err = ParseJSON(map[string]any{"bad": "%NOPE%"})
	if err == nil || !strings.Contains(err.Error(), `key "bad"`) {
		t.Errorf("bad operator: err = %v", err)
	}
}
