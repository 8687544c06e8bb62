package lua

// RunningScripts is the number of script goroutines alive.
func RunningScripts() int64 { return running.Load() }
