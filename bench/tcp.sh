#!/usr/bin/env bash
# bench/tcp.sh: TCP proxy throughput and TLS handshake rate of wasmproxy
# next to HAProxy in TCP mode, on this machine, in one run. See
# docs/perf.md ("TCP proxy and TLS").
#
# Targets (all on 127.0.0.1, all in front of the same sink, bench/tcpload):
#   sink                 the sink itself, no proxy                          :29000
#   wasmproxy            tcp_proxy, no plugin                               :29001
#   wasmproxy+plugin     envoy.filters.network.wasm (examples/tcp-prepend,
#                        the second seed's filter) ahead of tcp_proxy       :29002
#   haproxy              mode tcp                                           :29003
#   wasmproxy TLS        TLS termination (ECDSA P-256, TLS 1.3), tcp_proxy  :29101
#   haproxy TLS          bind ... ssl, mode tcp                             :29103
#
# Throughput: `tcpload stream` with 1 and with CONNECTIONS connections,
# each writing 64 KiB blocks for DURATION; MB/s (10^6 bytes) of data the
# client got through. Handshakes: `tcpload handshake` with CONNECTIONS
# workers, each a full TLS 1.3 handshake (no resumption) then close.
#
# Environment:
#   DURATION=10s     measured run per target and load (seconds: 10, 10s)
#   CONNECTIONS=50   concurrent connections / handshake workers
#   KEEP_WORK=1      keep the scratch directory (configs, logs)
#
# Writes bench/results/tcp-<date>.md (gitignored) and prints it. Exit
# status: 0 ok; 1 setup or check failed; 3 a run had errors or a
# process died.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
SINK_PORT=29000
NOPLUGIN_PORT=29001
PLUGIN_PORT=29002
HAPROXY_PORT=29003
TLS_PORT=29101
HAPROXY_TLS_PORT=29103
ADMIN_PORT=29901

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	printf '\n[bench] ERROR: %s\n\n' "$*" >&2
	exit 1
}
secs=${DURATION%s}
[[ $secs =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: want seconds, e.g. 10s"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] || die "CONNECTIONS=$CONNECTIONS: want a number"

# ---------------------------------------------------------------- tools
HAPROXY_BIN=$(command -v haproxy || true)
[[ -z $HAPROXY_BIN && -x /usr/sbin/haproxy ]] && HAPROXY_BIN=/usr/sbin/haproxy
if [[ -z $HAPROXY_BIN ]] || ! command -v openssl >/dev/null; then
	[[ $(id -u) -eq 0 ]] || die "haproxy and openssl are needed; run as root once so this script can apt-get install them (or: sudo apt-get install haproxy openssl)"
	log "installing haproxy, openssl with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq haproxy openssl >/dev/null
	HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)
fi
command -v go >/dev/null || die "the Go toolchain is not on PATH"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $SINK_PORT $NOPLUGIN_PORT $PLUGIN_PORT $HAPROXY_PORT $TLS_PORT $HAPROXY_TLS_PORT $ADMIN_PORT; do
	port_busy "$p" && die "port 127.0.0.1:$p is already in use (another bench run?)"
done

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/wasmproxy-tcpbench.XXXXXX)
PIDS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
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
log "building wasmproxy, tcpload and the tcp-prepend plugin in $WORK"
go build -o "$WORK/wasmproxy" ./cmd/wasmproxy || die "go build ./cmd/wasmproxy failed"
go build -o "$WORK/tcpload" ./bench/tcpload || die "go build ./bench/tcpload failed"
"$WORK/wasmproxy" plugin build examples/tcp-prepend -o "$WORK/tcp-prepend.wasm" >&2 ||
	die "wasmproxy plugin build examples/tcp-prepend failed"

# One ECDSA P-256 certificate for both proxies, signed by a throw-away CA.
mkdir -p "$WORK/certs"
(
	cd "$WORK/certs"
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-keyout ca.key -out ca.pem -subj "/CN=bench CA" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
	printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext.cnf
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
		-out server.pem -extfile ext.cnf 2>/dev/null
	cat server.pem server.key >server-haproxy.pem
) || die "openssl could not make the certificates"

