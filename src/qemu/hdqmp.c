/*
 * hdqmp.c: QMP client on the GLib main loop
 *
 * The wire protocol (QEMU's docs/interop/qmp-spec): one JSON object per
 * line.  The server greets ({"QMP": ...}), the client enters command mode
 * with qmp_capabilities, then sends {"execute", "arguments", "id"} and gets
 * exactly one {"return"} or {"error"} carrying the same id; events
 * ({"event", "data", "timestamp"}) come at any time, even between a command
 * and its reply.
 *
 * Naming: an hdQmpPending is a command sent (or queued) and not answered
 * yet, owned by qmp->pending; an hdQmpOutput is bytes (and fds) not written
 * yet, owned by qmp->output.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <glib-unix.h>

#include "hdinternal.h"
#include "hdqemu-priv.h"
#include "hostdev/qemu.h"

/* How much one read takes from the socket (into a buffer on the stack:
 * the input keeps only what it was sent). */
#define HD_QMP_READ_CHUNK (16 * 1024)

/* A connection's input buffer larger than this is given back once what it
 * holds fits in a quarter of it: a monitor that was once sent a large
 * message does not keep its buffer for as long as it stays connected. */
#define HD_QMP_INPUT_KEEP (64 * 1024)

/* At most this many fds go with one command (add-fd takes one). */
#define HD_QMP_MAX_FDS 16

typedef enum {
    HD_QMP_STATE_GREETING = 0,   /* waiting for {"QMP": ...} */
    HD_QMP_STATE_CAPABILITIES,   /* qmp_capabilities sent */
    HD_QMP_STATE_READY,          /* command mode */
    HD_QMP_STATE_CLOSED,
} hdQmpState;

typedef struct {
    char *id;
    char *command;
    hdQmpReplyFunc func;
    gpointer opaque;
    GSource *timeout;
    guint timeout_ms;
} hdQmpPending;

typedef struct {
    GString *data;
    gsize offset;
    int fds[HD_QMP_MAX_FDS];     /* dups, sent with the first byte */
    guint nfds;
} hdQmpOutput;

typedef struct {
    guint id;
    char *name;                  /* NULL: every event */
    hdQmpEventFunc func;
    gpointer opaque;
} hdQmpHandler;

struct _hdQmp {
    gint refs;
    int fd;
    GMainContext *ctx;
    hdQmpState state;
    pid_t peer_pid;
    gsize max_message;
    GSource *reader;
    GSource *writer;
    GString *input;              /* bytes read, not a whole line yet */
    gsize scanned;               /* the first bytes of input, known to hold no newline */
    GQueue output;               /* hdQmpOutput * */
    GQueue pending;              /* hdQmpPending *, in the order sent */
    guint64 next_id;
    GArray *handlers;            /* hdQmpHandler */
    guint next_handler_id;
    hdQmpClosedFunc closed_func;
    gpointer closed_opaque;
    GError *closed_reason;
    /* negotiation */
    hdQmpReplyFunc negotiate_func;
    gpointer negotiate_opaque;
    GSource *negotiate_timeout;
    gboolean have_greeting;
    unsigned int version[3];
    hdQemuCaps *caps;
};


static void hdQmpFail(hdQmp *qmp, GError *reason);
static void hdQmpUpdateWriter(hdQmp *qmp);


JsonObject *
hdQmpJsonObject(JsonObject *obj, const char *name)
{
    JsonNode *node = obj ? json_object_get_member(obj, name) : NULL;

    return node && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
}


JsonArray *
hdQmpJsonArray(JsonObject *obj, const char *name)
{
    JsonNode *node = obj ? json_object_get_member(obj, name) : NULL;

    return node && JSON_NODE_HOLDS_ARRAY(node) ? json_node_get_array(node) : NULL;
}


const char *
hdQmpJsonString(JsonObject *obj, const char *name)
{
    JsonNode *node = obj ? json_object_get_member(obj, name) : NULL;

    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
        return NULL;
    return json_node_get_string(node);
}


gint64
hdQmpJsonInt(JsonObject *obj, const char *name, gint64 def)
{
    JsonNode *node = obj ? json_object_get_member(obj, name) : NULL;

    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64)
        return def;
    return json_node_get_int(node);
}


static void
hdQmpPendingFree(hdQmpPending *pending)
{
    if (pending->timeout) {
        g_source_destroy(pending->timeout);
        g_source_unref(pending->timeout);
    }
    g_free(pending->id);
    g_free(pending->command);
    g_free(pending);
}


