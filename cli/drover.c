/*
 * drover: the operator CLI, a thin client of droverd's REST API.
 *
 * What it owns: turning a command line into one or a few HTTP requests and
 * the answers into either aligned tables for people or the server's JSON
 * (pretty-printed) for scripts. It holds no state between runs.
 *
 * Layout: `commands[]` is the single static table of subcommands; argument
 * parsing, `drover help` and `drover CMD --help` are all generated from it
 * and from `options[]`, so a new command is one table row plus one function.
 * Arguments are parsed in two passes: the first finds the command words
 * (global options may sit anywhere, `drover --json device list` and
 * `drover device list --json` both work), the second checks each option
 * against that command.
 *
 * Where the server and token come from, first match wins:
 *   server: --server, $DROVER_SERVER, config "server", http://127.0.0.1:8080
 *   token:  --token, $DROVER_TOKEN, --data-dir/$DROVER_DATA_DIR + /admin.token,
 *           ./drover-data/admin.token, config "token"
 * The config file is ~/.config/drover/config ($DROVER_CONFIG overrides).
 * The token is never printed, not even in errors.
 *
 * Exit status: 0 ok, 1 the server answered with an error (or nonsense),
 * 2 the server could not be reached, 64 usage error. With --wait, 1 also
 * means the command (or some device of a bulk job) did not succeed.
 *
 * Waiting (--wait): a command is long-polled with GET /commands/CID?wait=,
 * repeated because the server holds one request at most 60 s, each with
 * an HTTP timeout of its wait plus the normal one; a bulk job is polled
 * with GET /jobs/ID?limit=1 every 0.25 s rising to 1 s. A bare --wait has
 * no deadline of its own: the server ends every command by its expiry.
 *
 * Single-threaded; one libcurl handle per run (cli_http.c); the request,
 * paging, table and file helpers every command family shares are in
 * cli_common.c, the pure ones in cli_util.c.
 */
#include "cli_common.h"
#include "cmd_audit.h"
#include "cmd_operators.h"
#include "cmd_pki.h"

#include "common/json.h"
#include "common/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SERVER "http://127.0.0.1:8080"
#define DEFAULT_TIMEOUT_S 30.0
#define DEFAULT_DATA_DIR "./drover-data"
#define TOKEN_FILE "admin.token"
#define TOKEN_MAX 1024
#define SERVER_MAX 2048
#define CONFIG_FILE_MAX (64 * 1024)
#define TAGS_MAX 64 /* the server's own limit per device */
#define PARAMS_MAX 256
#define POS_MAX 4
#define BODY_ARG_MAX (16 * 1024 * 1024) /* the server's largest max_twin_bytes */
#define LONG_POLL_MAX_S 60              /* the server's cap on ?wait= */

/* ---- options and commands ------------------------------------------------ */

enum {
    OPT_SERVER,
    OPT_CACERT,
    OPT_TOKEN,
    OPT_DATA_DIR,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_HELP,
    OPT_VERSION,
    OPT_TAG,
    OPT_ONLINE,
    OPT_OFFLINE,
    OPT_LIMIT,
    OPT_CURSOR,
    OPT_ALL,
    OPT_METRIC,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_IF_MATCH,
    OPT_PARAM,
    OPT_PARAMS,
    OPT_WAIT,
    OPT_IDS,
    OPT_ALL_DEVICES,
    OPT_ACTOR,
    OPT_OBJECT,
    OPT_FILE,
    OPT_ROLE,
    OPT_EXPIRES_IN,
    OPT_PASSWORD_STDIN,
    OPT_SAVE,
    OPT_DISABLE,
    OPT_ENABLE,
    OPT_MAX_USES,
    OPT_GROUP,
    OPT_DESIRED,
    OPT_CSR,
    OPT_OUT,
    OPT_FORMAT,
    OPT_CLAIM_TOKEN,
    OPT_ID,
    OPT_COUNT,
};

/* A command's options are a bit set: one bit per option. */
_Static_assert(OPT_COUNT <= 64, "the option set is a uint64_t: at most 64 options");
#define BIT(o) (UINT64_C(1) << (o))
#define GLOBAL_OPTS                                                                                \
    (BIT(OPT_SERVER) | BIT(OPT_TOKEN) | BIT(OPT_DATA_DIR) | BIT(OPT_JSON) | BIT(OPT_TIMEOUT) |     \
     BIT(OPT_HELP) | BIT(OPT_VERSION) | BIT(OPT_CACERT))

typedef struct {
    const char *name;    /* long name without "--" */
    const char *metavar; /* NULL for a flag */
    const char *help;
    /* The value may be left out: it is taken from the next argument only
     * when that reads as seconds (cli_parse_seconds), or from --name=V. */
    bool optional_value;
} opt_t;

static const opt_t options[OPT_COUNT] = {
    [OPT_SERVER] = {"server", "URL", "server base URL (default " DEFAULT_SERVER ")"},
    [OPT_TOKEN] = {"token", "TOKEN", "API token (never printed)"},
    [OPT_DATA_DIR] = {"data-dir", "DIR",
                      "read the token from DIR/admin.token (else $DROVER_DATA_DIR)"},
    [OPT_JSON] = {"json", NULL, "print the server's JSON, pretty-printed, not tables"},
    [OPT_TIMEOUT] = {"timeout", "S", "give up on a request after S seconds (default 30)"},
    [OPT_HELP] = {"help", NULL, "show help (also -h)"},
    [OPT_VERSION] = {"version", NULL, "print the version"},
    [OPT_TAG] = {"tag", "K=V", NULL},
    [OPT_ONLINE] = {"online", NULL, "only devices that are connected now"},
    [OPT_OFFLINE] = {"offline", NULL, "only devices that are not connected"},
    [OPT_LIMIT] = {"limit", "N", NULL},
    [OPT_CURSOR] = {"cursor", "C", "start after this cursor (the `next` of a previous page)"},
    [OPT_ALL] = {"all", NULL, "follow `next` cursors and print every page"},
    [OPT_METRIC] = {"metric", "M", "only this metric"},
    [OPT_SINCE] = {"since", "T",
                   "from T (inclusive): epoch ms, RFC 3339, now, -30s -15m -1h -2d -1w"},
    [OPT_UNTIL] = {"until", "T", "up to T, exclusive (same forms as --since)"},
    [OPT_IF_MATCH] = {"if-match", "N", "only if the desired state is still version N"},
    [OPT_PARAM] = {"param", "K=V",
                   "params.K = V: a JSON number, true, false or null, else a string"},
    [OPT_PARAMS] = {"params", "JSON", "params as a JSON object, @FILE or - (stdin)"},
    [OPT_WAIT] = {"wait", "S", NULL, true},
    [OPT_IDS] = {"ids", "ID,...", "the devices with these ids (comma-separated)"},
    [OPT_ALL_DEVICES] = {"all-devices", NULL, "every device in the fleet"},
    [OPT_ACTOR] = {"actor", "A", "only entries by actor A (token:NAME, user:NAME, anonymous)"},
    [OPT_OBJECT] = {"object", "O", "only entries about object O (a device id, token id...)"},
    [OPT_FILE] = {"file", "F", "check this export (JSON lines; - for stdin), not the server"},
    [OPT_ROLE] = {"role", "R", "admin, operator or viewer"},
    [OPT_EXPIRES_IN] = {"expires-in", "D", "lifetime: N then s, m, h, d or w (60s to 10 years)"},
    [OPT_PASSWORD_STDIN] = {"password-stdin", NULL,
                            "read the password from the first line of stdin, not the terminal"},
    [OPT_SAVE] = {"save", NULL, "write the token to the config file instead of printing it"},
    [OPT_DISABLE] = {"disable", NULL, "refuse the user's logins and revoke its sessions"},
    [OPT_ENABLE] = {"enable", NULL, "allow the user to log in again"},
    [OPT_CACERT] = {"cacert", "FILE",
                    "verify an https:// server with the CA certificates in FILE (PEM)"},
    [OPT_MAX_USES] = {"max-uses", "N", "how many devices may provision with the claim token"},
    [OPT_GROUP] = {"group", "G", "the devices' group (also set as their tag \"group\")"},
    [OPT_DESIRED] = {"desired", "JSON", "the devices' initial desired state: JSON, @FILE or -"},
    [OPT_CSR] = {"csr", "FILE", "the certificate signing request (PEM, CN = the device id)"},
    [OPT_OUT] = {"out", "FILE", "write the certificate (PEM) to FILE instead of stdout"},
    [OPT_FORMAT] = {"format", "F", "csv or jsonl (default: from the file name's extension)"},
    [OPT_CLAIM_TOKEN] = {"claim-token", "T", "the enrollment's claim token, or @FILE holding it"},
    [OPT_ID] = {"id", "ID", "the new device's id"},
};

typedef struct cmd cmd_t;

typedef struct {
    const cmd_t *cmd;
    const char *pos[POS_MAX]; /* positionals after the command words */
    size_t npos;
    const char *val[OPT_COUNT]; /* NULL for a flag, or an optional value left out */
    bool set[OPT_COUNT];
    const char *tags[TAGS_MAX];
    size_t ntags;
    const char *params[PARAMS_MAX]; /* every --param K=V, in order */
    size_t nparams;
} args_t;

typedef struct config_state config_state_t;

/* Server and token are resolved on the first request, so usage errors are
 * reported before anything about credentials. */
typedef struct {
    const args_t *args;
    config_state_t *cfg;
    char *server; /* normalised, no trailing '/'; NULL until resolved */
    char *token;
    bool json;
    double timeout_s;
    bool curl_ready;
    cli_http_t *http;
} ctx_t;

/* Per-command text for options whose meaning depends on the command. */
typedef struct {
    int opt;
    const char *help;
} opt_help_t;

struct cmd {
    const char *path; /* command words, e.g. "device add" */
    const char *args; /* positional synopsis, e.g. "ID" */
    size_t min_pos;   /* positionals after the command words */
    size_t max_pos;
    uint64_t opts;  /* BIT(OPT_...) accepted besides the global ones */
    uint64_t multi; /* of those, the ones that may be repeated */
    /* --timeout S is the command's own timeout_s (whole seconds), not the
     * HTTP request timeout: `drover cmd send ... --timeout 60`. */
    bool command_timeout;
    const char *summary;
    const char *help; /* paragraph shown by `drover help CMD` */
    opt_help_t opt_help[6];
    int (*run)(ctx_t *ctx, const args_t *a);
};

static int cmd_device_add(ctx_t *ctx, const args_t *a);
static int cmd_device_list(ctx_t *ctx, const args_t *a);
static int cmd_device_show(ctx_t *ctx, const args_t *a);
static int cmd_device_rm(ctx_t *ctx, const args_t *a);
static int cmd_device_rotate(ctx_t *ctx, const args_t *a);
static int cmd_telemetry(ctx_t *ctx, const args_t *a);
static int cmd_twin_get(ctx_t *ctx, const args_t *a);
static int cmd_twin_set(ctx_t *ctx, const args_t *a);
static int cmd_twin_patch(ctx_t *ctx, const args_t *a);
static int cmd_cmd_send(ctx_t *ctx, const args_t *a);
static int cmd_cmd_show(ctx_t *ctx, const args_t *a);
static int cmd_cmd_list(ctx_t *ctx, const args_t *a);
static int cmd_bulk_cmd(ctx_t *ctx, const args_t *a);
static int cmd_bulk_twin(ctx_t *ctx, const args_t *a);
static int cmd_job_show(ctx_t *ctx, const args_t *a);
static int cmd_help(ctx_t *ctx, const args_t *a);
static int cmd_version(ctx_t *ctx, const args_t *a);
static int cmd_audit(ctx_t *ctx, const args_t *a);
static int cmd_operators(ctx_t *ctx, const args_t *a);
static int cmd_pki(ctx_t *ctx, const args_t *a);

/* A command that takes exactly n positionals, shown as synopsis. */
#define POSITIONAL(n, synopsis) .args = synopsis, .min_pos = n, .max_pos = n

#define TARGET_OPTS (BIT(OPT_TAG) | BIT(OPT_IDS) | BIT(OPT_ALL_DEVICES))
#define COMMAND_OPTS (BIT(OPT_PARAM) | BIT(OPT_PARAMS) | BIT(OPT_TIMEOUT) | BIT(OPT_WAIT))
#define TIMEOUT_HELP "expire the command unless answered in S s (server default 300)"

