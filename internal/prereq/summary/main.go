// Command summary ends the README's test command with one line per group
// of tests that skipped for want of a program (package prereq), so a skip
// is seen without `go test -v`. It exits 0: locally a skip is not a
// failure (under CI=true the tests themselves fail instead).
package main

import (
	"fmt"
	"os"

	"github.com/wasmproxy/wasmproxy/internal/prereq"
)

func main() {
	var skipped int
	for _, p := range prereq.All {
		if err := p.Check(); err != nil {
			skipped++
			fmt.Fprintf(os.Stderr, "SKIPPED: %v\n", err)
		}
	}
	if skipped == 0 {
		fmt.Println("test prerequisites: all installed, no test was skipped for a missing program")
		return
	}
	fmt.Fprintf(os.Stderr, "%d group(s) of tests were SKIPPED above for a missing program (see the README's table)\n", skipped)
}
