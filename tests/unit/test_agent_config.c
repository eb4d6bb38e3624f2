/* drover-agent configuration: parsing good and bad files, checks, JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_config.h"

static int parse(agent_config_t *c, const char *text, char *err, size_t errlen)
{
    agent_config_defaults(c);
    return agent_config_parse(c, text, strlen(text), err, errlen);
}

static void test_defaults(void **state)
{
    (void)state;
    agent_config_t c;
    agent_config_defaults(&c);
    assert_int_equal(c.protocol, 5);
    assert_int_equal(c.telemetry_interval_s, 60);
    assert_int_equal(c.backoff_base_ms, 1000);
    assert_int_equal(c.backoff_max_ms, 60000);
    assert_true(c.queue_max_bytes > 0);
    assert_string_equal(c.data_dir, "/var/lib/drover-agent");
    char err[256];
    /* Defaults alone lack the server, id and secret. */
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
}

static void test_good_file(void **state)
{
    (void)state;
    agent_config_t c;
    char err[256] = "";
    const char *text = "# drover-agent\n"
                       "server = 10.0.0.1:1883\n"
                       "  device_id=pump-7  \n"
                       "\n"
                       "secret = s3cr3t with = sign\n"
                       "data-dir = /var/lib/my agent\n"
                       "telemetry_interval_s = 5\n"
                       "queue_max_bytes = 1048576\n"
                       "protocol = 4\n"
                       "commands_dir = /etc/drover-agent/commands\n"
                       "backoff_base_ms = 500\n"
                       "backoff_max_ms = 30000";
    assert_int_equal(parse(&c, text, err, sizeof(err)), 0);
    assert_string_equal(c.server, "10.0.0.1:1883");
    assert_string_equal(c.device_id, "pump-7");
    assert_string_equal(c.secret, "s3cr3t with = sign");
    assert_string_equal(c.data_dir, "/var/lib/my agent");
    assert_int_equal(c.telemetry_interval_s, 5);
    assert_int_equal(c.queue_max_bytes, 1048576);
    assert_int_equal(c.protocol, 4);
    assert_int_equal(c.backoff_base_ms, 500);
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), 0);
}

static void test_bad_files(void **state)
{
    (void)state;
    agent_config_t c;
    char err[256];
    assert_int_equal(parse(&c, "server 1.2.3.4:1\n", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 1"));
    assert_int_equal(parse(&c, "\n\nnope = 1\n", err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(parse(&c, "telemetry_interval_s = 0\n", err, sizeof(err)), -EINVAL);
    assert_int_equal(parse(&c, "telemetry_interval_s = -1\n", err, sizeof(err)), -EINVAL);
    assert_int_equal(parse(&c, "telemetry_interval_s = 1x\n", err, sizeof(err)), -EINVAL);
    assert_int_equal(parse(&c, "telemetry_interval_s =\n", err, sizeof(err)), -EINVAL);
    assert_int_equal(parse(&c, "protocol = 3\n", err, sizeof(err)), -EINVAL);
    assert_int_equal(parse(&c, "queue_max_bytes = 99999999999999999999\n", err, sizeof(err)),
                     -EINVAL);
    char big[700];
    memset(big, 'a', sizeof(big));
    memcpy(big, "device_id = ", 12);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(parse(&c, big, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "too long"));
    char nul[] = "server = a\0b:1\n";
    agent_config_defaults(&c);
    assert_int_equal(agent_config_parse(&c, nul, sizeof(nul) - 1, err, sizeof(err)), -EINVAL);
    char *huge = malloc(5000);
    memset(huge, 'x', 4999);
    huge[4999] = '\0';
    assert_int_equal(parse(&c, huge, err, sizeof(err)), -EINVAL);
    free(huge);
}

static void test_check(void **state)
{
    (void)state;
    agent_config_t c;
    char err[256];
    const char *base = "server = localhost:1883\ndevice_id = d1\nsecret = x\ndata_dir = /tmp/d\n";
    assert_int_equal(parse(&c, base, err, sizeof(err)), 0);
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), 0);

    agent_config_set(&c, "server", "localhost");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "server"));
    agent_config_set(&c, "server", "localhost:1883");

    agent_config_set(&c, "device_id", "a/b");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    agent_config_set(&c, "device_id", "d1");

    agent_config_set(&c, "data_dir", "relative/dir");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    agent_config_set(&c, "data_dir", "/tmp/d");

    agent_config_set(&c, "commands_dir", "cmds");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    agent_config_set(&c, "commands_dir", "/etc/cmds");

    agent_config_set(&c, "backoff_base_ms", "5000");
    agent_config_set(&c, "backoff_max_ms", "1000");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    agent_config_set(&c, "backoff_max_ms", "60000");

    agent_config_set(&c, "log_level", "loud");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    agent_config_set(&c, "log_level", "debug");

    /* No secret: the device uses a certificate (whether it has one is
     * agent_new's business). */
    agent_config_set(&c, "secret", "");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), 0);
    assert_true(agent_config_uses_cert(&c));
    assert_true(agent_config_mqtt_tls(&c));
    agent_config_set(&c, "secret", "x");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), 0);
    assert_false(agent_config_uses_cert(&c));
    assert_false(agent_config_mqtt_tls(&c));
}

