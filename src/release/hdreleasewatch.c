/*
 * hdreleasewatch.c: wait, without spinning, until no process holds a group
 *
 * One GSource per watch carries every wake-up: the inotify fd, the pidfd
 * and a ready time for the next poll.  Whatever woke it, the answer comes
 * from /proc (hdholders.c): an inotify close event says that *a* file was
 * closed, not that the last holder let go.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/syscall.h>

#include "hdinternal.h"
#include "hdholders.h"
#include "hostdev/release.h"

#define HD_RELEASE_POLL_MIN_MS 10
#define HD_RELEASE_POLL_MAX_MS 1000
/* Once a deadline was missed the holder may take long: poll less. */
#define HD_RELEASE_POLL_BACKGROUND_MS 5000

/* Close of a file open for reading or for writing; the file's removal
 * (its group left vfio-pci) is worth a look too. */
#define HD_RELEASE_INOTIFY_MASK \
    (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_DELETE_SELF | IN_ATTRIB)

typedef struct {
    GSource base;
    hdReleaseWatch *watch;
} hdReleaseWatchSource;

struct _hdReleaseWatch {
    GStrv paths;
    hdHost *host;                /* group watches: probe the group node */
    unsigned int group;
    char *proc_root;
    pid_t pid;                   /* 0: none, or it exited */
    guint poll_ms;
    guint poll_min_ms;
    guint poll_max_ms;
    GMainContext *ctx;
    GSource *source;             /* NULL once free */
    int inotify_fd;
    GArray *inotify_wds;         /* int: what to remove before reuse */
    gpointer inotify_tag;
    int pidfd;
    gpointer pidfd_tag;
    gboolean free_;
    guint checks;
    hdReleaseFreeFunc func;
    gpointer opaque;
    gboolean in_func;            /* hdReleaseWatchFree must wait */
    gboolean freed;
};

/* Closing an inotify instance waits for an SRCU grace period in the kernel
 * (fsnotify_destroy_group), 10-20 ms measured: far too long on the main
 * loop.  Instances whose marks were removed are kept here for reuse. */
#define HD_RELEASE_INOTIFY_POOL_MAX 16
static GMutex hdReleaseInotifyLock;
static int hdReleaseInotifyPool[HD_RELEASE_INOTIFY_POOL_MAX];
static guint hdReleaseInotifyPoolLen;


guint
hdReleaseDeadlineMs(guint base_ms, guint per_device_ms, guint devices)
{
    guint64 total = (guint64)base_ms + (guint64)per_device_ms * devices;

    return (guint)MIN(total, G_MAXUINT);
}


static GArray *
hdReleaseWatchFindHolders(hdReleaseWatch *watch, pid_t pid, GError **error)
{
    return hdHoldersFind(watch->proc_root, pid, (const char *const *)watch->paths, error);
}


/* Whether a process still holds the files: the guest's QEMU first, then,
 * to conclude "free", every process.  A /proc that cannot be read counts
 * as held: nothing may be rebound on a guess. */
static gboolean
hdReleaseWatchHeld(hdReleaseWatch *watch)
{
    g_autoptr(GArray) pids = NULL;
    g_autoptr(GError) error = NULL;
    gboolean held = FALSE;

    watch->checks++;
    /* The group node's exclusive open sees every holder, a vfio device fd
     * alone included, and the kernel's release still running after the
     * last close: cheap, and first. */
    if (watch->host && hdGroupOpenProbe(watch->host, watch->group, &held) && held)
        return TRUE;
    if (watch->pid > 0) {
        pids = hdReleaseWatchFindHolders(watch, watch->pid, NULL);
        if (pids && pids->len > 0)
            return TRUE;
        g_clear_pointer(&pids, g_array_unref);
    }
    if (!(pids = hdReleaseWatchFindHolders(watch, 0, &error))) {
        g_warning(_("cannot tell who holds '%1$s': %2$s"), watch->paths[0], error->message);
        return TRUE;
    }
    return pids->len > 0;
}


static void
hdReleaseInotifyDrain(int fd)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}


