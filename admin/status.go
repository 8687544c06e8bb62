package admin

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wasmproxy/wasmproxy/config/redact"
)

// StatusProvider is implemented by providers that run plugins: the home
// page then shows each plugin's instances, failures and traffic.
type StatusProvider interface {
	// PluginStatus lists the loaded plugins, by name. It must be cheap
	// (the page's script asks for it every few seconds).
	PluginStatus() []PluginStatus
}

// Instance states (InstanceStatus.State).
const (
	InstanceHealthy  = "healthy"
	InstancePoisoned = "poisoned"
	InstanceReplaced = "replaced"
)

// PluginStatus is one plugin on the home page.
type PluginStatus struct {
	Name string
	// VM is the plugin whose VM it runs in, when not its own.
	VM string
	// FailurePolicy is the configured failure_policy ("" = default).
	FailurePolicy string
	Instances     []InstanceStatus
	// Traps counts every poisoning (a trap, the call deadline or the
	// memory cap); DeadlineExceeded and MemoryLimitExceeded those of the
	// two limits.
	Traps, DeadlineExceeded, MemoryLimitExceeded uint64
	// LastError is the last trap, nil when there was none.
	LastError *PluginError
	// Requests counts the HTTP streams the plugin saw.
	Requests uint64
	// Points are the recent traffic, oldest first, one per Slot; the
	// last one is still filling.
	Points []TrafficPoint
	Slot   time.Duration
	// LastMinute sums the points of the last minute.
	LastMinute TrafficPoint
}

// InstanceStatus is one instance of the plugin's VM.
type InstanceStatus struct {
	Index int
	// State is InstanceHealthy, InstancePoisoned (out of service) or
	// InstanceReplaced (serving, a replacement of a poisoned one).
	State string
	// Reason says why a poisoned instance is.
	Reason string
	// Replaced counts replacements in this slot of the pool.
	Replaced int
}

// PluginError is a plugin's last trap.
type PluginError struct {
	Time     time.Time
	Instance int
	Callback string
	Reason   string
	Message  string
	// Stack is the guest's stack trace.
	Stack string
}

// TrafficPoint is the traffic of one interval.
type TrafficPoint struct {
	Start    time.Time
	Requests uint64
	// P99 is the 99th percentile of the time the plugin added to a
	// request (its request and response callbacks).
	P99 time.Duration
}

// The page's assets, compiled into the binary: no file is read at run
// time and nothing is loaded from elsewhere.
var (
	//go:embed assets/index.html
	indexHTML string
	//go:embed assets/status.css
	statusCSS string
	//go:embed assets/status.js
	statusJS string

	indexTemplate = template.Must(template.New("index").Funcs(template.FuncMap{
		"ms":    formatLatency,
		"rate":  formatRate,
		"since": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"join":  strings.Join,
		"redact": func(s string) string {
			return redact.Text(s)
		},
	}).Parse(indexHTML))
)

// indexPage is what the template renders.
type indexPage struct {
	CSS        template.CSS
	JS         template.JS
	Info       ServerInfo
	Uptime     string
	Now        time.Time
	HasPlugins bool // the provider reports plugins at all
	Plugins    []pluginRow
	HasReload  bool
	Reload     ReloadStatus
	Commands   []commandRow
}

type pluginRow struct {
	PluginStatus
	Rate      float64 // requests/s over the last minute
	Sparkline template.HTML
}

type commandRow struct {
	Path, Help string
	Params     []paramRow
	Mutates    bool
}

type paramRow struct{ Name, Help string }

