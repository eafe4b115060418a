/*
 * qmptest.c: a scripted QMP server on a socketpair
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmptest.h"

struct _qmptestPeer {
    int fd;
    GThread *thread;
    char *greeting;
    qmptestFunc func;
    gpointer opaque;
    GMutex lock;
    GPtrArray *commands;
};


void
qmptestPeerWrite(qmptestPeer *peer, const char *data, gsize len)
{
    gsize done = 0;

    while (done < len) {
        ssize_t n = send(peer->fd, data + done, len - done, MSG_NOSIGNAL);

        if (n <= 0)
            return;
        done += n;
    }
}


char *
qmptestReturn(const char *id, const char *ret_json)
{
    return g_strdup_printf("{\"return\": %s, \"id\": \"%s\"}\r\n", ret_json, id);
}


static gboolean
qmptestPeerHandle(qmptestPeer *peer, const char *line)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *cmd;
    JsonNode *args;
    const char *name;
    const char *id;
    char *out;

    g_assert_true(json_parser_load_from_data(parser, line, -1, NULL));
    cmd = json_node_get_object(json_parser_get_root(parser));
    name = json_object_get_string_member(cmd, "execute");
    id = json_object_get_string_member_with_default(cmd, "id", "");
    args = json_object_get_member(cmd, "arguments");
    g_mutex_lock(&peer->lock);
    g_ptr_array_add(peer->commands, g_strdup(name));
    g_mutex_unlock(&peer->lock);

    if (g_str_equal(name, "qmp_capabilities"))
        out = qmptestReturn(id, "{}");
    else
        out = peer->func(peer, name, id, args ? json_node_get_object(args) : NULL,
                         peer->opaque);
    if (out == QMPTEST_CLOSE) {
        shutdown(peer->fd, SHUT_RDWR);
        return FALSE;
    }
    if (out)
        qmptestPeerWrite(peer, out, strlen(out));
    g_free(out);
    return TRUE;
}


static gpointer
qmptestPeerRun(gpointer opaque)
{
    qmptestPeer *peer = opaque;
    g_autoptr(GString) buf = g_string_new(NULL);
    char chunk[4096];
    ssize_t got;

    if (peer->greeting)
        qmptestPeerWrite(peer, peer->greeting, strlen(peer->greeting));
    while ((got = read(peer->fd, chunk, sizeof(chunk))) > 0) {
        char *nl;

        g_string_append_len(buf, chunk, got);
        while ((nl = memchr(buf->str, '\n', buf->len))) {
            g_autofree char *line = g_strndup(buf->str, nl - buf->str);

            g_string_erase(buf, 0, nl - buf->str + 1);
            if (!qmptestPeerHandle(peer, line))
                return NULL;
        }
    }
    return NULL;
}


qmptestPeer *
qmptestPeerStart(const char *greeting, qmptestFunc func, gpointer opaque, int *client_fd)
{
    qmptestPeer *peer = g_new0(qmptestPeer, 1);
    int fds[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    peer->fd = fds[1];
    *client_fd = fds[0];
    peer->greeting = g_strdup(greeting);
    peer->func = func;
    peer->opaque = opaque;
    peer->commands = g_ptr_array_new_with_free_func(g_free);
    g_mutex_init(&peer->lock);
    peer->thread = g_thread_new("qmp-peer", qmptestPeerRun, peer);
    return peer;
}


void
qmptestPeerStop(qmptestPeer *peer)
{
    shutdown(peer->fd, SHUT_RDWR);
    g_thread_join(peer->thread);
    close(peer->fd);
    g_ptr_array_unref(peer->commands);
    g_mutex_clear(&peer->lock);
    g_free(peer->greeting);
    g_free(peer);
}


GPtrArray *
qmptestPeerCommands(qmptestPeer *peer)
{
    GPtrArray *copy = g_ptr_array_new_with_free_func(g_free);
    guint i;

    g_mutex_lock(&peer->lock);
    for (i = 0; i < peer->commands->len; i++)
        g_ptr_array_add(copy, g_strdup(g_ptr_array_index(peer->commands, i)));
    g_mutex_unlock(&peer->lock);
    return copy;
}
