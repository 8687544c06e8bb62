//go:build !unix

package main

import "os"

// reopenSignals: there is no SIGUSR1; admin POST /reopen_logs reopens.
var reopenSignals []os.Signal