static void
hdQmpOutputFree(hdQmpOutput *out)
{
    guint i;

    for (i = 0; i < out->nfds; i++)
        close(out->fds[i]);
    g_string_free(out->data, TRUE);
    g_free(out);
}


static void
hdQmpHandlerClear(hdQmpHandler *handler)
{
    g_free(handler->name);
}


static void
hdQmpSourceClear(GSource **source)
{
    if (!*source)
        return;
    g_source_destroy(*source);
    g_source_unref(*source);
    *source = NULL;
}


/* A pending command is answered (or failed): take it off the list first,
 * so that the callback may send more commands or close the monitor. */
static void
hdQmpComplete(hdQmp *qmp, hdQmpPending *pending, JsonNode *ret, const GError *error)
{
    g_queue_remove(&qmp->pending, pending);
    hdQmpSourceClear(&pending->timeout);
    if (pending->func)
        pending->func(qmp, ret, error, pending->opaque);
    hdQmpPendingFree(pending);
}


typedef struct {
    hdQmp *qmp;
    hdQmpPending *pending;
} hdQmpTimeoutData;


static gboolean
hdQmpOnTimeout(gpointer opaque)
{
    hdQmpTimeoutData *data = opaque;
    hdQmp *qmp = hdQmpRef(data->qmp);
    hdQmpPending *pending = data->pending;
    g_autoptr(GError) error = NULL;

    hdErrorSet(&error, HD_ERROR_TIMEOUT,
               _("QEMU monitor did not answer '%1$s' within %2$u ms"),
               pending->command, pending->timeout_ms);
    /* Its reply, if it ever comes, has an id nobody waits for: dropped. */
    hdQmpComplete(qmp, pending, NULL, error);
    hdQmpUnref(qmp);
    return G_SOURCE_REMOVE;
}


static void
hdQmpArmTimeout(hdQmp *qmp, hdQmpPending *pending)
{
    hdQmpTimeoutData *data = g_new0(hdQmpTimeoutData, 1);

    data->qmp = qmp;
    data->pending = pending;
    pending->timeout = g_timeout_source_new(pending->timeout_ms);
    g_source_set_callback(pending->timeout, hdQmpOnTimeout, data, g_free);
    g_source_attach(pending->timeout, qmp->ctx);
}


/* Write as much queued output as the socket takes now. */
static gboolean
hdQmpFlush(hdQmp *qmp, GError **error)
{
    hdQmpOutput *out;

    while ((out = g_queue_peek_head(&qmp->output))) {
        struct iovec iov = {
            .iov_base = out->data->str + out->offset,
            .iov_len = out->data->len - out->offset,
        };
        union {
            char buf[CMSG_SPACE(sizeof(int) * HD_QMP_MAX_FDS)];
            struct cmsghdr align;
        } control;
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t sent;

        if (out->offset == 0 && out->nfds > 0) {
            struct cmsghdr *cmsg;

            memset(&control, 0, sizeof(control));
            msg.msg_control = control.buf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * out->nfds);
            cmsg = CMSG_FIRSTHDR(&msg);
            cmsg->cmsg_level = SOL_SOCKET;
            cmsg->cmsg_type = SCM_RIGHTS;
            cmsg->cmsg_len = CMSG_LEN(sizeof(int) * out->nfds);
            memcpy(CMSG_DATA(cmsg), out->fds, sizeof(int) * out->nfds);
        }
        sent = sendmsg(qmp->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return TRUE;
            hdErrorSetSystem(error, errno, "%s", _("cannot write to the QEMU monitor"));
            return FALSE;
        }
        out->offset += sent;
        if (out->offset < out->data->len)
            continue;
        g_queue_pop_head(&qmp->output);
        hdQmpOutputFree(out);
    }
    return TRUE;
}


static gboolean
hdQmpOnWritable(gint fd, GIOCondition cond, gpointer opaque)
{
    hdQmp *qmp = hdQmpRef(opaque);
    GError *error = NULL;

    if (!hdQmpFlush(qmp, &error))
        hdQmpFail(qmp, error);
    else
        hdQmpUpdateWriter(qmp);
    hdQmpUnref(qmp);
    return G_SOURCE_CONTINUE;
}


/* Watch for writability only while output waits: idle costs nothing. */
static void
hdQmpUpdateWriter(hdQmp *qmp)
{
    gboolean want = qmp->state != HD_QMP_STATE_CLOSED && !g_queue_is_empty(&qmp->output);

    if (want && !qmp->writer) {
        qmp->writer = g_unix_fd_source_new(qmp->fd, G_IO_OUT);
        g_source_set_callback(qmp->writer, G_SOURCE_FUNC(hdQmpOnWritable), qmp, NULL);
        g_source_attach(qmp->writer, qmp->ctx);
    } else if (!want) {
        hdQmpSourceClear(&qmp->writer);
    }
}


