"""Conformance: sessions (clean vs persistent, Session Present, queued
messages and redelivery with DUP, 5.0 Session Expiry, takeover)."""

import time
import unittest

import packets as P
from packets import PUBACK, V311, V5, publish, puback

EXPIRY = P.R.PROP_SESSION_EXPIRY


class SessionsTest(P.ConfTestCase):

    def publisher(self, version=V311):
        return self.client(version=version)

    def send_q1(self, p, topic, payloads, first_id=1):
        for i, pl in enumerate(payloads):
            p.send(publish(topic, pl, qos=1, packet_id=first_id + i, version=p.version))
            self.expect_ack(p, PUBACK, first_id + i)

    # ---- clean vs persistent -----------------------------------------

    def test_persistent_session_311(self):
        """[MQTT-3.1.2-4] [MQTT-3.1.2-5] (3.1.1): with Clean Session 0 the
        subscription survives the connection, QoS 1 messages published
        meanwhile are queued and delivered, in order, on reconnect
        (Session Present 1)."""
        t = self.topic("p")
        cid = self.uid()
        s = self.client(cid, clean=False)
        self.sub(s, [(t, 1)])
        s.do_disconnect()
        p = self.publisher()
        self.send_q1(p, t, [b"a", b"b", b"c"])
        s = self.client(cid, clean=False, expect_present=True)
        for pl in (b"a", b"b", b"c"):
            pid = self.expect_publish(s, t, pl, qos=1, what="queued %r" % pl)
            s.send(puback(pid))
        # The subscription itself survived: live delivery without SUBSCRIBE.
        self.send_q1(p, t, [b"live"], first_id=10)
        pid = self.expect_publish(s, t, b"live", qos=1)
        s.send(puback(pid))

    def test_clean_session_discards(self):
        """[MQTT-3.1.2-6] (3.1.1) / [MQTT-3.1.2-4] (5.0): Clean Session 1
        discards the previous session: no Session Present, no
        subscription, no queued messages; and the session ends with the
        connection [MQTT-3.1.2-6] (3.1.1)."""
        t = self.topic("c")
        cid = self.uid()
        s = self.client(cid, clean=False)
        self.sub(s, [(t, 1)])
        s.do_disconnect()
        p = self.publisher()
        self.send_q1(p, t, [b"queued"])
        s = self.client(cid, clean=True, expect_present=False)
        self.expect_silence(s, 0.4, "queued messages discarded")
        self.send_q1(p, t, [b"after"], first_id=5)
        self.expect_silence(s, 0.3, "subscription discarded")
        s.do_disconnect()
        s = self.client(cid, clean=False, expect_present=False)

    def test_qos0_subscription_not_queued_but_kept(self):
        """[MQTT-3.1.2-5] (3.1.1): a QoS 0 subscription is part of the
        session; messages for it while offline may be dropped, live ones
        arrive after reconnect without a new SUBSCRIBE."""
        t = self.topic("q0")
        cid = self.uid()
        s = self.client(cid, clean=False)
        self.sub(s, [(t, 0)])
        s.do_disconnect()
        s = self.client(cid, clean=False, expect_present=True)
        p = self.publisher()
        p.send(publish(t, b"live"))
        self.expect(s, publish(t, b"live"))

    def test_unacked_resent_with_dup(self):
        """[MQTT-4.4.0-1] [MQTT-3.3.1-1] (3.1.1 and 5.0): QoS 1 messages sent
        and not acknowledged are resent on reconnect first, with DUP 1 and
        the same packet ids, then the ones queued while offline."""
        for v in (V311, V5):
            t = self.topic("dup", str(v))
            cid = self.uid()
            props = [(EXPIRY, 60)] if v == V5 else None
            s = self.client(cid, version=v, clean=False, properties=props)
            self.sub(s, [(t, 1)])
            p = self.publisher(v)
            self.send_q1(p, t, [b"one", b"two"])
            id1 = self.expect_publish(s, t, b"one", qos=1)
            id2 = self.expect_publish(s, t, b"two", qos=1)
            s.abort()
            time.sleep(0.2)
            self.send_q1(p, t, [b"three"], first_id=3)
            s = self.client(cid, version=v, clean=False, properties=props, expect_present=True)
            self.expect_publish(s, t, b"one", qos=1, dup=True, packet_id=id1, what="resent one")
            self.expect_publish(s, t, b"two", qos=1, dup=True, packet_id=id2, what="resent two")
            id3 = self.expect_publish(s, t, b"three", qos=1, dup=False, what="queued three")
            self.assertNotIn(id3, (id1, id2))
            s.send(puback(id1, v) + puback(id2, v) + puback(id3, v))
            self.expect_silence(s, 0.3, "nothing more after the acks")
            s.do_disconnect()
            s = self.client(cid, version=v, clean=False, properties=props, expect_present=True)
            self.expect_silence(s, 0.3, "acknowledged messages are not resent")

    def test_acked_message_not_resent(self):
        """[MQTT-4.3.2-1] (3.1.1): a message acknowledged before the
        connection dropped is not sent again."""
        t = self.topic("ack")
        cid = self.uid()
        s = self.client(cid, clean=False)
        self.sub(s, [(t, 1)])
        p = self.publisher()
        self.send_q1(p, t, [b"done"])
        pid = self.expect_publish(s, t, b"done", qos=1)
        s.send(puback(pid))
        s.send(P.pingreq())
        self.expect(s, b"\xd0\x00")
        s.abort()
        s = self.client(cid, clean=False, expect_present=True)
        self.expect_silence(s, 0.4)

    # ---- 5.0 Session Expiry ------------------------------------------

    def test_session_expiry_elapses(self):
        """[MQTT-3.1.2-23] (5.0): a session with Session Expiry 2 s is kept
        for 2 s after the connection ends, then discarded: Session Present
        0 afterwards and nothing queued is delivered."""
        t = self.topic("exp")
        cid = self.uid()
        s = self.client(cid, version=V5, clean=False, properties=[(EXPIRY, 2)])
        self.sub(s, [(t, 1)])
        s.do_disconnect()
        p = self.publisher(V5)
        self.send_q1(p, t, [b"for an expired session"])
        time.sleep(3.5)
        s = self.client(cid, version=V5, clean=False, properties=[(EXPIRY, 2)],
                        expect_present=False)
        self.expect_silence(s, 0.3, "the expired session's messages are gone")

    def test_session_kept_within_expiry(self):
        """[MQTT-3.1.2-23] [MQTT-3.1.2-5] (5.0): within its expiry the
        session resumes with its queued messages."""
        t = self.topic("keep")
        cid = self.uid()
        s = self.client(cid, version=V5, clean=False, properties=[(EXPIRY, 30)])
        self.sub(s, [(t, 1)])
        s.do_disconnect()
        p = self.publisher(V5)
        self.send_q1(p, t, [b"kept"])
        s = self.client(cid, version=V5, clean=False, properties=[(EXPIRY, 30)],
                        expect_present=True)
        pid = self.expect_publish(s, t, b"kept", qos=1)
        s.send(puback(pid, V5))

    def test_no_session_expiry_means_clean(self):
        """[MQTT-3.1.2-23] (5.0) §3.1.2.11.2: without Session Expiry (0) the session ends with
        the connection, even with Clean Start 0."""
        cid = self.uid()
        t = self.topic("z")
        s = self.client(cid, version=V5, clean=False)
        self.sub(s, [(t, 1)])
        s.do_disconnect()
        s = self.client(cid, version=V5, clean=False, expect_present=False)

    def test_disconnect_cannot_set_expiry_from_zero(self):
        """[MQTT-3.14.2-2] (5.0): Session Expiry 0 at CONNECT and non-zero
        in DISCONNECT is a Protocol Error: DISCONNECT 0x82 from the
        server."""
        c = self.client(version=V5)
        c.send(P.disconnect(V5, 0, [(EXPIRY, 30)]))
        self.expect_closed(c, {P.disconnect5(0x82)})

    def test_disconnect_can_end_session(self):
        """[MQTT-3.1.2-23] (5.0) §3.14.2.2.2: DISCONNECT with Session Expiry 0 ends a session
        that had a longer expiry."""
        cid = self.uid()
        c = self.client(cid, version=V5, clean=False, properties=[(EXPIRY, 60)])
        c.send(P.disconnect(V5, 0, [(EXPIRY, 0)]))
        self.expect_closed(c, {b""})
        self.client(cid, version=V5, clean=False, properties=[(EXPIRY, 60)],
                    expect_present=False)

    # ---- takeover ----------------------------------------------------

    def test_takeover_311(self):
        """[MQTT-3.1.4-2] (3.1.1): a second connection with the same client
        id closes the first (which gets nothing); the new one is served."""
        cid = self.uid()
        old = self.client(cid)
        new = self.client(cid)
        self.expect_closed(old, {b""}, what="old connection")
        new.send(P.pingreq())
        self.expect(new, b"\xd0\x00")

    def test_takeover_v5(self):
        """[MQTT-3.1.4-3] (5.0): the old connection gets DISCONNECT 0x8E
        Session taken over (e0 01 8e) and is closed."""
        cid = self.uid()
        old = self.client(cid, version=V5)
        new = self.client(cid, version=V5)
        self.expect_closed(old, {P.disconnect5(0x8E)}, what="old connection")
        new.send(P.pingreq())
        self.expect(new, b"\xd0\x00")

    def test_takeover_resumes_session(self):
        """[MQTT-3.1.4-3] [MQTT-3.2.2-3] (5.0) [MQTT-4.4.0-1]: a takeover with
        Clean Start 0 resumes the session (Session Present 1); a message in
        flight to the old connection is resent to the new one with DUP."""
        t = self.topic("tk")
        cid = self.uid()
        props = [(EXPIRY, 60)]
        old = self.client(cid, version=V5, clean=False, properties=props)
        self.sub(old, [(t, 1)])
        p = self.publisher(V5)
        self.send_q1(p, t, [b"in flight"])
        pid = self.expect_publish(old, t, b"in flight", qos=1)
        new = self.client(cid, version=V5, clean=False, properties=props, expect_present=True)
        self.expect_publish(new, t, b"in flight", qos=1, dup=True, packet_id=pid,
                            what="resent to the new connection")
        new.send(puback(pid, V5))
        self.expect_closed(old, {P.disconnect5(0x8E)}, what="old connection")
        self.send_q1(p, t, [b"next"], first_id=2)
        pid = self.expect_publish(new, t, b"next", qos=1)
        new.send(puback(pid, V5))

    def test_takeover_clean_start_discards(self):
        """[MQTT-3.1.2-4] (5.0): a takeover with Clean Start 1 starts a new
        session (Session Present 0, no subscriptions)."""
        t = self.topic("tc")
        cid = self.uid()
        old = self.client(cid, version=V5, clean=False, properties=[(EXPIRY, 60)])
        self.sub(old, [(t, 1)])
        new = self.client(cid, version=V5, clean=True, expect_present=False)
        self.expect_closed(old, {P.disconnect5(0x8E)})
        p = self.publisher(V5)
        self.send_q1(p, t, [b"x"])
        self.expect_silence(new, 0.3, "no subscription in the new session")

    def test_queue_order_across_reconnect(self):
        """[MQTT-4.6.0-5] (3.1.1) / [MQTT-4.6.0-6] (5.0): 40 messages
        published while the client is away arrive in publishing order."""
        t = self.topic("ord")
        cid = self.uid()
        s = self.client(cid, clean=False)
        self.sub(s, [(t, 1)])
        s.do_disconnect()
        p = self.publisher()
        p.send(b"".join(publish(t, b"m%02d" % i, qos=1, packet_id=i + 1) for i in range(40)))
        for i in range(40):
            self.expect(p, P.ack(PUBACK, i + 1))
        s = self.client(cid, clean=False, expect_present=True)
        for i in range(40):
            pid = self.expect_publish(s, t, b"m%02d" % i, qos=1, what="message %d" % i)
            s.send(puback(pid))


if __name__ == "__main__":
    unittest.main(verbosity=2)
