package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

// Reloader is implemented by providers that can reload their
// configuration and plugins in place. When the provider implements it
// the admin server offers POST /reload and GET /reload_status.
type Reloader interface {
	// Reload validates the configuration and plugins on disk, starts the
	// new plugin instances and sends new streams to them. On failure the
	// running version keeps serving and the error says why.
	Reload(ctx context.Context, trigger string) (ReloadStatus, error)
	// ReloadStatus is the outcome of the last reload attempt.
	ReloadStatus() ReloadStatus
}

// ReloadStatus describes the last reload attempt.
type ReloadStatus struct {
	// Generation counts successful reloads (0 = as started).
	Generation uint64 `json:"generation"`
	// Trigger is what started the last attempt: "file", "sighup",
	// "admin", "watch" (or an embedder's reason, Proxy.Reload).
	Trigger     string    `json:"trigger,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the last attempt's error, "" when it succeeded.
	LastError string `json:"last_error,omitempty"`
	// Changed lists what the last successful reload changed:
	// "listener/chain" for new HTTP filters, "routes listener/chain",
	// "cluster+ NAME" (added), "cluster~ NAME" (changed), "cluster- NAME"
	// (removed), and "listener+/~/- NAME" likewise; empty when nothing
	// had changed.
	Changed []string `json:"changed,omitempty"`
	// Failures counts failed attempts since start.
	Failures uint64 `json:"failures"`
	// Replaced lists the plugin instances a trap, the call deadline or
	// the memory cap had poisoned and the last attempt replaced, one
	// "PLUGINS: N replaced" (or "PLUGINS: N not replaced: ERROR") per
	// VM, whether or not the config changed; empty when none was
	// poisoned.
	Replaced []string `json:"replaced,omitempty"`
}

func (s *Server) reloadEndpoints() []*endpoint {
	r, ok := s.provider.(Reloader)
	if !ok {
		return nil
	}
	return []*endpoint{
		{path: "/reload", help: "Reload the config and plugins; the running version keeps serving if the new one fails", mutates: true,
			handle: func(w http.ResponseWriter, req *http.Request) {
				st, err := r.Reload(req.Context(), "admin")
				code := http.StatusOK
				if err != nil {
					code = http.StatusInternalServerError
				}
				writeReloadStatus(w, code, st)
			}},
		{path: "/reload_status", help: "Print the outcome of the last reload (JSON)",
			handle: func(w http.ResponseWriter, _ *http.Request) { writeReloadStatus(w, http.StatusOK, r.ReloadStatus()) }},
	}
}

func writeReloadStatus(w http.ResponseWriter, code int, st ReloadStatus) {
	// A failed reload's error may quote a URL with credentials.
	st.LastError = redact.Text(st.LastError)
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeBody(w, code, contentTypeJSON, append(b, '\n'))
}