/* Queue @message with @out_fds (taken) and write what the socket takes. */
static void
hdQmpSend(hdQmp *qmp, JsonNode *message, const int *out_fds, guint nfds)
{
    hdQmpOutput *out = g_new0(hdQmpOutput, 1);
    g_autofree char *text = json_to_string(message, FALSE);
    GError *error = NULL;

    out->data = g_string_new(text);
    g_string_append_c(out->data, '\n');
    memcpy(out->fds, out_fds, sizeof(int) * nfds);
    out->nfds = nfds;
    g_queue_push_tail(&qmp->output, out);
    /* Write at once when the socket takes it: tests and callers see the
     * command on the wire without a turn of the loop. */
    if (!hdQmpFlush(qmp, &error)) {
        hdQmpFail(qmp, error);
        return;
    }
    hdQmpUpdateWriter(qmp);
}


static void
hdQmpFailPending(hdQmp *qmp, const GError *reason)
{
    hdQmpPending *pending;

    while ((pending = g_queue_peek_head(&qmp->pending)))
        hdQmpComplete(qmp, pending, NULL, reason);
}


static void
hdQmpFailNegotiation(hdQmp *qmp, const GError *reason)
{
    hdQmpReplyFunc func = qmp->negotiate_func;

    hdQmpSourceClear(&qmp->negotiate_timeout);
    qmp->negotiate_func = NULL;
    if (func)
        func(qmp, NULL, reason, qmp->negotiate_opaque);
}


/* The monitor is unusable: close it and tell everyone waiting why.  Takes
 * @reason. */
static void
hdQmpFail(hdQmp *qmp, GError *reason)
{
    hdQmpClosedFunc closed_func = qmp->closed_func;
    hdQmpOutput *out;

    if (qmp->state == HD_QMP_STATE_CLOSED) {
        g_error_free(reason);
        return;
    }
    g_debug("QEMU monitor closed: %s", reason->message);
    qmp->state = HD_QMP_STATE_CLOSED;
    qmp->closed_reason = reason;
    hdQmpSourceClear(&qmp->reader);
    hdQmpSourceClear(&qmp->writer);
    while ((out = g_queue_pop_head(&qmp->output)))
        hdQmpOutputFree(out);
    if (qmp->fd >= 0) {
        close(qmp->fd);
        qmp->fd = -1;
    }
    hdQmpRef(qmp);
    hdQmpFailNegotiation(qmp, reason);
    hdQmpFailPending(qmp, reason);
    qmp->closed_func = NULL;
    if (closed_func)
        closed_func(qmp, reason, qmp->closed_opaque);
    hdQmpUnref(qmp);
}


static void
hdQmpFailProtocol(hdQmp *qmp, const char *why, const char *line)
{
    GError *error = NULL;
    g_autofree char *excerpt = g_utf8_make_valid(line, MIN(strlen(line), 80));

    hdErrorSet(&error, HD_ERROR_OPERATION_FAILED,
               _("QEMU monitor sent an invalid message (%1$s): '%2$s'"), why, excerpt);
    hdQmpFail(qmp, error);
}


static void
hdQmpDispatchEvent(hdQmp *qmp, JsonObject *message)
{
    const char *name = hdQmpJsonString(message, "event");
    JsonObject *data = hdQmpJsonObject(message, "data");
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(guint));
    guint i;
    guint j;

    if (!name)
        return;
    /* A handler may add or remove handlers: call those present now. */
    for (i = 0; i < qmp->handlers->len; i++)
        g_array_append_val(ids, g_array_index(qmp->handlers, hdQmpHandler, i).id);
    for (i = 0; i < ids->len && qmp->state != HD_QMP_STATE_CLOSED; i++) {
        for (j = 0; j < qmp->handlers->len; j++) {
            hdQmpHandler handler = g_array_index(qmp->handlers, hdQmpHandler, j);

            if (handler.id != g_array_index(ids, guint, i))
                continue;
            if (!handler.name || g_str_equal(handler.name, name))
                handler.func(qmp, name, data, handler.opaque);
            break;
        }
    }
}


