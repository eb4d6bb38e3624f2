"""Bulk operations and jobs: a command to 100 of 200 connected Paho devices
by tag (counts, per-device paging, end-to-end time), by ids and to all
devices, a bulk twin patch, and bad targets.

The fleet runs 200 Paho clients on a few threads (each thread polls its
clients' sockets and drives them with loop_read / loop_write / loop_misc),
not one thread per client."""

import heapq
import json
import os
import random
import select
import sys
import threading
import time
from multiprocessing.pool import ThreadPool
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HOST, paho  # noqa: E402

JOB_TIMEOUT = 30.0


class Dev:
    """One fleet member: its Paho client and what it saw (worker thread)."""

    def __init__(self, did, secret, fail):
        self.id = did
        self.secret = secret
        self.fail = fail            # answers "failed" instead of "succeeded"
        self.client = None
        self.connack = None
        self.subacked = 0
        self.commands = []          # parsed command messages
        self.desired = []           # parsed desired messages
        self.results_acked = 0
        self.errors = []


class Worker(threading.Thread):
    """Drives a few Paho clients from one thread with poll()."""

    def __init__(self, fleet, devs):
        super().__init__(daemon=True)
        self.fleet = fleet
        self.devs = devs
        self.due = []               # heap of (when, seq, dev, topic, payload)
        self.seq = 0
        self.stop = threading.Event()

    def _callbacks(self, dev):
        c = dev.client
        fleet = self.fleet

        def on_connect(client, userdata, flags, rc, properties=None):
            dev.connack = int(getattr(rc, "value", rc))
            if dev.connack == 0:
                client.subscribe([("devices/%s/commands/+" % dev.id, 1),
                                  ("devices/%s/twin/desired" % dev.id, 1)])

        def on_subscribe(client, userdata, mid, granted, properties=None):
            dev.subacked += 1

        def on_message(client, userdata, msg):
            try:
                js = json.loads(msg.payload)
            except ValueError as e:
                dev.errors.append("bad payload on %s: %s" % (msg.topic, e))
                return
            if msg.topic == "devices/%s/twin/desired" % dev.id:
                dev.desired.append(js)
                return
            dev.commands.append(js)
            status = "failed" if dev.fail else "succeeded"
            out = {"device": dev.id, "name": js.get("name")}
            delay = fleet.rng.uniform(0.02, 0.4)
            self.seq += 1
            heapq.heappush(self.due, (time.monotonic() + delay, self.seq, dev,
                                      "devices/%s/commands/%s/result" % (dev.id, js.get("id")),
                                      json.dumps({"status": status, "output": out})))

        def on_publish(client, userdata, mid):
            dev.results_acked += 1

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = on_message
        c.on_publish = on_publish

    def run(self):
        try:
            for dev in self.devs:
                dev.client = paho.Client(client_id=dev.id, clean_session=True,
                                         protocol=paho.MQTTv311, reconnect_on_failure=False)
                dev.client.username_pw_set(dev.id, dev.secret)
                self._callbacks(dev)
                dev.client.connect(HOST, self.fleet.port, keepalive=60)
            self._loop()
        except Exception as e:  # reported by Fleet.check()
            self.fleet.errors.append("worker: %r" % e)
        finally:
            for dev in self.devs:
                c = dev.client
                if c is None:
                    continue
                try:
                    c.disconnect()
                    c.loop_write()
                except Exception:
                    pass
                try:
                    s = c.socket()
                    if s is not None:
                        s.close()
                except Exception:
                    pass
                for sp in (getattr(c, "_sockpairR", None), getattr(c, "_sockpairW", None)):
                    try:
                        if sp is not None:
                            sp.close()
                    except Exception:
                        pass

    def _loop(self):
        last_misc = 0.0
        while not self.stop.is_set():
            p = select.poll()
            byfd = {}
            for dev in self.devs:
                s = dev.client.socket()
                if s is None:
                    continue
                fd = s.fileno()
                if fd < 0:
                    continue
                byfd[fd] = dev
                p.register(fd, select.POLLIN | (select.POLLOUT if dev.client.want_write() else 0))
            now = time.monotonic()
            wait = 0.05
            if self.due:
                wait = max(0.0, min(wait, self.due[0][0] - now))
            for fd, ev in p.poll(wait * 1000):
                dev = byfd[fd]
                if ev & (select.POLLIN | select.POLLERR | select.POLLHUP):
                    dev.client.loop_read()
                if ev & select.POLLOUT:
                    dev.client.loop_write()
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, _, dev, topic, payload = heapq.heappop(self.due)
                dev.client.publish(topic, payload, qos=1)
            if now - last_misc >= 1.0:
                last_misc = now
                for dev in self.devs:
                    dev.client.loop_misc()


