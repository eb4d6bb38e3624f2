"""Abuse and robustness limits of the MQTT broker (issue 5), each against
the real droverd with an explicit small-limits configuration:

- memory stays bounded before authentication: connections that send a
  non-CONNECT first packet, a CONNECT declaring 256 MB, or that trickle a
  CONNECT, or send nothing, are closed and cost (almost) nothing;
- a client subscribing 100,000 times gets failure codes past
  max_subscriptions, memory stays bounded;
- a QoS 2 flood without PUBREL past receive_maximum is disconnected (0x93);
- a PUBLISH flood past publish_rate is throttled (and counted);
- two clients fighting over one client id are stopped by takeover_limit;
- a stalled subscriber's queue is capped (max_queued, max_queued_bytes, the
  1 MiB output buffer cap for QoS 0) and the drops are counted;
and in every case another client's QoS 1 round trips keep working.

droverd's memory is read from /proc/<pid>/status (VmRSS). The server is an
ASan build; its quarantine of freed memory is cut to 4 MB here (see
SmallQuarantineDroverd) so that VmRSS shows what the server holds, not
what it freed. The bounds are generous against allocator noise but far
below what an unbounded buffer would cost (a 256 MB declared packet,
100,000 subscriptions, megabytes of queued payload).
"""

import os
import re
import socket
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import mqttraw as R  # noqa: E402
from harness import HOST  # noqa: E402

PUBLISH_RATE = 200
PUBLISH_BURST = 50
TAKEOVER_LIMIT = 5
MAX_SUBSCRIPTIONS = 64
MAX_QUEUED = 100
MAX_QUEUED_BYTES = 65536
RECEIVE_MAXIMUM = 16
CONNECT_TIMEOUT = 2
MAX_INFLIGHT = 32  # the default

LIMITS = """
allow_anonymous = true
publish_rate = %d
publish_burst = %d
takeover_limit = %d
max_subscriptions = %d
max_queued = %d
max_queued_bytes = %d
receive_maximum = %d
connect_timeout = %d
""" % (PUBLISH_RATE, PUBLISH_BURST, TAKEOVER_LIMIT, MAX_SUBSCRIPTIONS, MAX_QUEUED,
       MAX_QUEUED_BYTES, RECEIVE_MAXIMUM, CONNECT_TIMEOUT)

MB = 1024 * 1024


def uniq(tag):
    return ("%s%s" % (tag, uuid.uuid4().hex))[:23]


def to_bytes(p):
    return bytes([(p.type << 4) | p.flags]) + R.varint(len(p.body)) + bytes(p.body)


class SmallQuarantineDroverd(harness.Droverd):
    """droverd under ASan with a 4 MB free-memory quarantine instead of the
    default 256 MB: freed blocks in the quarantine count in VmRSS, so with
    the default every megabyte that passes through the server (and is
    freed) would look like growth. Everything else is as in harness."""

    def env(self):
        e = super().env()
        e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"
        return e


