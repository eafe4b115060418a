/*
 * test-qmp.c: the QMP client against a scripted server
 *
 * Protocol conformance (greeting, negotiation, ids, errors, events) and a
 * monitor that misbehaves: garbage, truncated JSON, oversize messages,
 * unknown events, silence, a disconnect in the middle of a command.  Also
 * the release-signal decision.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hostdev/error.h"
#include "hostdev/qemu.h"
#include "hdqemu-priv.h"
#include "qmptest.h"

typedef struct {
    qmptestPeer *peer;
    hdQmp *qmp;
    GMainContext *ctx;
} Fixture;


static void
fixtureStart(Fixture *f, const char *greeting, qmptestFunc func, gpointer opaque)
{
    int fd;

    f->ctx = g_main_context_new();
    f->peer = qmptestPeerStart(greeting, func, opaque, &fd);
    f->qmp = hdQmpNewFromFd(fd, f->ctx);
}


static void
fixtureStartNegotiated(Fixture *f, qmptestFunc func, gpointer opaque)
{
    g_autoptr(GError) error = NULL;

    fixtureStart(f, QMPTEST_GREETING, func, opaque);
    g_assert_true(hdQmpNegotiate(f->qmp, 5000, &error));
    g_assert_no_error(error);
}


static void
fixtureStop(Fixture *f)
{
    g_clear_pointer(&f->qmp, hdQmpUnref);
    g_clear_pointer(&f->peer, qmptestPeerStop);
    g_clear_pointer(&f->ctx, g_main_context_unref);
}


/* The server's scripts, by command name. */
static char *
peerScript(qmptestPeer *peer, const char *name, const char *id, JsonObject *args,
           gpointer opaque)
{
    if (g_str_equal(name, "query-status"))
        return qmptestReturn(id, "{\"status\": \"paused\", \"running\": false}");
    if (g_str_equal(name, "echo")) {
        g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), args);
        g_autofree char *text = json_to_string(node, FALSE);

        return qmptestReturn(id, text);
    }
    if (g_str_equal(name, "no-such"))
        return g_strdup_printf("{\"id\": \"%s\", \"error\": {\"class\": \"CommandNotFound\", "
                               "\"desc\": \"The command no-such has not been found\"}}\n", id);
    if (g_str_equal(name, "fails"))
        return g_strdup_printf("{\"id\": \"%s\", \"error\": {\"class\": \"GenericError\", "
                               "\"desc\": \"it broke\"}}\n", id);
    if (g_str_equal(name, "idless"))
        return g_strdup("{\"error\": {\"class\": \"GenericError\", "
                        "\"desc\": \"JSON parse error\"}}\n");
    if (g_str_equal(name, "events-first")) {
        g_autofree char *ret = qmptestReturn(id, "{}");

        return g_strdup_printf(
            "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"NO_SUCH_EVENT\","
            " \"data\": {\"weird\": [1, {\"x\": null}]}}\r\n"
            "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}, \"event\": \"STOP\"}\r\n"
            "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 4}, \"event\": \"DEVICE_DELETED\","
            " \"data\": {\"device\": \"hostdev0\", \"path\": \"/machine/peripheral/hostdev0\"}}"
            "\r\n%s", ret);
    }
    if (g_str_equal(name, "hang"))
        return NULL;
    if (g_str_equal(name, "garbage"))
        return g_strdup("this is not JSON at all\n");
    if (g_str_equal(name, "not-object"))
        return g_strdup("[1, 2, 3]\n");
    if (g_str_equal(name, "strange-types"))
        return g_strdup_printf("{\"id\": \"%s\", \"error\": 42}\n", id);
    if (g_str_equal(name, "truncated"))
        return g_strdup("{\"return\": {\"status\": \"runn");
    if (g_str_equal(name, "truncated-close")) {
        qmptestPeerWrite(peer, "{\"return\": {\"sta", 16);
        return QMPTEST_CLOSE;
    }
    if (g_str_equal(name, "close"))
        return QMPTEST_CLOSE;
    if (g_str_equal(name, "big")) {
        /* 2 MiB: big, but under the cap. */
        g_autoptr(GString) out = g_string_new("{\"return\": {\"blob\": \"");

        while (out->len < 2 * 1024 * 1024)
            g_string_append(out, "0123456789abcdef");
        g_string_append_printf(out, "\"}, \"id\": \"%s\"}\n", id);
        return g_string_free(g_steal_pointer(&out), FALSE);
    }
    if (g_str_equal(name, "huge")) {
        /* Over 16 MiB without a newline: never a valid reply. */
        gsize len = HD_QMP_MAX_MESSAGE_SIZE + 4096;
        char *out = g_malloc(len + 1);

        memset(out, ' ', len);
        memcpy(out, "{\"return\": \"", 12);
        out[len] = '\0';
        return out;
    }
    return qmptestReturn(id, "{}");
}


