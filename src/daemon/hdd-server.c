/*
 * hdd-server.c: hostdevd's control socket
 *
 * The protocol is QMP's framing (docs/protocol.rst): a greeting, then one
 * JSON object per line from the client, each answered by exactly one
 * reply; events are sent to every client that negotiated.  Every
 * connection's peer credentials (SO_PEERCRED) are checked before anything
 * else: root, or a member of the configured group.  A line over
 * HDD_MAX_REQUEST_SIZE cannot be resynchronized, so it ends the connection
 * after an error reply; any other bad request gets an error reply and
 * changes nothing.
 *
 * Limits (docs/protocol.rst): at most config->max_clients connections
 * (root has HDD_ROOT_RESERVE more, so that an administrator can still look
 * at a daemon that group members saturate); a connection that has not
 * negotiated within config->handshake_timeout seconds is ended.
 *
 * Fairness: reading a connection only splits its input into lines; the
 * requests run from one queue of connections, one request per turn and
 * main loop iteration (round robin), so that a client that pipelines a
 * thousand requests delays another one's by one request, not a thousand.
 * A connection has at most HDD_CLIENT_MAX_PENDING requests in the daemon
 * (waiting for their turn, or running on a worker) and at most one
 * request's worth of input waiting: beyond that it is not read (flow
 * control: the client's writes wait, nothing is lost).  At most
 * HDD_CLIENT_MAX_RUNNING of them run on workers at once, and its requests
 * also wait while HDD_CLIENT_MAX_UNREAD replies it has not read are queued.
 * Replies are written at once when the socket takes them (non-blocking),
 * so that a request's reply goes out in the turn that made it.
 * Everything on the main context runs at G_PRIORITY_DEFAULT, so that a
 * busy request queue starves none of it.
 *
 * Memory: an idle connection holds no buffer (reads go to one shared
 * buffer, a connection's input is kept only while it has some).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gi18n.h>

#include "hostdev/error.h"
#include "hdd-request.h"
#include "hdd.h"
#include "hdprocess.h"

/* A client that does not read its replies is dropped past this backlog. */
#define HDD_MAX_BACKLOG 4096
/* Input discarded after a fatal error before the connection is cut. */
#define HDD_MAX_DRAIN (16 * 1024 * 1024)
/* Connections root may open beyond --max-clients. */
#define HDD_ROOT_RESERVE 16
/* Requests of one connection in the daemon: waiting, or on a worker. */
#define HDD_CLIENT_MAX_PENDING 32
/* Requests of one connection on workers at once. */
#define HDD_CLIENT_MAX_RUNNING 4
/* Messages queued for a client before its next request waits. */
#define HDD_CLIENT_MAX_UNREAD 64

struct _hddClient {
    gint refs;
    guint serial;
    hddDaemon *dmn;
    GSocketConnection *conn;
    GSocket *sock;            /* conn's */
    GSource *in_source;       /* while it is read; NULL: flow control */
    guint timer_id;           /* until qmp_capabilities, or until it hangs up */
    GByteArray *inbuf;        /* input not run yet; NULL when there is none */
    gsize scanned;            /* bytes of inbuf searched for line ends */
    gsize line_start;         /* where the line after the complete ones starts */
    guint lines;              /* complete lines in inbuf */
    guint running;            /* requests on workers, not answered yet */
    gboolean too_large;       /* an over-long line follows the complete ones */
    gboolean ready;           /* in server.ready */
    GQueue outq;              /* GBytes *, the head is being written */
    gsize out_offset;         /* of the head, written already */
    GSource *out_source;      /* while the socket takes no more */
    gboolean negotiated;
    gboolean closed;
    gboolean close_after_flush; /* after a fatal error: reply, then hang up */
    gsize drained;
    pid_t pid;
    uid_t uid;
};

typedef struct {
    hddClient *client;        /* NULL: every negotiated client */
    GBytes *text;
} hddOutgoing;

