/*
 * hostdevctl.c: the command line client of hostdevd (docs/hostdevctl.rst)
 *
 * A virsh-like front end: each verb is one request (docs/protocol.rst) on
 * the daemon's socket, printed for people by default and as the daemon's
 * JSON with --json.  The exit code says what kind of failure it was (see
 * hdcExit and the man page).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib/gi18n.h>
#include <json-glib/json-glib.h>

#include "hdc-xmlfile.h"

#define HDC_DEFAULT_SOCKET "/run/hostdevd.sock"
#define HDC_MAX_FILE_SIZE (1024 * 1024)
/* hostdevd's limit on a request, the newline excluded (docs/protocol.rst,
 * Limits).  A file within HDC_MAX_FILE_SIZE may still not fit once escaped
 * as a JSON string in its request: checked here, so that the error names
 * the file instead of the daemon ending the connection. */
#define HDC_MAX_REQUEST (1024 * 1024)
#define HDC_MAX_LINE (16 * 1024 * 1024)

/* Exit codes (docs/hostdevctl.rst). */
typedef enum {
    HDC_EXIT_OK = 0,
    HDC_EXIT_FAILED = 1,        /* the daemon could not do it */
    HDC_EXIT_USAGE = 2,         /* bad command line, unreadable file */
    HDC_EXIT_CONNECT = 3,       /* no daemon, not allowed, protocol broken */
    HDC_EXIT_INVALID = 4,       /* the daemon refused the request as invalid */
    HDC_EXIT_NOT_FOUND = 5,     /* no such domain, device or command */
    HDC_EXIT_IN_USE = 6,        /* owned by another domain; group not viable */
    HDC_EXIT_TIMEOUT = 7,
    HDC_EXIT_PARTIAL = 8,       /* destroy: some groups stay on the inactive list */
} hdcExit;

static char *hdcSocket;          /* --socket after the verb */
static char *hdcSocketGlobal;    /* --socket before it */
static gboolean hdcJson;

typedef struct {
    int fd;
    GString *buf;
    guint next_id;
    const char *file;   /* the XML file the requests carry, named if too large */
} hdcConn;

typedef void (*hdcEventFunc)(JsonObject *event, gpointer opaque);


static hdcExit
hdcExitForClass(const char *klass)
{
    if (g_strcmp0(klass, "InvalidArgument") == 0)
        return HDC_EXIT_INVALID;
    if (g_strcmp0(klass, "NotFound") == 0 || g_strcmp0(klass, "CommandNotFound") == 0)
        return HDC_EXIT_NOT_FOUND;
    if (g_strcmp0(klass, "InUse") == 0 || g_strcmp0(klass, "NotViable") == 0)
        return HDC_EXIT_IN_USE;
    if (g_strcmp0(klass, "Timeout") == 0)
        return HDC_EXIT_TIMEOUT;
    if (g_strcmp0(klass, "PermissionDenied") == 0)
        return HDC_EXIT_CONNECT;
    return HDC_EXIT_FAILED;
}


/* What hostdevd sends is printed to a terminal: a control character in a
 * name, path or message (ESC, CR, the C1 CSI...) could move the cursor or
 * rewrite what the user sees.  Human output shows them escaped: "\x1b",
 * "\u009b"; invalid UTF-8 becomes U+FFFD. */
static char *
hdcPrintable(const char *s)
{
    g_autofree char *valid = g_utf8_make_valid(s, -1);
    GString *out = g_string_sized_new(strlen(valid));
    const char *p;

    for (p = valid; *p; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);

        if (c < 0x20 || c == 0x7f)
            g_string_append_printf(out, "\\x%02x", (unsigned int)c);
        else if (c >= 0x80 && c <= 0x9f)
            g_string_append_printf(out, "\\u%04x", (unsigned int)c);
        else
            g_string_append_unichar(out, c);
    }
    return g_string_free(out, FALSE);
}


/* Every string value in @node made printable (hdcPrintable). */
static void
hdcMakePrintable(JsonNode *node)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObjectIter iter;
        JsonNode *member;

        json_object_iter_init(&iter, json_node_get_object(node));
        while (json_object_iter_next(&iter, NULL, &member))
            hdcMakePrintable(member);
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *arr = json_node_get_array(node);
        guint i;

        for (i = 0; i < json_array_get_length(arr); i++)
            hdcMakePrintable(json_array_get_element(arr, i));
    } else if (JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING) {
        g_autofree char *printable = hdcPrintable(json_node_get_string(node));

        json_node_set_string(node, printable);
    }
}


/* @node as JSON text for a terminal.  json-glib escapes C0 controls and
 * DEL in strings but writes C1 controls (U+0080-U+009F) as they are, which
 * some terminals obey: escaped too (bytes C2 80-9F occur only inside
 * strings). */