static void
testNegotiate(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = NULL;
    unsigned int major, minor, micro;

    fixtureStartNegotiated(&f, peerScript, NULL);
    g_assert_true(hdQmpGetGreetingVersion(f.qmp, &major, &minor, &micro));
    g_assert_cmpuint(major, ==, 9);
    g_assert_cmpuint(minor, ==, 1);
    g_assert_cmpuint(micro, ==, 0);

    ret = hdQmpCommand(f.qmp, "query-status", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(json_object_get_string_member(json_node_get_object(ret), "status"), ==,
                    "paused");
    g_assert_true(hdQmpIsOpen(f.qmp));
    fixtureStop(&f);
}


static void
testArguments(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = NULL;
    g_autoptr(JsonNode) args = json_from_string("{\"id\": \"hostdev0\", \"n\": 3}", NULL);
    g_autoptr(JsonNode) bad = json_from_string("[1]", NULL);

    fixtureStartNegotiated(&f, peerScript, NULL);
    ret = hdQmpCommand(f.qmp, "echo", args, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    g_assert_true(json_node_equal(ret, args));

    /* Arguments are an object or nothing. */
    g_assert_null(hdQmpCommand(f.qmp, "echo", bad, NULL, 0, 5000, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
    fixtureStop(&f);
}


static void
testErrors(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = NULL;

    fixtureStartNegotiated(&f, peerScript, NULL);
    g_assert_null(hdQmpCommand(f.qmp, "no-such", NULL, NULL, 0, 5000, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "CommandNotFound"));
    g_assert_nonnull(strstr(error->message, "no-such"));
    g_clear_error(&error);

    g_assert_null(hdQmpCommand(f.qmp, "fails", NULL, NULL, 0, 5000, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_assert_nonnull(strstr(error->message, "it broke"));
    g_clear_error(&error);

    /* An error without id answers the oldest command. */
    g_assert_null(hdQmpCommand(f.qmp, "idless", NULL, NULL, 0, 5000, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_clear_error(&error);

    /* The monitor is still fine. */
    ret = hdQmpCommand(f.qmp, "query-status", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    fixtureStop(&f);
}


typedef struct {
    guint all;
    guint deleted;
    char *device;
} EventCount;


static void
onAnyEvent(hdQmp *qmp, const char *event, JsonObject *data, gpointer opaque)
{
    ((EventCount *)opaque)->all++;
}


static void
onDeleted(hdQmp *qmp, const char *event, JsonObject *data, gpointer opaque)
{
    EventCount *count = opaque;

    g_assert_cmpstr(event, ==, "DEVICE_DELETED");
    count->deleted++;
    g_free(count->device);
    count->device = g_strdup(json_object_get_string_member(data, "device"));
}


static void
testEvents(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = NULL;
    g_autoptr(JsonNode) again = NULL;
    EventCount count = { 0 };
    guint any;

    fixtureStartNegotiated(&f, peerScript, NULL);
    any = hdQmpAddEventHandler(f.qmp, NULL, onAnyEvent, &count);
    hdQmpAddEventHandler(f.qmp, "DEVICE_DELETED", onDeleted, &count);

    /* Events before the reply, one unknown, one without data. */
    ret = hdQmpCommand(f.qmp, "events-first", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(count.all, ==, 3);
    g_assert_cmpuint(count.deleted, ==, 1);
    g_assert_cmpstr(count.device, ==, "hostdev0");

    hdQmpRemoveEventHandler(f.qmp, any);
    again = hdQmpCommand(f.qmp, "events-first", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(count.all, ==, 3);
    g_assert_cmpuint(count.deleted, ==, 2);
    g_free(count.device);
    fixtureStop(&f);
}


static void
testTimeout(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = NULL;
    g_autofree char *late = NULL;

    fixtureStartNegotiated(&f, peerScript, NULL);
    g_assert_null(hdQmpCommand(f.qmp, "hang", NULL, NULL, 0, 50, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_TIMEOUT);
    g_assert_nonnull(strstr(error->message, "hang"));
    g_clear_error(&error);

    /* The late answer has an id nobody waits for: dropped. */
    late = qmptestReturn("hd-2", "{\"late\": true}");
    qmptestPeerWrite(f.peer, late, strlen(late));
    ret = hdQmpCommand(f.qmp, "query-status", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    g_assert_true(json_object_has_member(json_node_get_object(ret), "status"));
    fixtureStop(&f);
}


typedef struct {
    guint calls;
    GError *reason;
} Closed;


static void
onClosed(hdQmp *qmp, const GError *reason, gpointer opaque)
{
    Closed *closed = opaque;

    closed->calls++;
    g_clear_error(&closed->reason);
    closed->reason = g_error_copy(reason);
}


/* @command makes the monitor unusable: the command fails with a message
 * containing @expect, the closed function runs once, later commands fail
 * at once with the same reason. */
static void
checkMonitorBreaks(const char *command, const char *expect)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) later = NULL;
    Closed closed = { 0 };

    fixtureStartNegotiated(&f, peerScript, NULL);
    hdQmpSetClosedFunc(f.qmp, onClosed, &closed);
    g_assert_null(hdQmpCommand(f.qmp, command, NULL, NULL, 0, 5000, &error));
    g_assert_nonnull(error);
    if (!strstr(error->message, expect))
        g_error("'%s': expected '%s' in '%s'", command, expect, error->message);
    g_assert_false(hdQmpIsOpen(f.qmp));
    g_assert_cmpuint(closed.calls, ==, 1);
    g_assert_cmpstr(closed.reason->message, ==, error->message);

    g_assert_null(hdQmpCommand(f.qmp, "query-status", NULL, NULL, 0, 5000, &later));
    g_assert_cmpstr(later->message, ==, error->message);
    g_assert_cmpuint(closed.calls, ==, 1);
    g_clear_error(&closed.reason);
    fixtureStop(&f);
}


static void
testGarbage(void)
{
    checkMonitorBreaks("garbage", "invalid message");
    checkMonitorBreaks("not-object", "not a JSON object");
    checkMonitorBreaks("strange-types", "malformed error reply");
}


static void
testTruncated(void)
{
    /* Half a message, then silence: the command times out, the monitor
     * stays open (the rest may still come). */
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;

    fixtureStartNegotiated(&f, peerScript, NULL);
    g_assert_null(hdQmpCommand(f.qmp, "truncated", NULL, NULL, 0, 50, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_TIMEOUT);
    fixtureStop(&f);

    /* Half a message, then the end: the monitor is closed. */
    checkMonitorBreaks("truncated-close", "in the middle of a message");
}


static void
testDisconnect(void)
{
    checkMonitorBreaks("close", "closed the connection");
}


static void
testHuge(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = NULL;

    fixtureStartNegotiated(&f, peerScript, NULL);
    ret = hdQmpCommand(f.qmp, "big", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(strlen(json_object_get_string_member(json_node_get_object(ret), "blob")),
                     >=, 2 * 1024 * 1024 - 32);
    fixtureStop(&f);

    checkMonitorBreaks("huge", "more than 16777216 bytes");
}


/* What a connection keeps allocated for its input: about what it was
 * sent, and not the buffer of a large message once that went through
 * (hostdevd keeps a monitor connected to each domain's QEMU). */
static void
testInputBuffer(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) small = NULL;
    g_autoptr(JsonNode) big = NULL;
    g_autoptr(JsonNode) after = NULL;

    fixtureStartNegotiated(&f, peerScript, NULL);
    small = hdQmpCommand(f.qmp, "query-status", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(hdQmpGetInputAllocated(f.qmp), <=, 4096);

    big = hdQmpCommand(f.qmp, "big", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    after = hdQmpCommand(f.qmp, "query-status", NULL, NULL, 0, 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(hdQmpGetInputAllocated(f.qmp), <=, 64 * 1024);
    fixtureStop(&f);
}


static void
testSmallCap(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;

    /* A whole line over the cap is refused too, not only a partial one. */
    fixtureStartNegotiated(&f, peerScript, NULL);
    hdQmpSetMaxMessageSize(f.qmp, 1024);
    g_assert_null(hdQmpCommand(f.qmp, "big", NULL, NULL, 0, 5000, &error));
    g_assert_nonnull(strstr(error->message, "more than 1024 bytes"));
    fixtureStop(&f);
}


static void
testNoGreeting(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;

    /* Silence. */
    fixtureStart(&f, NULL, peerScript, NULL);
    g_assert_false(hdQmpNegotiate(f.qmp, 50, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_TIMEOUT);
    fixtureStop(&f);
    g_clear_error(&error);

    /* Something else first. */
    fixtureStart(&f, "{\"return\": {}}\n", peerScript, NULL);
    g_assert_false(hdQmpNegotiate(f.qmp, 5000, &error));
    g_assert_nonnull(strstr(error->message, "no greeting"));
    fixtureStop(&f);
    g_clear_error(&error);

    /* A greeting that is not one. */
    fixtureStart(&f, "{\"QMP\": 5}\n", peerScript, NULL);
    g_assert_false(hdQmpNegotiate(f.qmp, 5000, &error));
    g_assert_nonnull(strstr(error->message, "unexpected greeting"));
    fixtureStop(&f);
}


static void
onReplyCounted(hdQmp *qmp, JsonNode *ret, const GError *error, gpointer opaque)
{
    GError **out = opaque;

    g_assert_null(ret);
    *out = g_error_copy(error);
}


static void
testUnrefPending(void)
{
    Fixture f = { 0 };
    GError *error = NULL;

    /* Dropping the monitor answers what is pending. */
    fixtureStartNegotiated(&f, peerScript, NULL);
    hdQmpCommandAsync(f.qmp, "hang", NULL, NULL, 0, 5000, onReplyCounted, &error);
    g_clear_pointer(&f.qmp, hdQmpUnref);
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "closed by hostdev"));
    g_error_free(error);
    fixtureStop(&f);
}


static char *
peerOldQemu(qmptestPeer *peer, const char *name, const char *id, JsonObject *args,
            gpointer opaque)
{
    if (g_str_equal(name, "query-version"))
        return qmptestReturn(id, "{\"qemu\": {\"major\": 2, \"minor\": 4, \"micro\": 1}, "
                                 "\"package\": \"old\"}");
    if (g_str_equal(name, "query-qmp-schema"))
        return g_strdup_printf("{\"id\": \"%s\", \"error\": {\"class\": \"CommandNotFound\", "
                               "\"desc\": \"no schema\"}}\n", id);
    if (g_str_equal(name, "query-events"))
        return qmptestReturn(id, "[{\"name\": \"SHUTDOWN\"}, {\"name\": \"DEVICE_DELETED\"}]");
    return qmptestReturn(id, "{}");
}


static char *
peerNewQemu(qmptestPeer *peer, const char *name, const char *id, JsonObject *args,
            gpointer opaque)
{
    if (g_str_equal(name, "query-version"))
        return qmptestReturn(id, "{\"qemu\": {\"major\": 9, \"minor\": 1, \"micro\": 0}, "
                                 "\"package\": \"\"}");
    if (g_str_equal(name, "query-qmp-schema"))
        return qmptestReturn(id, "[{\"name\": \"query-status\", \"meta-type\": \"command\"},"
                                 " {\"name\": \"DEVICE_DELETED\", \"meta-type\": \"event\"},"
                                 " {\"name\": \"VFIO_GROUP_RELEASED\", \"meta-type\": \"event\"},"
                                 " {\"name\": 7}, 5]");
    return qmptestReturn(id, "{}");
}


static void
testProbe(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    const hdQemuCaps *caps;

    /* Before query-qmp-schema: query-events, and the /proc fallback. */
    fixtureStartNegotiated(&f, peerOldQemu, NULL);
    caps = hdQemuProbe(f.qmp, NULL, 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(caps->major, ==, 2);
    g_assert_cmpuint(caps->minor, ==, 4);
    g_assert_false(caps->events_from_schema);
    g_assert_true(g_hash_table_contains(caps->events, "DEVICE_DELETED"));
    g_assert_cmpint(caps->release_signal, ==, HD_RELEASE_SIGNAL_PROC);
    g_assert_null(caps->release_event);
    g_assert_true(hdQmpGetCaps(f.qmp) == caps);
    fixtureStop(&f);

    /* A QEMU advertising the finalize event. */
    fixtureStartNegotiated(&f, peerNewQemu, NULL);
    caps = hdQemuProbe(f.qmp, NULL, 5000, &error);
    g_assert_no_error(error);
    g_assert_true(caps->events_from_schema);
    g_assert_false(g_hash_table_contains(caps->events, "query-status"));
    g_assert_cmpint(caps->release_signal, ==, HD_RELEASE_SIGNAL_FINALIZE_EVENT);
    g_assert_cmpstr(caps->release_event, ==, "VFIO_GROUP_RELEASED");

    /* Configured away: DEVICE_DELETED. */
    caps = hdQemuProbe(f.qmp, "", 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpint(caps->release_signal, ==, HD_RELEASE_SIGNAL_DEVICE_DELETED);
    g_assert_cmpstr(caps->release_event, ==, "DEVICE_DELETED");
    fixtureStop(&f);
}


/* qom-list of /machine/peripheral: @opaque says how the answer looks. */
static char *
peerPeripheral(qmptestPeer *peer, const char *name, const char *id, JsonObject *args,
               gpointer opaque)
{
    if (!g_str_equal(name, "qom-list") || !args ||
        g_strcmp0(json_object_get_string_member_with_default(args, "path", NULL),
                  "/machine/peripheral") != 0)
        return g_strdup_printf("{\"id\": \"%s\", \"error\": {\"class\": \"GenericError\", "
                               "\"desc\": \"unexpected\"}}\n", id);
    if (g_str_equal(opaque, "list"))
        return qmptestReturn(id, "[{\"name\": \"type\", \"type\": \"string\"},"
                                 " {\"name\": \"hostdev0\", \"type\": \"child<vfio-pci>\"},"
                                 " {\"name\": \"net0\", \"type\": \"child<virtio-net-pci>\"},"
                                 " {\"name\": 5}, 7]");
    return qmptestReturn(id, "{\"not\": \"a list\"}");
}


/* The devices QEMU still has: the children of /machine/peripheral, not
 * its properties, whatever else the answer holds. */
static void
testListDevices(void)
{
    Fixture f = { 0 };
    g_autoptr(GError) error = NULL;
    g_autoptr(GHashTable) ids = NULL;

    fixtureStartNegotiated(&f, peerPeripheral, "list");
    ids = hdQemuListDevices(f.qmp, 5000, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(g_hash_table_size(ids), ==, 2);
    g_assert_true(g_hash_table_contains(ids, "hostdev0"));
    g_assert_true(g_hash_table_contains(ids, "net0"));
    fixtureStop(&f);

    fixtureStartNegotiated(&f, peerPeripheral, "object");
    g_assert_null(hdQemuListDevices(f.qmp, 5000, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_assert_nonnull(strstr(error->message, "not a list"));
    fixtureStop(&f);
}


static void
testChooseSignal(void)
{
    g_autoptr(GHashTable) events = g_hash_table_new(g_str_hash, g_str_equal);
    g_autofree char *reason = NULL;

    g_hash_table_add(events, (gpointer)"DEVICE_DELETED");
    g_assert_cmpint(hdQemuChooseReleaseSignal(2, 10, events, NULL, NULL), ==,
                    HD_RELEASE_SIGNAL_PROC);
    g_assert_cmpint(hdQemuChooseReleaseSignal(1, 99, events, NULL, NULL), ==,
                    HD_RELEASE_SIGNAL_PROC);
    g_assert_cmpint(hdQemuChooseReleaseSignal(2, 11, events, NULL, NULL), ==,
                    HD_RELEASE_SIGNAL_DEVICE_DELETED);
    g_assert_cmpint(hdQemuChooseReleaseSignal(3, 0, events, "GROUP_RELEASED", NULL), ==,
                    HD_RELEASE_SIGNAL_DEVICE_DELETED);
    g_hash_table_add(events, (gpointer)"GROUP_RELEASED");
    /* The dedicated event wins, whatever the version. */
    g_assert_cmpint(hdQemuChooseReleaseSignal(2, 10, events, "GROUP_RELEASED", &reason), ==,
                    HD_RELEASE_SIGNAL_FINALIZE_EVENT);
    g_assert_nonnull(strstr(reason, "GROUP_RELEASED"));
    g_assert_cmpstr(hdReleaseSignalToString(HD_RELEASE_SIGNAL_PROC), ==, "proc");
}


/* The peer of a QMP socket: whoever listens there, asked without a word. */
static void
testSocketPeerPid(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *dir = g_dir_make_tmp("hdqmp-XXXXXX", &error);
    g_autofree char *path = g_build_filename(dir, "qmp.sock", NULL);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_no_error(error);
    g_assert_cmpint(hdQmpSocketPeerPid(path, &error), ==, 0);
    g_assert_error(error, HD_SYSTEM_ERROR, ENOENT);
    g_clear_error(&error);

    g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    g_assert_cmpint(listen(fd, 1), ==, 0);
    g_assert_cmpint(hdQmpSocketPeerPid(path, &error), ==, getpid());
    g_assert_no_error(error);

    close(fd);
    unlink(path);
    rmdir(dir);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/qmp/negotiate", testNegotiate);
    g_test_add_func("/qmp/socket-peer-pid", testSocketPeerPid);
    g_test_add_func("/qmp/list-devices", testListDevices);
    g_test_add_func("/qmp/arguments", testArguments);
    g_test_add_func("/qmp/errors", testErrors);
    g_test_add_func("/qmp/events", testEvents);
    g_test_add_func("/qmp/timeout-and-late-reply", testTimeout);
    g_test_add_func("/qmp/garbage", testGarbage);
    g_test_add_func("/qmp/truncated", testTruncated);
    g_test_add_func("/qmp/disconnect-mid-command", testDisconnect);
    g_test_add_func("/qmp/huge-message", testHuge);
    g_test_add_func("/qmp/input-buffer", testInputBuffer);
    g_test_add_func("/qmp/small-cap", testSmallCap);
    g_test_add_func("/qmp/no-greeting", testNoGreeting);
    g_test_add_func("/qmp/unref-pending", testUnrefPending);
    g_test_add_func("/qmp/probe", testProbe);
    g_test_add_func("/qmp/choose-signal", testChooseSignal);
    return g_test_run();
}