static hdQmpPending *
hdQmpFindPending(hdQmp *qmp, JsonObject *message)
{
    JsonNode *id = json_object_get_member(message, "id");
    GList *link;

    /* QEMU answers a line it could not parse with an error without id;
     * replies come in order, so it is the oldest command's. */
    if (!id)
        return g_queue_peek_head(&qmp->pending);
    if (!JSON_NODE_HOLDS_VALUE(id) || json_node_get_value_type(id) != G_TYPE_STRING)
        return NULL;
    for (link = qmp->pending.head; link; link = link->next) {
        hdQmpPending *pending = link->data;

        if (g_str_equal(pending->id, json_node_get_string(id)))
            return pending;
    }
    return NULL;
}


static void
hdQmpDispatchReply(hdQmp *qmp, JsonObject *message)
{
    hdQmpPending *pending = hdQmpFindPending(qmp, message);
    JsonObject *err;
    const char *class;
    g_autoptr(GError) error = NULL;

    if (!pending) {
        g_debug("QEMU monitor: dropping a reply nobody waits for");
        return;
    }
    if (!json_object_has_member(message, "error")) {
        hdQmpComplete(qmp, pending, json_object_get_member(message, "return"), NULL);
        return;
    }
    err = hdQmpJsonObject(message, "error");
    if (!(class = hdQmpJsonString(err, "class")))
        class = "?";
    /* CommandNotFound and DeviceNotFound are the ones callers act on. */
    hdErrorSet(&error, g_str_has_suffix(class, "NotFound") ?
                       HD_ERROR_NOT_FOUND : HD_ERROR_OPERATION_FAILED,
               _("QEMU refused '%1$s': %2$s (%3$s)"), pending->command,
               hdQmpJsonString(err, "desc") ? hdQmpJsonString(err, "desc") : "?", class);
    hdQmpComplete(qmp, pending, NULL, error);
}


static void
hdQmpOnCapabilities(hdQmp *qmp, JsonNode *ret, const GError *error, gpointer opaque)
{
    hdQmpReplyFunc func = qmp->negotiate_func;

    if (error) {
        hdQmpFailNegotiation(qmp, error);
        return;
    }
    qmp->state = HD_QMP_STATE_READY;
    hdQmpSourceClear(&qmp->negotiate_timeout);
    qmp->negotiate_func = NULL;
    if (func)
        func(qmp, NULL, NULL, qmp->negotiate_opaque);
}


static void hdQmpQueueCommand(hdQmp *qmp, const char *command, JsonNode *arguments,
                              const int *fds, guint nfds, guint timeout_ms,
                              hdQmpReplyFunc func, gpointer opaque);


static void
hdQmpHandleGreeting(hdQmp *qmp, JsonObject *message, const char *line)
{
    JsonObject *greeting = hdQmpJsonObject(message, "QMP");
    JsonObject *qemu = hdQmpJsonObject(hdQmpJsonObject(greeting, "version"), "qemu");

    if (qmp->state != HD_QMP_STATE_GREETING || !greeting) {
        hdQmpFailProtocol(qmp, _("unexpected greeting"), line);
        return;
    }
    qmp->version[0] = CLAMP(hdQmpJsonInt(qemu, "major", 0), 0, G_MAXINT);
    qmp->version[1] = CLAMP(hdQmpJsonInt(qemu, "minor", 0), 0, G_MAXINT);
    qmp->version[2] = CLAMP(hdQmpJsonInt(qemu, "micro", 0), 0, G_MAXINT);
    qmp->have_greeting = TRUE;
    qmp->state = HD_QMP_STATE_CAPABILITIES;
    hdQmpQueueCommand(qmp, "qmp_capabilities", NULL, NULL, 0, 0, hdQmpOnCapabilities, NULL);
}


/* One line from the monitor. */
static void
hdQmpHandleLine(hdQmp *qmp, const char *line)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) local = NULL;
    JsonNode *root;
    JsonObject *message;

    if (!json_parser_load_from_data(parser, line, -1, &local)) {
        hdQmpFailProtocol(qmp, local->message, line);
        return;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        hdQmpFailProtocol(qmp, _("not a JSON object"), line);
        return;
    }
    message = json_node_get_object(root);
    if (json_object_has_member(message, "QMP"))
        hdQmpHandleGreeting(qmp, message, line);
    else if (qmp->state == HD_QMP_STATE_GREETING)
        hdQmpFailProtocol(qmp, _("no greeting"), line);
    else if (hdQmpJsonString(message, "event"))
        hdQmpDispatchEvent(qmp, message);
    else if (json_object_has_member(message, "error") && !hdQmpJsonObject(message, "error"))
        hdQmpFailProtocol(qmp, _("malformed error reply"), line);
    else if (json_object_has_member(message, "return") ||
             json_object_has_member(message, "error"))
        hdQmpDispatchReply(qmp, message);
    else
        hdQmpFailProtocol(qmp, _("neither a reply nor an event"), line);
}


