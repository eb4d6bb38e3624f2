"""Conformance (5.0 only): PUBLISH properties forwarded unaltered, Message
Expiry, Topic Aliases in both directions, the client's Receive Maximum and
Maximum Packet Size."""

import time
import unittest

import packets as P
from packets import PUBACK, V5, publish, puback

USER = P.R.PROP_USER_PROPERTY
EXPIRY = P.R.PROP_MESSAGE_EXPIRY
ALIAS = P.R.PROP_TOPIC_ALIAS


class PropertiesTest(P.ConfTestCase):

    def pair(self, sub_props=None, qos=0, sub_clean=True):
        """A 5.0 subscriber on a fresh topic (with CONNECT properties
        sub_props) and a 5.0 publisher."""
        t = self.topic("p")
        s = self.client(version=V5, properties=sub_props, clean=sub_clean)
        self.sub(s, [(t, qos)])
        p = self.client(version=V5)
        return t, s, p

    def delivered(self, s, what="PUBLISH"):
        pk = self.read_packet(s, what=what)
        return pk, P.R.parse_publish(pk, V5)

    # ---- forwarding --------------------------------------------------

    def test_user_properties_forwarded_in_order(self):
        """[MQTT-3.3.2-17] [MQTT-3.3.2-18] (5.0): User Properties reach the
        subscriber unaltered and in their order, repeated keys included;
        here the whole PUBLISH is byte-identical."""
        t, s, p = self.pair()
        pr = [(USER, ("z", "1")), (USER, ("a", "2")), (USER, ("z", "3")),
              (USER, ("\u00e9t\u00e9", "")), (USER, ("", "empty key"))]
        data = publish(t, b"u", version=V5, properties=pr)
        p.send(data)
        self.expect(s, data, "PUBLISH with user properties")

    def test_payload_format_and_content_type(self):
        """[MQTT-3.3.2-4] [MQTT-3.3.2-20] (5.0): Payload Format Indicator and
        Content Type are forwarded unaltered."""
        t, s, p = self.pair()
        pr = [(P.R.PROP_PAYLOAD_FORMAT, 1), (P.R.PROP_CONTENT_TYPE, "application/json")]
        p.send(publish(t, b'{"a":1}', version=V5, properties=pr))
        pk, m = self.delivered(s)
        self.assertEqual((m["topic"], m["payload"]), (t, b'{"a":1}'))
        self.assertEqual(sorted(P.props_list(pk)), [(1, 1), (3, b"application/json")])

    def test_response_topic_and_correlation_data(self):
        """[MQTT-3.3.2-15] [MQTT-3.3.2-16] (5.0): Response Topic and
        Correlation Data are forwarded unaltered (binary data included)."""
        t, s, p = self.pair()
        pr = [(P.PROP_RESPONSE_TOPIC, t + "/reply"), (P.PROP_CORRELATION_DATA, b"\x00\xffid")]
        p.send(publish(t, b"req", version=V5, properties=pr))
        pk, m = self.delivered(s)
        self.assertEqual(m["payload"], b"req")
        self.assertEqual(sorted(P.props_list(pk)),
                         [(8, (t + "/reply").encode()), (9, b"\x00\xffid")])

    def test_response_topic_with_wildcard_is_error(self):
        """[MQTT-3.3.2-14] (5.0): a Response Topic holding a wildcard is a
        Protocol Error: the server may close (DISCONNECT 0x82/0x81/0x90)
        -- and must not forward it as is."""
        t, s, p = self.pair()
        p.send(publish(t, b"req", version=V5, properties=[(P.PROP_RESPONSE_TOPIC, t + "/+")]))
        closed, got = p.wait_closed(1.0)
        if closed:
            self.assertIn(b"".join(P.to_bytes(x) for x in got),
                          {b"", P.disconnect5(0x82), P.disconnect5(0x81), P.disconnect5(0x90)})
            self.expect_silence(s, 0.3, "a refused PUBLISH is not forwarded")
        else:
            fwd = []
            try:
                fwd.append(s.read(0.5))
            except (P.Timeout, P.Closed):
                pass
            self.fail("[MQTT-3.3.2-14] a PUBLISH with Response Topic %r (a wildcard) was "
                      "accepted: the publisher got %s and is still connected; the "
                      "subscriber got %s" % (t + "/+", P.describe(got), P.describe(fwd)))

    def test_subscription_identifier_from_client_is_error(self):
        """[MQTT-3.3.4-6] (5.0): a PUBLISH from a client must not carry a
        Subscription Identifier: DISCONNECT 0x82 (or 0x81)."""
        t, s, p = self.pair()
        p.send(publish(t, b"x", version=V5, properties=[(P.PROP_SUBSCRIPTION_ID, 5)]))
        self.expect_closed(p, {P.disconnect5(0x82), P.disconnect5(0x81)})

    # ---- Message Expiry ----------------------------------------------

    def test_message_expiry_live(self):
        """[MQTT-3.3.2-6] (5.0): a message delivered at once carries its
        Message Expiry Interval (at most what was sent, at least 1 below
        it at most)."""
        t, s, p = self.pair()
        p.send(publish(t, b"e", version=V5, properties=[(EXPIRY, 60)]))
        pk, m = self.delivered(s)
        pl = P.props_list(pk)
        self.assertEqual([k for k, _ in pl], [EXPIRY], pl)
        self.assertIn(pl[0][1], (59, 60))

    def test_message_expiry_queued(self):
        """[MQTT-3.3.2-5] [MQTT-3.3.2-6] (5.0): for an offline session a
        message whose expiry (1 s) passes is not delivered; one with 60 s
        is delivered with the time it waited taken off."""
        t = self.topic("q")
        cid = self.uid()
        props = [(P.R.PROP_SESSION_EXPIRY, 60)]
        s = self.client(cid, version=V5, clean=False, properties=props)
        self.sub(s, [(t, 1)])
        s.do_disconnect()
        p = self.client(version=V5)
        p.send(publish(t, b"short", qos=1, packet_id=1, version=V5, properties=[(EXPIRY, 1)]))
        self.expect_ack(p, PUBACK, 1)
        p.send(publish(t, b"long", qos=1, packet_id=2, version=V5, properties=[(EXPIRY, 60)]))
        self.expect_ack(p, PUBACK, 2)
        time.sleep(2.2)
        s = self.client(cid, version=V5, clean=False, properties=props, expect_present=True)
        pk, m = self.delivered(s, "the unexpired message")
        self.assertEqual(m["payload"], b"long", "the expired message was delivered")
        left = m["props"].get(EXPIRY)
        self.assertIsNotNone(left, "no Message Expiry Interval on delivery")
        self.assertLessEqual(left, 58, "[MQTT-3.3.2-6] expiry not reduced by the wait")
        self.assertGreaterEqual(left, 50)
        s.send(puback(m["packet_id"], V5))
        self.expect_silence(s, 0.3, "the expired message never comes")

    # ---- Topic Alias from the client ---------------------------------

    def test_topic_alias_from_client(self):
        """[MQTT-3.3.2-12] (5.0): the server accepts aliases 1..16: a
        PUBLISH with topic + alias sets it, one with an empty topic + alias
        uses it; an alias may be re-mapped. Subscribers see the topic."""
        t, s, p = self.pair()
        t2 = t + "/two"
        self.sub(s, [(t2, 0)], packet_id=2)
        p.send(publish(t, b"set", version=V5, properties=[(ALIAS, 1)]))
        p.send(publish("", b"use", version=V5, properties=[(ALIAS, 1)]))
        p.send(publish(t2, b"set16", version=V5, properties=[(ALIAS, P.TOPIC_ALIAS_MAX)]))
        p.send(publish("", b"use16", version=V5, properties=[(ALIAS, P.TOPIC_ALIAS_MAX)]))
        p.send(publish(t2, b"remap", version=V5, properties=[(ALIAS, 1)]))
        p.send(publish("", b"use remapped", version=V5, properties=[(ALIAS, 1)]))
        for topic, pl in ((t, b"set"), (t, b"use"), (t2, b"set16"), (t2, b"use16"),
                          (t2, b"remap"), (t2, b"use remapped")):
            self.expect(s, publish(topic, pl, version=V5), "delivery of %r" % pl)

    def test_topic_alias_zero_invalid(self):
        """[MQTT-3.3.2-8] (5.0): Topic Alias 0 -> DISCONNECT 0x94 Topic Alias
        invalid (e0 01 94)."""
        t, s, p = self.pair()
        p.send(publish(t, b"x", version=V5, properties=[(ALIAS, 0)]))
        self.expect_closed(p, {P.disconnect5(0x94)})

    def test_topic_alias_over_maximum_invalid(self):
        """[MQTT-3.3.2-9] (5.0): an alias above the server's Topic Alias
        Maximum (16) -> DISCONNECT 0x94."""
        t, s, p = self.pair()
        p.send(publish(t, b"x", version=V5, properties=[(ALIAS, P.TOPIC_ALIAS_MAX + 1)]))
        self.expect_closed(p, {P.disconnect5(0x94)})

    def test_topic_alias_never_set(self):
        """[MQTT-4.13.1-1] (5.0) §3.3.2.3.4: an empty topic with an alias that has no mapping
        is a Protocol Error -> DISCONNECT 0x82."""
        t, s, p = self.pair()
        p.send(publish("", b"x", version=V5, properties=[(ALIAS, 3)]))
        self.expect_closed(p, {P.disconnect5(0x82)})
        self.expect_silence(s, 0.2)

    def test_topic_alias_is_per_connection(self):
        """[MQTT-3.3.2-7] (5.0: alias mappings last for one Network
        Connection):
        an alias set on one connection is unknown on the next -> 0x82."""
        t, s, p = self.pair()
        cid = self.uid()
        c = self.client(cid, version=V5)
        c.send(publish(t, b"set", version=V5, properties=[(ALIAS, 2)]))
        self.expect(s, publish(t, b"set", version=V5))
        c.do_disconnect()
        c = self.client(cid, version=V5)
        c.send(publish("", b"stale", version=V5, properties=[(ALIAS, 2)]))
        self.expect_closed(c, {P.disconnect5(0x82)})

    # ---- Topic Alias to the client -----------------------------------

    def test_no_topic_alias_without_client_maximum(self):
        """[MQTT-3.1.2-27] (5.0): a client that sent no Topic Alias Maximum
        gets no Topic Alias: every delivery is the exact PUBLISH."""
        t, s, p = self.pair()
        for i in range(3):
            p.send(publish(t, b"n%d" % i, version=V5))
            self.expect(s, publish(t, b"n%d" % i, version=V5))

    def test_topic_alias_to_client(self):
        """[MQTT-3.1.2-26] [MQTT-3.3.2-11] (5.0): with Topic Alias Maximum 2
        the server may use aliases 1..2 only; a PUBLISH with an empty topic
        uses an alias the server set before on this connection; the topic
        the client resolves is always the right one."""
        t, s, p = self.pair(sub_props=[(P.R.PROP_TOPIC_ALIAS_MAXIMUM, 2)])
        self.sub(s, [(t + "/#", 0)], packet_id=2)
        topics = [t + "/a", t + "/b", t + "/c", t + "/a", t + "/b", t + "/c", t + "/a"]
        known = {}
        for i, topic in enumerate(topics):
            p.send(publish(topic, b"%d" % i, version=V5))
            pk, m = self.delivered(s, "delivery %d" % i)
            alias = m["props"].get(ALIAS)
            self.assertEqual(m["payload"], b"%d" % i)
            if alias is not None:
                self.assertTrue(1 <= alias <= 2, "[MQTT-3.3.2-11] alias %d > 2" % alias)
                if m["topic"]:
                    known[alias] = m["topic"]
                else:
                    self.assertIn(alias, known, "alias %d used before it was set" % alias)
            else:
                self.assertTrue(m["topic"], "empty topic without an alias")
            resolved = m["topic"] or known[alias]
            self.assertEqual(resolved, topic, "delivery %d resolves to the wrong topic" % i)
            self.assertEqual([k for k, _ in P.props_list(pk) if k != ALIAS], [])
        self.assertTrue(known, "Topic Alias Maximum 2 allowed, but no alias was used")

    # ---- the client's Receive Maximum and Maximum Packet Size --------

    def test_client_receive_maximum(self):
        """[MQTT-3.3.4-9] (5.0): with the client's Receive Maximum 2, at most
        2 QoS 1 messages are unacknowledged at a time; each PUBACK lets one
        more through ([MQTT-3.3.4-10]: PINGRESP is not held back)."""
        t, s, p = self.pair(sub_props=[(P.R.PROP_RECEIVE_MAXIMUM, 2)], qos=1)
        for i in range(6):
            p.send(publish(t, b"m%d" % i, qos=1, packet_id=i + 1, version=V5))
            self.expect_ack(p, PUBACK, i + 1)
        a = self.expect_publish(s, t, b"m0", qos=1)
        b = self.expect_publish(s, t, b"m1", qos=1)
        self.expect_silence(s, 0.4, "no third message before a PUBACK")
        s.send(P.pingreq())
        self.expect(s, b"\xd0\x00", "PINGRESP while the window is full")
        pending = [a, b]
        for i in range(2, 6):
            s.send(puback(pending.pop(0), V5))
            pending.append(self.expect_publish(s, t, b"m%d" % i, qos=1))
            self.expect_silence(s, 0.15, "still at most 2 in flight")
        s.send(puback(pending[0], V5) + puback(pending[1], V5))

    def test_client_maximum_packet_size(self):
        """[MQTT-3.1.2-24] [MQTT-3.1.2-25] (5.0): a message whose PUBLISH
        would exceed the client's Maximum Packet Size (100 bytes) is not
        sent to it (discarded); smaller ones are, in order."""
        t, s, p = self.pair(sub_props=[(P.R.PROP_MAXIMUM_PACKET_SIZE, 100)], qos=1)
        big = b"B" * 200
        p.send(publish(t, b"small-1", version=V5))
        p.send(publish(t, big, qos=1, packet_id=1, version=V5))
        self.expect_ack(p, PUBACK, 1)
        p.send(publish(t, big, version=V5))
        p.send(publish(t, b"small-2", qos=1, packet_id=2, version=V5))
        self.expect_ack(p, PUBACK, 2)
        self.expect(s, publish(t, b"small-1", version=V5))
        pid = self.expect_publish(s, t, b"small-2", qos=1, what="the next small message")
        s.send(puback(pid, V5))
        self.expect_silence(s, 0.3, "the big messages are never sent")
        # Exactly at the limit is allowed.
        hdr = len(publish(t, b"", version=V5))
        fit = b"F" * (100 - hdr)
        p.send(publish(t, fit, version=V5))
        self.expect(s, publish(t, fit, version=V5), "a PUBLISH of exactly 100 bytes")


if __name__ == "__main__":
    unittest.main(verbosity=2)
