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

struct _hddClient {
    gint refs;
    guint serial;
    hddDaemon *dmn;
    GSocketConnection *conn;
    GCancellable *cancel;
    GByteArray *inbuf;
    GQueue outq;              /* GBytes *, the head is being written */
    gboolean writing;
    gboolean negotiated;
    gboolean closed;
    gboolean close_after_flush; /* after a fatal error: reply, then hang up */
    gsize drained;
    pid_t pid;
    uid_t uid;
    guint8 chunk[65536];
};

typedef struct {
    hddClient *client;        /* NULL: every negotiated client */
    GBytes *text;
} hddOutgoing;

static struct {
    hddDaemon *dmn;
    GSocketService *service;
    GList *clients;           /* hddClient *, main thread only */
    guint serial;
    GMutex lock;              /* guards queue and flush_id */
    GQueue queue;             /* hddOutgoing * */
    guint flush_id;
} server;

static void hddClientRead(hddClient *client);
static void hddClientWriteNext(hddClient *client);


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
    g_clear_object(&client->cancel);
    g_byte_array_unref(client->inbuf);
    g_queue_clear_full(&client->outq, (GDestroyNotify)g_bytes_unref);
    g_free(client);
}


static void
hddClientClose(hddClient *client)
{
    if (client->closed)
        return;
    client->closed = TRUE;
    g_debug("client %u (pid %d) disconnected", client->serial, (int)client->pid);
    g_cancellable_cancel(client->cancel);
    g_io_stream_close(G_IO_STREAM(client->conn), NULL, NULL);
    server.clients = g_list_remove(server.clients, client);
    hddClientUnref(client);
}


static void
hddClientWriteDone(GObject *source, GAsyncResult *res, gpointer opaque)
{
    hddClient *client = opaque;
    g_autoptr(GError) error = NULL;

    client->writing = FALSE;
    if (!g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), res, NULL, &error)) {
        g_debug("client %u: %s", client->serial, error->message);
        hddClientClose(client);
    } else {
        g_bytes_unref(g_queue_pop_head(&client->outq));
        hddClientWriteNext(client);
    }
    hddClientUnref(client);
}


static void
hddClientWriteNext(hddClient *client)
{
    GBytes *head;
    GOutputStream *out;

    if (client->closed || client->writing)
        return;
    if (!(head = g_queue_peek_head(&client->outq))) {
        /* Closing with unread input would reset the connection and could
         * lose the last reply: end our side, and drain theirs. */
        if (client->close_after_flush)
            g_socket_shutdown(g_socket_connection_get_socket(client->conn), FALSE, TRUE, NULL);
        return;
    }
    client->writing = TRUE;
    out = g_io_stream_get_output_stream(G_IO_STREAM(client->conn));
    g_output_stream_write_all_async(out, g_bytes_get_data(head, NULL), g_bytes_get_size(head),
                                    G_PRIORITY_DEFAULT, client->cancel, hddClientWriteDone,
                                    hddClientRef(client));
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
        server.flush_id = g_idle_add_full(G_PRIORITY_HIGH_IDLE, hddFlush, NULL, NULL);
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


static void
hddClientReadDone(GObject *source, GAsyncResult *res, gpointer opaque)
{
    hddClient *client = opaque;
    g_autoptr(GError) error = NULL;
    gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), res, &error);
    guint8 *nl;

    if (client->closed) {
        hddClientUnref(client);
        return;
    }
    if (n <= 0) {
        if (n < 0)
            g_debug("client %u: %s", client->serial, error->message);
        hddClientClose(client);
        hddClientUnref(client);
        return;
    }
    if (client->close_after_flush) {
        /* Draining after a fatal error; a client that never stops
         * sending is cut off. */
        client->drained += n;
        if (client->drained > HDD_MAX_DRAIN)
            hddClientClose(client);
        else
            hddClientRead(client);
        hddClientUnref(client);
        return;
    }
    g_byte_array_append(client->inbuf, client->chunk, n);
    while (!client->close_after_flush &&
           (nl = memchr(client->inbuf->data, '\n', client->inbuf->len))) {
        gsize len = nl - client->inbuf->data;

        if (len > HDD_MAX_REQUEST_SIZE)
            break;
        if (len > 0 && !(len == 1 && client->inbuf->data[0] == '\r'))
            hddClientRequest(client, (const char *)client->inbuf->data, len);
        g_byte_array_remove_range(client->inbuf, 0, len + 1);
    }
    if (client->inbuf->len > HDD_MAX_REQUEST_SIZE) {
        g_autofree char *msg = g_strdup_printf(_("request larger than %1$u bytes"),
                                               (unsigned int)HDD_MAX_REQUEST_SIZE);

        g_warning(_("client %1$u (pid %2$d): %3$s"), client->serial, (int)client->pid, msg);
        hddSend(client, hddErrorReplyClass("LimitExceeded", msg, NULL));
        client->close_after_flush = TRUE;
        g_byte_array_set_size(client->inbuf, 0);
    }
    hddClientRead(client);
    hddClientUnref(client);
}


static void
hddClientRead(hddClient *client)
{
    GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(client->conn));

    g_input_stream_read_async(in, client->chunk, sizeof(client->chunk), G_PRIORITY_DEFAULT,
                              client->cancel, hddClientReadDone, hddClientRef(client));
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


static gboolean
hddIncoming(GSocketService *service, GSocketConnection *conn, GObject *source,
            gpointer opaque)
{
    hddDaemon *dmn = opaque;
    GSocket *sock = g_socket_connection_get_socket(conn);
    struct ucred cred = { 0 };
    socklen_t len = sizeof(cred);
    gboolean allowed;
    hddClient *client;

    /* Step 1: who is it?  Checked on every connection, before the greeting. */
    if (getsockopt(g_socket_get_fd(sock), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        g_warning(_("cannot read the credentials of a client: %1$s"), g_strerror(errno));
        return TRUE;
    }
    allowed = cred.uid == 0 ||
              (dmn->config->group &&
               (cred.gid == dmn->config->gid || hddPidInGroup(cred.pid, dmn->config->gid)));

    client = g_new0(hddClient, 1);
    client->refs = 1;
    client->serial = ++server.serial;
    client->dmn = dmn;
    client->conn = g_object_ref(conn);
    client->cancel = g_cancellable_new();
    client->inbuf = g_byte_array_new();
    client->pid = cred.pid;
    client->uid = cred.uid;
    server.clients = g_list_prepend(server.clients, client);

    if (!allowed) {
        g_autofree char *msg = g_strdup_printf(_("uid %1$u is not allowed to use hostdevd"),
                                               (unsigned int)cred.uid);

        g_warning(_("refused client pid %1$d: %2$s"), (int)cred.pid, msg);
        hddSend(client, hddErrorReplyClass("PermissionDenied", msg, NULL));
        client->close_after_flush = TRUE;
        hddClientRead(client);
        return TRUE;
    }
    g_debug("client %u: pid %d uid %u", client->serial, (int)cred.pid, (unsigned)cred.uid);

    /* Step 2: greeting, QMP style. */
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


void
hddServerStop(void)
{
    hddOutgoing *out;

    if (server.service) {
        g_socket_service_stop(server.service);
        g_socket_listener_close(G_SOCKET_LISTENER(server.service));
        g_clear_object(&server.service);
        unlink(server.dmn->config->socket_path);
    }
    while (server.clients)
        hddClientClose(server.clients->data);
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
