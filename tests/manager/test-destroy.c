/*
 * test-destroy.c: destroy of a guest, groups given back in parallel
 *
 * The guest's QEMU is a child process holding its groups' /dev/vfio files
 * open, as QEMU does; how it reacts to SIGTERM is up to each test.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "hdprocess.h"
#include "hostdev/destroy.h"
#include "hostdev/error.h"
#include "mgrtest.h"

typedef struct {
    hdSimHost *sim;
    hdHost *host;
    char *state_dir;
    hdManager *mgr;
    pid_t qemu;
    GArray *progress;       /* guint: given back so far, per call */
    guint progress_total;
    GMutex progress_lock;
} Fixture;


static void
fixtureStart(Fixture *f, const char *topology)
{
    g_autoptr(GError) error = NULL;

    f->sim = hdSimHostStart(topology, NULL, &error);
    g_assert_no_error(error);
    f->host = hdHostNew(hdSimHostRoot(f->sim));
    f->state_dir = g_dir_make_tmp("hddestroy-XXXXXX", &error);
    g_assert_no_error(error);
    f->mgr = hdManagerOpen(f->host, f->state_dir, &error);
    g_assert_no_error(error);
    f->progress = g_array_new(FALSE, FALSE, sizeof(guint));
    g_mutex_init(&f->progress_lock);
}


static void
fixtureStop(Fixture *f)
{
    if (f->qemu > 0) {
        kill(f->qemu, SIGKILL);
        waitpid(f->qemu, NULL, 0);
    }
    g_clear_pointer(&f->mgr, hdManagerFree);
    g_clear_pointer(&f->host, hdHostUnref);
    g_clear_pointer(&f->sim, hdSimHostStop);
    mgrtestRemoveTree(f->state_dir);
    g_free(f->state_dir);
    g_array_unref(f->progress);
    g_mutex_clear(&f->progress_lock);
}


static void
testProgress(guint given_back, guint total, gpointer opaque)
{
    Fixture *f = opaque;

    g_mutex_lock(&f->progress_lock);
    g_array_append_val(f->progress, given_back);
    f->progress_total = total;
    g_mutex_unlock(&f->progress_lock);
}


/* Assign @count GPUs with their audio functions (whole groups) to "guest". */
static GPtrArray *
testAssignGpus(Fixture *f, guint count)
{
    g_autoptr(GPtrArray) gpus = mgrtestDevicesOn(f->sim, "nvidia");
    g_autoptr(GPtrArray) defs = g_ptr_array_new_with_free_func((GDestroyNotify)hdHostdevDefFree);
    g_autoptr(GError) error = NULL;
    guint i;

    g_assert_cmpuint(gpus->len, >=, count);
    g_ptr_array_set_size(gpus, count);
    for (i = 0; i < count; i++) {
        hdHostdevDef *def = g_new0(hdHostdevDef, 1);

        def->addr = mgrtestAddr(g_ptr_array_index(gpus, i));
        def->managed = TRUE;
        g_ptr_array_add(defs, def);
    }
    g_assert_true(hdManagerPrepare(f->mgr, "guest", defs, HD_PREPARE_WHOLE_GROUP, &error));
    g_assert_no_error(error);
    return g_steal_pointer(&gpus);
}


/* Start the guest's QEMU: a child holding the groups of @gpus. */
static void
testStartQemu(Fixture *f, GPtrArray *gpus, mgrtestQemuKind kind)
{
    g_autoptr(GPtrArray) nodes = g_ptr_array_new_with_free_func(g_free);
    guint i;

    for (i = 0; i < gpus->len; i++) {
        hdPCIAddress addr = mgrtestAddr(g_ptr_array_index(gpus, i));
        unsigned int group = 0;

        g_assert_true(hdPCIDeviceGetIOMMUGroup(f->host, &addr, &group, NULL));
        g_ptr_array_add(nodes, hdIOMMUGroupDevPath(f->host, group));
    }
    f->qemu = mgrtestStartQemu(nodes, kind);
}


/* Destroy "guest" (its QEMU, if started, is reaped); must succeed. */
static hdDestroyReport *
testDestroy(Fixture *f, const hdDestroyOptions *opts)
{
    g_autoptr(GError) error = NULL;
    hdDestroyReport *report = NULL;

    g_assert_true(hdDestroyDomain(f->mgr, "guest", f->qemu, opts, &report, &error));
    g_assert_no_error(error);
    if (f->qemu > 0) {
        g_assert_cmpint(waitpid(f->qemu, NULL, 0), ==, f->qemu);
        f->qemu = 0;
    }
    return report;
}


