package prereq

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Without PATH, every prerequisite found through PATH is missing, and its
// error says which tests it skips and what to install.
func TestCheckWithoutPath(t *testing.T) {
	t.Setenv("PATH", "")
	for _, p := range []Prereq{C, AssemblyScript, Registry, Curl} {
		t.Run(p.Name, func(t *testing.T) {
			err := p.Check()
			if !errors.Is(err, ErrMissing) {
				t.Fatalf("Check() = %v, want an error wrapping ErrMissing", err)
			}
			for _, want := range []string{p.Skips, "apt-get install " + p.Packages} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// A missing prerequisite skips the test locally; any other error fails it
// (checked through a subtest's outcome, which Skip decides).
func TestSkip(t *testing.T) {
	t.Setenv("CI", "")
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Skip(t, fmt.Errorf("%w: x", ErrMissing))
		t.Error("Skip returned for a missing prerequisite")
	})
	if !skipped {
		t.Error("a missing prerequisite did not skip the test")
	}
	t.Run("nil", func(t *testing.T) {
		Skip(t, nil)
		if t.Skipped() || t.Failed() {
			t.Error("a nil error skipped or failed the test")
		}
	})
}
