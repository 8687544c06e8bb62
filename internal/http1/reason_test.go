package http1

import (
	"bufio"
	"strings"
	"testing"
)

// TestResponseReason: the reason phrase is kept, as received, only when
// asked for (the preserve_case formatter's forward_reason_phrase), and
// is the final response's, not an interim one's.
func TestResponseReason(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		keep       bool
		want       string
	}{
		{"kept", "HTTP/1.1 200 Everything Fine\r\nContent-Length: 0\r\n\r\n", true, "Everything Fine"},
		{"not asked", "HTTP/1.1 200 Everything Fine\r\nContent-Length: 0\r\n\r\n", false, ""},
		{"none", "HTTP/1.1 204\r\n\r\n", true, ""},
		{"after 100", "HTTP/1.1 100 Go On\r\n\r\nHTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n", true, "Nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := Response{KeepReason: tc.keep}
			if err := ReadResponse(bufio.NewReader(strings.NewReader(tc.head)), Limits{}, false, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Reason != tc.want {
				t.Errorf("Reason %q, want %q", resp.Reason, tc.want)
			}
		})
	}
}