static void
testAssertAllHome(Fixture *f)
{
    g_autoptr(GPtrArray) on_vfio = mgrtestDevicesOn(f->sim, "vfio-pci");
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(f->mgr);

    g_assert_cmpuint(on_vfio->len, ==, 0);
    g_assert_cmpuint(tracked->len, ==, 0);
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
}


static guint
testCountEvents(Fixture *f, const char *type)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonArray) events = hdSimHostEvents(f->sim, &error);
    guint count = 0;
    guint i;

    g_assert_no_error(error);
    for (i = 0; i < json_array_get_length(events); i++) {
        JsonObject *event = json_array_get_object_element(events, i);

        count += g_strcmp0(json_object_get_string_member(event, "event"), type) == 0;
    }
    return count;
}


typedef struct {
    Fixture *f;
    const hdDestroyOptions *opts;
    hdDestroyReport *report;
} testDestroyThreadData;


static gpointer
testDestroyThread(gpointer opaque)
{
    testDestroyThreadData *data = opaque;
    g_autoptr(GError) error = NULL;

    g_assert_true(hdDestroyDomain(data->f->mgr, "guest", data->f->qemu, data->opts,
                                  &data->report, &error));
    g_assert_no_error(error);
    return NULL;
}


/* Destroy three GPUs whose kernel releases hang, and count the releases
 * that started: QEMU's files closed side by side start all three; QEMU's
 * exit starts one, the others wait behind it in the exiting task. */
static guint
testReleasesStartedWhileHung(Fixture *f, const hdDestroyOptions *opts)
{
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(GError) error = NULL;
    testDestroyThreadData data = { .f = f, .opts = opts };
    GThread *thread;
    guint started;
    guint i;

    g_assert_true(hdSimHostCtl(f->sim, "cost all probe_ms 0", &error));
    gpus = testAssignGpus(f, 3);
    for (i = 0; i < gpus->len; i++) {
        g_autofree char *fault = g_strdup_printf("fault %s release hang",
                                                 (char *)g_ptr_array_index(gpus, i));
        g_assert_true(hdSimHostCtl(f->sim, fault, &error));
    }
    testStartQemu(f, gpus, MGRTEST_QEMU_EXITS);
    thread = g_thread_new("destroy", testDestroyThread, &data);

    g_assert_true(hdSimHostWaitEvent(f->sim, "release-start", NULL, 10000));
    /* Give the others every chance to start, then count. */
    for (i = 0; i < 100 && testCountEvents(f, "release-start") < 3; i++)
        g_usleep(20 * 1000);
    started = testCountEvents(f, "release-start");

    g_assert_true(hdSimHostCtl(f->sim, "unhang", &error));
    for (i = 0; i < 500 && testCountEvents(f, "release-done") < 6; i++) {
        g_assert_true(hdSimHostCtl(f->sim, "unhang", &error));
        g_usleep(10 * 1000);
    }
    g_thread_join(thread);
    g_assert_cmpint(waitpid(f->qemu, NULL, 0), ==, f->qemu);
    f->qemu = 0;
    g_assert_cmpuint(data.report->given_back, ==, 6);
    g_assert_cmpuint(data.report->adopted, ==, opts->no_adopt ? 0 : 3);
    hdDestroyReportFree(data.report);
    return started;
}


static void
testDestroySideBySide(void)
{
    Fixture f = { 0 };
    hdDestroyOptions opts = { .release_wait_ms = 20000 };

    fixtureStart(&f, "gpu16");
    g_assert_cmpuint(testReleasesStartedWhileHung(&f, &opts), ==, 3);
    testAssertAllHome(&f);
    fixtureStop(&f);
}


/* Without adoption QEMU's exit releases its groups one after the other. */
static void
testDestroyWithoutAdoption(void)
{
    Fixture f = { 0 };
    hdDestroyOptions opts = { .no_adopt = TRUE, .release_wait_ms = 20000 };

    fixtureStart(&f, "gpu16");
    g_assert_cmpuint(testReleasesStartedWhileHung(&f, &opts), ==, 1);
    testAssertAllHome(&f);
    fixtureStop(&f);
}