static struct {
    hddDaemon *dmn;
    GSocketService *service;
    GList *clients;           /* hddClient *, main thread only */
    guint nclients;
    guint serial;
    GQueue ready;             /* hddClient * (a reference each) with a request to run */
    hddClient *last;          /* ran in the previous turn; queued again in the next */
    guint run_id;
    gint64 refused_logged;    /* when a refused connection was last logged */
    GMutex lock;              /* guards queue and flush_id */
    GQueue queue;             /* hddOutgoing * */
    guint flush_id;
    gboolean draining;        /* shutting down: no new connection or request */
} server;

/* Where every connection is read into (main thread only). */
static guint8 hddReadBuffer[65536];

static void hddClientRead(hddClient *client);
static void hddClientWriteNext(hddClient *client);
static void hddClientSchedule(hddClient *client);
static void hddFlushNow(void);


hddClient *
hddClientRef(hddClient *client)
{
    g_atomic_int_inc(&client->refs);
    return client;
}


void
hddClientUnref(hddClient *client)
{
    if (!client || !g_atomic_int_dec_and_test(&client->refs))
        return;
    g_clear_object(&client->conn);
    g_clear_pointer(&client->inbuf, g_byte_array_unref);
    g_queue_clear_full(&client->outq, (GDestroyNotify)g_bytes_unref);
    g_free(client);
}


static void
hddSourceClear(GSource **source)
{
    if (*source) {
        g_source_destroy(*source);
        g_clear_pointer(source, g_source_unref);
    }
}


static void
hddClientClose(hddClient *client)
{
    if (client->closed)
        return;
    client->closed = TRUE;
    g_debug("client %u (pid %d) disconnected", client->serial, (int)client->pid);
    hddSourceClear(&client->in_source);
    hddSourceClear(&client->out_source);
    g_clear_handle_id(&client->timer_id, g_source_remove);
    g_io_stream_close(G_IO_STREAM(client->conn), NULL, NULL);
    g_clear_pointer(&client->inbuf, g_byte_array_unref);
    server.clients = g_list_remove(server.clients, client);
    server.nclients--;
    hddClientUnref(client);
}


static gboolean
hddClientWritable(GSocket *sock, GIOCondition cond, gpointer opaque)
{
    hddClient *client = opaque;

    /* Returning G_SOURCE_REMOVE destroys it. */
    g_clear_pointer(&client->out_source, g_source_unref);
    hddClientWriteNext(client);
    return G_SOURCE_REMOVE;
}


/* Write what @client's socket takes now, without blocking; the rest once
 * it takes more.  Written at once, a reply goes out in the main loop
 * iteration that made it. */
static void
hddClientWriteNext(hddClient *client)
{
    GBytes *head;

    if (client->closed || client->out_source)
        return;
    while ((head = g_queue_peek_head(&client->outq))) {
        g_autoptr(GError) error = NULL;
        gsize size;
        const char *data = g_bytes_get_data(head, &size);
        gssize n = g_socket_send_with_blocking(client->sock, data + client->out_offset,
                                               size - client->out_offset, FALSE, NULL, &error);

        if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            client->out_source = g_socket_create_source(client->sock, G_IO_OUT, NULL);
            g_source_set_callback(client->out_source,
                                  (GSourceFunc)(GCallback)hddClientWritable, client, NULL);
            g_source_attach(client->out_source, NULL);
            return;
        }
        if (n < 0) {
            g_debug("client %u: %s", client->serial, error->message);
            hddClientClose(client);
            return;
        }
        client->out_offset += n;
        if (client->out_offset == size) {
            g_bytes_unref(g_queue_pop_head(&client->outq));
            client->out_offset = 0;
        }
    }
    /* Closing with unread input would reset the connection and could
     * lose the last reply: end our side, and drain theirs. */
    if (client->close_after_flush)
        g_socket_shutdown(client->sock, FALSE, TRUE, NULL);
    /* Its replies are read: its requests may run again. */
    hddClientSchedule(client);
}


