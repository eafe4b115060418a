/*
 * hdd-monitor.c: the QMP connection hostdevd keeps to a domain's QEMU
 *
 * A guest may answer an unplug request long after hostdevd stopped
 * waiting (the VM tier saw a loaded Linux guest take 18 s).  QEMU then
 * sends DEVICE_DELETED to the monitors connected at that moment, so
 * hostdevd keeps one connected per domain, as libvirt keeps its own: QEMU
 * allows several monitors, and the domain's "qmp" socket is hostdevd's.
 *
 * Each monitor has a thread running its GMainContext: it connects,
 * negotiates and probes, reconnects with backoff when QEMU's monitor goes
 * away and comes back, and tells the main context (hdd-notice.c) when it
 * connected (events may have been missed meanwhile) and when QEMU deleted
 * a device.  A worker that needs QEMU (attach, detach) borrows the
 * monitor: the thread parks, the worker runs the context with the
 * synchronous helpers of qemu.h, and gives it back.  Whoever runs the
 * context (the thread, or the worker that borrowed it) alone touches the
 * connection.  Nobody holds the context between iterations (nothing here
 * makes it a thread's default), so the helpers can acquire it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <glib/gi18n.h>

#include "hostdev/error.h"
#include "hostdev/qemu.h"
#include "hdd.h"

#define HDD_MONITOR_TIMEOUT_MS 10000
/* Reconnection attempts: 100 ms, doubling up to 5 s. */
#define HDD_MONITOR_RETRY_MIN_MS 100
#define HDD_MONITOR_RETRY_MAX_MS 5000

/* Monitors (threads) at once, and how many there are: main context only. */
static guint hddMonitorMax = HDD_MAX_MONITORS;
static guint hddMonitorCount;
/* Threads still running, those of freed monitors included. */
static gint hddMonitorThreads;

struct _hddMonitor {
    gint refs;                  /* the owner's and the thread's */
    char *domain;
    char *path;
    hddMonitorFunc func;
    gpointer opaque;
    hddNotice *notice;
    GMainContext *ctx;
    GThread *thread;
    GMutex lock;
    GCond cond;
    gboolean quit;              /* under lock */
    gboolean borrowed;          /* under lock: a worker runs ctx */
    gboolean running;           /* under lock: the thread runs ctx */
    /* Whoever runs ctx: */
    hdQmp *qmp;                 /* negotiated and probed; may have closed since */
    GSource *retry;             /* the next connection attempt */
    guint backoff_ms;
};

typedef struct {
    hddMonitorNoticeType type;
    char *alias;
} hddMonitorNoticeData;


static void
hddMonitorNoticeDataFree(gpointer opaque)
{
    hddMonitorNoticeData *data = opaque;

    g_free(data->alias);
    g_free(data);
}


/* On the main context; cancelled before the monitor goes. */
static void
hddMonitorNoticed(gpointer opaque, gpointer data)
{
    hddMonitor *mon = opaque;
    hddMonitorNoticeData *what = data;

    mon->func(mon->domain, what->type, what->alias, mon->opaque);
}


/* Nothing is posted once the owner let the monitor go (quit): the notice
 * may be gone then. */
static void
hddMonitorNotify(hddMonitor *mon, hddMonitorNoticeType type, const char *alias)
{
    hddMonitorNoticeData *data = g_new0(hddMonitorNoticeData, 1);

    data->type = type;
    data->alias = g_strdup(alias);
    g_mutex_lock(&mon->lock);
    if (!mon->quit)
        hddNoticePost(mon->notice, g_steal_pointer(&data), hddMonitorNoticeDataFree);
    g_mutex_unlock(&mon->lock);
    if (data)
        hddMonitorNoticeDataFree(data);
}


static void
hddMonitorUnref(hddMonitor *mon)
{
    if (!g_atomic_int_dec_and_test(&mon->refs))
        return;
    g_main_context_unref(mon->ctx);
    g_mutex_clear(&mon->lock);
    g_cond_clear(&mon->cond);
    g_free(mon->domain);
    g_free(mon->path);
    g_free(mon);
}