/* 16 GPUs: every group comes back, progress counts up to 32 devices. */
static void
testDestroyMany(void)
{
    Fixture f = { 0 };
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GError) error = NULL;
    hdDestroyOptions opts = { .progress = testProgress, .progress_opaque = &f };
    guint i;

    fixtureStart(&f, "gpu16");
    g_assert_true(hdSimHostCtl(f.sim, "cost all release_ms 100", &error));
    g_assert_true(hdSimHostCtl(f.sim, "cost all probe_ms 20", &error));
    gpus = testAssignGpus(&f, 16);
    testStartQemu(&f, gpus, MGRTEST_QEMU_EXITS);

    report = testDestroy(&f, &opts);
    g_assert_cmpuint(report->devices, ==, 32);
    g_assert_cmpuint(report->given_back, ==, 32);
    g_assert_cmpuint(report->adopted, ==, 16);
    g_assert_false(report->killed);
    g_assert_cmpuint(report->problems->len, ==, 0);
    testAssertAllHome(&f);

    g_assert_cmpuint(f.progress->len, ==, 16);
    g_assert_cmpuint(f.progress_total, ==, 32);
    for (i = 1; i < f.progress->len; i++)
        g_assert_cmpuint(g_array_index(f.progress, guint, i), >,
                         g_array_index(f.progress, guint, i - 1));
    g_assert_cmpuint(g_array_index(f.progress, guint, f.progress->len - 1), ==, 32);
    /* The per-device allowance now follows what was measured here. */
    g_assert_cmpuint(hdDestroyPerDeviceMs(f.mgr), >=, 2000);
    fixtureStop(&f);
}


/* How QEMU meets SIGTERM, and what destroy must then report. */
typedef struct {
    mgrtestQemuKind kind;
    hdDestroyOptions opts;
    gboolean killed;        /* SIGKILL needed */
    double min_terminate_s; /* destroy waited at least this long for it */
    gboolean start_time;    /* destroy is told when QEMU started */
} testTerminateCase;

static const testTerminateCase terminateIgnored = {
    .kind = MGRTEST_QEMU_IGNORES_TERM,
    .opts = { .term_wait_ms = 200, .per_device_ms = 100 },
    .killed = TRUE,
};

/* It shuts down 300 ms after SIGTERM: destroy waits, no SIGKILL. */
static const testTerminateCase terminateSlow = {
    .kind = MGRTEST_QEMU_EXITS_SLOWLY,
    .min_terminate_s = 0.25,
};

/* Destroy checks that the pid is still QEMU's: it is. */
static const testTerminateCase terminateStartTime = {
    .kind = MGRTEST_QEMU_EXITS_SLOWLY,
    .min_terminate_s = 0.25,
    .start_time = TRUE,
};

/* Destroy proves that the pid is the domain's QEMU: it holds its group. */
static const testTerminateCase terminateVerified = {
    .kind = MGRTEST_QEMU_EXITS,
    .opts = { .verify_qemu = TRUE, .uid = -1 },
};


static void
testDestroyTerminate(gconstpointer data)
{
    const testTerminateCase *tc = data;
    Fixture f = { 0 };
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(hdDestroyReport) report = NULL;
    hdDestroyOptions opts = tc->opts;

    fixtureStart(&f, "small");
    gpus = testAssignGpus(&f, 1);
    testStartQemu(&f, gpus, tc->kind);
    if (tc->start_time)
        opts.pid_start_time = hdProcessStartTime("/proc", f.qemu);
    report = testDestroy(&f, &opts);
    g_assert_cmpint(report->killed, ==, tc->killed);
    g_assert_cmpfloat(report->terminate_s, >=, tc->min_terminate_s);
    g_assert_cmpuint(report->given_back, ==, 2);
    testAssertAllHome(&f);
    fixtureStop(&f);
}


/* QEMU died long ago (a daemon crashed in the middle of its destroy) and
 * another process got its pid: destroy must leave that one alone. */
static void
testDestroyPidReused(void)
{
    Fixture f = { 0 };
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(GPtrArray) nothing = g_ptr_array_new();
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GError) error = NULL;
    hdDestroyOptions opts = { 0 };
    pid_t other;

    fixtureStart(&f, "small");
    gpus = testAssignGpus(&f, 1);
    other = mgrtestStartQemu(nothing, MGRTEST_QEMU_EXITS);
    opts.pid_start_time = hdProcessStartTime("/proc", other) - 1;

    g_assert_true(hdDestroyDomain(f.mgr, "guest", other, &opts, &report, &error));
    g_assert_no_error(error);
    g_assert_false(report->killed);
    g_assert_cmpuint(report->given_back, ==, 2);
    g_assert_cmpint(waitpid(other, NULL, WNOHANG), ==, 0);
    testAssertAllHome(&f);

    kill(other, SIGKILL);
    g_assert_cmpint(waitpid(other, NULL, 0), ==, other);
    fixtureStop(&f);
}


