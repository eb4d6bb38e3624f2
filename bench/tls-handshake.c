/*
 * tls-handshake: TLS handshakes per second against one server, full or
 * resumed, for bench/tls-bench.sh.
 *
 * One thread, blocking sockets, one connection at a time: connect, TLS
 * handshake, (optionally) an MQTT CONNECT/CONNACK/DISCONNECT, close
 * (close_notify, then close), again until --seconds have passed. A
 * sequential client keeps the measurement simple and comparable between
 * servers; the server's cost per handshake comes from its CPU time,
 * which the script reads from /proc, not from this rate.
 *
 * Resumption (--resume): the client offers the newest session it holds.
 * With TLS 1.2 the session is known when the handshake ends; with TLS 1.3
 * the server sends tickets after the handshake, so the client reads them
 * (a short wait for readable data, then a non-blocking SSL_read that
 * processes the NewSessionTicket records) before closing, as a device
 * that stays connected would have. `openssl s_time -reuse` does not do
 * that, which is why it never resumes TLS 1.3 sessions.
 *
 * --mqtt-creds FILE ("id secret" lines) adds a whole MQTT 3.1.1 connect
 * with password authentication over the TLS connection, cycling through
 * the devices; a CONNACK other than 0 is an error. With --no-tls the same
 * MQTT connect runs over plain TCP, as the baseline.
 *
 * Loopback only (127.0.0.0/8): a load tool.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_CREDS 100000
#define TICKET_WAIT_MS 200

typedef struct cred {
    char id[65];
    char secret[128];
} cred_t;

typedef struct opts {
    const char *host;
    int port;
    const char *cafile;
    double seconds;
    int tls_version; /* 12 or 13 */
    bool resume;
    bool plain; /* --no-tls: MQTT over plain TCP (with --mqtt-creds) */
    const char *creds_path;
    bool json;
} opts_t;

typedef struct stats {
    unsigned long ok, reused, errors, connack_refused;
    double elapsed;
} stats_t;

static SSL_SESSION *g_session;       /* the newest session (resume mode) */
static unsigned long g_new_sessions; /* sessions received so far */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keeps the newest session the server gave us. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    if (g_session != NULL)
        SSL_SESSION_free(g_session);
    g_session = sess;
    g_new_sessions++;
    return 1; /* we hold the reference */
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tls-handshake --port P --cafile CA.pem [--host 127.0.0.1]\n"
               "                     [--seconds 5] [--tls 1.2|1.3] [--resume]\n"
               "                     [--mqtt-creds FILE [--no-tls]] [--json]\n");
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"cafile", required_argument, NULL, 'c'},
        {"seconds", required_argument, NULL, 's'},
        {"tls", required_argument, NULL, 't'},
        {"resume", no_argument, NULL, 'r'},
        {"mqtt-creds", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},
        {"no-tls", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    *o = (opts_t){.host = "127.0.0.1", .seconds = 5.0, .tls_version = 13};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'h':
            o->host = optarg;
            break;
        case 'p': {
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 1 || v > 65535)
                return -1;
            o->port = (int)v;
            break;
        }
        case 'c':
            o->cafile = optarg;
            break;
        case 's':
            o->seconds = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(o->seconds > 0 && o->seconds <= 3600))
                return -1;
            break;
        case 't':
            if (strcmp(optarg, "1.2") == 0)
                o->tls_version = 12;
            else if (strcmp(optarg, "1.3") == 0)
                o->tls_version = 13;
            else
                return -1;
            break;
        case 'r':
            o->resume = true;
            break;
        case 'm':
            o->creds_path = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'n':
            o->plain = true;
            break;
        case 'H':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc || o->port == 0 || (o->cafile == NULL && !o->plain) ||
        (o->plain && o->creds_path == NULL))
        return -1;
    struct in_addr a;
    if (inet_pton(AF_INET, o->host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
        fprintf(stderr, "tls-handshake: --host must be an IPv4 address in 127.0.0.0/8\n");
        return -1;
    }
    return 0;
}

/* Reads "id secret" lines. Returns the count, or -1. */
static long load_creds(const char *path, cred_t **out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "tls-handshake: %s: %s\n", path, strerror(errno));
        return -1;
    }
    cred_t *v = calloc(MAX_CREDS, sizeof(*v));
    if (v == NULL) {
        fclose(f);
        return -1;
    }
    long n = 0;
    char line[512];
    while (n < MAX_CREDS && fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%64s %127s", v[n].id, v[n].secret) == 2)
            n++;
    }
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "tls-handshake: no \"id secret\" lines in %s\n", path);
        free(v);
        return -1;
    }
    *out = v;
    return n;
}

