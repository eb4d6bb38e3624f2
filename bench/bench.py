#!/usr/bin/python3
"""Drover's benchmark suite (run through bench/run.sh BUILD_DIR).

Each scenario starts droverd (BUILD_DIR/droverd, a fresh data dir) and,
where the scenario is plain MQTT, Debian's mosquitto with a matching
configuration (password file with the same device credentials, no
persistence, no connection limit); the server runs pinned to one CPU, the
load generator (BUILD_DIR/drover-sim) to the other. For every run it
reads the server's CPU time and memory from /proc, and it prints the
ratio droverd / mosquitto.

Scenarios (BENCH_SCENARIOS, default all, in this order):
  idle       RSS per connected idle device at 1k, 5k and 19k devices
  connect    connect storm with password authentication: connects/s, CONNACK p99
  fanin      QoS 0 fan-in to one wildcard subscriber, a ladder of offered
             rates: highest rate relayed in full and on time, CPU per message
  qos1       QoS 1 telemetry (droverd stores, mosquitto relays): saturating
             (acked msgs/s), with a small window (PUBACK latency at full
             speed), and paced at BENCH_QOS1_RATE msgs/s
  commands   one bulk command to every connected device, time until every
             result is recorded (droverd only)
  reconnect  every device dropped at once, reconnecting with backoff: time
             until all are back, peak RSS
  relay11    plain MQTT relay, one publisher to one subscriber (exact
             topic), QoS 0, 1 and 2, anonymous clients outside devices/
             (droverd stores nothing): delivered msgs/s, publish->delivery
             and publish->ack latency, server CPU per message, RSS
  relayN1    the same with 100 publishers and one wildcard subscriber

Results: bench/results/<UTC timestamp>.json and a table on stdout. Every
step is bounded in time; every process started here is stopped on exit.
Exit status: 0, or 1 when a run failed (a server died, the generator
reported errors, a timeout).
"""

import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PY_HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALL_SCENARIOS = ["idle", "connect", "fanin", "qos1", "commands", "reconnect", "relay11",
                 "relayN1"]


def env(name, default):
    return os.environ.get("BENCH_" + name, default)


def env_int(name, default):
    v = env(name, str(default))
    try:
        return int(v)
    except ValueError:
        sys.exit("bench: BENCH_%s must be an integer, got %r" % (name, v))


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


class BenchError(Exception):
    pass


# ------------------------------------------------------------------ /proc