static int
hdReleaseInotifyGet(void)
{
    int fd = -1;

    g_mutex_lock(&hdReleaseInotifyLock);
    if (hdReleaseInotifyPoolLen > 0)
        fd = hdReleaseInotifyPool[--hdReleaseInotifyPoolLen];
    g_mutex_unlock(&hdReleaseInotifyLock);
    if (fd >= 0)
        return fd;
    return inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
}


/* Give back an instance without its marks (removing one is cheap). */
static void
hdReleaseInotifyPut(int fd, GArray *wds)
{
    guint i;

    for (i = 0; i < wds->len; i++)
        inotify_rm_watch(fd, g_array_index(wds, int, i));
    g_array_set_size(wds, 0);
    hdReleaseInotifyDrain(fd);
    g_mutex_lock(&hdReleaseInotifyLock);
    if (hdReleaseInotifyPoolLen < HD_RELEASE_INOTIFY_POOL_MAX) {
        hdReleaseInotifyPool[hdReleaseInotifyPoolLen++] = fd;
        fd = -1;
    }
    g_mutex_unlock(&hdReleaseInotifyLock);
    if (fd >= 0)
        close(fd);
}


static void
hdReleaseWatchDropPidfd(hdReleaseWatch *watch)
{
    if (watch->pidfd_tag)
        g_source_remove_unix_fd(watch->source, watch->pidfd_tag);
    watch->pidfd_tag = NULL;
    if (watch->pidfd >= 0)
        close(watch->pidfd);
    watch->pidfd = -1;
}


static void
hdReleaseWatchStop(hdReleaseWatch *watch)
{
    if (watch->source) {
        watch->pidfd_tag = NULL;
        watch->inotify_tag = NULL;
        g_source_destroy(watch->source);
        g_clear_pointer(&watch->source, g_source_unref);
    }
    if (watch->pidfd >= 0)
        close(watch->pidfd);
    watch->pidfd = -1;
    if (watch->inotify_fd >= 0)
        hdReleaseInotifyPut(watch->inotify_fd, watch->inotify_wds);
    watch->inotify_fd = -1;
}


static gboolean
hdReleaseWatchDispatch(GSource *source, GSourceFunc callback, gpointer data)
{
    hdReleaseWatch *watch = ((hdReleaseWatchSource *)source)->watch;
    gint64 now = g_source_get_time(source);
    gint64 ready = g_source_get_ready_time(source);
    gboolean timer = ready >= 0 && now >= ready;

    if (watch->inotify_tag && g_source_query_unix_fd(source, watch->inotify_tag))
        hdReleaseInotifyDrain(watch->inotify_fd);
    /* QEMU exited: its fds are gone (a pidfd stays readable: drop it). */
    if (watch->pidfd_tag && g_source_query_unix_fd(source, watch->pidfd_tag)) {
        hdReleaseWatchDropPidfd(watch);
        watch->pid = 0;
    }

    if (hdReleaseWatchHeld(watch)) {
        /* A close or QEMU's exit that leaves the group held: usually the
         * kernel still releasing (EBUSY to the probe, with no event to
         * tell its end), a matter of milliseconds to seconds; look often
         * again rather than at the end of a long backoff. */
        watch->poll_ms = timer ? MIN(watch->poll_ms * 2, watch->poll_max_ms) :
            watch->poll_min_ms;
        g_source_set_ready_time(source, now + (gint64)watch->poll_ms * 1000);
        return G_SOURCE_CONTINUE;
    }

    /* Free: tell at once, then stop watching.  @func may free the watch:
     * hdReleaseWatchFree then leaves that to us. */
    watch->free_ = TRUE;
    g_source_destroy(source);
    if (watch->func) {
        watch->in_func = TRUE;
        watch->func(watch, watch->opaque);
        watch->in_func = FALSE;
    }
    if (watch->freed)
        hdReleaseWatchFree(watch);
    else
        hdReleaseWatchStop(watch);
    return G_SOURCE_REMOVE;
}


static GSourceFuncs hdReleaseWatchSourceFuncs = {
    .dispatch = hdReleaseWatchDispatch,
};