static void
hddClientQueue(hddClient *client, GBytes *text)
{
    if (client->closed)
        return;
    if (g_queue_get_length(&client->outq) >= HDD_MAX_BACKLOG) {
        g_warning(_("client %1$u (pid %2$d) does not read its messages: disconnected"),
                  client->serial, (int)client->pid);
        hddClientClose(client);
        return;
    }
    g_queue_push_tail(&client->outq, g_bytes_ref(text));
    hddClientWriteNext(client);
}


static gboolean
hddFlush(gpointer opaque)
{
    GQueue batch = G_QUEUE_INIT;
    hddOutgoing *out;

    g_mutex_lock(&server.lock);
    batch = server.queue;
    g_queue_init(&server.queue);
    server.flush_id = 0;
    g_mutex_unlock(&server.lock);

    while ((out = g_queue_pop_head(&batch))) {
        if (out->client) {
            hddClientQueue(out->client, out->text);
            hddClientUnref(out->client);
        } else {
            GList *l = server.clients;

            while (l) {
                hddClient *client = l->data;

                /* hddClientQueue may drop the client from the list */
                l = l->next;
                if (client->negotiated)
                    hddClientQueue(client, out->text);
            }
        }
        g_bytes_unref(out->text);
        g_free(out);
    }
    return G_SOURCE_REMOVE;
}


/* On the main thread: what is queued goes out now, instead of at the
 * next iteration of the main loop, which may run another request first. */
static void
hddFlushNow(void)
{
    g_mutex_lock(&server.lock);
    g_clear_handle_id(&server.flush_id, g_source_remove);
    g_mutex_unlock(&server.lock);
    hddFlush(NULL);
}


void
hddSend(hddClient *client, JsonNode *msg)
{
    g_autoptr(JsonNode) node = msg;
    hddOutgoing *out = g_new0(hddOutgoing, 1);
    g_autofree char *text = json_to_string(node, FALSE);
    g_autofree char *line = g_strconcat(text, "\n", NULL);
    gsize len = strlen(line);

    out->client = client ? hddClientRef(client) : NULL;
    out->text = g_bytes_new_take(g_steal_pointer(&line), len);

    /* One queue for replies and events from every thread keeps them in the
     * order they happened. */
    g_mutex_lock(&server.lock);
    g_queue_push_tail(&server.queue, out);
    if (!server.flush_id)
        server.flush_id = g_idle_add_full(G_PRIORITY_DEFAULT, hddFlush, NULL, NULL);
    g_mutex_unlock(&server.lock);
}


void
hddEmitEvent(const char *name, JsonNode *data)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    gint64 now = g_get_real_time();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "event");
    json_builder_add_string_value(b, name);
    json_builder_set_member_name(b, "data");
    if (data)
        json_builder_add_value(b, data);
    else {
        json_builder_begin_object(b);
        json_builder_end_object(b);
    }
    json_builder_set_member_name(b, "timestamp");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "seconds");
    json_builder_add_int_value(b, now / G_USEC_PER_SEC);
    json_builder_set_member_name(b, "microseconds");
    json_builder_add_int_value(b, now % G_USEC_PER_SEC);
    json_builder_end_object(b);
    json_builder_end_object(b);
    hddSend(NULL, json_builder_get_root(b));
}


const char *
hddErrorClass(const GError *error)
{
    if (error->domain == HD_ERROR) {
        switch ((hdErrorCode)error->code) {
        case HD_ERROR_INVALID_ARG: return "InvalidArgument";
        case HD_ERROR_NOT_FOUND: return "NotFound";
        case HD_ERROR_IN_USE: return "InUse";
        case HD_ERROR_NOT_VIABLE: return "NotViable";
        case HD_ERROR_OPERATION_FAILED: return "OperationFailed";
        case HD_ERROR_TIMEOUT: return "Timeout";
        case HD_ERROR_STATE: return "State";
        case HD_ERROR_PERMISSION: return "PermissionDenied";
        case HD_ERROR_INTERNAL: break;
        }
    }
    if (error->domain == HD_SYSTEM_ERROR)
        return "OperationFailed";
    return "GenericError";
}


