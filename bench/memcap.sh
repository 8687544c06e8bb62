#!/usr/bin/env bash
# bench/memcap.sh: what backing linear memory with an mmap reservation
# (wasm/memory_linux.go) changes, this tree against BASE (default: the
# commit before wasm/memory_linux.go was added), in one run. See
# docs/perf.md, "Linear memory in a reservation".
#
# 1. RSS. For each cap in CAPS and mode in MODES, each build runs
#    wasmproxy --concurrency INSTANCES with one listener whose chaos
#    plugin (e2e/testdata/chaos, FAIL_RELOAD, WASMPROXY_MEMORY_LIMIT_MB=
#    cap) is sent INSTANCES requests "x-chaos: MODE" (a Go guest appending
#    1 MiB slices until its memory is refused: 503 each, one per
#    instance; "alloc" leaves the slices untouched, "fill" writes to
#    every page of them), then INSTANCES plain requests (200; FAIL_RELOAD
#    replaces the poisoned instances).
#    Reported from /proc/PID/status: VmRSS when ready, VmHWM (peak) after
#    the allocations, VmRSS after them and after the replacement. The
#    admin stats must show INSTANCES memory_limit_exceeded and
#    vm_reload_success.
# 2. Go benchmarks (package wasm): BenchmarkNewInstance (fill and empty a
#    pool slot: instantiate, initializer, close) and BenchmarkStream (one
#    stream through the Go test plugin), each test binary run ROUNDS
#    times alternating base, tree, base, ... (-benchtime BENCHTIME);
#    medians. The base checkout gets this tree's instance_bench_test.go.
# 3. The seed plugin's request path: wasmproxy with the json-validation
#    plugin (bench/configs/wasmproxy-json-validation.yaml, --concurrency
#    2), base and tree side by side, wrk -t1 -cCONNECTIONS -dDURATION -s
#    bench/post.lua, WRK_ROUNDS rounds alternating; rps and proxy CPU per
#    request, medians.
#
# Environment: BASE=<rev> CAPS="64 256" MODES="alloc fill" INSTANCES=2 ROUNDS=8 BENCHTIME=1s
#   WRK_ROUNDS=3 DURATION=10s CONNECTIONS=50 WARMUP=2s KEEP_WORK=1
#   SKIP="rss bench wrk" (any of them)
# Prints Markdown; writes it to bench/results/memcap-<time>.md (gitignored).
# Exit status: 0 ok; 1 setup failed; 3 a check failed (wrong status,
# missing stat, non-2xx under wrk).
set -euo pipefail

CAPS=${CAPS:-64 256}
MODES=${MODES:-alloc fill}
INSTANCES=${INSTANCES:-2}
ROUNDS=${ROUNDS:-8}
BENCHTIME=${BENCHTIME:-1s}
WRK_ROUNDS=${WRK_ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-2s}
SKIP=${SKIP:-}
UPSTREAM_PORT=28399
CHAOS_PORT=28301
ADMIN_PORT=28302
BASE_PORT=28303
TREE_PORT=28304

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
BODY='{"id": "xxx", "token": "xxx", "anotherField": "yyy"}'

log() { printf '[memcap] %s\n' "$*" >&2; }
die() {
	printf '\n[memcap] ERROR: %s\n\n' "$*" >&2
	exit 1
}
skip() { [[ " $SKIP " == *" $1 "* ]]; }
for tool in curl go git; do
	command -v "$tool" >/dev/null || die "$tool is needed"
done
skip wrk || command -v wrk >/dev/null || die "wrk is needed (bench/run.sh installs it when run as root), or SKIP=wrk"
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $UPSTREAM_PORT $CHAOS_PORT $ADMIN_PORT $BASE_PORT $TREE_PORT; do
	port_busy "$p" && die "port 127.0.0.1:$p is already in use"
done

cd "$ROOT"
if [[ -z ${BASE:-} ]]; then
	added=$(git log --diff-filter=A --format=%H -- wasm/memory_linux.go | tail -n 1)
	[[ -n $added ]] || die "cannot find the commit that added wasm/memory_linux.go: set BASE"
	BASE=$(git rev-parse --short "$added^")
fi

