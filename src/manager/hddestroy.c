/*
 * hddestroy.c: tear a guest down and give every IOMMU group back, in parallel
 *
 * Naming: an hdDestroyRun is one destroy (shared by its workers, reference
 * counted because a worker stuck in the kernel outlives the call); an
 * hdDestroyJob is the pipeline of one IOMMU group.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <signal.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "hdinternal.h"
#include "hdfile.h"
#include "hdholders.h"
#include "hdprocess.h"
#include "hostdev/destroy.h"
#include "hostdev/release.h"

#define HD_DESTROY_TERM_WAIT_MS 10000
#define HD_DESTROY_KILL_WAIT_MS 30000
#define HD_DESTROY_RELEASE_WAIT_MS 10000
#define HD_DESTROY_WORKERS 64
/* libvirt's allowance per hostdev on top of its fixed waits */
#define HD_DESTROY_MIN_PER_DEVICE_MS 2000
#define HD_DESTROY_MEASURED_FACTOR 3
#define HD_DESTROY_TIMES_FILE "release-times.json"

typedef struct _hdDestroyRun hdDestroyRun;

typedef struct {
    hdDestroyRun *run;
    unsigned int group;
    guint devices;
    const char *step;          /* what it is doing, for reports; under run->lock */
    gboolean done;
} hdDestroyJob;

struct _hdDestroyRun {
    gint refs;
    hdManager *mgr;
    GMutex lock;
    GCond cond;
    GPtrArray *jobs;           /* hdDestroyJob * */
    guint total;
    guint given_back;
    guint outstanding;
    gint64 deadline;           /* monotonic, us; pushed back by progress */
    guint per_device_ms;
    guint release_wait_ms;
    guint slowest_ms;          /* slowest give-back per device, measured */
    hdDestroyProgressFunc progress;
    gpointer progress_opaque;
    GPtrArray *problems;       /* char * */
};


void
hdDestroyReportFree(hdDestroyReport *report)
{
    if (!report)
        return;
    g_clear_pointer(&report->problems, g_ptr_array_unref);
    g_free(report);
}


static hdDestroyRun *
hdDestroyRunRef(hdDestroyRun *run)
{
    g_atomic_int_inc(&run->refs);
    return run;
}


static void
hdDestroyRunUnref(hdDestroyRun *run)
{
    if (!g_atomic_int_dec_and_test(&run->refs))
        return;
    g_ptr_array_unref(run->jobs);
    g_ptr_array_unref(run->problems);
    g_mutex_clear(&run->lock);
    g_cond_clear(&run->cond);
    hdManagerFree(run->mgr);
    g_free(run);
}


static char *
hdDestroyTimesPath(hdManager *mgr)
{
    return g_build_filename(hdManagerGetStateDir(mgr), HD_DESTROY_TIMES_FILE, NULL);
}


/* The slowest per-device give-back measured by the last destroy, 0 if none. */
static guint
hdDestroyLoadSlowest(hdManager *mgr)
{
    g_autofree char *path = hdDestroyTimesPath(mgr);
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonNode *root;

    if (!json_parser_load_from_file(parser, path, NULL) ||
        !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root))
        return 0;
    return (guint)CLAMP(json_object_get_int_member_with_default(json_node_get_object(root),
                                                                "per_device_ms", 0),
                        0, G_MAXUINT / HD_DESTROY_MEASURED_FACTOR);
}


static void
hdDestroySaveSlowest(hdManager *mgr, guint slowest_ms)
{
    g_autofree char *path = hdDestroyTimesPath(mgr);
    g_autofree char *data = g_strdup_printf("{\"per_device_ms\": %u}\n", slowest_ms);
    g_autoptr(GError) local = NULL;

    if (!hdFileWriteAtomic(path, data, strlen(data), 0600, &local))
        g_warning(_("cannot record release times: %1$s"), local->message);
}


guint
hdDestroyPerDeviceMs(hdManager *mgr)
{
    return MAX(HD_DESTROY_MIN_PER_DEVICE_MS,
               HD_DESTROY_MEASURED_FACTOR * hdDestroyLoadSlowest(mgr));
}