class Fleet:
    """N devices on `threads` worker threads."""

    def __init__(self, port, devs, threads=8, seed=1):
        self.port = port
        self.devs = devs
        self.byid = {d.id: d for d in devs}
        self.rng = random.Random(seed)
        self.errors = []
        n = max(1, min(threads, len(devs)))
        self.workers = [Worker(self, devs[i::n]) for i in range(n)]

    def start(self, timeout=30.0):
        for w in self.workers:
            w.start()
        harness.wait_for(lambda: self.errors or all(d.subacked >= 1 for d in self.devs),
                         timeout, interval=0.05, msg="every fleet device connected and subscribed")
        self.check()
        bad = [(d.id, d.connack) for d in self.devs if d.connack != 0]
        if bad:
            raise AssertionError("CONNACK refused for %r" % bad[:5])
        # The desired state sent on SUBSCRIBE (version 0) has arrived for all.
        harness.wait_for(lambda: all(d.desired for d in self.devs), 10,
                         msg="initial desired state at every device")

    def check(self):
        errs = list(self.errors)
        for d in self.devs:
            errs += ["%s: %s" % (d.id, e) for e in d.errors]
        if errs:
            raise AssertionError("fleet errors: %s" % "; ".join(errs[:5]))

    def stop(self):
        for w in self.workers:
            w.stop.set()
        for w in self.workers:
            w.join(10)
        alive = [w for w in self.workers if w.is_alive()]
        if alive:
            raise AssertionError("%d fleet threads did not stop" % len(alive))


def make_devices(server, specs, threads=16):
    """Creates devices through the API in parallel. specs: [(id, tags)].
    Returns {id: secret}."""
    def one(spec):
        did, tags = spec
        return did, server.create_device(did, tags)
    with ThreadPool(threads) as pool:
        return dict(pool.map(one, specs))


class BulkMixin:

    def post_bulk(self, kind, body):
        return self.server.api("POST", "/api/v1/bulk/%s" % kind, body)

    def start_job(self, kind, body):
        st, hdrs, raw = self.server.request("POST", "/api/v1/bulk/%s" % kind, body)
        js = json.loads(raw)
        self.assertEqual(st, 202, "POST bulk %s %r: %r" % (kind, body, js))
        self.assertTrue(js["id"])
        self.assertEqual(hdrs.get("location"), "/api/v1/jobs/%s" % js["id"])
        self.assertEqual(js["kind"], "command" if kind == "commands" else "twin")
        return js

    def job(self, jid, query=""):
        st, js = self.server.api("GET", "/api/v1/jobs/%s%s" % (jid, query))
        self.assertEqual(st, 200, "GET job %s%s: %r" % (jid, query, js))
        return js

    def wait_job(self, jid, timeout=JOB_TIMEOUT):
        box = {}

        def done():
            box["js"] = self.job(jid, "?limit=1")
            return box["js"]["status"] == "done"
        try:
            harness.wait_for(done, timeout, interval=0.05, msg="job %s done" % jid)
        except AssertionError:
            raise AssertionError("job %s not done within %.0fs: %r" % (jid, timeout,
                                                                       box.get("js")))
        return box["js"]

    def job_devices(self, jid, limit):
        """Every per-device row, following next cursors."""
        rows, cursor, pages = [], None, 0
        for _ in range(1000):
            q = "?limit=%d" % limit + ("&cursor=" + quote(cursor, safe="") if cursor else "")
            js = self.job(jid, q)
            pages += 1
            self.assertLessEqual(len(js["devices"]), limit)
            rows += js["devices"]
            cursor = js["next"]
            if not cursor:
                return rows, pages
        self.fail("job paging did not end")