// handleIndex is the home page: the plugins' status, the configuration
// version and reload history, and Envoy's list of commands. Everything
// is rendered on the server, so it reads without JavaScript; a small
// script (assets/status.js) fetches the page again every few seconds and
// swaps in its live parts.
func (s *Server) handleIndex(w http.ResponseWriter, _ *http.Request) {
	info := s.provider.ServerInfo()
	now := s.now()
	page := indexPage{
		CSS:    template.CSS(statusCSS),
		JS:     template.JS(statusJS),
		Info:   info,
		Uptime: uptime(now, info.StartTime),
		Now:    now,
	}
	page.Info.State = info.State.orLive()
	if sp, ok := s.provider.(StatusProvider); ok {
		page.HasPlugins = true
		for _, ps := range sp.PluginStatus() {
			page.Plugins = append(page.Plugins, pluginRow{PluginStatus: ps, Rate: lastMinuteRate(ps, now), Sparkline: sparkline(ps)})
		}
	}
	if r, ok := s.provider.(Reloader); ok {
		page.HasReload = true
		page.Reload = r.ReloadStatus().redacted()
	}
	for _, e := range s.sorted {
		if e.path != "/" {
			c := commandRow{Path: e.path, Help: e.help, Mutates: e.mutates}
			for _, p := range e.params {
				c.Params = append(c.Params, paramRow{p.name, p.help})
			}
			page.Commands = append(page.Commands, c)
		}
	}
	var buf bytes.Buffer
	if err := indexTemplate.Execute(&buf, page); err != nil {
		writeText(w, http.StatusInternalServerError, "error: rendering the home page: "+err.Error()+"\n")
		return
	}
	writeBody(w, http.StatusOK, contentTypeHTML, buf.Bytes())
}

// lastMinuteRate is the requests per second since the last minute's
// first point began (so a partial current slot does not halve it).
func lastMinuteRate(ps PluginStatus, now time.Time) float64 {
	lm := ps.LastMinute
	if lm.Requests == 0 || lm.Start.IsZero() {
		return 0
	}
	secs := now.Sub(lm.Start).Seconds()
	if secs < 1 {
		secs = 1
	}
	return float64(lm.Requests) / secs
}

func formatRate(r float64) string {
	switch {
	case r == 0:
		return "0"
	case r < 10:
		return strconv.FormatFloat(r, 'f', 2, 64)
	default:
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
}

// formatLatency prints d in milliseconds, or "–" for no sample.
func formatLatency(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return strconv.FormatFloat(ms, 'f', 3, 64) + " ms"
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	default:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	}
}

// Sparkline geometry, in SVG user units (= CSS pixels).
const (
	sparkW, sparkH = 160, 32
)

// sparkline draws the plugin's recent request rate (solid) and p99
// added latency (dashed), each scaled to its own maximum, as inline SVG.
func sparkline(ps PluginStatus) template.HTML {
	n := len(ps.Points)
	if n == 0 {
		return ""
	}
	var maxReq uint64
	var maxP99 time.Duration
	for _, p := range ps.Points {
		maxReq = max(maxReq, p.Requests)
		maxP99 = max(maxP99, p.P99)
	}
	line := func(v func(p TrafficPoint) float64, top float64) string {
		var b strings.Builder
		for i, p := range ps.Points {
			x := 0.0
			if n > 1 {
				x = float64(i) * sparkW / float64(n-1)
			}
			y := float64(sparkH - 1)
			if top > 0 {
				y = 1 + (sparkH-2)*(1-v(p)/top)
			}
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.1f,%.1f", x, y)
		}
		return b.String()
	}
	rate := line(func(p TrafficPoint) float64 { return float64(p.Requests) }, float64(maxReq))
	lat := line(func(p TrafficPoint) float64 { return float64(p.P99) }, float64(maxP99))
	slot := ps.Slot
	if slot <= 0 {
		slot = 10 * time.Second
	}
	span := time.Duration(n) * slot
	title := fmt.Sprintf("last %s: peak %s req/s, peak p99 %s", span, formatRate(float64(maxReq)/slot.Seconds()), formatLatency(maxP99))
	return template.HTML(fmt.Sprintf(`<svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`+
		`<title>%s</title><polyline class="rate" points="%s"/><polyline class="p99" points="%s"/></svg>`,
		sparkW, sparkH, sparkW, sparkH, template.HTMLEscapeString(title), template.HTMLEscapeString(title), rate, lat))
}