static guint
hdDestroyScaled(guint base_ms, guint per_device_ms, guint devices)
{
    return hdReleaseDeadlineMs(base_ms, per_device_ms, devices);
}


/* Wait for QEMU to exit after SIGKILL.  The kernel releases its devices
 * before the process is gone (about a second each): as long as the process
 * keeps closing files, the wait goes on. */
static gboolean
hdDestroyWaitKilled(int pidfd, pid_t pid, guint wait_ms, guint per_device_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)wait_ms * 1000;
    int fds = hdProcessCountFds(HD_PROC_ROOT, pid);

    while (g_get_monotonic_time() < deadline) {
        int now;

        if (hdPidfdWait(pidfd, 250))
            return TRUE;
        now = hdProcessCountFds(HD_PROC_ROOT, pid);
        if (now >= 0 && now < fds)
            deadline = MAX(deadline, g_get_monotonic_time() + (gint64)per_device_ms * 1000);
        fds = now;
    }
    return hdPidfdWait(pidfd, 0);
}


/* Step 1: end QEMU.  SIGTERM lets it shut down; the waits scale with the
 * devices the kernel releases while the process exits. */
static gboolean
hdDestroyTerminate(const char *domain, pid_t pid, guint devices,
                   const hdDestroyOptions *opts, guint per_device_ms,
                   hdDestroyReport *report, GError **error)
{
    g_auto(hdFd) pidfd = -1;
    guint term_ms = hdDestroyScaled(opts->term_wait_ms ? opts->term_wait_ms :
                                    HD_DESTROY_TERM_WAIT_MS, per_device_ms, devices);
    guint kill_ms = hdDestroyScaled(opts->kill_wait_ms ? opts->kill_wait_ms :
                                    HD_DESTROY_KILL_WAIT_MS, per_device_ms, devices);

    if (pid <= 0)
        return TRUE;
    if (!hdPidfdOpen(pid, &pidfd, error))
        return FALSE;
    if (pidfd < 0)
        return TRUE;
    if (!hdPidfdSendSignal(pidfd, pid, SIGTERM, error))
        return FALSE;
    if (hdPidfdWait(pidfd, term_ms))
        return TRUE;

    report->killed = TRUE;
    if (!hdPidfdSendSignal(pidfd, pid, SIGKILL, error))
        return FALSE;
    if (hdDestroyWaitKilled(pidfd, pid, kill_ms, per_device_ms))
        return TRUE;
    hdErrorSet(error, HD_ERROR_TIMEOUT,
               _("QEMU (pid %1$d) of domain %2$s did not exit %3$u s after SIGKILL; its "
                 "devices stay assigned"),
               (int)pid, domain, kill_ms / 1000);
    return FALSE;
}


static void
hdDestroyJobSetStep(hdDestroyJob *job, const char *step)
{
    g_mutex_lock(&job->run->lock);
    job->step = step;
    g_mutex_unlock(&job->run->lock);
}


static guint
hdDestroyRemainingMs(hdDestroyRun *run)
{
    gint64 left;

    g_mutex_lock(&run->lock);
    left = (run->deadline - g_get_monotonic_time()) / 1000;
    g_mutex_unlock(&run->lock);
    return left > 0 ? (guint)MIN(left, G_MAXUINT) : 0;
}


/* Pipeline step 1: wait until no process holds the group (QEMU is gone,
 * but another process may still have it open). */
static gboolean
hdDestroyJobWaitFree(hdDestroyJob *job, GError **error)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(hdReleaseWatch) watch = NULL;
    hdReleaseWatchOptions opts = { 0 };

    watch = hdReleaseWatchNewGroup(hdManagerGetHost(job->run->mgr), job->group, &opts, ctx,
                                   NULL, NULL, error);
    if (!watch)
        return FALSE;
    return hdReleaseWatchIsFree(watch) ||
        hdReleaseWatchWait(watch, hdDestroyRemainingMs(job->run), error);
}


/* A job is done: count its devices, push the deadline back (the kernel is
 * making progress), tell the caller. */
