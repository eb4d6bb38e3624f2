"""Operators and permissions: every route of the API's route table called by
every principal (no token, a bad token, viewer, operator, admin) with the
status each must get; API tokens (shown once, listed without values,
revoked at once); operator users and password login; failed-login and
failed-MQTT-authentication limits (429 with Retry-After, CONNACK 0x8A / 5);
and the operator commands of the `drover` CLI.

The route table is read from src/api/http.c itself, so a route added there
is walked here without anyone remembering to list it."""

import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import uid  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
HTTP_C = os.path.join(HERE, "..", "..", "src", "api", "http.c")

ROLES = {"NONE": 0, "VIEWER": 1, "OPERATOR": 2, "ADMIN": 3}
PASSWORD = "correct horse battery staple"
BAD_TOKEN = "drv_" + "A" * 43  # well-formed, unknown

RC311_BAD_CREDENTIALS = 4
RC311_NOT_AUTHORIZED = 5
RC5_BAD_CREDENTIALS = 0x86
RC5_BANNED = 0x8A


def route_table():
    """[(method, pattern, min_role, takes_body)] from http.c's routes[]."""
    with open(HTTP_C) as f:
        src = f.read()
    m = re.search(r"static const struct route routes\[\] = \{(.*?)\n\};", src, re.S)
    if not m:
        raise AssertionError("routes[] not found in %s" % HTTP_C)
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    rows = re.findall(r"\{\s*EVHTTP_REQ_(\w+)\s*,\s*\"([^\"]+)\"\s*,\s*(\w+)\s*,\s*"
                      r"ROLE_(\w+)\s*,\s*(true|false)\s*\}", body)
    # Every "{EVHTTP_REQ_" entry must have parsed: a row the regex missed
    # would silently drop out of the matrix.
    if len(rows) != body.count("EVHTTP_REQ_"):
        raise AssertionError("parsed %d of %d route rows in %s" % (
            len(rows), body.count("EVHTTP_REQ_"), HTTP_C))
    return [(meth, pat, ROLES[role], b == "true") for meth, pat, _fn, role, b in rows]


def make_token(server, role, name=None, expires_in_s=None):
    body = {"name": name or uid(role), "role": role}
    if expires_in_s is not None:
        body["expires_in_s"] = expires_in_s
    st, js = server.api("POST", "/api/v1/tokens", body)
    if st != 201:
        raise AssertionError("POST /api/v1/tokens %s: %s %r" % (role, st, js))
    return js


def make_user(server, name, role, password=PASSWORD):
    st, js = server.api("POST", "/api/v1/users",
                        {"name": name, "role": role, "password": password})
    if st != 201:
        raise AssertionError("POST /api/v1/users %s: %s %r" % (name, st, js))
    return js