class BulkFleetTest(BulkMixin, harness.ServerTestCase):
    """200 connected devices, half site=a and half site=b."""

    N = 200

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fleet = None
        try:
            run = harness.uid("b")
            specs = []
            for i in range(cls.N):
                specs.append(("%s-%03d" % (run, i), {"site": "a" if i % 2 == 0 else "b",
                                                     "n": str(i)}))
            t = time.monotonic()
            secrets = make_devices(cls.server, specs)
            created = time.monotonic() - t
            # A few devices answer "failed": indexes 7, 32, 57, ... (4 per 100).
            devs = [Dev(did, secrets[did], fail=(i % 25 == 7))
                    for i, (did, _) in enumerate(specs)]
            cls.site = {"a": [d.id for i, d in enumerate(devs) if i % 2 == 0],
                        "b": [d.id for i, d in enumerate(devs) if i % 2 == 1]}
            cls.fleet = Fleet(cls.server.mqtt_port, devs)
            t = time.monotonic()
            cls.fleet.start()
            sys.stderr.write("\n  fleet: %d devices created in %.2fs, connected and subscribed "
                             "in %.2fs\n" % (cls.N, created, time.monotonic() - t))
        except Exception:
            if cls.fleet is not None:
                cls.fleet.stop()
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.fleet is not None:
                cls.fleet.stop()
        finally:
            super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.fleet.check()
        self.mark = {d.id: (len(d.commands), len(d.desired)) for d in self.fleet.devs}

    def new_commands(self, did):
        return self.fleet.byid[did].commands[self.mark[did][0]:]

    def new_desired(self, did):
        return self.fleet.byid[did].desired[self.mark[did][1]:]

    def check_command_job(self, jid, ids, name, page):
        js = self.job(jid)
        self.assertEqual(js["status"], "done")
        self.assertEqual(js["total"], len(ids))
        self.assertIsNotNone(js["finished_at"])
        counts = js["counts"]
        want_failed = sum(1 for i in ids if self.fleet.byid[i].fail)
        self.assertEqual(counts.get("failed", 0), want_failed, counts)
        self.assertEqual(counts.get("succeeded", 0), len(ids) - want_failed, counts)
        self.assertEqual(counts.get("succeeded", 0) + counts.get("failed", 0), len(ids), counts)
        for k in ("queued", "sent", "rejected", "expired", "deleted"):
            self.assertEqual(counts.get(k, 0), 0, counts)
        rows, pages = self.job_devices(jid, page)
        self.assertGreaterEqual(pages, -(-len(ids) // page))
        listed = [r["device"] for r in rows]
        self.assertEqual(len(listed), len(set(listed)), "a device listed twice")
        self.assertEqual(set(listed), set(ids), "the job lists exactly its targets")
        for r in rows:
            want = "failed" if self.fleet.byid[r["device"]].fail else "succeeded"
            self.assertEqual(r["status"], want, r)
            if r["device"] in ids[:5]:  # spot-check the command records
                st, cmd = self.server.api("GET", "/api/v1/commands/%s" % r["command"])
                self.assertEqual(st, 200)
                self.assertEqual((cmd["device"], cmd["name"], cmd["status"], cmd["job"]),
                                 (r["device"], name, want, jid))
                self.assertEqual(cmd["result"], {"device": r["device"], "name": name})
        # Each target got the command exactly once; nobody else got it.
        for d in self.fleet.devs:
            got = [c for c in self.new_commands(d.id) if c.get("name") == name]
            self.assertEqual(len(got), 1 if d.id in ids else 0, "%s got %r" % (d.id, got))
        return js

    def test_command_by_tag_100_devices(self):
        ids = self.site["a"]
        self.assertEqual(len(ids), 100)
        t0 = time.monotonic()
        js = self.start_job("commands", {"target": {"tag": "site=a"}, "name": "update",
                                         "params": {"v": 2}, "timeout_s": 60})
        self.assertEqual(js["total"], 100)
        self.assertIn(js["status"], ("running", "done"))
        self.assertEqual(js["spec"]["name"], "update")
        done = self.wait_job(js["id"])
        took = time.monotonic() - t0
        sys.stderr.write("\n  bulk command to 100 devices: %.3fs from POST to job done "
                         "(server finished_at - created_at: %d ms)\n"
                         % (took, done["finished_at"] - done["created_at"]))
        self.check_command_job(js["id"], ids, "update", page=30)
        for did in ids:
            c = [x for x in self.new_commands(did) if x.get("name") == "update"][0]
            self.assertEqual(c["params"], {"v": 2})
            self.assertEqual(set(c), {"id", "name", "params", "expires_at"})
        self.fleet.check()

    def test_command_by_ids(self):
        ids = [self.fleet.devs[i].id for i in (0, 1, 7, 32, 33, 101, 150, 199)]
        js = self.start_job("commands", {"target": {"ids": ids}, "name": "ping"})
        self.assertEqual(js["total"], len(ids))
        self.wait_job(js["id"], 15)
        self.check_command_job(js["id"], ids, "ping", page=3)
        self.fleet.check()

    def test_twin_patch_by_tag(self):
        ids = self.site["b"]
        js = self.start_job("twin", {"target": {"tag": "site=b"},
                                     "patch": {"fw": {"channel": "beta"}, "rate": 10}})
        self.assertEqual(js["total"], 100)
        done = self.wait_job(js["id"], 15)
        self.assertEqual(done["counts"].get("applied", 0), 100, done["counts"])
        self.assertEqual(sum(done["counts"].values()), 100, done["counts"])
        rows, _ = self.job_devices(js["id"], 40)
        self.assertEqual(sorted(r["device"] for r in rows), sorted(ids))
        odd = [r for r in rows if r["status"] != "applied"]
        self.assertEqual(len(odd), 0, "GET /api/v1/jobs/%s says status done, counts %r, yet "
                         "%d of its %d device rows are not 'applied' (first: %r)"
                         % (js["id"], done["counts"], len(odd), len(rows), odd[:3]))

        def arrived():
            return all(any(m["state"].get("fw") == {"channel": "beta"} for m in
                           self.new_desired(did)) for did in ids)
        harness.wait_for(arrived, 10, msg="desired message at every site=b device")
        for did in ids:
            last = self.new_desired(did)[-1]
            tw = self.server.api("GET", "/api/v1/devices/%s/twin" % did)[1]
            self.assertEqual(last, {"version": tw["desired_version"], "state": tw["desired"]})
            self.assertEqual(tw["desired"]["fw"], {"channel": "beta"})
            self.assertEqual(tw["desired"]["rate"], 10)
        for did in self.site["a"]:
            self.assertEqual(self.new_desired(did), [], "site=a got a desired message")
            self.assertEqual(self.server.api("GET", "/api/v1/devices/%s/twin" % did)[1]
                             ["desired"], {})
        self.fleet.check()


class BulkAllTest(BulkMixin, harness.ServerTestCase):
    """A handful of devices (alone on their server): all:true, and a job
    that waits for an offline device."""

    def test_command_to_all(self):
        ids = ["all-%d" % i for i in range(6)]
        secrets = make_devices(self.server, [(d, {"site": "x"}) for d in ids], threads=6)
        devs = [Dev(d, secrets[d], fail=(d == "all-3")) for d in ids]
        fleet = Fleet(self.server.mqtt_port, devs, threads=2)
        self.addCleanup(fleet.stop)
        fleet.start()
        js = self.start_job("commands", {"target": {"all": True}, "name": "hello",
                                         "params": {"x": [1]}})
        self.assertEqual(js["total"], 6)
        done = self.wait_job(js["id"], 15)
        self.assertEqual(done["counts"], {"succeeded": 5, "failed": 1})
        rows, _ = self.job_devices(js["id"], 4)
        self.assertEqual(sorted((r["device"], r["status"]) for r in rows),
                         sorted((d, "failed" if d == "all-3" else "succeeded") for d in ids))
        for d in devs:
            self.assertEqual([(c["name"], c["params"]) for c in d.commands],
                             [("hello", {"x": [1]})])
        fleet.check()
        # A device offline at the time: the job waits for it (queued) and
        # completes once it connects.
        late = make_devices(self.server, [("all-late", None)])
        js = self.start_job("commands", {"target": {"ids": ["all-late", "all-0"]},
                                         "name": "later"})
        harness.wait_for(lambda: self.job(js["id"])["counts"].get("succeeded") == 1, 10,
                         msg="the online device's answer")
        time.sleep(0.3)
        j = self.job(js["id"])
        self.assertEqual((j["status"], j["counts"].get("queued")), ("running", 1), j)
        f2 = Fleet(self.server.mqtt_port, [Dev("all-late", late["all-late"], False)], threads=1)
        self.addCleanup(f2.stop)
        f2.start()
        done = self.wait_job(js["id"], 10)
        self.assertEqual(done["counts"], {"succeeded": 2})


class BulkRefusalTest(BulkMixin, harness.ServerTestCase):
    """Bad targets and bodies: nothing is started."""

    def test_bad_targets(self):
        make_devices(self.server, [("bt-1", {"site": "q"}), ("bt-2", {"site": "q"})])
        bad = [
            None,
            "site=q",
            [],
            {},
            {"ids": []},
            {"ids": "bt-1"},
            {"ids": [1]},
            {"ids": ["bad id"]},
            {"ids": ["bt-1"], "tag": "site=q"},
            {"tag": "site=q", "all": True},
            {"ids": ["bt-1"], "all": True},
            {"tag": "site"},
            {"tag": "=q"},
            {"tag": 5},
            {"all": False},
            {"all": "yes"},
        ]
        for kind, extra in (("commands", {"name": "x"}), ("twin", {"patch": {"a": 1}})):
            for target in bad:
                body = dict(extra)
                if target is not None:
                    body["target"] = target
                st, js = self.post_bulk(kind, body)
                self.assertError(st, js, 400, "bad_request")
            st, js = self.post_bulk(kind, dict(extra, target={"ids": ["bt-1", "nope-404"]}))
            self.assertError(st, js, 404, "not_found")
            st, js = self.post_bulk(kind, dict(extra, target={"tag": "site=nowhere"}))
            self.assertError(st, js, 404, "not_found")
            st, js = self.post_bulk(kind, dict(extra, target={"tag": "nokey=q"}))
            self.assertError(st, js, 404, "not_found")
        # Command and patch validation apply to bulk too.
        for body in ({"target": {"all": True}, "name": "bad name"},
                     {"target": {"all": True}, "name": "x", "params": [1]},
                     {"target": {"all": True}, "name": "x", "timeout_s": 0},
                     {"target": {"all": True}}):
            st, js = self.post_bulk("commands", body)
            self.assertError(st, js, 400, "bad_request")
        for body in ({"target": {"all": True}}, {"target": {"all": True}, "patch": [1]},
                     {"target": {"all": True}, "patch": "x"}):
            st, js = self.post_bulk("twin", body)
            self.assertError(st, js, 400, "bad_request")
        for raw in ("[1]", "{nope"):
            for kind in ("commands", "twin"):
                st, js = self.post_bulk(kind, raw)
                self.assertError(st, js, 400, "bad_request")
        # Nothing was started: no device got a command or a desired change.
        for d in ("bt-1", "bt-2"):
            self.assertEqual(self.server.api("GET", "/api/v1/devices/%s/commands" % d)[1]
                             ["commands"], [])
            self.assertEqual(self.server.api("GET", "/api/v1/devices/%s/twin" % d)[1]
                             ["desired_version"], 0)
        st, js = self.server.api("GET", "/api/v1/jobs/job_000000000000000000000000")
        self.assertError(st, js, 404, "not_found")


if __name__ == "__main__":
    harness.main()