static const cmd_t commands[] = {
    {
        .path = "device add",
        POSITIONAL(1, "ID"),
        .opts = BIT(OPT_TAG),
        .multi = BIT(OPT_TAG),
        .summary = "register a device and print its secret",
        .help = "Registers device ID (1 to 64 characters of A-Z a-z 0-9 . _ -) and prints its\n"
                "MQTT secret. The secret is shown only this once: store it now, or make a new\n"
                "one later with `drover device rotate-secret`. Tag values are sent as strings.",
        .opt_help = {{OPT_TAG, "set tag K to value V (repeatable, at most 64)"}},
        .run = cmd_device_add,
    },
    {
        .path = "device list",
        .args = "",
        .opts = BIT(OPT_TAG) | BIT(OPT_ONLINE) | BIT(OPT_OFFLINE) | BIT(OPT_LIMIT) |
                BIT(OPT_CURSOR) | BIT(OPT_ALL),
        .summary = "list devices",
        .help = "Lists devices ordered by id, one page at a time (the server's default page is\n"
                "100 devices). With --all every page is fetched and printed as one table, or\n"
                "with --json as one {\"devices\": [...], \"next\": null} document.",
        .opt_help = {{OPT_TAG, "only devices whose tag K equals V"},
                     {OPT_LIMIT, "devices per page, 1..1000 (server default 100)"}},
        .run = cmd_device_list,
    },
    {
        .path = "device show",
        POSITIONAL(1, "ID"),
        .summary = "show one device and its latest telemetry",
        .help = "Shows a device's tags, whether it is connected, when it was last seen and\n"
                "created (in the local time zone) and the latest value of each metric.",
        .run = cmd_device_show,
    },
    {
        .path = "device rm",
        POSITIONAL(1, "ID"),
        .summary = "delete a device",
        .help = "Deletes the device with its telemetry and secret; a live MQTT connection of\n"
                "the device is dropped.",
        .run = cmd_device_rm,
    },
    {
        .path = "device rotate-secret",
        POSITIONAL(1, "ID"),
        .summary = "give a device a new secret",
        .help = "Makes a new MQTT secret for the device and prints it once. The old secret\n"
                "stops working at once and a live connection of the device is dropped.",
        .run = cmd_device_rotate,
    },
    {
        .path = "device import",
        POSITIONAL(1, "FILE"),
        .opts = BIT(OPT_FORMAT),
        .summary = "register devices from a CSV or JSON lines file",
        .help = "Registers every device of FILE at once (all or none) and prints each id with\n"
                "its MQTT secret, shown only this once. CSV: a header row \"id,TAG,...\" then\n"
                "one device per row (empty cells set no tag). JSON lines: one\n"
                "{\"id\": ..., \"tags\": {...}} per line. A bad row is reported by its line\n"
                "number and nothing is imported. FILE - reads stdin (give --format).",
        .run = cmd_pki,
    },
    {
        .path = "device revoke",
        POSITIONAL(1, "ID"),
        .summary = "revoke every credential of a device",
        .help = "Revokes the device's secret and every certificate it has, at once: new\n"
                "connections are refused and a live one is closed. The device stays in the\n"
                "registry with its data; `drover cert issue` refuses it from then on.",
        .run = cmd_pki,
    },
    {
        .path = "telemetry",
        POSITIONAL(1, "ID"),
        .opts =
            BIT(OPT_METRIC) | BIT(OPT_SINCE) | BIT(OPT_UNTIL) | BIT(OPT_LIMIT) | BIT(OPT_CURSOR),
        .summary = "show a device's telemetry points",
        .help = "Prints stored telemetry points of a device in time order. Relative times such\n"
                "as -15m are turned into epoch ms on this machine; epoch ms and RFC 3339 times\n"
                "are passed to the server as given. If more points match than one page holds,\n"
                "the cursor of the next page is printed on stderr.",
        .opt_help = {{OPT_LIMIT, "points per page, 1..10000 (server default 1000)"}},
        .run = cmd_telemetry,
    },
    {
        .path = "twin get",
        POSITIONAL(1, "ID"),
        .summary = "show a device's desired and reported state",
        .help = "Shows the device twin: the desired state (set by operators), the reported\n"
                "state (sent by the device), each with its version and when it last changed,\n"
                "and the delta: the desired keys whose reported value differs.",
        .run = cmd_twin_get,
    },
    {
        .path = "twin set",
        POSITIONAL(2, "ID JSON|@FILE|-"),
        .opts = BIT(OPT_IF_MATCH),
        .summary = "replace a device's desired state",
        .help = "Replaces the whole desired state with the JSON object given inline, read\n"
                "from FILE (@FILE) or from stdin (-). The device receives it on\n"
                "devices/ID/twin/desired. With --if-match N nothing changes unless the\n"
                "desired state is still at version N (read it with `drover twin get`).",
        .run = cmd_twin_set,
    },
    {
        .path = "twin patch",
        POSITIONAL(2, "ID JSON|@FILE|-"),
        .opts = BIT(OPT_IF_MATCH),
        .summary = "merge a JSON merge patch into a device's desired state",
        .help = "Applies an RFC 7396 JSON merge patch to the desired state: keys with values\n"
                "set or replace, keys with null are removed, nested objects merge. The patch\n"
                "is given inline, read from FILE (@FILE) or from stdin (-).",
        .run = cmd_twin_patch,
    },
    {
        .path = "cmd send",
        POSITIONAL(2, "ID NAME"),
        .opts = COMMAND_OPTS,
        .multi = BIT(OPT_PARAM),
        .command_timeout = true,
        .summary = "send a command to a device",
        .help =
            "Sends command NAME to device ID. An offline device gets it when it next\n"
            "subscribes, unless it has expired by then. Params are built from --params\n"
            "and --param: `--param n=5 --param mode=fast` sends {\"n\": 5, \"mode\": \"fast\"};\n"
            "for arrays or nested values use --params '{\"args\": [\"-l\"]}'.\n"
            "--param repeats; its keys override those of --params. Here --timeout is the\n"
            "command's own timeout (whole seconds); HTTP requests keep the 30 s default.\n"
            "With --wait the CLI waits for the device's result and prints it; the exit\n"
            "status is then 0 if the command succeeded and 1 if it failed, was\n"
            "rejected, expired, or had not ended when the wait ran out. A number after\n"
            "--wait is its value: put --wait after NAME, or write --wait=S.",
        .opt_help = {{OPT_TIMEOUT, TIMEOUT_HELP},
                     {OPT_WAIT, "wait up to S s for the result (bare --wait: until it ends)"}},
        .run = cmd_cmd_send,
    },
    {
        .path = "cmd show",
        POSITIONAL(1, "CID"),
        .opts = BIT(OPT_WAIT),
        .summary = "show a command, its status and result",
        .help = "Shows command CID (the id `drover cmd send` printed): its status, times and\n"
                "the device's output. With --wait the exit status is as for `cmd send --wait`.",
        .opt_help = {{OPT_WAIT, "wait up to S s for it to end (bare --wait: until it ends)"}},
        .run = cmd_cmd_show,
    },
    {
        .path = "cmd list",
        POSITIONAL(1, "ID"),
        .opts = BIT(OPT_LIMIT) | BIT(OPT_CURSOR) | BIT(OPT_ALL),
        .summary = "list a device's commands, newest first",
        .help = "Lists the commands of device ID, newest first, one page at a time.",
        .opt_help = {{OPT_LIMIT, "commands per page, 1..1000 (server default 100)"}},
        .run = cmd_cmd_list,
    },
    {
        .path = "bulk cmd",
        POSITIONAL(1, "NAME"),
        .opts = TARGET_OPTS | COMMAND_OPTS,
        .multi = BIT(OPT_PARAM),
        .command_timeout = true,
        .summary = "send a command to many devices (a job)",
        .help = "Sends command NAME to every device of the target, as one job, and prints the\n"
                "job id. Params and --timeout are as for `drover cmd send`. With --wait the\n"
                "CLI follows the job, printing progress on stderr, until every device has\n"
                "answered or its command expired; the exit status is then 0 only if every\n"
                "device succeeded.",
        .opt_help = {{OPT_TAG, "the devices whose tag K equals V"},
                     {OPT_TIMEOUT, TIMEOUT_HELP},
                     {OPT_WAIT, "follow the job up to S s (bare --wait: until it is done)"}},
        .run = cmd_bulk_cmd,
    },
    {
        .path = "bulk twin",
        POSITIONAL(1, "JSON|@FILE|-"),
        .opts = TARGET_OPTS | BIT(OPT_WAIT),
        .summary = "merge a patch into many devices' desired state (a job)",
        .help = "Applies a JSON merge patch (RFC 7396) to the desired state of every device\n"
                "of the target, as one job, and prints the job id. With --wait the CLI\n"
                "follows the job until every device's twin is written; the exit status is\n"
                "then 0 only if every one was.",
        .opt_help = {{OPT_TAG, "the devices whose tag K equals V"},
                     {OPT_WAIT, "follow the job up to S s (bare --wait: until it is done)"}},
        .run = cmd_bulk_twin,
    },
    {
        .path = "job show",
        POSITIONAL(1, "JOB"),
        .opts = BIT(OPT_LIMIT) | BIT(OPT_CURSOR) | BIT(OPT_ALL),
        .summary = "show a bulk job: counts and per-device state",
        .help = "Shows a bulk job (from `drover bulk cmd` or `drover bulk twin`): what it does,\n"
                "how many devices are in each state, and each device's state, one page at a\n"
                "time.",
        .opt_help = {{OPT_LIMIT, "devices per page, 1..10000 (server default 1000)"}},
        .run = cmd_job_show,
    },
    {
        .path = "audit list",
        .args = "",
        .opts = BIT(OPT_SINCE) | BIT(OPT_UNTIL) | BIT(OPT_ACTOR) | BIT(OPT_OBJECT) |
                BIT(OPT_LIMIT) | BIT(OPT_CURSOR) | BIT(OPT_ALL),
        .summary = "list audit log entries (admin)",
        .help = "Lists the audit log oldest first: every change made through the API, every\n"
                "refused request (401, 403) and every login, with who, what, when, from where\n"
                "and the outcome. With --all every page is fetched; with --json as one\n"
                "{\"entries\": [...], \"next\": null} document.",
        .opt_help = {{OPT_LIMIT, "entries per page, 1..1000 (server default 100)"}},
        .run = cmd_audit,
    },
    {
        .path = "audit export",
        .args = "",
        .opts = BIT(OPT_SINCE) | BIT(OPT_UNTIL) | BIT(OPT_ACTOR) | BIT(OPT_OBJECT),
        .summary = "write the audit log to stdout as JSON lines",
        .help = "Writes every matching audit entry to stdout, one JSON object per line, with\n"
                "its hashes. An export without --actor or --object can be checked later with\n"
                "`drover audit verify --file`.",
        .run = cmd_audit,
    },
    {
        .path = "audit verify",
        .args = "",
        .opts = BIT(OPT_FILE),
        .summary = "check the audit log's hash chain",
        .help = "Fetches the whole audit log (or reads an export) and recomputes every entry's\n"
                "hash and its link to the entry before. Prints \"audit chain intact: N entries\"\n"
                "and the last seq and hash (keep them: a log cut short after them still\n"
                "verifies), or \"audit chain broken at seq N: REASON\" and exits 1.",
        .run = cmd_audit,
    },
    {
        .path = "token create",
        POSITIONAL(1, "NAME"),
        .opts = BIT(OPT_ROLE) | BIT(OPT_EXPIRES_IN),
        .summary = "make an API token and print it once (admin)",
        .help = "Makes an API token named NAME (1 to 64 bytes, for people to read) with role\n"
                "admin, operator or viewer, and prints it. The token is shown only this once:\n"
                "the server keeps only its hash. Without --expires-in it never expires.",
        .opt_help = {{OPT_ROLE, "the token's role (required)"}},
        .run = cmd_operators,
    },
    {
        .path = "token list",
        .args = "",
        .summary = "list API tokens, never their values (admin)",
        .help = "Lists API tokens: id, name, role, when made and when they expire. Tokens made\n"
                "by `drover login` are named login:USER.",
        .run = cmd_operators,
    },
    {
        .path = "token rm",
        POSITIONAL(1, "ID"),
        .summary = "revoke an API token (admin)",
        .help = "Deletes the token with this id (from `drover token list`); it stops working\n"
                "at once.",
        .run = cmd_operators,
    },
    {
        .path = "user add",
        POSITIONAL(1, "NAME"),
        .opts = BIT(OPT_ROLE) | BIT(OPT_PASSWORD_STDIN),
        .summary = "add an operator user (admin)",
        .help = "Adds user NAME (1 to 64 characters of A-Z a-z 0-9 . _ -) with a role. The\n"
                "password (12 to 1024 bytes) is asked twice on the terminal with echo off, or\n"
                "read from the first line of stdin with --password-stdin.",
        .opt_help = {{OPT_ROLE, "the user's role (required)"}},
        .run = cmd_operators,
    },
    {
        .path = "user list",
        .args = "",
        .summary = "list operator users (admin)",
        .help = "Lists users: name, role, whether disabled, when added. Password hashes are\n"
                "never shown.",
        .run = cmd_operators,
    },
    {
        .path = "user rm",
        POSITIONAL(1, "NAME"),
        .summary = "delete an operator user (admin)",
        .help = "Deletes the user and revokes every token its logins made.",
        .run = cmd_operators,
    },
    {
        .path = "user set",
        POSITIONAL(1, "NAME"),
        .opts = BIT(OPT_ROLE) | BIT(OPT_DISABLE) | BIT(OPT_ENABLE) | BIT(OPT_PASSWORD_STDIN),
        .summary = "change a user's role, password or state (admin)",
        .help = "Changes the role, disables or enables the user, or sets a new password read\n"
                "from stdin. A new role, a new password or --disable revokes every token the\n"
                "user's logins made.",
        .opt_help = {{OPT_ROLE, "the new role"},
                     {OPT_PASSWORD_STDIN, "a new password from the first line of stdin"}},
        .run = cmd_operators,
    },
    {
        .path = "login",
        POSITIONAL(1, "NAME"),
        .opts = BIT(OPT_PASSWORD_STDIN) | BIT(OPT_SAVE) | BIT(OPT_EXPIRES_IN),
        .summary = "log in with a user's password and get a token",
        .help = "Logs in as user NAME (no token needed) and prints the API token the server\n"
                "makes: role of the user, valid 12 hours unless --expires-in says otherwise.\n"
                "The password is asked on the terminal with echo off, or read with\n"
                "--password-stdin. With --save the token goes to the config file\n"
                "($DROVER_CONFIG or ~/.config/drover/config, mode 0600) instead of stdout.\n"
                "Repeated failures are refused for a while (429, see docs/config.md).",
        .run = cmd_operators,
    },
    {
        .path = "enroll create",
        POSITIONAL(1, "NAME"),
        .opts = BIT(OPT_MAX_USES) | BIT(OPT_EXPIRES_IN) | BIT(OPT_TAG) | BIT(OPT_GROUP) |
                BIT(OPT_DESIRED),
        .multi = BIT(OPT_TAG),
        .summary = "make an enrollment and its claim token (admin)",
        .help = "Makes an enrollment group NAME for zero-touch provisioning and prints its id\n"
                "and claim token (drc_...). The token is shown only this once: the server\n"
                "keeps its hash. Up to --max-uses devices may then provision themselves with\n"
                "it (`drover provision`, or POST /api/v1/provision), each getting the tags,\n"
                "the group and the initial desired state given here.",
        .opt_help = {{OPT_TAG, "tag K = V on every device provisioned (repeatable)"},
                     {OPT_MAX_USES, "how many devices may use the token (required)"},
                     {OPT_EXPIRES_IN, "the token stops working after D: N then s, m, h, d or w"}},
        .run = cmd_pki,
    },
    {
        .path = "enroll list",
        .args = "",
        .summary = "list enrollments, never their claim tokens",
        .help = "Lists enrollment groups: id, name, state (active, used_up, expired or\n"
                "revoked), uses so far of the maximum, group, expiry and creation time.",
        .run = cmd_pki,
    },
    {
        .path = "enroll show",
        POSITIONAL(1, "ID"),
        .summary = "show one enrollment",
        .help = "Shows an enrollment group with its tags and initial desired state; never its\n"
                "claim token.",
        .run = cmd_pki,
    },
    {
        .path = "enroll revoke",
        POSITIONAL(1, "ID"),
        .summary = "revoke an enrollment's claim token (admin)",
        .help = "Revokes the enrollment: its claim token provisions no more devices. Devices\n"
                "already provisioned with it keep working.",
        .run = cmd_pki,
    },
    {
        .path = "cert issue",
        POSITIONAL(1, "DEVICE"),
        .opts = BIT(OPT_CSR) | BIT(OPT_OUT),
        .summary = "sign a device's CSR with the fleet CA",
        .help = "Sends the CSR in FILE (PEM, subject CN = DEVICE; the key stays with the\n"
                "device) to be signed by the fleet CA and prints the certificate (PEM), or\n"
                "writes it with --out. With --json the whole answer, with the CA certificate.",
        .opt_help = {{OPT_CSR, "the CSR file, PEM (required)"}},
        .run = cmd_pki,
    },
    {
        .path = "cert list",
        POSITIONAL(1, "DEVICE"),
        .summary = "list a device's certificates",
        .help = "Lists the certificates issued to DEVICE: serial, state (valid, expired,\n"
                "revoked), validity and when revoked.",
        .run = cmd_pki,
    },
    {
        .path = "cert revoke",
        POSITIONAL(1, "SERIAL"),
        .summary = "revoke one certificate",
        .help = "Revokes the certificate with this serial (hex, from `drover cert list`): new\n"
                "connections with it are refused and a live one is closed at once.",
        .run = cmd_pki,
    },
    {
        .path = "ca",
        .args = "",
        .opts = BIT(OPT_OUT),
        .summary = "print the fleet CA certificate (no token needed)",
        .help = "Prints the fleet CA certificate (PEM), or writes it with --out: devices and\n"
                "clients trust the server's TLS certificate through it.",
        .opt_help = {{OPT_OUT, "write the CA certificate to FILE instead of stdout"}},
        .run = cmd_pki,
    },
    {
        .path = "provision",
        .args = "",
        .opts = BIT(OPT_CLAIM_TOKEN) | BIT(OPT_ID) | BIT(OPT_CSR) | BIT(OPT_OUT),
        .summary = "get a device certificate with a claim token",
        .help = "Does what a device does at first start: sends the claim token, its id and\n"
                "its CSR (CN = ID) to POST /api/v1/provision, and prints the certificate it\n"
                "gets (PEM), or writes it with --out. For tests and for devices without\n"
                "drover-agent; use an https:// --server (with --cacert) in production.",
        .opt_help = {{OPT_CLAIM_TOKEN, "the claim token, or @FILE holding it (required)"},
                     {OPT_ID, "the new device's id (required)"},
                     {OPT_CSR, "the CSR file, PEM, CN = ID (required)"}},
        .run = cmd_pki,
    },
    {
        .path = "help",
        .args = "[COMMAND]",
        .max_pos = 3,
        .summary = "show help for a command",
        .help = "Shows help for COMMAND, or lists the commands.",
        .run = cmd_help,
    },
    {
        .path = "version",
        .args = "",
        .summary = "print the version",
        .help = "Prints the CLI's version.",
        .run = cmd_version,
    },
};

