"""Conformance: SUBSCRIBE / SUBACK, UNSUBSCRIBE / UNSUBACK, overlapping
subscriptions, subscription options and identifiers (5.0), shared
subscriptions."""

import unittest

import packets as P
from packets import (NO_LOCAL, V311, V5, packet, publish, puback, suback, u16, unsuback,
                     unsubscribe)


class SubscribeTest(P.ConfTestCase):

    # ---- SUBACK ------------------------------------------------------

    def test_suback_bytes(self):
        """[MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-4] [MQTT-3.8.4-5]
        [MQTT-3.9.3-1] (3.1.1): one SUBSCRIBE, three filters at QoS 0/1/2 ->
        SUBACK 90 05 0a 0b 00 01 02 (5.0: 90 06 0a 0b 00 00 01 02)."""
        base = self.topic()
        c = self.client()
        c.send(P.subscribe(0x0A0B, [(base + "/a", 0), (base + "/b", 1), (base + "/c", 2)]))
        self.expect(c, bytes.fromhex("90050a0b000102"), "SUBACK")
        c = self.client(version=V5)
        c.send(P.subscribe(0x0A0B, [(base + "/a", 0), (base + "/b", 1), (base + "/c", 2)],
                           version=V5))
        self.expect(c, bytes.fromhex("90060a0b00000102"), "SUBACK v5")

    def test_invalid_filter_among_valid(self):
        """[MQTT-4.7.1-2] [MQTT-4.7.1-3] (3.1.1) [MQTT-3.8.4-4] [MQTT-3.9.3-1]:
        each filter is judged alone: invalid ones ("a/#/b", "a+", "#a",
        "") get 0x80 (5.0: 0x8F Topic Filter invalid), the valid ones in
        the same packet are granted and work."""
        base = self.topic()
        bad = [base + "/#/b", base + "/a+", base + "/#a", base + "/+x/y", ""]
        for v, fail in ((V311, 0x80), (V5, 0x8F)):
            good1, good2 = base + "/g1/%d" % v, base + "/g2/%d" % v
            c = self.client(version=v)
            filters = [(good1, 1)] + [(f, 1) for f in bad] + [(good2, 2)]
            self.sub(c, filters, packet_id=7, codes=[1] + [fail] * len(bad) + [2])
            p = self.client(version=v)
            p.send(publish(good1, b"1", version=v) + publish(good2, b"2", version=v))
            self.expect(c, publish(good1, b"1", version=v))
            self.expect(c, publish(good2, b"2", version=v))

    def test_valid_wildcard_filters(self):
        """[MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.1-3] (3.1.1): "#", "+",
        "+/+", "a/+/#", "/+" and "+/" are valid filters."""
        base = self.topic()
        for v in (V311, V5):
            c = self.client(version=v)
            filters = [(base + "/#", 0), (base + "/+", 1), (base + "/+/+", 2),
                       (base + "/a/+/#", 0), (base + "//+", 1), (base + "/+/", 2)]
            self.sub(c, filters)

    def test_deny_subscribe(self):
        """[MQTT-3.9.3-1] [MQTT-3.8.4-6] (5.0), paho.conf deny_subscribe:
        "test/nosubscribe" -> 0x80 for that filter (5.0: 0x80 or 0x87), the
        other filter granted."""
        ok = self.topic("ok")
        c = self.client()
        c.send(P.subscribe(3, [("test/nosubscribe", 1), (ok, 1)]))
        self.expect(c, suback(3, [0x80, 1]))
        c = self.client(version=V5)
        c.send(P.subscribe(3, [("test/nosubscribe", 1), (ok, 1)], version=V5))
        self.expect(c, {suback(3, [0x80, 1], V5), suback(3, [0x87, 1], V5)})

    def test_max_subscriptions(self):
        """paho.conf max_subscriptions 64: past it a filter gets 0x97 Quota
        exceeded (5.0) / 0x80 (3.1.1); replacing an existing one still
        works [MQTT-3.8.4-3]."""
        base = self.topic()
        for v, fail in ((V311, 0x80), (V5, 0x97)):
            c = self.client(version=v)
            n = P.MAX_SUBSCRIPTIONS
            filters = [(base + "/%d/%d" % (v, i), 0) for i in range(n + 2)]
            self.sub(c, filters[:40], packet_id=1)
            self.sub(c, filters[40:], packet_id=2, codes=[0] * (n - 40) + [fail, fail])
            self.sub(c, [(filters[0][0], 1)], packet_id=3)

    def test_subscribe_reserved_flags_close(self):
        """[MQTT-3.8.1-1] (3.1.1 and 5.0): SUBSCRIBE flags other than 0010
        -> closed (5.0: DISCONNECT 0x81)."""
        t = self.topic("r")
        for fb in (0x80, 0x83, 0x8A):
            for v, allowed in ((V311, {b""}), (V5, {P.disconnect5(0x81)})):
                c = self.client(version=v)
                c.send(P.subscribe(1, [(t, 0)], version=v, first_byte=fb))
                self.expect_closed(c, allowed, what="SUBSCRIBE first byte %02x v%d" % (fb, v))

    def test_subscribe_bad_options_close(self):
        """[MQTT-3.8.3-4] (3.1.1): reserved option bits or QoS 3 -> closed;
        [MQTT-3.8.3-5] (5.0): reserved bits 6-7 -> DISCONNECT 0x81; QoS 3 or
        Retain Handling 3 -> DISCONNECT 0x81/0x82."""
        t = self.topic("o")
        for opts in (0x04, 0x03, 0x40):
            c = self.client()
            c.send(P.subscribe(1, [(t, opts)]))
            self.expect_closed(c, {b""}, what="options %02x" % opts)
        for opts, allowed in ((0x40, {0x81}), (0x80, {0x81}), (0x03, {0x81, 0x82}),
                              (0x30, {0x81, 0x82})):
            c = self.client(version=V5)
            c.send(P.subscribe(1, [(t, opts)], version=V5))
            self.expect_closed(c, {P.disconnect5(r) for r in allowed},
                               what="options %02x v5" % opts)

    def test_subscribe_without_filters_closes(self):
        """[MQTT-3.8.3-3] (3.1.1) / [MQTT-3.8.3-2] (5.0): a SUBSCRIBE with
        no filter -> closed; [MQTT-3.10.3-2]: likewise UNSUBSCRIBE."""
        for v, allowed in ((V311, {b""}), (V5, {P.disconnect5(0x81), P.disconnect5(0x82)})):
            c = self.client(version=v)
            body = u16(1) + (b"\x00" if v == V5 else b"")
            c.send(packet(0x82, body))
            self.expect_closed(c, allowed, what="empty SUBSCRIBE v%d" % v)
            c = self.client(version=v)
            c.send(packet(0xA2, body))
            self.expect_closed(c, allowed, what="empty UNSUBSCRIBE v%d" % v)

    def test_subscribe_packet_id_zero_closes(self):
        """[MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0): SUBSCRIBE with
        packet id 0 -> closed."""
        c = self.client()
        c.send(P.subscribe(0, [(self.topic("z"), 0)]))
        self.expect_closed(c, {b""})

    # ---- delivery through subscriptions ---------------------------------

    def test_overlapping_subscriptions_deliver_once(self):
        """[MQTT-3.3.5-1] (3.1.1) / [MQTT-3.3.4-2] (5.0): a message matching
        three filters of one client ("x/+" QoS 0, "x/#" QoS 1, "x/y"
        QoS 2) is delivered once, at the highest granted QoS capped by the
        message's."""
        base = self.topic("ov")
        for v in (V311, V5):
            c = self.client(version=v)
            self.sub(c, [(base + "/+", 0), (base + "/#", 1), (base + "/y", 2)])
            p = self.client(version=v)
            p.send(publish(base + "/y", b"q1", qos=1, packet_id=1, version=v))
            pid = self.expect_publish(c, base + "/y", b"q1", qos=1, what="one copy at QoS 1")
            c.send(puback(pid, v))
            p.send(publish(base + "/y", b"q0", version=v))
            self.expect(c, publish(base + "/y", b"q0", version=v), "one copy at QoS 0")
            self.expect_silence(c, 0.3, "no second copy")

    def test_subscription_replaced(self):
        """[MQTT-3.8.4-3]: a SUBSCRIBE with an existing filter replaces the
        subscription (new QoS), nothing is duplicated."""
        t = self.topic("rep")
        c = self.client()
        self.sub(c, [(t, 1)], packet_id=1)
        self.sub(c, [(t, 0)], packet_id=2)
        p = self.client()
        p.send(publish(t, b"r", qos=1, packet_id=1))
        self.expect(c, publish(t, b"r"), "delivered once at the new QoS 0")
        self.expect_silence(c, 0.3)

    # ---- UNSUBSCRIBE ---------------------------------------------------

    def test_unsuback_311(self):
        """[MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6] (3.1.1): UNSUBACK
        b0 02 id, whether or not the filters matched a subscription;
        delivery stops [MQTT-3.10.4-2]."""
        t = self.topic("u")
        c = self.client()
        self.sub(c, [(t, 0)])
        c.send(unsubscribe(0x1234, [t, self.topic("never")]))
        self.expect(c, bytes.fromhex("b0021234"), "UNSUBACK")
        c.send(unsubscribe(0x1235, [self.topic("never")]))
        self.expect(c, bytes.fromhex("b0021235"), "UNSUBACK with no match")
        p = self.client()
        p.send(publish(t, b"gone"))
        self.expect_silence(c, 0.3, "no delivery after UNSUBSCRIBE")

    def test_unsuback_v5(self):
        """[MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.11.3-1] (5.0): UNSUBACK
        b0 05 id 00 00 11: 0x00 for the existing subscription, 0x11 No
        subscription existed for the other, in filter order."""
        t = self.topic("u5")
        c = self.client(version=V5)
        self.sub(c, [(t, 1)])
        c.send(unsubscribe(0x1234, [t, self.topic("never")], version=V5))
        self.expect(c, unsuback(0x1234, [0x00, 0x11], V5), "UNSUBACK v5")
        c.send(unsubscribe(0x1235, [t], version=V5))
        self.expect(c, unsuback(0x1235, [0x11], V5), "second UNSUBSCRIBE")

    def test_unsubscribe_reserved_flags_close(self):
        """[MQTT-3.10.1-1] (3.1.1 and 5.0): UNSUBSCRIBE flags other than
        0010 -> closed (5.0: DISCONNECT 0x81)."""
        t = self.topic("ur")
        for v, allowed in ((V311, {b""}), (V5, {P.disconnect5(0x81)})):
            c = self.client(version=v)
            c.send(unsubscribe(1, [t], version=v, first_byte=0xA0))
            self.expect_closed(c, allowed, what="UNSUBSCRIBE a0 v%d" % v)

    # ---- 5.0 options and identifiers ---------------------------------

    def test_subscription_identifiers(self):
        """[MQTT-3.3.4-3] [MQTT-3.3.4-4] (5.0): a message matching two
        subscriptions with identifiers 42 and 300 is delivered once
        carrying both; a subscription without an identifier adds none."""
        base = self.topic("si")
        c = self.client(version=V5)
        self.sub(c, [(base + "/#", 0)], packet_id=1,
                 properties=[(P.PROP_SUBSCRIPTION_ID, 42)])
        self.sub(c, [(base + "/x", 0)], packet_id=2,
                 properties=[(P.PROP_SUBSCRIPTION_ID, 300)])
        self.sub(c, [(base + "/+", 0)], packet_id=3)
        p = self.client(version=V5)
        p.send(publish(base + "/x", b"ids", version=V5))
        pk = self.read_packet(c, what="PUBLISH")
        m = P.R.parse_publish(pk, V5)
        self.assertEqual((m["topic"], m["payload"], m["qos"]), (base + "/x", b"ids", 0))
        ids = P.sub_ids(pk)
        self.assertEqual(sorted(ids), [42, 300], "Subscription Identifiers %r" % ids)
        p.send(publish(base + "/only", b"one", version=V5))
        pk = self.read_packet(c, what="PUBLISH")
        self.assertEqual(P.sub_ids(pk), [42])
        self.expect_silence(c, 0.3, "one copy each")

    def test_subscription_identifier_zero_is_error(self):
        """[MQTT-4.13.1-1] (5.0) §3.8.2.1.2: a Subscription Identifier of 0 is a Protocol
        Error: DISCONNECT 0x82 (or 0x81)."""
        c = self.client(version=V5)
        c.send(P.subscribe(1, [(self.topic("z"), 0)], version=V5,
                           properties=[(P.PROP_SUBSCRIPTION_ID, 0)]))
        self.expect_closed(c, {P.disconnect5(0x82), P.disconnect5(0x81)})

    def test_no_local(self):
        """[MQTT-3.8.3-3] (5.0): with No Local the publisher's own messages
        are not sent back to it; other subscribers get them."""
        t = self.topic("nl")
        c = self.client(version=V5)
        self.sub(c, [(t, NO_LOCAL | 0)])
        other = self.client(version=V5)
        self.sub(other, [(t, 0)])
        c.send(publish(t, b"mine", version=V5))
        self.expect(other, publish(t, b"mine", version=V5))
        self.expect_silence(c, 0.3, "own message not echoed")
        other.send(publish(t, b"theirs", version=V5))
        self.expect(c, publish(t, b"theirs", version=V5), "others' messages arrive")

    def test_no_local_on_shared_is_protocol_error(self):
        """[MQTT-3.8.3-4] (5.0): No Local on a shared subscription ->
        DISCONNECT 0x82."""
        c = self.client(version=V5)
        c.send(P.subscribe(1, [("$share/g/" + self.topic("x"), NO_LOCAL)], version=V5))
        self.expect_closed(c, {P.disconnect5(0x82)})

    # ---- shared subscriptions ------------------------------------------

    def test_shared_subscription_distributes(self):
        """5.0 §4.8.2 [MQTT-4.8.2-3]: messages to "$share/g/f" go to exactly
        one member each, spread over the members; an ordinary subscriber to
        f still gets every message."""
        t = self.topic("sh")
        share = "$share/grp/" + t
        members = [self.client(version=V5) for _ in range(3)]
        for m in members:
            self.sub(m, [(share, 1)])
        plain = self.client(version=V5)
        self.sub(plain, [(t, 0)])
        p = self.client(version=V5)
        n = 12
        for i in range(n):
            p.send(publish(t, b"s%02d" % i, qos=1, packet_id=i + 1, version=V5))
            self.expect_ack(p, P.PUBACK, i + 1)
        seen = []
        counts = []
        for m in members:
            k = 0
            while True:
                try:
                    pk = m.read(0.4)
                except P.Timeout:
                    break
                msg = P.R.parse_publish(pk, V5)
                self.assertEqual(msg["topic"], t)
                self.assertEqual(msg["qos"], 1)
                m.send(puback(msg["packet_id"], V5))
                seen.append(msg["payload"])
                k += 1
            counts.append(k)
        self.assertEqual(sorted(seen), [b"s%02d" % i for i in range(n)],
                         "each message to exactly one member")
        self.assertTrue(all(k > 0 for k in counts), "spread over members: %r" % counts)
        for i in range(n):
            self.expect(plain, publish(t, b"s%02d" % i, version=V5), "plain subscriber")

    def test_shared_subscription_invalid(self):
        """[MQTT-4.8.2-1] [MQTT-4.8.2-2] (5.0): a ShareName that is empty or
        holds a wildcard, or no filter after it -> 0x8F (3.1.1: 0x80)."""
        t = self.topic("x")
        bad = ["$share//" + t, "$share/g+/" + t, "$share/g#/" + t, "$share/g"]
        c = self.client(version=V5)
        self.sub(c, [(f, 0) for f in bad] + [("$share/ok/" + t, 0)],
                 codes=[0x8F] * len(bad) + [0])
        c = self.client()
        self.sub(c, [(f, 0) for f in bad] + [("$share/ok/" + t, 0)],
                 codes=[0x80] * len(bad) + [0])



if __name__ == "__main__":
    unittest.main(verbosity=2)
