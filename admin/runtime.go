package admin

import (
	"net/http"
	"sort"
)

// RuntimeProvider is implemented by providers with Envoy's layered
// runtime. When the provider implements it the admin server offers GET
// /runtime and POST /runtime_modify, as Envoy's.
type RuntimeProvider interface {
	// Runtime returns the layers, first to last (later ones win).
	Runtime() []RuntimeLayer
	// ModifyRuntime sets entries of the admin layer; an empty value
	// removes the entry. It fails when the runtime has no admin layer.
	ModifyRuntime(values map[string]string) error
}

// RuntimeLayer is one runtime layer as /runtime shows it.
type RuntimeLayer struct {
	Name   string
	Values map[string]string
}

func (s *Server) runtimeEndpoints() []*endpoint {
	rp, ok := s.provider.(RuntimeProvider)
	if !ok {
		return nil
	}
	return []*endpoint{
		{path: "/runtime", help: "Print runtime values",
			handle: func(w http.ResponseWriter, _ *http.Request) { writeRuntime(w, rp.Runtime()) }},
		{path: "/runtime_modify", help: "Add or change runtime values in the admin layer", mutates: true,
			params: []param{{"<key>", "set key to the value; an empty value removes the key"}},
			handle: func(w http.ResponseWriter, r *http.Request) {
				if err := r.ParseForm(); err != nil {
					writeText(w, http.StatusBadRequest, "error: "+err.Error()+"\n")
					return
				}
				values := map[string]string{}
				for k, vs := range r.Form {
					values[k] = vs[len(vs)-1]
				}
				if len(values) == 0 {
					writeText(w, http.StatusBadRequest, "usage: /runtime_modify?key1=value1&key2=value2&keyN=valueN\n")
					return
				}
				if err := rp.ModifyRuntime(values); err != nil {
					writeText(w, http.StatusServiceUnavailable, err.Error()+"\n")
					return
				}
				writeText(w, http.StatusOK, "OK\n")
			}},
	}
}

// writeRuntime prints Envoy's /runtime JSON: the layer names, and for
// each key every layer's value ("" where a layer has none) and the final
// value, the last layer's that has one.
func writeRuntime(w http.ResponseWriter, layers []RuntimeLayer) {
	type entry struct {
		LayerValues []string `json:"layer_values"`
		FinalValue  string   `json:"final_value"`
	}
	out := struct {
		Layers  []string          `json:"layers"`
		Entries map[string]*entry `json:"entries"`
	}{Layers: []string{}, Entries: map[string]*entry{}}
	for _, l := range layers {
		out.Layers = append(out.Layers, l.Name)
	}
	keys := map[string]bool{}
	for _, l := range layers {
		for k := range l.Values {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		e := &entry{LayerValues: make([]string, len(layers))}
		for i, l := range layers {
			if v, ok := l.Values[k]; ok {
				e.LayerValues[i] = v
				e.FinalValue = v
			}
		}
		out.Entries[k] = e
	}
	writeJSON(w, http.StatusOK, out)
}
