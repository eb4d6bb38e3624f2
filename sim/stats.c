/*
 * Merging and reporting drover-sim's measurements (see stats.h).
 *
 * Rates are computed over the span in which the thing happened, not over
 * the whole run: connects/s over the connect phase (start to every device
 * connected), messages/s from the first PUBLISH to the last PUBACK (or last
 * PUBLISH at QoS 0), deliveries/s from the first to the last delivery.
 * Latencies are reported in milliseconds.
 */
#include "sim/stats.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "sim/mqtt_client.h"

static const char *const err_names[SIM_ERR_COUNT] = {
    [SIM_ERR_SOCKET] = "socket",
    [SIM_ERR_CONNECT] = "connect_failed",
    [SIM_ERR_TIMEOUT] = "connack_timeout",
    [SIM_ERR_CLOSED] = "closed_before_connack",
    [SIM_ERR_REFUSED] = "connack_refused",
    [SIM_ERR_DROPPED] = "dropped",
    [SIM_ERR_SERVER_DISCONNECT] = "server_disconnect",
    [SIM_ERR_PROTOCOL] = "protocol",
    [SIM_ERR_PUBACK] = "puback_error",
    [SIM_ERR_SUBACK] = "suback_refused",
    [SIM_ERR_COMMANDS] = "commands_dropped",
    [SIM_ERR_UNACKED] = "unacked_at_end",
    [SIM_ERR_WORKER] = "worker_failed",
};

const char *sim_err_name(sim_err_t e)
{
    return e < SIM_ERR_COUNT ? err_names[e] : "unknown";
}

void sim_stats_init(sim_stats_t *s)
{
    memset(s, 0, sizeof(*s));
}

