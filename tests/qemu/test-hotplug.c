/*
 * test-hotplug.c: hot-unplug against a fake QEMU holding simulated groups
 *
 * fake-qemu (fake-qemu.c) speaks QMP and holds /dev/vfio/N of the
 * simulated host as QEMU does; its mode decides when it closes the group
 * relative to DEVICE_DELETED.  In every mode the manager must give the
 * group back only after the close, with no violation on the simulated
 * host.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "mgrtest.h"
#include "hostdev/error.h"
#include "hostdev/hotplug.h"
#include "hostdev/manager.h"
#include "hostdev/qemu.h"

#define NIC "0000:00:19.0"        /* e1000e, group 3 alone */
#define NIC_GROUP 3
#define GPU "0000:01:00.0"        /* nvidia, group 2 with its audio */
#define GPU_AUDIO "0000:01:00.1"
#define GPU_GROUP 2

typedef struct {
    hdSimHost *sim;
    hdHost *host;
    char *state_dir;
    hdManager *mgr;
    hdHotplug *hotplug;
    GMainContext *ctx;
    char *socket;
    GPid qemu;
    hdQmp *qmp;
    hdHotplugOptions opts;
    hdHotplugResult result;
} Fixture;


static void
fixtureSetUp(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    f->sim = hdSimHostStart("small", NULL, &error);
    g_assert_no_error(error);
    f->host = hdHostNew(hdSimHostRoot(f->sim));
    f->state_dir = g_dir_make_tmp("hdstate-XXXXXX", &error);
    g_assert_no_error(error);
    f->mgr = hdManagerOpen(f->host, f->state_dir, &error);
    g_assert_no_error(error);
    f->hotplug = hdHotplugNew(f->mgr);
    f->ctx = g_main_context_new();
    f->socket = g_build_filename(f->state_dir, "qmp.sock", NULL);
    hdHotplugOptionsInit(&f->opts);
    f->opts.command_timeout_ms = 5000;
}


static void
fixtureTearDown(Fixture *f, gconstpointer data)
{
    hdHotplugResultClear(&f->result);
    g_clear_pointer(&f->qmp, hdQmpUnref);
    if (f->qemu > 0) {
        kill(f->qemu, SIGKILL);
        waitpid(f->qemu, NULL, 0);
    }
    g_clear_pointer(&f->hotplug, hdHotplugFree);
    g_clear_pointer(&f->mgr, hdManagerFree);
    g_clear_pointer(&f->host, hdHostUnref);
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
    g_clear_pointer(&f->sim, hdSimHostStop);
    g_unlink(f->socket);
    mgrtestRemoveTree(f->state_dir);
    g_free(f->state_dir);
    g_free(f->socket);
    g_main_context_unref(f->ctx);
}


/* Assign the NULL-terminated "address=alias" pairs to vm1. */
static void
assign(Fixture *f, ...)
{
    g_autoptr(GPtrArray) defs = g_ptr_array_new_with_free_func((GDestroyNotify)hdHostdevDefFree);
    g_autoptr(GError) error = NULL;
    const char *spec;
    va_list ap;

    va_start(ap, f);
    while ((spec = va_arg(ap, const char *))) {
        hdHostdevDef *def = g_new0(hdHostdevDef, 1);
        g_auto(GStrv) parts = g_strsplit(spec, "=", 2);

        def->addr = mgrtestAddr(parts[0]);
        def->managed = TRUE;
        def->alias = g_strdup(parts[1]);
        g_ptr_array_add(defs, def);
    }
    va_end(ap);
    g_assert_true(hdManagerPrepare(f->mgr, "vm1", defs, 0, &error));
    g_assert_no_error(error);
}


static GPtrArray *
hostdevs(const char *addr, const char *alias)
{
    GPtrArray *defs = g_ptr_array_new_with_free_func((GDestroyNotify)hdHostdevDefFree);
    hdHostdevDef *def = g_new0(hdHostdevDef, 1);

    def->addr = mgrtestAddr(addr);
    def->managed = TRUE;
    def->alias = g_strdup(alias);
    g_ptr_array_add(defs, def);
    return defs;
}


/* Start fake-qemu with @args (NULL-terminated) holding the groups of the
 * "alias=group" @devices, connect, negotiate and probe. */
