//go:build unix

package main

import (
	"os"
	"syscall"
)

// reopenSignals reopen the access log files, as Envoy's SIGUSR1.
var reopenSignals = []os.Signal{syscall.SIGUSR1}
