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
	// ConfigVersion names the configuration running now: a digest of
	// the loaded bootstrap and the plugins' code, so two proxies (or one
	// before and after a reload) run the same config exactly when their
	// versions match.
	ConfigVersion string `json:"config_version,omitempty"`
	// History are the last attempts, newest first, at most
	// ReloadHistoryLen of them.
	History []ReloadRecord `json:"history,omitempty"`
}

// ReloadHistoryLen bounds ReloadStatus.History.
const ReloadHistoryLen = 20

// Reload outcomes, as ReloadRecord.Outcome names them.
const (
	ReloadChanged   = "changed"   // the new configuration runs
	ReloadUnchanged = "unchanged" // nothing had changed
	ReloadReplaced  = "replaced"  // nothing had changed; poisoned instances were replaced
	ReloadFailed    = "failed"    // the running version keeps serving
)

// ReloadRecord is one reload attempt.
type ReloadRecord struct {
	Time    time.Time `json:"time"`
	Trigger string    `json:"trigger"`
	// Outcome is ReloadChanged, ReloadUnchanged, ReloadReplaced or
	// ReloadFailed.
	Outcome string `json:"outcome"`
	// Took is how long the attempt ran, in milliseconds.
	TookMS int64 `json:"took_ms"`
	// Generation and ConfigVersion are those running after the attempt.
	Generation    uint64 `json:"generation"`
	ConfigVersion string `json:"config_version,omitempty"`
	// Changed, Replaced and Error are as in ReloadStatus, for this
	// attempt.
	Changed  []string `json:"changed,omitempty"`
	Replaced []string `json:"replaced,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// WithRecord returns history with r in front, cut to ReloadHistoryLen.
// It never writes into history's array, so a ReloadStatus already
// handed out keeps its own.
func WithRecord(history []ReloadRecord, r ReloadRecord) []ReloadRecord {
	out := make([]ReloadRecord, 0, min(len(history)+1, ReloadHistoryLen))
	out = append(out, r)
	return append(out, history[:min(len(history), ReloadHistoryLen-1)]...)
}

// redacted is st with every error redacted: a failed reload's error may
// quote a URL with credentials.
func (st ReloadStatus) redacted() ReloadStatus {
	st.LastError = redact.Text(st.LastError)
	if len(st.History) > 0 {
		h := make([]ReloadRecord, len(st.History))
		for i, r := range st.History {
			r.Error = redact.Text(r.Error)
			h[i] = r
		}
		st.History = h
	}
	return st
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
	st = st.redacted()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeBody(w, code, contentTypeJSON, append(b, '\n'))
}