static void
qemuStart(Fixture *f, const char *const *args, const char *const *devices)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) error = NULL;
    const char *fake = g_getenv("HD_FAKE_QEMU");
    struct pollfd pfd = { .events = POLLIN };
    char buf[16] = "";
    int out;
    guint i;

    g_assert_nonnull(fake);
    g_ptr_array_add(argv, g_strdup(fake));
    g_ptr_array_add(argv, g_strdup_printf("--socket=%s", f->socket));
    for (i = 0; args[i]; i++)
        g_ptr_array_add(argv, g_strdup(args[i]));
    for (i = 0; devices[i]; i++) {
        g_auto(GStrv) parts = g_strsplit(devices[i], "=", 2);
        g_autofree char *node = hdIOMMUGroupDevPath(f->host, atoi(parts[1]));

        g_ptr_array_add(argv, g_strdup_printf("--device=%s=%s", parts[0], node));
    }
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL,
                                           G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &f->qemu,
                                           NULL, &out, NULL, &error));
    g_assert_no_error(error);
    pfd.fd = out;
    g_assert_cmpint(poll(&pfd, 1, 10000), ==, 1);
    g_assert_cmpint(read(out, buf, sizeof(buf) - 1), >, 0);
    close(out);
    g_assert_cmpstr(buf, ==, "ready\n");

    f->qmp = hdQmpConnectUnix(f->socket, f->ctx, &error);
    g_assert_no_error(error);
    g_assert_cmpint(hdQmpGetPeerPid(f->qmp), ==, f->qemu);
    g_assert_true(hdQmpNegotiate(f->qmp, 5000, &error));
    g_assert_no_error(error);
    g_assert_nonnull(hdQemuProbe(f->qmp, "VFIO_GROUP_RELEASED", 5000, &error));
    g_assert_no_error(error);
}


/* The seq of the first simulated-host event @name matching @address (or,
 * with address NULL, @group); G_MAXINT64 if none. */
static gint64
eventSeq(Fixture *f, const char *name, const char *address, gint64 group, const char *driver)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonArray) events = hdSimHostEvents(f->sim, &error);
    guint i;

    g_assert_no_error(error);
    for (i = 0; i < json_array_get_length(events); i++) {
        JsonObject *ev = json_array_get_object_element(events, i);

        if (g_strcmp0(json_object_get_string_member(ev, "event"), name) != 0)
            continue;
        if (address && g_strcmp0(json_object_get_string_member_with_default(ev, "device", NULL),
                                 address) != 0)
            continue;
        if (!address && json_object_get_int_member_with_default(ev, "group", -1) != group)
            continue;
        if (driver && g_strcmp0(json_object_get_string_member_with_default(ev, "driver", NULL),
                                driver) != 0)
            continue;
        return json_object_get_int_member(ev, "seq");
    }
    return G_MAXINT64;
}


/* The device went back to @driver, after QEMU closed group @group. */
static void
assertGivenBackAfterClose(Fixture *f, const char *addr, unsigned int group, const char *driver)
{
    gint64 closed = eventSeq(f, "close", NULL, group, NULL);
    gint64 bound = eventSeq(f, "bind", addr, -1, driver);

    mgrtestAssertDriver(f->sim, addr, driver);
    g_assert_cmpint(closed, !=, G_MAXINT64);
    g_assert_cmpint(bound, !=, G_MAXINT64);
    g_assert_cmpint(closed, <, bound);
}


static void
detachOk(Fixture *f, const char *addr, const char *alias)
{
    g_autoptr(GPtrArray) defs = hostdevs(addr, alias);
    g_autoptr(GError) error = NULL;

    hdHotplugResultClear(&f->result);
    g_assert_true(hdHotplugDetach(f->hotplug, f->qmp, "vm1", defs, &f->opts, &f->result,
                                  &error));
    g_assert_no_error(error);
}


/* QEMU >= 2.11: the group is closed when DEVICE_DELETED comes. */
static void
testModern(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--version=7.2.0", "--mode=modern", NULL };
    const char *devices[] = { "hostdev0=3", NULL };

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    g_assert_cmpint(hdQmpGetCaps(f->qmp)->release_signal, ==, HD_RELEASE_SIGNAL_DEVICE_DELETED);
    detachOk(f, NIC, "hostdev0");
    g_assert_cmpuint(f->result.released, ==, 1);
    g_assert_cmpuint(f->result.groups_given_back, ==, 1);
    g_assert_cmpuint(f->result.waiting, ==, 0);
    g_assert_null(f->result.problem);
    assertGivenBackAfterClose(f, NIC, NIC_GROUP, "e1000e");
}