static char *
hdcJsonText(JsonNode *node, gboolean pretty)
{
    g_autofree char *text = json_to_string(node, pretty);
    GString *out = g_string_sized_new(strlen(text) + 1);
    const char *p;

    for (p = text; *p; p++) {
        if ((guchar)p[0] == 0xc2 && (guchar)p[1] >= 0x80 && (guchar)p[1] <= 0x9f) {
            g_string_append_printf(out, "\\u%04x", (unsigned int)(guchar)p[1]);
            p++;
        } else {
            g_string_append_c(out, *p);
        }
    }
    return g_string_free(out, FALSE);
}


static void
hdcPrintJson(JsonNode *node, gboolean pretty)
{
    g_autofree char *text = hdcJsonText(node, pretty);

    printf("%s\n", text);
}


/* One message (a line) from the daemon; NULL at the end or on error. */
static JsonNode *
hdcRead(hdcConn *conn, GError **error)
{
    for (;;) {
        char *nl = memchr(conn->buf->str, '\n', conn->buf->len);
        char chunk[65536];
        ssize_t n;

        if (nl) {
            g_autoptr(JsonParser) parser = json_parser_new();
            gsize len = nl - conn->buf->str;
            JsonNode *root;

            if (!json_parser_load_from_data(parser, conn->buf->str, len, error))
                return NULL;
            g_string_erase(conn->buf, 0, len + 1);
            root = json_parser_get_root(parser);
            if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s",
                            _("hostdevd sent something that is not a JSON object"));
                return NULL;
            }
            root = json_node_copy(root);
            if (!hdcJson)
                hdcMakePrintable(root);
            return root;
        }
        if (conn->buf->len > HDC_MAX_LINE) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s",
                        _("hostdevd sent an oversized message"));
            return NULL;
        }
        n = read(conn->fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                        _("cannot read from hostdevd: %1$s"), g_strerror(errno));
            return NULL;
        }
        if (n == 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "%s",
                        _("hostdevd closed the connection"));
            return NULL;
        }
        g_string_append_len(conn->buf, chunk, n);
    }
}


static gboolean
hdcWrite(hdcConn *conn, const char *text, GError **error)
{
    gsize len = strlen(text);
    gsize done = 0;

    while (done < len) {
        ssize_t n = send(conn->fd, text + done, len - done, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                        _("cannot write to hostdevd: %1$s"), g_strerror(errno));
            return FALSE;
        }
        done += n;
    }
    return TRUE;
}


static void
hdcPrintError(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
hdcPrintError(const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    g_autofree char *printable = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* Also with --json, whose messages from the daemon are as sent. */
    printable = hdcPrintable(msg);
    fprintf(stderr, "hostdevctl: %s\n", printable);
}


/* Send @command and wait for its reply, passing the events that arrive
 * meanwhile to @func.  Returns the exit code; *@ret gets "return". */
static hdcExit
hdcCommand(hdcConn *conn, const char *command, JsonNode *args, hdcEventFunc func,
           gpointer opaque, JsonNode **ret)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) req = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    g_autofree char *line = NULL;
    guint id = ++conn->next_id;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "execute");
    json_builder_add_string_value(b, command);
    if (args) {
        json_builder_set_member_name(b, "arguments");
        json_builder_add_value(b, args);
    }
    json_builder_set_member_name(b, "id");
    json_builder_add_int_value(b, id);
    json_builder_end_object(b);
    req = json_builder_get_root(b);
    text = json_to_string(req, FALSE);
    if (strlen(text) > HDC_MAX_REQUEST) {
        if (conn->file)
            hdcPrintError(_("%1$s: too large for hostdevd: escaped as JSON, the %2$s request "
                            "carrying it takes %3$" G_GSIZE_FORMAT " bytes, more than the "
                            "%4$u it accepts"),
                          conn->file, command, strlen(text), (unsigned int)HDC_MAX_REQUEST);
        else
            hdcPrintError(_("the %1$s request takes %2$" G_GSIZE_FORMAT " bytes, more than the "
                            "%3$u hostdevd accepts"),
                          command, strlen(text), (unsigned int)HDC_MAX_REQUEST);
        return HDC_EXIT_USAGE;
    }
    line = g_strconcat(text, "\n", NULL);
    if (!hdcWrite(conn, line, &error)) {
        hdcPrintError("%s", error->message);
        return HDC_EXIT_CONNECT;
    }

    for (;;) {
        g_autoptr(JsonNode) msg = hdcRead(conn, &error);
        JsonObject *obj;
        JsonNode *msg_id;

        if (!msg) {
            hdcPrintError("%s", error->message);
            return HDC_EXIT_CONNECT;
        }
        obj = json_node_get_object(msg);
        if (json_object_has_member(obj, "event")) {
            if (func)
                func(obj, opaque);
            continue;
        }
        /* Replies to requests the daemon could not read carry no id. */
        msg_id = json_object_get_member(obj, "id");
        if (msg_id && (!JSON_NODE_HOLDS_VALUE(msg_id) ||
                       json_node_get_value_type(msg_id) != G_TYPE_INT64 ||
                       json_node_get_int(msg_id) != id))
            continue;
        if (json_object_has_member(obj, "error")) {
            JsonObject *err = json_object_get_object_member(obj, "error");
            const char *klass = err ? json_object_get_string_member_with_default(err, "class", "")
                                    : "";
            const char *desc = err ? json_object_get_string_member_with_default(err, "desc", "")
                                   : "";

            if (hdcJson)
                hdcPrintJson(msg, TRUE);
            hdcPrintError(_("%1$s: %2$s"), command, desc);
            return hdcExitForClass(klass);
        }
        if (ret) {
            JsonNode *r = json_object_get_member(obj, "return");

            *ret = r ? json_node_copy(r) : NULL;
        }
        return HDC_EXIT_OK;
    }
}


