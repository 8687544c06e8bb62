package accesslog

import (
	"runtime"
	"strings"
)

func runtimeGosched()             { runtime.Gosched() }
func contains(s, sub string) bool { return strings.Contains(s, sub) }