static void
hdReleaseWatchAddInotify(hdReleaseWatch *watch)
{
    guint i;

    if ((watch->inotify_fd = hdReleaseInotifyGet()) < 0) {
        g_debug("inotify unavailable (%s): polling", g_strerror(errno));
        return;
    }
    for (i = 0; watch->paths[i]; i++) {
        /* A file that is gone cannot be opened again; one still open from
         * before is found by the polls. */
        int wd = inotify_add_watch(watch->inotify_fd, watch->paths[i], HD_RELEASE_INOTIFY_MASK);

        if (wd >= 0)
            g_array_append_val(watch->inotify_wds, wd);
        else if (errno != ENOENT)
            g_debug("cannot watch %s (%s): polling", watch->paths[i], g_strerror(errno));
    }
    if (watch->inotify_wds->len == 0) {
        hdReleaseInotifyPut(watch->inotify_fd, watch->inotify_wds);
        watch->inotify_fd = -1;
        return;
    }
    watch->inotify_tag = g_source_add_unix_fd(watch->source, watch->inotify_fd, G_IO_IN);
}


static void
hdReleaseWatchAddPidfd(hdReleaseWatch *watch)
{
#ifdef SYS_pidfd_open
    if (watch->pid <= 0)
        return;
    if ((watch->pidfd = syscall(SYS_pidfd_open, watch->pid, 0)) < 0) {
        /* ESRCH: it exited already; ENOSYS: kernel before 5.3. */
        g_debug("no pidfd for %d (%s)", (int)watch->pid, g_strerror(errno));
        watch->pidfd = -1;
        return;
    }
    watch->pidfd_tag = g_source_add_unix_fd(watch->source, watch->pidfd, G_IO_IN);
#endif
}


static hdReleaseWatch *
hdReleaseWatchNewFull(const char *const *paths, hdHost *host, unsigned int group,
                      const hdReleaseWatchOptions *opts, GMainContext *ctx,
                      hdReleaseFreeFunc func, gpointer opaque, GError **error)
{
    static const hdReleaseWatchOptions defaults = { 0 };
    g_autoptr(hdReleaseWatch) watch = NULL;

    if (!opts)
        opts = &defaults;
    if (!paths || !paths[0]) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s", _("no file to watch for holders"));
        return NULL;
    }
    watch = g_new0(hdReleaseWatch, 1);
    watch->paths = g_strdupv((char **)paths);
    watch->host = host ? hdHostRef(host) : NULL;
    watch->group = group;
    watch->proc_root = g_strdup(opts->proc_root ? opts->proc_root : HD_PROC_ROOT);
    watch->pid = opts->pid;
    watch->poll_ms = opts->poll_min_ms ? opts->poll_min_ms : HD_RELEASE_POLL_MIN_MS;
    watch->poll_min_ms = watch->poll_ms;
    watch->poll_max_ms = MAX(watch->poll_ms,
                             opts->poll_max_ms ? opts->poll_max_ms : HD_RELEASE_POLL_MAX_MS);
    watch->ctx = g_main_context_ref(ctx ? ctx : g_main_context_default());
    watch->inotify_fd = -1;
    watch->inotify_wds = g_array_new(FALSE, FALSE, sizeof(int));
    watch->pidfd = -1;
    watch->func = func;
    watch->opaque = opaque;

    /* Wake-ups first, then the first check: a close in between is seen. */
    watch->source = g_source_new(&hdReleaseWatchSourceFuncs, sizeof(hdReleaseWatchSource));
    ((hdReleaseWatchSource *)watch->source)->watch = watch;
    g_source_set_name(watch->source, "hostdev release watch");
    if (!(opts->flags & HD_RELEASE_WATCH_NO_INOTIFY))
        hdReleaseWatchAddInotify(watch);
    if (!(opts->flags & HD_RELEASE_WATCH_NO_PIDFD))
        hdReleaseWatchAddPidfd(watch);

    if (!hdReleaseWatchHeld(watch)) {
        watch->free_ = TRUE;
        hdReleaseWatchStop(watch);
        return g_steal_pointer(&watch);
    }
    g_source_set_ready_time(watch->source,
                            g_get_monotonic_time() + (gint64)watch->poll_ms * 1000);
    g_source_attach(watch->source, watch->ctx);
    return g_steal_pointer(&watch);
}


