#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — Drover's benchmark suite (see bench/README.md).
#
# Raises the descriptor limit to the hard limit (inherited by droverd,
# mosquitto and drover-sim: 19,000 connections need it), then runs
# bench/bench.py, which starts every server and load generator itself,
# pinned server on BENCH_SERVER_CPU and generator on BENCH_CLIENT_CPU.
#
#   BENCH_SCENARIOS="idle connect fanin qos1 commands reconnect"   (default: all)
#   BENCH_SERVERS="droverd mosquitto"                              (default: both)
# and the per-scenario sizes listed in bench/README.md.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
[[ -d $1 ]] || { echo "bench: $1 is not a build directory" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
[[ -x $PY ]] || { echo "bench: $PY is required" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 20000)); then
  echo "bench: warning: ulimit -n is $(ulimit -n); the 19k-device runs need 20000" >&2
fi
exec "$PY" "$HERE/bench.py" "$1"