WORK=$(mktemp -d /tmp/wasmproxy-memcap.XXXXXX)
PIDS=()
WRK_PID=
cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	[[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ ${KEEP_WORK:-0} == 1 || $rc -ne 0 ]]; then log "scratch directory kept: $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building the tree and $BASE in $WORK"
mkdir -p "$WORK/base-src" "$WORK/tree" "$WORK/base"
git archive "$BASE" | tar -x -C "$WORK/base-src"
cp wasm/instance_bench_test.go "$WORK/base-src/wasm/"
go build -o "$WORK/tree/wasmproxy" ./cmd/wasmproxy || die "go build ./cmd/wasmproxy failed"
go test -c -o "$WORK/tree/wasm.test" ./wasm || die "go test -c ./wasm failed"
(cd "$WORK/base-src" && go build -o "$WORK/base/wasmproxy" ./cmd/wasmproxy && go test -c -o "$WORK/base/wasm.test" ./wasm) ||
	die "building $BASE failed"
go build -o "$WORK/upstream" ./bench/upstream || die "go build ./bench/upstream failed"
(cd e2e/testdata/chaos && GOOS=wasip1 GOARCH=wasm GOWORK=off CGO_ENABLED=0 go build -buildmode=c-shared -o "$WORK/chaos.wasm" .) ||
	die "building e2e/testdata/chaos failed"
"$WORK/tree/wasmproxy" plugin build examples/json-validation -o "$WORK/json-validation.wasm" >&2 ||
	die "wasmproxy plugin build examples/json-validation failed"

start() { # start NAME DIR CMD...: runs CMD in DIR, logs to $WORK/NAME.log, sets PID_NAME
	local name=$1 dir=$2
	shift 2
	(cd "$dir" && exec "$@") >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_$name=$!"
}
wait_ready() {
	local name=$1 port=$2 pid=$3
	for _ in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || die "$name exited during start-up: $(tail -n 20 "$WORK/$name.log")"
		port_busy "$port" && return 0
		sleep 0.1
	done
	die "$name did not listen on 127.0.0.1:$port within 60 s: $(tail -n 20 "$WORK/$name.log")"
}
stop() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
stat_value() { curl -sS -m 10 "http://127.0.0.1:$ADMIN_PORT/stats" | awk -v n="$1:" '$1 == n {print $2}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

start upstream "$WORK" "$WORK/upstream" -port "$UPSTREAM_PORT"
wait_ready upstream "$UPSTREAM_PORT" "$PID_upstream"
PROBLEMS=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. RSS ----------------------------------------------------------------
RSS_ROWS=()
if ! skip rss; then
	for cap in $CAPS; do
		for mode in $MODES; do
			for build in base tree; do
				dir=$WORK/rss-$build-$cap-$mode
				mkdir -p "$dir"
				cp "$WORK/chaos.wasm" "$dir/"
				cat >"$dir/envoy.yaml" <<EOF
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN_PORT}}
static_resources:
  listeners:
    - name: greedy
      address: {socket_address: {address: 127.0.0.1, port_value: $CHAOS_PORT}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: greedy
                route_config:
                  virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: web}}]}]
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: greedy
                        failure_policy: FAIL_RELOAD
                        reload_config: {backoff: {base_interval: 0.001s}}
                        vm_config:
                          vm_id: greedy
                          code: {local: {filename: chaos.wasm}}
                          environment_variables: {key_values: {WASMPROXY_MEMORY_LIMIT_MB: "$cap", WASMPROXY_CALL_DEADLINE_MS: "60000"}}
                  - name: envoy.filters.http.router
  clusters:
    - name: web
      connect_timeout: 1s
      load_assignment: {cluster_name: web, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $UPSTREAM_PORT}}}}]}]}
