#!/usr/bin/env bash
# bench/run.sh: HTTP throughput of wasmproxy next to nginx, on this machine,
# in one run. See docs/perf.md.
#
# Targets (all on 127.0.0.1, all in front of the same Go upstream):
#   upstream       the Go upstream itself, no proxy           :28099
#   wasmproxy      wasmproxy, no Wasm filter                  :28001
#   wasmproxy+wasm wasmproxy + json-validation plugin         :28002
#   nginx          nginx reverse proxy, upstream keepalive    :28003
#
# Load: wrk, HTTP/1.1 keep-alive, 1 thread, CONNECTIONS connections, DURATION
# per target (after a WARMUP run), POST of a valid 52-byte JSON body
# (bench/post.lua), --latency.
#
# Environment:
#   DURATION=10s     measured run per target (wrk -d syntax: 10, 10s, 1m)
#   CONNECTIONS=50   wrk -c
#   WARMUP=2s        warm-up run per target (not reported)
#   KEEP_WORK=1      keep the scratch directory (logs, raw wrk output)
#
# Writes bench/results/<date>.md (gitignored) and prints the same to stdout.
# Exit status: 0 ok; 1 setup or check failed; 3 the run finished but some
# target had non-2xx responses, socket errors or a process died.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-2s}
THREADS=1

UPSTREAM_PORT=28099
NOPLUGIN_PORT=28001
PLUGIN_PORT=28002
NGINX_PORT=28003

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
BODY='{"id": "xxx", "token": "xxx", "anotherField": "yyy"}'
EXPECT='hello from the server'

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
[[ $(seconds "$DURATION") =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: want e.g. 10s, 30, 1m"
[[ $(seconds "$WARMUP") =~ ^[0-9]+$ ]] || die "WARMUP=$WARMUP: want e.g. 2s"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] || die "CONNECTIONS=$CONNECTIONS: want a number"

# ---------------------------------------------------------------- tools
NGINX_BIN=$(command -v nginx || true)
[[ -z $NGINX_BIN && -x /usr/sbin/nginx ]] && NGINX_BIN=/usr/sbin/nginx
if ! command -v wrk >/dev/null || [[ -z $NGINX_BIN ]] || ! command -v curl >/dev/null; then
	[[ $(id -u) -eq 0 ]] || die "wrk, nginx and curl are needed; run as root once so this script can apt-get install them (or: sudo apt-get install wrk nginx curl)"
	log "installing wrk, nginx, curl with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq wrk nginx curl >/dev/null
	NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
fi
command -v go >/dev/null || die "the Go toolchain is not on PATH"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $UPSTREAM_PORT $NOPLUGIN_PORT $PLUGIN_PORT $NGINX_PORT; do
	port_busy "$p" && die "port 127.0.0.1:$p is already in use (another bench run?)"
done

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/wasmproxy-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid
	[[ -n ${WRK_PID:-} ]] && kill -TERM "$WRK_PID" 2>/dev/null
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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# ---------------------------------------------------------------- build
cd "$ROOT"
log "building wasmproxy, the Go upstream and the json-validation plugin in $WORK"
go build -o "$WORK/wasmproxy" ./cmd/wasmproxy || die "go build ./cmd/wasmproxy failed"
go build -o "$WORK/upstream" ./bench/upstream || die "go build ./bench/upstream failed"
"$WORK/wasmproxy" plugin build examples/json-validation -o "$WORK/json-validation.wasm" >&2 ||
	die "wasmproxy plugin build examples/json-validation failed"

# ---------------------------------------------------------------- start
# start NAME CMD...: run CMD in $WORK in the background, log to $WORK/NAME.log.
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

mkdir -p "$WORK/nginx"
start upstream "$WORK/upstream" -port "$UPSTREAM_PORT"
wait_ready upstream "$UPSTREAM_PORT" "$PID_upstream"
start wasmproxy_noplugin "$WORK/wasmproxy" -c "$BENCH/configs/wasmproxy-noplugin.yaml" --cache-dir "$WORK/cache"
start wasmproxy_plugin "$WORK/wasmproxy" -c "$BENCH/configs/wasmproxy-json-validation.yaml" --cache-dir "$WORK/cache"
start nginx "$NGINX_BIN" -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$BENCH/configs/nginx.conf"
wait_ready wasmproxy_noplugin "$NOPLUGIN_PORT" "$PID_wasmproxy_noplugin"
wait_ready wasmproxy_plugin "$PLUGIN_PORT" "$PID_wasmproxy_plugin"
wait_ready nginx "$NGINX_PORT" "$PID_nginx"

# ---------------------------------------------------------------- checks
# check NAME PORT: a POST with the benchmark's body answers 200 and the
# upstream's body, through the target.
check() {
	local name=$1 port=$2 code body
	code=$(curl -sS -m 10 -o "$WORK/check-$name.body" -w '%{http_code}' \
		-X POST -H 'content-type: application/json' --data "$BODY" \
		"http://127.0.0.1:$port/" 2>"$WORK/check-$name.err") || true
	body=$(cat "$WORK/check-$name.body" 2>/dev/null || true)
	if [[ $code != 200 || $body != "$EXPECT" ]]; then
		cat "$WORK/check-$name.err" >&2 || true
		log "--- $name log (last 30 lines):"
		tail -n 30 "$WORK/$name.log" >&2 || true
		die "$name (127.0.0.1:$port) answered HTTP $code with body '${body:0:200}', want 200 '$EXPECT'"
	fi
	log "check $name: 200 '$body'"
}
check upstream "$UPSTREAM_PORT"
check wasmproxy_noplugin "$NOPLUGIN_PORT"
check wasmproxy_plugin "$PLUGIN_PORT"
check nginx "$NGINX_PORT"

# The plugin must really be in the path: a body without "token" is refused.
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
	--data '{"id": "xxx"}' "http://127.0.0.1:$PLUGIN_PORT/" || true)