static void
hdcDisconnect(hdcConn *conn)
{
    if (conn->fd >= 0)
        close(conn->fd);
    if (conn->buf)
        g_string_free(conn->buf, TRUE);
}


/* Connect, read the greeting, negotiate. */
static hdcExit
hdcConnect(hdcConn *conn)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) greeting = NULL;
    JsonObject *obj;
    const char *path = hdcSocket ? hdcSocket :
                       hdcSocketGlobal ? hdcSocketGlobal : g_getenv("HOSTDEVD_SOCKET");

    if (!path || !*path)
        path = HDC_DEFAULT_SOCKET;
    conn->fd = -1;
    conn->buf = g_string_new(NULL);
    if (strlen(path) >= sizeof(sun.sun_path)) {
        hdcPrintError(_("socket path '%1$s' is too long"), path);
        return HDC_EXIT_USAGE;
    }
    strcpy(sun.sun_path, path);
    if ((conn->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(conn->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        hdcPrintError(_("cannot connect to hostdevd at %1$s: %2$s"), path, g_strerror(errno));
        return HDC_EXIT_CONNECT;
    }
    if (!(greeting = hdcRead(conn, &error))) {
        hdcPrintError("%s", error->message);
        return HDC_EXIT_CONNECT;
    }
    obj = json_node_get_object(greeting);
    if (json_object_has_member(obj, "error")) {
        JsonObject *err = json_object_get_object_member(obj, "error");

        hdcPrintError("%s", err ? json_object_get_string_member_with_default(err, "desc", "")
                                : "");
        return HDC_EXIT_CONNECT;
    }
    if (!json_object_has_member(obj, "QMP")) {
        hdcPrintError(_("%1$s does not greet like hostdevd"), path);
        return HDC_EXIT_CONNECT;
    }
    return hdcCommand(conn, "qmp_capabilities", NULL, NULL, NULL, NULL);
}


/* Run one command on a fresh connection and print its result as JSON when
 * asked to.  @file: the XML file @args carry, or NULL. */
static hdcExit
hdcRunFull(const char *command, JsonNode *args, const char *file, hdcEventFunc func,
           gpointer opaque, JsonNode **ret)
{
    hdcConn conn = { .fd = -1 };
    g_autoptr(JsonNode) owned_args = args;
    g_autoptr(JsonNode) result = NULL;
    hdcExit rc;

    if ((rc = hdcConnect(&conn)) == HDC_EXIT_OK) {
        conn.file = file;
        rc = hdcCommand(&conn, command, g_steal_pointer(&owned_args), func, opaque, &result);
    }
    hdcDisconnect(&conn);
    if (rc == HDC_EXIT_OK && hdcJson) {
        g_autoptr(JsonObject) empty = json_object_new();

        if (!result)
            result = json_node_init_object(json_node_alloc(), empty);
        hdcPrintJson(result, TRUE);
    }
    if (ret)
        *ret = g_steal_pointer(&result);
    return rc;
}


static hdcExit
hdcRun(const char *command, JsonNode *args, hdcEventFunc func, gpointer opaque,
       JsonNode **ret)
{
    return hdcRunFull(command, args, NULL, func, opaque, ret);
}


/* Arguments object from name/value pairs (NULL values skipped). */
static JsonNode *
hdcArgs(const char *first, ...) G_GNUC_NULL_TERMINATED;

static JsonNode *
hdcArgs(const char *first, ...)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    const char *name;
    va_list ap;

    json_builder_begin_object(b);
    va_start(ap, first);
    for (name = first; name; name = va_arg(ap, const char *)) {
        const char *value = va_arg(ap, const char *);

        if (!value)
            continue;
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, value);
    }
    va_end(ap);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