EOF
				name=rss_${build}_${cap}_$mode
				start "$name" "$dir" "$WORK/$build/wasmproxy" -c envoy.yaml --concurrency "$INSTANCES"
				pid_var=PID_$name
				pid=${!pid_var}
				wait_ready "$name" "$CHAOS_PORT" "$pid"
				wait_ready "$name admin" "$ADMIN_PORT" "$pid"
				ready=$(status_kb "$pid" VmRSS)
				codes=
				for _ in $(seq "$INSTANCES"); do
					codes+=$(curl -sS -m 120 -o /dev/null -w '%{http_code} ' -H "x-chaos: $mode" "http://127.0.0.1:$CHAOS_PORT/" || echo "000 ")
				done
				peak=$(status_kb "$pid" VmHWM)
				failed=$(status_kb "$pid" VmRSS)
				for _ in $(seq "$INSTANCES"); do
					codes+=$(curl -sS -m 60 -o /dev/null -w '%{http_code} ' "http://127.0.0.1:$CHAOS_PORT/" || echo "000 ")
				done
				replaced=$(status_kb "$pid" VmRSS)
				oom=$(stat_value wasm.greedy.memory_limit_exceeded)
				reloads=$(stat_value wasm.greedy.vm_reload_success)
				want="$(printf '503 %.0s' $(seq "$INSTANCES"))$(printf '200 %.0s' $(seq "$INSTANCES"))"
				[[ $codes == "$want" ]] || PROBLEMS+=("$build cap $cap $mode: statuses $codes, want $want")
				[[ ${oom:-0} == "$INSTANCES" && ${reloads:-0} == "$INSTANCES" ]] ||
					PROBLEMS+=("$build cap $cap $mode: memory_limit_exceeded ${oom:-0}, vm_reload_success ${reloads:-0}, want $INSTANCES each")
				stop "$pid"
				RSS_ROWS+=("| $cap | $mode | $build | $(mib "$ready") | **$(mib "$peak")** | +$(mib $((peak - ready))) | $(mib "$failed") | **$(mib "$replaced")** | $codes |")
				log "cap $cap MiB, $mode, $build: ready $(mib "$ready") MiB, peak $(mib "$peak") MiB, after the traps $(mib "$failed") MiB, after the replacement $(mib "$replaced") MiB ($codes)"
			done
		done
	done
fi

# --- 2. Go benchmarks ------------------------------------------------------
declare -A BENCH_NS BENCH_B
BENCH_NAMES=()
if ! skip bench; then
	for r in $(seq "$ROUNDS"); do
		for build in base tree; do
			src=$WORK/base-src
			[[ $build == tree ]] && src=$ROOT
			out=$WORK/bench-$build-$r.txt
			(cd "$src/wasm" && "$WORK/$build/wasm.test" -test.run '^$' -test.bench 'NewInstance|Stream' \
				-test.benchtime "$BENCHTIME" -test.benchmem) >"$out" 2>&1 || die "$build benchmarks failed: $(tail -n 20 "$out")"
			while read -r bname ns bytes; do
				if [[ $build == base && $r == 1 ]]; then BENCH_NAMES+=("$bname"); fi
				BENCH_NS["$bname $build"]+="$ns "
				BENCH_B["$bname $build"]+="$bytes "
			done < <(awk '/^Benchmark/ {sub(/-[0-9]+$/, "", $1); print $1, $3, $5}' "$out")
		done
		log "benchmark round $r of $ROUNDS done"
	done
fi