static JsonNode *
hddErrorReplyClass(const char *klass, const char *desc, JsonNode *id)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "error");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "class");
    json_builder_add_string_value(b, klass);
    json_builder_set_member_name(b, "desc");
    json_builder_add_string_value(b, desc);
    json_builder_end_object(b);
    if (id) {
        json_builder_set_member_name(b, "id");
        json_builder_add_value(b, json_node_copy(id));
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


JsonNode *
hddErrorReply(const GError *error, JsonNode *id)
{
    return hddErrorReplyClass(hddErrorClass(error), error->message, id);
}


JsonNode *
hddReply(JsonNode *ret, JsonNode *id)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "return");
    if (ret)
        json_builder_add_value(b, ret);
    else {
        json_builder_begin_object(b);
        json_builder_end_object(b);
    }
    if (id) {
        json_builder_set_member_name(b, "id");
        json_builder_add_value(b, json_node_copy(id));
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}


/* Step 1 of a request: it must be {"execute": STR, "arguments"?: OBJ,
 * "id"?: ANY} and nothing else (hddRequestParse). */
static void
hddClientRequest(hddClient *client, const char *line, gsize len)
{
    g_auto(hddRequest) req = { 0 };
    g_autoptr(GError) error = NULL;
    const char *command;
    JsonObject *args;
    JsonNode *id;

    if (!hddRequestParse(line, len, &req, &error)) {
        hddSend(client, hddErrorReplyClass(req.error_class, error->message, req.id));
        return;
    }
    command = req.command;
    args = req.arguments;
    id = req.id;

    /* Step 2: capabilities negotiation comes first, as in QMP. */
    if (strcmp(command, "qmp_capabilities") == 0) {
        if (client->negotiated) {
            hddSend(client, hddErrorReplyClass("CommandNotFound",
                                               _("capabilities negotiation is already complete"),
                                               id));
            return;
        }
        client->negotiated = TRUE;
        g_clear_handle_id(&client->timer_id, g_source_remove);
        hddSend(client, hddReply(NULL, id));
        return;
    }
    if (!client->negotiated) {
        hddSend(client, hddErrorReplyClass("CommandNotFound",
                                           _("expecting capabilities negotiation with 'qmp_capabilities'"),
                                           id));
        return;
    }

    /* Step 3: the command checks its own arguments. */
    hddDispatch(client->dmn, client, command, args, id);
}


static gboolean hddClientTimeout(gpointer opaque);

/* After a fatal error (its reply queued): hang up once the reply is
 * written, and drain what the client still sends meanwhile; a client that
 * neither stops sending nor hangs up is cut off. */
static void
hddClientEnd(hddClient *client)
{
    client->close_after_flush = TRUE;
    g_clear_handle_id(&client->timer_id, g_source_remove);
    client->timer_id = g_timeout_add_seconds(client->dmn->config->handshake_timeout,
                                             hddClientTimeout, client);
    hddClientRead(client);
}


/* The request at the head of @client's input, taken out of it. */
static void
hddClientRunOne(hddClient *client)
{
    guint8 *nl = memchr(client->inbuf->data, '\n', client->inbuf->len);
    gsize len = nl - client->inbuf->data;
    gsize line = len;

    /* A line may end with CR LF; empty lines are no request. */
    if (line > 0 && client->inbuf->data[line - 1] == '\r')
        line--;
    if (line > 0)
        hddClientRequest(client, (const char *)client->inbuf->data, line);
    client->lines--;
    client->scanned -= len + 1;
    client->line_start -= len + 1;
    if (client->closed)
        return;
    if (len + 1 == client->inbuf->len) {
        g_clear_pointer(&client->inbuf, g_byte_array_unref);
    } else if (len >= sizeof(hddReadBuffer)) {
        /* What is left after a large request gets a buffer its size. */
        GByteArray *rest = g_byte_array_sized_new(client->inbuf->len - len - 1);

        g_byte_array_append(rest, nl + 1, client->inbuf->len - len - 1);
        g_byte_array_unref(client->inbuf);
        client->inbuf = rest;
    } else {
        g_byte_array_remove_range(client->inbuf, 0, len + 1);
    }
}