static int tcp_connect(const opts_t *o)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    inet_pton(AF_INET, o->host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {5, 0}; /* no read or write may hang the run */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* TLS 1.3: the tickets follow the handshake; read them so the next
 * connection can resume. */
static void read_tickets(SSL *ssl, int fd)
{
    unsigned long before = g_new_sessions;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    double deadline = now_s() + TICKET_WAIT_MS / 1000.0;
    while (g_new_sessions == before) {
        int left = (int)((deadline - now_s()) * 1000);
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            break;
        char b[64];
        int n = SSL_read(ssl, b, sizeof(b));
        if (n <= 0 && SSL_get_error(ssl, n) != SSL_ERROR_WANT_READ)
            break;
    }
    fcntl(fd, F_SETFL, fl);
}

static size_t put_str(unsigned char *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (unsigned char)(n >> 8);
    p[1] = (unsigned char)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

/* Writes or reads over TLS (ssl) or the plain socket (ssl NULL). */
static int io_write(SSL *ssl, int fd, const void *b, size_t n)
{
    if (ssl != NULL)
        return SSL_write(ssl, b, (int)n) == (int)n ? 0 : -1;
    return write(fd, b, n) == (ssize_t)n ? 0 : -1;
}

static int io_read(SSL *ssl, int fd, void *b, size_t n)
{
    return ssl != NULL ? SSL_read(ssl, b, (int)n) : (int)read(fd, b, n);
}

/* MQTT 3.1.1 CONNECT (clean session, user = client id, password), CONNACK,
 * DISCONNECT. Returns the CONNACK code, or -1 on an I/O or protocol error. */
static int mqtt_connect(SSL *ssl, int fd, const cred_t *c)
{
    unsigned char pkt[512];
    size_t body = 10 + 2 + strlen(c->id) + 2 + strlen(c->id) + 2 + strlen(c->secret);
    if (body > 127 * 3)
        return -1;
    size_t i = 0;
    pkt[i++] = 0x10;
    if (body > 127) {
        pkt[i++] = (unsigned char)(0x80 | (body & 0x7f));
        pkt[i++] = (unsigned char)(body >> 7);
    } else {
        pkt[i++] = (unsigned char)body;
    }
    static const unsigned char hdr[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60};
    memcpy(pkt + i, hdr, sizeof(hdr));
    i += sizeof(hdr);
    i += put_str(pkt + i, c->id);
    i += put_str(pkt + i, c->id);
    i += put_str(pkt + i, c->secret);
    if (io_write(ssl, fd, pkt, i) < 0)
        return -1;
    unsigned char ack[4];
    int got = 0;
    while (got < 4) {
        int n = io_read(ssl, fd, ack + got, (size_t)(4 - got));
        if (n <= 0)
            return -1;
        got += n;
    }
    if (ack[0] != 0x20 || ack[1] != 2)
        return -1;
    static const unsigned char disc[] = {0xE0, 0};
    if (ack[3] == 0)
        io_write(ssl, fd, disc, sizeof(disc));
    return ack[3];
}

int main(int argc, char **argv)
{
    opts_t o;
    if (parse_opts(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    cred_t *creds = NULL;
    long ncreds = 0;
    if (o.creds_path != NULL && (ncreds = load_creds(o.creds_path, &creds)) < 0)
        return 2;

    SSL_CTX *ctx = NULL;
    if (!o.plain) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, o.cafile, NULL) != 1) {
            fprintf(stderr, "tls-handshake: cannot load %s\n", o.cafile);
            return 2;
        }
        int v = o.tls_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION;
        SSL_CTX_set_min_proto_version(ctx, v);
        SSL_CTX_set_max_proto_version(ctx, v);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* Sessions are ours to keep (the callback), not an internal cache's. */
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    }

    stats_t st = {0};
    double start = now_s(), end = start + o.seconds;
    long next_cred = 0;
    while (now_s() < end && !(st.errors > 1000 && st.ok == 0)) {
        int fd = tcp_connect(&o);
        if (fd < 0) {
            st.errors++;
            continue;
        }
        SSL *ssl = NULL;
        bool good = true;
        if (ctx != NULL) {
            ssl = SSL_new(ctx);
            SSL_set_fd(ssl, fd);
            SSL_set1_host(ssl, o.host);
            if (o.resume && g_session != NULL)
                SSL_set_session(ssl, g_session);
            good = SSL_connect(ssl) == 1;
            if (good && SSL_session_reused(ssl))
                st.reused++;
        }
        if (good && creds != NULL) {
            int rc = mqtt_connect(ssl, fd, &creds[next_cred]);
            next_cred = (next_cred + 1) % ncreds;
            if (rc != 0) {
                good = false;
                if (rc > 0)
                    st.connack_refused++;
            }
        } else if (good && o.resume && o.tls_version == 13) {
            read_tickets(ssl, fd);
        }
        if (good) {
            st.ok++;
            if (ssl != NULL)
                SSL_shutdown(ssl);
        } else {
            st.errors++;
            if (st.errors <= 3) {
                char buf[256];
                unsigned long e = ERR_get_error();
                ERR_error_string_n(e, buf, sizeof(buf));
                fprintf(stderr, "tls-handshake: connection failed: %s\n", e ? buf : "closed");
            }
        }
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
    }
    st.elapsed = now_s() - start;
    double rate = st.elapsed > 0 ? (double)st.ok / st.elapsed : 0;
    if (o.json)
        printf("{\"handshakes\": %lu, \"reused\": %lu, \"errors\": %lu, \"connack_refused\": %lu, "
               "\"seconds\": %.3f, \"per_s\": %.1f}\n",
               st.ok, st.reused, st.errors, st.connack_refused, st.elapsed, rate);
    else
        printf("%lu connections (%lu resumed) in %.2f s: %.1f/s, %lu errors\n", st.ok, st.reused,
               st.elapsed, rate, st.errors);
    if (g_session != NULL)
        SSL_SESSION_free(g_session);
    SSL_CTX_free(ctx);
    free(creds);
    return st.errors == 0 && st.ok > 0 ? 0 : 1;
}