/* Handle every complete line in qmp->input; keep the rest. */
static void
hdQmpHandleInput(hdQmp *qmp)
{
    gsize start = 0;
    /* Not scanned again for each read of a long message. */
    gsize from = qmp->scanned;
    char *nl;

    while (qmp->state != HD_QMP_STATE_CLOSED &&
           (nl = memchr(qmp->input->str + from, '\n', qmp->input->len - from))) {
        char *line = qmp->input->str + start;
        gsize len = nl - line;

        start += len + 1;
        from = start;
        if (len > qmp->max_message) {
            GError *error = NULL;

            hdErrorSet(&error, HD_ERROR_OPERATION_FAILED,
                       _("QEMU monitor sent a message of more than %1$" G_GSIZE_FORMAT
                         " bytes"), qmp->max_message);
            hdQmpFail(qmp, error);
            return;
        }
        *nl = '\0';
        if (len > 0 && line[len - 1] == '\r')
            line[len - 1] = '\0';
        if (*line)
            hdQmpHandleLine(qmp, line);
    }
    if (qmp->state == HD_QMP_STATE_CLOSED)
        return;
    g_string_erase(qmp->input, 0, start);
    qmp->scanned = qmp->input->len;
    if (qmp->input->allocated_len > HD_QMP_INPUT_KEEP &&
        qmp->input->len < qmp->input->allocated_len / 4) {
        GString *rest = g_string_new_len(qmp->input->str, qmp->input->len);

        g_string_free(qmp->input, TRUE);
        qmp->input = rest;
    }
    if (qmp->input->len > qmp->max_message) {
        GError *error = NULL;

        hdErrorSet(&error, HD_ERROR_OPERATION_FAILED,
                   _("QEMU monitor sent a message of more than %1$" G_GSIZE_FORMAT " bytes"),
                   qmp->max_message);
        hdQmpFail(qmp, error);
    }
}


static gboolean
hdQmpOnReadable(gint fd, GIOCondition cond, gpointer opaque)
{
    hdQmp *qmp = hdQmpRef(opaque);
    char buf[HD_QMP_READ_CHUNK];
    GError *error = NULL;
    ssize_t got;

    got = read(qmp->fd, buf, sizeof(buf));
    if (got > 0)
        g_string_append_len(qmp->input, buf, got);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
        hdQmpUnref(qmp);
        return G_SOURCE_CONTINUE;
    }
    if (got < 0 && errno != ECONNRESET) {
        hdErrorSetSystem(&error, errno, "%s", _("cannot read from the QEMU monitor"));
        hdQmpFail(qmp, error);
    } else if (got <= 0) {
        /* ECONNRESET: QEMU went away with our last command unread. */
        if (qmp->input->len > 0)
            hdErrorSet(&error, HD_ERROR_OPERATION_FAILED,
                       _("QEMU monitor closed the connection in the middle of a message"));
        else
            hdErrorSet(&error, HD_ERROR_OPERATION_FAILED,
                       _("QEMU monitor closed the connection"));
        hdQmpFail(qmp, error);
    } else {
        hdQmpHandleInput(qmp);
    }
    hdQmpUnref(qmp);
    return G_SOURCE_CONTINUE;
}


gsize
hdQmpGetInputAllocated(hdQmp *qmp)
{
    return qmp->input->allocated_len;
}


hdQmp *
hdQmpNewFromFd(int fd, GMainContext *ctx)
{
    hdQmp *qmp = g_new0(hdQmp, 1);

    qmp->refs = 1;
    qmp->fd = fd;
    qmp->ctx = g_main_context_ref(ctx ? ctx : g_main_context_default());
    qmp->max_message = HD_QMP_MAX_MESSAGE_SIZE;
    qmp->input = g_string_new(NULL);
    g_queue_init(&qmp->output);
    g_queue_init(&qmp->pending);
    qmp->handlers = g_array_new(FALSE, FALSE, sizeof(hdQmpHandler));
    g_array_set_clear_func(qmp->handlers, (GDestroyNotify)hdQmpHandlerClear);
    g_unix_set_fd_nonblocking(fd, TRUE, NULL);
    qmp->reader = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(qmp->reader, G_SOURCE_FUNC(hdQmpOnReadable), qmp, NULL);
    g_source_attach(qmp->reader, qmp->ctx);
    return qmp;
}