/* Destroy of "guest" with @pid must be refused with HD_ERROR_PERMISSION
 * naming @why, and change nothing: the devices stay assigned. */
static void
testAssertRefused(Fixture *f, pid_t pid, const hdDestroyOptions *opts, const char *why)
{
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GPtrArray) tracked = NULL;
    g_autoptr(GError) error = NULL;
    guint in_guest = 0;
    guint i;

    g_assert_false(hdDestroyDomain(f->mgr, "guest", pid, opts, &report, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_PERMISSION);
    g_assert_nonnull(strstr(error->message, why));
    g_assert_null(report);
    /* The GPU still in the guest, its audio sibling still detached. */
    tracked = hdManagerListTracked(f->mgr);
    g_assert_cmpuint(tracked->len, ==, 2);
    for (i = 0; i < tracked->len; i++)
        in_guest += g_strcmp0(((hdDeviceInfo *)g_ptr_array_index(tracked, i))->domain,
                              "guest") == 0;
    g_assert_cmpuint(in_guest, ==, 1);
}


/* Only a process proven to be the domain's QEMU is signalled: one that
 * holds none of its groups is refused unless it is the peer of the
 * domain's QMP socket; a process of another uid is refused; pid 1 and
 * the caller itself are refused even unverified. */
static void
testDestroyNotQemu(void)
{
    Fixture f = { 0 };
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(GPtrArray) nothing = g_ptr_array_new();
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GError) error = NULL;
    hdDestroyOptions opts = { .verify_qemu = TRUE, .uid = -1 };
    hdDestroyOptions unverified = { 0 };
    pid_t other;

    fixtureStart(&f, "small");
    gpus = testAssignGpus(&f, 1);
    other = mgrtestStartQemu(nothing, MGRTEST_QEMU_EXITS);

    testAssertRefused(&f, other, &opts, "holds none of the domain's VFIO groups");
    g_assert_cmpint(waitpid(other, NULL, WNOHANG), ==, 0);
    testAssertRefused(&f, 1, &unverified, "init process");
    testAssertRefused(&f, getpid(), &unverified, "own process");
    opts.monitor_pid = other;
    opts.uid = getuid() + 1;
    testAssertRefused(&f, other, &opts, "runs as uid");
    g_assert_cmpint(waitpid(other, NULL, WNOHANG), ==, 0);

    /* The peer of the domain's QMP socket is its QEMU. */
    opts.uid = getuid();
    g_assert_true(hdDestroyDomain(f.mgr, "guest", other, &opts, &report, &error));
    g_assert_no_error(error);
    g_assert_cmpint(waitpid(other, NULL, 0), ==, other);
    g_assert_cmpuint(report->given_back, ==, 2);
    testAssertAllHome(&f);
    fixtureStop(&f);
}


/* One group's kernel release hangs: the others come back, that group is
 * reported, and it comes back by itself once the kernel is done. */
