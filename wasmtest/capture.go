package wasmtest

import (
	"fmt"
	"runtime"
	"sync"
)

// Capture runs fn with a TB that records failures instead of failing a Go
// test, with the testing package's rules: Fatalf stops fn (on fn's own
// goroutine, through runtime.Goexit), Errorf records and lets fn go on,
// and cleanups run, last registered first, once fn has returned or
// stopped. It returns the failure messages in order; none means fn
// passed. Tools that run cases outside go test use it (`wasmproxy plugin
// test`), and so do tests of assertions.
func Capture(fn func(t TB)) []string {
	c := &captureTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.runCleanups()
		defer func() {
			if r := recover(); r != nil {
				c.record(fmt.Sprintf("panic: %v", r))
			}
		}()
		fn(c)
	}()
	<-done
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.failures...)
}

type captureTB struct {
	mu       sync.Mutex
	failures []string
	cleanups []func()
}

func (c *captureTB) Helper() {}

func (c *captureTB) record(msg string) {
	c.mu.Lock()
	c.failures = append(c.failures, msg)
	c.mu.Unlock()
}

func (c *captureTB) Errorf(format string, args ...any) { c.record(fmt.Sprintf(format, args...)) }

func (c *captureTB) Fatalf(format string, args ...any) {
	c.record(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

func (c *captureTB) Cleanup(fn func()) {
	c.mu.Lock()
	c.cleanups = append(c.cleanups, fn)
	c.mu.Unlock()
}

// runCleanups runs cleanups last-first; a Fatalf inside one stops only
// that one.
func (c *captureTB) runCleanups() {
	for {
		c.mu.Lock()
		n := len(c.cleanups)
		if n == 0 {
			c.mu.Unlock()
			return
		}
		fn := c.cleanups[n-1]
		c.cleanups = c.cleanups[:n-1]
		c.mu.Unlock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				if r := recover(); r != nil {
					c.record(fmt.Sprintf("panic in cleanup: %v", r))
				}
			}()
			fn()
		}()
		<-done
	}
}