[[ $code == 403 ]] || die "wasmproxy+json-validation let a body without 'token' through (HTTP $code, want 403): the plugin is not filtering"
log "check wasmproxy_plugin: body without token -> 403 (plugin active)"

# ---------------------------------------------------------------- load
CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID...: utime+stime of each PID and its direct children.
cpu_ticks() {
	local total=0 p kids
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

# run_wrk OUT BOUND ARGS...: wrk ARGS >OUT, at most BOUND seconds. wrk runs
# in the background and the shell waits, so a signal stops the run at once.
WRK_PID=
run_wrk() {
	local out=$1 bound=$2
	shift 2
	timeout "$bound" wrk "$@" >"$out" 2>&1 &
	WRK_PID=$!
	local rc=0
	wait "$WRK_PID" || rc=$?
	WRK_PID=
	return "$rc"
}

# to_ms VALUE: wrk latency (850.00us, 1.23ms, 1.02s, 1.50m) -> milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
		printf "%.2f", n }'
}

TARGETS=(upstream wasmproxy_noplugin wasmproxy_plugin nginx)
declare -A PORT=([upstream]=$UPSTREAM_PORT [wasmproxy_noplugin]=$NOPLUGIN_PORT [wasmproxy_plugin]=$PLUGIN_PORT [nginx]=$NGINX_PORT)
declare -A LABEL=([upstream]="Go upstream, direct" [wasmproxy_noplugin]="wasmproxy, no plugin" [wasmproxy_plugin]="wasmproxy + json-validation" [nginx]="nginx")
declare -A PROXYPID=([upstream]="" [wasmproxy_noplugin]=$PID_wasmproxy_noplugin [wasmproxy_plugin]=$PID_wasmproxy_plugin [nginx]=$PID_nginx)
declare -A RPS P50 P99 REQS NON2XX SOCKERR PCPU UCPU WCPU OCPU
PROBLEMS=()