/* QEMU 2.10: DEVICE_DELETED first, the group closed a second later. */
static void
testOldQemu(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--version=2.10.0", "--mode=old", "--close-delay-ms=1000", NULL };
    const char *devices[] = { "hostdev0=3", NULL };

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    g_assert_cmpint(hdQmpGetCaps(f->qmp)->release_signal, ==, HD_RELEASE_SIGNAL_PROC);
    detachOk(f, NIC, "hostdev0");
    g_assert_cmpuint(f->result.groups_given_back, ==, 1);
    assertGivenBackAfterClose(f, NIC, NIC_GROUP, "e1000e");
}


/* Old QEMU too, before query-qmp-schema: query-events, same result. */
static void
testNoSchema(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--version=2.4.0", "--no-schema", "--mode=old",
                           "--close-delay-ms=300", NULL };
    const char *devices[] = { "hostdev0=3", NULL };

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    g_assert_false(hdQmpGetCaps(f->qmp)->events_from_schema);
    g_assert_cmpint(hdQmpGetCaps(f->qmp)->release_signal, ==, HD_RELEASE_SIGNAL_PROC);
    detachOk(f, NIC, "hostdev0");
    assertGivenBackAfterClose(f, NIC, NIC_GROUP, "e1000e");
}


/* A QEMU with a dedicated event after the close. */
static void
testFinalizeEvent(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--version=2.10.0", "--mode=old", "--close-delay-ms=500",
                           "--finalize-event=VFIO_GROUP_RELEASED", NULL };
    const char *devices[] = { "hostdev0=3", NULL };

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    g_assert_cmpint(hdQmpGetCaps(f->qmp)->release_signal, ==, HD_RELEASE_SIGNAL_FINALIZE_EVENT);
    detachOk(f, NIC, "hostdev0");
    g_assert_cmpuint(f->result.groups_given_back, ==, 1);
    assertGivenBackAfterClose(f, NIC, NIC_GROUP, "e1000e");
}


/* The guest ignores the unplug: a timeout, and the device stays assigned. */
static void
testGuestIgnores(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--mode=ignore", NULL };
    const char *devices[] = { "hostdev0=3", NULL };
    g_autoptr(GPtrArray) defs = hostdevs(NIC, "hostdev0");
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDeviceInfo) info = NULL;
    hdPCIAddress addr = mgrtestAddr(NIC);

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    f->opts.unplug_base_ms = 200;
    f->opts.unplug_per_device_ms = 100;
    g_assert_false(hdHotplugDetach(f->hotplug, f->qmp, "vm1", defs, &f->opts, &f->result,
                                   &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_TIMEOUT);
    g_assert_nonnull(strstr(error->message, "hostdev0"));
    g_assert_nonnull(strstr(error->message, "300 ms"));
    g_assert_cmpuint(f->result.released, ==, 0);
    info = hdManagerGetDevice(f->mgr, &addr, NULL);
    g_assert_cmpint(info->state, ==, HD_DEVICE_ACTIVE);
    g_assert_cmpstr(info->domain, ==, "vm1");
    mgrtestAssertDriver(f->sim, NIC, "vfio-pci");
}


/* A detach whose deadline passed: a timeout, the device still assigned,
 * its unplug requested. */