class AbuseBase(harness.ServerTestCase):
    server_config = LIMITS

    @classmethod
    def setUpClass(cls):
        cls.server = SmallQuarantineDroverd(config=cls.server_config,
                                            extra_args=cls.server_args)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        # Let droverd see the last test's sockets (closed by its cleanups)
        # go before it is stopped; a stop while a server-closed connection
        # lingers is ShutdownLingerTest's subject, not these tests'.
        time.sleep(0.3)
        super().tearDownClass()

    # -- server state ----------------------------------------------------

    def rss(self):
        """droverd's resident set size in bytes."""
        with open("/proc/%d/status" % self.server.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/%d/status" % self.server.proc.pid)

    def metric(self, name):
        st, _, body = self.server.request("GET", "/metrics", token=None)
        self.assertEqual(st, 200)
        m = re.search(r"^%s(?:\{[^}]*\})? (\d+(?:\.\d+)?)$" % re.escape(name), body.decode(),
                      re.M)
        self.assertIsNotNone(m, "no %s in /metrics" % name)
        return float(m.group(1))

    def note(self, fmt, *args):
        """A measurement, written to the test log (margins at a glance)."""
        sys.stderr.write("    [%s] %s\n" % (self._testMethodName, fmt % args))

    # -- clients ---------------------------------------------------------

    def conn(self, client_id=None, version=R.V311, clean=True, keepalive=60, properties=None,
             rcvbuf=None):
        """A raw connection past a successful CONNACK, closed at the end."""
        c = R.Conn(HOST, self.server.mqtt_port, version=version)
        if rcvbuf:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.addCleanup(c.close)
        sp, rc, _ = c.do_connect(client_id or uniq("a"), keepalive=keepalive, clean=clean,
                                 properties=properties)
        self.assertEqual(rc, 0, "CONNACK 0x%02x" % rc)
        c.session_present = sp
        return c

    def raw(self, version=R.V311):
        c = R.Conn(HOST, self.server.mqtt_port, version=version)
        self.addCleanup(c.close)
        return c

    def witness(self):
        """A QoS 1 subscriber/publisher pair on their own topic."""
        t = "abuse/witness/" + uuid.uuid4().hex[:8]
        s = self.conn()
        self.assertEqual(s.do_subscribe([(t, 1)]), [1])
        p = self.conn()
        return {"sub": s, "pub": p, "topic": t, "n": 0, "lat": []}

    def round_trip(self, w, timeout=5.0):
        """One QoS 1 publish -> PUBACK -> delivery -> PUBACK; returns the
        latency until delivery."""
        w["n"] += 1
        n = w["n"]
        payload = b"alive-%d" % n
        t0 = time.monotonic()
        w["pub"].send(R.publish(w["topic"], payload, qos=1, packet_id=(n % 65535) + 1))
        deadline = t0 + timeout
        got = False
        while not got:
            p = w["sub"].read_type(R.PUBLISH, max(0.01, deadline - time.monotonic()))
            m = R.parse_publish(p, R.V311)
            w["sub"].send(R.puback(m["packet_id"]))
            got = m["payload"] == payload
        lat = time.monotonic() - t0
        p = w["pub"].read_type(R.PUBACK, max(0.01, deadline - time.monotonic()))
        self.assertEqual(R.parse_puback(p, R.V311)[0], (n % 65535) + 1)
        w["lat"].append(lat)
        return lat

    def keep_round_tripping(self, w, stop, errors):
        """Round trips every 50 ms until stop is set (run in a thread)."""
        try:
            while not stop.is_set():
                self.round_trip(w)
                stop.wait(0.05)
        except Exception as e:  # reported by the test
            errors.append(repr(e))


class AbuseTest(AbuseBase):

    # ---- before authentication -----------------------------------------

    def test_preauth_memory_bounded_and_closed(self):
        """Fifteen connections that send a non-CONNECT first packet or a
        CONNECT declaring 256 MB (a 4-byte FF FF FF 7F, or a 5-byte varint
        80 80 80 80 01) and then trickle a byte every 100 ms are each closed
        within 3 s, and droverd's RSS grows by less than 10 MB."""
        w = self.witness()
        self.round_trip(w)
        before = self.rss()
        heads = ([b"\xc0\x00"] * 3 + [R.publish("x/y", b"z")] * 2 +
                 [b"\x10\xff\xff\xff\x7f"] * 5 + [b"\x10\x80\x80\x80\x80\x01"] * 5)
        conns = [self.raw() for _ in heads]
        t0 = time.monotonic()
        for c, h in zip(conns, heads):
            c.try_send(h)
        open_ = set(range(len(conns)))
        closed_at = {}
        while open_ and time.monotonic() - t0 < 5.0:
            for i in list(open_):
                c = conns[i]
                if not c.try_send(b"\x00"):
                    closed_at[i] = time.monotonic() - t0
                    open_.discard(i)
                    continue
                closed, _ = c.wait_closed(0.0)
                if closed:
                    closed_at[i] = time.monotonic() - t0
                    open_.discard(i)
            time.sleep(0.1)
        self.assertEqual(open_, set(), "still open after 5 s: %s" % [heads[i].hex() for i in open_])
        slow = {heads[i].hex(): round(t, 2) for i, t in closed_at.items() if t > 3.0}
        self.assertEqual(slow, {}, "closed only after 3 s")
        grown = self.rss() - before
        self.note("RSS %+.1f MB", grown / MB)
        self.assertLess(grown, 10 * MB, "RSS grew by %.1f MB" % (grown / MB))
        self.round_trip(w)

    def test_preauth_silent_connection_closed(self):
        """connect_timeout (2 s): a connection that sends nothing is closed
        after about 2 s (not before 1.5 s, by 4 s)."""
        c = self.raw()
        t0 = time.monotonic()
        closed, got = c.wait_closed(5.0)
        el = time.monotonic() - t0
        self.assertTrue(closed, "a silent connection is still open after 5 s")
        self.assertEqual(got, [], "the server sent %r" % got)
        self.assertGreater(el, 1.5)
        self.assertLess(el, 4.0)

    def test_preauth_trickled_connect_closed(self):
        """connect_timeout (docs/config.md: "seconds a new connection has
        to send CONNECT"): fifteen connections each declaring a CONNECT of
        200,000 bytes (allowed by max_packet_size) and trickling 1 byte
        every 100 ms are closed within connect_timeout + 2 s; RSS grows by
        less than 10 MB."""
        before = self.rss()
        conns = [self.raw() for _ in range(15)]
        hdr = b"\x10" + R.varint(200000) + R.mstr("MQTT") + b"\x04\x02\x00\x3c"
        for c in conns:
            c.try_send(hdr)
        t0 = time.monotonic()
        open_ = set(range(len(conns)))
        while open_ and time.monotonic() - t0 < CONNECT_TIMEOUT + 4:
            for i in list(open_):
                if not conns[i].try_send(b"a") or conns[i].wait_closed(0.0)[0]:
                    open_.discard(i)
            time.sleep(0.1)
        el = time.monotonic() - t0
        grown = self.rss() - before
        self.note("RSS %+.1f MB", grown / MB)
        self.assertLess(grown, 10 * MB, "RSS grew by %.1f MB" % (grown / MB))
        self.assertEqual(len(open_), 0,
                         "%d of 15 connections trickling a CONNECT were still open %.1f s "
                         "after they connected (connect_timeout %d s): the timeout is reset "
                         "by every byte instead of bounding the time to CONNECT"
                         % (len(open_), el, CONNECT_TIMEOUT))
        self.assertLess(el, CONNECT_TIMEOUT + 2.5)

    def test_partial_packet_does_not_keep_alive(self):
        """[MQTT-3.1.2-24] (3.1.1): the keepalive counts Control Packets: a
        client with keepalive 1 that trickles a PUBLISH one byte every
        100 ms never completes a packet and must be closed after 1.5 s."""
        c = self.conn(keepalive=1)
        body = R.publish("abuse/slow", b"x" * 500)
        t0 = time.monotonic()
        i = 0
        closed = False
        while time.monotonic() - t0 < 6.0:
            if i < len(body) and not c.try_send(body[i:i + 1]):
                closed = True
                break
            i += 1
            if c.wait_closed(0.1)[0]:
                closed = True
                break
        el = time.monotonic() - t0
        self.assertTrue(closed, "a partial packet trickled for %.1f s kept a keepalive-1 "
                        "connection open (the keepalive is reset by every byte)" % el)
        self.assertLess(el, 3.5)

    # ---- subscriptions ---------------------------------------------------

    def test_subscribe_100000_times(self):
        """max_subscriptions 64: 100,000 distinct filters (100 SUBSCRIBE
        packets of 1000) get 0x97 past the 64th (5.0), the subscription
        count stays at 64, RSS grows by less than 20 MB, and another
        client's QoS 1 round trips keep working during the flood."""
        w = self.witness()
        self.round_trip(w)
        subs_before = self.metric("drover_mqtt_subscriptions")
        before = self.rss()
        c = self.conn(version=R.V5)
        stop = threading.Event()
        errors = []
        rt = threading.Thread(target=self.keep_round_tripping, args=(w, stop, errors))
        rt.start()
        granted = 0
        refused = 0
        other = 0
        base = "abuse/subflood/" + uuid.uuid4().hex[:8]
        try:
            for k in range(100):
                filters = [("%s/%d" % (base, k * 1000 + i), 1) for i in range(1000)]
                codes = c.do_subscribe(filters, packet_id=k + 1, timeout=10)
                self.assertEqual(len(codes), 1000)
                granted += sum(1 for x in codes if x == 1)
                refused += sum(1 for x in codes if x == 0x97)
                other += sum(1 for x in codes if x not in (1, 0x97))
        finally:
            stop.set()
            rt.join(10)
        self.assertEqual(errors, [], "the other client's round trips failed")
        self.assertGreater(len(w["lat"]), 3, "too few round trips during the flood")
        self.assertEqual((granted, refused, other),
                         (MAX_SUBSCRIPTIONS, 100000 - MAX_SUBSCRIPTIONS, 0))
        grown = self.rss() - before
        self.note("RSS %+.1f MB", grown / MB)
        self.assertLess(grown, 20 * MB, "RSS grew by %.1f MB" % (grown / MB))
        self.assertLessEqual(self.metric("drover_mqtt_subscriptions") - subs_before,
                             MAX_SUBSCRIPTIONS + 1)
        # Still usable: a granted filter delivers.
        p = self.conn(version=R.V5)
        p.send(R.publish("%s/0" % base, b"ok", version=R.V5))
        m = R.parse_publish(c.read_type(R.PUBLISH, 5), R.V5)
        self.assertEqual(m["payload"], b"ok")

    def test_subscribe_over_limit_311(self):
        """max_subscriptions 64 on 3.1.1: the filters past it get 0x80."""
        c = self.conn()
        base = "abuse/sub311/" + uuid.uuid4().hex[:8]
        codes = c.do_subscribe([("%s/%d" % (base, i), 0) for i in range(100)])
        self.assertEqual(codes, [0] * MAX_SUBSCRIPTIONS + [0x80] * (100 - MAX_SUBSCRIPTIONS))

    # ---- QoS 2 flood -------------------------------------------------------

    def test_qos2_flood_without_pubrel(self):
        """receive_maximum 16: a 5.0 client sending QoS 2 PUBLISHes and
        never PUBREL gets 16 PUBRECs, then DISCONNECT 0x93 and the close;
        a 3.1.1 client is closed likewise; the other client keeps flowing."""
        w = self.witness()
        for v in (R.V5, R.V311):
            c = self.conn(version=v)
            data = b"".join(R.publish("abuse/q2/" + uuid.uuid4().hex[:6], b"x", qos=2,
                                      packet_id=i + 1, version=v) for i in range(1000))
            c.try_send(data)
            closed, got = c.wait_closed(5.0)
            self.assertTrue(closed, "QoS 2 flood v%d: still connected" % v)
            recs = [p for p in got if p.type == R.PUBREC]
            rest = [to_bytes(p) for p in got if p.type != R.PUBREC]
            self.assertEqual(len(recs), RECEIVE_MAXIMUM, "PUBRECs before the close (v%d)" % v)
            self.assertEqual(rest, [b"\xe0\x01\x93"] if v == R.V5 else [],
                             "v%d: what followed the PUBRECs" % v)
            self.round_trip(w)

    # ---- PUBLISH flood -----------------------------------------------------

    def test_publish_flood_throttled(self):
        """publish_rate 200/s, burst 50: a client sending 5000 QoS 0
        PUBLISHes as fast as it can reaches a subscriber at about 200/s,
        not faster; drover_mqtt_throttled_total grows; another client's
        QoS 1 round trips keep a normal latency meanwhile."""
        t = "abuse/flood/" + uuid.uuid4().hex[:8]
        s = self.conn()
        self.assertEqual(s.do_subscribe([(t, 0)]), [0])
        w = self.witness()
        self.round_trip(w)
        throttled_before = self.metric("drover_mqtt_throttled_total")
        flooder = self.conn()
        data = b"".join(R.publish(t, b"f%04d" % i) for i in range(5000))
        sender = threading.Thread(target=flooder.try_send, args=(data,), daemon=True)
        stop = threading.Event()
        errors = []
        rt = threading.Thread(target=self.keep_round_tripping, args=(w, stop, errors))
        t0 = time.monotonic()
        sender.start()
        rt.start()
        got = 0
        window = 3.0
        try:
            while time.monotonic() - t0 < window:
                try:
                    s.read(max(0.01, window - (time.monotonic() - t0)))
                    got += 1
                except R.Timeout:
                    break
        finally:
            stop.set()
            rt.join(10)
        el = time.monotonic() - t0
        flooder.abort()
        self.assertEqual(errors, [], "the other client's round trips failed")
        ceiling = PUBLISH_BURST + PUBLISH_RATE * el * 1.25 + 20
        self.assertLess(got, ceiling, "%d messages in %.1f s: faster than publish_rate %d/s"
                        % (got, el, PUBLISH_RATE))
        self.assertGreater(got, PUBLISH_RATE * el * 0.5,
                           "%d messages in %.1f s: throttled far below publish_rate" % (got, el))
        self.assertGreater(self.metric("drover_mqtt_throttled_total"), throttled_before)
        lat = sorted(w["lat"])
        self.assertGreater(len(lat), 10)
        self.assertLess(lat[len(lat) // 2], 0.2, "median round trip %.3f s" % lat[len(lat) // 2])
        self.assertLess(lat[-1], 1.0, "slowest round trip %.3f s" % lat[-1])

    # ---- takeover storm ----------------------------------------------------

    def test_takeover_storm(self):
        """takeover_limit 5: two 5.0 clients with one client id reconnect as
        soon as they are kicked; after 5 takeovers in the minute further
        attempts get CONNACK 0x89 (20 03 00 89 00), the holder stays
        connected, and other clients are unaffected."""
        cid = uniq("storm")
        w = self.witness()
        stop = threading.Event()
        lock = threading.Lock()
        stats = {"ok": 0, "refused": [], "other": []}

        def fighter():
            while not stop.is_set():
                c = R.Conn(HOST, self.server.mqtt_port, version=R.V5)
                try:
                    c.send(R.connect(cid, version=R.V5))
                    p = c.read(5.0)
                    sp, rc, _ = R.parse_connack(p, R.V5)
                    with lock:
                        if rc == 0:
                            stats["ok"] += 1
                        elif rc == 0x89:
                            stats["refused"].append(to_bytes(p))
                        else:
                            stats["other"].append(to_bytes(p))
                    if rc == 0:
                        while not stop.is_set():
                            closed, _ = c.wait_closed(0.1)
                            if closed:
                                break
                    else:
                        stop.wait(0.05)
                except (R.Closed, R.Timeout, OSError) as e:
                    with lock:
                        stats["other"].append(repr(e))
                finally:
                    c.close()

        threads = [threading.Thread(target=fighter) for _ in range(2)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with lock:
                if len(stats["refused"]) >= 10:
                    break
            time.sleep(0.05)
        # The holder is the one connection left: it stays up.
        time.sleep(0.3)
        with lock:
            ok_at_end = stats["ok"]
        stop.set()
        for th in threads:
            th.join(10)
        self.assertEqual(stats["other"], [])
        self.assertGreaterEqual(len(stats["refused"]), 10, "the storm was not stopped: %r" % stats)
        self.assertEqual(set(stats["refused"]), {b"\x20\x03\x00\x89\x00"})
        self.assertEqual(ok_at_end, 1 + TAKEOVER_LIMIT,
                         "successful connects: 1 + %d takeovers expected" % TAKEOVER_LIMIT)
        self.round_trip(w)
        # Another client id is not affected.
        other = uniq("calm")
        self.conn(other)
        self.conn(other)

    def test_takeover_limit_311_code(self):
        """takeover_limit on 3.1.1: past the limit, CONNACK return code 3
        (20 02 00 03); the current holder keeps working."""
        cid = uniq("t311")
        holder = self.conn(cid)
        for _ in range(TAKEOVER_LIMIT):
            holder = self.conn(cid)
        c = self.raw()
        c.send(R.connect(cid))
        closed, got = c.wait_closed(5.0)
        self.assertTrue(closed)
        self.assertEqual([to_bytes(p) for p in got], [b"\x20\x02\x00\x03"])
        holder.do_ping()

    def test_takeover_ban_lasts_without_holder(self):
        """docs/config.md takeover_limit: "past it that id is refused (0x89
        server busy) for a minute": once banned, the id is refused even
        after the holder has left."""
        cid = uniq("ban")
        holder = self.conn(cid, version=R.V5)
        for _ in range(TAKEOVER_LIMIT):
            holder = self.conn(cid, version=R.V5)
        c = self.raw(R.V5)
        self.assertEqual(c.do_connect(cid)[1], 0x89)
        holder.do_disconnect()
        time.sleep(0.2)
        c = self.raw(R.V5)
        rc = c.do_connect(cid)[1]
        self.assertEqual(rc, 0x89, "a banned client id connected again (CONNACK 0x%02x) "
                         "right after its holder left, within the minute" % rc)

    # ---- slow / stalled subscribers ----------------------------------------

    def test_stalled_qos1_subscriber_bounded(self):
        """A subscriber (persistent session, QoS 1) that never reads its
        socket: 320 messages of 1 KiB from 8 publishers; it is sent at most
        max_inflight (32) and queues at most max_queued_bytes (64 KiB = 64
        messages); the rest are dropped and counted in
        drover_mqtt_messages_dropped_total; RSS grows by less than 20 MB;
        the other client keeps flowing."""
        t = "abuse/stall/" + uuid.uuid4().hex[:8]
        s = self.conn(uniq("stall"), clean=False, rcvbuf=4096)
        self.assertEqual(s.do_subscribe([(t, 1)]), [1])
        w = self.witness()
        dropped_before = self.metric("drover_mqtt_messages_dropped_total")
        before = self.rss()
        pubs = [self.conn() for _ in range(8)]
        n = 0
        for p in pubs:
            for i in range(40):
                n += 1
                p.send(R.publish(t, (b"%04d" % n) + b"P" * 1020, qos=1, packet_id=i + 1))
        for p in pubs:
            for i in range(40):
                self.assertEqual(R.parse_puback(p.read_type(R.PUBACK, 10), R.V311)[0], i + 1)
        self.round_trip(w)
        grown = self.rss() - before
        self.note("RSS %+.1f MB", grown / MB)
        dropped = self.metric("drover_mqtt_messages_dropped_total") - dropped_before
        self.assertLess(grown, 20 * MB, "RSS grew by %.1f MB" % (grown / MB))
        kept = MAX_INFLIGHT + MAX_QUEUED_BYTES // 1024
        self.assertGreaterEqual(dropped, n - kept, "drops counted: %d" % dropped)
        # Now the subscriber reads and acknowledges: it gets what was kept.
        got = []
        while True:
            try:
                p = s.read_type(R.PUBLISH, 1.0)
            except R.Timeout:
                break
            m = R.parse_publish(p, R.V311)
            got.append(m["payload"][:4])
            s.send(R.puback(m["packet_id"]))
        self.assertLessEqual(len(got), kept, "more than max_inflight + max_queued_bytes kept")
        self.assertGreaterEqual(len(got), MAX_INFLIGHT)
        self.assertEqual(len(set(got)), len(got), "duplicates")

    def test_offline_queue_capped_by_count(self):
        """max_queued 100: an offline persistent session gets at most 100
        queued messages (small payloads, under max_queued_bytes); the rest
        are dropped and counted."""
        t = "abuse/offline/" + uuid.uuid4().hex[:8]
        cid = uniq("off")
        s = self.conn(cid, clean=False)
        self.assertEqual(s.do_subscribe([(t, 1)]), [1])
        s.do_disconnect()
        dropped_before = self.metric("drover_mqtt_messages_dropped_total")
        pubs = [self.conn() for _ in range(4)]
        for p in pubs:
            for i in range(40):
                p.send(R.publish(t, b"m", qos=1, packet_id=i + 1))
        for p in pubs:
            for i in range(40):
                p.read_type(R.PUBACK, 10)
        dropped = self.metric("drover_mqtt_messages_dropped_total") - dropped_before
        self.assertGreaterEqual(dropped, 160 - MAX_QUEUED)
        s = self.conn(cid, clean=False)
        self.assertEqual(s.session_present, 1)
        got = 0
        while True:
            try:
                p = s.read_type(R.PUBLISH, 1.0)
            except R.Timeout:
                break
            got += 1
            s.send(R.puback(R.parse_publish(p, R.V311)["packet_id"]))
        self.assertEqual(got, MAX_QUEUED)


class StalledReaderTest(AbuseBase):
    """A QoS 0 subscriber that stops reading: its output buffer is capped at
    1 MiB and further messages to it are dropped (no publish_rate here, so
    one publisher can push megabytes quickly)."""

    server_config = LIMITS.replace("publish_rate = %d" % PUBLISH_RATE, "publish_rate = 0")

    def test_stalled_qos0_subscriber_bounded(self):
        """8000 QoS 0 messages of 1 KiB (8 MB) to a subscriber that never
        reads: RSS grows by less than 20 MB, drops are counted, the other
        client keeps flowing."""
        t = "abuse/stall0/" + uuid.uuid4().hex[:8]
        s = self.conn(rcvbuf=4096)
        self.assertEqual(s.do_subscribe([(t, 0)]), [0])
        w = self.witness()
        self.round_trip(w)
        dropped_before = self.metric("drover_mqtt_messages_dropped_total")
        before = self.rss()
        p = self.conn()
        payload = b"Z" * 1024
        for k in range(8):
            p.send(b"".join(R.publish(t, payload) for _ in range(1000)))
            self.round_trip(w)
        p.do_ping(10)
        self.round_trip(w)
        grown = self.rss() - before
        self.note("RSS %+.1f MB", grown / MB)
        dropped = self.metric("drover_mqtt_messages_dropped_total") - dropped_before
        self.assertGreater(dropped, 1000, "drops counted: %d" % dropped)
        self.assertLess(grown, 20 * MB, "RSS grew by %.1f MB" % (grown / MB))
        # Let the server see the stalled socket go before the class stops
        # it (a stop in the middle of that close is the separate
        # ShutdownLingerTest below).
        conns = self.metric("drover_mqtt_connections")
        s.close()
        harness.wait_for(lambda: self.metric("drover_mqtt_connections") < conns, 5,
                         msg="the stalled subscriber's close")
        time.sleep(0.5)


class ShutdownLingerTest(unittest.TestCase):
    """After a server-side close (a DISCONNECT with a reason, a refusing
    CONNACK, a stalled reader) droverd keeps the socket up to 2 s to let the
    last bytes out. A SIGTERM in that window must still end with exit code
    0 and a clean sanitizer report."""

    def server(self):
        d = SmallQuarantineDroverd(config="allow_anonymous = true\n")
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def test_sigterm_while_disconnect_lingers(self):
        """A 5.0 client gets DISCONNECT 0x81 (reserved flags on PINGREQ) and
        keeps its socket open; droverd is stopped 0.2 s later."""
        d = self.server()
        c = R.Conn(HOST, d.mqtt_port, version=R.V5)
        self.addCleanup(c.close)
        self.assertEqual(c.do_connect(uniq("lg"))[1], 0)
        c.send(b"\xc1\x00")
        self.assertEqual(to_bytes(c.read(5)), b"\xe0\x01\x81")
        time.sleep(0.2)
        d.stop()

    def test_sigterm_while_refused_connack_lingers(self):
        """A CONNECT refused with CONNACK 0x8C (5.0 AUTH method), the client
        keeps its socket open; droverd is stopped 0.2 s later."""
        d = self.server()
        c = R.Conn(HOST, d.mqtt_port, version=R.V5)
        self.addCleanup(c.close)
        c.send(R.connect(uniq("lg"), version=R.V5, properties=[(0x15, "SCRAM")]))
        self.assertEqual(to_bytes(c.read(5)), b"\x20\x03\x00\x8c\x00")
        time.sleep(0.2)
        d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
