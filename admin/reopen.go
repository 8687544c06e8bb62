package admin

import "net/http"

// LogReopener is implemented by providers that write log files. When the
// provider implements it the admin server offers POST /reopen_logs, as
// Envoy's: after a rotation renamed the files, new lines go to new files
// at the configured paths.
type LogReopener interface {
	// ReopenLogs asks every log file to be reopened; it does not wait.
	ReopenLogs()
}

func (s *Server) reopenEndpoints() []*endpoint {
	r, ok := s.provider.(LogReopener)
	if !ok {
		return nil
	}
	return []*endpoint{
		{path: "/reopen_logs", help: "Reopen access logs", mutates: true,
			handle: func(w http.ResponseWriter, _ *http.Request) {
				r.ReopenLogs()
				writeText(w, http.StatusOK, "OK\n")
			}},
	}
}
