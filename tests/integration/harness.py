"""Integration test harness: the real droverd on free loopback ports with a
temporary data dir, plus small clients to drive it.

- Droverd: starts/stops/restarts/kills one server process, captures its
  stdout/stderr to files, waits for "droverd ready", reads the admin token,
  talks REST (api()), and on stop() fails the test on a non-zero exit or a
  sanitizer report (ASan, UBSan, LSan) in its stderr.
- MqttClient: Eclipse Paho (Debian's python3-paho-mqtt 1.6.x) driven by our
  own loop thread with reconnects disabled, so a test sees exactly what the
  server did.
- ServerTestCase: a unittest base class with one server per test class.

Environment: DROVER_BUILD_DIR (set by CMake) holds droverd and drover.
DROVER_KEEP_TMP=1 keeps every temp dir (logs) even when all went well.
Every wait here has a deadline: no test can hang.
"""

import atexit
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from urllib.parse import quote, urlencode

try:
    import paho.mqtt
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
except ImportError as e:  # fail loudly: a missing tool is not a skip
    raise RuntimeError(
        "python3-paho-mqtt is required (apt-get install python3-paho-mqtt) "
        "and the tests must run with /usr/bin/python3: %s" % e)

HOST = "127.0.0.1"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "LeakSanitizer",
    "runtime error:",
    "ERROR: UndefinedBehaviorSanitizer",
    "AddressSanitizer:DEADLYSIGNAL",
    "WARNING: ThreadSanitizer",
)

_live = []  # servers to kill if the interpreter exits mid-test


@atexit.register
def _kill_leftovers():
    for s in list(_live):
        try:
            s.kill()
        except Exception:
            pass


# ---------------------------------------------------------------- helpers

def build_dir():
    d = os.environ.get("DROVER_BUILD_DIR")
    if not d:
        raise RuntimeError("DROVER_BUILD_DIR is not set: run through ctest or "
                           "set it to the CMake build directory")
    return d


def droverd_path():
    p = os.path.join(build_dir(), "droverd")
    if not os.access(p, os.X_OK):
        raise RuntimeError("droverd not found or not executable at %s" % p)
    return p


def cli_path():
    p = os.path.join(build_dir(), "drover")
    if not os.access(p, os.X_OK):
        raise RuntimeError("drover CLI not found or not executable at %s" % p)
    return p


def require_tool(name):
    p = shutil.which(name)
    if p is None:
        raise RuntimeError("required tool %r is not installed (Debian: %s)" % (
            name, "mosquitto-clients" if name.startswith("mosquitto") else name))
    return p


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_ports(n):
    """n distinct free ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def now_ms():
    return int(time.time() * 1000)


_ids = itertools.count(1)


def uid(prefix="dev"):
    """A device id unique within this run (and valid: [A-Za-z0-9._-])."""
    return "%s-%d-%s" % (prefix, next(_ids), uuid.uuid4().hex[:6])


def rfc3339(ms, offset_minutes=0, frac=True):
    """epoch ms -> RFC 3339 text, in UTC ("Z") or at a fixed offset."""
    secs, milli = divmod(ms, 1000)
    t = time.gmtime(secs + offset_minutes * 60)
    s = time.strftime("%Y-%m-%dT%H:%M:%S", t)
    if frac:
        s += ".%03d" % milli
    if offset_minutes == 0:
        return s + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    m = abs(offset_minutes)
    return s + "%s%02d:%02d" % (sign, m // 60, m % 60)


def wait_for(pred, timeout=5.0, interval=0.05, msg="condition"):
    """Polls pred() until truthy; returns its value or raises
    AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except Exception as e:  # keep polling; report the last error
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, msg, last))
        time.sleep(interval)


def run(args, timeout=30, env=None, input=None):
    """Runs a command with a deadline. Returns CompletedProcess (text)."""
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        return subprocess.run(args, capture_output=True, text=True,
                              timeout=timeout, env=e, input=input)
    except subprocess.TimeoutExpired as ex:
        raise AssertionError("command timed out after %ss: %s\nstdout: %s\nstderr: %s"
                             % (timeout, " ".join(args), ex.stdout, ex.stderr))


def sanitizer_lines(text):
    return [l for l in text.splitlines() if any(p in l for p in SANITIZER_PATTERNS)]


