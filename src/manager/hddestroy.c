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
#include "hdcrash.h"
#include "hdfile.h"
#include "hdholders.h"
#include "hdprocess.h"
#include "hostdev/destroy.h"
#include "hostdev/release.h"

#define HD_DESTROY_TERM_WAIT_MS 10000
#define HD_DESTROY_KILL_WAIT_MS 30000
#define HD_DESTROY_RELEASE_WAIT_MS 10000
#define HD_DESTROY_WORKERS 64
/* How soon a group that is free but not given back is looked at again. */
#define HD_DESTROY_RETRY_MS 50
/* libvirt's allowance per hostdev on top of its fixed waits */
#define HD_DESTROY_MIN_PER_DEVICE_MS 2000
#define HD_DESTROY_MEASURED_FACTOR 3
#define HD_DESTROY_TIMES_FILE "release-times.json"

typedef struct _hdDestroyRun hdDestroyRun;

typedef struct {
    hdDestroyRun *run;
    unsigned int group;
    guint devices;
    GArray *fds;               /* int: QEMU's files of this group, adopted */
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


static void
hdDestroyCloseFds(GArray *fds)
{
    guint i;

    for (i = 0; i < fds->len; i++)
        close(g_array_index(fds, int, i));
    g_array_unref(fds);
}


static void
hdDestroyJobFree(hdDestroyJob *job)
{
    g_clear_pointer(&job->fds, g_array_unref);
    g_free(job);
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
hdDestroyTerminate(const char *domain, int pidfd, pid_t pid, guint devices,
                   const hdDestroyOptions *opts, guint per_device_ms,
                   hdDestroyReport *report, GError **error)
{
    guint term_ms = hdDestroyScaled(opts->term_wait_ms ? opts->term_wait_ms :
                                    HD_DESTROY_TERM_WAIT_MS, per_device_ms, devices);
    guint kill_ms = hdDestroyScaled(opts->kill_wait_ms ? opts->kill_wait_ms :
                                    HD_DESTROY_KILL_WAIT_MS, per_device_ms, devices);

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


/* Pipeline step 1: wait until nobody holds the group and the kernel is
 * done releasing it (QEMU is gone, but another process may still have it
 * open).  Past the destroy's deadline the wait goes on in the background:
 * the group is reported by hdDestroyWaitJobs, never rebound under a
 * holder, and given back as soon as it is free. */
static gboolean
hdDestroyJobWaitFree(hdDestroyJob *job, GError **error)
{
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(hdReleaseWatch) watch = NULL;
    /* What is usually left is the kernel finishing its releases, a matter
     * of device resets: look often. */
    hdReleaseWatchOptions opts = { .poll_max_ms = 50 };

    watch = hdReleaseWatchNewGroup(hdManagerGetHost(job->run->mgr), job->group, &opts, ctx,
                                   NULL, NULL, error);
    if (!watch)
        return FALSE;
    while (!hdReleaseWatchIsFree(watch)) {
        g_autoptr(GError) local = NULL;

        if (hdReleaseWatchWait(watch, MAX(hdDestroyRemainingMs(job->run), 1000), &local))
            break;
        if (!g_error_matches(local, HD_ERROR, HD_ERROR_TIMEOUT)) {
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
    }
    return TRUE;
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


/* How many devices of @group wait to be given back. */
static guint
hdDestroyCountGiveBack(GPtrArray *tracked, unsigned int group)
{
    guint count = 0;
    guint i;

    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);

        count += info->group == group && info->state == HD_DEVICE_INACTIVE && info->give_back;
    }
    return count;
}


/* Give the group back if it is free.  A group that has nothing left to
 * give back went home by another way (a give-back this destroy raced
 * with, from an earlier destroy still running in the background or the
 * pending sweep): its devices are home too. */
static gboolean
hdDestroyJobTryGiveBack(hdDestroyJob *job, gboolean *given_back, GError **error)
{
    g_autoptr(GPtrArray) tracked = NULL;

    hdDestroyJobSetStep(job, _("giving it back"));
    if (!hdManagerGiveBackGroup(job->run->mgr, job->group, given_back, error))
        return FALSE;
    if (!*given_back) {
        tracked = hdManagerListTracked(job->run->mgr);
        *given_back = hdDestroyCountGiveBack(tracked, job->group) == 0;
    }
    return TRUE;
}


/* Pipeline steps 2 and 3: the manager's give-back (it checks itself that
 * no process holds the group); if one does, wait until it lets go (inotify,
 * pidfd, polling) and try again.  In the usual case, QEMU gone, /proc is
 * scanned once, not twice. */
static gboolean
hdDestroyJobGiveBack(hdDestroyJob *job, gboolean *given_back, GError **error)
{
    if (!hdDestroyJobTryGiveBack(job, given_back, error))
        return FALSE;
    if (*given_back)
        return TRUE;

    /* Free, yet not given back: another thread is giving it back right
     * now (the group is busy meanwhile), or somebody took it again.  Look
     * again until the deadline. */
    do {
        hdDestroyJobSetStep(job, _("waiting until no process holds it"));
        if (!hdDestroyJobWaitFree(job, error) ||
            !hdDestroyJobTryGiveBack(job, given_back, error))
            return FALSE;
        if (*given_back)
            return TRUE;
        g_usleep(HD_DESTROY_RETRY_MS * 1000);
    } while (hdDestroyRemainingMs(job->run) > 0);
    hdErrorSet(error, HD_ERROR_IN_USE, _("it is not free yet"));
    return FALSE;
}


/* One group's pipeline, on a worker thread: close the files adopted from
 * QEMU (this group's release then runs in this worker, side by side with
 * the other groups'), then give the group back. */
static void
hdDestroyJobRun(gpointer data, gpointer user_data)
{
    hdDestroyJob *job = data;
    g_autoptr(GError) local = NULL;
    gint64 started = g_get_monotonic_time();
    gboolean given_back = FALSE;
    char *problem = NULL;
    guint i;

    for (i = 0; job->fds && i < job->fds->len; i++)
        close(g_array_index(job->fds, int, i));
    if (!hdDestroyJobGiveBack(job, &given_back, &local))
        problem = g_strdup_printf(_("IOMMU group %1$u stays on the inactive list: %2$s"),
                                  job->group, local->message);
    hdDestroyJobFinish(job, given_back, started, problem);
    hdDestroyRunUnref(job->run);
}


/* A job for each group with devices to give back, with the files of it
 * adopted from QEMU (@adopted: group + 1 -> GArray of int, taken).  A
 * group whose devices all stay on vfio-pci (unmanaged) has nothing to
 * wait for: its files are closed at once. */
static void
hdDestroyAddJobs(hdDestroyRun *run, GArray *groups, GHashTable *adopted)
{
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(run->mgr);
    guint i;

    for (i = 0; i < groups->len; i++) {
        unsigned int group = g_array_index(groups, unsigned int, i);
        guint devices = hdDestroyCountGiveBack(tracked, group);
        hdDestroyJob *job;

        if (devices == 0) {
            g_hash_table_remove(adopted, GUINT_TO_POINTER(group + 1));
            continue;
        }
        job = g_new0(hdDestroyJob, 1);
        job->run = run;
        job->group = group;
        job->devices = devices;
        job->step = _("waiting until no process holds it");
        g_hash_table_steal_extended(adopted, GUINT_TO_POINTER(group + 1), NULL,
                                    (gpointer *)&job->fds);
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
hdDestroyGiveBack(hdManager *mgr, GArray *groups, GHashTable *adopted,
                  const hdDestroyOptions *opts, guint per_device_ms, hdDestroyReport *report)
{
    hdDestroyRun *run = g_new0(hdDestroyRun, 1);
    g_autoptr(GError) local = NULL;
    GThreadPool *pool;
    guint i;

    run->refs = 1;
    run->mgr = hdManagerRef(mgr);
    g_mutex_init(&run->lock);
    g_cond_init(&run->cond);
    run->jobs = g_ptr_array_new_with_free_func((GDestroyNotify)hdDestroyJobFree);
    run->problems = g_ptr_array_new_with_free_func(g_free);
    run->per_device_ms = per_device_ms;
    run->release_wait_ms = opts->release_wait_ms ? opts->release_wait_ms :
        HD_DESTROY_RELEASE_WAIT_MS;
    run->progress = opts->progress;
    run->progress_opaque = opts->progress_opaque;
    hdDestroyAddJobs(run, groups, adopted);
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
        for (i = 0; i < run->jobs->len; i++) {
            hdDestroyJob *job = g_ptr_array_index(run->jobs, i);

            if (job->fds)
                hdDestroyCloseFds(g_steal_pointer(&job->fds));
        }
        run->outstanding = 0;
    }
    hdDestroyWaitJobs(run);
    /* Jobs stuck in the kernel finish in the background; the pool goes when
     * they are done. */
    if (pool)
        g_thread_pool_free(pool, FALSE, FALSE);

    g_mutex_lock(&run->lock);
    report->given_back = run->given_back;
    report->stay = report->devices - MIN(report->devices, run->total);
    g_ptr_array_extend_and_steal(report->problems, g_steal_pointer(&run->problems));
    run->problems = g_ptr_array_new_with_free_func(g_free);
    if (run->slowest_ms)
        hdDestroySaveSlowest(mgr, run->slowest_ms);
    g_mutex_unlock(&run->lock);
    hdDestroyRunUnref(run);
}


/* The groups @domain uses (group + 1, a set). */
static GHashTable *
hdDestroyDomainGroups(GPtrArray *tracked, const char *domain)
{
    GHashTable *groups = g_hash_table_new(g_direct_hash, g_direct_equal);
    guint i;

    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);

        if (g_strcmp0(info->domain, domain) == 0)
            g_hash_table_add(groups, GUINT_TO_POINTER(info->group + 1));
    }
    return groups;
}


/* The devices the kernel releases when @domain's QEMU goes: every tracked
 * member of the groups the domain uses (siblings detached for the whole
 * group included). */
static guint
hdDestroyCountDevices(GPtrArray *tracked, GHashTable *groups)
{
    guint count = 0;
    guint i;

    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);

        count += g_hash_table_contains(groups, GUINT_TO_POINTER(info->group + 1));
    }
    return count;
}