bound=$(($(seconds "$DURATION") + 30))
wbound=$(($(seconds "$WARMUP") + 30))
# How busy is the machine before any load? Others' work skews the numbers.
b0=$(busy_ticks)
sleep 2
b1=$(busy_ticks)
idle_busy=$(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" -v n="$(nproc)" 'BEGIN {printf "%.0f", d / hz / 2 / n * 100}')
log "machine busy before the run (bench's idle servers included): ${idle_busy}% of $(nproc) CPUs over 2 s"
((idle_busy <= 10)) || log "WARNING: the machine is not idle; the numbers will be low and noisy (see 'other CPU s')"
date_start=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for t in "${TARGETS[@]}"; do
	url="http://127.0.0.1:${PORT[$t]}/"
	log "$t: warm-up $WARMUP"
	run_wrk "$WORK/wrk-$t-warmup.txt" "$wbound" -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$BENCH/post.lua" "$url" ||
		die "wrk warm-up against $t failed: $(cat "$WORK/wrk-$t-warmup.txt")"
	log "$t: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -s bench/post.lua $url"
	p0=0
	[[ -n ${PROXYPID[$t]} ]] && p0=$(cpu_ticks "${PROXYPID[$t]}")
	u0=$(cpu_ticks "$PID_upstream")
	s0=$(busy_ticks)
	times >"$WORK/times0-$t.txt"
	run_wrk "$WORK/wrk-$t.txt" "$bound" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$BENCH/post.lua" "$url" ||
		die "wrk against $t failed: $(cat "$WORK/wrk-$t.txt")"
	times >"$WORK/times1-$t.txt"
	s1=$(busy_ticks)
	p1=0
	[[ -n ${PROXYPID[$t]} ]] && p1=$(cpu_ticks "${PROXYPID[$t]}")
	u1=$(cpu_ticks "$PID_upstream")
	out=$WORK/wrk-$t.txt
	RPS[$t]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
	REQS[$t]=$(awk '/requests in/ {print $1}' "$out")
	P50[$t]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
	P99[$t]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
	NON2XX[$t]=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	NON2XX[$t]=${NON2XX[$t]:-0}
	SOCKERR[$t]=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
	SOCKERR[$t]=${SOCKERR[$t]:-0}
	[[ -n ${RPS[$t]} && -n ${REQS[$t]} && ${REQS[$t]} -gt 0 ]] || die "could not parse wrk output for $t: $(cat "$out")"
	if [[ -n ${PROXYPID[$t]} ]]; then
		PCPU[$t]=$(awk -v d=$((p1 - p0)) -v hz="$CLK_TCK" -v n="${REQS[$t]}" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	else
		PCPU[$t]="—"
	fi
	WCPU[$t]=$(awk -v a="$(children_cpu "$WORK/times0-$t.txt")" -v b="$(children_cpu "$WORK/times1-$t.txt")" 'BEGIN {printf "%.1f", b - a}')
	OCPU[$t]=$(awk -v all=$((s1 - s0)) -v p=$((p1 - p0)) -v u=$((u1 - u0)) -v w="${WCPU[$t]}" -v hz="$CLK_TCK" \
		'BEGIN {printf "%.1f", (all - p - u) / hz - w}')
	UCPU[$t]=$(awk -v d=$((u1 - u0)) -v hz="$CLK_TCK" -v n="${REQS[$t]}" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	log "$t: ${RPS[$t]} rps, p50 ${P50[$t]} ms, p99 ${P99[$t]} ms, non-2xx ${NON2XX[$t]}, socket errors ${SOCKERR[$t]}"
	if [[ ${NON2XX[$t]} != 0 || ${SOCKERR[$t]} != 0 ]]; then
		PROBLEMS+=("$t: ${NON2XX[$t]} non-2xx responses, ${SOCKERR[$t]} socket errors (wrk output below)")
	fi
	for n in "${TARGETS[@]}"; do
		[[ $n == upstream ]] && pid=$PID_upstream || pid=${PROXYPID[$n]}
		if ! kill -0 "$pid" 2>/dev/null; then
			PROBLEMS+=("$n (pid $pid) died during the run against $t; log: $(tail -n 20 "$WORK/$n.log")")
			die "$n died during the run against $t: $(tail -n 20 "$WORK/$n.log")"
		fi
	done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "—" }'; }

cpu_model=$(lscpu 2>/dev/null | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
stamp=$(date -u '+%Y-%m-%dT%H%M%SZ')
mkdir -p "$BENCH/results"
result=$BENCH/results/$stamp.md

{
	echo "# wasmproxy benchmark, $date_start"
	echo
	echo "\`bash bench/run.sh\`: wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'), \`-t$THREADS -c$CONNECTIONS -d$DURATION --latency\`, HTTP/1.1 keep-alive, POST of a 52-byte JSON body with \`content-type: application/json\` (bench/post.lua), $WARMUP warm-up per target, everything on 127.0.0.1 in front of the same Go upstream (bench/upstream)."
	echo
	echo "| target | rps | p50 ms | p99 ms | × nginx | non-2xx | socket errors | proxy CPU µs/req | upstream CPU µs/req | wrk CPU s | other CPU s |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for t in "${TARGETS[@]}"; do
		x=$(ratio "${RPS[$t]}" "${RPS[nginx]}")
		[[ $t == upstream ]] && x="($x)"
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" \
			"$x" "${NON2XX[$t]}" "${SOCKERR[$t]}" "${PCPU[$t]}" "${UCPU[$t]}" "${WCPU[$t]}" "${OCPU[$t]}"
	done
	echo
	echo "- wasmproxy no plugin / nginx: **$(ratio "${RPS[wasmproxy_noplugin]}" "${RPS[nginx]}")** (target ≥ 1.00×)"
	echo "- wasmproxy + json-validation / wasmproxy no plugin: **$(ratio "${RPS[wasmproxy_plugin]}" "${RPS[wasmproxy_noplugin]}")** (target ≥ 0.90×)"
	echo "- CPU µs/req: utime+stime from /proc/PID/stat over the measured run (nginx: master + workers), divided by the requests wrk completed. wrk CPU s: wrk's own user+sys CPU-seconds. other CPU s: machine busy time (/proc/stat) minus proxy, upstream and wrk, i.e. foreign load; more than about 1 CPU-s per 10 s means the run was disturbed (tick accounting is good to about ±0.5 s)."
	if ((${#PROBLEMS[@]})); then
		echo
		echo "## PROBLEMS"
		echo
		for p in "${PROBLEMS[@]}"; do echo "- **$p**"; done
	fi
	echo
	echo "## Machine"
	echo
	echo "| item | value |"
	echo "|---|---|"
	echo "| date | $date_start |"
	echo "| nproc | $(nproc) |"
	echo "| CPU | ${cpu_model:-unknown} |"
	echo "| kernel | $(uname -r) |"
	echo "| go | $(go version | awk '{print $3, $4}') (GOMAXPROCS ${GOMAXPROCS:-default = nproc}) |"
	echo "| wrk | $(wrk -v 2>&1 | head -n 1) |"
	echo "| nginx | $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //') (worker_processes auto) |"
	echo "| wasmproxy tree | $git_rev, $git_dirty uncommitted paths |"
	echo "| load average before / after | $load_before / $load_after |"
	echo "| CPU busy in the 2 s before the run | ${idle_busy}% |"
	echo
	echo "## Raw wrk output"
	for t in "${TARGETS[@]}"; do
		echo
		echo "### ${LABEL[$t]} (127.0.0.1:${PORT[$t]})"
		echo
		echo '```'
		cat "$WORK/wrk-$t.txt"
		echo '```'
	done
} >"$result"

cat "$result"
log "written to ${result#"$ROOT"/}"
if ((${#PROBLEMS[@]})); then
	printf '\n[bench] PROBLEMS:\n' >&2
	printf '[bench]   %s\n' "${PROBLEMS[@]}" >&2
	KEEP_WORK=1
	exit 3
fi
