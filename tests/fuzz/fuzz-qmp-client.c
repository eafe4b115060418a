/*
 * fuzz-qmp-client.c: what the QMP client reads from a QEMU monitor
 *
 * The input is everything a monitor sends, as one byte stream: greeting,
 * replies, events, garbage.  The client negotiates and probes QEMU's
 * capabilities (query-version, query-qmp-schema, query-events: ids hd-1 to
 * hd-4, so seeds can answer them) while every event goes to a handler.
 * The peer then closes; the client must end closed, with every command
 * answered, whatever it read.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "hostdev/qemu.h"

/* A monitor stream larger than a socket buffer would block the writer;
 * longer inputs add nothing the size cap test does not cover. */
#define FUZZ_QMP_MAX_INPUT (64 * 1024)


static void
fuzzOnEvent(hdQmp *qmp, const char *event, JsonObject *data, gpointer opaque)
{
    guint *events = opaque;

    g_assert_nonnull(event);
    if (data)
        json_object_get_size(data);
    (*events)++;
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzzQuietLogs();
    /* The client may write to a monitor that already went away. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(hdQmp) qmp = NULL;
    g_autoptr(GError) error = NULL;
    guint events = 0;
    int bufsize = 4 * FUZZ_QMP_MAX_INPUT;
    int fds[2];
    size_t done = 0;

    if (size > FUZZ_QMP_MAX_INPUT)
        return 0;
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
    while (done < size) {
        ssize_t n = write(fds[1], data + done, size - done);

        g_assert_cmpint(n, >, 0);
        done += n;
    }
    /* End of the stream; fds[1] stays open so the client's writes succeed. */
    shutdown(fds[1], SHUT_WR);

    qmp = hdQmpNewFromFd(fds[0], ctx);
    hdQmpSetMaxMessageSize(qmp, 16 * 1024);
    hdQmpAddEventHandler(qmp, NULL, fuzzOnEvent, &events);
    if (hdQmpNegotiate(qmp, 5000, &error)) {
        const hdQemuCaps *caps = hdQemuProbe(qmp, NULL, 5000, NULL);

        if (caps)
            g_assert_nonnull(hdReleaseSignalToString(caps->release_signal));
    } else {
        g_assert_nonnull(error);
    }
    /* Whatever was read, the stream ended: the client must notice. */
    while (hdQmpIsOpen(qmp) && g_main_context_iteration(ctx, TRUE))
        ;
    g_assert_false(hdQmpIsOpen(qmp));
    close(fds[1]);
    return 0;
}