static const char *
hdcStr(JsonObject *obj, const char *name)
{
    JsonNode *node = json_object_get_member(obj, name);

    if (!node || JSON_NODE_HOLDS_NULL(node) || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_STRING)
        return NULL;
    return json_node_get_string(node);
}


/* Verbs. */

typedef struct {
    const char *name;
    const char *params;       /* after the verb, for --help */
    const char *summary;
    guint nargs;              /* positional arguments, exactly */
    hdcExit (*func)(char **args);
    const GOptionEntry *entries;
} hdcVerb;


static hdcExit
hdcList(char **args)
{
    g_autoptr(JsonNode) ret = NULL;
    JsonArray *groups;
    hdcExit rc;
    guint i, j;

    if ((rc = hdcRun("query-devices", NULL, NULL, NULL, &ret)) != HDC_EXIT_OK || hdcJson)
        return rc;
    groups = json_object_get_array_member(json_node_get_object(ret), "groups");
    for (i = 0; i < json_array_get_length(groups); i++) {
        JsonObject *grp = json_array_get_object_element(groups, i);
        JsonArray *devs = json_object_get_array_member(grp, "devices");

        printf(_("IOMMU group %1$u%2$s\n"), (unsigned int)json_object_get_int_member(grp, "group"),
               json_object_get_boolean_member(grp, "pending") ? _(" (pending give-back)") : "");
        for (j = 0; j < json_array_get_length(devs); j++) {
            JsonObject *dev = json_array_get_object_element(devs, j);
            gboolean last = j + 1 == json_array_get_length(devs);
            const char *driver = hdcStr(dev, "driver");
            const char *orig = hdcStr(dev, "original-driver");
            const char *domain = hdcStr(dev, "domain");
            const char *state = hdcStr(dev, "state");
            g_autofree char *owner = NULL;

            if (domain)
                owner = g_strdup_printf(_("domain %1$s"), domain);
            else if (g_strcmp0(state, "inactive") == 0)
                owner = g_strdup(_("inactive list"));
            else
                owner = g_strdup(_("host"));
            printf("  %s %s  %-14s %-10s %s", last ? "└─" : "├─", hdcStr(dev, "address"),
                   driver ? driver : "-", state, owner);
            if (orig && g_strcmp0(orig, driver) != 0)
                printf(_(" (was %1$s)"), orig);
            printf("\n");
        }
    }
    return rc;
}


static hdcExit
hdcDomains(char **args)
{
    g_autoptr(JsonNode) ret = NULL;
    JsonArray *doms;
    hdcExit rc;
    guint i;

    if ((rc = hdcRun("query-domains", NULL, NULL, NULL, &ret)) != HDC_EXIT_OK || hdcJson)
        return rc;
    doms = json_node_get_array(ret);
    printf("%-20s %8s %8s  %s\n", _("Name"), _("PID"), _("Devices"), _("QMP socket"));
    for (i = 0; i < json_array_get_length(doms); i++) {
        JsonObject *dom = json_array_get_object_element(doms, i);
        const char *qmp = hdcStr(dom, "qmp");

        printf("%-20s %8" G_GINT64_FORMAT " %8u  %s\n", hdcStr(dom, "name"),
               json_object_get_int_member(dom, "pid"),
               json_array_get_length(json_object_get_array_member(dom, "devices")),
               qmp ? qmp : "-");
    }
    return rc;
}


static hdcExit
hdcStatus(char **args)
{
    g_autoptr(JsonNode) ret = NULL;
    JsonObject *st;
    hdcExit rc;

    if ((rc = hdcRun("query-status", NULL, NULL, NULL, &ret)) != HDC_EXIT_OK || hdcJson)
        return rc;
    st = json_node_get_object(ret);
    printf(_("hostdevd %1$s, root %2$s, state in %3$s\n"), hdcStr(st, "version"),
           hdcStr(st, "root"), hdcStr(st, "state-dir"));
    printf(_("domains: %1$" G_GINT64_FORMAT ", tracked devices: %2$" G_GINT64_FORMAT
             ", operations running: %3$" G_GINT64_FORMAT "\n"),
           json_object_get_int_member(st, "domains"),
           json_object_get_int_member(st, "tracked-devices"),
           json_object_get_int_member(st, "operations"));
    printf(_("groups pending give-back: %1$u, security cleanups pending: %2$u\n"),
           json_array_get_length(json_object_get_array_member(st, "pending-groups")),
           json_array_get_length(json_object_get_array_member(st, "security-pending")));
    return rc;
}