/* A stream socket connected to @path, and the pid of the process that
 * listens there (SO_PEERCRED; 0 if unknown). */
static int
hdQmpConnectSocket(const char *path, pid_t *peer, GError **error)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct ucred cred = { 0 };
    socklen_t credlen = sizeof(cred);
    g_auto(hdFd) fd = -1;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("QEMU monitor socket path '%1$s' is too long"), path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        hdErrorSetSystem(error, errno, "%s", _("cannot create a socket"));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot connect to the QEMU monitor at '%1$s'"),
                         path);
        return -1;
    }
    *peer = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0 ? cred.pid : 0;
    return g_steal_fd(&fd);
}


hdQmp *
hdQmpConnectUnix(const char *path, GMainContext *ctx, GError **error)
{
    pid_t peer = 0;
    int fd = hdQmpConnectSocket(path, &peer, error);
    hdQmp *qmp;

    if (fd < 0)
        return NULL;
    qmp = hdQmpNewFromFd(fd, ctx);
    qmp->peer_pid = peer;
    return qmp;
}


pid_t
hdQmpSocketPeerPid(const char *path, GError **error)
{
    pid_t peer = 0;
    int fd = hdQmpConnectSocket(path, &peer, error);

    if (fd < 0)
        return 0;
    close(fd);
    if (peer <= 0)
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
                   _("no peer credentials on the QEMU monitor at '%1$s'"), path);
    return peer;
}


hdQmp *
hdQmpRef(hdQmp *qmp)
{
    g_atomic_int_inc(&qmp->refs);
    return qmp;
}


void
hdQmpClose(hdQmp *qmp)
{
    GError *error = NULL;

    hdErrorSet(&error, HD_ERROR_OPERATION_FAILED, _("QEMU monitor closed by hostdev"));
    hdQmpFail(qmp, error);
}


void
hdQmpUnref(hdQmp *qmp)
{
    if (!qmp || !g_atomic_int_dec_and_test(&qmp->refs))
        return;
    /* Callbacks still run (they were promised an answer); keep a reference
     * meanwhile so that none of them frees us twice. */
    qmp->refs = 1;
    hdQmpClose(qmp);
    g_clear_pointer(&qmp->closed_reason, g_error_free);
    g_string_free(qmp->input, TRUE);
    g_array_unref(qmp->handlers);
    g_clear_pointer(&qmp->caps, hdQemuCapsFree);
    g_main_context_unref(qmp->ctx);
    g_free(qmp);
}


gboolean
hdQmpIsOpen(hdQmp *qmp)
{
    return qmp->state != HD_QMP_STATE_CLOSED;
}


void
hdQmpSetMaxMessageSize(hdQmp *qmp, gsize max)
{
    qmp->max_message = max;
}


void
hdQmpSetClosedFunc(hdQmp *qmp, hdQmpClosedFunc func, gpointer opaque)
{
    qmp->closed_func = func;
    qmp->closed_opaque = opaque;
}


GMainContext *
hdQmpGetContext(hdQmp *qmp)
{
    return qmp->ctx;
}


pid_t
hdQmpGetPeerPid(hdQmp *qmp)
{
    return qmp->peer_pid;
}


void
hdQmpSetPeerPid(hdQmp *qmp, pid_t pid)
{
    qmp->peer_pid = pid;
}


guint
hdQmpAddEventHandler(hdQmp *qmp, const char *name, hdQmpEventFunc func, gpointer opaque)
{
    hdQmpHandler handler = {
        .id = ++qmp->next_handler_id,
        .name = g_strdup(name),
        .func = func,
        .opaque = opaque,
    };

    g_array_append_val(qmp->handlers, handler);
    return handler.id;
}


void
hdQmpRemoveEventHandler(hdQmp *qmp, guint id)
{
    guint i;

    for (i = 0; i < qmp->handlers->len; i++) {
        if (g_array_index(qmp->handlers, hdQmpHandler, i).id == id) {
            g_array_remove_index(qmp->handlers, i);
            return;
        }
    }
}


static gboolean
hdQmpOnNegotiateTimeout(gpointer opaque)
{
    hdQmp *qmp = hdQmpRef(opaque);
    g_autoptr(GError) error = NULL;

    hdErrorSet(&error, HD_ERROR_TIMEOUT,
               _("QEMU monitor did not greet within the time allowed"));
    hdQmpFailNegotiation(qmp, error);
    hdQmpUnref(qmp);
    return G_SOURCE_REMOVE;
}


