/*
 * hdd-notice.c: what other threads tell the main context
 *
 * The daemon's own threads (the release watches, the QMP monitors) report
 * to the main loop, which owns the domain table.  A notice always goes
 * through a source on the main context: g_main_context_invoke() would run
 * it in the caller when the main loop is not running (yet, or any more).
 * A notice may still be queued when its sender goes away: the sender
 * cancels it, on the main context, and a cancelled notice runs nothing.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "hdd.h"

struct _hddNotice {
    gint refs;
    hddNoticeFunc func;         /* NULL once cancelled */
    gpointer opaque;
};

typedef struct {
    hddNotice *notice;
    gpointer data;
    GDestroyNotify free;
} hddNoticePosted;


static void
hddNoticeUnref(hddNotice *notice)
{
    if (g_atomic_int_dec_and_test(&notice->refs))
        g_free(notice);
}


hddNotice *
hddNoticeNew(hddNoticeFunc func, gpointer opaque)
{
    hddNotice *notice = g_new0(hddNotice, 1);

    notice->refs = 1;
    notice->func = func;
    notice->opaque = opaque;
    return notice;
}


static gboolean
hddNoticeRun(gpointer opaque)
{
    hddNoticePosted *posted = opaque;

    if (posted->notice->func)
        posted->notice->func(posted->notice->opaque, posted->data);
    return G_SOURCE_REMOVE;
}


static void
hddNoticePostedFree(gpointer opaque)
{
    hddNoticePosted *posted = opaque;

    if (posted->free)
        posted->free(posted->data);
    hddNoticeUnref(posted->notice);
    g_free(posted);
}


void
hddNoticePost(hddNotice *notice, gpointer data, GDestroyNotify free_data)
{
    g_autoptr(GSource) idle = g_idle_source_new();
    hddNoticePosted *posted = g_new0(hddNoticePosted, 1);

    g_atomic_int_inc(&notice->refs);
    posted->notice = notice;
    posted->data = data;
    posted->free = free_data;
    /* Not starved by a busy request queue (hdd-server.c). */
    g_source_set_priority(idle, G_PRIORITY_DEFAULT);
    g_source_set_callback(idle, hddNoticeRun, posted, hddNoticePostedFree);
    g_source_attach(idle, NULL);
}


void
hddNoticeCancel(hddNotice *notice)
{
    if (!notice)
        return;
    notice->func = NULL;
    hddNoticeUnref(notice);
}
