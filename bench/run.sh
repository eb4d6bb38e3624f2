#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — scenario "QoS 1 telemetry".
#
# Starts droverd (BUILD_DIR/droverd) on free loopback ports with a fresh
# data dir, pinned to one CPU; creates BENCH_CONNECTIONS devices through the
# REST API; runs BUILD_DIR/mqtt-bench pinned to another CPU, which publishes
# BENCH_MESSAGES QoS 1 telemetry messages over those connections; reads the
# server's CPU time and memory from /proc. Then the same load against
# Debian's mosquitto (anonymous, no persistence, nobody subscribed: a pure
# QoS 1 relay), and prints both side by side with the ratio.
#
# Results go to bench/results/<timestamp>.json (gitignored).
# Every process started here is stopped on exit; every step is bounded.
#
# Environment (defaults in brackets):
#   BENCH_CONNECTIONS [100]   BENCH_MESSAGES [200000]  BENCH_PAYLOAD [64]
#   BENCH_INFLIGHT [32]       BENCH_QOS [1]            BENCH_TIMEOUT [120] s per run
#   BENCH_SERVERS ["droverd mosquitto"]   BENCH_SERVER_CPU [0]  BENCH_CLIENT_CPU [1]
#   BENCH_DROVERD [BUILD_DIR/droverd]     BENCH_MQTT_BENCH [BUILD_DIR/mqtt-bench]
#   BENCH_MOSQUITTO [/usr/sbin/mosquitto] BENCH_DROVERD_LOG_LEVEL [warn]
#   BENCH_TMPDIR [BUILD_DIR] where the data dir lives (keep it on a real disk:
#                on tmpfs fsync is free and droverd looks faster than it is)
#   BENCH_RESULTS_DIR [bench/results]     BENCH_KEEP [0] keep the temp dir
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
BUILD_DIR=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)

CONNECTIONS=${BENCH_CONNECTIONS:-100}
MESSAGES=${BENCH_MESSAGES:-200000}
PAYLOAD=${BENCH_PAYLOAD:-64}
INFLIGHT=${BENCH_INFLIGHT:-32}
QOS=${BENCH_QOS:-1}
TIMEOUT=${BENCH_TIMEOUT:-120}
SERVERS=${BENCH_SERVERS:-droverd mosquitto}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
DROVERD=${BENCH_DROVERD:-$BUILD_DIR/droverd}
MQTT_BENCH=${BENCH_MQTT_BENCH:-$BUILD_DIR/mqtt-bench}
MOSQUITTO=${BENCH_MOSQUITTO:-/usr/sbin/mosquitto}
LOG_LEVEL=${BENCH_DROVERD_LOG_LEVEL:-warn}
TMP_PARENT=${BENCH_TMPDIR:-$BUILD_DIR}
RESULTS_DIR=${BENCH_RESULTS_DIR:-$HERE/results}
PY=/usr/bin/python3

for v in CONNECTIONS MESSAGES PAYLOAD INFLIGHT QOS TIMEOUT SERVER_CPU CLIENT_CPU; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]]; then
    echo "bench: BENCH_$v must be a number, got '${!v}'" >&2
    exit 2
  fi
done
[[ -x $MQTT_BENCH ]] || { echo "bench: $MQTT_BENCH not built" >&2; exit 1; }
for s in $SERVERS; do
  case $s in
  droverd) [[ -x $DROVERD ]] || { echo "bench: $DROVERD not built (BENCH_SERVERS=mosquitto skips it)" >&2; exit 1; } ;;
  mosquitto) [[ -x $MOSQUITTO ]] || { echo "bench: $MOSQUITTO not installed" >&2; exit 1; } ;;
  *) echo "bench: unknown server '$s'" >&2; exit 2 ;;
  esac
done

# Pin the server and the load generator to different CPUs so neither steals
# the other's time; on a single CPU run unpinned and say so.
NCPU=$(nproc)
if command -v taskset >/dev/null && ((NCPU > SERVER_CPU && NCPU > CLIENT_CPU && SERVER_CPU != CLIENT_CPU)); then
  PIN_SERVER=(taskset -c "$SERVER_CPU")
  PIN_CLIENT=(taskset -c "$CLIENT_CPU")
  PINNED=true
else
  echo "bench: warning: cannot pin to CPUs $SERVER_CPU/$CLIENT_CPU ($NCPU CPUs); running unpinned" >&2
  PIN_SERVER=()
  PIN_CLIENT=()
  PINNED=false
fi

# Each connection is a descriptor on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < CONNECTIONS + 64)); then
  echo "bench: $CONNECTIONS connections need ulimit -n >= $((CONNECTIONS + 64)), have $(ulimit -n)" >&2
  exit 1
fi

