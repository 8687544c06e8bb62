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

// TestOmitEmptyValues: omit_empty_values leaves out absent keys in JSON
// and prints absent text values as "".
func TestOmitEmptyValues(t *testing.T) {
	j, err := ParseJSON(map[string]any{"code": "%RESPONSE_CODE%", "missing": "%RESP(x-none)%"})
	if err != nil {
		t.Fatal(err)
	}
	j.OmitEmpty = true
	if got, want := j.Format(entry()), `{"code":200}`+"\n"; got != want {
		t.Errorf("json: got %q, want %q", got, want)
	}
	f, err := Parse("[%RESP(x-none)%] %RESPONSE_CODE%")
	if err != nil {
		t.Fatal(err)
	}
	f.OmitEmpty = true
	if got, want := f.Format(entry()), "[] 200"; got != want {
		t.Errorf("text: got %q, want %q", got, want)
	}
}