/* A line over HDD_MAX_REQUEST_SIZE, once the requests before it ran: it
 * cannot be told from the next request, so the connection ends. */
static void
hddClientTooLarge(hddClient *client)
{
    g_autofree char *msg = g_strdup_printf(_("request larger than %1$u bytes"),
                                           (unsigned int)HDD_MAX_REQUEST_SIZE);

    g_warning(_("client %1$u (pid %2$d): %3$s"), client->serial, (int)client->pid, msg);
    hddSend(client, hddErrorReplyClass("LimitExceeded", msg, NULL));
    client->too_large = FALSE;
    g_clear_pointer(&client->inbuf, g_byte_array_unref);
    client->scanned = 0;
    client->line_start = 0;
    hddClientEnd(client);
}


/* One turn of the request queue: one request of the connection at its
 * head.  The connection that ran in the previous turn goes to the back
 * only now, behind those that became ready while its request ran: a
 * newcomer waits for the request running when it came, no more. */
static gboolean
hddRunNext(gpointer opaque)
{
    g_autoptr(hddClient) client = NULL;

    if (server.last) {
        hddClientSchedule(server.last);
        g_clear_pointer(&server.last, hddClientUnref);
    }
    if ((client = g_queue_pop_head(&server.ready))) {
        client->ready = FALSE;
        if (!client->closed && client->lines > 0)
            hddClientRunOne(client);
        if (!client->closed && client->lines == 0 && client->too_large)
            hddClientTooLarge(client);
        hddClientRead(client);
        server.last = g_steal_pointer(&client);
        /* Its reply now, not after another turn. */
        hddFlushNow();
    }
    if (!server.last && g_queue_is_empty(&server.ready)) {
        server.run_id = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}


/* Queue @client for a turn if it has a request it may run now. */
static void
hddClientSchedule(hddClient *client)
{
    if (server.draining || client->closed || client->ready || client->close_after_flush ||
        (client->lines == 0 && !client->too_large) ||
        client->running >= HDD_CLIENT_MAX_RUNNING ||
        g_queue_get_length(&client->outq) >= HDD_CLIENT_MAX_UNREAD)
        return;
    client->ready = TRUE;
    g_queue_push_tail(&server.ready, hddClientRef(client));
    if (!server.run_id)
        server.run_id = g_idle_add_full(G_PRIORITY_DEFAULT, hddRunNext, NULL, NULL);
}


/* Whether @client may send more: room for another request, and for its
 * bytes. */
static gboolean
hddClientWantsInput(hddClient *client)
{
    if (client->closed)
        return FALSE;
    if (client->close_after_flush)
        return TRUE;
    return !client->too_large && client->lines + client->running < HDD_CLIENT_MAX_PENDING &&
           (client->lines == 0 || !client->inbuf ||
            client->inbuf->len < HDD_MAX_REQUEST_SIZE);
}


/* @n bytes of input from @client: count the lines they complete. */
static void
hddClientInput(hddClient *client, const guint8 *data, gsize n)
{
    guint8 *nl = NULL;

    if (client->close_after_flush) {
        /* Draining after a fatal error; a client that never stops
         * sending is cut off. */
        client->drained += n;
        if (client->drained > HDD_MAX_DRAIN)
            hddClientClose(client);
        return;
    }
    if (!client->inbuf)
        client->inbuf = g_byte_array_sized_new(n);
    g_byte_array_append(client->inbuf, data, n);
    while (client->scanned < client->inbuf->len &&
           (nl = memchr(client->inbuf->data + client->scanned, '\n',
                        client->inbuf->len - client->scanned))) {
        client->scanned = nl - client->inbuf->data + 1;
        if (client->scanned - 1 - client->line_start > HDD_MAX_REQUEST_SIZE)
            break;
        client->line_start = client->scanned;
        client->lines++;
    }
    if (!nl)
        client->scanned = client->inbuf->len;
    if (client->scanned - client->line_start > HDD_MAX_REQUEST_SIZE) {
        /* Refused once the requests before it ran (hddClientTooLarge). */
        client->too_large = TRUE;
        g_byte_array_set_size(client->inbuf, client->line_start);
        client->scanned = client->line_start;
    }
    hddClientSchedule(client);
}


static gboolean
hddClientReadable(GSocket *sock, GIOCondition cond, gpointer opaque)
{
    hddClient *client = opaque;
    g_autoptr(GError) error = NULL;
    gssize n = g_socket_receive_with_blocking(sock, (char *)hddReadBuffer,
                                              sizeof(hddReadBuffer), FALSE, NULL, &error);

    if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return G_SOURCE_CONTINUE;
    if (n <= 0) {
        if (n < 0)
            g_debug("client %u: %s", client->serial, error->message);
        hddClientClose(client);
        return G_SOURCE_REMOVE;
    }
    hddClientInput(client, hddReadBuffer, n);
    if (hddClientWantsInput(client))
        return G_SOURCE_CONTINUE;
    /* Flow control: read again once a request is done. */
    g_clear_pointer(&client->in_source, g_source_unref);
    return G_SOURCE_REMOVE;
}


/* Read @client when it has something to say, if it may. */
static void
hddClientRead(hddClient *client)
{
    if (server.draining || client->in_source || !hddClientWantsInput(client))
        return;
    client->in_source = g_socket_create_source(client->sock, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                               NULL);
    g_source_set_callback(client->in_source, (GSourceFunc)(GCallback)hddClientReadable,
                          client, NULL);
    g_source_attach(client->in_source, NULL);
}


void
hddClientOpStarted(hddClient *client)
{
    if (client)
        client->running++;
}


void
hddClientOpDone(hddClient *client)
{
    if (!client)
        return;
    client->running--;
    hddClientRead(client);
    hddClientSchedule(client);
}


uid_t
hddClientGetUid(hddClient *client)
{
    return client->uid;
}


/* Whether @pid's supplementary groups include @gid. */
static gboolean
hddPidInGroup(pid_t pid, gid_t gid)
{
    g_auto(GStrv) groups = hdProcessStatusField("/proc", pid, "Groups");
    guint i;

    for (i = 0; groups && groups[i]; i++) {
        if (g_ascii_strtoull(groups[i], NULL, 10) == gid)
            return TRUE;
    }
    return FALSE;
}


/* A connection that has not negotiated in time, or has not hung up in
 * time after a fatal error. */
static gboolean
hddClientTimeout(gpointer opaque)
{
    hddClient *client = opaque;
    g_autofree char *msg = NULL;

    client->timer_id = 0;
    if (client->close_after_flush) {
        hddClientClose(client);
        return G_SOURCE_REMOVE;
    }
    msg = g_strdup_printf(_("no capabilities negotiation within %1$u s"),
                          client->dmn->config->handshake_timeout);
    g_info("client %u (pid %d): %s", client->serial, (int)client->pid, msg);
    hddSend(client, hddErrorReplyClass("LimitExceeded", msg, NULL));
    hddClientEnd(client);
    return G_SOURCE_REMOVE;
}


/* Over the connection limit: one error, written now, and the connection
 * ends without ever holding anything in the daemon. */
static void
hddRefuseConnection(GSocketConnection *conn, const struct ucred *cred, guint limit)
{
    g_autofree char *msg = g_strdup_printf(_("too many connections (limit %1$u)"), limit);
    g_autoptr(JsonNode) reply = hddErrorReplyClass("LimitExceeded", msg, NULL);
    g_autofree char *text = json_to_string(reply, FALSE);
    g_autofree char *line = g_strconcat(text, "\n", NULL);
    gint64 now = g_get_monotonic_time();

    /* Logged at most every 10 s: a flood of connections is no flood of logs. */
    if (now - server.refused_logged > 10 * G_USEC_PER_SEC) {
        g_warning(_("refused client pid %1$d (uid %2$u): %3$s"), (int)cred->pid,
                  (unsigned int)cred->uid, msg);
        server.refused_logged = now;
    }
    g_socket_send_with_blocking(g_socket_connection_get_socket(conn), line, strlen(line),
                                FALSE, NULL, NULL);
    g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
}


static gboolean
hddIncoming(GSocketService *service, GSocketConnection *conn, GObject *source,
            gpointer opaque)
{
    hddDaemon *dmn = opaque;
    GSocket *sock = g_socket_connection_get_socket(conn);
    struct ucred cred = { 0 };
    socklen_t len = sizeof(cred);
    gboolean allowed;
    guint limit;
    hddClient *client;

    /* Step 1: who is it?  Checked on every connection, before the greeting. */
    if (getsockopt(g_socket_get_fd(sock), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        g_warning(_("cannot read the credentials of a client: %1$s"), g_strerror(errno));
        return TRUE;
    }
    allowed = cred.uid == 0 ||
              (dmn->config->group &&
               (cred.gid == dmn->config->gid || hddPidInGroup(cred.pid, dmn->config->gid)));

    /* Step 2: room for it? */
    limit = dmn->config->max_clients + (cred.uid == 0 ? HDD_ROOT_RESERVE : 0);
    if (server.nclients >= limit) {
        hddRefuseConnection(conn, &cred, dmn->config->max_clients);
        return TRUE;
    }

    client = g_new0(hddClient, 1);
    client->refs = 1;
    client->serial = ++server.serial;
    client->dmn = dmn;
    client->conn = g_object_ref(conn);
    client->sock = sock;
    client->pid = cred.pid;
    client->uid = cred.uid;
    server.clients = g_list_prepend(server.clients, client);
    server.nclients++;
    if (!allowed) {
        g_autofree char *msg = g_strdup_printf(_("uid %1$u is not allowed to use hostdevd"),
                                               (unsigned int)cred.uid);

        g_warning(_("refused client pid %1$d: %2$s"), (int)cred.pid, msg);
        hddSend(client, hddErrorReplyClass("PermissionDenied", msg, NULL));
        hddClientEnd(client);
        return TRUE;
    }
    client->timer_id = g_timeout_add_seconds(dmn->config->handshake_timeout, hddClientTimeout,
                                             client);
    g_debug("client %u: pid %d uid %u", client->serial, (int)cred.pid, (unsigned)cred.uid);

    /* Step 3: greeting, QMP style. */
    {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "QMP");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "version");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "package");
        json_builder_add_string_value(b, "hostdevd " PACKAGE_VERSION);
        json_builder_set_member_name(b, "protocol");
        json_builder_add_int_value(b, 1);
        json_builder_end_object(b);
        json_builder_set_member_name(b, "capabilities");
        json_builder_begin_array(b);
        json_builder_end_array(b);
        json_builder_end_object(b);
        json_builder_end_object(b);
        hddSend(client, json_builder_get_root(b));
    }
    hddClientRead(client);
    return TRUE;
}