/* ---- small output helpers ------------------------------------------------ */

static size_t path_words(const char *path)
{
    size_t n = 1;
    for (const char *p = path; *p; p++)
        n += *p == ' ';
    return n;
}

static const char *opt_help_for(const cmd_t *c, int o)
{
    for (size_t i = 0; c != NULL && i < ARRAY_SIZE(c->opt_help); i++)
        if (c->opt_help[i].help != NULL && c->opt_help[i].opt == o)
            return c->opt_help[i].help;
    return options[o].help;
}

/* The options a command lists as its own: --timeout is one when it means
 * the command's timeout. */
static uint64_t own_opts(const cmd_t *c)
{
    uint64_t own = c->opts & ~GLOBAL_OPTS;
    if (c->command_timeout)
        own |= BIT(OPT_TIMEOUT);
    return own;
}

static void print_synopsis(FILE *out, const cmd_t *c)
{
    fprintf(out, "usage: drover %s", c->path);
    bool target = (c->opts & TARGET_OPTS) == TARGET_OPTS;
    if (target)
        fputs(" (--tag K=V | --ids ID,... | --all-devices)", out);
    if (c->args[0])
        fprintf(out, " %s", c->args);
    uint64_t own = own_opts(c);
    for (int o = 0; o < OPT_COUNT; o++) {
        if (!(own & BIT(o)) || (target && (TARGET_OPTS & BIT(o))))
            continue;
        if (o == OPT_OFFLINE && (c->opts & BIT(OPT_ONLINE)))
            continue;
        if (o == OPT_ONLINE && (c->opts & BIT(OPT_OFFLINE)))
            fputs(" [--online | --offline]", out);
        else if (options[o].optional_value)
            fprintf(out, " [--%s [%s]]", options[o].name, options[o].metavar);
        else if (options[o].metavar)
            fprintf(out, " [--%s %s]%s", options[o].name, options[o].metavar,
                    (c->multi & BIT(o)) ? "..." : "");
        else
            fprintf(out, " [--%s]", options[o].name);
    }
    fputc('\n', out);
}

static void print_options(FILE *out, const cmd_t *c, uint64_t mask)
{
    for (int o = 0; o < OPT_COUNT; o++) {
        if (!(mask & BIT(o)))
            continue;
        char lhs[40];
        bool opt = options[o].optional_value;
        snprintf(lhs, sizeof(lhs), "--%s%s%s%s%s", options[o].name, options[o].metavar ? " " : "",
                 opt ? "[" : "", options[o].metavar ? options[o].metavar : "", opt ? "]" : "");
        fprintf(out, "  %-16s %s\n", lhs, opt_help_for(c, o));
    }
}

static void print_command_list(FILE *out, const char *prefix)
{
    size_t pl = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        const cmd_t *c = &commands[i];
        if (prefix && (strncmp(c->path, prefix, pl) != 0 || c->path[pl] != ' '))
            continue;
        char lhs[64];
        snprintf(lhs, sizeof(lhs), "%s%s%s", c->path, c->args[0] ? " " : "", c->args);
        fprintf(out, "  %-28s %s\n", lhs, c->summary);
    }
}

static void print_global_help(FILE *out)
{
    fputs("usage: drover [global options] COMMAND [ARGS] [options]\n\n"
          "Manage a Drover device fleet through droverd's REST API.\n\n"
          "Commands:\n",
          out);
    print_command_list(out, NULL);
    fputs("\nGlobal options (accepted anywhere on the line):\n", out);
    print_options(out, NULL, GLOBAL_OPTS);
    fputs("\nThe server is --server, else $DROVER_SERVER, else `server =` in the config file,\n"
          "else " DEFAULT_SERVER ". An https:// server is verified against --cacert\n"
          "FILE, else $DROVER_CACERT, else the system's CAs. The token is --token, else\n"
          "$DROVER_TOKEN, else DIR/admin.token for --data-dir DIR or $DROVER_DATA_DIR, else\n"
          "./drover-data/admin.token, else `token =` in the config file. The config file is\n"
          "~/.config/drover/config, or $DROVER_CONFIG.\n"
          "Exit status: 0 ok, 1 the server refused the request, 2 the server could not be\n"
          "reached, 64 usage error.\n"
          "Run `drover help COMMAND` for a command's options.\n",
          out);
}

static void print_command_help(FILE *out, const cmd_t *c)
{
    print_synopsis(out, c);
    fprintf(out, "\n%s\n", c->help);
    uint64_t own = own_opts(c);
    if (own) {
        fputs("\nOptions:\n", out);
        print_options(out, c, own);
    }
    fprintf(out,
            "\nGlobal options: --server URL, --cacert FILE, --token TOKEN, --data-dir DIR, "
            "--json%s\n(see `drover help`).\n",
            c->command_timeout ? "" : ", --timeout S");
}

static void print_group_help(FILE *out, const char *group)
{
    fprintf(out, "usage: drover %s SUBCOMMAND [ARGS] [options]\n\nSubcommands:\n", group);
    print_command_list(out, group);
    fprintf(out, "\nRun `drover help %s SUBCOMMAND` for details.\n", group);
}

static bool is_group(const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (strncmp(commands[i].path, word, wl) == 0 && commands[i].path[wl] == ' ')
            return true;
    return false;
}

/* The longest command whose words start words[0..n). */
static const cmd_t *find_command(const char *const *words, size_t n)
{
    const cmd_t *best = NULL;
    size_t best_n = 0;
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        const char *p = commands[i].path;
        size_t k = 0;
        bool ok = true;
        while (ok && *p) {
            const char *sp = strchr(p, ' ');
            size_t l = sp ? (size_t)(sp - p) : strlen(p);
            ok = k < n && strlen(words[k]) == l && memcmp(words[k], p, l) == 0;
            k++;
            p += l + (sp != NULL);
        }
        if (ok && k > best_n) {
            best = &commands[i];
            best_n = k;
        }
    }
    return best;
}