def cpu_s(pid):
    """User + system CPU seconds of every thread of pid."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every interval seconds until stopped."""

    def __init__(self, pid, interval=0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples = []  # (monotonic, kB)
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.samples.append((time.monotonic(), status_kb(self.pid, "VmRSS")))
            except (OSError, TypeError):
                return
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join(5)

    def peak_kb(self, since=None):
        s = [kb for t, kb in self.samples if kb is not None and (since is None or t >= since)]
        return max(s) if s else None

    def at(self, t):
        """The last sample taken at or before t."""
        best = None
        for ts, kb in self.samples:
            if ts <= t:
                best = kb
        return best


# ------------------------------------------------------------------ helpers

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise BenchError("timed out after %.0f s waiting for %s" % (timeout, what))


def http_json(port, method, path, token, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Authorization": "Bearer " + token}
        data = None
        if body is not None:
            data = json.dumps(body)
            h["Content-Type"] = "application/json"
        conn.request(method, path, data, h)
        r = conn.getresponse()
        raw = r.read()
        try:
            js = json.loads(raw) if raw else None
        except ValueError:
            js = raw.decode("utf-8", "replace")
        return r.status, js
    finally:
        conn.close()


# ------------------------------------------------------------------ the bench

class Bench:
    def __init__(self, build_dir):
        self.build = os.path.abspath(build_dir)
        self.droverd = env("DROVERD", os.path.join(self.build, "droverd"))
        self.sim = env("SIM", os.path.join(self.build, "drover-sim"))
        self.mosquitto = env("MOSQUITTO", "/usr/sbin/mosquitto")
        self.mosquitto_passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        self.servers = env("SERVERS", "droverd mosquitto").split()
        self.scenarios = env("SCENARIOS", " ".join(ALL_SCENARIOS)).split()
        self.log_level = env("DROVERD_LOG_LEVEL", "warn")
        self.keep = env("KEEP", "0") == "1"
        self.results_dir = env("RESULTS_DIR", os.path.join(PY_HERE, "results"))
        self.server_cpu = env_int("SERVER_CPU", 0)
        self.client_cpu = env_int("CLIENT_CPU", 1)
        self.payload = env_int("PAYLOAD", 64)
        self.procs = []
        self.failed = []
        for s in self.scenarios:
            if s not in ALL_SCENARIOS:
                sys.exit("bench: unknown scenario %r (known: %s)" % (s, " ".join(ALL_SCENARIOS)))
        for s in self.servers:
            if s not in ("droverd", "mosquitto"):
                sys.exit("bench: unknown server %r" % s)
        if not os.access(self.sim, os.X_OK):
            sys.exit("bench: %s is not built (cmake --build %s --target drover-sim)"
                     % (self.sim, self.build))
        if "droverd" in self.servers and not os.access(self.droverd, os.X_OK):
            sys.exit("bench: %s is not built" % self.droverd)
        if "mosquitto" in self.servers:
            for b in (self.mosquitto, self.mosquitto_passwd):
                if not os.access(b, os.X_OK):
                    sys.exit("bench: %s is not installed (apt-get install mosquitto)" % b)
        ncpu = os.cpu_count() or 1
        self.pinned = (shutil.which("taskset") is not None and ncpu > max(self.server_cpu,
                                                                          self.client_cpu)
                       and self.server_cpu != self.client_cpu)
        if not self.pinned:
            log("warning: cannot pin server and generator to CPUs %d/%d (%d CPUs): unpinned"
                % (self.server_cpu, self.client_cpu, ncpu))
        tmp_parent = env("TMPDIR", self.build)
        self.tmp = tempfile.mkdtemp(prefix="bench-tmp.", dir=tmp_parent)
        self.fd_limit = self._raise_nofile()

    def _raise_nofile(self):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

    def pin(self, cpu):
        return ["taskset", "-c", str(cpu)] if self.pinned else []

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.keep:
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def spawn(self, argv, name, cpu):
        out = open(os.path.join(self.tmp, name + ".out"), "ab")
        err = open(os.path.join(self.tmp, name + ".err"), "ab")
        p = subprocess.Popen(self.pin(cpu) + argv, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL)
        out.close()
        err.close()
        self.procs.append(p)
        return p

    def stop_proc(self, p, timeout=20):
        """SIGTERM, wait; returns the exit code."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
            log("warning: pid %d ignored SIGTERM for %d s" % (p.pid, timeout))
        if p in self.procs:
            self.procs.remove(p)
        return rc

    # -------------------------------------------------------------- servers

    def start_droverd(self, data_dir, name="droverd", extra_conf=""):
        os.makedirs(data_dir, exist_ok=True)
        mport, hport = free_port(), free_port()
        conf = os.path.join(self.tmp, name + ".conf")
        with open(conf, "w") as f:
            # The limits must not be what is measured.
            f.write("max_connections = 100000\n")
            f.write(extra_conf)
        p = self.spawn([self.droverd, "--data-dir", data_dir, "--config", conf,
                        "--mqtt-listen", "127.0.0.1:%d" % mport,
                        "--http-listen", "127.0.0.1:%d" % hport,
                        "--log-level", self.log_level], name, self.server_cpu)
        out = os.path.join(self.tmp, name + ".out")
        tok = os.path.join(data_dir, "admin.token")

        def ready():
            if p.poll() is not None:
                raise BenchError("droverd exited %d at start: %s" % (
                    p.returncode, open(os.path.join(self.tmp, name + ".err")).read()[-500:]))
            return (os.path.exists(tok) and port_open(mport) and
                    "droverd ready" in open(out, errors="replace").read())
        wait_until(ready, 60, "droverd ready")
        srv = {"kind": "droverd", "proc": p, "pid": p.pid, "mqtt": mport, "http": hport,
               "token": open(tok).read().strip(), "name": name}
        return srv

    def start_mosquitto(self, passwd, name="mosquitto"):
        port = free_port()
        conf = os.path.join(self.tmp, name + ".conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\n" % port)
            if passwd:
                f.write("allow_anonymous false\npassword_file %s\n" % passwd)
            else:
                f.write("allow_anonymous true\n")
            f.write("persistence false\nmax_connections -1\n"
                    "log_dest stderr\nlog_type error\nlog_type warning\n")
            if os.geteuid() == 0:
                # Started as root, mosquitto would switch to the "mosquitto"
                # user, which cannot read our 0600 password file.
                f.write("user root\n")
        p = self.spawn([self.mosquitto, "-c", conf], name, self.server_cpu)

        def ready():
            if p.poll() is not None:
                raise BenchError("mosquitto exited %d at start: %s" % (
                    p.returncode, open(os.path.join(self.tmp, name + ".err")).read()[-500:]))
            return port_open(port)
        wait_until(ready, 30, "mosquitto listening")
        return {"kind": "mosquitto", "proc": p, "pid": p.pid, "mqtt": port, "name": name}

    def stop_server(self, srv):
        alive = srv["proc"].poll() is None
        rc = self.stop_proc(srv["proc"])
        if not alive:
            raise BenchError("%s had died (exit %s)" % (srv["kind"], rc))
        if srv["kind"] == "droverd" and rc != 0:
            log("warning: droverd exited %d on SIGTERM (want 0)" % rc)
        return rc

    def mosquitto_passwd_file(self, creds, extra=(), name="mosquitto.passwd"):
        """A mosquitto password file with every "id secret" of creds."""
        path = os.path.join(self.tmp, name)
        with open(creds) as src, open(path, "w") as dst:
            for line in src:
                parts = line.split()
                if len(parts) == 2:
                    dst.write("%s:%s\n" % (parts[0], parts[1]))
            for user, pw in extra:
                dst.write("%s:%s\n" % (user, pw))
        subprocess.run([self.mosquitto_passwd, "-U", path], check=True, timeout=300)
        os.chmod(path, 0o600)
        return path

    # -------------------------------------------------------------- generator

    def workers_for(self, n):
        """Enough sim processes that each stays well under the fd limit."""
        per = max(1000, min(9000, self.fd_limit - 200))
        return max(1, -(-n // per))

    def sim_argv(self, srv, args):
        return [self.sim, "--mqtt", "127.0.0.1:%d" % srv["mqtt"], "--json", "--quiet"] + args

    def create_fleet(self, srv, n, prefix, creds):
        """Creates n devices on droverd; writes their credentials."""
        t0 = time.monotonic()
        r = subprocess.run([self.sim, "--api", "http://127.0.0.1:%d" % srv["http"], "--token",
                            srv["token"], "--devices", str(n), "--id-prefix", prefix,
                            "--fleet-tag", "bench", "--create-only", "--write-creds", creds,
                            "--json", "--quiet"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise BenchError("creating %d devices failed: %s" % (n, r.stderr[-500:]))
        js = json.loads(r.stdout)
        log("created %d devices in %.1f s (%.0f/s)" % (n, js["elapsed_s"],
                                                       n / max(js["elapsed_s"], 1e-6)))
        return {"devices": n, "seconds": round(time.monotonic() - t0, 2),
                "per_s": round(n / max(js["elapsed_s"], 1e-6))}

    def run_sim(self, srv, args, timeout):
        """Runs drover-sim to its end; returns (report, server CPU seconds).
        The generator's own CPU seconds (all its processes) and wall time
        go to self.last_sim_cpu_s and self.last_sim_wall_s."""
        import resource
        c0 = cpu_s(srv["pid"])
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.monotonic()
        r = subprocess.run(self.pin(self.client_cpu) + self.sim_argv(srv, args),
                           capture_output=True, text=True, timeout=timeout)
        c1 = cpu_s(srv["pid"]) if srv["proc"].poll() is None else None
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.last_sim_wall_s = time.monotonic() - w0
        self.last_sim_cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        with open(os.path.join(self.tmp, "sim.err"), "a") as f:
            f.write(r.stderr)
        if srv["proc"].poll() is not None:
            raise BenchError("%s died during the run (exit %s)" % (srv["kind"],
                                                                    srv["proc"].returncode))
        try:
            rep = json.loads(r.stdout)
        except ValueError:
            raise BenchError("drover-sim printed no report (exit %d): %s"
                             % (r.returncode, r.stderr[-800:]))
        if r.returncode != 0:
            self.note_failure("%s: drover-sim exit %d, errors %s" % (
                srv["kind"], r.returncode, json.dumps(rep.get("errors"))))
        return rep, (c1 - c0)

    def start_sim(self, srv, args, status):
        """drover-sim in the background with a status file."""
        argv = self.pin(self.client_cpu) + self.sim_argv(
            srv, args + ["--status-file", status, "--report-interval", "250ms"])
        out = open(os.path.join(self.tmp, "sim-bg.out"), "w")
        err = open(os.path.join(self.tmp, "sim-bg.err"), "a")
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        out.close()
        err.close()
        self.procs.append(p)
        return p

    def sim_status(self, status):
        try:
            with open(status) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def wait_ready(self, p, status, n, timeout, srv):
        def ready():
            if p.poll() is not None:
                raise BenchError("drover-sim ended early (exit %d)" % p.returncode)
            if srv["proc"].poll() is not None:
                raise BenchError("%s died" % srv["kind"])
            s = self.sim_status(status)
            return s if s and s["connections"]["ready_at_end"] >= n else None
        return wait_until(ready, timeout, "%d devices connected" % n, 0.1)

    def finish_sim(self, p, timeout=60):
        """SIGINT (stop, report) and read the final report."""
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise BenchError("drover-sim did not stop within %d s" % timeout)
        self.procs.remove(p)
        with open(os.path.join(self.tmp, "sim-bg.out")) as f:
            txt = f.read()
        try:
            return json.loads(txt)
        except ValueError:
            raise BenchError("drover-sim printed no report: %r" % txt[-300:])

    def note_failure(self, msg):
        log("FAILED: " + msg)
        self.failed.append(msg)

    # -------------------------------------------------------------- scenarios

    def fresh_droverd_fleet(self, n, name, prefix="bench-"):
        """droverd on a new data dir with n devices; returns (srv, creds)."""
        data = os.path.join(self.tmp, name + "-data")
        shutil.rmtree(data, ignore_errors=True)
        srv = self.start_droverd(data, name)
        creds = os.path.join(self.tmp, name + ".creds")
        srv["fleet"] = self.create_fleet(srv, n, prefix, creds)
        return srv, creds

    def anon_creds(self, n, name, prefix="bench-"):
        """Credentials for mosquitto runs without droverd: made-up secrets."""
        path = os.path.join(self.tmp, name + ".creds")
        with open(path, "w") as f:
            for i in range(n):
                f.write("%s%06d %s\n" % (prefix, i, os.urandom(16).hex()))
        return path

    def scenario_idle(self):
        sizes = [int(x) for x in env("IDLE_SIZES", "1000 5000 19000").split()]
        # One more run without subscriptions splits connection from
        # subscription memory (0 = skip).
        nosub = env_int("IDLE_NOSUB_SIZE", 5000)
        runs = [(n, True) for n in sizes] + ([(nosub, False)] if nosub else [])
        top = max(sizes + [nosub])
        settle = env_int("IDLE_SETTLE", 3)
        out = {"params": {"sizes": sizes, "settle_s": settle, "subscriptions_per_device": 2,
                          "keepalive_s": 60}}
        creds = None
        data = os.path.join(self.tmp, "idle-data")
        if "droverd" in self.servers:
            srv = self.start_droverd(data, "droverd-idle")
            creds = os.path.join(self.tmp, "idle.creds")
            out["fleet_creation"] = self.create_fleet(srv, top, "idle-", creds)
            self.stop_server(srv)
        else:
            creds = self.anon_creds(top, "idle", "idle-")
        passwd = None
        for kind in self.servers:
            res = []
            for n, subscribe in runs:
                if kind == "droverd":
                    srv = self.start_droverd(data, "droverd-idle")
                else:
                    if passwd is None:
                        passwd = self.mosquitto_passwd_file(creds, name="idle.passwd")
                    srv = self.start_mosquitto(passwd, "mosquitto-idle")
                time.sleep(1)
                rss0 = status_kb(srv["pid"], "VmRSS")
                c0 = cpu_s(srv["pid"])
                status = os.path.join(self.tmp, "idle.status")
                if os.path.exists(status):
                    os.unlink(status)
                workers = self.workers_for(n)
                p = self.start_sim(srv, ["--creds", creds, "--devices", str(n),
                                         "--telemetry-interval", "off", "--connect-rate", "3000",
                                         "--workers", str(workers), "--duration", "10m"] +
                                   ([] if subscribe else ["--no-subscribe"]), status)
                row = {"devices": n, "workers": workers, "subscriptions": 2 if subscribe else 0}
                try:
                    st = self.wait_ready(p, status, n, 300, srv)
                    row["connect_s"] = st["connections"]["all_connected_s"]
                    time.sleep(settle)
                    rss1 = status_kb(srv["pid"], "VmRSS")
                    row.update({"rss_before_kb": rss0, "rss_connected_kb": rss1,
                                "bytes_per_device": round((rss1 - rss0) * 1024 / n),
                                "server_cpu_s": round(cpu_s(srv["pid"]) - c0, 2)})
                finally:
                    rep = self.finish_sim(p)
                row["sim_errors"] = rep["errors"]["total"]
                if rep["errors"]["total"]:
                    self.note_failure("idle %s %d: %s" % (kind, n, json.dumps(rep["errors"])))
                self.stop_server(srv)
                log("idle %s %d devices%s: %s B/device (RSS %d -> %d kB)" % (
                    kind, n, "" if subscribe else " without subscriptions",
                    row.get("bytes_per_device"), rss0, row.get("rss_connected_kb", 0)))
                res.append(row)
            out[kind] = res
        return out

    def scenario_connect(self):
        n = env_int("CONNECT_DEVICES", 5000)
        out = {"params": {"devices": n, "connect_rate": "unlimited", "max_pending": 1000,
                          "auth": "password (droverd: per-device secret; mosquitto: "
                                  "password_file, PBKDF2-SHA512)"}}
        for kind in self.servers:
            if kind == "droverd":
                srv, creds = self.fresh_droverd_fleet(n, "droverd-connect")
            else:
                creds = out.get("_creds") or self.anon_creds(n, "connect")
                srv = self.start_mosquitto(self.mosquitto_passwd_file(creds, name="connect.passwd"),
                                           "mosquitto-connect")
            out["_creds"] = creds
            time.sleep(1)
            rep, cpu = self.run_sim(srv, ["--creds", creds, "--devices", str(n),
                                          "--connect-rate", "0", "--max-pending", "1000",
                                          "--workers", str(self.workers_for(n)),
                                          "--telemetry-interval", "off", "--no-subscribe",
                                          "--until-connected", "--duration", "120s"], 180)
            c = rep["connections"]
            out[kind] = {"connects_per_s": round(c["connects_per_s"]),
                         "all_connected_s": c["all_connected_s"],
                         "connack_ms": c["connack_ms"], "server_cpu_s": round(cpu, 2),
                         "server_cpu_us_per_connect": round(cpu * 1e6 / max(c["accepted"], 1), 1),
                         "rss_kb": status_kb(srv["pid"], "VmRSS"),
                         "errors": rep["errors"]["total"]}
            self.stop_server(srv)
            log("connect %s: %s connects/s, CONNACK p99 %s ms" % (
                kind, out[kind]["connects_per_s"], (c["connack_ms"] or {}).get("p99")))
        out.pop("_creds", None)
        return out

    def scenario_fanin(self):
        """A ladder of offered QoS 0 rates; the highest one each server relays
        in full and on time is its sustained rate."""
        n = env_int("FANIN_DEVICES", 100)
        rates = [int(x) for x in env(
            "FANIN_RATES", "20000 40000 60000 80000 100000 130000 160000 200000 250000 300000 "
                           "400000").split()]
        secs = env_int("FANIN_SECONDS", 5)
        p99_max = env_int("FANIN_P99_MS", 200)
        ticks = 100  # per device per second (10 ms interval)
        out = {"params": {"devices": n, "offered_rates": rates, "seconds_per_step": secs,
                          "qos": 0, "payload_size": self.payload, "interval_ms": 1000 / ticks,
                          "topic": "devices/{id}/relay (relayed, not stored)",
                          "subscriber": "devices/+/relay, QoS 0, in the generator",
                          "sustained": "delivered share >= 0.999 and relay p99 <= %d ms"
                                       % p99_max}}
        sub_pw = os.urandom(16).hex()
        creds = None
        for kind in self.servers:
            if kind == "droverd":
                srv, creds = self.fresh_droverd_fleet(n, "droverd-fanin")
                sub = ["--token", srv["token"]]
            else:
                creds = creds or self.anon_creds(n, "fanin")
                srv = self.start_mosquitto(self.mosquitto_passwd_file(
                    creds, extra=[("sim-watcher", sub_pw)], name="fanin.passwd"),
                    "mosquitto-fanin")
                sub = ["--sub-password", sub_pw]
            time.sleep(1)
            steps, best = [], None
            for rate in rates:
                burst = max(1, round(rate / (n * ticks)))
                offered = n * ticks * burst
                m0 = self.droverd_metrics(srv)
                rep, cpu = self.run_sim(srv, ["--creds", creds, "--devices", str(n), "--qos", "0",
                                              "--telemetry-interval", "%dms" % (1000 // ticks),
                                              "--burst", str(burst), "--topic", "relay",
                                              "--payload-size", str(self.payload),
                                              "--no-subscribe", "--wait-all", "--connect-rate",
                                              "0", "--subscribe-all", "devices/+/relay"] + sub +
                                        ["--duration", "%ds" % (secs + 1), "--drain", "5s"],
                                        secs + 60)
                m1 = self.droverd_metrics(srv)
                w, t = rep["watcher"], rep["telemetry"]
                got = w["received"]
                share = got / max(t["sent"], 1)
                p99 = pct(w["relay_ms"], "p99")
                ok = share >= 0.999 and p99 is not None and p99 <= p99_max
                step = {"offered_per_s": offered, "burst": burst,
                        "sent_per_s": round(t["sent_per_s"]), "delivered_per_s": round(w["per_s"]),
                        "delivered_share": round(share, 4), "relay_ms": w["relay_ms"],
                        "server_cpu_s": round(cpu, 2),
                        "server_cpu_us_per_msg": round(cpu * 1e6 / max(got, 1), 2),
                        "rss_kb": status_kb(srv["pid"], "VmRSS"), "sustained": ok,
                        "errors": rep["errors"]["total"]}
                if m0 and m1:
                    step["server_dropped"] = (m1.get("drover_mqtt_messages_dropped_total", 0) -
                                              m0.get("drover_mqtt_messages_dropped_total", 0))
                steps.append(step)
                log("fanin %s %d/s offered: %d sent/s, %d delivered/s (%.2f %%), p99 %s ms, "
                    "%.2f us/msg%s" % (kind, offered, step["sent_per_s"], step["delivered_per_s"],
                                       100 * share, p99, step["server_cpu_us_per_msg"],
                                       "" if ok else " (not sustained)"))
                if ok:
                    best = step
                else:
                    break
            out[kind] = {"steps": steps,
                         "max_sustained_per_s": best["delivered_per_s"] if best else None,
                         "max_sustained_offered": best["offered_per_s"] if best else None,
                         "hwm_kb": status_kb(srv["pid"], "VmHWM")}
            self.stop_server(srv)
        # CPU per message compared at the highest offered rate both sustained.
        if "droverd" in out and "mosquitto" in out:
            d = {s["offered_per_s"]: s for s in out["droverd"]["steps"] if s["sustained"]}
            m = {s["offered_per_s"]: s for s in out["mosquitto"]["steps"] if s["sustained"]}
            common = sorted(set(d) & set(m))
            if common:
                r = common[-1]
                out["compare_at_offered_per_s"] = r
                out["cpu_us_per_msg_at_compare"] = {"droverd": d[r]["server_cpu_us_per_msg"],
                                                    "mosquitto": m[r]["server_cpu_us_per_msg"]}
        return out

    def droverd_metrics(self, srv):
        """droverd's /metrics counters (name -> value), or None."""
        if srv["kind"] != "droverd":
            return None
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv["http"], timeout=10)
            conn.request("GET", "/metrics")
            txt = conn.getresponse().read().decode()
            conn.close()
        except (OSError, http.client.HTTPException):
            return None
        out = {}
        for line in txt.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                parts = line.split()
                if len(parts) == 2:
                    try:
                        out[parts[0]] = float(parts[1])
                    except ValueError:
                        pass
        return out

    def scenario_qos1(self):
        n = env_int("QOS1_DEVICES", 100)
        msgs = env_int("QOS1_MESSAGES", 200000)
        inflight = env_int("QOS1_INFLIGHT", 32)
        small = env_int("QOS1_SMALL_INFLIGHT", 8)
        rate_devices = env_int("QOS1_RATE_DEVICES", 1000)
        rate = env_int("QOS1_RATE", 50000)
        burst = env_int("QOS1_BURST", 5)
        rate_s = env_int("QOS1_RATE_SECONDS", 20)
        interval_ms = rate_devices * burst * 1000.0 / rate
        out = {"params": {"saturating": {"devices": n, "messages": msgs, "inflight": inflight},
                          "small window": {"devices": n, "messages": msgs, "inflight": small},
                          "paced": {"devices": rate_devices, "offered_per_s": rate,
                                    "interval_ms": interval_ms, "burst": burst,
                                    "inflight": 16, "seconds": rate_s},
                          "payload_size": self.payload, "topic": "devices/{id}/telemetry"}}
        creds = None
        top = max(n, rate_devices)
        for kind in self.servers:
            if kind == "droverd":
                srv, creds = self.fresh_droverd_fleet(top, "droverd-qos1")
            else:
                creds = creds or self.anon_creds(top, "qos1")
                srv = self.start_mosquitto(self.mosquitto_passwd_file(creds, name="qos1.passwd"),
                                           "mosquitto-qos1")
            time.sleep(1)
            runs = {}
            for mode, window in (("saturating", inflight), ("small window", small)):
                rep, cpu = self.run_sim(srv, ["--creds", creds, "--devices", str(n), "--qos", "1",
                                              "--telemetry-interval", "0", "--inflight",
                                              str(window), "--messages", str(msgs),
                                              "--payload-size", str(self.payload),
                                              "--no-subscribe", "--wait-all", "--connect-rate",
                                              "0", "--duration", "120s"], 180)
                t = rep["telemetry"]
                runs[mode] = {"inflight": window, "acked": t["acked"],
                              "acked_per_s": round(t["acked_per_s"] or 0),
                              "puback_ms": t["puback_ms"], "server_cpu_s": round(cpu, 2),
                              "server_cpu_us_per_msg": round(cpu * 1e6 / max(t["acked"], 1), 2),
                              "rss_kb": status_kb(srv["pid"], "VmRSS"),
                              "hwm_kb": status_kb(srv["pid"], "VmHWM"),
                              "errors": rep["errors"]["total"]}
            sat = runs["saturating"]
            rep, cpu = self.run_sim(srv, ["--creds", creds, "--devices", str(rate_devices),
                                          "--qos", "1", "--telemetry-interval",
                                          "%gms" % interval_ms, "--burst", str(burst),
                                          "--inflight", "16",
                                          "--payload-size", str(self.payload), "--no-subscribe",
                                          "--connect-rate", "0", "--wait-all",
                                          "--workers", str(self.workers_for(rate_devices)),
                                          "--duration", "%ds" % (rate_s + 5)], rate_s + 120)
            t = rep["telemetry"]
            paced = {"sent_per_s": round(t["sent_per_s"]),
                     "acked_per_s": round(t["acked_per_s"] or 0), "acked": t["acked"],
                     "skipped_window_full": t["skipped_window_full"],
                     "puback_ms": t["puback_ms"], "server_cpu_s": round(cpu, 2),
                     "server_cpu_us_per_msg": round(cpu * 1e6 / max(t["acked"], 1), 2),
                     "rss_kb": status_kb(srv["pid"], "VmRSS"), "errors": rep["errors"]["total"]}
            if kind == "droverd":
                sat["data_dir_kb"] = du_kb(os.path.join(self.tmp, "droverd-qos1-data"))
            self.stop_server(srv)
            out[kind] = {"saturating": sat, "small window": runs["small window"], "paced": paced}
            log("qos1 %s: %s acked/s saturating (p99 %s ms); paced %s acked/s, p99 %s ms" % (
                kind, sat["acked_per_s"], (sat["puback_ms"] or {}).get("p99"),
                paced["acked_per_s"], (paced["puback_ms"] or {}).get("p99")))
        return out

    def scenario_commands(self):
        if "droverd" not in self.servers:
            return {"skipped": "droverd not in BENCH_SERVERS"}
        n = env_int("COMMANDS_DEVICES", 10000)
        out = {"params": {"devices": n, "command_delay": "0", "target": {"tag": "fleet=bench"}}}
        srv, creds = self.fresh_droverd_fleet(n, "droverd-commands")
        status = os.path.join(self.tmp, "commands.status")
        p = self.start_sim(srv, ["--creds", creds, "--devices", str(n), "--telemetry-interval",
                                 "off", "--connect-rate", "3000",
                                 "--workers", str(self.workers_for(n)), "--duration", "10m"],
                           status)
        try:
            self.wait_ready(p, status, n, 300, srv)
            time.sleep(1)
            c0 = cpu_s(srv["pid"])
            t0 = time.monotonic()
            st, job = http_json(srv["http"], "POST", "/api/v1/bulk/commands", srv["token"],
                                {"target": {"tag": "fleet=bench"}, "name": "bench",
                                 "params": {"n": 1}, "timeout_s": 120})
            t_post = time.monotonic() - t0
            if st == 404:
                out["droverd"] = {"available": False,
                                  "note": "POST /api/v1/bulk/commands answered 404"}
                return out
            if st != 202 or not isinstance(job, dict):
                raise BenchError("POST /api/v1/bulk/commands: %s %r" % (st, job))

            def done():
                s, j = http_json(srv["http"], "GET", "/api/v1/jobs/%s?limit=1" % job["id"],
                                 srv["token"])
                if s != 200:
                    raise BenchError("GET job: %s %r" % (s, j))
                return j if j.get("status") != "running" else None
            j = wait_until(done, 120, "the bulk job to finish", 0.02)
            t_done = time.monotonic() - t0
            cpu = cpu_s(srv["pid"]) - c0
            res = {"available": True, "total": j.get("total"), "status": j.get("status"),
                   "counts": j.get("counts"), "post_s": round(t_post, 3),
                   "all_results_s": round(t_done, 3),
                   "server_side_s": (j["finished_at"] - j["created_at"]) / 1000.0
                   if j.get("finished_at") else None,
                   "server_cpu_s": round(cpu, 2), "rss_kb": status_kb(srv["pid"], "VmRSS")}
        finally:
            rep = self.finish_sim(p)
            self.stop_server(srv)
        c = rep["commands"]
        res.update({"sim_received": c["received"], "sim_acked": c["acked"],
                    "device_round_trip_ms": c["round_trip_ms"],
                    "errors": rep["errors"]["total"]})
        if (res["counts"] or {}).get("succeeded") != n:
            self.note_failure("commands: %r" % res["counts"])
        out["droverd"] = res
        log("commands: %d devices, all results recorded %.2f s after the POST" % (
            n, res["all_results_s"]))
        return out

    def scenario_reconnect(self):
        n = env_int("RECONNECT_DEVICES", 10000)
        drop_at = env_int("RECONNECT_DROP_AT", 15)
        out = {"params": {"devices": n, "drop_at_s": drop_at, "backoff": "full jitter, "
                          "100 ms doubling to 5 s", "connect_rate_before": 3000,
                          "telemetry": "QoS 1 every 10 s per device"}}
        creds = None
        for kind in self.servers:
            if kind == "droverd":
                srv, creds = self.fresh_droverd_fleet(n, "droverd-reconnect")
            else:
                creds = creds or self.anon_creds(n, "reconnect")
                srv = self.start_mosquitto(self.mosquitto_passwd_file(
                    creds, name="reconnect.passwd"), "mosquitto-reconnect")
            time.sleep(1)
            sampler = RssSampler(srv["pid"])
            sampler.start()
            t_start = time.monotonic()
            try:
                rep, cpu = self.run_sim(srv, ["--creds", creds, "--devices", str(n),
                                              "--connect-rate", "3000", "--workers",
                                              str(self.workers_for(n)),
                                              "--telemetry-interval", "10s", "--qos", "1",
                                              "--drop-at", "%ds" % drop_at, "--backoff-min",
                                              "100ms", "--backoff-max", "5s", "--until-connected",
                                              "--duration", "%ds" % (drop_at + 120)],
                                        drop_at + 200)
            finally:
                sampler.stop()
            rc = rep["reconnect"] or {}
            t_drop = t_start + (rc.get("drop_at_s") or drop_at)
            res = {"recovered_s": rc.get("recovered_s"),
                   "rss_before_drop_kb": sampler.at(t_drop - 0.5),
                   "peak_rss_after_drop_kb": sampler.peak_kb(since=t_drop),
                   "hwm_kb": status_kb(srv["pid"], "VmHWM"),
                   "connack_ms": rep["connections"]["connack_ms"],
                   "accepted": rep["connections"]["accepted"],
                   "server_cpu_s": round(cpu, 2), "errors": rep["errors"]["total"],
                   "error_kinds": {k: v for k, v in rep["errors"].items()
                                   if v and k not in ("total", "connack_codes")}}
            self.stop_server(srv)
            if res["recovered_s"] is None:
                self.note_failure("reconnect %s: not all devices came back" % kind)
            out[kind] = res
            log("reconnect %s: all back after %s s, peak RSS %s kB" % (
                kind, res["recovered_s"], res["peak_rss_after_drop_kb"]))
        return out

    # -------------------------------------------------------------- relay

    def scenario_relay11(self):
        return self.scenario_relay("relay11", 1)

    def scenario_relayN1(self):
        return self.scenario_relay("relayN1", env_int("RELAYN1_DEVICES", 100))

    def relay_servers(self, name):
        """droverd letting anonymous applications in (topics outside
        devices/: relayed, never stored) and mosquitto with allow_anonymous,
        both running for the whole scenario so their runs interleave."""
        srvs = {}
        for kind in self.servers:
            if kind == "droverd":
                data = os.path.join(self.tmp, name + "-droverd-data")
                shutil.rmtree(data, ignore_errors=True)
                srvs[kind] = self.start_droverd(data, name + "-droverd",
                                                "allow_anonymous = true\n")
            else:
                srvs[kind] = self.start_mosquitto(None, name + "-mosquitto")
        return srvs

    def relay_run(self, srv, n, qos, window, filt, secs, inflight):
        """One closed-loop relay run: n publishers as fast as the relay
        window (and at QoS 1/2 their own window) lets them, one subscriber
        at the same QoS."""
        m0 = self.droverd_metrics(srv)
        rep, cpu = self.run_sim(srv, ["--no-auth", "--id-prefix", "pub-", "--devices", str(n),
                                      "--relay", "bench", "--subscribe-all", filt,
                                      "--qos", str(qos), "--sub-qos", str(qos),
                                      "--telemetry-interval", "0", "--inflight", str(inflight),
                                      "--relay-window", str(window),
                                      "--payload-size", str(self.payload), "--wait-all",
                                      "--connect-rate", "0", "--duration", "%gs" % secs,
                                      "--drain", "3s"], secs + 60)
        m1 = self.droverd_metrics(srv)
        w, t = rep["watcher"], rep["telemetry"]
        got = w["received"]
        res = {"window": window, "sent": t["sent"], "delivered": got,
               "delivered_share": round(got / max(t["sent"], 1), 5),
               "delivered_per_s": round(w["per_s"]), "lost": t["sent"] - got,
               "skipped_over": w["gaps"], "late": w["late"], "gave_up": w["gave_up"],
               "duplicates": w["duplicates"], "relay_ms": w["relay_ms"],
               "ack_ms": t["puback_ms"] if qos else None,
               "pubrec_ms": t.get("pubrec_ms") if qos == 2 else None,
               "server_cpu_s": round(cpu, 3),
               "server_cpu_us_per_msg": round(cpu * 1e6 / max(got, 1), 3),
               "sim_cpu_s": round(self.last_sim_cpu_s, 3),
               "sim_cpu_us_per_msg": round(self.last_sim_cpu_s * 1e6 / max(got, 1), 3),
               "sim_busy": round(self.last_sim_cpu_s / max(self.last_sim_wall_s, 1e-6), 3),
               "rss_kb": status_kb(srv["pid"], "VmRSS"), "errors": rep["errors"]["total"]}
        if m0 and m1:
            res["server_dropped"] = (m1.get("drover_mqtt_messages_dropped_total", 0) -
                                     m0.get("drover_mqtt_messages_dropped_total", 0))
        return res

    def scenario_relay(self, name, n):
        """Relay throughput at QoS 0, 1, 2 for every server; each (QoS,
        window) step runs every server in turn, BENCH_RELAY_RUNS times."""
        qos_list = [int(x) for x in env("RELAY_QOS", "0 1 2").split()]
        windows = [int(x) for x in env("RELAY_WINDOWS", "16 64 256 1000").split()]
        runs = env_int("RELAY_RUNS", 3)
        secs = float(env("RELAY_SECONDS", "2"))
        # Unacknowledged messages per publisher. QoS 2 stays under the
        # lower of the servers' limits on incoming QoS 2 exchanges
        # (mosquitto's max_inflight_messages 20, droverd's receive_maximum
        # 64): past it mosquitto completes the exchange and discards the
        # message, droverd closes the connection.
        inflights = {0: 0, 1: env_int("RELAY_INFLIGHT_Q1", 64), 2: env_int("RELAY_INFLIGHT_Q2", 16)}
        compare_w = env_int("RELAY_COMPARE_WINDOW", 64)
        if any(q not in (0, 1, 2) for q in qos_list):
            raise BenchError("BENCH_RELAY_QOS wants 0, 1, 2")
        filt = "bench/pub-000000" if n == 1 else "bench/+"
        out = {"params": {"publishers": n, "subscriber_filter": filt, "qos": qos_list,
                          "relay_windows": windows, "runs": runs, "seconds_per_run": secs,
                          "publisher_inflight": {"qos1": inflights[1], "qos2": inflights[2]},
                          "compare_window": compare_w, "payload_size": self.payload,
                          "topics": "bench/pub-NNNNNN (anonymous clients; droverd relays, "
                                    "stores nothing)",
                          "loop": "closed: at most WINDOW messages published and not yet "
                                  "delivered; publishers as fast as that allows"}}
        srvs = self.relay_servers(name)
        raw = {k: {q: {w: [] for w in windows} for q in qos_list} for k in srvs}
        try:
            time.sleep(1)
            for r in range(runs):
                for q in qos_list:
                    for w in windows:
                        kinds = list(srvs) if r % 2 == 0 else list(reversed(list(srvs)))
                        for kind in kinds:
                            res = self.relay_run(srvs[kind], n, q, w, filt, secs,
                                                 max(inflights[q], 1))
                            raw[kind][q][w].append(res)
                            log("%s %s QoS %d window %d: %d delivered/s (%.2f %%), relay p50 %s "
                                "p99 %s ms, %.2f us/msg server, sim busy %.0f %%" % (
                                    name, kind, q, w, res["delivered_per_s"],
                                    100 * res["delivered_share"],
                                    pct(res["relay_ms"], "p50"), pct(res["relay_ms"], "p99"),
                                    res["server_cpu_us_per_msg"], 100 * res["sim_busy"]))
            for kind, srv in srvs.items():
                out.setdefault(kind, {})["hwm_kb"] = status_kb(srv["pid"], "VmHWM")
        finally:
            for srv in srvs.values():
                self.stop_server(srv)
        for kind in srvs:
            for q in qos_list:
                steps, best = {}, None
                for w in windows:
                    rs = sorted(raw[kind][q][w], key=lambda x: x["delivered_per_s"])
                    med = dict(rs[(len(rs) - 1) // 2])
                    med["per_s_range"] = [rs[0]["delivered_per_s"], rs[-1]["delivered_per_s"]]
                    steps[str(w)] = {"median": med, "runs": raw[kind][q][w]}
                    if best is None or med["delivered_per_s"] > best["delivered_per_s"]:
                        best = med
                    if any(x["errors"] for x in rs):
                        self.note_failure("%s %s QoS %d window %d: generator errors" % (
                            name, kind, q, w))
                out[kind]["qos%d" % q] = {"best": best, "windows": steps,
                                          "at_compare_window":
                                          steps[str(compare_w)]["median"]
                                          if str(compare_w) in steps else None}
        return out

    # -------------------------------------------------------------- driver

    def run(self):
        results = {}
        for s in self.scenarios:
            log("---- scenario %s" % s)
            t0 = time.monotonic()
            try:
                results[s] = getattr(self, "scenario_" + s)()
            except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                self.note_failure("%s: %s" % (s, e))
                results[s] = {"error": str(e)}
                for p in list(self.procs):  # whatever the scenario left running
                    self.stop_proc(p)
            results[s]["seconds"] = round(time.monotonic() - t0, 1)
        return results


def du_kb(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total // 1024


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mosq = ""
    try:
        r = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True,
                           timeout=5)
        mosq = (r.stdout or r.stderr).splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "mosquitto": mosq}


# ------------------------------------------------------------------ report

def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def fmt(v, f="%.0f"):
    return "-" if v is None else f % v


def pct(lat, key):
    return (lat or {}).get(key)


def table(results):
    """Rows: (scenario, metric, droverd, mosquitto, ratio)."""
    rows = []

    def add(sc, metric, d, m, f="%.0f"):
        r = ratio(d, m)
        rows.append((sc, metric, fmt(d, f), fmt(m, f), "-" if r is None else "%.2fx" % r))

    idle = results.get("idle", {})
    if "droverd" in idle or "mosquitto" in idle:
        dl = {(r["devices"], r["subscriptions"]): r for r in idle.get("droverd", [])}
        ml = {(r["devices"], r["subscriptions"]): r for r in idle.get("mosquitto", [])}
        for n, subs in sorted(set(dl) | set(ml), key=lambda k: (-k[1], k[0])):
            add("idle", "bytes/device @%d%s" % (n, "" if subs else " no subs"),
                dl.get((n, subs), {}).get("bytes_per_device"),
                ml.get((n, subs), {}).get("bytes_per_device"))
    c = results.get("connect", {})
    if "droverd" in c or "mosquitto" in c:
        d, m = c.get("droverd", {}), c.get("mosquitto", {})
        add("connect", "connects/s", d.get("connects_per_s"), m.get("connects_per_s"))
        add("connect", "CONNACK p99 ms", pct(d.get("connack_ms"), "p99"),
            pct(m.get("connack_ms"), "p99"), "%.1f")
        add("connect", "CPU us/connect", d.get("server_cpu_us_per_connect"),
            m.get("server_cpu_us_per_connect"), "%.1f")
    f = results.get("fanin", {})
    if "droverd" in f or "mosquitto" in f:
        d, m = f.get("droverd", {}), f.get("mosquitto", {})
        add("fanin", "max sustained msgs/s", d.get("max_sustained_per_s"),
            m.get("max_sustained_per_s"))
        at = f.get("compare_at_offered_per_s")
        if at:
            cpu = f["cpu_us_per_msg_at_compare"]
            add("fanin", "CPU us/msg @%d/s" % at, cpu["droverd"], cpu["mosquitto"], "%.2f")
            ds = {s["offered_per_s"]: s for s in d.get("steps", [])}
            ms = {s["offered_per_s"]: s for s in m.get("steps", [])}
            add("fanin", "relay p99 ms @%d/s" % at, pct(ds[at]["relay_ms"], "p99"),
                pct(ms[at]["relay_ms"], "p99"), "%.1f")
    q = results.get("qos1", {})
    if "droverd" in q or "mosquitto" in q:
        d, m = q.get("droverd", {}), q.get("mosquitto", {})
        for mode in ("saturating", "small window", "paced"):
            dd, mm = d.get(mode, {}), m.get(mode, {})
            add("qos1 " + mode, "acked msgs/s", dd.get("acked_per_s"), mm.get("acked_per_s"))
            add("qos1 " + mode, "PUBACK p50 ms", pct(dd.get("puback_ms"), "p50"),
                pct(mm.get("puback_ms"), "p50"), "%.2f")
            add("qos1 " + mode, "PUBACK p99 ms", pct(dd.get("puback_ms"), "p99"),
                pct(mm.get("puback_ms"), "p99"), "%.2f")
            add("qos1 " + mode, "PUBACK p99.9 ms", pct(dd.get("puback_ms"), "p999"),
                pct(mm.get("puback_ms"), "p999"), "%.2f")
            add("qos1 " + mode, "CPU us/msg", dd.get("server_cpu_us_per_msg"),
                mm.get("server_cpu_us_per_msg"), "%.2f")
            add("qos1 " + mode, "RSS MiB", (dd.get("rss_kb") or 0) / 1024 or None,
                (mm.get("rss_kb") or 0) / 1024 or None, "%.1f")
    cm = results.get("commands", {}).get("droverd")
    if cm:
        if cm.get("available"):
            rows.append(("commands", "all results after (s)", fmt(cm["all_results_s"], "%.2f"),
                         "n/a", "-"))
        else:
            rows.append(("commands", "bulk commands", "not available", "n/a", "-"))
    r = results.get("reconnect", {})
    if "droverd" in r or "mosquitto" in r:
        d, m = r.get("droverd", {}), r.get("mosquitto", {})
        add("reconnect", "all back after (s)", d.get("recovered_s"), m.get("recovered_s"), "%.2f")
        add("reconnect", "peak RSS MiB", (d.get("peak_rss_after_drop_kb") or 0) / 1024 or None,
            (m.get("peak_rss_after_drop_kb") or 0) / 1024 or None, "%.1f")
    for sc in ("relay11", "relayN1"):
        rl = results.get(sc, {})
        if "droverd" not in rl and "mosquitto" not in rl:
            continue
        for q in (0, 1, 2):
            key = "qos%d" % q
            d = (rl.get("droverd", {}).get(key) or {}).get("best") or {}
            m = (rl.get("mosquitto", {}).get(key) or {}).get("best") or {}
            if not d and not m:
                continue
            label = "%s QoS %d" % (sc, q)
            add(label, "delivered msgs/s", d.get("delivered_per_s"), m.get("delivered_per_s"))
            add(label, "at relay window", d.get("window"), m.get("window"))
            add(label, "delivered %", 100 * d["delivered_share"] if d else None,
                100 * m["delivered_share"] if m else None, "%.2f")
            add(label, "relay p50 ms", pct(d.get("relay_ms"), "p50"),
                pct(m.get("relay_ms"), "p50"), "%.2f")
            add(label, "relay p99 ms", pct(d.get("relay_ms"), "p99"),
                pct(m.get("relay_ms"), "p99"), "%.2f")
            if q:
                add(label, "%s p99 ms" % ("PUBACK" if q == 1 else "PUBCOMP"),
                    pct(d.get("ack_ms"), "p99"), pct(m.get("ack_ms"), "p99"), "%.2f")
            add(label, "CPU us/msg", d.get("server_cpu_us_per_msg"),
                m.get("server_cpu_us_per_msg"), "%.2f")
            add(label, "RSS MiB", (d.get("rss_kb") or 0) / 1024 or None,
                (m.get("rss_kb") or 0) / 1024 or None, "%.1f")
            # The same pipeline depth for both: latency and CPU like for like.
            dc = (rl.get("droverd", {}).get(key) or {}).get("at_compare_window") or {}
            mc = (rl.get("mosquitto", {}).get(key) or {}).get("at_compare_window") or {}
            cw = dc.get("window") or mc.get("window")
            if cw:
                add(label, "msgs/s @window %d" % cw, dc.get("delivered_per_s"),
                    mc.get("delivered_per_s"))
                add(label, "relay p50 ms @window %d" % cw, pct(dc.get("relay_ms"), "p50"),
                    pct(mc.get("relay_ms"), "p50"), "%.2f")
                add(label, "relay p99 ms @window %d" % cw, pct(dc.get("relay_ms"), "p99"),
                    pct(mc.get("relay_ms"), "p99"), "%.2f")
                add(label, "CPU us/msg @window %d" % cw, dc.get("server_cpu_us_per_msg"),
                    mc.get("server_cpu_us_per_msg"), "%.2f")
    return rows


def print_table(rows):
    head = ("scenario", "metric", "droverd", "mosquitto", "droverd/mosq")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    for r in [head] + rows:
        print("  ".join(str(c).rjust(w[i]) if i >= 2 else str(c).ljust(w[i])
                        for i, c in enumerate(r)))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/run.sh BUILD_DIR")
    b = Bench(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        results = b.run()
    except KeyboardInterrupt:
        b.cleanup()
        sys.exit(130)
    finally:
        pass
    fs = subprocess.run(["stat", "-f", "-c", "%T", b.tmp], capture_output=True,
                        text=True).stdout.strip()
    b.cleanup()
    doc = {"timestamp": stamp, "scenarios": b.scenarios, "servers": b.servers,
           "machine": dict(machine(), pinned=b.pinned, server_cpu=b.server_cpu,
                           client_cpu=b.client_cpu, data_dir_fs=fs, fd_limit=b.fd_limit),
           "results": results, "failures": b.failed}
    rows = table(results)
    doc["table"] = [dict(zip(("scenario", "metric", "droverd", "mosquitto", "ratio"), r))
                    for r in rows]
    os.makedirs(b.results_dir, exist_ok=True)
    out = os.path.join(b.results_dir, stamp + ".json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("drover benchmarks %s (%s, %d CPUs%s)" % (stamp, doc["machine"]["cpu_model"],
                                                     doc["machine"]["cpus"],
                                                     "" if b.pinned else ", unpinned"))
    print_table(rows)
    print("note: droverd stores QoS 1 telemetry (fsync'd) before PUBACK; mosquitto only relays.")
    print("results: " + out)
    if b.failed:
        print("FAILED: " + "; ".join(b.failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