static void
hddMonitorOnDeleted(hdQmp *qmp, const char *event, JsonObject *data, gpointer opaque)
{
    hddMonitor *mon = opaque;
    JsonNode *device = data ? json_object_get_member(data, "device") : NULL;

    if (device && JSON_NODE_HOLDS_VALUE(device) &&
        json_node_get_value_type(device) == G_TYPE_STRING) {
        g_debug("domain %s: DEVICE_DELETED %s", mon->domain, json_node_get_string(device));
        hddMonitorNotify(mon, HDD_MONITOR_DEVICE_DELETED, json_node_get_string(device));
    }
}


static void hddMonitorScheduleRetry(hddMonitor *mon);


static void
hddMonitorOnClosed(hdQmp *qmp, const GError *reason, gpointer opaque)
{
    hddMonitor *mon = opaque;

    g_info("domain %s: QMP monitor %s lost (%s); reconnecting", mon->domain, mon->path,
           reason->message);
    hddMonitorScheduleRetry(mon);
}


/* The connection goes, without a word to anybody. */
static void
hddMonitorDrop(hddMonitor *mon)
{
    if (!mon->qmp)
        return;
    hdQmpSetClosedFunc(mon->qmp, NULL, NULL);
    g_clear_pointer(&mon->qmp, hdQmpUnref);
}


static gboolean
hddMonitorConnect(hddMonitor *mon, GError **error)
{
    g_autoptr(hdQmp) qmp = NULL;

    hddMonitorDrop(mon);
    if (!(qmp = hdQmpConnectUnix(mon->path, mon->ctx, error)) ||
        !hdQmpNegotiate(qmp, HDD_MONITOR_TIMEOUT_MS, error) ||
        !hdQemuProbe(qmp, NULL, HDD_MONITOR_TIMEOUT_MS, error))
        return FALSE;
    hdQmpAddEventHandler(qmp, "DEVICE_DELETED", hddMonitorOnDeleted, mon);
    hdQmpSetClosedFunc(qmp, hddMonitorOnClosed, mon);
    mon->qmp = g_steal_pointer(&qmp);
    mon->backoff_ms = 0;
    g_clear_pointer(&mon->retry, g_source_destroy);
    g_info("domain %s: QMP monitor %s connected", mon->domain, mon->path);
    /* Whatever QEMU said while nobody listened is asked again. */
    hddMonitorNotify(mon, HDD_MONITOR_CONNECTED, NULL);
    return TRUE;
}


static gboolean
hddMonitorOnRetry(gpointer opaque)
{
    hddMonitor *mon = opaque;
    g_autoptr(GError) error = NULL;

    /* The source ends with this call. */
    mon->retry = NULL;
    if (!hddMonitorConnect(mon, &error)) {
        g_debug("domain %s: %s", mon->domain, error->message);
        hddMonitorScheduleRetry(mon);
    }
    return G_SOURCE_REMOVE;
}


static void
hddMonitorScheduleRetry(hddMonitor *mon)
{
    g_autoptr(GSource) retry = NULL;

    if (mon->retry)
        return;
    mon->backoff_ms = CLAMP(mon->backoff_ms * 2, HDD_MONITOR_RETRY_MIN_MS,
                            HDD_MONITOR_RETRY_MAX_MS);
    retry = g_timeout_source_new(mon->backoff_ms);
    g_source_set_callback(retry, hddMonitorOnRetry, mon, NULL);
    g_source_attach(retry, mon->ctx);
    /* The context keeps it; destroying it is enough to stop it. */
    mon->retry = retry;
}


static gboolean
hddMonitorIsConnected(hddMonitor *mon)
{
    return mon->qmp && hdQmpIsOpen(mon->qmp);
}


static gpointer
hddMonitorRun(gpointer opaque)
{
    hddMonitor *mon = opaque;
    gboolean started = FALSE;

    g_mutex_lock(&mon->lock);
    while (!mon->quit) {
        if (mon->borrowed) {
            g_cond_wait(&mon->cond, &mon->lock);
            continue;
        }
        mon->running = TRUE;
        g_mutex_unlock(&mon->lock);
        if (!started) {
            g_autoptr(GError) error = NULL;

            /* A worker that borrowed it first may have connected it. */
            started = TRUE;
            if (!hddMonitorIsConnected(mon) && !hddMonitorConnect(mon, &error)) {
                g_debug("domain %s: %s", mon->domain, error->message);
                hddMonitorScheduleRetry(mon);
            }
        } else {
            g_main_context_iteration(mon->ctx, TRUE);
        }
        g_mutex_lock(&mon->lock);
        mon->running = FALSE;
        g_cond_broadcast(&mon->cond);
    }
    g_mutex_unlock(&mon->lock);
    hddMonitorDrop(mon);
    g_clear_pointer(&mon->retry, g_source_destroy);
    hddMonitorUnref(mon);
    g_atomic_int_add(&hddMonitorThreads, -1);
    return NULL;
}