static void
testDestroyOneGroupHangs(void)
{
    Fixture f = { 0 };
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *fault = NULL;
    g_autofree char *group = NULL;
    hdDestroyOptions opts = { .release_wait_ms = 300, .per_device_ms = 100 };
    unsigned int stuck = 0;
    hdPCIAddress addr;
    guint i;

    fixtureStart(&f, "gpu16");
    g_assert_true(hdSimHostCtl(f.sim, "cost all release_ms 20", &error));
    g_assert_true(hdSimHostCtl(f.sim, "cost all probe_ms 0", &error));
    gpus = testAssignGpus(&f, 3);
    addr = mgrtestAddr(g_ptr_array_index(gpus, 1));
    g_assert_true(hdPCIDeviceGetIOMMUGroup(f.host, &addr, &stuck, NULL));
    fault = g_strdup_printf("fault %s release hang", (char *)g_ptr_array_index(gpus, 1));
    g_assert_true(hdSimHostCtl(f.sim, fault, &error));
    testStartQemu(&f, gpus, MGRTEST_QEMU_EXITS);

    report = testDestroy(&f, &opts);
    g_assert_cmpuint(report->given_back, ==, 4);
    g_assert_cmpuint(report->problems->len, ==, 1);
    group = g_strdup_printf("IOMMU group %u", stuck);
    g_assert_nonnull(strstr(g_ptr_array_index(report->problems, 0), group));
    mgrtestAssertDriver(f.sim, g_ptr_array_index(gpus, 0), "nvidia");
    mgrtestAssertDriver(f.sim, g_ptr_array_index(gpus, 2), "nvidia");
    g_assert_cmpuint(hdSimHostViolations(f.sim), ==, 0);

    /* The kernel finishes: the group goes home on its own (its watch looks
     * every few seconds once the deadline passed). */
    g_assert_true(hdSimHostCtl(f.sim, "unhang", &error));
    for (i = 0; i < 3000; i++) {
        g_autoptr(GPtrArray) tracked = hdManagerListTracked(f.mgr);

        if (tracked->len == 0)
            break;
        g_usleep(10 * 1000);
    }
    testAssertAllHome(&f);
    fixtureStop(&f);
}


/* While destroy waits for a group, something else gives it back (the
 * pending sweep here; in the stress test an earlier destroy still running
 * in the background): the devices are home, which is no problem. */
static void
testDestroyGivenBackMeanwhile(void)
{
    Fixture f = { 0 };
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *fault = NULL;
    hdDestroyOptions opts = { .release_wait_ms = 10000 };
    testDestroyThreadData data = { .f = &f, .opts = &opts };
    GThread *thread;
    guint i;

    fixtureStart(&f, "small");
    g_assert_true(hdSimHostCtl(f.sim, "cost all probe_ms 0", &error));
    gpus = testAssignGpus(&f, 1);
    fault = g_strdup_printf("fault %s release hang", (char *)g_ptr_array_index(gpus, 0));
    g_assert_true(hdSimHostCtl(f.sim, fault, &error));
    testStartQemu(&f, gpus, MGRTEST_QEMU_EXITS);

    thread = g_thread_new("destroy", testDestroyThread, &data);
    /* The destroy's job now waits for the hung release. */
    for (i = 0; i < 1000 && testCountEvents(&f, "release-start") == 0; i++)
        g_usleep(5 * 1000);
    g_usleep(200 * 1000);
    g_assert_true(hdSimHostCtl(f.sim, "unhang", &error));
    for (i = 0; i < 5000; i++) {
        g_autoptr(GPtrArray) tracked = hdManagerListTracked(f.mgr);

        if (tracked->len == 0)
            break;
        hdManagerGiveBackPending(f.mgr, NULL);
        g_usleep(1000);
    }
    g_thread_join(thread);
    waitpid(f.qemu, NULL, 0);
    f.qemu = 0;

    for (i = 0; i < data.report->problems->len; i++)
        g_test_message("problem: %s", (char *)g_ptr_array_index(data.report->problems, i));
    g_assert_cmpuint(data.report->problems->len, ==, 0);
    g_assert_cmpuint(data.report->given_back, ==, 2);
    hdDestroyReportFree(data.report);
    testAssertAllHome(&f);
    fixtureStop(&f);
}


/* The GPU is the domain's; its audio sibling belongs to no one (detached
 * for the whole group).  Destroy takes both home; QEMU is already gone. */
static void
testDestroySiblingOfNoOne(void)
{
    Fixture f = { 0 };
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GError) error = NULL;

    fixtureStart(&f, "small");
    gpus = testAssignGpus(&f, 1);
    report = testDestroy(&f, NULL);
    g_assert_cmpuint(report->devices, ==, 2);
    g_assert_cmpuint(report->given_back, ==, 2);
    testAssertAllHome(&f);
    fixtureStop(&f);
}


/* Unmanaged devices leave the domain and stay on vfio-pci: neither given
 * back nor a problem.  The NIC was detached with nodedev-detach (still
 * tracked, inactive); the e1000 was put on vfio-pci by someone else
 * (untracked once released). */
