package lua

import (
	"reflect"
	"testing"

	glua "github.com/yuin/gopher-lua"

	"github.com/wasmproxy/wasmproxy/filter"
)

// TestValues: dynamic metadata values cross between Lua and the JSON
// form filter.DynamicMetadata holds: a sequence is a list, other tables
// objects; functions (and too-deep tables) are refused.
func TestValues(t *testing.T) {
	L := glua.NewState()
	defer L.Close()
	if err := L.DoString(`v = {name = "x", n = 2, ok = true, list = {1, "two"}, nested = {a = {b = "c"}}}; f = function() end`); err != nil {
		t.Fatal(err)
	}
	got, ok := fromLua(L.GetGlobal("v"), 0)
	want := map[string]any{"name": "x", "n": 2.0, "ok": true, "list": []any{1.0, "two"}, "nested": map[string]any{"a": map[string]any{"b": "c"}}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("fromLua = %v %v, want %v", got, ok, want)
	}
	if back, _ := fromLua(toLua(L, want), 0); !reflect.DeepEqual(back, want) {
		t.Errorf("round trip = %v", back)
	}
	if _, ok := fromLua(L.GetGlobal("f"), 0); ok {
		t.Error("a function was accepted")
	}
	if err := L.DoString(`deep = {}; local t = deep; for i = 1, 40 do t.x = {}; t = t.x end`); err != nil {
		t.Fatal(err)
	}
	if _, ok := fromLua(L.GetGlobal("deep"), 0); ok {
		t.Error("a table nested 40 deep was accepted")
	}
}

// TestScriptState: a state loads the script's globals once; the
// dangerous os functions and file loaders are gone; a top-level loop is
// stopped by the budget.
func TestScriptState(t *testing.T) {
	sc, err := compile(`function envoy_on_request(h) end
has_exit = os.exit ~= nil or os.execute ~= nil or dofile ~= nil or require ~= nil or io ~= nil
has_time = os.time ~= nil`, "t", "p")
	if err != nil {
		t.Fatal(err)
	}
	st, err := sc.get()
	if err != nil {
		t.Fatal(err)
	}
	defer st.L.Close()
	if st.onRequest == nil || st.onResp != nil {
		t.Errorf("entry points: request %v response %v", st.onRequest, st.onResp)
	}
	if st.L.GetGlobal("has_exit") != glua.LFalse || st.L.GetGlobal("has_time") != glua.LTrue {
		t.Errorf("has_exit %v has_time %v", st.L.GetGlobal("has_exit"), st.L.GetGlobal("has_time"))
	}
	SetBudget(50e6)
	defer SetBudget(1e9)
	spin, err := compile(`while true do end`, "spin", "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spin.get(); err == nil {
		t.Error("a script that never ends loaded")
	}
}

// TestHeadersPairs: pairs() iterates a header map (Envoy's idiom) in
// order, and still iterates tables.
func TestHeadersPairs(t *testing.T) {
	sc, err := compile(`
function collect(h)
  local out = {}
  for k, v in pairs(h) do out[#out + 1] = k .. "=" .. v end
  local n = 0
  for _ in pairs({a = 1, b = 2}) do n = n + 1 end
  return table.concat(out, ";") .. " tables:" .. n
end`, "t", "p")
	if err != nil {
		t.Fatal(err)
	}
	st, err := sc.get()
	if err != nil {
		t.Fatal(err)
	}
	defer st.L.Close()
	h := filter.NewHeaderMap(filter.Pair{Key: ":path", Value: "/"}, filter.Pair{Key: "x-a", Value: "1"}, filter.Pair{Key: "x-a", Value: "2"})
	if err := st.L.CallByParam(glua.P{Fn: st.L.GetGlobal("collect"), NRet: 1, Protect: true}, object(st.L, headersType, h)); err != nil {
		t.Fatal(err)
	}
	if got, want := st.L.Get(-1).String(), ":path=/;x-a=1;x-a=2 tables:2"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}
