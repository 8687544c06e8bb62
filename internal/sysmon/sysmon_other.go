//go:build !linux

package sysmon

import (
	"errors"
	"fmt"
	"time"
)

// SetTimerSlack is supported on Linux only: elsewhere it returns an error
// wrapping [errors.ErrUnsupported] and changes nothing.
func SetTimerSlack(d time.Duration) (int, error) {
	return 0, fmt.Errorf("sysmon: setting the monitor thread's timer slack: %w", errors.ErrUnsupported)
}
