package proxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

type reqCtxTestKey struct{}

// TestRequestContext: the HTTP/1 request's context behaves as the
// context.WithCancel (and WithValue) it replaces: Done and Err before
// and after cancel, children made before and after cancel (WithCancel,
// WithTimeout, AfterFunc) cancelled with it, a stopped AfterFunc not
// run, the parent's values and deadline seen, its own values answered,
// and a cancellable parent cancelling it.
func TestRequestContext(t *testing.T) {
	parent := context.WithValue(context.Background(), reqCtxTestKey{}, "conn")
	var rc requestContext
	rc.init(parent)
	rc.upgrade = &upgrade{}
	if rc.Err() != nil {
		t.Fatalf("Err %v before cancel", rc.Err())
	}
	if v := rc.Value(reqCtxTestKey{}); v != "conn" {
		t.Errorf("parent's value %v", v)
	}
	if u, _ := rc.Value(upgradeKey{}).(*upgrade); u != rc.upgrade {
		t.Error("the request's upgrade is not its value")
	}
	if k, _ := rc.Value(headerKeysKey{}).(*headerKeys); k != nil {
		t.Error("header keys without preserve_case")
	}
	if _, ok := rc.Deadline(); ok {
		t.Error("a deadline the parent does not have")
	}
	child, childCancel := context.WithCancel(&rc)
	defer childCancel()
	timed, timedCancel := context.WithTimeout(&rc, time.Hour)
	defer timedCancel()
	ran := make(chan struct{})
	context.AfterFunc(&rc, func() { close(ran) })
	stopped := false
	stop := context.AfterFunc(&rc, func() { stopped = true })
	if !stop() {
		t.Error("stop of a pending AfterFunc reported it had run")
	}
	done := rc.Done()
	select {
	case <-done:
		t.Fatal("Done closed before cancel")
	default:
	}
	rc.cancel()
	rc.cancel() // once
	<-done
	<-child.Done()
	<-timed.Done()
	<-ran
	if !errors.Is(rc.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) || !errors.Is(timed.Err(), context.Canceled) {
		t.Errorf("errors %v, %v, %v, want context.Canceled", rc.Err(), child.Err(), timed.Err())
	}
	if context.Cause(&rc) != context.Canceled {
		t.Errorf("cause %v", context.Cause(&rc))
	}
	late, lateCancel := context.WithCancel(&rc)
	defer lateCancel()
	<-late.Done()
	if stopped {
		t.Error("a stopped AfterFunc ran")
	}

	// A cancellable parent cancels the request's context.
	pctx, pcancel := context.WithCancel(context.Background())
	var rc2 requestContext
	rc2.init(pctx)
	grandchild, gcCancel := context.WithCancel(&rc2)
	defer gcCancel()
	pcancel()
	<-rc2.Done()
	<-grandchild.Done()
}
