/*
 * hdd-watch.c: pending groups given back as soon as they are free
 *
 * A group left pending (its last device left the guest while a process
 * still held it) goes back once nobody holds it.  Looking every so often
 * costs a /proc scan per group and look, and up to a period of delay;
 * instead each pending group has a release watch (inotify on its files, a
 * pidfd, polling as the fallback: see release.h) on a thread of its own,
 * so that the scans never hold up the daemon's main loop.  When a watch
 * finds its group free, the main loop is told and gives pending groups
 * back at once.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <glib/gi18n.h>

#include "hostdev/release.h"
#include "hdd.h"

struct _hddWatcher {
    hdHost *host;
    GMainContext *ctx;          /* the watcher thread's */
    GMainLoop *loop;
    GThread *thread;
    GHashTable *watches;        /* group + 1 -> hddWatch; watcher thread only */
    hddNotice *notice;          /* a group is free */
    hddWatcherFreeFunc func;
    gpointer opaque;
};

typedef struct {
    hddWatcher *watcher;
    unsigned int group;
    hdReleaseWatch *watch;
} hddWatch;

typedef struct {
    hddWatcher *watcher;
    GArray *groups;             /* unsigned int */
} hddWatcherSyncData;


static void
hddWatchFree(hddWatch *entry)
{
    hdReleaseWatchFree(entry->watch);
    g_free(entry);
}


static gpointer
hddWatcherRun(gpointer opaque)
{
    hddWatcher *watcher = opaque;

    g_main_context_push_thread_default(watcher->ctx);
    g_main_loop_run(watcher->loop);
    g_main_context_pop_thread_default(watcher->ctx);
    return NULL;
}


/* On the main context: a group is free.  The notice is cancelled before
 * the watcher goes. */
static void
hddWatcherNoticed(gpointer opaque, gpointer data)
{
    hddWatcher *watcher = opaque;

    watcher->func(watcher->opaque);
}


hddWatcher *
hddWatcherNew(hdHost *host, hddWatcherFreeFunc func, gpointer opaque)
{
    hddWatcher *watcher = g_new0(hddWatcher, 1);

    watcher->host = hdHostRef(host);
    watcher->ctx = g_main_context_new();
    watcher->loop = g_main_loop_new(watcher->ctx, FALSE);
    watcher->watches = g_hash_table_new_full(NULL, NULL, NULL, (GDestroyNotify)hddWatchFree);
    watcher->func = func;
    watcher->opaque = opaque;
    watcher->notice = hddNoticeNew(hddWatcherNoticed, watcher);
    watcher->thread = g_thread_new("hdd-watch", hddWatcherRun, watcher);
    return watcher;
}


/* Run @func on the watcher thread.  Always through a source:
 * g_main_context_invoke() would run it in the caller while the thread has
 * not started its loop yet. */
static void
hddWatcherRunOnThread(hddWatcher *watcher, GSourceFunc func, gpointer data,
                      GDestroyNotify destroy)
{
    g_autoptr(GSource) idle = g_idle_source_new();

    g_source_set_callback(idle, func, data, destroy);
    g_source_attach(idle, watcher->ctx);
}


static gboolean
hddWatcherQuit(gpointer opaque)
{
    g_main_loop_quit(opaque);
    return G_SOURCE_REMOVE;
}


void
hddWatcherFree(hddWatcher *watcher)
{
    if (!watcher)
        return;
    hddWatcherRunOnThread(watcher, hddWatcherQuit, watcher->loop, NULL);
    g_thread_join(watcher->thread);
    /* The thread is gone: nothing else touches the watches now. */
    g_hash_table_unref(watcher->watches);
    g_main_loop_unref(watcher->loop);
    g_main_context_unref(watcher->ctx);
    hdHostUnref(watcher->host);
    /* Called on the main context, where notices run: none runs now. */
    hddNoticeCancel(watcher->notice);
    g_free(watcher);
}


/* From the watcher thread: tell the main context that a group is free. */
static void
hddWatcherNotify(hddWatcher *watcher)
{
    hddNoticePost(watcher->notice, NULL, NULL);
}


/* On the watcher thread: @entry's group is free. */
static void
hddWatchFreed(hdReleaseWatch *watch, gpointer opaque)
{
    hddWatch *entry = opaque;
    hddWatcher *watcher = entry->watcher;

    /* Freed here, which release.h allows; a group still pending after the
     * give-back gets a new watch at the next sync. */
    g_hash_table_remove(watcher->watches, GUINT_TO_POINTER(entry->group + 1));
    hddWatcherNotify(watcher);
}


/* On the watcher thread: watch @group, or report it free now. */
static void
hddWatcherAdd(hddWatcher *watcher, unsigned int group)
{
    g_autoptr(GError) error = NULL;
    hddWatch *entry = g_new0(hddWatch, 1);

    entry->watcher = watcher;
    entry->group = group;
    entry->watch = hdReleaseWatchNewGroup(watcher->host, group, NULL, watcher->ctx,
                                          hddWatchFreed, entry, &error);
    if (!entry->watch) {
        /* The sweep's slow retries still cover it. */
        g_warning(_("cannot watch IOMMU group %1$u: %2$s"), group, error->message);
        g_free(entry);
        return;
    }
    if (hdReleaseWatchIsFree(entry->watch)) {
        hddWatchFree(entry);
        hddWatcherNotify(watcher);
        return;
    }
    g_hash_table_insert(watcher->watches, GUINT_TO_POINTER(group + 1), entry);
}


static gboolean
hddWatcherGroupListed(GArray *groups, unsigned int group)
{
    guint i;

    for (i = 0; i < groups->len; i++) {
        if (g_array_index(groups, unsigned int, i) == group)
            return TRUE;
    }
    return FALSE;
}


/* On the watcher thread: watch exactly the listed groups. */
static gboolean
hddWatcherSyncOnThread(gpointer opaque)
{
    hddWatcherSyncData *data = opaque;
    hddWatcher *watcher = data->watcher;
    GHashTableIter iter;
    gpointer key;
    guint i;

    g_hash_table_iter_init(&iter, watcher->watches);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        if (!hddWatcherGroupListed(data->groups, GPOINTER_TO_UINT(key) - 1))
            g_hash_table_iter_remove(&iter);
    }
    for (i = 0; i < data->groups->len; i++) {
        unsigned int group = g_array_index(data->groups, unsigned int, i);

        if (!g_hash_table_contains(watcher->watches, GUINT_TO_POINTER(group + 1)))
            hddWatcherAdd(watcher, group);
    }
    return G_SOURCE_REMOVE;
}


static void
hddWatcherSyncDataFree(gpointer opaque)
{
    hddWatcherSyncData *data = opaque;

    g_array_unref(data->groups);
    g_free(data);
}


void
hddWatcherSync(hddWatcher *watcher, GArray *groups)
{
    hddWatcherSyncData *data = g_new0(hddWatcherSyncData, 1);

    data->watcher = watcher;
    data->groups = g_array_ref(groups);
    hddWatcherRunOnThread(watcher, hddWatcherSyncOnThread, data, hddWatcherSyncDataFree);
}