static int usage_error(const cmd_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const cmd_t *c, const char *fmt, ...)
{
    va_list ap;
    fputs("drover: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (c != NULL) {
        print_synopsis(stderr, c);
        fprintf(stderr, "Run `drover help %s` for details.\n", c->path);
    } else {
        fputs("usage: drover [global options] COMMAND [ARGS] [options]\n"
              "Run `drover help` for the list of commands.\n",
              stderr);
    }
    return EXIT_USAGE;
}

/* ---- argument parsing ---------------------------------------------------- */

static int find_option(const char *name, size_t len)
{
    for (int o = 0; o < OPT_COUNT; o++)
        if (strlen(options[o].name) == len && memcmp(options[o].name, name, len) == 0)
            return o;
    return -1;
}

/* Whether the argument after an option with an optional value is that
 * value: digits with at most one dot ("10", "2.5"); its range is checked
 * later. Anything else (a NAME, JSON, another option) is left alone. */
static bool takes_optional(const char *next)
{
    if (!(next[0] >= '0' && next[0] <= '9'))
        return false;
    return strspn(next, "0123456789.") == strlen(next) && strchr(next, '.') == strrchr(next, '.');
}

/*
 * Fills *a from argv. Returns -1 to go on and run a->cmd, or an exit status
 * (help printed: 0; bad usage: 64).
 */
static int parse_args(int argc, char **argv, args_t *a)
{
    const char *words[POS_MAX + 4];
    size_t nwords = 0;
    bool help = false;
    char sbuf[64];

    /* Pass 1: positionals, skipping the values of known options. */
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!dashdash && strcmp(s, "--") == 0) {
            dashdash = true;
        } else if (!dashdash && s[0] == '-' && s[1] != '\0') {
            if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
                help = true;
            } else if (s[1] == '-') {
                const char *eq = strchr(s + 2, '=');
                int o = find_option(s + 2, eq ? (size_t)(eq - s - 2) : strlen(s + 2));
                if (o >= 0 && options[o].metavar && eq == NULL &&
                    (!options[o].optional_value || (i + 1 < argc && takes_optional(argv[i + 1]))))
                    i++;
            }
        } else {
            if (nwords == ARRAY_SIZE(words))
                return usage_error(find_command(words, nwords), "too many arguments");
            words[nwords++] = s;
        }
    }

    const cmd_t *c = find_command(words, nwords);
    if (c == NULL) {
        if (nwords == 0) {
            if (help) {
                print_global_help(stdout);
                return EXIT_OK;
            }
            for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--version") == 0)
                    return cmd_version(NULL, a);
            print_global_help(stderr);
            return EXIT_USAGE;
        }
        if (is_group(words[0])) {
            if (help || nwords == 1) {
                print_group_help(help ? stdout : stderr, words[0]);
                return help ? EXIT_OK : EXIT_USAGE;
            }
            cli_errorf("unknown %s command '%s'", words[0],
                       cli_shown(words[1], sbuf, sizeof(sbuf)));
            print_group_help(stderr, words[0]);
            return EXIT_USAGE;
        }
        return usage_error(NULL, "unknown command '%s'", cli_shown(words[0], sbuf, sizeof(sbuf)));
    }
    if (help) {
        print_command_help(stdout, c);
        return EXIT_OK;
    }
    a->cmd = c;

    /* Pass 2: check every option against the command. */
    uint64_t allowed = c->opts | GLOBAL_OPTS;
    dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (dashdash || strcmp(s, "--") == 0 || s[0] != '-' || s[1] == '\0') {
            dashdash = dashdash || strcmp(s, "--") == 0;
            continue;
        }
        if (s[1] != '-')
            return usage_error(c, "unknown option '%s'", cli_shown(s, sbuf, sizeof(sbuf)));
        const char *eq = strchr(s + 2, '=');
        int o = find_option(s + 2, eq ? (size_t)(eq - s - 2) : strlen(s + 2));
        if (o < 0)
            return usage_error(c, "unknown option '%s'", cli_shown(s, sbuf, sizeof(sbuf)));
        if (!(allowed & BIT(o)))
            return usage_error(c, "option --%s does not apply to `drover %s`", options[o].name,
                               c->path);
        const char *v = NULL;
        if (options[o].metavar) {
            if (eq)
                v = eq + 1;
            else if (options[o].optional_value)
                v = i + 1 < argc && takes_optional(argv[i + 1]) ? argv[++i] : NULL;
            else if (i + 1 < argc)
                v = argv[++i];
            else
                return usage_error(c, "option --%s needs a value", options[o].name);
        } else if (eq) {
            return usage_error(c, "option --%s takes no value", options[o].name);
        }
        if (a->set[o] && !(c->multi & BIT(o)))
            return usage_error(c, "option --%s given more than once", options[o].name);
        if (o == OPT_TAG) {
            if (a->ntags == TAGS_MAX)
                return usage_error(c, "at most %d --tag options", TAGS_MAX);
            a->tags[a->ntags++] = v;
        }
        if (o == OPT_PARAM) {
            if (a->nparams == PARAMS_MAX)
                return usage_error(c, "at most %d --param options", PARAMS_MAX);
            a->params[a->nparams++] = v;
        }
        a->set[o] = true;
        a->val[o] = v;
    }

    size_t skip = path_words(c->path);
    size_t npos = nwords - skip;
    if (npos < c->min_pos)
        return usage_error(c, "missing %s", c->args);
    if (npos > c->max_pos || npos > POS_MAX)
        return usage_error(c, "unexpected argument '%s'",
                           cli_shown(words[skip + c->max_pos], sbuf, sizeof(sbuf)));
    for (size_t i = 0; i < npos; i++)
        a->pos[i] = words[skip + i];
    a->npos = npos;
    return -1;
}

/* ---- server and token ---------------------------------------------------- */

struct config_state {
    bool loaded;
    char path[4096];
    cli_config_t cfg;
};

/* Loads the config file once. A missing file is fine; a broken one is not. */
static int load_config(config_state_t *st)
{
    if (st->loaded)
        return 0;
    st->loaded = true;
    const char *env = getenv("DROVER_CONFIG");
    bool named = env != NULL && *env; /* then it must exist */
    /* A path too long is read as cut short, and then is missing. */
    if (cli_config_path(st->path, sizeof(st->path), false) == -ENOENT)
        return 0;
    cli_buf_t b;
    cli_buf_init(&b, CONFIG_FILE_MAX);
    int rc = cli_read_path(st->path, &b);
    if (rc < 0) {
        cli_buf_wipe(&b);
        if (rc == -ENOENT && !named)
            return 0;
        cli_errorf("cannot read config file %s: %s", st->path, strerror(-rc));
        return EXIT_USAGE;
    }
    int line = 0;
    rc = cli_config_parse(b.data, b.len, &st->cfg, &line);
    cli_buf_wipe(&b);
    if (rc == -EINVAL) {
        cli_errorf("config file %s, line %d: expected `key = value`", st->path, line);
        return EXIT_USAGE;
    }
    if (rc < 0)
        return cli_oom();
    return 0;
}

static int resolve_server(ctx_t *ctx, const args_t *a, config_state_t *cfg)
{
    const char *s = a->val[OPT_SERVER];
    const char *from = "--server";
    if (s == NULL && getenv("DROVER_SERVER") != NULL && *getenv("DROVER_SERVER")) {
        s = getenv("DROVER_SERVER");
        from = "DROVER_SERVER";
    }
    if (s == NULL) {
        int rc = load_config(cfg);
        if (rc != 0)
            return rc;
        s = cfg->cfg.server;
        from = "the config file";
    }
    if (s == NULL)
        s = DEFAULT_SERVER;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f)
            len = 0;
    }
    if (len == 0 || len > SERVER_MAX) {
        cli_errorf("the server URL from %s is empty, too long or contains spaces", from);
        return EXIT_USAGE;
    }
    bool scheme = strstr(s, "://") != NULL;
    if (scheme && strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) {
        cli_errorf("the server URL from %s must start with http:// or https://", from);
        return EXIT_USAGE;
    }
    while (len > 0 && s[len - 1] == '/')
        len--;
    cli_buf_t b;
    cli_buf_init(&b, SERVER_MAX + 16);
    int rc = cli_buf_puts(&b, scheme ? "" : "http://");
    if (rc == 0)
        rc = cli_buf_append(&b, s, len);
    if (rc < 0) {
        cli_buf_fini(&b);
        return cli_oom();
    }
    ctx->server = b.data;
    return 0;
}

/* Printable ASCII without spaces: the token goes into an HTTP header. */
static bool token_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            return false;
    return true;
}

/* Reads DIR/admin.token. When required, a missing file is an error;
 * otherwise -ENOENT lets the caller try the next source. */
static int token_from_dir(const char *dir, bool required, char **out)
{
    char path[4096];
    int w = snprintf(path, sizeof(path), "%s/%s", dir, TOKEN_FILE);
    if (w < 0 || (size_t)w >= sizeof(path)) {
        cli_errorf("data directory path is too long");
        return EXIT_USAGE;
    }
    cli_buf_t b;
    cli_buf_init(&b, TOKEN_MAX + 64);
    int rc = cli_read_path(path, &b);
    if (rc < 0)
        cli_buf_wipe(&b);
    if (rc == -ENOENT && !required)
        return -ENOENT;
    if (rc < 0) {
        cli_errorf("cannot read the token file %s: %s", path,
                   rc == -EFBIG ? "file too large" : strerror(-rc));
        return EXIT_USAGE;
    }
    char *text = b.data;
    size_t len = b.len;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
                       text[len - 1] == '\t'))
        text[--len] = '\0';
    *out = text;
    return 0;
}

static int resolve_token(ctx_t *ctx, const args_t *a, config_state_t *cfg)
{
    char *tok = NULL;
    const char *from = NULL;
    const char *env;
    int rc;

    if (a->val[OPT_TOKEN] != NULL) {
        tok = strdup(a->val[OPT_TOKEN]);
        from = "--token";
    } else if ((env = getenv("DROVER_TOKEN")) != NULL && *env) {
        tok = strdup(env);
        from = "DROVER_TOKEN";
    } else {
        const char *dir = a->val[OPT_DATA_DIR];
        from = "--data-dir";
        if (dir == NULL && (env = getenv("DROVER_DATA_DIR")) != NULL && *env) {
            dir = env;
            from = "DROVER_DATA_DIR";
        }
        rc = token_from_dir(dir ? dir : DEFAULT_DATA_DIR, dir != NULL, &tok);
        if (rc > 0)
            return rc;
        if (rc == 0 && dir == NULL)
            from = DEFAULT_DATA_DIR "/" TOKEN_FILE;
        if (rc == -ENOENT) {
            rc = load_config(cfg);
            if (rc != 0)
                return rc;
            if (cfg->cfg.token == NULL) {
                cli_errorf("no API token: pass --token, set DROVER_TOKEN, point --data-dir at "
                           "droverd's data directory, or add `token = ...` to %s",
                           cfg->path[0] ? cfg->path : "~/.config/drover/config");
                return EXIT_USAGE;
            }
            tok = strdup(cfg->cfg.token);
            from = "the config file";
        }
    }
    if (tok == NULL)
        return cli_oom();
    if (!token_valid(tok)) {
        explicit_bzero(tok, strlen(tok));
        free(tok);
        cli_errorf("the API token from %s is empty, too long or has invalid characters", from);
        return EXIT_USAGE;
    }
    ctx->token = tok;
    return 0;
}

/* ---- requests ------------------------------------------------------------ */

/* --cacert, else $DROVER_CACERT, onto the new handle: only an https://
 * server is affected, and only then must the file be readable. */
static int set_cacert(ctx_t *ctx)
{
    const char *f = ctx->args->val[OPT_CACERT];
    const char *from = "--cacert";
    char sbuf[64];
    if (f == NULL && getenv("DROVER_CACERT") != NULL && *getenv("DROVER_CACERT")) {
        f = getenv("DROVER_CACERT");
        from = "DROVER_CACERT";
    }
    if (f == NULL || strncmp(ctx->server, "https://", 8) != 0)
        return 0;
    if (access(f, R_OK) < 0) {
        cli_errorf("cannot read the CA certificate file %s (from %s): %s",
                   cli_shown(f, sbuf, sizeof(sbuf)), from, strerror(errno));
        return EXIT_USAGE;
    }
    if (cli_http_set_ca_file(ctx->http, f) < 0) {
        cli_errorf("libcurl refuses the CA certificate file %s", cli_shown(f, sbuf, sizeof(sbuf)));
        return EXIT_USAGE;
    }
    return 0;
}

/* Resolves the server (and with_token the token) and makes the handle,
 * once: a command that connects twice gets the first connection. */