static void
testDestroyUnmanagedStay(void)
{
    Fixture f = { 0 };
    g_autoptr(GPtrArray) gpus = NULL;
    g_autoptr(GPtrArray) defs = g_ptr_array_new_with_free_func((GDestroyNotify)hdHostdevDefFree);
    g_autoptr(GPtrArray) nodes = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GPtrArray) tracked = NULL;
    g_autoptr(GError) error = NULL;
    const char *const unmanaged[] = { "0000:00:19.0", "0000:05:01.0" };
    hdPCIAddress nic = mgrtestAddr(unmanaged[0]);
    hdPCIAddress e1000 = mgrtestAddr(unmanaged[1]);
    hdPCIAddress e1000_sibling = mgrtestAddr("0000:05:00.0");
    hdHostdevDef *def;
    guint i;

    fixtureStart(&f, "small");
    gpus = testAssignGpus(&f, 1);
    g_assert_true(hdManagerNodeDetach(f.mgr, &nic, NULL, &error));
    g_assert_no_error(error);
    /* The e1000's group has a bridge and its sibling 05:00.0: bind both. */
    g_assert_true(hdPCIDeviceBindDriver(f.host, &e1000_sibling, "vfio-pci", &error));
    g_assert_true(hdPCIDeviceBindDriver(f.host, &e1000, "vfio-pci", &error));
    g_assert_no_error(error);
    for (i = 0; i < G_N_ELEMENTS(unmanaged); i++) {
        hdPCIAddress addr = mgrtestAddr(unmanaged[i]);
        unsigned int group = 0;

        def = g_new0(hdHostdevDef, 1);
        def->addr = addr;
        g_ptr_array_add(defs, def);
        g_assert_true(hdPCIDeviceGetIOMMUGroup(f.host, &addr, &group, NULL));
        g_ptr_array_add(nodes, hdIOMMUGroupDevPath(f.host, group));
    }
    g_assert_true(hdManagerPrepare(f.mgr, "guest", defs, 0, &error));
    g_assert_no_error(error);
    g_ptr_array_add(nodes, g_strdup_printf("%s/dev/vfio/2", hdSimHostRoot(f.sim)));
    f.qemu = mgrtestStartQemu(nodes, MGRTEST_QEMU_EXITS);

    report = testDestroy(&f, NULL);
    g_assert_cmpuint(report->problems->len, ==, 0);
    g_assert_cmpuint(report->devices, ==, 4);
    g_assert_cmpuint(report->given_back, ==, 2);
    g_assert_cmpuint(report->stay, ==, 2);
    mgrtestAssertDriver(f.sim, g_ptr_array_index(gpus, 0), "nvidia");
    mgrtestAssertDriver(f.sim, unmanaged[0], "vfio-pci");
    mgrtestAssertDriver(f.sim, unmanaged[1], "vfio-pci");
    tracked = hdManagerListTracked(f.mgr);
    g_assert_cmpuint(tracked->len, ==, 1);
    g_assert_true(hdPCIAddressEqual(&((hdDeviceInfo *)g_ptr_array_index(tracked, 0))->addr,
                                    &nic));
    g_assert_cmpuint(hdSimHostViolations(f.sim), ==, 0);
    fixtureStop(&f);
}


int
main(int argc, char **argv)
{
    const char *skip = hdTestSetup(&argc, &argv);

    HD_TEST_REQUIRE_SIMHOST(skip);
    g_test_add_func("/destroy/many", testDestroyMany);
    g_test_add_func("/destroy/side-by-side", testDestroySideBySide);
    g_test_add_func("/destroy/without-adoption", testDestroyWithoutAdoption);
    g_test_add_data_func("/destroy/ignores-sigterm", &terminateIgnored, testDestroyTerminate);
    g_test_add_data_func("/destroy/qemu-exits-while-waiting", &terminateSlow,
                         testDestroyTerminate);
    g_test_add_data_func("/destroy/start-time-checked", &terminateStartTime,
                         testDestroyTerminate);
    g_test_add_data_func("/destroy/qemu-verified", &terminateVerified, testDestroyTerminate);
    g_test_add_func("/destroy/pid-reused", testDestroyPidReused);
    g_test_add_func("/destroy/not-qemu", testDestroyNotQemu);
    g_test_add_func("/destroy/one-group-hangs", testDestroyOneGroupHangs);
    g_test_add_func("/destroy/sibling-of-no-one", testDestroySiblingOfNoOne);
    g_test_add_func("/destroy/unmanaged-stay", testDestroyUnmanagedStay);
    g_test_add_func("/destroy/given-back-meanwhile", testDestroyGivenBackMeanwhile);
    return g_test_run();
}