static hdcExit
hdcNodedev(const char *command, const char *addr, const char *done_fmt)
{
    g_autoptr(JsonNode) ret = NULL;
    hdcExit rc = hdcRun(command, hdcArgs("address", addr, NULL), NULL, NULL, &ret);

    if (rc == HDC_EXIT_OK && !hdcJson) {
        JsonObject *obj = ret && JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;

        printf(done_fmt, addr);
        printf("\n");
        if (obj && json_object_has_member(obj, "siblings-on-host")) {
            JsonArray *sib = json_object_get_array_member(obj, "siblings-on-host");
            guint i;

            for (i = 0; i < json_array_get_length(sib); i++)
                printf(_("note: group sibling %1$s is still on a host driver\n"),
                       json_array_get_string_element(sib, i));
        }
    }
    return rc;
}


static hdcExit
hdcNodedevDetach(char **args)
{
    return hdcNodedev("nodedev-detach", args[0], _("Device %1$s detached"));
}


static hdcExit
hdcNodedevReattach(char **args)
{
    return hdcNodedev("nodedev-reattach", args[0], _("Device %1$s re-attached"));
}


static hdcExit
hdcNodedevReset(char **args)
{
    return hdcNodedev("nodedev-reset", args[0], _("Device %1$s reset"));
}


static char *hdcOptQmp;
static gint64 hdcOptPid = -1;
static char *hdcOptCgroup;
static char *hdcOptSeclabel;
static gboolean hdcOptWholeGroup;
static gboolean hdcOptNoProgress;
static gint hdcOptCount = -1;
static gint hdcOptTimeout = -1;
static gdouble hdcOptUnplugTimeout = -1;

static const GOptionEntry hdcDefineEntries[] = {
    { "qmp", 0, 0, G_OPTION_ARG_FILENAME, &hdcOptQmp, N_("QMP socket of its QEMU"), "PATH" },
    { "pid", 0, 0, G_OPTION_ARG_INT64, &hdcOptPid, N_("Its QEMU's pid (0: not running)"), "PID" },
    { "cgroup", 0, 0, G_OPTION_ARG_FILENAME, &hdcOptCgroup, N_("Its cgroup directory"), "DIR" },
    { "seclabel", 0, 0, G_OPTION_ARG_STRING, &hdcOptSeclabel, N_("Its SELinux image label"),
      "LABEL" },
    { NULL },
};
static const GOptionEntry hdcPrepareEntries[] = {
    { "whole-group", 0, 0, G_OPTION_ARG_NONE, &hdcOptWholeGroup,
      N_("Detach group siblings on host drivers too"), NULL },
    { NULL },
};
static const GOptionEntry hdcDetachEntries[] = {
    { "unplug-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &hdcOptUnplugTimeout,
      N_("Wait that long for the guest to let go (default: hostdevd's)"), "SEC" },
    { NULL },
};
static const GOptionEntry hdcDestroyEntries[] = {
    { "no-progress", 0, 0, G_OPTION_ARG_NONE, &hdcOptNoProgress, N_("No progress bar"), NULL },
    { NULL },
};
static const GOptionEntry hdcEventsEntries[] = {
    { "count", 0, 0, G_OPTION_ARG_INT, &hdcOptCount, N_("Stop after N events"), "N" },
    { "timeout", 0, 0, G_OPTION_ARG_INT, &hdcOptTimeout, N_("Stop after SEC seconds"), "SEC" },
    { NULL },
};


static hdcExit
hdcDefine(char **args)
{
    g_autoptr(JsonNode) req = hdcArgs("name", args[0], "qmp", hdcOptQmp, "cgroup", hdcOptCgroup,
                                      "seclabel", hdcOptSeclabel, NULL);
    hdcExit rc;

    if (hdcOptPid >= 0)
        json_object_set_int_member(json_node_get_object(req), "pid", hdcOptPid);
    rc = hdcRun("define-domain", g_steal_pointer(&req), NULL, NULL, NULL);
    if (rc == HDC_EXIT_OK && !hdcJson)
        printf(_("Domain %1$s defined\n"), args[0]);
    return rc;
}


static hdcExit
hdcUndefine(char **args)
{
    hdcExit rc = hdcRun("undefine-domain", hdcArgs("name", args[0], NULL), NULL, NULL, NULL);

    if (rc == HDC_EXIT_OK && !hdcJson)
        printf(_("Domain %1$s undefined\n"), args[0]);
    return rc;
}


/* What hostdevd skipped in the XML ("notes" of the reply), on stderr. */
static void
hdcPrintNotes(JsonNode *result)
{
    JsonObject *obj = result && JSON_NODE_HOLDS_OBJECT(result) ?
                      json_node_get_object(result) : NULL;
    JsonNode *notes = obj ? json_object_get_member(obj, "notes") : NULL;
    JsonArray *arr;
    guint i;

    if (!notes || !JSON_NODE_HOLDS_ARRAY(notes))
        return;
    arr = json_node_get_array(notes);
    for (i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *note = json_array_get_element(arr, i);

        if (JSON_NODE_HOLDS_VALUE(note) && json_node_get_value_type(note) == G_TYPE_STRING)
            hdcPrintError(_("note: %1$s"), json_node_get_string(note));
    }
}