/* path -> group + 1 for the files that hold each of @groups. */
static GHashTable *
hdDestroyHolderPaths(hdManager *mgr, GHashTable *groups)
{
    GHashTable *paths = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    GHashTableIter iter;
    gpointer key;

    g_hash_table_iter_init(&iter, groups);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        g_autoptr(GError) local = NULL;
        g_auto(GStrv) files = hdGroupHolderPaths(hdManagerGetHost(mgr),
                                                 GPOINTER_TO_UINT(key) - 1, &local);
        guint i;

        for (i = 0; files && files[i]; i++)
            g_hash_table_insert(paths, g_strdup(files[i]), key);
    }
    return paths;
}


/* Step 0: may @pid (behind @pidfd) be signalled as @domain's QEMU?  Never
 * pid 1 nor this process; with opts->verify_qemu only a process of the
 * right uid that holds one of the domain's VFIO files (@paths) or is the
 * peer of its QMP socket.  The checks read /proc/PID, the signals go
 * through the pidfd opened before them: a process that took the pid since
 * is never signalled. */
static gboolean
hdDestroyCheckQemu(const char *domain, pid_t pid, GHashTable *paths,
                   const hdDestroyOptions *opts, GError **error)
{
    g_autofree const char **files = NULL;
    g_autoptr(GArray) holders = NULL;
    g_autoptr(GError) local = NULL;

    if (!hdProcessCheckSignallable(HD_PROC_ROOT, pid, opts->verify_qemu ? opts->uid : -1,
                                   error))
        return FALSE;
    if (!opts->verify_qemu || (opts->monitor_pid > 0 && pid == opts->monitor_pid))
        return TRUE;
    files = (const char **)g_hash_table_get_keys_as_array(paths, NULL);
    holders = hdHoldersFind(HD_PROC_ROOT, pid, files, &local);
    if (holders && holders->len > 0)
        return TRUE;
    hdErrorSet(error, HD_ERROR_PERMISSION,
               _("process %1$d is not the QEMU of domain %2$s: it holds none of the domain's "
                 "VFIO groups and is not the peer of its QMP socket; it is not signalled"),
               (int)pid, domain);
    return FALSE;
}