void
hddMonitorSetMax(guint max)
{
    hddMonitorMax = max;
}


hddMonitor *
hddMonitorNew(const char *domain, const char *path, hddMonitorFunc func, gpointer opaque,
              GError **error)
{
    hddMonitor *mon;
    g_autofree char *name = g_strdup_printf("hdd-qmp-%.6s", domain);

    /* A thread each: a client defining domains by the thousand must not
     * make hostdevd run out of them. */
    if (hddMonitorCount >= hddMonitorMax) {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
                   _("hostdevd keeps a QEMU monitor for %1$u domains already, its limit"),
                   hddMonitorMax);
        return NULL;
    }
    mon = g_new0(hddMonitor, 1);
    mon->refs = 2;
    mon->domain = g_strdup(domain);
    mon->path = g_strdup(path);
    mon->func = func;
    mon->opaque = opaque;
    mon->notice = hddNoticeNew(hddMonitorNoticed, mon);
    mon->ctx = g_main_context_new();
    g_mutex_init(&mon->lock);
    g_cond_init(&mon->cond);
    g_atomic_int_inc(&hddMonitorThreads);
    if (!(mon->thread = g_thread_try_new(name, hddMonitorRun, mon, error))) {
        g_atomic_int_add(&hddMonitorThreads, -1);
        /* The thread's reference, then the owner's. */
        hddMonitorUnref(mon);
        hddMonitorFree(mon);
        return NULL;
    }
    hddMonitorCount++;
    return mon;
}


/* The thread is told to end, not waited for: it may be in the middle of
 * a connection to a QEMU that does not answer (up to three 10 s timeouts),
 * and the main loop must not stall meanwhile.  It ends on its own, and the
 * monitor with it. */
void
hddMonitorFree(hddMonitor *mon)
{
    if (!mon)
        return;
    g_mutex_lock(&mon->lock);
    mon->quit = TRUE;
    g_cond_broadcast(&mon->cond);
    g_mutex_unlock(&mon->lock);
    if (mon->thread) {
        g_main_context_wakeup(mon->ctx);
        g_thread_unref(mon->thread);
        hddMonitorCount--;
    }
    /* On the main context, where notices run: none runs from now on, and
     * the thread posts none after quit. */
    hddNoticeCancel(mon->notice);
    hddMonitorUnref(mon);
}


gboolean
hddMonitorsWait(guint timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    while (g_atomic_int_get(&hddMonitorThreads) > 0) {
        if (g_get_monotonic_time() >= deadline)
            return FALSE;
        g_usleep(10 * 1000);
    }
    return TRUE;
}


const char *
hddMonitorGetPath(hddMonitor *mon)
{
    return mon->path;
}


hdQmp *
hddMonitorBorrow(hddMonitor *mon, GError **error)
{
    g_mutex_lock(&mon->lock);
    mon->borrowed = TRUE;
    g_main_context_wakeup(mon->ctx);
    while (mon->running)
        g_cond_wait(&mon->cond, &mon->lock);
    g_mutex_unlock(&mon->lock);
    if (!hddMonitorIsConnected(mon) && !hddMonitorConnect(mon, error)) {
        hddMonitorScheduleRetry(mon);
        return NULL;
    }
    return hdQmpRef(mon->qmp);
}


void
hddMonitorReturn(hddMonitor *mon, hdQmp *qmp)
{
    if (qmp)
        hdQmpUnref(qmp);
    g_mutex_lock(&mon->lock);
    mon->borrowed = FALSE;
    g_cond_broadcast(&mon->cond);
    g_mutex_unlock(&mon->lock);
}
