/*
 * test-qemu.c: the QMP client and release detection against real QEMU
 *
 * qemu-system-x86_64 (TCG, paused, no guest OS): protocol conformance, a
 * real DEVICE_DELETED (a device hot-plugged into an empty PCIe root port,
 * whose slot is powered off, is deleted at once by device_del), a
 * cold-plugged device whose unplug waits for the guest (still listed, a
 * second device_del refused), and real
 * holders: a simulated /dev/vfio/N (a plain file without the simulated
 * host) passed to QEMU with add-fd and dropped with remove-fd, or QEMU
 * killed while it holds it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hdtest-sim.h"
#include "hostdev/error.h"
#include "hostdev/pci.h"
#include "hostdev/qemu.h"
#include "hostdev/release.h"

#define NIC "0000:00:19.0"        /* e1000e, group 3, in the "small" topology */
#define NIC_GROUP 3

static char *qemuBinary;
static const char *simReason;

typedef struct {
    char *dir;
    char *socket;
    GPid pid;
    GMainContext *ctx;
    hdQmp *qmp;
    hdSimHost *sim;
    hdHost *host;
    char *holder_path;           /* what QEMU will hold */
} Fixture;


static void
qemuChildSetup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}


static void
fixtureSetUp(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *qmp_arg = NULL;
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

    f->dir = g_dir_make_tmp("hdqemu-XXXXXX", &error);
    g_assert_no_error(error);
    f->socket = g_build_filename(f->dir, "qmp.sock", NULL);
    f->ctx = g_main_context_new();
    qmp_arg = g_strdup_printf("unix:%s,server=on,wait=off", f->socket);
    {
        const char *argv[] = {
            qemuBinary, "-machine", "q35", "-accel", "tcg",
            "-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
            "-S", "-nodefaults", "-display", "none", "-m", "64",
            "-device", "pcie-root-port,id=rp1,chassis=1,slot=1",
            /* Cold-plugged: its slot is powered, its unplug waits for a
             * guest that never comes. */
            "-device", "pcie-root-port,id=rp2,chassis=2,slot=2",
            "-device", "e1000e,id=cold0,bus=rp2",
            "-qmp", qmp_arg, NULL,
        };

        g_assert_true(g_spawn_async(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                    qemuChildSetup, NULL, &f->pid, &error));
        g_assert_no_error(error);
    }
    /* QEMU creates the socket once it is ready to accept. */
    while (!(f->qmp = hdQmpConnectUnix(f->socket, f->ctx, NULL))) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(20000);
    }
    g_assert_cmpint(hdQmpGetPeerPid(f->qmp), ==, f->pid);
    g_assert_true(hdQmpNegotiate(f->qmp, 10000, &error));
    g_assert_no_error(error);
}


static void
fixtureTearDown(Fixture *f, gconstpointer data)
{
    g_clear_pointer(&f->qmp, hdQmpUnref);
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    if (f->sim)
        g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
    g_clear_pointer(&f->host, hdHostUnref);
    g_clear_pointer(&f->sim, hdSimHostStop);
    if (f->holder_path && g_str_has_prefix(f->holder_path, f->dir))
        g_unlink(f->holder_path);
    g_unlink(f->socket);
    g_rmdir(f->dir);
    g_free(f->holder_path);
    g_free(f->socket);
    g_free(f->dir);
    g_main_context_unref(f->ctx);
}


static JsonNode *
command(Fixture *f, const char *name, const char *args_json)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) args = args_json ? json_from_string(args_json, &error) : NULL;
    JsonNode *ret;

    g_assert_no_error(error);
    ret = hdQmpCommand(f->qmp, name, args, NULL, 0, 10000, &error);
    g_assert_no_error(error);
    return ret;
}


typedef struct {
    GPtrArray *names;
    gboolean stopped;
} Seen;


static void
onEventName(hdQmp *qmp, const char *event, JsonObject *data, gpointer opaque)
{
    Seen *seen = opaque;

    g_ptr_array_add(seen->names, g_strdup(event));
    seen->stopped |= g_str_equal(event, "STOP");
}