class RouteMatrixTest(harness.ServerTestCase):
    """Deny by default: every route x every principal."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tokens = {r: make_token(cls.server, r)["token"]
                      for r in ("viewer", "operator", "admin")}
        cls.login_user = uid("matrix")
        make_user(cls.server, cls.login_user, "viewer")

    def body_for(self, method, pattern):
        """A minimal, well-formed body: enough for a permitted call to reach
        the handler (and mostly to succeed, where that is harmless)."""
        if pattern == "/api/v1/tokens":
            return {"name": uid("m"), "role": "viewer", "expires_in_s": 3600}
        if pattern == "/api/v1/users" and method == "POST":
            return {"name": uid("m"), "role": "viewer", "password": PASSWORD}
        if pattern == "/api/v1/users/{id}":
            return {"disabled": False}
        if pattern == "/api/v1/login":
            return {"name": self.login_user, "password": PASSWORD, "expires_in_s": 60}
        if pattern == "/api/v1/devices" and method == "POST":
            return {"id": uid("m")}
        if pattern.endswith("/commands") and method == "POST":
            return {"name": "reboot"}
        return {}

    def test_table_parsed(self):
        rows = route_table()
        self.assertGreaterEqual(len(rows), 30)
        pats = {(m, p) for m, p, _r, _b in rows}
        for want in [("POST", "/api/v1/tokens"), ("GET", "/api/v1/tokens"),
                     ("DELETE", "/api/v1/tokens/{id}"), ("POST", "/api/v1/users"),
                     ("PATCH", "/api/v1/users/{id}"), ("POST", "/api/v1/login"),
                     ("GET", "/api/v1/devices")]:
            self.assertIn(want, pats)

    def test_every_route_every_role(self):
        principals = [("no token", None, 0), ("bad token", BAD_TOKEN, 0),
                      ("garbage token", "not-a-token", 0),
                      ("viewer", self.tokens["viewer"], 1),
                      ("operator", self.tokens["operator"], 2),
                      ("admin", self.tokens["admin"], 3)]
        failures = []
        calls = 0
        for method, pattern, min_role, takes_body in route_table():
            # A placeholder {id}: valid, naming nothing, so nothing is harmed.
            path = pattern.replace("{id}", "rbac-missing-0")
            for who, token, level in principals:
                body = self.body_for(method, pattern) if takes_body else None
                st, hdrs, raw = self.server.request(method, path, body, token=token)
                calls += 1
                try:
                    js = json.loads(raw) if raw else None
                except ValueError:
                    js = None
                err = js.get("error") if isinstance(js, dict) else None
                bearer_401 = st == 401 and "bearer" in hdrs.get("www-authenticate", "").lower()
                where = "%s %s as %s: %s %r" % (method, path, who, st, raw[:200])
                if min_role == 0:
                    # Public: a token neither helps nor hurts.
                    if bearer_401 or st == 403:
                        failures.append("public route refused: " + where)
                    if pattern == "/api/v1/login" and st != 201:
                        failures.append("login with good credentials: " + where)
                elif level == 0:
                    if st != 401 or err != "unauthorized" or not bearer_401:
                        failures.append("want 401 unauthorized: " + where)
                elif level < min_role:
                    if st != 403 or err != "forbidden":
                        failures.append("want 403 forbidden: " + where)
                else:
                    if st in (401, 403):
                        failures.append("want the handler, not %d: %s" % (st, where))
        self.assertGreater(calls, 150)
        self.assertEqual(failures, [], "\n" + "\n".join(failures))
        # The tokens used above are intact (no call revoked them).
        for r, t in self.tokens.items():
            self.assertEqual(self.server.api("GET", "/api/v1/devices", token=t)[0], 200, r)

    def test_unknown_paths_and_methods(self):
        for token in (None, self.tokens["admin"]):
            st, js = self.server.api("GET", "/api/v1/no-such-thing", token=token)
            self.assertError(st, js, 404, "not_found")
        st, js = self.server.api("PUT", "/api/v1/tokens", {}, token=self.tokens["admin"])
        self.assertError(st, js, 405, "method_not_allowed")

    def test_no_secret_readable_back(self):
        """A device secret, a token value, a password hash or a private key
        is never in any GET answer, for any role."""
        d = uid("secret")
        secret = self.server.create_device(d)
        tok = make_token(self.server, "viewer")
        user = uid("hash")
        make_user(self.server, user, "operator")
        forbidden = [secret, tok["token"], "PRIVATE KEY", "$scrypt$"]
        for path in ("ca.key", "server.key"):
            p = os.path.join(self.server.data_dir, path)
            if os.path.exists(p):
                with open(p) as f:
                    lines = [l for l in f.read().splitlines() if l and not l.startswith("-----")]
                forbidden += lines[:2]
        for method, pattern, _min_role, _b in route_table():
            if method != "GET":
                continue
            ids = [d, user, tok["id"]] if "{id}" in pattern else [None]
            for id_ in ids:
                path = pattern.replace("{id}", id_) if id_ else pattern
                for who in ("viewer", "operator", "admin"):
                    st, _h, raw = self.server.request("GET", path, token=self.tokens[who])
                    text = raw.decode("utf-8", "replace")
                    for f in forbidden:
                        self.assertNotIn(f, text, "GET %s as %s (%d) shows %r" % (
                            path, who, st, f[:12]))


class TokensTest(harness.ServerTestCase):

    def test_create_shape_and_shown_once(self):
        name = "ci pipeline " + uid("t")
        t0 = harness.now_ms()
        js = make_token(self.server, "operator", name=name, expires_in_s=3600)
        self.assertRegex(js["token"], r"^drv_[A-Za-z0-9_-]{43}$")
        self.assertEqual(js["name"], name)
        self.assertEqual(js["role"], "operator")
        self.assertRegex(js["id"], r"^[0-9a-f]{16}$")
        self.assertGreaterEqual(js["created_at"], t0)
        self.assertEqual(js["expires_at"], js["created_at"] + 3600 * 1000)
        # The new token works at its role.
        self.assertEqual(self.server.api("GET", "/api/v1/devices", token=js["token"])[0], 200)
        st, err = self.server.api("GET", "/api/v1/tokens", token=js["token"])
        self.assertError(st, err, 403, "forbidden")
        # Listed, without its value or anything derived from it.
        st, lst = self.server.api("GET", "/api/v1/tokens")
        self.assertEqual(st, 200)
        self.assertIsInstance(lst["tokens"], list)
        mine = [t for t in lst["tokens"] if t["id"] == js["id"]]
        self.assertEqual(len(mine), 1)
        self.assertEqual(set(mine[0]), {"id", "name", "role", "created_at", "expires_at"})
        self.assertEqual(mine[0]["expires_at"], js["expires_at"])
        text = json.dumps(lst)
        self.assertNotIn(js["token"], text)
        self.assertNotIn(js["token"][4:], text)
        self.assertNotIn("drv_", text)
        self.assertNotIn("hash", text)
        # the bootstrap admin token is there, never expiring
        self.assertTrue(any(t["name"] == "admin" and t["expires_at"] is None
                            for t in lst["tokens"]))

    def test_no_expiry(self):
        js = make_token(self.server, "viewer")
        self.assertIsNone(js["expires_at"])
        js = make_token(self.server, "viewer", expires_in_s=60)
        self.assertEqual(js["expires_at"] - js["created_at"], 60000)

    def test_bad_requests(self):
        bad = [{"role": "viewer"},
               {"name": "", "role": "viewer"},
               {"name": "x" * 65, "role": "viewer"},
               {"name": "tab\there", "role": "viewer"},
               {"name": 5, "role": "viewer"},
               {"name": "n", "role": "root"},
               {"name": "n"},
               {"name": "n", "role": "viewer", "expires_in_s": 59},
               {"name": "n", "role": "viewer", "expires_in_s": 10 * 365 * 86400 + 1},
               {"name": "n", "role": "viewer", "expires_in_s": "3600"},
               {"name": "n", "role": "viewer", "expires_in_s": 60.5},
               ["name", "n"]]
        for b in bad:
            st, js = self.server.api("POST", "/api/v1/tokens", b)
            self.assertError(st, js, 400, "bad_request")
        st, js = self.server.api("POST", "/api/v1/tokens", "{not json")
        self.assertError(st, js, 400, "bad_request")
        # the longest name and the longest lifetime are fine
        make_token(self.server, "viewer", name="n" * 64, expires_in_s=10 * 365 * 86400)

    def test_delete_stops_it_at_once(self):
        js = make_token(self.server, "admin")
        tok = js["token"]
        self.assertEqual(self.server.api("GET", "/api/v1/tokens", token=tok)[0], 200)
        # A token may even delete itself; the very next request is refused.
        st, body = self.server.api("DELETE", "/api/v1/tokens/" + js["id"], token=tok)
        self.assertEqual(st, 204, body)
        self.assertIsNone(body)
        st, err = self.server.api("GET", "/api/v1/devices", token=tok)
        self.assertError(st, err, 401, "unauthorized")
        st, err = self.server.api("DELETE", "/api/v1/tokens/" + js["id"])
        self.assertError(st, err, 404, "not_found")
        ids = [t["id"] for t in self.server.api("GET", "/api/v1/tokens")[1]["tokens"]]
        self.assertNotIn(js["id"], ids)
        # An application connected over MQTT with it cannot reconnect.
        c = self.mqtt("app-" + uid("x"), "app", tok)
        self.assertEqual(c.connect(), RC311_BAD_CREDENTIALS)


class UsersLoginTest(harness.ServerTestCase):

    def test_user_lifecycle(self):
        name = uid("alice")
        t0 = harness.now_ms()
        js = make_user(self.server, name, "operator")
        self.assertEqual(set(js), {"name", "role", "created_at", "disabled"})
        self.assertEqual((js["name"], js["role"], js["disabled"]), (name, "operator", False))
        self.assertGreaterEqual(js["created_at"], t0)
        st, one = self.server.api("GET", "/api/v1/users/" + name)
        self.assertEqual((st, one), (200, js))
        st, lst = self.server.api("GET", "/api/v1/users")
        self.assertEqual(st, 200)
        self.assertIn(js, lst["users"])
        text = json.dumps(lst)
        self.assertNotIn("scrypt", text)
        self.assertNotIn(PASSWORD, text)
        # a second user with the name
        st, err = self.server.api("POST", "/api/v1/users",
                                  {"name": name, "role": "viewer", "password": PASSWORD})
        self.assertError(st, err, 409, "conflict")
        # PATCH
        st, js2 = self.server.api("PATCH", "/api/v1/users/" + name, {"role": "viewer"})
        self.assertEqual(st, 200, js2)
        self.assertEqual(js2["role"], "viewer")
        st, js2 = self.server.api("PATCH", "/api/v1/users/" + name, {"disabled": True})
        self.assertEqual((st, js2["disabled"]), (200, True))
        st, err = self.server.api("PATCH", "/api/v1/users/" + name, {"admin": True})
        self.assertError(st, err, 400, "bad_request")
        st, err = self.server.api("PATCH", "/api/v1/users/" + name, {})
        self.assertError(st, err, 400, "bad_request")
        st, err = self.server.api("PATCH", "/api/v1/users/" + name, {"password": "short"})
        self.assertError(st, err, 400, "bad_request")
        st, err = self.server.api("PATCH", "/api/v1/users/nobody-here", {"disabled": True})
        self.assertError(st, err, 404, "not_found")
        # DELETE
        st, body = self.server.api("DELETE", "/api/v1/users/" + name)
        self.assertEqual((st, body), (204, None))
        st, err = self.server.api("GET", "/api/v1/users/" + name)
        self.assertError(st, err, 404, "not_found")
        st, err = self.server.api("DELETE", "/api/v1/users/" + name)
        self.assertError(st, err, 404, "not_found")

    def test_create_validation(self):
        good = {"name": uid("v"), "role": "viewer", "password": PASSWORD}
        for change in [{"name": "a/b"}, {"name": ""}, {"name": "x" * 65}, {"role": "god"},
                       {"password": "x" * 11}, {"password": "x" * 1025}, {"password": 12345678901234}]:
            b = dict(good, **change)
            st, js = self.server.api("POST", "/api/v1/users", b)
            self.assertError(st, js, 400, "bad_request")
        for key in ("name", "role", "password"):
            b = dict(good)
            del b[key]
            st, js = self.server.api("POST", "/api/v1/users", b)
            self.assertError(st, js, 400, "bad_request")
        # the edges are fine
        make_user(self.server, "u" * 64, "viewer", password="p" * 12)
        make_user(self.server, uid("long"), "viewer", password="p" * 1024)

    def login(self, name, password, **kw):
        body = {"name": name, "password": password}
        body.update(kw)
        return self.server.api("POST", "/api/v1/login", body, token=None)

    def test_login(self):
        name = uid("bob")
        make_user(self.server, name, "operator")
        t0 = harness.now_ms()
        st, js = self.login(name, PASSWORD)
        self.assertEqual(st, 201, js)
        self.assertRegex(js["token"], r"^drv_[A-Za-z0-9_-]{43}$")
        self.assertEqual(js["role"], "operator")
        self.assertEqual(js["name"], "login:" + name)
        # a 12 h default lifetime
        self.assertAlmostEqual(js["expires_at"] - t0, 12 * 3600 * 1000, delta=60000)
        tok = js["token"]
        self.assertEqual(self.server.api("GET", "/api/v1/devices", token=tok)[0], 200)
        self.assertEqual(self.server.api("GET", "/api/v1/users", token=tok)[0], 403)
        # a chosen lifetime, within the token limits
        st, js = self.login(name, PASSWORD, expires_in_s=120)
        self.assertEqual(st, 201, js)
        self.assertEqual(js["expires_at"] - js["created_at"], 120000)
        st, err = self.login(name, PASSWORD, expires_in_s=5)
        self.assertError(st, err, 400, "bad_request")
        # the login tokens are listed under the user's name
        names = [t["name"] for t in self.server.api("GET", "/api/v1/tokens")[1]["tokens"]]
        self.assertEqual(names.count("login:" + name), 2)

    def test_login_failures_look_alike(self):
        name = uid("carol")
        make_user(self.server, name, "viewer")
        answers = []
        for n, pw in [(name, PASSWORD + "!"), (uid("ghost"), PASSWORD), ("a/b", PASSWORD),
                      (name, "")]:
            t = time.monotonic()
            st, js = self.login(n, pw)
            answers.append((st, js, time.monotonic() - t))
        for st, js, _ in answers:
            self.assertError(st, js, 401, "unauthorized")
        self.assertEqual(len({js["detail"] for _, js, _ in answers}), 1, answers)
        # an unknown user costs a password hash too (not a fast "no such user")
        wrong, ghost = answers[0][2], answers[1][2]
        self.assertGreater(ghost, wrong / 4, answers)
        # malformed requests are 400, not 401
        for b in ({"name": name}, {"password": PASSWORD}, {"name": 5, "password": "x"}, []):
            st, js = self.server.api("POST", "/api/v1/login", b, token=None)
            self.assertError(st, js, 400, "bad_request")

    def test_changes_revoke_logins(self):
        for change, want in [({"role": "viewer"}, "role"), ({"disabled": True}, "disable"),
                             ({"password": PASSWORD + " 2"}, "password"), (None, "delete")]:
            name = uid("dave")
            make_user(self.server, name, "operator")
            st, js = self.login(name, PASSWORD)
            self.assertEqual(st, 201, js)
            tok = js["token"]
            self.assertEqual(self.server.api("GET", "/api/v1/devices", token=tok)[0], 200)
            if change is None:
                st, _ = self.server.api("DELETE", "/api/v1/users/" + name)
                self.assertEqual(st, 204)
            else:
                st, js = self.server.api("PATCH", "/api/v1/users/" + name, change)
                self.assertEqual(st, 200, js)
            st, err = self.server.api("GET", "/api/v1/devices", token=tok)
            self.assertError(st, err, 401, "unauthorized")
            if want == "password":
                self.assertEqual(self.login(name, PASSWORD)[0], 401)
                self.assertEqual(self.login(name, PASSWORD + " 2")[0], 201)
            elif want == "disable":
                self.assertEqual(self.login(name, PASSWORD)[0], 401)
                st, _ = self.server.api("PATCH", "/api/v1/users/" + name, {"disabled": False})
                self.assertEqual(st, 200)
                self.assertEqual(self.login(name, PASSWORD)[0], 201)
            elif want == "role":
                st, js = self.login(name, PASSWORD)
                self.assertEqual((st, js["role"]), (201, "viewer"))
            else:
                self.assertEqual(self.login(name, PASSWORD)[0], 401)

    def test_users_need_admin(self):
        op = make_token(self.server, "operator")["token"]
        st, js = self.server.api("POST", "/api/v1/users",
                                 {"name": uid("x"), "role": "admin", "password": PASSWORD},
                                 token=op)
        self.assertError(st, js, 403, "forbidden")
        st, js = self.server.api("POST", "/api/v1/tokens", {"name": "x", "role": "admin"},
                                 token=op)
        self.assertError(st, js, 403, "forbidden")


class LoginLimitTest(harness.ServerTestCase):
    """Defaults: 10 failures per 60 s. From loopback only the per-name limit
    applies (a local proxy would make every client loopback)."""

    def login(self, name, password):
        return self.server.request("POST", "/api/v1/login",
                                   {"name": name, "password": password}, token=None)

    def test_429_per_user_name(self):
        name = uid("erin")
        make_user(self.server, name, "viewer")
        for i in range(10):
            st, _h, raw = self.login(name, "wrong password %d" % i)
            self.assertEqual(st, 401, raw)
        st, hdrs, raw = self.login(name, PASSWORD)  # even the right one, now
        self.assertEqual(st, 429, raw)
        js = json.loads(raw)
        self.assertEqual(js["error"], "too_many_requests")
        self.assertIn("retry-after", hdrs)
        self.assertTrue(1 <= int(hdrs["retry-after"]) <= 60, hdrs)
        # another name from the same (loopback) source is unaffected
        other = uid("frank")
        make_user(self.server, other, "viewer")
        st, _h, raw = self.login(other, PASSWORD)
        self.assertEqual(st, 201, raw)

    def test_success_clears_the_name(self):
        name = uid("gina")
        make_user(self.server, name, "viewer")
        for _ in range(9):
            self.assertEqual(self.login(name, "nope nope nope")[0], 401)
        self.assertEqual(self.login(name, PASSWORD)[0], 201)
        for _ in range(9):
            self.assertEqual(self.login(name, "nope nope nope")[0], 401)
        self.assertEqual(self.login(name, PASSWORD)[0], 201)


class SourceLimitTest(harness.ServerTestCase):
    """auth_fail_loopback on, a limit of 3: the source itself is limited."""

    server_config = "auth_fail_limit = 3\nauth_fail_window_s = 30\nauth_fail_loopback = true\n"

    def test_login_429_per_source(self):
        good = uid("hank")
        make_user(self.server, good, "viewer")
        for i in range(3):
            st, _h, raw = self.server.request("POST", "/api/v1/login",
                                              {"name": uid("nobody"), "password": "x" * 12},
                                              token=None)
            self.assertEqual(st, 401, raw)
        st, hdrs, raw = self.server.request("POST", "/api/v1/login",
                                            {"name": good, "password": PASSWORD}, token=None)
        self.assertEqual(st, 429, raw)
        self.assertEqual(json.loads(raw)["error"], "too_many_requests")
        self.assertTrue(1 <= int(hdrs["retry-after"]) <= 30, hdrs)
        # bearer tokens are not limited by failed logins
        self.assertEqual(self.server.api("GET", "/api/v1/devices")[0], 200)

    def test_mqtt_banned_per_source(self):
        good, secret = self.new_device("good")
        for i in range(3):
            d, s = self.new_device("guess")
            c = self.mqtt(d, d, s + "x", version=4)
            self.assertEqual(c.connect(), RC311_BAD_CREDENTIALS)
            c.close()
        for version, want in ((5, RC5_BANNED), (4, RC311_NOT_AUTHORIZED)):
            c = self.mqtt(good, good, secret, version=version)
            self.assertEqual(c.connect(), want, "version %d" % version)
            c.close()


class MqttLimitTest(harness.ServerTestCase):
    """Defaults: 10 failed authentications per client id per 60 s."""

    def connack(self, client_id, password, version):
        c = self.mqtt(client_id, client_id, password, version=version)
        rc = c.connect()
        if rc != 0:
            c.wait_disconnected(3)
        c.close()
        return rc

    def test_wrong_secrets_ban_the_id_only(self):
        target, secret = self.new_device("target")
        other, other_secret = self.new_device("other")
        for i in range(10):
            version = 4 if i % 2 else 5
            want = RC311_BAD_CREDENTIALS if version == 4 else RC5_BAD_CREDENTIALS
            self.assertEqual(self.connack(target, secret[:-2] + "zz", version), want, i)
        self.assertEqual(self.connack(target, secret + "x", 5), RC5_BANNED)
        self.assertEqual(self.connack(target, secret + "x", 4), RC311_NOT_AUTHORIZED)
        # blocked before the secret is looked at: the right one is refused too
        self.assertEqual(self.connack(target, secret, 5), RC5_BANNED)
        # a different device from the same source still connects
        for version in (4, 5):
            self.assertEqual(self.connack(other, other_secret, version), 0)
        # and the refusals are counted
        st, _h, raw = self.server.request("GET", "/metrics", token=None)
        m = re.search(rb"^drover_device_auth_failures_total (\d+)$", raw, re.M)
        self.assertIsNotNone(m)
        self.assertGreaterEqual(int(m.group(1)), 13)


class CliOperatorsTest(harness.ServerTestCase):
    """drover token / user / login against a real server."""

    def cli(self, *args, input=None, env=None):
        e = {"DROVER_SERVER": self.server.base_url, "DROVER_TOKEN": self.server.token,
             "DROVER_CONFIG": os.path.join(self.server.tmp, "no-such-config")}
        if env:
            e.update(env)
        return harness.run([harness.cli_path()] + list(args), env=e, input=input)

    def test_token_commands(self):
        name = uid("cli")
        r = self.cli("token", "create", name, "--role", "viewer", "--expires-in", "2h", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        js = json.loads(r.stdout)
        self.assertEqual(js["expires_at"] - js["created_at"], 2 * 3600 * 1000)
        self.assertIn("only once", r.stderr)
        tok = js["token"]
        self.assertEqual(self.server.api("GET", "/api/v1/devices", token=tok)[0], 200)
        r = self.cli("token", "create", uid("cli"), "--role", "operator")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"token:\s+drv_[A-Za-z0-9_-]{43}")
        r = self.cli("token", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(name, r.stdout)
        self.assertIn(js["id"], r.stdout)
        self.assertNotIn(tok, r.stdout)
        self.assertNotIn("drv_", r.stdout)
        r = self.cli("token", "rm", js["id"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.server.api("GET", "/api/v1/devices", token=tok)[0], 401)
        r = self.cli("token", "rm", js["id"])
        self.assertEqual(r.returncode, 1)
        for bad in (["token", "create", "x", "--role", "root"],
                    ["token", "create", "x"],
                    ["token", "create", "x", "--role", "viewer", "--expires-in", "10x"]):
            r = self.cli(*bad)
            self.assertEqual(r.returncode, 64, "%s: %s" % (bad, r.stderr))

    def test_user_commands_and_login(self):
        name = uid("ivy")
        r = self.cli("user", "add", name, "--role", "operator", "--password-stdin",
                     input=PASSWORD + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli("user", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(name, r.stdout)
        self.assertIn("operator", r.stdout)
        r = self.cli("user", "add", uid("short"), "--role", "viewer", "--password-stdin",
                     input="short\n")
        self.assertEqual(r.returncode, 64, r.stderr)
        # login, printing the token
        r = self.cli("login", name, "--password-stdin", input=PASSWORD + "\n",
                     env={"DROVER_TOKEN": ""})
        self.assertEqual(r.returncode, 0, r.stderr)
        tok = r.stdout.strip()
        self.assertRegex(tok, r"^drv_[A-Za-z0-9_-]{43}$")
        self.assertEqual(self.server.api("GET", "/api/v1/devices", token=tok)[0], 200)
        # a wrong password
        r = self.cli("login", name, "--password-stdin", input="wrong password!\n",
                     env={"DROVER_TOKEN": ""})
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("drv_", r.stdout)
        # --save keeps the server line and replaces the token line, mode 0600
        cfg = os.path.join(self.server.tmp, "cli-config")
        with open(cfg, "w") as f:
            f.write("# mine\nserver = %s\ntoken = drv_old\n" % self.server.base_url)
        r = self.cli("login", name, "--password-stdin", "--save", input=PASSWORD + "\n",
                     env={"DROVER_TOKEN": "", "DROVER_CONFIG": cfg, "DROVER_SERVER": ""})
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(cfg) as f:
            text = f.read()
        self.assertIn("# mine", text)
        self.assertIn("server = %s" % self.server.base_url, text)
        self.assertNotIn("drv_old", text)
        saved = re.search(r"^token = (drv_\S+)$", text, re.M).group(1)
        self.assertEqual(os.stat(cfg).st_mode & 0o777, 0o600)
        # the saved token is used by the next command
        r = self.cli("device", "list", env={"DROVER_TOKEN": "", "DROVER_CONFIG": cfg,
                                            "DROVER_SERVER": ""})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.server.api("GET", "/api/v1/devices", token=saved)[0], 200)
        # user set: role, disable, password
        r = self.cli("user", "set", name, "--role", "viewer")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.server.api("GET", "/api/v1/users/" + name)[1]["role"], "viewer")
        self.assertEqual(self.server.api("GET", "/api/v1/devices", token=saved)[0], 401)
        r = self.cli("user", "set", name, "--disable")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(self.server.api("GET", "/api/v1/users/" + name)[1]["disabled"])
        r = self.cli("user", "set", name, "--enable", "--password-stdin",
                     input="a brand new password\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli("login", name, "--password-stdin", input="a brand new password\n",
                     env={"DROVER_TOKEN": ""})
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli("user", "set", name, "--enable", "--disable")
        self.assertEqual(r.returncode, 64)
        r = self.cli("user", "set", name)
        self.assertEqual(r.returncode, 64)
        r = self.cli("user", "rm", name)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.server.api("GET", "/api/v1/users/" + name)[0], 404)


if __name__ == "__main__":
    harness.main()
