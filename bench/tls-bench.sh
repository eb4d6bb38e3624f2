#!/usr/bin/env bash
# bench/tls-bench.sh BUILD_DIR — TLS handshake and connect rates (bench/README.md, "TLS").
#
# 1. Handshakes per second, full and resumed, TLS 1.3 and 1.2, against
#    droverd's MQTT-over-TLS listener and against `openssl s_server` with
#    the same certificate and key (droverd's self-issued server.crt, EC
#    P-256), the same TLS 1.2 cipher list and server preference, both
#    asking for an optional client certificate. Each server is pinned to
#    TLSB_SERVER_CPU, the client (BUILD_DIR/tls-handshake, sequential) to
#    TLSB_CLIENT_CPU. The server's user+system CPU time during each run
#    (/proc/PID/stat) gives its cost per handshake and so the handshakes
#    one server core sustains. `openssl s_time` runs as a cross-check.
# 2. MQTT connects with password authentication against droverd, one
#    after another (tls-handshake --mqtt-creds): plain TCP, TLS full
#    handshake, TLS resumed; and a plain connect storm with drover-sim
#    (TLSB_CONNECT_DEVICES devices at once, no rate limit).
#
# Needs BUILD_DIR/droverd, tls-handshake and drover-sim (a Release build:
# cmake -DCMAKE_BUILD_TYPE=Release; --target droverd tls-handshake drover-sim),
# openssl, taskset, curl and /usr/bin/python3. Prints a table; writes JSON
# to bench/results/tls-<UTC timestamp>.json. Every process it starts is
# stopped on exit.
#
#   TLSB_SECONDS=5            seconds per handshake run
#   TLSB_CONNECT_DEVICES=5000 devices in the drover-sim connect storm (0: skip)
#   TLSB_SERVER_CPU=0 TLSB_CLIENT_CPU=1
#   TLSB_TMPDIR=BUILD_DIR     where the temporary data dir lives
#   TLSB_KEEP=0               1 keeps it (logs, certificates, credentials)
set -euo pipefail

