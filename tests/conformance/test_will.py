"""Conformance: Will messages (published on an unclean end, not after
DISCONNECT, 5.0 DISCONNECT 0x04, Will Retain, Will QoS, Will Delay
Interval and its cancellation, will properties, takeover)."""

import time
import unittest

import packets as P
from packets import V311, V5, publish, puback


class WillTest(P.ConfTestCase):

    def watcher(self, topic, version=V311, qos=0):
        s = self.client(version=version)
        self.sub(s, [(topic, qos)])
        return s

    def test_will_on_socket_close_311(self):
        """[MQTT-3.1.2-8] [MQTT-3.1.2-16] (3.1.1): a connection closed
        without DISCONNECT publishes its will, non-retained: the subscriber
        gets exactly 30 .. topic payload."""
        t = self.topic("w")
        s = self.watcher(t)
        c = self.client(will=dict(topic=t, payload=b"gone", qos=0))
        c.close()
        self.expect(s, publish(t, b"gone"), "will message")

    def test_will_on_abort_v5(self):
        """[MQTT-3.1.2-8] [MQTT-3.1.2-14] (5.0): a reset connection publishes
        the will (5.0 form to a 5.0 subscriber)."""
        t = self.topic("w")
        s = self.watcher(t, V5)
        c = self.client(version=V5, will=dict(topic=t, payload=b"reset"))
        c.abort()
        self.expect(s, publish(t, b"reset", version=V5), "will message")

    def test_will_qos1(self):
        """[MQTT-3.1.2-8] (3.1.1): a QoS 1 will reaches a QoS 1 subscriber
        as 32 .. packet id; to a QoS 0 subscriber as QoS 0."""
        t = self.topic("w1")
        s1 = self.watcher(t, qos=1)
        s0 = self.watcher(t, qos=0)
        c = self.client(will=dict(topic=t, payload=b"q1", qos=1))
        c.close()
        pid = self.expect_publish(s1, t, b"q1", qos=1, what="QoS 1 will")
        s1.send(puback(pid))
        self.expect(s0, publish(t, b"q1"), "QoS 0 copy")

    def test_no_will_after_disconnect(self):
        """[MQTT-3.1.2-10] (3.1.1) / [MQTT-3.14.4-3] [MQTT-3.1.2-10] (5.0):
        after DISCONNECT (5.0 reason 0x00) the will is discarded."""
        for v in (V311, V5):
            t = self.topic("nw", str(v))
            s = self.watcher(t, v)
            c = self.client(version=v, will=dict(topic=t, payload=b"must not"))
            c.send(P.disconnect(v))
            self.expect_closed(c, {b""})
            self.expect_silence(s, 0.5, "no will after DISCONNECT (v%d)" % v)

    def test_disconnect_with_will_message(self):
        """5.0 §3.14.2.1 (reason 0x04 Disconnect with Will Message)
        [MQTT-3.1.2-8] (5.0): DISCONNECT 0x04 publishes the will."""
        t = self.topic("w4")
        s = self.watcher(t, V5)
        c = self.client(version=V5, will=dict(topic=t, payload=b"by request"))
        c.send(P.disconnect(V5, 0x04))
        self.expect(s, publish(t, b"by request", version=V5), "will after DISCONNECT 0x04")

    def test_will_retain(self):
        """[MQTT-3.1.2-17] (3.1.1) / [MQTT-3.1.2-15] (5.0): a will with Will
        Retain 1 is published as a retained message: a live subscriber
        gets RETAIN 0 [MQTT-3.3.1-9] (3.1.1), a later one RETAIN 1."""
        t = self.topic("wr")
        s = self.watcher(t)
        c = self.client(will=dict(topic=t, payload=b"last words", retain=True))
        c.close()
        self.expect(s, publish(t, b"last words"), "live copy")
        later = self.client()
        self.sub(later, [(t, 0)])
        self.expect(later, publish(t, b"last words", retain=True), "retained will")
        p = self.client()
        p.send(publish(t, b"", retain=True))

    def test_will_on_protocol_error(self):
        """[MQTT-3.1.2-8] (3.1.1 and 5.0): a connection the server closes
        for a protocol violation publishes its will."""
        for v in (V311, V5):
            t = self.topic("pe", str(v))
            s = self.watcher(t)
            c = self.client(version=v, will=dict(topic=t, payload=b"broken"))
            c.send(b"\x00\x00")  # reserved packet type 0
            c.wait_closed(3.0)
            self.expect(s, publish(t, b"broken"), "will after a protocol error (v%d)" % v)

    def test_will_on_keepalive_timeout(self):
        """[MQTT-3.1.2-8] [MQTT-3.1.2-24] (3.1.1): a client silent past 1.5 x
        its keepalive is disconnected and its will published."""
        t = self.topic("ka")
        s = self.watcher(t)
        self.client(keepalive=1, will=dict(topic=t, payload=b"timed out"))
        self.expect(s, publish(t, b"timed out"), "will after keepalive", timeout=4.0)

    def test_will_on_takeover(self):
        """[MQTT-3.1.4-2] (3.1.1) / [MQTT-3.1.4-3] (5.0): when a new
        connection takes the client id over, the old connection's will is
        published."""
        t = self.topic("to")
        s = self.watcher(t)
        cid = self.uid()
        old = self.client(cid, will=dict(topic=t, payload=b"taken over"))
        self.client(cid)
        old.wait_closed(3.0)
        self.expect(s, publish(t, b"taken over"), "will of the old connection")

    def test_will_properties_forwarded(self):
        """[MQTT-3.1.3-10] (5.0): the will's properties (Content Type, User
        Properties, Payload Format Indicator, Correlation Data) are sent
        with it; the Will Delay Interval is not."""
        t = self.topic("wp")
        s = self.watcher(t, V5)
        wp = [(P.R.PROP_PAYLOAD_FORMAT, 1), (P.R.PROP_CONTENT_TYPE, "text/plain"),
              (P.PROP_CORRELATION_DATA, b"\x01\x02"), (P.R.PROP_USER_PROPERTY, ("a", "1")),
              (P.R.PROP_USER_PROPERTY, ("a", "2"))]
        c = self.client(version=V5, will=dict(topic=t, payload=b"props", properties=wp))
        c.abort()
        pk = self.read_packet(s, what="will")
        m = P.R.parse_publish(pk, V5)
        self.assertEqual((m["topic"], m["payload"]), (t, b"props"))
        self.assertEqual(P.props_list(pk), [(1, 1), (3, b"text/plain"), (9, b"\x01\x02"),
                                            (0x26, (b"a", b"1")), (0x26, (b"a", b"2"))])

    # ---- Will Delay Interval (5.0) ---------------------------------------

    def test_will_delay_interval(self):
        """[MQTT-3.1.2-8] (5.0) §3.1.3.2.2: with Will Delay Interval 2 s (and
        a longer session), the will goes out about 2 s after the
        connection ends, not at once."""
        t = self.topic("wd")
        s = self.watcher(t, V5)
        c = self.client(version=V5, clean=False, properties=[(P.R.PROP_SESSION_EXPIRY, 30)],
                        will=dict(topic=t, payload=b"delayed",
                                  properties=[(P.R.PROP_WILL_DELAY, 2)]))
        t0 = time.monotonic()
        c.abort()
        self.expect_silence(s, 1.3, "no will before the delay")
        self.expect(s, publish(t, b"delayed", version=V5), "will after the delay", timeout=3.0)
        self.assertGreaterEqual(time.monotonic() - t0, 1.8)

    def test_will_delay_cancelled_by_reconnect(self):
        """[MQTT-3.1.3-9] (5.0): a new connection for the session within
        the Will Delay Interval means the will is never sent."""
        t = self.topic("wc")
        s = self.watcher(t, V5)
        cid = self.uid()
        props = [(P.R.PROP_SESSION_EXPIRY, 30)]
        will = dict(topic=t, payload=b"cancelled", properties=[(P.R.PROP_WILL_DELAY, 2)])
        c = self.client(cid, version=V5, clean=False, properties=props, will=will)
        c.abort()
        time.sleep(0.5)
        c2 = self.client(cid, version=V5, clean=False, properties=props, expect_present=True)
        self.expect_silence(s, 2.8, "no will after reconnecting within the delay")
        c2.send(P.disconnect(V5))

    def test_will_delay_capped_by_session_end(self):
        """[MQTT-3.1.2-8] (5.0): the will is sent when the Will Delay
        Interval passes or the session ends, whichever comes first: session
        expiry 1 s, will delay 60 s -> the will within ~2 s."""
        t = self.topic("we")
        s = self.watcher(t, V5)
        c = self.client(version=V5, clean=False, properties=[(P.R.PROP_SESSION_EXPIRY, 1)],
                        will=dict(topic=t, payload=b"session over",
                                  properties=[(P.R.PROP_WILL_DELAY, 60)]))
        c.abort()
        self.expect(s, publish(t, b"session over", version=V5), "will at session end",
                    timeout=4.0)

    def test_will_delay_without_session_is_immediate(self):
        """[MQTT-3.1.2-8] (5.0): with Session Expiry 0 the session ends with
        the connection, so a delayed will goes out at once."""
        t = self.topic("wi")
        s = self.watcher(t, V5)
        c = self.client(version=V5, will=dict(topic=t, payload=b"now",
                                              properties=[(P.R.PROP_WILL_DELAY, 30)]))
        c.abort()
        self.expect(s, publish(t, b"now", version=V5), "immediate will", timeout=1.5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