static void
hdDestroyJobFinish(hdDestroyJob *job, gboolean given_back, gint64 started, char *problem)
{
    hdDestroyRun *run = job->run;
    guint elapsed_ms = (guint)((g_get_monotonic_time() - started) / 1000);

    g_mutex_lock(&run->lock);
    job->done = TRUE;
    run->outstanding--;
    if (problem)
        g_ptr_array_add(run->problems, problem);
    if (given_back) {
        run->given_back += job->devices;
        run->slowest_ms = MAX(run->slowest_ms, elapsed_ms / MAX(job->devices, 1));
        run->deadline = MAX(run->deadline, g_get_monotonic_time() +
                            (gint64)hdDestroyScaled(run->release_wait_ms, run->per_device_ms,
                                                    run->total - run->given_back) * 1000);
        if (run->progress)
            run->progress(run->given_back, run->total, run->progress_opaque);
    }
    g_cond_broadcast(&run->cond);
    g_mutex_unlock(&run->lock);
}


/* One group's pipeline, on a worker thread: wait free, then the manager's
 * give-back (reset, unbind, rebind, events for the cleanup layers). */
static void
hdDestroyJobRun(gpointer data, gpointer user_data)
{
    hdDestroyJob *job = data;
    g_autoptr(GError) local = NULL;
    gint64 started = g_get_monotonic_time();
    gboolean given_back = FALSE;
    char *problem = NULL;

    if (!hdDestroyJobWaitFree(job, &local)) {
        problem = g_strdup_printf(_("IOMMU group %1$u stays on the inactive list: %2$s"),
                                  job->group, local->message);
    } else {
        hdDestroyJobSetStep(job, _("giving it back"));
        if (!hdManagerGiveBackGroup(job->run->mgr, job->group, &given_back, &local))
            problem = g_strdup_printf(_("IOMMU group %1$u stays on the inactive list: %2$s"),
                                      job->group, local->message);
        else if (!given_back)
            problem = g_strdup_printf(_("IOMMU group %1$u stays on the inactive list: it is "
                                        "not free yet"), job->group);
    }
    hdDestroyJobFinish(job, given_back, started, problem);
    hdDestroyRunUnref(job->run);
}


/* The devices of each group that wait to be given back. */
static void
hdDestroyAddJobs(hdDestroyRun *run, GArray *groups)
{
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(run->mgr);
    guint i;
    guint j;

    for (i = 0; i < groups->len; i++) {
        hdDestroyJob *job = g_new0(hdDestroyJob, 1);

        job->run = run;
        job->group = g_array_index(groups, unsigned int, i);
        job->step = _("waiting until no process holds it");
        for (j = 0; j < tracked->len; j++) {
            hdDeviceInfo *info = g_ptr_array_index(tracked, j);

            job->devices += info->group == job->group && info->state == HD_DEVICE_INACTIVE;
        }
        run->total += job->devices;
        g_ptr_array_add(run->jobs, job);
    }
}


/* Wait for the jobs until they are done or the deadline (pushed back by
 * each group that comes home) passes; report the ones still running. */
static void
hdDestroyWaitJobs(hdDestroyRun *run)
{
    guint i;

    g_mutex_lock(&run->lock);
    while (run->outstanding > 0) {
        if (!g_cond_wait_until(&run->cond, &run->lock, run->deadline) &&
            g_get_monotonic_time() >= run->deadline)
            break;
    }
    for (i = 0; i < run->jobs->len; i++) {
        hdDestroyJob *job = g_ptr_array_index(run->jobs, i);

        if (!job->done)
            g_ptr_array_add(run->problems,
                            g_strdup_printf(_("IOMMU group %1$u is still %2$s; it will be given "
                                              "back when the kernel is done"),
                                            job->group, job->step));
    }
    g_mutex_unlock(&run->lock);
}