static void
testProtocol(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) status = NULL;
    g_autoptr(JsonNode) ret = NULL;
    g_autoptr(JsonNode) noid = json_from_string("{}", NULL);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    Seen seen = { .names = names };
    const hdQemuCaps *caps;
    unsigned int major, minor, micro;

    /* The greeting and query-version agree; the schema has the events. */
    g_assert_true(hdQmpGetGreetingVersion(f->qmp, &major, &minor, &micro));
    caps = hdQemuProbe(f->qmp, NULL, 10000, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(caps->major, ==, major);
    g_assert_cmpuint(caps->minor, ==, minor);
    g_assert_cmpuint(caps->micro, ==, micro);
    g_assert_true(caps->events_from_schema);
    g_assert_true(g_hash_table_contains(caps->events, "DEVICE_DELETED"));
    g_assert_true(g_hash_table_contains(caps->events, "RESUME"));
    if (major > 2 || (major == 2 && minor >= 11))
        g_assert_cmpint(caps->release_signal, ==, HD_RELEASE_SIGNAL_DEVICE_DELETED);
    g_test_message("QEMU %u.%u.%u: %s", major, minor, micro, caps->reason);

    status = command(f, "query-status", NULL);
    g_assert_cmpstr(json_object_get_string_member(json_node_get_object(status), "status"), ==,
                    "prelaunch");

    /* Errors: an unknown command, a missing argument. */
    g_assert_null(hdQmpCommand(f->qmp, "no-such-command", NULL, NULL, 0, 10000, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "CommandNotFound"));
    g_clear_error(&error);
    g_assert_null(hdQmpCommand(f->qmp, "device_del", noid, NULL, 0, 10000, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_assert_nonnull(strstr(error->message, "GenericError"));
    g_clear_error(&error);

    /* Events: cont sends RESUME, stop sends STOP. */
    hdQmpAddEventHandler(f->qmp, NULL, onEventName, &seen);
    ret = command(f, "cont", NULL);
    g_clear_pointer(&ret, json_node_unref);
    ret = command(f, "stop", NULL);
    g_assert_true(hdQmpWaitUntil(f->qmp, &seen.stopped, 10000, &error));
    g_assert_no_error(error);
    g_assert_true(g_ptr_array_find_with_equal_func(names, "RESUME", g_str_equal, NULL));
}


typedef struct {
    const char *alias;
    gboolean deleted;
    char *path;
} Deleted;


static void
onDeleted(hdQmp *qmp, const char *event, JsonObject *data, gpointer opaque)
{
    Deleted *deleted = opaque;

    if (g_strcmp0(json_object_get_string_member_with_default(data, "device", NULL),
                  deleted->alias) != 0)
        return;
    deleted->deleted = TRUE;
    deleted->path = g_strdup(json_object_get_string_member_with_default(data, "path", NULL));
}


/* Whether QEMU lists @alias among its devices (hdQemuListDevices). */
static void
assertHasDevice(Fixture *f, const char *alias, gboolean has)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GHashTable) ids = hdQemuListDevices(f->qmp, 10000, &error);

    g_assert_no_error(error);
    g_assert_cmpint(g_hash_table_contains(ids, alias), ==, has);
}