void
hdQmpNegotiateAsync(hdQmp *qmp, guint timeout_ms, hdQmpReplyFunc func, gpointer opaque)
{
    g_autoptr(GError) error = NULL;

    if (qmp->state == HD_QMP_STATE_READY) {
        func(qmp, NULL, NULL, opaque);
        return;
    }
    if (qmp->state == HD_QMP_STATE_CLOSED || qmp->negotiate_func) {
        if (qmp->state == HD_QMP_STATE_CLOSED)
            error = g_error_copy(qmp->closed_reason);
        else
            hdErrorSet(&error, HD_ERROR_INVALID_ARG,
                       _("QEMU monitor is already negotiating or negotiated"));
        func(qmp, NULL, error, opaque);
        return;
    }
    qmp->negotiate_func = func;
    qmp->negotiate_opaque = opaque;
    qmp->negotiate_timeout = g_timeout_source_new(timeout_ms ? timeout_ms :
                                                  HD_QMP_DEFAULT_TIMEOUT_MS);
    g_source_set_callback(qmp->negotiate_timeout, hdQmpOnNegotiateTimeout, qmp, NULL);
    g_source_attach(qmp->negotiate_timeout, qmp->ctx);
}


gboolean
hdQmpGetGreetingVersion(hdQmp *qmp, unsigned int *major, unsigned int *minor,
                        unsigned int *micro)
{
    if (!qmp->have_greeting)
        return FALSE;
    *major = qmp->version[0];
    *minor = qmp->version[1];
    *micro = qmp->version[2];
    return TRUE;
}


static void
hdQmpQueueCommand(hdQmp *qmp, const char *command, JsonNode *arguments, const int *fds,
                  guint nfds, guint timeout_ms, hdQmpReplyFunc func, gpointer opaque)
{
    hdQmpPending *pending;
    g_autoptr(JsonBuilder) builder = NULL;
    g_autoptr(JsonNode) message = NULL;
    int dups[HD_QMP_MAX_FDS];
    guint i;

    /* The caller keeps its fds: send copies, closed once sent. */
    for (i = 0; i < nfds; i++) {
        if ((dups[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)) < 0) {
            g_autoptr(GError) error = NULL;

            hdErrorSetSystem(&error, errno, _("cannot pass a file descriptor with '%1$s'"),
                             command);
            while (i > 0)
                close(dups[--i]);
            func(qmp, NULL, error, opaque);
            return;
        }
    }
    pending = g_new0(hdQmpPending, 1);
    builder = json_builder_new();
    pending->id = g_strdup_printf("hd-%" G_GUINT64_FORMAT, ++qmp->next_id);
    pending->command = g_strdup(command);
    pending->func = func;
    pending->opaque = opaque;
    pending->timeout_ms = timeout_ms ? timeout_ms : HD_QMP_DEFAULT_TIMEOUT_MS;

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "execute");
    json_builder_add_string_value(builder, command);
    if (arguments) {
        json_builder_set_member_name(builder, "arguments");
        json_builder_add_value(builder, json_node_copy(arguments));
    }
    json_builder_set_member_name(builder, "id");
    json_builder_add_string_value(builder, pending->id);
    json_builder_end_object(builder);
    message = json_builder_get_root(builder);

    g_queue_push_tail(&qmp->pending, pending);
    hdQmpArmTimeout(qmp, pending);
    hdQmpSend(qmp, message, dups, nfds);
}


void
hdQmpCommandAsync(hdQmp *qmp, const char *command, JsonNode *arguments, const int *fds,
                  guint nfds, guint timeout_ms, hdQmpReplyFunc func, gpointer opaque)
{
    g_autoptr(GError) error = NULL;

    if (qmp->state == HD_QMP_STATE_CLOSED) {
        error = g_error_copy(qmp->closed_reason);
    } else if (qmp->state != HD_QMP_STATE_READY) {
        hdErrorSet(&error, HD_ERROR_INVALID_ARG,
                   _("cannot send '%1$s': the QEMU monitor is not in command mode yet"),
                   command);
    } else if (nfds > HD_QMP_MAX_FDS ||
               (arguments && !JSON_NODE_HOLDS_OBJECT(arguments))) {
        hdErrorSet(&error, HD_ERROR_INVALID_ARG,
                   _("invalid arguments or too many file descriptors for '%1$s'"), command);
    }
    if (error) {
        func(qmp, NULL, error, opaque);
        return;
    }
    hdQmpQueueCommand(qmp, command, arguments, fds, nfds, timeout_ms, func, opaque);
}