# --- 3. The seed plugin's request path -----------------------------------
declare -A RPS CPU
WRK_ROWS=()
if ! skip wrk; then
	base_cfg=$BENCH/configs/wasmproxy-json-validation.yaml
	for build in base tree; do
		port=$BASE_PORT
		[[ $build == tree ]] && port=$TREE_PORT
		sed -e "s/port_value: 28002/port_value: $port/" -e "s/port_value: 28099/port_value: $UPSTREAM_PORT/" "$base_cfg" >"$WORK/json-$build.yaml"
		start "json_$build" "$WORK" "$WORK/$build/wasmproxy" -c "$WORK/json-$build.yaml" --concurrency 2 --cache-dir "$WORK/cache-$build"
	done
	wait_ready json_base "$BASE_PORT" "$PID_json_base"
	wait_ready json_tree "$TREE_PORT" "$PID_json_tree"
	declare -A PORT=([base]=$BASE_PORT [tree]=$TREE_PORT)
	for build in base tree; do
		code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data "$BODY" "http://127.0.0.1:${PORT[$build]}/" || true)
		[[ $code == 200 ]] || die "$build answered $code to the benchmark POST, want 200"
		code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' --data '{"id": "xxx"}' "http://127.0.0.1:${PORT[$build]}/" || true)
		[[ $code == 403 ]] || die "$build let a body without token through ($code, want 403): the plugin is not filtering"
	done
	seconds() { case $1 in *m) echo $((${1%m} * 60)) ;; *s) echo "${1%s}" ;; *) echo "$1" ;; esac }
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
	CLK_TCK=$(getconf CLK_TCK)
	cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
	for r in $(seq "$WRK_ROUNDS"); do
		for build in base tree; do
			url="http://127.0.0.1:${PORT[$build]}/"
			run_wrk "$WORK/warm-$build-$r.txt" $(($(seconds "$WARMUP") + 30)) -t1 -c"$CONNECTIONS" -d"$WARMUP" -s "$BENCH/post.lua" "$url" || die "wrk warm-up failed"
			out=$WORK/wrk-$build-$r.txt
			pid_var=PID_json_$build
			c0=$(cpu_ticks "${!pid_var}")
			run_wrk "$out" $(($(seconds "$DURATION") + 30)) -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$BENCH/post.lua" "$url" || die "wrk failed: $(cat "$out")"
			c1=$(cpu_ticks "${!pid_var}")
			reqs=$(awk '/requests in/ {print $1}' "$out")
			rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
			cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
			non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
			[[ -n $rps ]] || die "could not parse wrk output: $(cat "$out")"
			[[ ${non2xx:-0} == 0 ]] || PROBLEMS+=("wrk round $r $build: $non2xx non-2xx")
			RPS[$build]+="$rps "
			CPU[$build]+="$cpu "
			rss=$(status_kb "${!pid_var}" VmRSS)
			WRK_ROWS+=("| $r | $build | $rps | $cpu | $(mib "$rss") |")
			log "wrk round $r $build: $rps rps, proxy CPU $cpu µs/req, RSS $(mib "$rss") MiB"
		done
	done
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# shellcheck disable=SC2086
{
	echo "# linear memory in a reservation: tree vs $BASE, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "\`bash bench/memcap.sh\`: tree $(git rev-parse --short HEAD) ($(git status --porcelain | wc -l) uncommitted paths) against $BASE; $(nproc) CPUs; load average before/after $load_before / $load_after."
	if ((${#RSS_ROWS[@]})); then
		echo
		echo "RSS of wasmproxy --concurrency $INSTANCES (MiB), chaos plugin, $INSTANCES × \"x-chaos: MODE\" then $INSTANCES plain requests (FAIL_RELOAD replaces):"
		echo
		echo "| cap MiB | mode | build | ready | peak (VmHWM) | peak − ready | after the traps | after the replacement | statuses |"
		echo "|---:|---|---|---:|---:|---:|---:|---:|---|"
		printf '%s\n' "${RSS_ROWS[@]}"
	fi
	if ((${#BENCH_NAMES[@]})); then
		echo
		echo "Go benchmarks, medians of $ROUNDS alternating runs (-benchtime $BENCHTIME):"
		echo
		echo "| benchmark | base ns/op | tree ns/op | tree / base | base B/op | tree B/op |"
		echo "|---|---:|---:|---:|---:|---:|"
		for b in "${BENCH_NAMES[@]}"; do
			nb=$(median ${BENCH_NS["$b base"]}) nt=$(median ${BENCH_NS["$b tree"]})
			echo "| $b | $nb | $nt | $(awk -v a="$nt" -v b="$nb" 'BEGIN {printf "%.3f", a / b}') | $(median ${BENCH_B["$b base"]}) | $(median ${BENCH_B["$b tree"]}) |"
		done
	fi
	if ((${#WRK_ROWS[@]})); then
		echo
		echo "json-validation (seed) plugin, wrk -t1 -c$CONNECTIONS -d$DURATION (+ $WARMUP warm-up), $WRK_ROUNDS rounds alternating:"
		echo
		echo "| round | build | rps | proxy CPU µs/req | RSS MiB after |"
		echo "|---:|---|---:|---:|---:|"
		printf '%s\n' "${WRK_ROWS[@]}"
		rb=$(median ${RPS[base]}) rt=$(median ${RPS[tree]}) cb=$(median ${CPU[base]}) ct=$(median ${CPU[tree]})
		echo "| median | base | $rb | $cb | |"
		echo "| median | tree | $rt | $ct | |"
		echo
		awk -v a="$rt" -v b="$rb" -v c="$ct" -v d="$cb" 'BEGIN {printf "- tree / base: rps **%.3f×**, proxy CPU per request **%.3f×**\n", a / b, c / d}'
	fi
	if ((${#PROBLEMS[@]})); then
		echo
		printf -- '- **PROBLEM: %s**\n' "${PROBLEMS[@]}"
	fi
} >"$WORK/result.md"
mkdir -p "$BENCH/results"
result=$BENCH/results/memcap-$(date -u '+%Y-%m-%dT%H%M%SZ').md
cp "$WORK/result.md" "$result"
cat "$result"
log "written to ${result#"$ROOT"/}"
((${#PROBLEMS[@]} == 0)) || exit 3