static hdcExit
hdcXmlCommand(const char *command, char **args, JsonNode **ret)
{
    g_autofree char *xml = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) req = NULL;
    g_autoptr(JsonNode) result = NULL;
    hdcExit rc;

    if (!(xml = hdcXmlFileRead(args[1], HDC_MAX_FILE_SIZE, &error))) {
        hdcPrintError("%s", error->message);
        return HDC_EXIT_USAGE;
    }
    req = hdcArgs("domain", args[0], "xml", xml, NULL);
    if (hdcOptWholeGroup)
        json_object_set_boolean_member(json_node_get_object(req), "whole-group", TRUE);
    /* hostdevd checks the range. */
    if (hdcOptUnplugTimeout >= 0)
        json_object_set_int_member(json_node_get_object(req), "unplug-timeout",
                                   (gint64)(MIN(hdcOptUnplugTimeout, 1e9) * 1000 + 0.5));
    rc = hdcRunFull(command, g_steal_pointer(&req), args[1], NULL, NULL, &result);
    if (rc != HDC_EXIT_OK)
        return rc;
    if (!hdcJson)
        hdcPrintNotes(result);
    if (ret)
        *ret = g_steal_pointer(&result);
    return rc;
}


static hdcExit
hdcPrepare(char **args)
{
    hdcExit rc = hdcXmlCommand("prepare", args, NULL);

    if (rc == HDC_EXIT_OK && !hdcJson)
        printf(_("Devices of %1$s assigned to domain %2$s\n"), args[1], args[0]);
    return rc;
}


static hdcExit
hdcAttach(char **args)
{
    hdcExit rc = hdcXmlCommand("attach-device", args, NULL);

    if (rc == HDC_EXIT_OK && !hdcJson)
        printf(_("Device attached to domain %1$s\n"), args[0]);
    return rc;
}


static hdcExit
hdcDetach(char **args)
{
    g_autoptr(JsonNode) ret = NULL;
    hdcExit rc = hdcXmlCommand("detach-device", args, &ret);
    JsonObject *obj;

    if (rc != HDC_EXIT_OK || hdcJson)
        return rc;
    obj = json_node_get_object(ret);
    /* Devices, not groups: a device whose group still has a member in the
     * guest waits too, though no group is pending. */
    printf(_("Device detached from domain %1$s: %2$" G_GINT64_FORMAT
             " released, %3$" G_GINT64_FORMAT " group(s) given back, %4$" G_GINT64_FORMAT
             " device(s) waiting on the inactive list\n"), args[0],
           json_object_get_int_member(obj, "released"),
           json_object_get_int_member(obj, "groups-given-back"),
           json_object_get_int_member_with_default(obj, "devices-waiting", 0));
    if (hdcStr(obj, "problem"))
        printf(_("note: %1$s\n"), hdcStr(obj, "problem"));
    return rc;
}


typedef struct {
    const char *domain;
    gint64 start;
    gboolean drawn;
    gboolean tty;
} hdcBar;


static void
hdcDestroyEvent(JsonObject *event, gpointer opaque)
{
    hdcBar *bar = opaque;
    JsonObject *data = json_object_get_object_member(event, "data");
    gint64 done, total;
    double elapsed = (g_get_monotonic_time() - bar->start) / 1e6;
    const int width = 40;
    char fill[41];
    int n;

    if (hdcOptNoProgress || hdcJson || !data ||
        g_strcmp0(hdcStr(event, "event"), "DESTROY_PROGRESS") != 0 ||
        g_strcmp0(hdcStr(data, "domain"), bar->domain) != 0)
        return;
    done = json_object_get_int_member(data, "given-back");
    total = json_object_get_int_member(data, "total");
    n = total > 0 ? (int)(done * width / total) : width;
    memset(fill, '#', n);
    fill[n] = '\0';
    fprintf(stderr, "%s[%-*s] %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT " %s  %.1f s%s",
            bar->tty ? "\r" : "", width, fill, done, total, _("devices given back"), elapsed,
            bar->tty ? "" : "\n");
    fflush(stderr);
    bar->drawn = TRUE;
}