/* device_add into the empty root port, then device_del: DEVICE_DELETED. */
static void
testDeviceDeleted(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) added = NULL;
    g_autoptr(JsonNode) deleted_ret = NULL;
    g_autoptr(JsonNode) again = json_from_string("{\"id\": \"nic0\"}", NULL);
    Deleted deleted = { .alias = "nic0" };
    gint64 start;

    added = command(f, "device_add", "{\"driver\": \"e1000e\", \"id\": \"nic0\", "
                                     "\"bus\": \"rp1\"}");
    assertHasDevice(f, "nic0", TRUE);
    hdQmpAddEventHandler(f->qmp, "DEVICE_DELETED", onDeleted, &deleted);
    start = g_get_monotonic_time();
    deleted_ret = command(f, "device_del", "{\"id\": \"nic0\"}");
    g_assert_true(hdQmpWaitUntil(f->qmp, &deleted.deleted, 10000, &error));
    g_assert_no_error(error);
    g_test_message("DEVICE_DELETED %.1f ms after device_del",
                   (g_get_monotonic_time() - start) / 1000.0);
    g_assert_cmpstr(deleted.path, ==, "/machine/peripheral/nic0");
    g_free(deleted.path);
    assertHasDevice(f, "nic0", FALSE);

    /* It is gone: deleting it again fails. */
    g_assert_null(hdQmpCommand(f->qmp, "device_del", again, NULL, 0, 10000, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
}


/* A cold-plugged device's unplug waits for the guest (here, for ever):
 * QEMU still has it, and refuses a second device_del meanwhile (QEMU
 * >= 6.1; its pending delete expires after 5 s of guest time, which a
 * paused guest never spends).  What a retried detach meets on a slow
 * guest. */
static void
testUnplugPending(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = NULL;
    g_autoptr(JsonNode) again = json_from_string("{\"id\": \"cold0\"}", NULL);
    Deleted deleted = { .alias = "cold0" };

    assertHasDevice(f, "cold0", TRUE);
    hdQmpAddEventHandler(f->qmp, "DEVICE_DELETED", onDeleted, &deleted);
    ret = command(f, "device_del", "{\"id\": \"cold0\"}");
    g_assert_false(hdQmpWaitUntil(f->qmp, &deleted.deleted, 500, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_TIMEOUT);
    g_clear_error(&error);
    assertHasDevice(f, "cold0", TRUE);

    g_assert_null(hdQmpCommand(f->qmp, "device_del", again, NULL, 0, 10000, &error));
    g_test_message("a second device_del: %s", error ? error->message : "accepted");
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_assert_nonnull(strstr(error->message, "already in the process of unplug"));
    assertHasDevice(f, "cold0", TRUE);
}


/* The file QEMU will hold: the simulated host's /dev/vfio/3 with the NIC
 * on vfio-pci, or, without the simulated host, a plain file. */
static void
holderPrepare(Fixture *f)
{
    g_autoptr(GError) error = NULL;

    if (!simReason) {
        hdPCIAddress addr;

        f->sim = hdSimHostStart("small", NULL, &error);
        g_assert_no_error(error);
        f->host = hdHostNew(hdSimHostRoot(f->sim));
        g_assert_true(hdPCIAddressParse(NIC, &addr, &error));
        g_assert_true(hdPCIDeviceBindDriver(f->host, &addr, "vfio-pci", &error));
        g_assert_no_error(error);
        f->holder_path = hdIOMMUGroupDevPath(f->host, NIC_GROUP);
    } else {
        g_test_message("no simulated host (%s): QEMU holds a plain file", simReason);
        f->holder_path = g_build_filename(f->dir, "vfio-3", NULL);
        g_assert_true(g_file_set_contents(f->holder_path, "", 0, NULL));
    }
}


/* Pass the file to QEMU (add-fd); returns the fd number in QEMU. */
static gint64
holderPass(Fixture *f)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) args = json_from_string("{\"fdset-id\": 1}", NULL);
    g_autoptr(JsonNode) ret = NULL;
    int fd = open(f->holder_path, O_RDWR | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    ret = hdQmpCommand(f->qmp, "add-fd", args, &fd, 1, 10000, &error);
    g_assert_no_error(error);
    /* Only QEMU holds it now. */
    close(fd);
    return json_object_get_int_member(json_node_get_object(ret), "fd");
}


static hdReleaseWatch *
holderWatch(Fixture *f)
{
    const char *paths[] = { f->holder_path, NULL };
    hdReleaseWatchOptions opts = { .pid = f->pid };
    g_autoptr(GError) error = NULL;
    hdReleaseWatch *watch = hdReleaseWatchNew(paths, &opts, f->ctx, NULL, NULL, &error);
    g_autofree char *holders = NULL;
    g_autofree char *expect = g_strdup_printf("pid %d (", (int)f->pid);

    g_assert_no_error(error);
    g_assert_false(hdReleaseWatchIsFree(watch));
    holders = hdReleaseWatchDescribeHolders(watch);
    g_assert_nonnull(strstr(holders, expect));
    return watch;
}


/* QEMU holds the group, then drops it (remove-fd; QEMU closes removed fds
 * only while running, so the guest runs for that moment). */
static void
testHolderRemoveFd(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(hdReleaseWatch) watch = NULL;
    g_autoptr(JsonNode) ret = NULL;
    g_autofree char *args = NULL;
    gint64 fd;

    holderPrepare(f);
    fd = holderPass(f);
    watch = holderWatch(f);

    ret = command(f, "cont", NULL);
    g_clear_pointer(&ret, json_node_unref);
    args = g_strdup_printf("{\"fdset-id\": 1, \"fd\": %" G_GINT64_FORMAT "}", fd);
    ret = command(f, "remove-fd", args);
    g_clear_pointer(&ret, json_node_unref);
    ret = command(f, "stop", NULL);

    g_assert_true(hdReleaseWatchWait(watch, 20000, &error));
    g_assert_no_error(error);
    g_test_message("free after %u checks of /proc", hdReleaseWatchChecks(watch));
    if (f->sim)
        g_assert_true(hdSimHostWaitEvent(f->sim, "close", NULL, 10000));
}


static void
onClosed(hdQmp *qmp, const GError *reason, gpointer opaque)
{
    *(gboolean *)opaque = TRUE;
}


/* QEMU is killed while it holds the group: the pidfd says so, the monitor
 * closes cleanly. */
static void
testHolderKilled(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(hdReleaseWatch) watch = NULL;
    gboolean closed = FALSE;

    holderPrepare(f);
    holderPass(f);
    watch = holderWatch(f);
    hdQmpSetClosedFunc(f->qmp, onClosed, &closed);

    kill(f->pid, SIGKILL);
    g_assert_true(hdReleaseWatchWait(watch, 20000, &error));
    g_assert_no_error(error);
    waitpid(f->pid, NULL, 0);
    f->pid = 0;

    /* The watch's wait may have seen the monitor close already. */
    if (!closed)
        hdQmpWaitUntil(f->qmp, &closed, 10000, NULL);
    g_assert_true(closed);
    g_assert_false(hdQmpIsOpen(f->qmp));
    g_assert_null(hdQmpCommand(f->qmp, "query-status", NULL, NULL, 0, 1000, &error));
    g_assert_nonnull(strstr(error->message, "closed the connection"));
}


/* quit: QEMU answers, then the monitor goes away; later commands fail. */
static void
testQuit(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = command(f, "quit", NULL);
    gboolean never = FALSE;

    g_assert_false(hdQmpWaitUntil(f->qmp, &never, 10000, &error));
    g_assert_false(hdQmpIsOpen(f->qmp));
    g_clear_error(&error);
    g_assert_null(hdQmpCommand(f->qmp, "query-status", NULL, NULL, 0, 1000, &error));
    g_assert_nonnull(strstr(error->message, "closed"));
    waitpid(f->pid, NULL, 0);
    f->pid = 0;
}


int
main(int argc, char **argv)
{
    simReason = hdTestSetup(&argc, &argv);
    qemuBinary = g_strdup(g_getenv("HD_QEMU"));
    if (!qemuBinary)
        qemuBinary = g_find_program_in_path("qemu-system-x86_64");
    if (!qemuBinary) {
        g_printerr("SKIP: qemu-system-x86_64 is not installed (Debian: qemu-system-x86)\n");
        return HD_TEST_SKIP_EXIT;
    }

#define ADD(name, func) \
    g_test_add(name, Fixture, NULL, fixtureSetUp, func, fixtureTearDown)
    ADD("/qemu/protocol", testProtocol);
    ADD("/qemu/device-deleted", testDeviceDeleted);
    ADD("/qemu/unplug-pending", testUnplugPending);
    ADD("/qemu/holder-remove-fd", testHolderRemoveFd);
    ADD("/qemu/holder-killed", testHolderKilled);
    ADD("/qemu/quit", testQuit);
#undef ADD
    return g_test_run();
}