static void
detachTimesOut(Fixture *f, const char *addr, const char *alias)
{
    g_autoptr(GPtrArray) defs = hostdevs(addr, alias);
    g_autoptr(hdDeviceInfo) info = NULL;
    g_autoptr(GError) error = NULL;
    hdPCIAddress pci = mgrtestAddr(addr);

    hdHotplugResultClear(&f->result);
    g_assert_false(hdHotplugDetach(f->hotplug, f->qmp, "vm1", defs, &f->opts, &f->result,
                                   &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_TIMEOUT);
    g_assert_nonnull(strstr(error->message, "while QEMU waits for the guest"));
    g_assert_cmpuint(f->result.released, ==, 0);
    g_assert_nonnull(f->result.unplug_pending);
    g_assert_cmpuint(f->result.unplug_pending->len, ==, 1);
    g_assert_cmpint(hdPCIAddressCompare(&g_array_index(f->result.unplug_pending, hdPCIAddress,
                                                       0), &pci), ==, 0);
    info = hdManagerGetDevice(f->mgr, &pci, NULL);
    g_assert_cmpint(info->state, ==, HD_DEVICE_ACTIVE);
    mgrtestAssertDriver(f->sim, addr, "vfio-pci");
}


/* A slow guest answers the unplug after the deadline; the retry, while
 * QEMU still waits for the guest, is refused by QEMU ("already in the
 * process of unplug") and waits again instead of failing. */
static void
testSlowGuestRetry(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--mode=slow", "--unplug-delay-ms=1500", NULL };
    const char *devices[] = { "hostdev0=3", NULL };
    const char *requested[] = { "hostdev0", NULL };

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    f->opts.unplug_timeout_ms = 200;
    detachTimesOut(f, NIC, "hostdev0");

    f->opts.unplug_timeout_ms = 10000;
    f->opts.requested = requested;
    detachOk(f, NIC, "hostdev0");
    g_assert_cmpuint(f->result.released, ==, 1);
    g_assert_null(f->result.unplug_pending);
    assertGivenBackAfterClose(f, NIC, NIC_GROUP, "e1000e");
}


/* The guest let go after the deadline and nobody heard DEVICE_DELETED:
 * QEMU no longer has the device.  A retry that knows the unplug was
 * requested finds it gone and releases it; one that does not fails at
 * device_del, as for an alias QEMU never had. */
static void
testSlowGuestUnheard(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--mode=slow", "--unplug-delay-ms=300", NULL };
    const char *devices[] = { "hostdev0=3", NULL };
    const char *requested[] = { "hostdev0", NULL };
    g_autoptr(GPtrArray) defs = hostdevs(NIC, "hostdev0");
    g_autoptr(GError) error = NULL;
    gint64 until;

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    f->opts.unplug_timeout_ms = 100;
    detachTimesOut(f, NIC, "hostdev0");
    /* DEVICE_DELETED comes, with no handler for it. */
    until = g_get_monotonic_time() + G_USEC_PER_SEC;
    while (g_get_monotonic_time() < until)
        g_main_context_iteration(f->ctx, FALSE);
    g_assert_cmpint(eventSeq(f, "close", NULL, NIC_GROUP, NULL), !=, G_MAXINT64);

    g_assert_false(hdHotplugDetach(f->hotplug, f->qmp, "vm1", defs, &f->opts, &f->result,
                                   &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "DeviceNotFound"));

    f->opts.requested = requested;
    detachOk(f, NIC, "hostdev0");
    g_assert_cmpuint(f->result.released, ==, 1);
    g_assert_cmpuint(f->result.groups_given_back, ==, 1);
    assertGivenBackAfterClose(f, NIC, NIC_GROUP, "e1000e");
}


/* QEMU refuses the unplug (unknown alias): nothing changes. */
static void
testUnknownAlias(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--mode=modern", NULL };
    const char *devices[] = { "hostdev0=3", NULL };
    g_autoptr(GPtrArray) defs = hostdevs(NIC, "hostdev9");
    g_autoptr(GError) error = NULL;

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    g_assert_false(hdHotplugDetach(f->hotplug, f->qmp, "vm1", defs, &f->opts, &f->result,
                                   &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "DeviceNotFound"));
    mgrtestAssertDriver(f->sim, NIC, "vfio-pci");
}


/* The group is still held at the deadline: the device waits on the
 * inactive list, the problem is reported, and the group is given back by
 * the background watch once QEMU closes it. */
static void
testHeldPastDeadline(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--version=2.10.0", "--mode=old", "--close-delay-ms=1500", NULL };
    const char *devices[] = { "hostdev0=3", NULL };
    g_autoptr(hdDeviceInfo) info = NULL;
    hdPCIAddress addr = mgrtestAddr(NIC);
    gint64 deadline;

    assign(f, NIC "=hostdev0", NULL);
    qemuStart(f, args, devices);
    f->opts.release_base_ms = 100;
    f->opts.proc_release_per_device_ms = 100;
    detachOk(f, NIC, "hostdev0");
    g_assert_cmpuint(f->result.released, ==, 1);
    g_assert_cmpuint(f->result.groups_given_back, ==, 0);
    g_assert_cmpuint(f->result.groups_watched, ==, 1);
    g_assert_cmpuint(f->result.waiting, ==, 1);
    g_assert_nonnull(strstr(f->result.problem, "group 3"));
    g_assert_nonnull(strstr(f->result.problem, "fake-qemu"));
    info = hdManagerGetDevice(f->mgr, &addr, NULL);
    g_assert_cmpint(info->state, ==, HD_DEVICE_INACTIVE);
    mgrtestAssertDriver(f->sim, NIC, "vfio-pci");
    g_assert_cmpuint(hdHotplugWatchedGroups(f->hotplug), ==, 1);

    deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (hdHotplugWatchedGroups(f->hotplug) > 0 && g_get_monotonic_time() < deadline)
        g_main_context_iteration(f->ctx, TRUE);
    g_assert_cmpuint(hdHotplugWatchedGroups(f->hotplug), ==, 0);
    assertGivenBackAfterClose(f, NIC, NIC_GROUP, "e1000e");
}


/* Two devices of one group: the first to leave does not free the group
 * (its sibling is still in the guest, QEMU still holds it); the second
 * does. */
static void
testGroupSiblings(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--version=2.10.0", "--mode=old", "--close-delay-ms=300", NULL };
    const char *devices[] = { "hostdev0=2", "hostdev1=2", NULL };

    assign(f, GPU "=hostdev0", GPU_AUDIO "=hostdev1", NULL);
    qemuStart(f, args, devices);
    detachOk(f, GPU, "hostdev0");
    g_assert_cmpuint(f->result.released, ==, 1);
    g_assert_cmpuint(f->result.groups_given_back, ==, 0);
    g_assert_cmpuint(f->result.groups_watched, ==, 0);
    /* No group is pending, yet the GPU waits on the inactive list. */
    g_assert_cmpuint(f->result.waiting, ==, 1);
    mgrtestAssertDriver(f->sim, GPU, "vfio-pci");
    mgrtestAssertDriver(f->sim, GPU_AUDIO, "vfio-pci");

    detachOk(f, GPU_AUDIO, "hostdev1");
    g_assert_cmpuint(f->result.groups_given_back, ==, 1);
    g_assert_cmpuint(f->result.waiting, ==, 0);
    assertGivenBackAfterClose(f, GPU, GPU_GROUP, "nvidia");
    assertGivenBackAfterClose(f, GPU_AUDIO, GPU_GROUP, "snd_hda_intel");
}


/* Both at once: one deadline for two devices. */
static void
testGroupTogether(Fixture *f, gconstpointer data)
{
    const char *args[] = { "--version=2.10.0", "--mode=old", "--close-delay-ms=300", NULL };
    const char *devices[] = { "hostdev0=2", "hostdev1=2", NULL };
    g_autoptr(GPtrArray) defs = hostdevs(GPU, "hostdev0");
    g_autoptr(GError) error = NULL;
    hdHostdevDef *audio = g_new0(hdHostdevDef, 1);

    audio->addr = mgrtestAddr(GPU_AUDIO);
    audio->managed = TRUE;
    audio->alias = g_strdup("hostdev1");
    g_ptr_array_add(defs, audio);
    assign(f, GPU "=hostdev0", GPU_AUDIO "=hostdev1", NULL);
    qemuStart(f, args, devices);
    g_assert_true(hdHotplugDetach(f->hotplug, f->qmp, "vm1", defs, &f->opts, &f->result,
                                  &error));
    g_assert_no_error(error);
    g_assert_cmpuint(f->result.released, ==, 2);
    g_assert_cmpuint(f->result.groups_given_back, ==, 1);
    assertGivenBackAfterClose(f, GPU, GPU_GROUP, "nvidia");
}


int
main(int argc, char **argv)
{
    const char *reason = hdTestSetup(&argc, &argv);

    HD_TEST_REQUIRE_SIMHOST(reason);
    if (!g_getenv("HD_FAKE_QEMU")) {
        g_printerr("SKIP: HD_FAKE_QEMU is not set\n");
        return HD_TEST_SKIP_EXIT;
    }

#define ADD(name, func) \
    g_test_add(name, Fixture, NULL, fixtureSetUp, func, fixtureTearDown)
    ADD("/hotplug/modern", testModern);
    ADD("/hotplug/old-qemu", testOldQemu);
    ADD("/hotplug/no-schema", testNoSchema);
    ADD("/hotplug/finalize-event", testFinalizeEvent);
    ADD("/hotplug/guest-ignores", testGuestIgnores);
    ADD("/hotplug/unknown-alias", testUnknownAlias);
    ADD("/hotplug/slow-guest-retry", testSlowGuestRetry);
    ADD("/hotplug/slow-guest-unheard", testSlowGuestUnheard);
    ADD("/hotplug/held-past-deadline", testHeldPastDeadline);
    ADD("/hotplug/group-siblings", testGroupSiblings);
    ADD("/hotplug/group-together", testGroupTogether);
#undef ADD
    return g_test_run();
}