/* Step 0: take over QEMU's VFIO files (pidfd_getfd), so that its exit does
 * not release the devices one after the other from its dying task.  Group
 * files and cdevs (@paths: path -> group + 1) go to their group's pipeline
 * (*adopted: group + 1 -> GArray of int); vfio device fds (anonymous
 * inodes: their group cannot be told) are closed side by side in
 * *device_fds' workers. */
static guint
hdDestroyAdopt(int pidfd, pid_t pid, GHashTable *paths, GHashTable *adopted, GArray *device_fds)
{
    g_autofree char *fddir = g_strdup_printf("%s/%d/fd", HD_PROC_ROOT, (int)pid);
    g_autoptr(GDir) dir = g_dir_open(fddir, 0, NULL);
    const char *name;
    guint count = 0;

    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *link = g_build_filename(fddir, name, NULL);
        g_autofree char *target = g_file_read_link(link, NULL);
        gpointer group = target ? g_hash_table_lookup(paths, target) : NULL;
        gboolean device = g_strcmp0(target, "anon_inode:[vfio-device]") == 0;
        GArray *fds;
        int fd;

        if (!group && !device)
            continue;
        if ((fd = hdPidfdGetFd(pidfd, (int)g_ascii_strtoll(name, NULL, 10))) < 0) {
            /* No ptrace rights over QEMU, or an old kernel: the slow way. */
            g_debug("cannot adopt fd %s of QEMU %d: %s", name, (int)pid, g_strerror(errno));
            break;
        }
        count++;
        if (device) {
            g_array_append_val(device_fds, fd);
            continue;
        }
        if (!(fds = g_hash_table_lookup(adopted, group))) {
            fds = g_array_new(FALSE, FALSE, sizeof(int));
            g_hash_table_insert(adopted, group, fds);
        }
        g_array_append_val(fds, fd);
    }
    return count;
}