static int64_t min_set(int64_t a, int64_t b)
{
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

void sim_stats_merge(sim_stats_t *dst, const sim_stats_t *src, bool first)
{
    dst->devices += src->devices;
    dst->connected += src->connected;
    dst->connected_peak += src->connected_peak; /* an upper bound across workers */
    dst->ready += src->ready;
    dst->ready_target += src->ready_target;
    dst->inflight += src->inflight;
    dst->connect_attempts += src->connect_attempts;
    dst->connects += src->connects;
    dst->reconnects += src->reconnects;
    dst->pub_sent += src->pub_sent;
    dst->pub_acked += src->pub_acked;
    dst->pub_skipped += src->pub_skipped;
    dst->pub_lost += src->pub_lost;
    dst->bytes_sent += src->bytes_sent;
    dst->cmd_received += src->cmd_received;
    dst->cmd_replied += src->cmd_replied;
    dst->cmd_failed += src->cmd_failed;
    dst->cmd_acked += src->cmd_acked;
    dst->desired_received += src->desired_received;
    dst->reported_sent += src->reported_sent;
    dst->reported_acked += src->reported_acked;
    dst->sub_received += src->sub_received;
    dst->sub_duplicates += src->sub_duplicates;
    dst->sub_gaps += src->sub_gaps;
    dst->sub_late += src->sub_late;
    dst->relay_gave_up += src->relay_gave_up;
    for (int i = 0; i < SIM_ERR_COUNT; i++)
        dst->errors[i] += src->errors[i];
    for (int i = 0; i < 256; i++)
        dst->refused[i] += src->refused[i];

    dst->t_start = min_set(dst->t_start, src->t_start);
    /* "All" events count only when every worker got there. */
    if (first) {
        dst->t_all_connected = src->t_all_connected;
        dst->t_recovered = src->t_recovered;
    } else {
        dst->t_all_connected = dst->t_all_connected && src->t_all_connected
                                   ? max64(dst->t_all_connected, src->t_all_connected)
                                   : 0;
        if (dst->t_drop || src->t_drop)
            dst->t_recovered = dst->t_recovered && src->t_recovered
                                   ? max64(dst->t_recovered, src->t_recovered)
                                   : 0;
    }
    dst->t_first_pub = min_set(dst->t_first_pub, src->t_first_pub);
    dst->t_last_pub = max64(dst->t_last_pub, src->t_last_pub);
    dst->t_last_ack = max64(dst->t_last_ack, src->t_last_ack);
    dst->t_first_sub = min_set(dst->t_first_sub, src->t_first_sub);
    dst->t_last_sub = max64(dst->t_last_sub, src->t_last_sub);
    dst->t_drop = min_set(dst->t_drop, src->t_drop);
    dst->t_end = max64(dst->t_end, src->t_end);
    sim_hist_merge(&dst->connack, &src->connack);
    sim_hist_merge(&dst->puback, &src->puback);
    sim_hist_merge(&dst->pubrec, &src->pubrec);
    sim_hist_merge(&dst->command, &src->command);
    sim_hist_merge(&dst->relay, &src->relay);
}

uint64_t sim_stats_errors(const sim_stats_t *s)
{
    uint64_t n = 0;
    for (int i = 0; i < SIM_ERR_COUNT; i++)
        n += s->errors[i];
    return n;
}

/* ---- derived figures ----------------------------------------------------- */

typedef struct {
    double elapsed_s;
    double all_connected_s; /* < 0: never */
    double connects_per_s;
    double pub_window_s, sent_per_s, acked_per_s;
    double sub_per_s;
    double drop_at_s, recovered_s; /* < 0: none */
} derived_t;

static double span_s(int64_t a, int64_t b)
{
    return a && b && b > a ? (double)(b - a) / 1e6 : 0;
}

static double per_s(uint64_t n, double s)
{
    return s > 0 ? (double)n / s : 0;
}

static void derive(const sim_opts_t *o, const sim_stats_t *s, int64_t t0, derived_t *d)
{
    memset(d, 0, sizeof(*d));
    d->elapsed_s = span_s(t0, s->t_end);
    d->all_connected_s = s->t_all_connected ? span_s(t0, s->t_all_connected) : -1;
    if (s->t_all_connected)
        d->connects_per_s = per_s(s->devices, span_s(s->t_start, s->t_all_connected));
    else
        d->connects_per_s = per_s(s->connects, d->elapsed_s);
    double sent_span = span_s(s->t_first_pub, s->t_last_pub);
    d->sent_per_s = per_s(s->pub_sent, sent_span);
    if (o->qos >= 1) {
        d->pub_window_s = span_s(s->t_first_pub, s->t_last_ack);
        d->acked_per_s = per_s(s->pub_acked, d->pub_window_s);
    } else {
        d->pub_window_s = sent_span;
    }
    d->sub_per_s = per_s(s->sub_received, span_s(s->t_first_sub, s->t_last_sub));
    d->drop_at_s = s->t_drop ? span_s(t0, s->t_drop) : -1;
    d->recovered_s = s->t_drop && s->t_recovered ? span_s(s->t_drop, s->t_recovered) : -1;
}

/* ---- live line ----------------------------------------------------------- */

void sim_report_live(FILE *f, const sim_stats_t *now, const sim_stats_t *prev, double t_s,
                     double dt_s)
{
    static sim_hist_t d; /* large: not on the stack; the parent is single-threaded */
    if (dt_s <= 0)
        dt_s = 1;
    fprintf(f, "[%6.1fs] conn %llu/%llu +%.0f/s", t_s, (unsigned long long)now->connected,
            (unsigned long long)now->devices, (double)(now->connects - prev->connects) / dt_s);
    sim_hist_diff(&d, &now->connack, &prev->connack);
    if (d.n)
        fprintf(f, " connack p99 %.1fms", sim_hist_quantile(&d, 0.99) / 1e3);
    fprintf(f, " | pub %.0f/s", (double)(now->pub_sent - prev->pub_sent) / dt_s);
    if (now->pub_acked || now->inflight) {
        fprintf(f, " ack %.0f/s", (double)(now->pub_acked - prev->pub_acked) / dt_s);
        sim_hist_diff(&d, &now->puback, &prev->puback);
        if (d.n)
            fprintf(f, " p50 %.1f p99 %.1f p99.9 %.1fms", sim_hist_quantile(&d, 0.5) / 1e3,
                    sim_hist_quantile(&d, 0.99) / 1e3, sim_hist_quantile(&d, 0.999) / 1e3);
        fprintf(f, " inflight %llu", (unsigned long long)now->inflight);
    }
    if (now->cmd_received)
        fprintf(f, " | cmd %llu/%llu", (unsigned long long)now->cmd_acked,
                (unsigned long long)now->cmd_received);
    if (now->sub_received)
        fprintf(f, " | watcher %.0f/s", (double)(now->sub_received - prev->sub_received) / dt_s);
    fprintf(f, " | errors %llu\n", (unsigned long long)sim_stats_errors(now));
    fflush(f);
}

/* ---- text report ----------------------------------------------------------- */

static void text_latency(FILE *f, const char *what, const sim_hist_t *h)
{
    if (h->n == 0)
        return;
    fprintf(f, "  %-22s p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  (n=%llu)\n", what,
            sim_hist_quantile(h, 0.5) / 1e3, sim_hist_quantile(h, 0.9) / 1e3,
            sim_hist_quantile(h, 0.99) / 1e3, sim_hist_quantile(h, 0.999) / 1e3,
            (double)h->max / 1e3, (unsigned long long)h->n);
}

void sim_report_text(FILE *f, const sim_opts_t *o, const sim_stats_t *s, int64_t t0,
                     bool interrupted)
{
    derived_t d;
    derive(o, s, t0, &d);
    fprintf(f, "drover-sim: %llu devices, MQTT %s, %u worker%s, %.1f s%s\n",
            (unsigned long long)s->devices, o->version == 5 ? "5" : "3.1.1", o->workers,
            o->workers == 1 ? "" : "s", d.elapsed_s, interrupted ? " (interrupted)" : "");
    fprintf(f, "  connected              %llu at the end, %llu accepted of %llu attempts",
            (unsigned long long)s->connected, (unsigned long long)s->connects,
            (unsigned long long)s->connect_attempts);
    if (d.all_connected_s >= 0)
        fprintf(f, "; all in %.2f s (%.0f connects/s)", d.all_connected_s, d.connects_per_s);
    fprintf(f, "\n");
    text_latency(f, "CONNACK", &s->connack);
    if (s->pub_sent) {
        fprintf(f, "  telemetry QoS %d        %llu sent (%.0f/s)", o->qos,
                (unsigned long long)s->pub_sent, d.sent_per_s);
        if (o->qos >= 1)
            fprintf(f, ", %llu acknowledged (%.0f/s)", (unsigned long long)s->pub_acked,
                    d.acked_per_s);
        if (s->pub_skipped)
            fprintf(f, ", %llu ticks skipped (window full)", (unsigned long long)s->pub_skipped);
        fprintf(f, "\n");
        text_latency(f, o->qos == 2 ? "PUBLISH->PUBCOMP" : "PUBLISH->PUBACK", &s->puback);
        text_latency(f, "PUBLISH->PUBREC", &s->pubrec);
    }
    if (s->cmd_received)
        fprintf(f,
                "  commands               %llu received, %llu answered (%llu failed), %llu acked\n",
                (unsigned long long)s->cmd_received, (unsigned long long)s->cmd_replied,
                (unsigned long long)s->cmd_failed, (unsigned long long)s->cmd_acked);
    text_latency(f, "command->result PUBACK", &s->command);
    if (s->desired_received || s->reported_sent)
        fprintf(f, "  twin                   %llu desired received, %llu reports (%llu acked)\n",
                (unsigned long long)s->desired_received, (unsigned long long)s->reported_sent,
                (unsigned long long)s->reported_acked);
    if (o->subscribe_all) {
        fprintf(f, "  watcher QoS %d          %llu delivered (%.0f/s)", o->sub_qos,
                (unsigned long long)s->sub_received, d.sub_per_s);
        if (s->sub_duplicates)
            fprintf(f, ", %llu duplicates", (unsigned long long)s->sub_duplicates);
        if (s->sub_gaps || s->sub_late)
            fprintf(f, ", %llu skipped over, %llu late (per publisher order)",
                    (unsigned long long)s->sub_gaps, (unsigned long long)s->sub_late);
        if (s->relay_gave_up)
            fprintf(f, ", %llu given up (relay window stalled)",
                    (unsigned long long)s->relay_gave_up);
        fprintf(f, "\n");
        text_latency(f, "relay", &s->relay);
    }
    if (d.drop_at_s >= 0) {
        fprintf(f, "  reconnect storm        dropped all at %.1f s; ", d.drop_at_s);
        if (d.recovered_s >= 0)
            fprintf(f, "all back after %.2f s\n", d.recovered_s);
        else
            fprintf(f, "not all back by the end\n");
    }
    fprintf(f, "  errors                 %llu", (unsigned long long)sim_stats_errors(s));
    for (int i = 0; i < SIM_ERR_COUNT; i++)
        if (s->errors[i])
            fprintf(f, "  %s=%llu", sim_err_name((sim_err_t)i), (unsigned long long)s->errors[i]);
    for (int i = 1; i < 256; i++)
        if (s->refused[i])
            fprintf(f, "  [CONNACK 0x%02x %s: %llu]", i,
                    sim_mqtt_connack_str(o->version, (uint8_t)i),
                    (unsigned long long)s->refused[i]);
    fprintf(f, "\n");
    fflush(f);
}

/* ---- JSON report ----------------------------------------------------------- */

static json_t *num_or_null(double v)
{
    return v >= 0 ? json_real(v) : json_null();
}

static json_t *latency_json(const sim_hist_t *h)
{
    if (h->n == 0)
        return json_null();
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "n", (json_int_t)h->n, "p50",
                     sim_hist_quantile(h, 0.5) / 1e3, "p90", sim_hist_quantile(h, 0.9) / 1e3, "p99",
                     sim_hist_quantile(h, 0.99) / 1e3, "p999", sim_hist_quantile(h, 0.999) / 1e3,
                     "mean", sim_hist_mean(h) / 1e3, "min", (double)h->min / 1e3, "max",
                     (double)h->max / 1e3);
}