/* What a synchronous caller waits for. */
typedef struct {
    gboolean done;
    JsonNode *ret;
    GError *error;
} hdQmpSyncResult;


static void
hdQmpOnSyncReply(hdQmp *qmp, JsonNode *ret, const GError *error, gpointer opaque)
{
    hdQmpSyncResult *result = opaque;

    result->done = TRUE;
    if (error)
        result->error = g_error_copy(error);
    else if (ret)
        result->ret = json_node_copy(ret);
}


/* Run @qmp's context until @result is done.  Every async operation this
 * waits for has its own timeout, so this ends. */
static gboolean
hdQmpRunUntilDone(hdQmp *qmp, hdQmpSyncResult *result, GError **error)
{
    if (!result->done && !g_main_context_acquire(qmp->ctx)) {
        hdErrorSet(error, HD_ERROR_INTERNAL,
                   _("the QEMU monitor's main context is run by another thread"));
        return FALSE;
    }
    if (!result->done) {
        while (!result->done)
            g_main_context_iteration(qmp->ctx, TRUE);
        g_main_context_release(qmp->ctx);
    }
    if (result->error) {
        g_propagate_error(error, result->error);
        return FALSE;
    }
    return TRUE;
}


gboolean
hdQmpNegotiate(hdQmp *qmp, guint timeout_ms, GError **error)
{
    hdQmpSyncResult result = { 0 };

    hdQmpRef(qmp);
    hdQmpNegotiateAsync(qmp, timeout_ms, hdQmpOnSyncReply, &result);
    if (!hdQmpRunUntilDone(qmp, &result, error)) {
        /* No callback may touch @result any more. */
        if (qmp->negotiate_opaque == &result) {
            qmp->negotiate_func = NULL;
            hdQmpSourceClear(&qmp->negotiate_timeout);
        }
        hdQmpUnref(qmp);
        return FALSE;
    }
    hdQmpUnref(qmp);
    return TRUE;
}


JsonNode *
hdQmpCommand(hdQmp *qmp, const char *command, JsonNode *arguments, const int *fds,
             guint nfds, guint timeout_ms, GError **error)
{
    hdQmpSyncResult result = { 0 };

    hdQmpRef(qmp);
    hdQmpCommandAsync(qmp, command, arguments, fds, nfds, timeout_ms, hdQmpOnSyncReply,
                      &result);
    if (!hdQmpRunUntilDone(qmp, &result, error)) {
        GList *link;

        for (link = qmp->pending.head; link; link = link->next) {
            hdQmpPending *pending = link->data;

            if (pending->opaque == &result)
                pending->func = NULL;
        }
        hdQmpUnref(qmp);
        return NULL;
    }
    hdQmpUnref(qmp);
    return result.ret ? result.ret : json_node_new(JSON_NODE_NULL);
}


static gboolean
hdQmpOnWaitDeadline(gpointer opaque)
{
    *(gboolean *)opaque = TRUE;
    return G_SOURCE_REMOVE;
}


gboolean
hdQmpWaitUntil(hdQmp *qmp, const gboolean *done, guint timeout_ms, GError **error)
{
    g_autoptr(GSource) deadline = g_timeout_source_new(timeout_ms);
    gboolean expired = FALSE;

    if (!g_main_context_acquire(qmp->ctx)) {
        hdErrorSet(error, HD_ERROR_INTERNAL,
                   _("the QEMU monitor's main context is run by another thread"));
        return FALSE;
    }
    g_source_set_callback(deadline, hdQmpOnWaitDeadline, &expired, NULL);
    g_source_attach(deadline, qmp->ctx);
    while (!*done && !expired && qmp->state != HD_QMP_STATE_CLOSED)
        g_main_context_iteration(qmp->ctx, TRUE);
    g_source_destroy(deadline);
    g_main_context_release(qmp->ctx);

    if (*done)
        return TRUE;
    if (qmp->state == HD_QMP_STATE_CLOSED)
        g_propagate_error(error, g_error_copy(qmp->closed_reason));
    else
        hdErrorSet(error, HD_ERROR_TIMEOUT, _("nothing happened within %1$u ms"), timeout_ms);
    return FALSE;
}


void
hdQmpSetCaps(hdQmp *qmp, hdQemuCaps *caps)
{
    g_clear_pointer(&qmp->caps, hdQemuCapsFree);
    qmp->caps = caps;
}


const hdQemuCaps *
hdQmpGetCaps(hdQmp *qmp)
{
    return qmp->caps;
}