hdReleaseWatch *
hdReleaseWatchNew(const char *const *paths, const hdReleaseWatchOptions *opts,
                  GMainContext *ctx, hdReleaseFreeFunc func, gpointer opaque, GError **error)
{
    return hdReleaseWatchNewFull(paths, NULL, 0, opts, ctx, func, opaque, error);
}


hdReleaseWatch *
hdReleaseWatchNewGroup(hdHost *host, unsigned int group, const hdReleaseWatchOptions *opts,
                       GMainContext *ctx, hdReleaseFreeFunc func, gpointer opaque,
                       GError **error)
{
    g_auto(GStrv) paths = hdGroupHolderPaths(host, group, error);

    if (!paths)
        return NULL;
    return hdReleaseWatchNewFull((const char *const *)paths, host, group, opts, ctx, func,
                                 opaque, error);
}


void
hdReleaseWatchFree(hdReleaseWatch *watch)
{
    if (!watch)
        return;
    if (watch->in_func) {
        watch->freed = TRUE;
        return;
    }
    hdReleaseWatchStop(watch);
    g_array_unref(watch->inotify_wds);
    g_strfreev(watch->paths);
    g_clear_pointer(&watch->host, hdHostUnref);
    g_free(watch->proc_root);
    g_main_context_unref(watch->ctx);
    g_free(watch);
}


gboolean
hdReleaseWatchIsFree(hdReleaseWatch *watch)
{
    return watch->free_;
}


guint
hdReleaseWatchChecks(hdReleaseWatch *watch)
{
    return watch->checks;
}


char *
hdReleaseWatchDescribeHolders(hdReleaseWatch *watch)
{
    g_autoptr(GArray) pids = hdReleaseWatchFindHolders(watch, 0, NULL);
    g_autoptr(GString) out = g_string_new(NULL);
    guint i;

    for (i = 0; pids && i < pids->len; i++) {
        pid_t pid = g_array_index(pids, pid_t, i);
        g_autofree char *comm_path = g_strdup_printf("%s/%d/comm", watch->proc_root, (int)pid);
        g_autofree char *comm = NULL;

        if (g_file_get_contents(comm_path, &comm, NULL, NULL))
            g_strstrip(comm);
        g_string_append_printf(out, "%s%s %d (%s)", out->len ? ", " : "", _("pid"), (int)pid,
                               comm ? comm : "?");
    }
    if (out->len == 0)
        g_string_append(out, _("none"));
    return g_string_free(g_steal_pointer(&out), FALSE);
}


static gboolean
hdReleaseWatchOnDeadline(gpointer opaque)
{
    *(gboolean *)opaque = TRUE;
    return G_SOURCE_REMOVE;
}


gboolean
hdReleaseWatchWait(hdReleaseWatch *watch, guint timeout_ms, GError **error)
{
    g_autoptr(GSource) deadline = NULL;
    g_autofree char *holders = NULL;
    gboolean expired = FALSE;

    if (watch->free_)
        return TRUE;
    if (!g_main_context_acquire(watch->ctx)) {
        hdErrorSet(error, HD_ERROR_INTERNAL, "%s",
                   _("the release watch's main context is run by another thread"));
        return FALSE;
    }
    deadline = g_timeout_source_new(timeout_ms);
    g_source_set_callback(deadline, hdReleaseWatchOnDeadline, &expired, NULL);
    g_source_attach(deadline, watch->ctx);
    while (!watch->free_ && !expired)
        g_main_context_iteration(watch->ctx, TRUE);
    g_source_destroy(deadline);
    g_main_context_release(watch->ctx);
    if (watch->free_)
        return TRUE;

    watch->poll_max_ms = MAX(watch->poll_max_ms, HD_RELEASE_POLL_BACKGROUND_MS);
    holders = hdReleaseWatchDescribeHolders(watch);
    hdErrorSet(error, HD_ERROR_TIMEOUT,
               _("'%1$s' is still held after %2$u ms (holders: %3$s)"),
               watch->paths[0], timeout_ms, holders);
    return FALSE;
}
