#!/usr/bin/env bash
# A fleet under one control plane (issue 15): N wasmproxy processes on
# loopback (default 20), each from a bootstrap with only
# dynamic_resources, join examples/xds-control-plane and get a listener
# with the json-validation plugin and a cluster over ADS. Under load on
# all of them the control plane pushes a new plugin configuration, then
# a new plugin module; the program prints how long until every proxy
# served each (median and max), the requests that failed, and the idle
# RSS per proxy. Everything stops by itself.
#
#   bench/fleet.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
go build -o "$out/wasmproxy" ./cmd/wasmproxy
go run ./cmd/wasmproxy plugin build examples/json-validation -o "$out/json-validation.wasm" >/dev/null
nproc_=$(nproc); load=$(cut -d' ' -f1 /proc/loadavg)
echo "machine: ${nproc_} cores, load average ${load} before the run; $(go version)"
cd examples/xds-control-plane
go run . -bench-fleet "$n" -wasmproxy "$out/wasmproxy" -plugin "$out/json-validation.wasm"