/* Step 2: give every group back, in parallel. */
static void
hdDestroyGiveBack(hdManager *mgr, GArray *groups, const hdDestroyOptions *opts,
                  guint per_device_ms, hdDestroyReport *report)
{
    hdDestroyRun *run = g_new0(hdDestroyRun, 1);
    g_autoptr(GError) local = NULL;
    GThreadPool *pool;
    guint i;

    run->refs = 1;
    run->mgr = hdManagerRef(mgr);
    g_mutex_init(&run->lock);
    g_cond_init(&run->cond);
    run->jobs = g_ptr_array_new_with_free_func(g_free);
    run->problems = g_ptr_array_new_with_free_func(g_free);
    run->per_device_ms = per_device_ms;
    run->release_wait_ms = opts->release_wait_ms ? opts->release_wait_ms :
        HD_DESTROY_RELEASE_WAIT_MS;
    run->progress = opts->progress;
    run->progress_opaque = opts->progress_opaque;
    hdDestroyAddJobs(run, groups);
    /* Releases may be serialized by the kernel: allow for all of them. */
    run->deadline = g_get_monotonic_time() +
        (gint64)hdDestroyScaled(run->release_wait_ms, per_device_ms, run->total) * 1000;
    run->outstanding = run->jobs->len;

    pool = g_thread_pool_new(hdDestroyJobRun, NULL,
                             MAX(1, MIN(opts->workers ? opts->workers : HD_DESTROY_WORKERS,
                                        run->jobs->len)),
                             FALSE, &local);
    for (i = 0; pool && i < run->jobs->len; i++) {
        hdDestroyRunRef(run);
        g_thread_pool_push(pool, g_ptr_array_index(run->jobs, i), NULL);
    }
    if (!pool) {
        g_ptr_array_add(run->problems, g_strdup(local->message));
        run->outstanding = 0;
    }
    hdDestroyWaitJobs(run);
    /* Jobs stuck in the kernel finish in the background; the pool goes when
     * they are done. */
    if (pool)
        g_thread_pool_free(pool, FALSE, FALSE);

    g_mutex_lock(&run->lock);
    report->given_back = run->given_back;
    g_ptr_array_extend_and_steal(report->problems, g_steal_pointer(&run->problems));
    run->problems = g_ptr_array_new_with_free_func(g_free);
    if (run->slowest_ms)
        hdDestroySaveSlowest(mgr, run->slowest_ms);
    g_mutex_unlock(&run->lock);
    hdDestroyRunUnref(run);
}


/* The devices the kernel releases when @domain's QEMU goes: every tracked
 * member of the groups the domain uses (siblings detached for the whole
 * group included). */
static guint
hdDestroyCountDevices(hdManager *mgr, const char *domain)
{
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(mgr);
    g_autoptr(GHashTable) groups = g_hash_table_new(g_direct_hash, g_direct_equal);
    guint count = 0;
    guint i;

    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);

        if (g_strcmp0(info->domain, domain) == 0)
            g_hash_table_add(groups, GUINT_TO_POINTER(info->group + 1));
    }
    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);

        count += g_hash_table_contains(groups, GUINT_TO_POINTER(info->group + 1));
    }
    return count;
}


gboolean
hdDestroyDomain(hdManager *mgr, const char *domain, pid_t pid, const hdDestroyOptions *opts,
                hdDestroyReport **report, GError **error)
{
    static const hdDestroyOptions defaults = { 0 };
    g_autoptr(hdDestroyReport) rep = g_new0(hdDestroyReport, 1);
    g_autoptr(GArray) groups = NULL;
    guint per_device_ms;
    gint64 start = g_get_monotonic_time();

    if (!opts)
        opts = &defaults;
    per_device_ms = opts->per_device_ms ? opts->per_device_ms : hdDestroyPerDeviceMs(mgr);
    rep->problems = g_ptr_array_new_with_free_func(g_free);
    rep->devices = hdDestroyCountDevices(mgr, domain);

    if (!hdDestroyTerminate(domain, pid, rep->devices, opts, per_device_ms, rep, error))
        return FALSE;
    rep->terminate_s = (g_get_monotonic_time() - start) / 1e6;

    start = g_get_monotonic_time();
    if (!hdManagerLeaveDomain(mgr, domain, &groups, error))
        return FALSE;
    hdDestroyGiveBack(mgr, groups, opts, per_device_ms, rep);
    rep->give_back_s = (g_get_monotonic_time() - start) / 1e6;
    if (report)
        *report = g_steal_pointer(&rep);
    return TRUE;
}