# ---------------------------------------------------------------- configs
tcp_chain() { # tcp_chain PREFIX [plugin]
	if [[ ${2:-} == plugin ]]; then
		cat <<EOF
            - name: envoy.filters.network.wasm
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
                config:
                  name: tcp-prepend
                  vm_config: { code: { local: { filename: $WORK/tcp-prepend.wasm } } }
EOF
	fi
	cat <<EOF
            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                stat_prefix: $1
                cluster: sink
EOF
}
cat >"$WORK/wasmproxy.yaml" <<EOF
static_resources:
  listeners:
    - name: noplugin
      address: { socket_address: { address: 127.0.0.1, port_value: $NOPLUGIN_PORT } }
      filter_chains:
        - filters:
$(tcp_chain noplugin)
    - name: plugin
      address: { socket_address: { address: 127.0.0.1, port_value: $PLUGIN_PORT } }
      filter_chains:
        - filters:
$(tcp_chain plugin plugin)
    - name: tls
      address: { socket_address: { address: 127.0.0.1, port_value: $TLS_PORT } }
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                tls_certificates:
                  - certificate_chain: { filename: $WORK/certs/server.pem }
                    private_key: { filename: $WORK/certs/server.key }
          filters:
$(tcp_chain tls)
  clusters:
    - name: sink
      connect_timeout: 1s
      load_assignment:
        cluster_name: sink
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $SINK_PORT } } } }] }]
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $ADMIN_PORT } }
EOF
cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend plain
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend sink
frontend tls
    bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $WORK/certs/server-haproxy.pem
    default_backend sink
backend sink
    server sink 127.0.0.1:$SINK_PORT
EOF

# ---------------------------------------------------------------- start
start() { # start NAME CMD...
	local name=$1
	shift
	(cd "$WORK" && exec "$@") >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	eval "PID_$name=$!"
}
wait_ready() { # wait_ready NAME PORT PID
	for _ in $(seq 600); do
		kill -0 "$3" 2>/dev/null || die "$1 exited during start-up: $(tail -n 20 "$WORK/$1.log")"
		port_busy "$2" && return 0
		sleep 0.1
	done
	die "$1 did not listen on 127.0.0.1:$2 within 60 s: $(tail -n 20 "$WORK/$1.log")"
}
start sink "$WORK/tcpload" sink -listen "127.0.0.1:$SINK_PORT"
wait_ready sink $SINK_PORT "$PID_sink"
start wasmproxy "$WORK/wasmproxy" -c "$WORK/wasmproxy.yaml" --cache-dir "$WORK/cache"
start haproxy "$HAPROXY_BIN" -db -f "$WORK/haproxy.cfg"
wait_ready wasmproxy $TLS_PORT "$PID_wasmproxy"
wait_ready haproxy $HAPROXY_TLS_PORT "$PID_haproxy"

# ---------------------------------------------------------------- checks
for p in $NOPLUGIN_PORT $PLUGIN_PORT $HAPROXY_PORT; do
	out=$("$WORK/tcpload" stream -target "127.0.0.1:$p" -conns 1 -duration 1s)
	[[ $(awk '{print $4}' <<<"$out") -gt 0 ]] || die "nothing got through 127.0.0.1:$p: $out"
done
for p in $TLS_PORT $HAPROXY_TLS_PORT; do
	out=$("$WORK/tcpload" handshake -target "127.0.0.1:$p" -ca "$WORK/certs/ca.pem" -conns 1 -duration 1s)
	[[ $(awk '{print $4}' <<<"$out") -gt 0 && $(awk '{print $6}' <<<"$out") -eq 0 ]] ||
		die "TLS handshakes with 127.0.0.1:$p failed: $out"
