# bench/lib.sh: what bench/run.sh (wrk, HTTP/1.1) and bench/h2load.sh
# (h2load, h2c) share: tools, the scratch directory and the cleanup that
# stops every process started, building, starting and checking the
# targets, CPU accounting, the allocation counters, the idle check.
# Sourced, not run. Expects ROOT and BENCH to be set.

BODY='{"id": "xxx", "token": "xxx", "anotherField": "yyy"}'
EXPECT='hello from the server'

# Ports shared by both scripts (one bench run at a time).
UPSTREAM_PORT=28099
NOPLUGIN_PORT=28001
PLUGIN_PORT=28002
NGINX_PORT=28003
HAPROXY_PORT=28004
NGINX_H2C_PORT=28013
HAPROXY_H2C_PORT=28014
# The allocation counters of each wasmproxy (bench/allocmetrics).
NOPLUGIN_METRICS_PORT=28091
PLUGIN_METRICS_PORT=28092

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	printf '\n[bench] ERROR: %s\n\n' "$*" >&2
	exit 1
}

# seconds DURATION -> integer seconds (wrk accepts 10, 10s, 2m, 1h).
seconds() {
	local d=$1
	case $d in
	*h) echo $((${d%h} * 3600)) ;;
	*m) echo $((${d%m} * 60)) ;;
	*s) echo "${d%s}" ;;
	*) echo "$d" ;;
	esac
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# need_tools CMD:PACKAGE...: apt-get install the packages of the commands
# that are missing (only those; nothing when all are there). A command may
# be in /usr/sbin off PATH (nginx and haproxy live there).
need_tools() {
	local pair cmd missing=()
	for pair in "$@"; do
		cmd=${pair%%:*}
		command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("${pair#*:}")
	done
	((${#missing[@]})) || return 0
	[[ $(id -u) -eq 0 ]] || die "missing: ${missing[*]}; run as root once so this script can apt-get install them (or: sudo apt-get install ${missing[*]})"
	log "installing ${missing[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
}

# bin NAME: the path of NAME, on PATH or in /usr/sbin.
bin() {
	command -v "$1" 2>/dev/null && return 0
	[[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1" && return 0
	die "$1 not found"
}

# ---------------------------------------------------------------- cleanup
# setup_work: the scratch directory $WORK, and a trap that stops every
# process start and run_bounded started (TERM, KILL after 5 s), on any exit.
PIDS=()
LOAD_PID=
setup_work() {
	WORK=$(mktemp -d /tmp/wasmproxy-bench.XXXXXX)
	chmod 755 "$WORK"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid
	[[ -n ${LOAD_PID:-} ]] && kill -TERM "$LOAD_PID" 2>/dev/null
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${KEEP_WORK:-0} == 1 || $rc -ne 0 ]]; then
		log "scratch directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}

# ---------------------------------------------------------------- build
# build_all: $WORK/wasmproxy, $WORK/upstream, $WORK/json-validation.wasm.
# wasmproxy is cmd/wasmproxy plus one file added by -overlay that imports
# bench/allocmetrics, which serves the runtime's allocation counters when
# WASMPROXY_BENCH_METRICS is set (the product has no such endpoint).
build_all() {
	cd "$ROOT"
	log "building wasmproxy (+ bench/allocmetrics), the Go upstream and the json-validation plugin in $WORK"
	printf 'package main\n\nimport _ "github.com/wasmproxy/wasmproxy/bench/allocmetrics"\n' >"$WORK/zz_benchallocmetrics.go"
	printf '{"Replace": {"%s/cmd/wasmproxy/zz_benchallocmetrics.go": "%s/zz_benchallocmetrics.go"}}\n' "$ROOT" "$WORK" >"$WORK/overlay.json"
	go build -overlay "$WORK/overlay.json" -o "$WORK/wasmproxy" ./cmd/wasmproxy || die "go build ./cmd/wasmproxy failed"
	go build -o "$WORK/upstream" ./bench/upstream || die "go build ./bench/upstream failed"
	"$WORK/wasmproxy" plugin build examples/json-validation -o "$WORK/json-validation.wasm" >&2 ||
		die "wasmproxy plugin build examples/json-validation failed"
}

# ---------------------------------------------------------------- start
# start NAME CMD...: run CMD in $WORK in the background, log to
# $WORK/NAME.log; its pid in PID_NAME.
start() {
	local name=$1
	shift
	(cd "$WORK" && exec "$@") >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_${name//[^a-zA-Z0-9]/_}=$!"
}

# wait_ready NAME PORT PID: until something accepts on PORT (60 s at most).
wait_ready() {
	local name=$1 port=$2 pid=$3
	for _ in $(seq 600); do
		if ! kill -0 "$pid" 2>/dev/null; then
			sed 's/^/    /' "$WORK/$name.log" >&2 || true
			die "$name exited during start-up (log above)"
		fi
		port_busy "$port" && return 0
		sleep 0.1
	done
	sed 's/^/    /' "$WORK/$name.log" >&2 || true
	die "$name did not listen on 127.0.0.1:$port within 60 s (log above)"
}

# start_servers: the upstream, both wasmproxies (with their allocation
# counters), nginx and HAProxy (each with an HTTP/1.1 and an h2c
# listener, bench/configs), all ready.
start_servers() {
	local nginx haproxy
	nginx=$(bin nginx)
	haproxy=$(bin haproxy)
	mkdir -p "$WORK/nginx"
	start upstream "$WORK/upstream" -port "$UPSTREAM_PORT"
	wait_ready upstream "$UPSTREAM_PORT" "$PID_upstream"
	start wasmproxy_noplugin env WASMPROXY_BENCH_METRICS=127.0.0.1:$NOPLUGIN_METRICS_PORT \
		"$WORK/wasmproxy" -c "$BENCH/configs/wasmproxy-noplugin.yaml" --cache-dir "$WORK/cache"
	start wasmproxy_plugin env WASMPROXY_BENCH_METRICS=127.0.0.1:$PLUGIN_METRICS_PORT \
		"$WORK/wasmproxy" -c "$BENCH/configs/wasmproxy-json-validation.yaml" --cache-dir "$WORK/cache"
	start nginx "$nginx" -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$BENCH/configs/nginx.conf"
	# -db: foreground, no master process: the pid is HAProxy's own.
	start haproxy "$haproxy" -db -f "$BENCH/configs/haproxy.cfg"
	wait_ready wasmproxy_noplugin "$NOPLUGIN_PORT" "$PID_wasmproxy_noplugin"
	wait_ready wasmproxy_plugin "$PLUGIN_PORT" "$PID_wasmproxy_plugin"
	wait_ready wasmproxy_noplugin "$NOPLUGIN_METRICS_PORT" "$PID_wasmproxy_noplugin"
	wait_ready wasmproxy_plugin "$PLUGIN_METRICS_PORT" "$PID_wasmproxy_plugin"
	wait_ready nginx "$NGINX_PORT" "$PID_nginx"
	wait_ready nginx "$NGINX_H2C_PORT" "$PID_nginx"
	wait_ready haproxy "$HAPROXY_PORT" "$PID_haproxy"
	wait_ready haproxy "$HAPROXY_H2C_PORT" "$PID_haproxy"
}

# check_ports PORT...: none of them in use (another bench run?).
check_ports() {
	local p
	for p in "$@"; do
		port_busy "$p" && die "port 127.0.0.1:$p is already in use (another bench run?)"
	done
	return 0
}
ALL_PORTS=($UPSTREAM_PORT $NOPLUGIN_PORT $PLUGIN_PORT $NGINX_PORT $HAPROXY_PORT $NGINX_H2C_PORT $HAPROXY_H2C_PORT
	$NOPLUGIN_METRICS_PORT $PLUGIN_METRICS_PORT)

# ---------------------------------------------------------------- checks
# check NAME PORT [CURL_ARGS...]: a POST with the benchmark's body answers
# 200 and the upstream's body, through the target.
check() {
	local name=$1 port=$2 code body
	shift 2
	code=$(curl -sS -m 10 "$@" -o "$WORK/check-$name.body" -w '%{http_code}' \
		-X POST -H 'content-type: application/json' --data "$BODY" \
		"http://127.0.0.1:$port/" 2>"$WORK/check-$name.err") || true
	body=$(cat "$WORK/check-$name.body" 2>/dev/null || true)
	if [[ $code != 200 || $body != "$EXPECT" ]]; then
		cat "$WORK/check-$name.err" >&2 || true
		log "--- ${name%%_h2c} log (last 30 lines):"
		tail -n 30 "$WORK/${name%%_h2c}.log" >&2 || true
		die "$name (127.0.0.1:$port) answered HTTP $code with body '${body:0:200}', want 200 '$EXPECT'"
	fi
	log "check $name: 200 '$body'"
}

# check_plugin_active: a body without "token" is refused, so the plugin
# is really in the path.
check_plugin_active() {
	local code
	code=$(curl -sS -m 10 "$@" -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
		--data '{"id": "xxx"}' "http://127.0.0.1:$PLUGIN_PORT/" || true)
	[[ $code == 403 ]] || die "wasmproxy+json-validation let a body without 'token' through (HTTP $code, want 403): the plugin is not filtering"
	log "check wasmproxy_plugin: body without token -> 403 (plugin active)"
}

# ---------------------------------------------------------------- measure
CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID...: utime+stime of each PID and its direct children.
cpu_ticks() {
	local total=0 p q kids
	for p in "$@"; do
		kids=$(pgrep -P "$p" 2>/dev/null || true)
		for q in $p $kids; do
			[[ -r /proc/$q/stat ]] || continue
			# Fields after the ")" of comm: utime is the 12th, stime the 13th.
			total=$((total + $(sed 's/^.*) //' "/proc/$q/stat" | awk '{print $12 + $13}')))
		done
	done
	echo "$total"
}

# busy_ticks: non-idle CPU time of the whole machine (/proc/stat), in ticks.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

# children_cpu FILE: user+sys seconds of reaped children, from the output of
# the times builtin ("0m1.234s 0m0.567s" on its second line).
children_cpu() {
	awk 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
		printf "%.3f", t }' "$1"
}

# run_bounded OUT BOUND CMD...: CMD >OUT, at most BOUND seconds. CMD runs
# in the background and the shell waits, so a signal stops the run at once.
run_bounded() {
	local out=$1 bound=$2
	shift 2
	timeout "$bound" "$@" >"$out" 2>&1 &
	LOAD_PID=$!
	local rc=0
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=
	return "$rc"
}

# allocs PORT: "OBJECTS BYTES" the wasmproxy process allocated so far on
# the Go heap (bench/allocmetrics; objects include the tiny ones, as
# testing.AllocsPerRun counts). Guest allocations inside a Wasm VM's
# linear memory are not Go heap objects and do not show.
allocs() {
	curl -sS -m 10 "http://127.0.0.1:$1/" | awk '
		$1 == "/gc/heap/allocs:objects" || $1 == "/gc/heap/tiny/allocs:objects" { o += $2 }
		$1 == "/gc/heap/allocs:bytes" { b = $2 }
		END { if (o == 0) exit 1; print o, b }' || die "could not read the allocation counters on 127.0.0.1:$1"
}

# per_req DELTA REQUESTS: DELTA / REQUESTS with one decimal.
per_req() { awk -v d="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", d / n; else print "—" }'; }

# to_ms VALUE: latency (850.00us, 1.23ms, 1.02s, 1.50m) -> milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
		printf "%.2f", n }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "—" }'; }

# verdict OK: "met" or "not met" for an awk condition on numbers.
verdict() { awk "BEGIN { exit !($1) }" && echo "met" || echo "**not met**"; }

# idle_check: how busy the machine is before any load (others' work skews
# the numbers). Sets IDLE_BUSY (% of all CPUs over 2 s, the bench's idle
# servers included), TOP_IDLE (top's %id over 1 s) and LOAD_BEFORE.
idle_check() {
	local b0 b1
	LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
	b0=$(busy_ticks)
	sleep 2
	b1=$(busy_ticks)
	IDLE_BUSY=$(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" -v n="$(nproc)" 'BEGIN {printf "%.0f", d / hz / 2 / n * 100}')
	TOP_IDLE=$(top -b -n 2 -d 1 2>/dev/null | awk '/^%Cpu/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^id/) v = $i} END {print v}')
	log "machine before the run: load average $LOAD_BEFORE, CPU busy ${IDLE_BUSY}% of $(nproc) over 2 s, top idle ${TOP_IDLE:-?}%"
	((IDLE_BUSY <= 10)) || log "WARNING: the machine is not idle; the numbers will be low and noisy (see 'other CPU s'); compare ratios within this run only"
}

# machine_rows: the machine table's common rows.
machine_rows() {
	local cpu_model git_rev git_dirty
	cpu_model=$(lscpu 2>/dev/null | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
	git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	git_dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
	echo "| item | value |"
	echo "|---|---|"
	echo "| nproc | $(nproc) |"
	echo "| CPU | ${cpu_model:-unknown} |"
	echo "| kernel | $(uname -r) |"
	echo "| go | $(go version | awk '{print $3, $4}') (GOMAXPROCS ${GOMAXPROCS:-default = nproc}) |"
	echo "| nginx | $("$(bin nginx)" -v 2>&1 | sed 's/^nginx version: //') (worker_processes auto) |"
	echo "| haproxy | $("$(bin haproxy)" -v 2>&1 | awk 'NR == 1 {print $3}') (nbthread default = nproc) |"
	echo "| wasmproxy tree | $git_rev, $git_dirty uncommitted paths (binary: cmd/wasmproxy + bench/allocmetrics via -overlay) |"
	echo "| load average before / after | $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg) |"
	echo "| CPU busy in the 2 s before the run / top's idle | ${IDLE_BUSY}% / ${TOP_IDLE:-?}% |"
}