guint
hddServerClientCount(void)
{
    return server.nclients;
}


/* Bind @path with mode 0600 (0660 with a group) from the start: the umask
 * covers the window between bind() and chmod(). */
static GSocket *
hddListen(const hddConfig *config, GError **error)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    g_autoptr(GSocket) gsock = NULL;
    mode_t old_umask;
    struct stat st;
    int fd;

    if (strlen(config->socket_path) >= sizeof(sun.sun_path)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("socket path '%1$s' is too long"),
                   config->socket_path);
        return NULL;
    }
    strcpy(sun.sun_path, config->socket_path);

    /* A socket file left by a daemon that died: nobody answers on it. */
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        hdErrorSetSystem(error, errno, "%s", _("cannot create the control socket"));
        return NULL;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
        close(fd);
        hdErrorSet(error, HD_ERROR_IN_USE, _("another hostdevd listens on '%1$s'"),
                   config->socket_path);
        return NULL;
    }
    if (lstat(config->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            close(fd);
            hdErrorSet(error, HD_ERROR_IN_USE, _("'%1$s' exists and is not a socket"),
                       config->socket_path);
            return NULL;
        }
        unlink(config->socket_path);
    }

    old_umask = umask(0177);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int err = errno;

        umask(old_umask);
        close(fd);
        hdErrorSetSystem(error, err, _("cannot bind '%1$s'"), config->socket_path);
        return NULL;
    }
    umask(old_umask);
    if (config->group &&
        (chown(config->socket_path, 0, config->gid) < 0 ||
         chmod(config->socket_path, 0660) < 0)) {
        int err = errno;

        close(fd);
        hdErrorSetSystem(error, err, _("cannot give '%1$s' to group %2$s"),
                         config->socket_path, config->group);
        return NULL;
    }
    if (listen(fd, 64) < 0) {
        int err = errno;

        close(fd);
        hdErrorSetSystem(error, err, _("cannot listen on '%1$s'"), config->socket_path);
        return NULL;
    }
    if (!(gsock = g_socket_new_from_fd(fd, error))) {
        close(fd);
        return NULL;
    }
    return g_steal_pointer(&gsock);
}


