package accesslog

import (
	"testing"
	"time"
)

func TestFilters(t *testing.T) {
	e := entry() // 200, 15ms, via_upstream
	nr := entry()
	nr.Info.ResponseCode = 404
	nr.Info.ResponseCodeDetails = "route_not_found"
	hasUA := HeaderFilter{Matches: func(l Lookup) bool { _, ok := l("user-agent"); return ok }}
	tests := []struct {
		name string
		f    Filter
		e    *Entry
		want bool
	}{
		{"status GE 400 on 200", StatusCode{GE, 400}, e, false},
		{"status GE 400 on 404", StatusCode{GE, 400}, nr, true},
		{"status EQ 200", StatusCode{EQ, 200}, e, true},
		{"duration LE 15", Duration{LE, 15}, e, true},
		{"duration GE 16", Duration{GE, 16}, e, false},
		{"and fails on one", And{StatusCode{EQ, 200}, Duration{GE, 16}}, e, false},
		{"or passes on one", Or{StatusCode{EQ, 500}, Duration{LE, 15}}, e, true},
		{"not health check", NotHealthCheck{}, e, true},
		{"response flag any, none set", ResponseFlag{}, e, false},
		{"response flag any, NR", ResponseFlag{}, nr, true},
		{"response flag UH on NR", ResponseFlag{Flags: []string{"UH"}}, nr, false},
		{"response flag NR listed", ResponseFlag{Flags: []string{"UH", "NR"}}, nr, true},
		{"header present", hasUA, e, true},
	}
	for _, tc := range tests {
		if got := tc.f.Match(tc.e); got != tc.want {
			t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
		}
	}
	tcp := entry()
	tcp.RequestHeaders = nil
	if hasUA.Match(tcp) {
		t.Error("header filter matched a TCP session without headers")
	}
	open := entry()
	open.Info.EndTime = time.Time{}
	if (Duration{GE, 0}).Match(open) {
		t.Error("duration filter matched an entry without an end time")
	}
}