static hdcExit
hdcDestroy(char **args)
{
    hdcBar bar = { .domain = args[0], .start = g_get_monotonic_time(),
                   .tty = isatty(STDERR_FILENO) };
    g_autoptr(JsonNode) ret = NULL;
    hdcExit rc = hdcRun("destroy", hdcArgs("domain", args[0], NULL), hdcDestroyEvent, &bar,
                        &ret);
    JsonObject *obj;
    JsonArray *problems;
    guint i;

    if (bar.drawn && bar.tty)
        fprintf(stderr, "\n");
    if (rc != HDC_EXIT_OK)
        return rc;
    obj = json_node_get_object(ret);
    problems = json_object_get_array_member(obj, "problems");
    if (!hdcJson) {
        printf(_("Domain %1$s destroyed: %2$" G_GINT64_FORMAT "/%3$" G_GINT64_FORMAT
                 " devices given back; QEMU ended in %4$.2f s%5$s, groups in %6$.2f s\n"),
               args[0], json_object_get_int_member(obj, "given-back"),
               json_object_get_int_member(obj, "devices") -
               json_object_get_int_member(obj, "stay"),
               json_object_get_double_member(obj, "terminate-seconds"),
               json_object_get_boolean_member(obj, "killed") ? _(" (SIGKILL)") : "",
               json_object_get_double_member(obj, "give-back-seconds"));
        if (json_object_get_int_member(obj, "stay") > 0)
            printf(g_dngettext(NULL, "%1$" G_GINT64_FORMAT " device stays on vfio-pci "
                               "(unmanaged)\n",
                               "%1$" G_GINT64_FORMAT " devices stay on vfio-pci (unmanaged)\n",
                               json_object_get_int_member(obj, "stay")),
                   json_object_get_int_member(obj, "stay"));
        for (i = 0; i < json_array_get_length(problems); i++)
            printf(_("problem: %1$s\n"), json_array_get_string_element(problems, i));
    }
    return json_array_get_length(problems) > 0 ? HDC_EXIT_PARTIAL : HDC_EXIT_OK;
}


static void
hdcPrintEvent(JsonObject *event)
{
    JsonObject *data = json_object_get_object_member(event, "data");
    g_autoptr(JsonNode) node = json_node_new(JSON_NODE_OBJECT);
    g_autofree char *text = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_local();
    g_autofree char *stamp = g_date_time_format(now, "%H:%M:%S.%f");

    if (hdcJson) {
        json_node_set_object(node, event);
        hdcPrintJson(node, FALSE);
    } else {
        if (data) {
            json_node_set_object(node, data);
            text = hdcJsonText(node, FALSE);
        }
        printf("%.12s %s %s\n", stamp, hdcStr(event, "event"), text ? text : "{}");
    }
    fflush(stdout);
}


static hdcExit
hdcEvents(char **args)
{
    hdcConn conn = { .fd = -1 };
    gint64 deadline = hdcOptTimeout >= 0 ?
                      g_get_monotonic_time() + hdcOptTimeout * G_USEC_PER_SEC : -1;
    gint count = 0;
    hdcExit rc;

    if ((rc = hdcConnect(&conn)) != HDC_EXIT_OK) {
        hdcDisconnect(&conn);
        return rc;
    }
    if (!hdcJson)
        fprintf(stderr, "%s\n", _("Waiting for events (Ctrl-C to stop)"));
    while (hdcOptCount < 0 || count < hdcOptCount) {
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) msg = NULL;

        /* Everything already read is handled before waiting again. */
        if (!memchr(conn.buf->str, '\n', conn.buf->len) && deadline >= 0) {
            GPollFD pfd = { .fd = conn.fd, .events = G_IO_IN };
            gint64 left = deadline - g_get_monotonic_time();

            if (left <= 0 || g_poll(&pfd, 1, left / 1000) == 0)
                break;
        }
        if (!(msg = hdcRead(&conn, &error))) {
            hdcPrintError("%s", error->message);
            rc = HDC_EXIT_CONNECT;
            break;
        }
        if (!json_object_has_member(json_node_get_object(msg), "event"))
            continue;
        hdcPrintEvent(json_node_get_object(msg));
        count++;
    }
    hdcDisconnect(&conn);
    return rc;
}


static const hdcVerb hdcVerbs[] = {
    { "list", "", N_("List IOMMU groups and their devices, drivers and owners"), 0, hdcList,
      NULL },
    { "domains", "", N_("List the domains hostdevd knows"), 0, hdcDomains, NULL },
    { "status", "", N_("Show the daemon's state"), 0, hdcStatus, NULL },
    { "nodedev-detach", "ADDR", N_("Bind a device to vfio-pci (inactive list)"), 1,
      hdcNodedevDetach, NULL },
    { "nodedev-reattach", "ADDR", N_("Give a device back to its original driver"), 1,
      hdcNodedevReattach, NULL },
    { "nodedev-reset", "ADDR", N_("Reset a device no domain uses"), 1, hdcNodedevReset, NULL },
    { "define", "DOMAIN", N_("Define or update a domain (its QEMU, cgroup, label)"), 1,
      hdcDefine, hdcDefineEntries },
    { "undefine", "DOMAIN", N_("Forget a domain that has no device"), 1, hdcUndefine, NULL },
    { "prepare", "DOMAIN FILE.xml", N_("Assign a domain's hostdevs before its QEMU starts"), 2,
      hdcPrepare, hdcPrepareEntries },
    { "attach-device", "DOMAIN FILE.xml", N_("Hot-plug a hostdev into a running domain"), 2,
      hdcAttach, NULL },
    { "detach-device", "DOMAIN FILE.xml", N_("Hot-unplug a hostdev from a running domain"), 2,
      hdcDetach, hdcDetachEntries },
    { "destroy", "DOMAIN", N_("End a domain's QEMU and give every group back"), 1, hdcDestroy,
      hdcDestroyEntries },
    { "events", "", N_("Print the daemon's events as they come"), 0, hdcEvents,
      hdcEventsEntries },
};