static void
hdDestroyCloseFdJob(gpointer data, gpointer user_data)
{
    close(GPOINTER_TO_INT(data));
}


/* Close the adopted vfio device fds side by side: each runs its device's
 * release (the reset) in its own worker. */
static void
hdDestroyCloseDeviceFds(GArray *fds, guint workers)
{
    GThreadPool *pool;
    guint i;

    if (fds->len == 0)
        return;
    if (!(pool = g_thread_pool_new(hdDestroyCloseFdJob, NULL, MAX(1, MIN(workers, fds->len)),
                                   FALSE, NULL))) {
        for (i = 0; i < fds->len; i++)
            close(g_array_index(fds, int, i));
        return;
    }
    for (i = 0; i < fds->len; i++)
        g_thread_pool_push(pool, GINT_TO_POINTER(g_array_index(fds, int, i)), NULL);
    /* The group pipelines wait for the releases themselves. */
    g_thread_pool_free(pool, FALSE, FALSE);
}


gboolean
hdDestroyDomain(hdManager *mgr, const char *domain, pid_t pid, const hdDestroyOptions *opts,
                hdDestroyReport **report, GError **error)
{
    static const hdDestroyOptions defaults = { 0 };
    g_autoptr(hdDestroyReport) rep = g_new0(hdDestroyReport, 1);
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(mgr);
    g_autoptr(GHashTable) groups = hdDestroyDomainGroups(tracked, domain);
    g_autoptr(GHashTable) adopted = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                                          (GDestroyNotify)hdDestroyCloseFds);
    g_autoptr(GArray) device_fds = g_array_new(FALSE, FALSE, sizeof(int));
    g_autoptr(GHashTable) paths = NULL;
    g_autoptr(GArray) left = NULL;
    g_auto(hdFd) pidfd = -1;
    guint per_device_ms;
    guint workers;
    gint64 start = g_get_monotonic_time();
    gboolean ok;

    if (!opts)
        opts = &defaults;
    per_device_ms = opts->per_device_ms ? opts->per_device_ms : hdDestroyPerDeviceMs(mgr);
    workers = opts->workers ? opts->workers : HD_DESTROY_WORKERS;
    rep->problems = g_ptr_array_new_with_free_func(g_free);
    rep->devices = hdDestroyCountDevices(tracked, groups);

    if (pid > 0 && !hdPidfdOpen(pid, &pidfd, error))
        return FALSE;
    /* Checked after the pidfd is open: it names the process we checked. */
    if (pidfd >= 0 && opts->pid_start_time &&
        hdProcessStartTime(HD_PROC_ROOT, pid) != opts->pid_start_time) {
        g_info("process %d is not the QEMU of domain %s any more: it is gone", (int)pid,
               domain);
        close(pidfd);
        pidfd = -1;
        pid = 0;
    }
    if (pidfd >= 0) {
        paths = hdDestroyHolderPaths(mgr, groups);
        if (!hdDestroyCheckQemu(domain, pid, paths, opts, error))
            return FALSE;
    }
    if (pidfd >= 0 && !opts->no_adopt)
        rep->adopted = hdDestroyAdopt(pidfd, pid, paths, adopted, device_fds);
    hdCrashPoint("destroy-adopted");

    /* Step 1: end QEMU; on failure the adopted files go back to nobody (the
     * devices stay assigned, held by QEMU). */
    ok = hdDestroyTerminate(domain, pidfd, pid, rep->devices, opts, per_device_ms, rep, error);
    rep->terminate_s = (g_get_monotonic_time() - start) / 1e6;
    if (!ok) {
        hdDestroyCloseFds(g_steal_pointer(&device_fds));
        return FALSE;
    }

    /* Step 2: leave the domain; step 3: the groups, in parallel. */
    hdCrashPoint("destroy-ended");
    start = g_get_monotonic_time();
    hdDestroyCloseDeviceFds(device_fds, workers);
    if (!hdManagerLeaveDomain(mgr, domain, &left, error))
        return FALSE;
    hdDestroyGiveBack(mgr, left, adopted, opts, per_device_ms, rep);
    rep->give_back_s = (g_get_monotonic_time() - start) / 1e6;
    if (report)
        *report = g_steal_pointer(&rep);
    return TRUE;
}
