package conformance

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestCompatibilityMatrix keeps the "Conformance" column of
// docs/compatibility.md honest: every row has a cell; a row that names
// plugins lists real ones; and each plugin named really imports the
// function (or exports the callback) the row is about, as `wasmproxy
// plugin inspect` reads it from the built module.
func TestCompatibilityMatrix(t *testing.T) {
	doc, err := os.ReadFile("../docs/compatibility.md")
	if err != nil {
		t.Fatal(err)
	}
	modules := map[string]string{} // "C", "Rust", "AS", "go/<area>" → wasm
	for _, m := range []struct {
		name  string
		b     *buildOnce
		build func() (string, error)
	}{{"C", &cBuild, buildC}, {"Rust", &rustBuild, buildRust}, {"AS", &asBuild, buildAssemblyScript}, {"C abi010", &cABI010Build, buildCABI010}} {
		t.Run("build "+m.name, func(t *testing.T) { modules[m.name] = m.b.get(t, m.name, m.build) })
	}
	for _, area := range goAreas {
		modules["go/"+area] = buildGo(t, area)
	}
	complete := len(modules) == 4+len(goAreas)
	if !complete {
		t.Log("a toolchain is missing: checking the matrix's structure only")
	}
	bin := wasmproxyBinary(t)
	imports, exports := map[string]map[string]bool{}, map[string]map[string]bool{}
	for name, wasm := range modules {
		out, err := exec.Command(bin, "plugin", "inspect", "--json", wasm).Output()
		if err != nil {
			t.Fatalf("inspect %s: %v", wasm, err)
		}
		var r struct {
			Callbacks []string `json:"callbacks"`
			Imports   []struct{ Module, Name string }
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		imports[name], exports[name] = map[string]bool{}, map[string]bool{}
		for _, im := range r.Imports {
			imports[name][im.Name] = true
		}
		for _, cb := range r.Callbacks {
			exports[name][cb] = true
		}
	}

	fullName := regexp.MustCompile("`((?:proxy|envoy)_[a-z0-9_]+)`")
	goPart := regexp.MustCompile("Go ((?:`[a-z]+`(?:, )?)+)")
	// "C", "Rust" and "AS" as words of the claim ("C, Rust, AS", "C, Rust").
	langPart := regexp.MustCompile(`(?:^|[\s,:;(])(C|Rust|AS)(?:[\s,;)]|$)`)
	rows := 0
	var table map[string]map[string]bool
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "| Function | Status / behaviour | Go test | Conformance"):
			table = imports
			continue
		case strings.HasPrefix(line, "| Callback | When | Go test | Conformance"):
			table = exports
			continue
		case table == nil, strings.HasPrefix(line, "|---"):
			continue
		case !strings.HasPrefix(line, "| "):
			table = nil
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 4 {
			t.Errorf("row without a conformance cell: %s", line)
			continue
		}
		rows++
		subject, cell := cells[0], cells[3]
		if strings.Contains(cell, "not covered by a conformance plugin yet") && !strings.Contains(cell, "—") {
			continue
		}
		// The plugins the cell names before its first test reference.
		claim, _, _ := strings.Cut(cell, "—")
		var named []string
		if strings.Contains(claim, "C `abi010`") {
			named = append(named, "C abi010")
			claim = strings.ReplaceAll(claim, "C `abi010`", "")
		}
		for _, m := range langPart.FindAllStringSubmatch(claim, -1) {
			named = append(named, m[1])
		}
		if m := goPart.FindStringSubmatch(claim); m != nil {
			for _, area := range strings.Split(m[1], ", ") {
				area = strings.Trim(area, "`")
				if _, ok := modules["go/"+area]; !ok {
					t.Errorf("%s: no Go conformance plugin %q", subject, area)
				}
				named = append(named, "go/"+area)
			}
		}
		if len(named) == 0 && !strings.Contains(cell, "every") && !strings.Contains(cell, "imported by every module") {
			t.Errorf("%s: the conformance cell names no plugin and is not marked as not covered: %q", subject, cell)
		}
		// Rows naming several functions ("a / _b_") are checked on the
		// names written out in full, when every module could be built
		// (locally a toolchain may be missing; under CI=true none is).
		for _, fn := range fullName.FindAllStringSubmatch(subject, -1) {
			any := false
			for _, mod := range named {
				any = any || table[mod][fn[1]]
			}
			if complete && len(named) > 0 && !any {
				t.Errorf("%s: none of %v has %s", subject, named, fn[1])
			}
		}
	}
	if rows < 40 {
		t.Errorf("found %d matrix rows, want the whole ABI (the tables' headers changed?)", rows)
	}
}