static int connect_ctx(ctx_t *ctx, bool with_token)
{
    if (ctx->http != NULL)
        return 0;
    int rc = resolve_server(ctx, ctx->args, ctx->cfg);
    if (rc == 0 && with_token)
        rc = resolve_token(ctx, ctx->args, ctx->cfg);
    if (rc != 0)
        return rc;
    if (!ctx->curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            cli_errorf("cannot initialise libcurl");
            return EXIT_SERVER;
        }
        ctx->curl_ready = true;
    }
    if (cli_http_new(ctx->server, with_token ? ctx->token : NULL, ctx->timeout_s, &ctx->http) < 0)
        return cli_oom();
    return set_cacert(ctx);
}

/* The connection for the commands of this file, with their wording of
 * failures (the server URL as resolved, the --cacert hint, any detail). */
static int conn_ctx(ctx_t *ctx, cli_conn_t *c)
{
    int rc = connect_ctx(ctx, true);
    *c = (cli_conn_t){ctx->http, ctx->server,
                      CLI_REQ_TLS_HINT | CLI_REQ_SERVER_ASIS | CLI_REQ_ANY_DETAIL};
    return rc;
}

/* One request, after connecting: as cli_request(). */
static int api_opts(ctx_t *ctx, const char *method, cli_path_t *p, const char *body,
                    const cli_http_opts_t *o, long quiet, json_t **out)
{
    cli_conn_t c;
    int rc = conn_ctx(ctx, &c);
    if (rc == 0)
        rc = cli_path_check(p);
    if (rc == 0)
        rc = cli_request(&c, method, p->b.data, body, o, quiet, out);
    return rc;
}

static int api(ctx_t *ctx, const char *method, cli_path_t *p, const char *body, json_t **out)
{
    return api_opts(ctx, method, p, body, NULL, 0, out);
}

/* POSTs/PUTs/PATCHes v as the body, then finishes p. Returns as
 * api_opts() does. */
static int send_json(ctx_t *ctx, const char *method, cli_path_t *p, const json_t *v,
                     const cli_http_opts_t *o, long quiet, json_t **out)
{
    char *body = json_util_dump(v);
    int rc = body ? api_opts(ctx, method, p, body, o, quiet, out) : cli_oom();
    free(body);
    cli_path_fini(p);
    return rc;
}

static const char *online_cell(const json_t *v)
{
    return json_is_true(v) ? "yes" : json_is_false(v) ? "no" : "-";
}

static bool id_arg_ok(const char *id)
{
    return util_id_valid(id, strlen(id));
}

static int bad_id(const args_t *a, const char *id)
{
    char sbuf[64];
    return usage_error(a->cmd, "invalid device id '%s': 1 to 64 characters of A-Z a-z 0-9 . _ -",
                       cli_shown(id, sbuf, sizeof(sbuf)));
}

static void device_path(cli_path_t *p, const char *id, const char *suffix)
{
    cli_path_init(p, "/api/v1/devices/");
    cli_path_escaped(p, id);
    if (suffix)
        cli_path_raw(p, suffix);
}

/* Checks the ID positional, then sends method (no body) to the device's
 * path + suffix. Returns as api() does. */
static int device_call(ctx_t *ctx, const args_t *a, const char *method, const char *suffix,
                       json_t **out)
{
    const char *id = a->pos[0];
    if (!id_arg_ok(id))
        return bad_id(a, id);
    cli_path_t p;
    device_path(&p, id, suffix);
    int rc = api(ctx, method, &p, NULL, out);
    cli_path_fini(&p);
    return rc;
}

/* device_call, then the answer through print (which checks its shape). */
static int device_print(ctx_t *ctx, const args_t *a, const char *method, const char *suffix,
                        int (*print)(ctx_t *ctx, const json_t *v))
{
    json_t *v = NULL;
    int rc = device_call(ctx, a, method, suffix, &v);
    if (rc == 0)
        rc = print(ctx, v);
    json_decref(v);
    return rc;
}

/* --since and --until as the server takes them (see cli_parse_when) into
 * since and until (128 bytes each; NULL when not given). Returns 0 or a
 * usage error. */
static int when_args(const args_t *a, char *since, char *until, const char **s, const char **u)
{
    char sbuf[64];
    int64_t now = util_now_ms();
    const int when[2] = {OPT_SINCE, OPT_UNTIL};
    char *out[2] = {since, until};
    for (int i = 0; i < 2; i++) {
        const char *v = a->val[when[i]];
        if (v != NULL && cli_parse_when(v, now, out[i], 128) < 0)
            return usage_error(a->cmd,
                               "--%s wants epoch ms, RFC 3339, now, or -N followed by s, m, h, d "
                               "or w; got '%s'",
                               options[when[i]].name, cli_shown(v, sbuf, sizeof(sbuf)));
    }
    *s = a->val[OPT_SINCE] ? since : NULL;
    *u = a->val[OPT_UNTIL] ? until : NULL;
    return 0;
}

/* --limit, --cursor and --all. Returns 0 or a usage error. */
static int pages_arg(const args_t *a, cli_pages_t *pg)
{
    int limit;
    if (a->set[OPT_LIMIT] && cli_parse_count(a->val[OPT_LIMIT], &limit) < 0)
        return usage_error(a->cmd, "--limit wants a positive number");
    *pg = (cli_pages_t){a->val[OPT_LIMIT], a->val[OPT_CURSOR], a->set[OPT_ALL]};
    return 0;
}

/* A JSON object answer: as it is with --json, else through show. */
static int print_doc(ctx_t *ctx, const json_t *v, int (*show)(const json_t *))
{
    if (ctx->json)
        return cli_print_json(v);
    if (show(v) < 0) {
        cli_errorf("cannot print the answer: out of memory");
        return EXIT_SERVER;
    }
    return EXIT_OK;
}

