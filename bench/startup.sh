#!/usr/bin/env bash
# bench/startup.sh: plugin start-up of the seed config (README's demo,
# examples/json-validation/envoy.yaml) measured from exec to admin /ready
# 200, median of RUNS starts, with an explicit --cache-dir: cold (the
# directory emptied before each start, so wazero compiles) and warm (the
# directory as the previous start left it). Issue 16's targets: cold ≤ 1 s,
# warm ≤ 30 ms. See docs/perf.md ("Plugin start-up").
#
# Environment: RUNS=5; BASE=<commit> also builds wasmproxy at that commit
# (git archive, no checkout) and measures it in the same run, the two
# binaries taking turns start by start. Ports: the seed's, moved to 28180 (listener),
# 28199 (upstream) and 28101 (admin) so a running demo does not clash;
# PORT_LISTEN, PORT_UPSTREAM and PORT_ADMIN move them elsewhere.
set -euo pipefail

RUNS=${RUNS:-5}
PORT_LISTEN=${PORT_LISTEN:-28180}
PORT_UPSTREAM=${PORT_UPSTREAM:-28199}
PORT_ADMIN=${PORT_ADMIN:-28101}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[startup] %s\n' "$*" >&2; }
die() {
	printf '[startup] ERROR: %s\n' "$*" >&2
	exit 1
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PORT_LISTEN" "$PORT_UPSTREAM" "$PORT_ADMIN"; do
	port_busy "$p" && die "port 127.0.0.1:$p is already in use"
done

WORK=$(mktemp -d /tmp/wasmproxy-startup.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
log "building wasmproxy, the json-validation plugin and bench/startup in $WORK"
go build -o "$WORK/wasmproxy" ./cmd/wasmproxy
"$WORK/wasmproxy" plugin build examples/json-validation -o "$WORK/main.wasm" >&2
go build -o "$WORK/startup" ./bench/startup
BINS=(this)
if [[ -n ${BASE:-} ]]; then
	log "building wasmproxy at $BASE"
	mkdir "$WORK/base"
	git archive "$BASE" | tar -x -C "$WORK/base"
	(cd "$WORK/base" && go build -o "$WORK/wasmproxy-base" ./cmd/wasmproxy)
	BINS=(base this)
fi
sed -e "s/port_value: 18000/port_value: $PORT_LISTEN/" -e "s/port_value: 8099/port_value: $PORT_UPSTREAM/" \
	-e "s/port_value: 8001/port_value: $PORT_ADMIN/" examples/json-validation/envoy.yaml >"$WORK/envoy.yaml"
grep -q "$PORT_ADMIN" "$WORK/envoy.yaml" || die "could not move the seed config's admin port"

log "machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3), tree $(git rev-parse --short HEAD 2>/dev/null || echo '?')${BASE:+, base $BASE}"
BINARGS=()
for b in "${BINS[@]}"; do
	if [[ $b == base ]]; then BINARGS+=(-bin "base=$WORK/wasmproxy-base"); else BINARGS+=(-bin "this=$WORK/wasmproxy"); fi
done
run() {
	"$WORK/startup" "${BINARGS[@]}" -dir "$WORK" -ready "http://127.0.0.1:$PORT_ADMIN/ready" \
		-cache-dir "$WORK/cache" -runs "$RUNS" "$@" -- -c "$WORK/envoy.yaml"
}
echo "cold (empty --cache-dir, median of $RUNS):"
run -cold
echo "warm (same --cache-dir, median of $RUNS):"
run