done
# The plugin must be in the path: its filter counts connections.
curl -sf "http://127.0.0.1:$ADMIN_PORT/stats" | grep -q '^wasm\..*\.created: [1-9]' ||
	die "wasmproxy loaded no Wasm VM: the plugin listener runs without its plugin"
log "checks passed"

# ---------------------------------------------------------------- load
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # cpu_ticks PID...: utime+stime of the PIDs and their children
	local total=0 p q
	for p in "$@"; do
		for q in $p $(pgrep -P "$p" 2>/dev/null || true); do
			[[ -r /proc/$q/stat ]] || continue
			total=$((total + $(sed 's/^.*) //' "/proc/$q/stat" | awk '{print $12 + $13}')))
		done
	done
	echo "$total"
}
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

declare -A RESULT CPU
PROBLEMS=()
date_start=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
b0=$(busy_ticks)
sleep 2
b1=$(busy_ticks)
idle_busy=$(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" -v n="$(nproc)" 'BEGIN {printf "%.0f", d / hz / 2 / n * 100}')
((idle_busy <= 10)) || log "WARNING: the machine is ${idle_busy}% busy before the run; numbers will be low and noisy"

# measure KEY PID MODE ARGS...: run tcpload, keep its line and the proxy's CPU seconds.
measure() {
	local key=$1 pid=$2 mode=$3
	shift 3
	local c0=0 c1=0 out
	[[ -n $pid ]] && c0=$(cpu_ticks "$pid")
	out=$(timeout $((secs + 60)) "$WORK/tcpload" "$mode" -duration "${secs}s" "$@") || die "tcpload $mode $* failed"
	[[ -n $pid ]] && c1=$(cpu_ticks "$pid")
	RESULT[$key]=$out
	CPU[$key]=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", d / hz}')
	log "$key: $out (proxy CPU ${CPU[$key]} s)"
	[[ $mode == handshake && $(awk '{print $6}' <<<"$out") -ne 0 ]] && PROBLEMS+=("$key: $out")
	for n in sink wasmproxy haproxy; do
		eval "p=\$PID_$n"
		kill -0 "$p" 2>/dev/null || { PROBLEMS+=("$n died during $key"); die "$n died during $key: $(tail -n 20 "$WORK/$n.log")"; }
	done
}

declare -A PORT=([sink]=$SINK_PORT [wasmproxy]=$NOPLUGIN_PORT [wasmproxy_plugin]=$PLUGIN_PORT [haproxy]=$HAPROXY_PORT)
declare -A PPID_OF=([sink]="" [wasmproxy]=$PID_wasmproxy [wasmproxy_plugin]=$PID_wasmproxy [haproxy]=$PID_haproxy)
declare -A LABEL=([sink]="sink, direct" [wasmproxy]="wasmproxy tcp_proxy" [wasmproxy_plugin]="wasmproxy tcp_proxy + tcp-prepend plugin" [haproxy]="HAProxy mode tcp")
STREAM_TARGETS=(sink wasmproxy wasmproxy_plugin haproxy)
for t in "${STREAM_TARGETS[@]}"; do
	for c in 1 "$CONNECTIONS"; do
		measure "$t/$c" "${PPID_OF[$t]}" stream -target "127.0.0.1:${PORT[$t]}" -conns "$c"
	done
done
measure tls/wasmproxy "$PID_wasmproxy" handshake -target "127.0.0.1:$TLS_PORT" -ca "$WORK/certs/ca.pem" -conns "$CONNECTIONS"
measure tls/haproxy "$PID_haproxy" handshake -target "127.0.0.1:$HAPROXY_TLS_PORT" -ca "$WORK/certs/ca.pem" -conns "$CONNECTIONS"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
field() { awk -v i="$2" '{print $i}' <<<"${RESULT[$1]}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "—" }'; }
per() { awk -v cpu="$1" -v n="$2" -v scale="$3" 'BEGIN { if (n > 0) printf "%.1f", cpu * scale / n; else print "—" }'; }

stamp=$(date -u '+%Y-%m-%dT%H%M%SZ')
mkdir -p "$BENCH/results"
result=$BENCH/results/tcp-$stamp.md
git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
{
	echo "# wasmproxy TCP benchmark, $date_start"
	echo
	echo "\`bash bench/tcp.sh\`: bench/tcpload, ${secs}s per run, everything on 127.0.0.1 in front of the same sink. Throughput: each connection writes 64 KiB blocks; MB = 10^6 bytes. TLS: full TLS 1.3 handshakes (ECDSA P-256 certificate, X25519 key exchange offered alone so both servers do the same work, no resumption) by $CONNECTIONS workers, each followed by a close; the proxy also opens the upstream connection."
	echo
	echo "| target | MB/s, 1 conn | MB/s, $CONNECTIONS conns | × HAProxy (1 / $CONNECTIONS) | proxy CPU s per GB (1 / $CONNECTIONS) |"
	echo "|---|---:|---:|---:|---:|"
	for t in "${STREAM_TARGETS[@]}"; do
		m1=$(field "$t/1" 2) mn=$(field "$t/$CONNECTIONS" 2)
		x="$(ratio "$m1" "$(field haproxy/1 2)") / $(ratio "$mn" "$(field "haproxy/$CONNECTIONS" 2)")"
		cpu="—"
		[[ -n ${PPID_OF[$t]} ]] && cpu="$(per "${CPU[$t/1]}" "$(field "$t/1" 4)" 1e9) / $(per "${CPU[$t/$CONNECTIONS]}" "$(field "$t/$CONNECTIONS" 4)" 1e9)"
		[[ $t == sink ]] && x="($x)"
		printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "$m1" "$mn" "$x" "$cpu"
	done
	echo
	echo "| TLS termination | handshakes/s | × HAProxy | proxy CPU µs per handshake |"
	echo "|---|---:|---:|---:|"
	for t in wasmproxy haproxy; do
		h=$(field "tls/$t" 2)
		printf '| %s | %s | %s | %s |\n' "$t" "$h" "$(ratio "$h" "$(field tls/haproxy 2)")" "$(per "${CPU[tls/$t]}" "$(field "tls/$t" 4)" 1e6)"
	done
	echo
	echo "- wasmproxy / HAProxy, $CONNECTIONS connections: **$(ratio "$(field "wasmproxy/$CONNECTIONS" 2)" "$(field "haproxy/$CONNECTIONS" 2)")**, with the plugin **$(ratio "$(field "wasmproxy_plugin/$CONNECTIONS" 2)" "$(field "haproxy/$CONNECTIONS" 2)")** (target ≥ 0.90×)"
	echo "- TLS handshakes, wasmproxy / HAProxy: **$(ratio "$(field tls/wasmproxy 2)" "$(field tls/haproxy 2)")**"
	echo "- proxy CPU: utime+stime of the proxy process(es) from /proc over the run. The load generator and the sink run on the same $(nproc) CPUs."
	if ((${#PROBLEMS[@]})); then
		echo
		echo "## PROBLEMS"
		echo
		for p in "${PROBLEMS[@]}"; do echo "- **$p**"; done
	fi
	echo
	echo "| machine | |"
	echo "|---|---|"
	echo "| nproc, CPU | $(nproc), $(lscpu 2>/dev/null | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}') |"
	echo "| kernel | $(uname -r) |"
	echo "| go | $(go version | awk '{print $3, $4}') |"
	echo "| haproxy | $("$HAPROXY_BIN" -v 2>&1 | head -n 1) |"
	echo "| wasmproxy tree | $git_rev, $git_dirty uncommitted paths |"
	echo "| load average before / after | $load_before / $load_after; CPU busy before: ${idle_busy}% |"
} >"$result"
cat "$result"
log "written to ${result#"$ROOT"/}"
if ((${#PROBLEMS[@]})); then
	KEEP_WORK=1
	exit 3
fi