/* id and secret of a fresh credential, then the once-only warning. */
static int print_secret(ctx_t *ctx, const json_t *v)
{
    const char *id = json_string_value(json_object_get(v, "id"));
    const char *secret = json_string_value(json_object_get(v, "secret"));
    if (id == NULL || secret == NULL)
        return cli_unexpected("no id or secret");
    int rc = EXIT_OK;
    if (ctx->json) {
        rc = cli_print_json(v);
    } else {
        char *i = cli_sanitize(id, 0), *s = cli_sanitize(secret, 0);
        if (i == NULL || s == NULL)
            rc = EXIT_SERVER;
        else
            printf("id:      %s\nsecret:  %s\n", i, s);
        free(i);
        free(s);
    }
    cli_warn_shown_once("secret");
    return rc;
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_device_add(ctx_t *ctx, const args_t *a)
{
    const char *id = a->pos[0];
    char sbuf[64];
    if (!id_arg_ok(id))
        return bad_id(a, id);
    json_t *tags = NULL, *resp = NULL;
    size_t bad = 0;
    int e = cli_tags_build(a->tags, a->ntags, &tags, &bad);
    const char *kv = e < 0 && e != -ENOMEM ? cli_shown(a->tags[bad], sbuf, sizeof(sbuf)) : "";
    if (e == -EINVAL)
        return usage_error(a->cmd, "--tag wants K=V, got '%s'", kv);
    if (e == -EEXIST)
        return usage_error(a->cmd, "tag '%s' given twice", kv);
    if (e == -EILSEQ)
        return usage_error(a->cmd, "tag '%s' is not valid UTF-8", kv);
    json_t *req = e == 0 ? json_pack("{s:s, s:o}", "id", id, "tags", tags) : NULL;
    if (req == NULL)
        return cli_oom();
    cli_path_t p;
    cli_path_init(&p, "/api/v1/devices");
    int rc = send_json(ctx, "POST", &p, req, NULL, 0, &resp);
    if (rc == 0)
        rc = print_secret(ctx, resp);
    json_decref(resp);
    json_decref(req);
    return rc;
}

static int device_row(cli_table_t *t, const json_t *d, void *arg)
{
    (void)arg;
    char seen[CLI_TIME_MAX];
    cli_time_cell(json_object_get(d, "last_seen"), false, "-", seen, sizeof(seen));
    /* Cut to CLI_TABLE_CELL_MAX anyway. */
    char *tags = cli_pairs_text(json_object_get(d, "tags"), ",", 4096);
    const char *cells[] = {json_string_value(json_object_get(d, "id")),
                           online_cell(json_object_get(d, "online")), seen, tags};
    int rc = tags ? cli_table_add(t, cells) : -ENOMEM;
    free(tags);
    return rc;
}

static int cmd_device_list(ctx_t *ctx, const args_t *a)
{
    static const char *const header[] = {"ID", "ONLINE", "LAST SEEN", "TAGS"};
    const cli_rows_t rows = {
        .key = "devices", .ncols = 4, .header = header, .row = device_row, .none = "no devices"};
    char sbuf[64];
    size_t kl;
    cli_pages_t pg;
    if (a->ntags == 1 && cli_tag_split(a->tags[0], &kl) < 0)
        return usage_error(a->cmd, "--tag wants K=V, got '%s'",
                           cli_shown(a->tags[0], sbuf, sizeof(sbuf)));
    if (a->set[OPT_ONLINE] && a->set[OPT_OFFLINE])
        return usage_error(a->cmd, "--online and --offline exclude each other");
    int rc = pages_arg(a, &pg);
    if (rc != 0)
        return rc;
    cli_path_t p;
    cli_path_init(&p, "/api/v1/devices");
    cli_path_param(&p, "tag", a->ntags ? a->tags[0] : NULL);
    cli_path_param(&p, "online",
                   a->set[OPT_ONLINE]    ? "true"
                   : a->set[OPT_OFFLINE] ? "false"
                                         : NULL);
    cli_conn_t c;
    rc = conn_ctx(ctx, &c);
    if (rc == 0)
        rc = cli_path_check(&p);
    if (rc == 0)
        rc = cli_list_pages(&c, p.b.data, &pg, ctx->json, &rows);
    cli_path_fini(&p);
    return rc;
}

static int cmpstr(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static void print_kv(const char *label, const char *value)
{
    char *v = cli_sanitize(value ? value : "-", 0);
    printf("%-11s %s\n", label, v ? v : "?");
    free(v);
}

static int show_device(const json_t *d)
{
    char ts[CLI_TIME_MAX];
    print_kv("id:", json_string_value(json_object_get(d, "id")));
    print_kv("online:", online_cell(json_object_get(d, "online")));
    cli_time_cell(json_object_get(d, "last_seen"), false, "-", ts, sizeof(ts));
    print_kv("last seen:", ts);
    cli_time_cell(json_object_get(d, "created_at"), false, "-", ts, sizeof(ts));
    print_kv("created:", ts);

    json_t *tags = json_object_get(d, "tags");
    const char *k;
    json_t *v;
    bool first = true;
    json_object_foreach(tags, k, v)
    {
        char *t = cli_json_text(v);
        char *ks = cli_sanitize(k, 0), *vs = cli_sanitize(t, 0);
        if (t && ks && vs)
            printf("%-11s %s=%s\n", first ? "tags:" : "", ks, vs);
        free(t);
        free(ks);
        free(vs);
        first = false;
    }
    if (first)
        print_kv("tags:", "-");

    json_t *tel = json_object_get(d, "telemetry");
    size_t n = json_object_size(tel);
    if (n == 0) {
        print_kv("telemetry:", "-");
        return 0;
    }
    const char **names = calloc(n, sizeof(*names));
    cli_table_t t;
    cli_table_init(&t, 3);
    const char *header[] = {"METRIC", "VALUE", "UPDATED"};
    int rc = names && cli_table_add(&t, header) == 0 ? 0 : -ENOMEM;
    size_t i = 0;
    json_object_foreach(tel, k, v)
    {
        if (names != NULL && i < n)
            names[i++] = k;
    }
    if (names != NULL)
        qsort(names, i, sizeof(*names), cmpstr);
    for (size_t j = 0; rc == 0 && j < i; j++) {
        json_t *m = json_object_get(tel, names[j]);
        char *val = cli_json_text(json_is_object(m) ? json_object_get(m, "value") : m);
        cli_time_cell(json_object_get(m, "ts"), true, "-", ts, sizeof(ts));
        const char *cells[] = {names[j], val, ts};
        rc = val ? cli_table_add(&t, cells) : -ENOMEM;
        free(val);
    }
    if (rc == 0) {
        putchar('\n');
        cli_table_print(&t, stdout);
    }
    cli_table_fini(&t);
    free(names);
    return rc;
}

static int cmd_device_show(ctx_t *ctx, const args_t *a)
{
    json_t *d = NULL;
    int rc = device_call(ctx, a, "GET", NULL, &d);
    if (rc != 0)
        return rc;
    if (!json_is_object(d))
        rc = cli_unexpected("not a device object");
    else if (ctx->json)
        rc = cli_print_json(d);
    else if (show_device(d) < 0)
        rc = cli_oom();
    json_decref(d);
    return rc;
}

static int cmd_device_rm(ctx_t *ctx, const args_t *a)
{
    json_t *d = NULL;
    int rc = device_call(ctx, a, "DELETE", NULL, &d);
    if (rc != 0)
        return rc;
    if (ctx->json && d != NULL)
        rc = cli_print_json(d);
    else if (!ctx->json)
        printf("deleted device %s\n", a->pos[0]);
    json_decref(d);
    return rc;
}

static int cmd_device_rotate(ctx_t *ctx, const args_t *a)
{
    return device_print(ctx, a, "POST", "/secret", print_secret);
}

static int point_row(cli_table_t *t, const json_t *pt, void *arg)
{
    (void)arg;
    char ts[CLI_TIME_MAX];
    cli_time_cell(json_object_get(pt, "ts"), true, "-", ts, sizeof(ts));
    char *val = cli_json_text(json_object_get(pt, "value"));
    const char *cells[] = {ts, json_string_value(json_object_get(pt, "metric")), val};
    int rc = val ? cli_table_add(t, cells) : -ENOMEM;
    free(val);
    return rc;
}

static int cmd_telemetry(ctx_t *ctx, const args_t *a)
{
    static const char *const header[] = {"TIME", "METRIC", "VALUE"};
    const cli_rows_t rows = {
        .ncols = 3, .header = header, .row = point_row, .none = "no telemetry points"};
    const char *id = a->pos[0];
    char since[128], until[128];
    const char *s, *u;
    int limit;
    if (!id_arg_ok(id))
        return bad_id(a, id);
    int rc = when_args(a, since, until, &s, &u);
    if (rc != 0)
        return rc;
    if (a->set[OPT_LIMIT] && cli_parse_count(a->val[OPT_LIMIT], &limit) < 0)
        return usage_error(a->cmd, "--limit wants a positive number");

    cli_path_t p;
    json_t *d = NULL;
    device_path(&p, id, "/telemetry");
    cli_path_param(&p, "metric", a->val[OPT_METRIC]);
    cli_path_param(&p, "since", s);
    cli_path_param(&p, "until", u);
    cli_path_param(&p, "limit", a->val[OPT_LIMIT]);
    cli_path_param(&p, "cursor", a->val[OPT_CURSOR]);
    rc = api(ctx, "GET", &p, NULL, &d);
    cli_path_fini(&p);
    if (rc != 0)
        return rc;

    json_t *points = json_object_get(d, "points");
    json_t *next = json_object_get(d, "next");
    if (!json_is_array(points) || !(json_is_null(next) || json_is_string(next)))
        rc = cli_unexpected("no points array or next cursor");
    else if (ctx->json)
        rc = cli_print_json(d);
    else if (cli_print_rows(points, &rows) < 0)
        rc = cli_oom();
    else if (json_is_string(next)) {
        char *c = cli_sanitize(json_string_value(next), 0);
        cli_errorf("more points: use --cursor %s", c ? c : "?");
        free(c);
    }
    json_decref(d);
    return rc;
}

/* ---- control: twin, commands, bulk jobs ---------------------------------- */

/* The text of a JSON|@FILE|- argument: inline, a file's contents or stdin.
 * Returns 0 with *text (malloc'd when *owned) or an exit status. */
static int arg_text(const args_t *a, const char *arg, const char *what, char **text, size_t *len,
                    bool *owned)
{
    char sbuf[64];
    cli_buf_t b;
    *owned = false;
    if (strcmp(arg, "-") != 0 && arg[0] != '@') {
        *text = (char *)arg;
        *len = strlen(arg);
        return 0;
    }
    cli_buf_init(&b, BODY_ARG_MAX);
    /* "@-" is a file named "-", not stdin again. */
    int rc = arg[0] == '@' ? cli_read_path(arg + 1, &b) : cli_read_input("-", &b);
    if (rc < 0)
        cli_buf_wipe(&b);
    if (rc == -ENOMEM)
        return cli_oom();
    if (rc < 0)
        return usage_error(a->cmd, "cannot read %s from %s: %s", what,
                           arg[0] == '@' ? cli_shown(arg + 1, sbuf, sizeof(sbuf)) : "stdin",
                           rc == -EFBIG ? "larger than 16 MiB" : strerror(-rc));
    *text = b.data;
    *len = b.len;
    *owned = true;
    return 0;
}

/* A JSON|@FILE|- argument parsed; an object when want_object. Returns 0
 * with *out (caller frees) or an exit status. */
static int json_arg(const args_t *a, const char *arg, bool want_object, const char *what,
                    json_t **out)
{
    char *text;
    size_t len;
    bool owned;
    int rc = arg_text(a, arg, what, &text, &len, &owned);
    if (rc != 0)
        return rc;
    char err[200];
    rc = cli_json_arg(text, len, want_object, out, err, sizeof(err));
    if (owned)
        free(text);
    if (rc == -ENOMEM)
        return cli_oom();
    if (rc < 0)
        return usage_error(a->cmd, "%s %s", what, err);
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A value printed after a label: scalars on the label's line, objects and
 * arrays pretty-printed on the lines below it. */
static int print_value(const char *label, const json_t *v)
{
    if (!json_is_object(v) && !json_is_array(v)) {
        char *t = v != NULL ? cli_json_text(v) : NULL;
        if (v != NULL && t == NULL)
            return -ENOMEM;
        print_kv(label, t ? t : "-");
        free(t);
        return 0;
    }
    cli_buf_t b;
    cli_buf_init(&b, SIZE_MAX / 2);
    int rc = cli_json_pretty(v, &b);
    if (rc == 0)
        printf("%s\n%s\n", label, b.data);
    cli_buf_fini(&b);
    return rc;
}

/* A value compactly on one line, cut to max code points. */
static void print_compact(const char *label, const json_t *v, size_t max)
{
    char *t = cli_json_text(v);
    char *c = t ? cli_sanitize(t, max) : NULL;
    printf("%-11s %s\n", label, c ? c : "?");
    free(c);
    free(t);
}

/* ---- twin ---- */

/* One side of the twin: a title with version and time, then the document. */
static int print_twin_side(const json_t *t, const char *side)
{
    char key[32], ts[CLI_TIME_MAX];
    snprintf(key, sizeof(key), "%s_version", side);
    char *ver = cli_json_text(json_object_get(t, key));
    snprintf(key, sizeof(key), "%s_at", side);
    cli_time_cell(json_object_get(t, key), false, "-", ts, sizeof(ts));
    char title[160];
    snprintf(title, sizeof(title), "%s (version %s, changed %s):", side, ver ? ver : "-", ts);
    free(ver);
    return print_value(title, json_object_get(t, side));
}

static int show_twin(const json_t *t)
{
    int rc = print_twin_side(t, "desired");
    if (rc == 0) {
        putchar('\n');
        rc = print_twin_side(t, "reported");
    }
    if (rc == 0) {
        putchar('\n');
        rc = print_value("delta (desired keys the device has not reported yet):",
                         json_object_get(t, "delta"));
    }
    return rc;
}

static int print_twin(ctx_t *ctx, const json_t *t)
{
    if (!json_is_object(t) || !json_is_object(json_object_get(t, "desired")) ||
        !json_is_object(json_object_get(t, "reported")))
        return cli_unexpected("not a twin object");
    return print_doc(ctx, t, show_twin);
}

static int cmd_twin_get(ctx_t *ctx, const args_t *a)
{
    return device_print(ctx, a, "GET", "/twin", print_twin);
}

static int twin_write(ctx_t *ctx, const args_t *a, bool patch)
{
    const char *id = a->pos[0];
    char sbuf[64];
    if (!id_arg_ok(id))
        return bad_id(a, id);
    int64_t version = -1;
    if (a->set[OPT_IF_MATCH] && (util_parse_i64(a->val[OPT_IF_MATCH], &version) < 0 || version < 0))
        return usage_error(a->cmd, "--if-match wants a desired_version number, got '%s'",
                           cli_shown(a->val[OPT_IF_MATCH], sbuf, sizeof(sbuf)));
    json_t *doc = NULL, *t = NULL;
    int rc = json_arg(a, a->pos[1], true, patch ? "the patch" : "the desired state", &doc);
    if (rc != 0)
        return rc;
    /* An entity tag is quoted (RFC 9110); the server takes it either way. */
    char etag[32];
    snprintf(etag, sizeof(etag), "\"%lld\"", (long long)version);
    cli_http_opts_t o = {
        .content_type = patch ? "application/merge-patch+json" : NULL,
        .if_match = version >= 0 ? etag : NULL,
    };
    cli_path_t p;
    device_path(&p, id, "/twin/desired");
    rc = send_json(ctx, patch ? "PATCH" : "PUT", &p, doc, &o, 412, &t);
    if (rc == CLI_QUIET) {
        cli_errorf("desired state changed since version %lld (412 precondition_failed); read it "
                   "again with `drover twin get %s`",
                   (long long)version, id);
        rc = EXIT_SERVER;
    } else if (rc == 0) {
        rc = print_twin(ctx, t);
    }
    json_decref(t);
    json_decref(doc);
    return rc;
}

static int cmd_twin_set(ctx_t *ctx, const args_t *a)
{
    return twin_write(ctx, a, false);
}

static int cmd_twin_patch(ctx_t *ctx, const args_t *a)
{
    return twin_write(ctx, a, true);
}

/* ---- commands ---- */

static const char *status_of(const json_t *v)
{
    const char *s = json_string_value(json_object_get(v, "status"));
    return s ? s : "";
}

static int show_command(const json_t *c)
{
    char ts[CLI_TIME_MAX];
    print_kv("id:", json_string_value(json_object_get(c, "id")));
    print_kv("device:", json_string_value(json_object_get(c, "device")));
    print_kv("name:", json_string_value(json_object_get(c, "name")));
    print_kv("status:", json_string_value(json_object_get(c, "status")));
    if (json_object_get(c, "job") != NULL)
        print_kv("job:", json_string_value(json_object_get(c, "job")));
    print_compact("params:", json_object_get(c, "params"), 200);
    static const char *const times[][2] = {{"created_at", "created:"},
                                           {"sent_at", "sent:"},
                                           {"finished_at", "finished:"},
                                           {"expires_at", "expires:"}};
    for (size_t i = 0; i < ARRAY_SIZE(times); i++) {
        cli_time_cell(json_object_get(c, times[i][0]), false, "-", ts, sizeof(ts));
        print_kv(times[i][1], ts);
    }
    return print_value("output:", json_object_get(c, "result"));
}

static int print_command(ctx_t *ctx, const json_t *c)
{
    if (!json_is_object(c) || json_string_value(json_object_get(c, "id")) == NULL)
        return cli_unexpected("not a command object");
    return print_doc(ctx, c, show_command);
}

/* A --wait value: *bounded false for a bare --wait, else the seconds. */
static int wait_arg(const args_t *a, bool *bounded, double *secs)
{
    *bounded = a->val[OPT_WAIT] != NULL;
    *secs = 0;
    if (*bounded && cli_parse_seconds(a->val[OPT_WAIT], secs) < 0)
        return usage_error(a->cmd, "--wait wants seconds, more than 0 and at most 86400");
    return 0;
}

/*
 * Long-polls GET /commands/CID?wait= until the command ends or, when
 * bounded, secs have passed; *cmd is replaced by each answer. Unbounded is
 * safe: the server ends every command by its expires_at. Returns 0 or an
 * exit status.
 */
static int wait_command(ctx_t *ctx, const char *cid, bool bounded, double secs, json_t **cmd)
{
    int64_t deadline_us = util_mono_us() + (int64_t)(secs * 1e6);
    while (!cli_command_final(status_of(*cmd))) {
        int64_t w = LONG_POLL_MAX_S;
        if (bounded) {
            int64_t left_ms = (deadline_us - util_mono_us()) / 1000;
            if (left_ms <= 0)
                break;
            w = (left_ms + 999) / 1000;
            if (w > LONG_POLL_MAX_S)
                w = LONG_POLL_MAX_S;
        }
        char wbuf[24];
        snprintf(wbuf, sizeof(wbuf), "%lld", (long long)w);
        cli_path_t p;
        cli_path_init(&p, "/api/v1/commands/");
        cli_path_escaped(&p, cid);
        cli_path_param(&p, "wait", wbuf);
        /* The server holds the request up to w seconds, then answers. */
        cli_http_opts_t o = {.timeout_s = (double)w + ctx->timeout_s};
        json_t *next = NULL;
        int rc = api_opts(ctx, "GET", &p, NULL, &o, 0, &next);
        cli_path_fini(&p);
        if (rc != 0)
            return rc;
        if (!json_is_object(next)) {
            json_decref(next);
            return cli_unexpected("not a command object");
        }
        json_decref(*cmd);
        *cmd = next;
    }
    return 0;
}

/* Prints a waited-for command; the exit status says how it ended. */
static int finish_command(ctx_t *ctx, const args_t *a, const json_t *c)
{
    int rc = print_command(ctx, c);
    if (rc != EXIT_OK)
        return rc;
    const char *st = status_of(c);
    char *id = cli_sanitize(json_string_value(json_object_get(c, "id")), 0);
    char *ss = cli_sanitize(st, 32);
    fflush(stdout);
    if (strcmp(st, "succeeded") == 0)
        rc = EXIT_OK;
    else if (strcmp(st, "rejected") == 0)
        cli_errorf("command %s was rejected by the device", id ? id : "?");
    else if (strcmp(st, "expired") == 0)
        cli_errorf("command %s expired: the device did not answer in time", id ? id : "?");
    else if (cli_command_final(st))
        cli_errorf("command %s %s", id ? id : "?", ss ? ss : "?");
    else
        cli_errorf("command %s is still %s after waiting %s s", id ? id : "?", ss ? ss : "?",
                   a->val[OPT_WAIT] ? a->val[OPT_WAIT] : "?");
    if (strcmp(st, "succeeded") != 0)
        rc = EXIT_SERVER;
    free(id);
    free(ss);
    return rc;
}

static int bad_name(const args_t *a, const char *name)
{
    char sbuf[64];
    return usage_error(a->cmd, "invalid command name '%s': 1 to 64 characters of A-Z a-z 0-9 . _ -",
                       cli_shown(name, sbuf, sizeof(sbuf)));
}

/* {"name", "params", "timeout_s"} from NAME, --params, --param, --timeout.
 * Returns 0 with *out or an exit status. */
static int command_spec(const args_t *a, const char *name, json_t **out)
{
    if (!id_arg_ok(name))
        return bad_name(a, name);
    int timeout = 0;
    if (a->set[OPT_TIMEOUT] && cli_parse_count(a->val[OPT_TIMEOUT], &timeout) < 0)
        return usage_error(a->cmd, "--timeout wants whole seconds, 1 or more");
    char *text = NULL;
    size_t len = 0;
    bool owned = false;
    if (a->val[OPT_PARAMS] != NULL) {
        int rc = arg_text(a, a->val[OPT_PARAMS], "--params", &text, &len, &owned);
        if (rc != 0)
            return rc;
        if (strlen(text) != len) {
            if (owned)
                free(text);
            return usage_error(a->cmd, "--params holds a NUL byte");
        }
    }
    json_t *params = NULL;
    char err[200];
    int rc = cli_params_build(text, a->params, a->nparams, &params, err, sizeof(err));
    if (owned)
        free(text);
    if (rc == -EINVAL)
        return usage_error(a->cmd, "%s", err);
    json_t *spec = rc == 0 ? json_pack("{s:s, s:o}", "name", name, "params", params) : NULL;
    if (spec != NULL && timeout > 0 &&
        json_object_set_new(spec, "timeout_s", json_integer(timeout)) < 0) {
        json_decref(spec);
        spec = NULL;
    }
    if (spec == NULL)
        return cli_oom();
    *out = spec;
    return 0;
}

/* A command just sent or read: printed, or with --wait followed (cid is
 * its id, not in *c, which is replaced) until it ends. */
static int show_or_wait(ctx_t *ctx, const args_t *a, const char *cid, bool bounded, double secs,
                        json_t **c)
{
    if (!a->set[OPT_WAIT])
        return print_command(ctx, *c);
    int rc = wait_command(ctx, cid, bounded, secs, c);
    return rc == 0 ? finish_command(ctx, a, *c) : rc;
}

static int cmd_cmd_send(ctx_t *ctx, const args_t *a)
{
    const char *id = a->pos[0];
    if (!id_arg_ok(id))
        return bad_id(a, id);
    bool bounded;
    double secs;
    int rc = wait_arg(a, &bounded, &secs);
    json_t *spec = NULL, *c = NULL;
    if (rc == 0)
        rc = command_spec(a, a->pos[1], &spec);
    if (rc != 0)
        return rc;
    cli_path_t p;
    device_path(&p, id, "/commands");
    rc = send_json(ctx, "POST", &p, spec, NULL, 0, &c);
    json_decref(spec);
    if (rc != 0)
        return rc;
    const char *cid = json_string_value(json_object_get(c, "id"));
    char cidbuf[DROVER_ID_MAX + 1];
    if (!json_is_object(c) || cid == NULL || !id_arg_ok(cid)) {
        rc = cli_unexpected("not a command object");
    } else {
        snprintf(cidbuf, sizeof(cidbuf), "%s", cid);
        rc = show_or_wait(ctx, a, cidbuf, bounded, secs, &c);
    }
    json_decref(c);
    return rc;
}

static int cmd_cmd_show(ctx_t *ctx, const args_t *a)
{
    const char *cid = a->pos[0];
    char sbuf[64];
    if (!id_arg_ok(cid))
        return usage_error(a->cmd, "invalid command id '%s'", cli_shown(cid, sbuf, sizeof(sbuf)));
    bool bounded;
    double secs;
    int rc = wait_arg(a, &bounded, &secs);
    if (rc != 0)
        return rc;
    cli_path_t p;
    json_t *c = NULL;
    cli_path_init(&p, "/api/v1/commands/");
    cli_path_escaped(&p, cid);
    rc = api(ctx, "GET", &p, NULL, &c);
    cli_path_fini(&p);
    if (rc != 0)
        return rc;
    if (!json_is_object(c))
        rc = cli_unexpected("not a command object");
    else
        rc = show_or_wait(ctx, a, cid, bounded, secs, &c);
    json_decref(c);
    return rc;
}

static int command_row(cli_table_t *t, const json_t *c, void *arg)
{
    (void)arg;
    char created[CLI_TIME_MAX], finished[CLI_TIME_MAX];
    cli_time_cell(json_object_get(c, "created_at"), false, "-", created, sizeof(created));
    cli_time_cell(json_object_get(c, "finished_at"), false, "-", finished, sizeof(finished));
    const char *cells[] = {json_string_value(json_object_get(c, "id")),
                           json_string_value(json_object_get(c, "name")),
                           json_string_value(json_object_get(c, "status")), created, finished};
    return cli_table_add(t, cells);
}

/* Every page (or one) of base: as cli_get_pages after connecting. */
static int get_pages(ctx_t *ctx, const cli_path_t *base, const char *key, const cli_pages_t *pg,
                     json_t **out)
{
    cli_conn_t c;
    int rc = base->err ? EXIT_SERVER : conn_ctx(ctx, &c);
    if (rc == 0)
        rc = cli_get_pages(&c, base->b.data, key, pg, out);
    return rc;
}

static int cmd_cmd_list(ctx_t *ctx, const args_t *a)
{
    static const char *const header[] = {"ID", "NAME", "STATUS", "CREATED", "FINISHED"};
    const cli_rows_t rows = {
        .ncols = 5, .header = header, .row = command_row, .none = "no commands"};
    const char *id = a->pos[0];
    cli_pages_t pg;
    if (!id_arg_ok(id))
        return bad_id(a, id);
    int rc = pages_arg(a, &pg);
    if (rc != 0)
        return rc;
    cli_path_t p;
    json_t *doc = NULL;
    device_path(&p, id, "/commands");
    rc = get_pages(ctx, &p, "commands", &pg, &doc);
    cli_path_fini(&p);
    if (rc != 0)
        return rc;
    if (ctx->json)
        rc = cli_print_json(doc);
    else if (cli_print_rows(json_object_get(doc, "commands"), &rows) < 0)
        rc = cli_oom();
    else
        cli_more_hint(doc, "commands");
    json_decref(doc);
    return rc;
}

/* ---- bulk jobs ---- */

/* The job's header lines and its count of devices by state. */
static int show_job(const json_t *j)
{
    char ts[CLI_TIME_MAX];
    print_kv("job:", json_string_value(json_object_get(j, "id")));
    print_kv("kind:", json_string_value(json_object_get(j, "kind")));
    print_kv("status:", json_string_value(json_object_get(j, "status")));
    print_compact("devices:", json_object_get(j, "total"), 0);
    cli_time_cell(json_object_get(j, "created_at"), false, "-", ts, sizeof(ts));
    print_kv("created:", ts);
    cli_time_cell(json_object_get(j, "finished_at"), false, "-", ts, sizeof(ts));
    print_kv("finished:", ts);
    json_t *spec = json_object_get(j, "spec");
    json_t *target = json_object_get(spec, "target");
    if (json_is_string(json_object_get(target, "tag"))) {
        char *t = cli_sanitize(json_string_value(json_object_get(target, "tag")), 200);
        printf("%-11s tag %s\n", "target:", t ? t : "?");
        free(t);
    } else if (json_is_true(json_object_get(target, "all"))) {
        print_kv("target:", "all devices");
    } else if (json_is_array(json_object_get(target, "ids"))) {
        cli_buf_t b;
        cli_buf_init(&b, 4096);
        size_t i;
        json_t *v;
        int e = cli_buf_puts(&b, "ids ");
        json_array_foreach(json_object_get(target, "ids"), i, v)
        {
            if (e == 0 && i > 0)
                e = cli_buf_puts(&b, ",");
            if (e == 0 && json_is_string(v))
                e = cli_buf_puts(&b, json_string_value(v));
        }
        /* A long list is cut: `drover job show --json` has it whole. */
        char *t = b.data ? cli_sanitize(b.data, 200) : NULL;
        print_kv("target:", t ? t : "ids ...");
        free(t);
        cli_buf_fini(&b);
    } else if (target != NULL) {
        print_compact("target:", target, 200);
    }
    if (json_object_get(spec, "name") != NULL) {
        print_kv("command:", json_string_value(json_object_get(spec, "name")));
        print_compact("params:", json_object_get(spec, "params"), 200);
        json_t *to = json_object_get(spec, "timeout_s");
        if (json_is_integer(to) && json_integer_value(to) > 0)
            printf("%-11s %lld s\n", "timeout:", (long long)json_integer_value(to));
        else
            print_kv("timeout:", "server default");
    }
    if (json_object_get(spec, "patch") != NULL)
        print_compact("patch:", json_object_get(spec, "patch"), 200);

    cli_table_t t;
    cli_table_init(&t, 2);
    const char *header[] = {"STATE", "DEVICES"};
    int rc = cli_table_add(&t, header);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(j, "counts"), k, v)
    {
        char *n = cli_json_text(v);
        const char *cells[] = {k, n};
        if (rc == 0)
            rc = n ? cli_table_add(&t, cells) : -ENOMEM;
        free(n);
    }
    if (rc == 0 && t.nrows > 1) {
        putchar('\n');
        cli_table_print(&t, stdout);
    }
    cli_table_fini(&t);
    return rc;
}

static bool job_ok(const json_t *j)
{
    return json_is_object(j) && json_string_value(json_object_get(j, "id")) != NULL &&
           json_is_integer(json_object_get(j, "total")) &&
           json_is_object(json_object_get(j, "counts"));
}

/* The job as the POST answered it: without the page of devices. */
static int print_job(ctx_t *ctx, json_t *j)
{
    if (ctx->json) {
        json_object_del(j, "devices");
        json_object_del(j, "next");
    }
    return print_doc(ctx, j, show_job);
}

static int64_t count_of(const json_t *j, const char *state)
{
    json_t *v = json_object_get(json_object_get(j, "counts"), state);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

/*
 * After POST /bulk/...: prints the job, or with --wait follows it (GET
 * /jobs/ID?limit=1, a progress line on stderr whenever it changes) until
 * it is no longer running, then prints it. Takes ownership of job.
 */
static int follow_job(ctx_t *ctx, const args_t *a, json_t *job)
{
    int rc;
    bool bounded;
    double secs;
    char jid[DROVER_ID_MAX + 1];
    if (!job_ok(job) || !id_arg_ok(json_string_value(json_object_get(job, "id")))) {
        json_decref(job);
        return cli_unexpected("not a job object");
    }
    snprintf(jid, sizeof(jid), "%s", json_string_value(json_object_get(job, "id")));
    if (!a->set[OPT_WAIT]) {
        rc = print_job(ctx, job);
        json_decref(job);
        fflush(stdout);
        if (rc == EXIT_OK)
            fprintf(stderr, "drover: follow it with `drover job show %s`\n", jid);
        return rc;
    }
    rc = wait_arg(a, &bounded, &secs);
    if (rc != 0) {
        json_decref(job);
        return rc;
    }
    int64_t deadline_us = util_mono_us() + (int64_t)(secs * 1e6);
    int64_t delay_ms = 250;
    char last[512] = "", line[512];
    for (;;) {
        if (cli_job_progress(job, line, sizeof(line)) == 0 && strcmp(line, last) != 0) {
            fprintf(stderr, "%s\n", line);
            memcpy(last, line, sizeof(last));
        }
        const char *st = status_of(job);
        if (strcmp(st, "running") != 0)
            break;
        if (bounded) {
            int64_t left_ms = (deadline_us - util_mono_us()) / 1000;
            if (left_ms <= 0) {
                rc = print_job(ctx, job);
                json_decref(job);
                fflush(stdout);
                cli_errorf("job %s is still running after %s s", jid, a->val[OPT_WAIT]);
                return rc == EXIT_OK ? EXIT_SERVER : rc;
            }
            sleep_ms(delay_ms < left_ms ? delay_ms : left_ms);
        } else {
            sleep_ms(delay_ms);
        }
        delay_ms = delay_ms * 2 > 1000 ? 1000 : delay_ms * 2;
        cli_path_t p;
        json_t *next = NULL;
        cli_path_init(&p, "/api/v1/jobs/");
        cli_path_escaped(&p, jid);
        cli_path_param(&p, "limit", "1");
        rc = api(ctx, "GET", &p, NULL, &next);
        cli_path_fini(&p);
        if (rc != 0) {
            json_decref(job);
            return rc;
        }
        if (!job_ok(next)) {
            json_decref(next);
            json_decref(job);
            return cli_unexpected("not a job object");
        }
        json_decref(job);
        job = next;
    }
    rc = print_job(ctx, job);
    fflush(stdout);
    const char *st = status_of(job);
    int64_t total = json_integer_value(json_object_get(job, "total"));
    int64_t good = count_of(job, "succeeded") + count_of(job, "applied");
    if (rc == EXIT_OK && strcmp(st, "done") != 0) {
        char *ss = cli_sanitize(st, 32);
        cli_errorf("job %s ended %s", jid, ss ? ss : "?");
        free(ss);
        rc = EXIT_SERVER;
    } else if (rc == EXIT_OK && good < total) {
        cli_errorf("job %s: %lld of %lld devices did not succeed; see `drover job show %s`", jid,
                   (long long)(total - good), (long long)total, jid);
        rc = EXIT_SERVER;
    }
    json_decref(job);
    return rc;
}

/* The target from --tag, --ids and --all-devices. */
static int target_arg(const args_t *a, json_t **out)
{
    char err[200];
    int rc = cli_target_build(a->ntags ? a->tags[0] : NULL, a->val[OPT_IDS],
                              a->set[OPT_ALL_DEVICES], out, err, sizeof(err));
    if (rc == -EINVAL)
        return usage_error(a->cmd, "%s", err);
    return rc < 0 ? cli_oom() : 0;
}

/* --wait checked, and the target of a bulk command. */
static int bulk_args(const args_t *a, json_t **target)
{
    bool bounded;
    double secs;
    int rc = wait_arg(a, &bounded, &secs);
    return rc != 0 ? rc : target_arg(a, target);
}

/* POSTs a bulk job and prints or follows it. */
static int bulk_post(ctx_t *ctx, const args_t *a, const char *path, const json_t *body)
{
    json_t *job = NULL;
    cli_path_t p;
    cli_path_init(&p, path);
    int rc = send_json(ctx, "POST", &p, body, NULL, 0, &job);
    return rc != 0 ? rc : follow_job(ctx, a, job);
}

static int cmd_bulk_cmd(ctx_t *ctx, const args_t *a)
{
    json_t *target = NULL, *spec = NULL;
    int rc = bulk_args(a, &target);
    if (rc == 0)
        rc = command_spec(a, a->pos[0], &spec);
    if (rc == 0 && json_object_set(spec, "target", target) < 0)
        rc = cli_oom();
    if (rc == 0)
        rc = bulk_post(ctx, a, "/api/v1/bulk/commands", spec);
    json_decref(target);
    json_decref(spec);
    return rc;
}

static int cmd_bulk_twin(ctx_t *ctx, const args_t *a)
{
    json_t *target = NULL, *patch = NULL, *body = NULL;
    int rc = bulk_args(a, &target);
    if (rc == 0)
        rc = json_arg(a, a->pos[0], true, "the patch", &patch);
    if (rc == 0 && (body = json_pack("{s:O, s:O}", "target", target, "patch", patch)) == NULL)
        rc = cli_oom();
    if (rc == 0)
        rc = bulk_post(ctx, a, "/api/v1/bulk/twin", body);
    json_decref(target);
    json_decref(patch);
    json_decref(body);
    return rc;
}

static int cmd_job_show(ctx_t *ctx, const args_t *a)
{
    const char *jid = a->pos[0];
    char sbuf[64];
    if (!id_arg_ok(jid))
        return usage_error(a->cmd, "invalid job id '%s'", cli_shown(jid, sbuf, sizeof(sbuf)));
    cli_pages_t pg;
    int rc = pages_arg(a, &pg);
    if (rc != 0)
        return rc;
    cli_path_t p;
    cli_path_init(&p, "/api/v1/jobs/");
    cli_path_escaped(&p, jid);
    json_t *doc = NULL;
    rc = get_pages(ctx, &p, "devices", &pg, &doc);
    cli_path_fini(&p);
    if (rc != 0)
        return rc;
    if (!job_ok(doc)) {
        json_decref(doc);
        return cli_unexpected("not a job object");
    }
    if (ctx->json) {
        rc = cli_print_json(doc);
        json_decref(doc);
        return rc;
    }
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    bool cmd = kind != NULL && strcmp(kind, "command") == 0;
    cli_table_t t;
    cli_table_init(&t, 3);
    const char *header[] = {"DEVICE", "STATUS", cmd ? "COMMAND" : "DETAIL"};
    int e = show_job(doc);
    if (e == 0)
        e = cli_table_add(&t, header);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(doc, "devices"), i, d)
    {
        const char *cells[] = {json_string_value(json_object_get(d, "device")),
                               json_string_value(json_object_get(d, "status")),
                               json_string_value(json_object_get(d, cmd ? "command" : "detail"))};
        if (e == 0)
            e = cli_table_add(&t, cells);
    }
    if (e < 0) {
        cli_errorf("out of memory");
        rc = EXIT_SERVER;
    } else if (t.nrows > 1) {
        putchar('\n');
        cli_table_print(&t, stdout);
    }
    if (e == 0)
        cli_more_hint(doc, "devices");
    cli_table_fini(&t);
    json_decref(doc);
    return rc;
}

/* audit list | export | verify: the work is in cmd_audit.c. */
static int family_connect(void *arg, bool with_token, cli_conn_t *out);

static int cmd_audit(ctx_t *ctx, const args_t *a)
{
    char since[128], until[128];
    cli_audit_opts_t o = {.actor = a->val[OPT_ACTOR],
                          .object = a->val[OPT_OBJECT],
                          .cursor = a->val[OPT_CURSOR],
                          .file = a->val[OPT_FILE],
                          .all = a->set[OPT_ALL],
                          .json = ctx->json};
    int rc = when_args(a, since, until, &o.since, &o.until);
    if (rc != 0)
        return rc;
    if (a->set[OPT_LIMIT] && cli_parse_count(a->val[OPT_LIMIT], &o.limit) < 0)
        return usage_error(a->cmd, "--limit wants a positive number");
    cli_conn_t c = {NULL, NULL, 0};
    if (o.file == NULL && (rc = family_connect(ctx, true, &c)) != 0)
        return rc;
    return cli_audit_run(a->cmd->path + strlen("audit "), &c, &o);
}

/* The connection for cmd_operators.c: with a token, or (login) without. */
/* The connection for cmd_audit.c, cmd_operators.c and cmd_pki.c: with a
 * token, or (login, ca, provision) without. */
static int family_connect(void *arg, bool with_token, cli_conn_t *out)
{
    ctx_t *ctx = arg;
    int rc = connect_ctx(ctx, with_token);
    if (rc != 0)
        return rc;
    *out = (cli_conn_t){ctx->http, ctx->server, 0};
    return 0;
}

/* token, user and login commands: the work is in cmd_operators.c. */
static int cmd_operators(ctx_t *ctx, const args_t *a)
{
    cli_ops_opts_t o = {.arg = a->npos > 0 ? a->pos[0] : NULL,
                        .role = a->val[OPT_ROLE],
                        .expires_in = a->val[OPT_EXPIRES_IN],
                        .password_stdin = a->set[OPT_PASSWORD_STDIN],
                        .save = a->set[OPT_SAVE],
                        .disable = a->set[OPT_DISABLE],
                        .enable = a->set[OPT_ENABLE],
                        .json = ctx->json};
    return cli_ops_run(a->cmd->path, &o, family_connect, ctx);
}

/* enroll, cert, ca, device import|revoke and provision: the work is in
 * cmd_pki.c. --desired is read here, as every JSON|@FILE|- argument is. */
static int cmd_pki(ctx_t *ctx, const args_t *a)
{
    json_t *desired = NULL;
    if (a->val[OPT_DESIRED] != NULL) {
        int rc = json_arg(a, a->val[OPT_DESIRED], true, "--desired", &desired);
        if (rc != 0)
            return rc;
    }
    cli_pki_opts_t o = {.arg = a->npos > 0 ? a->pos[0] : NULL,
                        .max_uses = a->val[OPT_MAX_USES],
                        .expires_in = a->val[OPT_EXPIRES_IN],
                        .group = a->val[OPT_GROUP],
                        .desired = desired,
                        .tags = a->tags,
                        .ntags = a->ntags,
                        .csr = a->val[OPT_CSR],
                        .out = a->val[OPT_OUT],
                        .format = a->val[OPT_FORMAT],
                        .claim_token = a->val[OPT_CLAIM_TOKEN],
                        .id = a->val[OPT_ID],
                        .json = ctx->json};
    int rc = cli_pki_run(a->cmd->path, &o, family_connect, ctx);
    json_decref(desired);
    return rc;
}

static int cmd_help(ctx_t *ctx, const args_t *a)
{
    char sbuf[64];
    (void)ctx;
    if (a->npos == 0) {
        print_global_help(stdout);
        return EXIT_OK;
    }
    const cmd_t *c = find_command(a->pos, a->npos);
    if (c != NULL && path_words(c->path) == a->npos) {
        print_command_help(stdout, c);
        return EXIT_OK;
    }
    if (a->npos == 1 && is_group(a->pos[0])) {
        print_group_help(stdout, a->pos[0]);
        return EXIT_OK;
    }
    return usage_error(NULL, "no such command '%s%s%s'", cli_shown(a->pos[0], sbuf, sizeof(sbuf)),
                       a->npos > 1 ? " " : "", a->npos > 1 ? a->pos[1] : "");
}

static int cmd_version(ctx_t *ctx, const args_t *a)
{
    (void)ctx;
    (void)a;
    printf("drover %s\n", DROVER_VERSION);
    return EXIT_OK;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static args_t a; /* static: zeroed, and large enough to keep off the stack */
    config_state_t cfg = {.loaded = false};
    ctx_t ctx = {.args = &a, .cfg = &cfg, .timeout_s = DEFAULT_TIMEOUT_S};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        goto out;
    if (a.set[OPT_VERSION]) {
        rc = cmd_version(NULL, &a);
        goto out;
    }
    ctx.json = a.set[OPT_JSON];
    if (a.set[OPT_TIMEOUT] && !a.cmd->command_timeout &&
        cli_parse_seconds(a.val[OPT_TIMEOUT], &ctx.timeout_s) < 0) {
        rc = usage_error(a.cmd, "--timeout wants seconds, more than 0 and at most 86400");
        goto out;
    }
    rc = a.cmd->run(&ctx, &a);
    cli_http_free(ctx.http);
    if (ctx.curl_ready)
        curl_global_cleanup();
out:
    if (ctx.token != NULL) {
        explicit_bzero(ctx.token, strlen(ctx.token));
        free(ctx.token);
    }
    free(ctx.server);
    if (cfg.cfg.token != NULL)
        explicit_bzero(cfg.cfg.token, strlen(cfg.cfg.token));
    cli_config_fini(&cfg.cfg);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (rc == EXIT_OK)
            fprintf(stderr, "drover: cannot write the output: %s\n", strerror(errno));
        rc = rc == EXIT_OK ? EXIT_SERVER : rc;
    }
    return rc;
}