TMP=$(mktemp -d "$TMP_PARENT/bench-tmp.XXXXXX")
PIDS=()
cleanup() {
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
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    echo "bench: kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# utime + stime of every thread of the process, in clock ticks.
cpu_ticks() {
  local stat rest
  stat=$(<"/proc/$1/stat")
  rest=${stat##*) }
  read -ra f <<<"$rest"
  echo $((f[11] + f[12]))
}

status_kb() {
  awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

# Stops one server started here and forgets it.
stop_server() {
  local pid=$1 rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || rc=$?
  local keep=()
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
  return "$rc"
}

# run_load NAME PID ARGS...: runs mqtt-bench against a server and writes
# TMP/NAME.result.json with the bench's JSON plus the server's CPU and memory.
run_load() {
  local name=$1 pid=$2
  shift 2
  local hz t0 t1 rc=0 rss hwm
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "$pid")
  "${PIN_CLIENT[@]}" timeout --kill-after=5 $((TIMEOUT + 30)) "$MQTT_BENCH" \
    --host 127.0.0.1 --connections "$CONNECTIONS" --messages "$MESSAGES" \
    --qos "$QOS" --inflight "$INFLIGHT" --payload-size "$PAYLOAD" \
    --topic-template 'devices/{id}/telemetry' --timeout "$TIMEOUT" --json "$@" \
    >"$TMP/$name.bench.json" || rc=$?
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "bench: $name died during the run" >&2
    return 1
  fi
  t1=$(cpu_ticks "$pid")
  rss=$(status_kb "$pid" VmRSS)
  hwm=$(status_kb "$pid" VmHWM)
  "$PY" - "$TMP/$name.bench.json" "$TMP/$name.result.json" "$rc" $((t1 - t0)) "$hz" "$rss" "$hwm" <<'EOF'
import json, sys
src, dst, rc, ticks, hz, rss, hwm = sys.argv[1:]
try:
    with open(src) as f:
        bench = json.loads(f.read() or "null")
except ValueError:
    bench = None
done = 0
if bench:
    done = bench["acked"] if bench["qos"] == 1 else bench["sent"]
cpu_s = int(ticks) / int(hz)
out = {
    "bench": bench,
    "bench_exit": int(rc),
    "server_cpu_s": cpu_s,
    "server_cpu_us_per_msg": cpu_s * 1e6 / done if done else None,
    "server_rss_kb": int(rss),
    "server_hwm_kb": int(hwm),
}
with open(dst, "w") as f:
    json.dump(out, f)
EOF
  echo "bench: $name: $(tr -d '\n' <"$TMP/$name.bench.json" | cut -c1-400)" >&2
  return 0
}

bench_droverd() {
  local mport hport data token
  mport=$(free_port)
  hport=$(free_port)
  data="$TMP/droverd-data"
  mkdir -p "$data"
  # The limits must not be what is measured.
  cat >"$TMP/droverd.conf" <<EOF
max_connections = $((CONNECTIONS + 64))
EOF
  "${PIN_SERVER[@]}" "$DROVERD" --data-dir "$data" --config "$TMP/droverd.conf" \
    --mqtt-listen "127.0.0.1:$mport" --http-listen "127.0.0.1:$hport" \
    --log-level "$LOG_LEVEL" >"$TMP/droverd.out" 2>"$TMP/droverd.err" &
  local pid=$!
  PIDS+=("$pid")
  # Ready when it says so, or (if its stdout is block-buffered) when both
  # listeners answer and the admin token is written.
  local ready=false
  for _ in $(seq 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "bench: droverd exited at start:" >&2
      cat "$TMP/droverd.err" >&2
      return 1
    fi
    if grep -q '^droverd ready' "$TMP/droverd.out" 2>/dev/null ||
      { [[ -s $data/admin.token ]] && port_open "$mport" &&
        curl -sf -o /dev/null "http://127.0.0.1:$hport/healthz"; }; then
      ready=true
      break
    fi
    sleep 0.1
  done
  if [[ $ready != true ]]; then
    echo "bench: droverd not ready after 30 s" >&2
    return 1
  fi
  token=$(tr -d ' \n' <"$data/admin.token")
  echo "bench: droverd up (pid $pid, mqtt $mport, http $hport); creating $CONNECTIONS devices" >&2
  timeout 600 "$PY" - "127.0.0.1" "$hport" "$token" "$CONNECTIONS" "$TMP/creds" <<'EOF'
import http.client, json, sys
host, port, token, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
hdr = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
conn = None
with open(out, "w") as f:
    for i in range(n):
        dev = "bench-%06d" % i
        body = json.dumps({"id": dev, "tags": {"bench": "qos1-telemetry"}})
        for attempt in range(3):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                conn.request("POST", "/api/v1/devices", body, hdr)
                r = conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                break
            except (http.client.HTTPException, OSError):
                if conn is not None:
                    conn.close()
                conn = None
                if attempt == 2:
                    raise
        if r.status != 201:
            sys.exit("bench: POST /api/v1/devices %s -> %d %s" % (dev, r.status, data[:200]))
        f.write("%s %s\n" % (dev, json.loads(data)["secret"]))
EOF
  run_load droverd "$pid" --port "$mport" --creds "$TMP/creds"
  local rc=0
  stop_server "$pid" || rc=$?
  if ((rc != 0)); then
    echo "bench: warning: droverd exited $rc on SIGTERM (want 0)" >&2
  fi
  # How much the run left on disk (database, WAL).
  du -sk "$data" | awk '{ print $1 }' >"$TMP/droverd.disk_kb"
}

bench_mosquitto() {
  local port
  port=$(free_port)
  cat >"$TMP/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
EOF
  "${PIN_SERVER[@]}" "$MOSQUITTO" -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/mosquitto.out" >&2; return 1; }
    port_open "$port" && break
    sleep 0.1
  done
  port_open "$port" || { echo "bench: mosquitto not listening after 10 s" >&2; return 1; }
  echo "bench: mosquitto up (pid $pid, port $port)" >&2
  run_load mosquitto "$pid" --port "$port" --id-prefix bench-
  stop_server "$pid" || true
}

for s in $SERVERS; do
  "bench_$s"
done

mkdir -p "$RESULTS_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$RESULTS_DIR/$STAMP.json"
DISK_KB=$(cat "$TMP/droverd.disk_kb" 2>/dev/null || echo null)
"$PY" - "$TMP" "$OUT" "$STAMP" "$SERVERS" "$PINNED" "$DISK_KB" <<EOF
import json, os, platform, subprocess, sys
tmp, out, stamp, servers, pinned, disk_kb = sys.argv[1:]
res = {}
for s in servers.split():
    with open(os.path.join(tmp, s + ".result.json")) as f:
        res[s] = json.load(f)
if "droverd" in res:
    res["droverd"]["data_dir_kb_after"] = None if disk_kb == "null" else int(disk_kb)
model = ""
try:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
except OSError:
    pass
fs = subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True, text=True).stdout.strip()
doc = {
    "timestamp": stamp,
    "scenario": "qos1-telemetry",
    "params": {"connections": $CONNECTIONS, "messages": $MESSAGES, "payload_size": $PAYLOAD,
               "inflight": $INFLIGHT, "qos": $QOS, "timeout_s": $TIMEOUT},
    "machine": {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
                "pinned": pinned == "true", "server_cpu": $SERVER_CPU, "client_cpu": $CLIENT_CPU,
                "data_dir_fs": fs},
    "results": res,
}

def metric(r, key):
    b = r["bench"] or {}
    if key == "rate":
        return b.get("msgs_per_s")
    if key in ("p50", "p99", "p999"):
        return (b.get("puback_ms") or {}).get(key)
    if key == "cpu":
        return r["server_cpu_us_per_msg"]
    if key == "rss":
        return r["server_rss_kb"] / 1024
    if key == "hwm":
        return r["server_hwm_kb"] / 1024
    if key == "err":
        return (b.get("errors") or {}).get("total")

cols = [("rate", "msgs/s", "%.0f"), ("p50", "p50 ms", "%.2f"), ("p99", "p99 ms", "%.2f"),
        ("p999", "p99.9 ms", "%.2f"), ("cpu", "CPU us/msg", "%.2f"),
        ("rss", "RSS MiB", "%.1f"), ("hwm", "peak MiB", "%.1f"), ("err", "errors", "%d")]

def cell(v, fmt):
    return "-" if v is None else fmt % v

rows = [[s] + [cell(metric(r, k), f) for k, _, f in cols] for s, r in res.items()]
if "droverd" in res and "mosquitto" in res:
    ratio = {}
    row = ["droverd/mosq"]
    for k, _, f in cols:
        a, b = metric(res["droverd"], k), metric(res["mosquitto"], k)
        if k == "err" or a is None or not b:
            row.append("-")
            continue
        ratio[k] = a / b
        row.append("%.2fx" % ratio[k])
    doc["ratio_droverd_over_mosquitto"] = ratio
    rows.append(row)
head = ["server"] + [h for _, h, _ in cols]
w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
p = doc["params"]
print("QoS %d telemetry: %d messages, %d connections, ~%d B payload, inflight %d%s"
      % (p["qos"], p["messages"], p["connections"], p["payload_size"], p["inflight"],
         "" if doc["machine"]["pinned"] else " (unpinned)"))
for r in [head] + rows:
    print("  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)))
if "droverd" in res:
    print("note: droverd acknowledges QoS 1 only after an fsync'd commit; mosquitto only relays.")
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
print("results: " + out)
EOF

# A run that lost messages or hit errors is a failed benchmark.
"$PY" - "$OUT" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
bad = [s for s, r in doc["results"].items()
       if not r["bench"] or r["bench_exit"] != 0]
if bad:
    sys.exit("bench: incomplete or failed run for: " + ", ".join(bad))
EOF