static json_t *u(uint64_t v)
{
    return json_integer((json_int_t)v);
}

int sim_report_json(FILE *f, const sim_opts_t *o, const sim_stats_t *s, int64_t t0,
                    bool interrupted)
{
    derived_t d;
    derive(o, s, t0, &d);
    json_t *root = json_object();
    json_t *errors = json_object();
    json_t *codes = json_object();
    if (!root || !errors || !codes)
        goto fail;
    char target[SIM_HOST_MAX + 8];
    snprintf(target, sizeof(target), "%s:%d", o->mqtt_host, o->mqtt_port);
    json_object_set_new(root, "target", json_string(target));
    json_object_set_new(root, "protocol", json_string(o->version == 5 ? "5" : "3.1.1"));
    json_object_set_new(root, "workers", u(o->workers));
    json_object_set_new(root, "devices", u(s->devices));
    json_object_set_new(root, "elapsed_s", json_real(d.elapsed_s));
    json_object_set_new(root, "interrupted", json_boolean(interrupted));

    json_object_set_new(
        root, "connections",
        json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:o}", "connected_at_end",
                  u(s->connected), "peak", u(s->connected_peak), "ready_at_end", u(s->ready),
                  "attempts", u(s->connect_attempts), "accepted", u(s->connects), "reconnects",
                  u(s->reconnects), "all_connected_s", num_or_null(d.all_connected_s),
                  "connects_per_s", d.connects_per_s, "connack_ms", latency_json(&s->connack)));

    json_t *tel = json_pack(
        "{s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:f, s:o, s:o}", "qos", o->qos, "interval_s",
        o->telemetry_interval_us >= 0 ? json_real((double)o->telemetry_interval_us / 1e6)
                                      : json_null(),
        "sent", u(s->pub_sent), "acked", u(s->pub_acked), "skipped_window_full", u(s->pub_skipped),
        "lost_in_drops", u(s->pub_lost), "inflight_at_end", u(s->inflight), "bytes_sent",
        u(s->bytes_sent), "window_s", d.pub_window_s, "sent_per_s", d.sent_per_s, "acked_per_s",
        o->qos >= 1 ? json_real(d.acked_per_s) : json_null(), "puback_ms",
        latency_json(&s->puback));
    if (tel) {
        /* When the telemetry phase ran, on the run's clock (seconds). */
        json_object_set_new(tel, "first_sent_s",
                            num_or_null(s->t_first_pub ? span_s(t0, s->t_first_pub) : -1));
        json_object_set_new(tel, "last_sent_s",
                            num_or_null(s->t_last_pub ? span_s(t0, s->t_last_pub) : -1));
        json_object_set_new(tel, "last_ack_s",
                            num_or_null(s->t_last_ack ? span_s(t0, s->t_last_ack) : -1));
        /* QoS 2: puback_ms is PUBLISH -> PUBCOMP, the whole exchange. */
        json_object_set_new(tel, "pubrec_ms", latency_json(&s->pubrec));
    }
    json_object_set_new(root, "telemetry", tel);

    json_object_set_new(root, "commands",
                        json_pack("{s:o, s:o, s:o, s:o, s:o}", "received", u(s->cmd_received),
                                  "replied", u(s->cmd_replied), "failed", u(s->cmd_failed), "acked",
                                  u(s->cmd_acked), "round_trip_ms", latency_json(&s->command)));
    json_object_set_new(root, "twin",
                        json_pack("{s:o, s:o, s:o}", "desired_received", u(s->desired_received),
                                  "reported_sent", u(s->reported_sent), "reported_acked",
                                  u(s->reported_acked)));
    if (o->subscribe_all)
        json_object_set_new(root, "watcher",
                            json_pack("{s:s, s:i, s:o, s:f, s:o, s:o, s:o, s:o, s:o, s:o}",
                                      "filter", o->subscribe_all, "qos", o->sub_qos, "received",
                                      u(s->sub_received), "per_s", d.sub_per_s, "duplicates",
                                      u(s->sub_duplicates), "gaps", u(s->sub_gaps), "late",
                                      u(s->sub_late), "relay_window",
                                      o->relay_window ? u(o->relay_window) : json_null(), "gave_up",
                                      u(s->relay_gave_up), "relay_ms", latency_json(&s->relay)));
    else
        json_object_set_new(root, "watcher", json_null());
    if (d.drop_at_s >= 0)
        json_object_set_new(root, "reconnect",
                            json_pack("{s:f, s:o}", "drop_at_s", d.drop_at_s, "recovered_s",
                                      num_or_null(d.recovered_s)));
    else
        json_object_set_new(root, "reconnect", json_null());

    json_object_set_new(errors, "total", u(sim_stats_errors(s)));
    for (int i = 0; i < SIM_ERR_COUNT; i++)
        json_object_set_new(errors, sim_err_name((sim_err_t)i), u(s->errors[i]));
    for (int i = 1; i < 256; i++) {
        if (!s->refused[i])
            continue;
        char k[8];
        snprintf(k, sizeof(k), "0x%02x", i);
        json_object_set_new(codes, k, u(s->refused[i]));
    }
    json_object_set_new(errors, "connack_codes", codes);
    codes = NULL;
    json_object_set_new(root, "errors", errors);
    errors = NULL;
    if (json_dumpf(root, f, JSON_COMPACT | JSON_REAL_PRECISION(7)) < 0)
        goto fail;
    fputc('\n', f);
    fflush(f);
    json_decref(root);
    return 0;
fail:
    json_decref(codes);
    json_decref(errors);
    json_decref(root);
    return -ENOMEM;
}