static void test_cert_keys(void **state)
{
    (void)state;
    agent_config_t c;
    char err[256];
    const char *base = "server = localhost:8883\ndevice_id = d1\ndata_dir = /tmp/d\n"
                       "claim_token = drc_abc\napi_url = https://drover.example:8443\n"
                       "ca_file = /etc/drover/ca.pem\n";
    assert_int_equal(parse(&c, base, err, sizeof(err)), 0);
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), 0);
    assert_string_equal(c.claim_token, "drc_abc");
    assert_true(c.renew_before > 0.29 && c.renew_before < 0.31); /* default 0.3 */
    assert_int_equal(c.mqtt_tls, AGENT_TLS_AUTO);
    assert_false(c.insecure_bootstrap);
    assert_true(agent_config_uses_cert(&c));
    assert_true(agent_config_mqtt_tls(&c));

    /* renew_before: a decimal in (0, 1]. */
    assert_int_equal(agent_config_set(&c, "renew_before", "0.5"), 0);
    assert_true(c.renew_before > 0.49 && c.renew_before < 0.51);
    assert_int_equal(agent_config_set(&c, "renew-before", "1.0"), 0);
    assert_true(c.renew_before >= 1.0);
    assert_int_equal(agent_config_set(&c, "renew_before", "1"), 0);
    assert_int_equal(agent_config_set(&c, "renew_before", ".25"), 0);
    const char *bad[] = {"0",   "0.0", "1.5", "-0.1",  "abc",  "1e0", "nan",
                         "inf", "",    "0x1", "0.3.1", "+0.3", " 0.3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(agent_config_set(&c, "renew_before", bad[i]), -EINVAL);
    assert_int_equal(parse(&c, "renew_before = 2\n", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "decimal"));

    /* Booleans. */
    assert_int_equal(parse(&c, base, err, sizeof(err)), 0);
    assert_int_equal(agent_config_set(&c, "insecure_bootstrap", "yes"), 0);
    assert_true(c.insecure_bootstrap);
    assert_int_equal(agent_config_set(&c, "insecure_bootstrap", "false"), 0);
    assert_false(c.insecure_bootstrap);
    assert_int_equal(agent_config_set(&c, "insecure_bootstrap", "auto"), -EINVAL);
    assert_int_equal(agent_config_set(&c, "mqtt_tls", "auto"), 0);
    assert_int_equal(c.mqtt_tls, AGENT_TLS_AUTO);
    assert_int_equal(agent_config_set(&c, "mqtt_tls", "TRUE"), 0);
    assert_int_equal(c.mqtt_tls, AGENT_TLS_ON);
    assert_int_equal(agent_config_set(&c, "mqtt_tls", "2"), -EINVAL);
    assert_int_equal(parse(&c, "mqtt_tls = maybe\n", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "auto"));

    /* Cross-field rules. */
    assert_int_equal(parse(&c, base, err, sizeof(err)), 0);
    agent_config_set(&c, "mqtt_tls", "false");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "mqtt_tls"));
    agent_config_set(&c, "mqtt_tls", "auto");

    agent_config_set(&c, "secret", "s");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "exclude"));
    agent_config_set(&c, "secret", "");

    agent_config_set(&c, "claim_token_file", "/etc/drover/claim");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    agent_config_set(&c, "claim_token", "");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), 0);
    agent_config_set(&c, "claim_token_file", "claim");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    agent_config_set(&c, "claim_token_file", "/etc/drover/claim");

    agent_config_set(&c, "api_url", "http://drover.example:8080");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "https://"));
    agent_config_set(&c, "api_url", "");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "api_url"));

    /* A secret with mqtt_tls = true needs a CA. */
    assert_int_equal(
        parse(&c, "server = h:1\ndevice_id = d\nsecret = s\nmqtt_tls = true\n", err, sizeof(err)),
        0);
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), -EINVAL);
    agent_config_set(&c, "ca_file", "/etc/ca.pem");
    assert_int_equal(agent_config_check(&c, err, sizeof(err)), 0);
    assert_true(agent_config_mqtt_tls(&c));
    agent_config_set(&c, "mqtt_tls", "false");
    assert_false(agent_config_mqtt_tls(&c));
}

static void test_json_hides_secret(void **state)
{
    (void)state;
    agent_config_t c;
    char err[256];
    assert_int_equal(
        parse(&c, "device_id = d1\nsecret = hunter2\nserver = h:1\n", err, sizeof(err)), 0);
    json_t *j = agent_config_to_json(&c);
    assert_non_null(j);
    assert_null(json_object_get(j, "secret"));
    assert_string_equal(json_string_value(json_object_get(j, "device_id")), "d1");
    assert_int_equal(json_integer_value(json_object_get(j, "telemetry_interval_s")), 60);
    assert_true(json_is_null(json_object_get(j, "commands_dir")));
    char *s = json_dumps(j, 0);
    assert_null(strstr(s, "hunter2"));
    free(s);
    json_decref(j);

    assert_int_equal(parse(&c,
                           "device_id = d1\nclaim_token = drc_topsecret\nserver = h:1\n"
                           "renew_before = 0.5\nmqtt_tls = auto\ninsecure_bootstrap = on\n",
                           err, sizeof(err)),
                     0);
    j = agent_config_to_json(&c);
    assert_non_null(j);
    assert_null(json_object_get(j, "claim_token"));
    assert_true(json_real_value(json_object_get(j, "renew_before")) > 0.49);
    assert_string_equal(json_string_value(json_object_get(j, "mqtt_tls")), "auto");
    assert_true(json_is_true(json_object_get(j, "insecure_bootstrap")));
    s = json_dumps(j, 0);
    assert_null(strstr(s, "drc_topsecret"));
    free(s);
    json_decref(j);
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/drover-agent-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "server = h:1\ndevice_id = d\nsecret = s\nbogus = 1\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    agent_config_t c;
    agent_config_defaults(&c);
    char err[512];
    assert_int_equal(agent_config_load_file(&c, path, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, ":4:"));
    unlink(path);
    assert_true(agent_config_load_file(&c, path, err, sizeof(err)) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),          cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_bad_files),         cmocka_unit_test(test_check),
        cmocka_unit_test(test_json_hides_secret), cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_cert_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