if [[ $# -ne 1 || ! -d $1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
SECS=${TLSB_SECONDS:-5}
NDEV=${TLSB_CONNECT_DEVICES:-5000}
SCPU=${TLSB_SERVER_CPU:-0}
CCPU=${TLSB_CLIENT_CPU:-1}
for bin in droverd tls-handshake drover-sim; do
  [[ -x $BUILD/$bin ]] || { echo "tls-bench: $BUILD/$bin is not built" >&2; exit 1; }
done
for tool in openssl taskset curl "$PY"; do
  command -v "$tool" >/dev/null || { echo "tls-bench: $tool is required" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d "${TLSB_TMPDIR:-$BUILD}/tls-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ ${TLSB_KEEP:-0} == 1 ]]; then echo "tls-bench: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

log() { echo "tls-bench: $*" >&2; }
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 200); do
    if "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2).close()' "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "tls-bench: nothing listens on port $1" >&2
  return 1
}
# utime + stime of a process, in clock ticks (fields 14 and 15, after "(comm)").
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
TCK=$(getconf CLK_TCK)

# ---- droverd -----------------------------------------------------------------
MQTT=$(free_port); HTTP=$(free_port); MQTTS=$(free_port); SPORT=$(free_port)
DATA=$TMP/data
taskset -c "$SCPU" "$BUILD/droverd" --data-dir "$DATA" --mqtt-listen "127.0.0.1:$MQTT" \
  --http-listen "127.0.0.1:$HTTP" --mqtts-listen "127.0.0.1:$MQTTS" --log-level warn \
  >"$TMP/droverd.out" 2>"$TMP/droverd.err" &
DPID=$!
PIDS+=("$DPID")
for _ in $(seq 400); do grep -q "droverd ready" "$TMP/droverd.out" 2>/dev/null && break; sleep 0.05; done
grep -q "droverd ready" "$TMP/droverd.out" || { cat "$TMP/droverd.err" >&2; exit 1; }
CA=$DATA/ca.crt
TOKEN=$(cat "$DATA/admin.token")

# ---- openssl s_server: same certificate, key, TLS 1.2 suites, client CA -------
taskset -c "$SCPU" openssl s_server -quiet -www -accept "127.0.0.1:$SPORT" \
  -cert "$DATA/server.crt" -key "$DATA/server.key" -CAfile "$CA" -verify 1 \
  -cipher 'ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL' -serverpref -no_comp \
  </dev/null >"$TMP/s_server.log" 2>&1 &
SPID=$!
PIDS+=("$SPID")
wait_port "$SPORT"
wait_port "$MQTTS"

RESULTS=$TMP/results.jsonl
: >"$RESULTS"

# run_hs NAME SERVER_PID PORT ARGS... : one tls-handshake run.
run_hs() {
  local name=$1 pid=$2 port=$3
  shift 3
  local c0 c1 out
  c0=$(cpu_ticks "$pid")
  out=$(taskset -c "$CCPU" "$BUILD/tls-handshake" --port "$port" --cafile "$CA" \
    --seconds "$SECS" --json "$@") || { log "$name: $out"; return 1; }
  c1=$(cpu_ticks "$pid")
  "$PY" - "$name" "$c0" "$c1" "$TCK" "$out" >>"$RESULTS" <<'EOF'
import json, sys
name, c0, c1, tck, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
r = json.loads(out)
cpu = (c1 - c0) / tck
n = r["handshakes"]
r.update(name=name, server_cpu_s=round(cpu, 2),
         server_cpu_us_each=round(cpu * 1e6 / n, 1) if n else None,
         per_server_core_s=round(n / cpu) if cpu > 0 else None)
print(json.dumps(r))
EOF
  log "$(tail -n1 "$RESULTS")"
}

# run_stime NAME SERVER_PID PORT ARGS... : openssl s_time as a cross-check.
run_stime() {
  local name=$1 pid=$2 port=$3
  shift 3
  local c0 c1 out
  c0=$(cpu_ticks "$pid")
  out=$(taskset -c "$CCPU" openssl s_time -connect "127.0.0.1:$port" -CAfile "$CA" \
    -time "$SECS" "$@" 2>/dev/null | grep "real seconds" | tail -n1) || true
  c1=$(cpu_ticks "$pid")
  "$PY" - "$name" "$c0" "$c1" "$TCK" "$out" >>"$RESULTS" <<'EOF'
import json, re, sys
name, c0, c1, tck, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
m = re.match(r"(\d+) connections in (\d+) real seconds", out)
n, secs = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
cpu = (c1 - c0) / tck
print(json.dumps(dict(name=name, handshakes=n, seconds=secs,
                      per_s=round(n / secs, 1) if secs else None, server_cpu_s=round(cpu, 2),
                      server_cpu_us_each=round(cpu * 1e6 / n, 1) if n else None,
                      per_server_core_s=round(n / cpu) if cpu > 0 else None)))
EOF
  log "$(tail -n1 "$RESULTS")"
}

for srv in droverd s_server; do
  if [[ $srv == droverd ]]; then pid=$DPID port=$MQTTS; else pid=$SPID port=$SPORT; fi
  run_hs "$srv tls1.3 full" "$pid" "$port" --tls 1.3
  run_hs "$srv tls1.3 resumed" "$pid" "$port" --tls 1.3 --resume
  run_hs "$srv tls1.2 full" "$pid" "$port" --tls 1.2
  run_hs "$srv tls1.2 resumed" "$pid" "$port" --tls 1.2 --resume
  run_stime "$srv s_time -new (tls1.3)" "$pid" "$port" -new
  run_stime "$srv s_time -reuse -tls1_2" "$pid" "$port" -reuse -tls1_2
done

# ---- MQTT connects with password authentication (droverd) --------------------
if ((NDEV > 0)); then
  log "creating $NDEV devices"
  "$BUILD/drover-sim" --api "http://127.0.0.1:$HTTP" --token "$TOKEN" --devices "$NDEV" \
    --id-prefix tlsb- --create-only --write-creds "$TMP/creds.txt" >"$TMP/create.log" 2>&1
  run_hs "droverd mqtt connect plain" "$DPID" "$MQTT" --no-tls --mqtt-creds "$TMP/creds.txt"
  run_hs "droverd mqtt connect tls1.3 full" "$DPID" "$MQTTS" --tls 1.3 \
    --mqtt-creds "$TMP/creds.txt"
  run_hs "droverd mqtt connect tls1.3 resumed" "$DPID" "$MQTTS" --tls 1.3 --resume \
    --mqtt-creds "$TMP/creds.txt"
  sleep 1
  c0=$(cpu_ticks "$DPID")
  taskset -c "$CCPU" "$BUILD/drover-sim" --mqtt "127.0.0.1:$MQTT" --creds "$TMP/creds.txt" \
    --devices "$NDEV" --connect-rate 0 --max-pending 1000 --telemetry-interval off \
    --no-subscribe --until-connected --duration 120s --json >"$TMP/storm.json" 2>"$TMP/storm.log"
  c1=$(cpu_ticks "$DPID")
  "$PY" - "$c0" "$c1" "$TCK" "$TMP/storm.json" >>"$RESULTS" <<'EOF'
import json, sys
c0, c1, tck = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rep = json.load(open(sys.argv[4]))
c = rep["connections"]
cpu = (c1 - c0) / tck
n = c.get("accepted") or 0
print(json.dumps(dict(name="droverd mqtt connect storm plain (drover-sim)", devices=n,
                      per_s=round(c["connects_per_s"]), connack_ms=c.get("connack_ms"),
                      errors=rep["errors"]["total"], server_cpu_s=round(cpu, 2),
                      server_cpu_us_each=round(cpu * 1e6 / n, 1) if n else None,
                      per_server_core_s=round(n / cpu) if cpu > 0 else None)))
EOF
  log "$(tail -n1 "$RESULTS")"
fi

# ---- report ---------------------------------------------------------------------
mkdir -p "$HERE/results"
OUT=$HERE/results/tls-$(date -u +%Y%m%dT%H%M%SZ).json
"$PY" - "$RESULTS" "$OUT" "$SECS" "$(openssl version)" "$(nproc)" <<'EOF'
import json, platform, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {r["name"]: r for r in rows}
meta = {"seconds_per_run": int(sys.argv[3]), "openssl": sys.argv[4], "cpus": int(sys.argv[5]),
        "kernel": platform.release()}
try:
    meta["cpu_model"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                             if l.startswith("model name"))
except StopIteration:
    pass
json.dump({"meta": meta, "runs": rows}, open(sys.argv[2], "w"), indent=1)

def f(v, nd=0):
    return "-" if v is None else ("{:,.%df}" % nd).format(v).replace(",", " ")

print("%-44s %10s %10s %12s %14s" % ("run", "conn/s", "resumed", "server us", "per core/s"))
for r in rows:
    print("%-44s %10s %10s %12s %14s" % (r["name"], f(r.get("per_s")),
                                         f(r.get("reused")) if "reused" in r else "-",
                                         f(r.get("server_cpu_us_each"), 1),
                                         f(r.get("per_server_core_s"))))
print()
for kind in ("tls1.3 full", "tls1.3 resumed", "tls1.2 full", "tls1.2 resumed"):
    d, s = by.get("droverd " + kind), by.get("s_server " + kind)
    if d and s and d.get("per_server_core_s") and s.get("per_server_core_s"):
        print("droverd/s_server %-16s handshakes per core: %.2fx   wall rate: %.2fx" % (
            kind, d["per_server_core_s"] / s["per_server_core_s"], d["per_s"] / s["per_s"]))
print("\nresults: %s" % sys.argv[2])
EOF
bad=$(grep -c '"errors": [1-9]' "$RESULTS" || true)
if ((bad > 0)); then
  log "$bad run(s) had errors"
  exit 1
fi