static const GOptionEntry hdcCommonEntries[] = {
    { "socket", 's', 0, G_OPTION_ARG_FILENAME, &hdcSocket,
      N_("hostdevd's socket (default $HOSTDEVD_SOCKET or " HDC_DEFAULT_SOCKET ")"), "PATH" },
    { "json", 'j', 0, G_OPTION_ARG_NONE, &hdcJson, N_("Print the daemon's JSON"), NULL },
    { NULL },
};


static void
hdcUsage(FILE *out)
{
    guint i;

    fprintf(out, "%s\n\n%s\n", _("Usage: hostdevctl [--socket PATH] [--json] VERB [ARGS...]"),
            _("Verbs:"));
    for (i = 0; i < G_N_ELEMENTS(hdcVerbs); i++)
        fprintf(out, "  %-18s %-16s %s\n", hdcVerbs[i].name, hdcVerbs[i].params,
                _(hdcVerbs[i].summary));
    fprintf(out, "\n%s\n", _("'hostdevctl VERB --help' describes a verb."));
}


int
main(int argc, char **argv)
{
    const hdcVerb *verb = NULL;
    g_autoptr(GOptionContext) octx = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *params = NULL;
    int first = 1;
    guint i;

    setlocale(LC_ALL, "");
    bindtextdomain(GETTEXT_PACKAGE, LOCALEDIR);
    textdomain(GETTEXT_PACKAGE);

    /* Step 1: global options may come before the verb too. */
    for (first = 1; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--help") == 0 || strcmp(argv[first], "-h") == 0) {
            hdcUsage(stdout);
            return HDC_EXIT_OK;
        }
        if (strcmp(argv[first], "--version") == 0) {
            printf("hostdevctl %s\n", PACKAGE_VERSION);
            return HDC_EXIT_OK;
        }
        if (strcmp(argv[first], "--json") == 0 || strcmp(argv[first], "-j") == 0) {
            hdcJson = TRUE;
        } else if (strcmp(argv[first], "--socket") == 0 && first + 1 < argc) {
            g_free(hdcSocketGlobal);
            hdcSocketGlobal = g_strdup(argv[++first]);
        } else if (g_str_has_prefix(argv[first], "--socket=")) {
            g_free(hdcSocketGlobal);
            hdcSocketGlobal = g_strdup(argv[first] + strlen("--socket="));
        } else {
            hdcPrintError(_("unknown option '%1$s'"), argv[first]);
            return HDC_EXIT_USAGE;
        }
    }
    if (first >= argc) {
        hdcUsage(stderr);
        return HDC_EXIT_USAGE;
    }
    for (i = 0; i < G_N_ELEMENTS(hdcVerbs); i++) {
        if (strcmp(hdcVerbs[i].name, argv[first]) == 0)
            verb = &hdcVerbs[i];
    }
    if (!verb) {
        hdcPrintError(_("unknown verb '%1$s' (see hostdevctl --help)"), argv[first]);
        return HDC_EXIT_USAGE;
    }

    /* Step 2: the verb's own options and arguments. */
    params = g_strdup_printf("%s %s", verb->name, verb->params);
    octx = g_option_context_new(params);
    g_option_context_set_summary(octx, _(verb->summary));
    g_option_context_set_translation_domain(octx, GETTEXT_PACKAGE);
    g_option_context_add_main_entries(octx, hdcCommonEntries, GETTEXT_PACKAGE);
    if (verb->entries)
        g_option_context_add_main_entries(octx, verb->entries, GETTEXT_PACKAGE);
    argv[first] = argv[0];
    argc -= first;
    argv += first;
    if (!g_option_context_parse(octx, &argc, &argv, &error)) {
        hdcPrintError("%s", error->message);
        return HDC_EXIT_USAGE;
    }
    if ((guint)(argc - 1) != verb->nargs) {
        g_autofree char *help = g_option_context_get_help(octx, TRUE, NULL);

        fprintf(stderr, "%s", help);
        return HDC_EXIT_USAGE;
    }
    return verb->func(argv + 1);
}