gboolean
hddServerStart(hddDaemon *dmn, GError **error)
{
    g_autoptr(GSocket) sock = NULL;

    if (!(sock = hddListen(dmn->config, error)))
        return FALSE;
    server.dmn = dmn;
    server.service = g_socket_service_new();
    if (!g_socket_listener_add_socket(G_SOCKET_LISTENER(server.service), sock, NULL, error)) {
        g_clear_object(&server.service);
        return FALSE;
    }
    g_signal_connect(server.service, "incoming", G_CALLBACK(hddIncoming), dmn);
    g_socket_service_start(server.service);
    return TRUE;
}


static void
hddServerStopListening(void)
{
    if (server.service) {
        g_socket_service_stop(server.service);
        g_socket_listener_close(G_SOCKET_LISTENER(server.service));
        g_clear_object(&server.service);
        unlink(server.dmn->config->socket_path);
    }
}


/* A shutdown begins: no new connection, and no request is read or started
 * any more, but the connections stay open, so that the requests running on
 * workers still send their replies (and their events) before
 * hddServerStop. */
void
hddServerDrain(void)
{
    GList *l;

    hddServerStopListening();
    server.draining = TRUE;
    for (l = server.clients; l; l = l->next)
        hddSourceClear(&((hddClient *)l->data)->in_source);
}


void
hddServerStop(void)
{
    hddOutgoing *out;

    hddServerStopListening();
    /* The last replies go out (as far as the sockets take them now). */
    hddFlushNow();
    while (server.clients)
        hddClientClose(server.clients->data);
    g_clear_handle_id(&server.run_id, g_source_remove);
    g_queue_clear_full(&server.ready, (GDestroyNotify)hddClientUnref);
    g_clear_pointer(&server.last, hddClientUnref);
    g_mutex_lock(&server.lock);
    if (server.flush_id)
        g_source_remove(server.flush_id);
    server.flush_id = 0;
    while ((out = g_queue_pop_head(&server.queue))) {
        hddClientUnref(out->client);
        g_bytes_unref(out->text);
        g_free(out);
    }
    g_mutex_unlock(&server.lock);
}