def tail(path, n=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "<%s>" % e


class ADMIN:
    """Marker: use the server's admin token."""


# ---------------------------------------------------------------- droverd

class Droverd:
    """One droverd process (and its data dir / ports across restarts)."""

    def __init__(self, config=None, extra_args=(), data_dir=None,
                 log_level="debug", use_flags=True, mqtt_port=None,
                 http_port=None):
        self.binary = droverd_path()
        self.tmp = tempfile.mkdtemp(prefix="drover-it-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        # Ports we pick ourselves are re-picked if another process grabs one
        # between our probe and droverd's bind (see start()).
        self.auto_ports = mqtt_port is None and http_port is None
        if mqtt_port is None or http_port is None:
            p = free_ports(2)
            mqtt_port = mqtt_port or p[0]
            http_port = http_port or p[1]
        self.mqtt_port = mqtt_port
        self.http_port = http_port
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(self.tmp, "droverd.conf")
            with open(self.config_path, "w") as f:
                f.write(config)
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.use_flags = use_flags
        self.proc = None
        self.runs = 0
        self.token = None
        self.stdout_path = self.stderr_path = None
        self.problems = False

    # -- process -------------------------------------------------------

    def argv(self):
        a = [self.binary]
        if self.use_flags:
            a += ["--data-dir", self.data_dir,
                  "--mqtt-listen", "%s:%d" % (HOST, self.mqtt_port),
                  "--http-listen", "%s:%d" % (HOST, self.http_port)]
        if self.config_path:
            a += ["--config", self.config_path]
        if self.log_level:
            a += ["--log-level", self.log_level]
        return a + self.extra_args

    def env(self):
        e = dict(os.environ)
        e["ASAN_OPTIONS"] = ("detect_leaks=1:abort_on_error=0:halt_on_error=1:"
                             "detect_stack_use_after_return=1:"
                             "strict_init_order=1:check_initialization_order=1")
        e["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        e["LSAN_OPTIONS"] = "report_objects=0"
        return e

    def spawn(self):
        """Starts the process without waiting for anything."""
        self.runs += 1
        self.stdout_path = os.path.join(self.tmp, "stdout.%d.log" % self.runs)
        self.stderr_path = os.path.join(self.tmp, "stderr.%d.log" % self.runs)
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=self.env(),
                                         cwd=self.tmp)
        finally:
            out.close()
            err.close()
        _live.append(self)
        return self.proc

    def stdout(self):
        with open(self.stdout_path, "r", errors="replace") as f:
            return f.read()

    def stderr(self):
        with open(self.stderr_path, "r", errors="replace") as f:
            return f.read()

    def logs(self, n=40):
        return ("---- droverd %s\n---- stdout (%s) tail:\n%s---- stderr (%s) tail:\n%s"
                % (" ".join(self.argv()), self.stdout_path, tail(self.stdout_path, n),
                   self.stderr_path, tail(self.stderr_path, n)))

    def start(self, timeout=READY_TIMEOUT):
        """Starts droverd and waits for its "droverd ready" line."""
        for attempt in range(3):
            if self._start_once(timeout, retry_port_clash=attempt < 2):
                break
            self.mqtt_port, self.http_port = free_ports(2)
        tok = os.path.join(self.data_dir, "admin.token")
        wait_for(lambda: os.path.exists(tok) and open(tok).read().strip(),
                 timeout=5, msg="%s" % tok)
        with open(tok) as f:
            self.token = f.read().strip()
        return self

    def _start_once(self, timeout, retry_port_clash):
        """One start attempt. Returns False (retry on fresh ports) only when
        a first start lost a race for a port we picked ourselves; raises on
        any other failure."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while True:
            if "droverd ready" in self.stdout():
                return True
            rc = self.proc.poll()
            if rc is not None:
                _live.remove(self)
                if (retry_port_clash and self.auto_ports and self.runs == 1 and rc == 1
                        and "in use" in self.stderr().lower()):
                    self.runs = 0
                    return False
                self.problems = True
                raise AssertionError("droverd exited with %d before ready\n%s"
                                     % (rc, self.logs()))
            if time.monotonic() >= deadline:
                self.kill()
                self.problems = True
                raise AssertionError(
                    "droverd not ready after %.0fs (no 'droverd ready' line on "
                    "stdout: is stdout flushed?)\n%s" % (timeout, self.logs()))
            time.sleep(0.05)

    def run_to_exit(self, timeout=20.0):
        """Starts droverd expecting it to exit on its own (refusal tests).
        Returns (exit code, stdout, stderr)."""
        self.spawn()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("droverd still running after %.0fs; expected it "
                                 "to refuse to start\n%s" % (timeout, self.logs()))
        _live.remove(self)
        return rc, self.stdout(), self.stderr()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal_and_wait(self, sig, timeout=STOP_TIMEOUT):
        """Sends sig and waits for exit. Returns the exit code (negative:
        killed by a signal)."""
        if self.proc is None:
            raise AssertionError("droverd was not started")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.problems = True
            raise AssertionError("droverd did not exit within %.0fs of %s\n%s"
                                 % (timeout, signal.Signals(sig).name, self.logs()))
        if self in _live:
            _live.remove(self)
        return rc

    def check_exit(self, rc, what="stop"):
        """Fails on a non-zero exit code or a sanitizer report."""
        bad = sanitizer_lines(self.stderr())
        if bad or rc != 0:
            self.problems = True
            raise AssertionError(
                "droverd %s: exit code %s%s\n%s" % (
                    what, rc,
                    ("; sanitizer report:\n  " + "\n  ".join(bad[:10])) if bad else "",
                    self.logs(80)))

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Graceful stop; asserts exit code 0 and no sanitizer report."""
        rc = self.signal_and_wait(sig, timeout)
        self.check_exit(rc, "stop (%s)" % signal.Signals(sig).name)
        return rc

    def restart(self):
        """stop() then start() on the same data dir and ports."""
        self.stop()
        return self.start()

    def kill(self):
        """SIGKILL, no checks (a crash / power-loss test)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self in _live:
            _live.remove(self)

    def cleanup(self):
        """Kills if still running; removes the temp dir unless something went
        wrong (then prints where the logs are)."""
        self.kill()
        if self.problems or os.environ.get("DROVER_KEEP_TMP"):
            sys.stderr.write("droverd logs kept in %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- REST ----------------------------------------------------------

    @property
    def base_url(self):
        return "http://%s:%d" % (HOST, self.http_port)

    def request(self, method, path, body=None, token=ADMIN, headers=None,
                timeout=10.0):
        """One HTTP request. body: dict/list (sent as JSON), str/bytes (sent
        as is) or None. Returns (status, headers dict lower-case, bytes)."""
        h = {}
        if token is ADMIN:
            token = self.token
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = body
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        conn = http.client.HTTPConnection(HOST, self.http_port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            payload = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, payload
        finally:
            conn.close()

    def api(self, method, path, body=None, token=ADMIN, **kw):
        """Returns (status, parsed JSON) - None for an empty body, the text
        itself if the body is not JSON."""
        status, _, payload = self.request(method, path, body, token, **kw)
        if not payload:
            return status, None
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode("utf-8", "replace")

    def create_device(self, device_id, tags=None):
        """Creates a device through the API; returns its secret."""
        body = {"id": device_id}
        if tags is not None:
            body["tags"] = tags
        st, js = self.api("POST", "/api/v1/devices", body)
        if st != 201 or not isinstance(js, dict) or "secret" not in js:
            raise AssertionError("create device %s: %s %r" % (device_id, st, js))
        return js["secret"]

    def device(self, device_id):
        st, js = self.api("GET", "/api/v1/devices/" + device_id)
        if st != 200:
            raise AssertionError("GET device %s: %s %r" % (device_id, st, js))
        return js

    def telemetry(self, device_id, query=""):
        st, js = self.api("GET", "/api/v1/devices/%s/telemetry%s" % (device_id, query))
        if st != 200:
            raise AssertionError("GET telemetry %s%s: %s %r" % (device_id, query, st, js))
        return js

    def all_points(self, device_id, params=None, page=1000):
        """Every telemetry point, following next cursors. params: dict of
        query parameters (metric, since, until)."""
        params = dict(params or {})
        params["limit"] = page
        pts = []
        for _ in range(10000):
            js = self.telemetry(device_id, "?" + urlencode(params))
            pts += js["points"]
            if not js.get("next"):
                return pts
            params["cursor"] = js["next"]
        raise AssertionError("telemetry pagination did not end")

    # -- MQTT ----------------------------------------------------------

    def mqtt(self, client_id, username=None, password=None, **kw):
        return MqttClient(self.mqtt_port, client_id, username, password, **kw)

    def app_client(self, client_id="app-1", version=4, **kw):
        """An application client: any username, password = admin token."""
        return MqttClient(self.mqtt_port, client_id, "app", self.token,
                          version=version, **kw)


def urlquote(s):
    return quote(s, safe="")


# ---------------------------------------------------------------- paho

def _rc(x):
    """paho gives ints for 3.1.1 and ReasonCodes objects for 5.0."""
    if x is None:
        return None
    v = getattr(x, "value", x)
    return int(v)


class MqttClient:
    """A Paho client with synchronous helpers and no automatic reconnect.

    version: 4 (3.1.1) or 5. clean: clean session (3.1.1) / clean start (5.0).
    session_expiry: seconds (5.0 only). will: dict(topic, payload, qos,
    retain).
    """

    def __init__(self, port, client_id, username=None, password=None,
                 version=4, clean=True, session_expiry=None, keepalive=30,
                 will=None, host=HOST):
        self.host, self.port = host, port
        self.version = version
        self.clean = clean
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        if version == 5:
            self.c = paho.Client(client_id=client_id, protocol=paho.MQTTv5,
                                 reconnect_on_failure=False)
        else:
            self.c = paho.Client(client_id=client_id, clean_session=clean,
                                 protocol=paho.MQTTv311, reconnect_on_failure=False)
        if username is not None:
            self.c.username_pw_set(username, password)
        if will:
            self.c.will_set(will["topic"], will.get("payload"), will.get("qos", 0),
                            will.get("retain", False))
        self.cv = threading.Condition()
        self.connack = None          # reason code of the CONNACK
        self.session_present = None
        self.disconnected = False
        self.disconnect_rc = None
        self.connects = 0
        self.disconnects = 0
        self.acked = set()
        self.subacks = {}
        self.messages = []
        self._stop = threading.Event()
        self._thread = None
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.on_unsubscribe = self._on_unsubscribe
        self.unsubacks = set()

    # callbacks (paho thread)
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        with self.cv:
            self.connack = _rc(rc)
            self.session_present = flags.get("session present")
            self.connects += 1
            self.cv.notify_all()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        with self.cv:
            self.disconnected = True
            self.disconnects += 1
            self.disconnect_rc = _rc(rc)
            self.cv.notify_all()

    def _on_publish(self, client, userdata, mid):
        with self.cv:
            self.acked.add(mid)
            self.cv.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        with self.cv:
            self.subacks[mid] = [_rc(g) for g in granted]
            self.cv.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, *rest):
        with self.cv:
            self.unsubacks.add(mid)
            self.cv.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cv:
            self.messages.append(msg)
            self.cv.notify_all()

    def _loop(self):
        while not self._stop.is_set():
            try:
                rc = self.c.loop(0.05)
            except Exception:
                rc = -1
            if rc != 0:
                time.sleep(0.05)

    def _wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
            return True

    def connect(self, timeout=5.0):
        """Connects and waits for CONNACK. Returns its reason code, or -1 if
        the server closed the connection without one."""
        kw = {}
        if self.version == 5:
            kw["clean_start"] = self.clean
            if self.session_expiry is not None:
                p = Properties(PacketTypes.CONNECT)
                p.SessionExpiryInterval = self.session_expiry
                kw["properties"] = p
        with self.cv:
            self.connack = None
            self.disconnected = False
        self.c.connect(self.host, self.port, keepalive=self.keepalive, **kw)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            # Paho 1.6 writes a publish straight to the socket from the
            # caller's thread unless it believes a loop thread exists
            # (Client._thread, set by loop_start). With our own loop thread
            # that would let two threads write the socket at once and
            # interleave partial packets; tell paho about our thread so it
            # only queues and wakes the loop.
            self.c._thread = self._thread
            self._thread.start()
        if not self._wait(lambda: self.connack is not None or self.disconnected, timeout):
            raise AssertionError("no CONNACK within %.1fs" % timeout)
        return self.connack if self.connack is not None else -1

    def connect_ok(self, timeout=5.0):
        rc = self.connect(timeout)
        if rc != 0:
            raise AssertionError("CONNACK %s for %s" % (rc, self.c._client_id))
        return self

    def publish(self, topic, payload, qos=1, timeout=5.0, retain=False):
        """Publishes; for QoS 1 waits for PUBACK. Returns True on success."""
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            return False
        if qos == 0:
            return True
        return self._wait(lambda: info.mid in self.acked, timeout)

    def publish_nowait(self, topic, payload, qos=1):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        info = self.c.publish(topic, payload, qos=qos)
        return info.mid if info.rc == 0 else None

    def is_acked(self, mid):
        with self.cv:
            return mid in self.acked

    def subscribe(self, topic, qos=1, timeout=5.0):
        """Subscribes; returns the SUBACK codes (list of ints)."""
        rc, mid = self.c.subscribe(topic, qos)
        if rc != 0:
            raise AssertionError("subscribe %s: paho rc %d" % (topic, rc))
        if not self._wait(lambda: mid in self.subacks, timeout):
            raise AssertionError("no SUBACK for %s within %.1fs" % (topic, timeout))
        return self.subacks[mid]

    def unsubscribe(self, topic, timeout=5.0):
        rc, mid = self.c.unsubscribe(topic)
        if rc != 0:
            raise AssertionError("unsubscribe %s: paho rc %d" % (topic, rc))
        if not self._wait(lambda: mid in self.unsubacks, timeout):
            raise AssertionError("no UNSUBACK for %s within %.1fs" % (topic, timeout))

    def wait_message(self, topic=None, timeout=5.0, start=0):
        """First message (at index >= start) on topic (any if None), or None."""
        found = []

        def pred():
            for m in self.messages[start:]:
                if topic is None or m.topic == topic:
                    found.append(m)
                    return True
            return False

        self._wait(pred, timeout)
        return found[0] if found else None

    def wait_disconnected(self, timeout=5.0):
        return self._wait(lambda: self.disconnected, timeout)

    def disconnect(self, timeout=3.0):
        """Clean DISCONNECT, then stops the loop."""
        try:
            self.c.disconnect()
        except Exception:
            pass
        self._wait(lambda: self.disconnected, timeout)
        self.stop_loop()

    def stop_loop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
            self.c._thread = None

    def abort(self):
        """Drops the TCP connection without DISCONNECT."""
        self.stop_loop()
        s = self.c.socket()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        """Idempotent cleanup: stop the loop and close the socket."""
        self.stop_loop()
        try:
            s = self.c.socket()
            if s is not None:
                s.close()
        except Exception:
            pass


# ---------------------------------------------------------------- unittest

class ServerTestCase(unittest.TestCase):
    """One droverd per test class. Subclasses may set server_config (config
    file text). self.server / cls.server is the running Droverd; the class
    fails if the server does not stop cleanly at the end."""

    server_config = None
    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Droverd(config=cls.server_config, extra_args=cls.server_args)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.server.alive():
                cls.server.stop()
            elif cls.server.proc is not None:
                cls.server.problems = True
                rc = cls.server.proc.poll()
                bad = sanitizer_lines(cls.server.stderr())
                raise AssertionError("droverd died during the tests: exit code %s%s\n%s" % (
                    rc, ("; sanitizer report:\n  " + "\n  ".join(bad[:10])) if bad else "",
                    cls.server.logs(80)))
        finally:
            cls.server.cleanup()

    def setUp(self):
        if not self.server.alive():
            self.server.problems = True
            rc = self.server.proc.poll() if self.server.proc else None
            self.fail("droverd is not running (exit code %s%s)\n%s" % (
                rc, " = killed by signal %d" % -rc if rc is not None and rc < 0 else "",
                self.server.logs()))

    def mqtt(self, client_id, username=None, password=None, **kw):
        """A Paho client closed automatically at the end of the test."""
        c = self.server.mqtt(client_id, username, password, **kw)
        self.addCleanup(c.close)
        return c

    def device_client(self, device_id, secret, **kw):
        return self.mqtt(device_id, device_id, secret, **kw)

    def app_client(self, client_id="app-1", version=4, **kw):
        c = self.server.app_client(client_id, version=version, **kw)
        self.addCleanup(c.close)
        return c

    def raw(self, version=4):
        """A raw socket connection (mqttraw.Conn), closed at the end."""
        import mqttraw
        c = mqttraw.Conn(HOST, self.server.mqtt_port, version=version)
        self.addCleanup(c.close)
        return c

    def new_device(self, prefix="dev", tags=None):
        """Creates a device; returns (id, secret)."""
        d = uid(prefix)
        return d, self.server.create_device(d, tags)

    def send_telemetry(self, device_id, secret, payloads, version=4, timeout=10.0):
        """Connects as the device, publishes each payload at QoS 1 (pipelined)
        to devices/ID/telemetry, waits for every PUBACK, disconnects."""
        c = self.device_client(device_id, secret, version=version)
        c.connect_ok()
        topic = "devices/%s/telemetry" % device_id
        mids = []
        for p in payloads:
            mid = c.publish_nowait(topic, p, qos=1)
            self.assertIsNotNone(mid, "publish failed")
            mids.append(mid)
        ok = c._wait(lambda: all(m in c.acked for m in mids), timeout)
        self.assertTrue(ok, "%d of %d PUBACKs within %.0fs" % (
            sum(1 for m in mids if c.is_acked(m)), len(mids), timeout))
        c.disconnect()

    def assertError(self, status, js, want_status, want_code):
        """An error reply: the status and {"error": code, "detail": text}."""
        self.assertEqual(status, want_status, "body: %r" % (js,))
        self.assertIsInstance(js, dict, "error body is not a JSON object: %r" % (js,))
        self.assertEqual(js.get("error"), want_code, js)
        self.assertIsInstance(js.get("detail"), str, js)
        self.assertTrue(js["detail"], "empty detail: %r" % js)


def main():
    """unittest.main() that exits non-zero on any failure or error."""
    unittest.main(verbosity=2)
