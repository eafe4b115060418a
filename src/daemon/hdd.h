/*
 * hdd.h: hostdevd's internal interfaces (not installed)
 *
 * Naming: an hddClient is one connection on the control socket; an hddOp is
 * one command running on a worker thread; an hddDomain is what `define`
 * told the daemon about a guest.  The manager (hdManager) stays the only
 * owner of device state; the daemon keeps nothing about devices itself.
 *
 * Threads: the main thread runs the GLib main loop and owns every client
 * and the domain table.  Workers (GTask's pool) run the long manager
 * operations; what they emit (manager events, destroy progress) goes
 * through one ordered outgoing queue that the main thread drains, so a
 * command's events always reach a client before its reply.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "hostdev/manager.h"
#include "hostdev/qemu.h"
#include "hostdev/security.h"

/* A request line larger than this gets an error and the connection ends. */
#define HDD_MAX_REQUEST_SIZE (1024 * 1024)

/* Domains with a QEMU monitor (a thread each) at once. */
#define HDD_MAX_MONITORS 1024

/* The longest unplug deadline a request or the daemon may ask for: 1 h. */
#define HDD_MAX_UNPLUG_TIMEOUT_MS 3600000u

typedef struct {
    char *root;
    char *state_dir;
    char *socket_path;
    char *group;              /* socket group allowed besides root; NULL: none */
    gid_t gid;
    guint sweep_ms;           /* pending give-backs are retried this often */
    guint unplug_timeout_ms;  /* detach-device's default deadline; 0: 10 s + 5 s a device */
    guint max_clients;        /* connections at once (root has a few more) */
    guint handshake_timeout;  /* seconds until qmp_capabilities */
} hddConfig;

typedef struct {
    char *name;
    char *qmp;                /* QMP socket of its QEMU; NULL: unknown */
    pid_t pid;                /* its QEMU; 0: not running */
    guint64 pid_start;        /* when that process started; 0: unknown */
    uid_t owner;              /* the client that defined it; only it and root may use it */
    uid_t pid_uid;            /* the client that gave the pid: QEMU runs as it, unless root */
    char *cgroup;
    char *seclabel;
    GHashTable *aliases;      /* "0000:11:00.0" -> "hostdev0" */
    /* "0000:11:00.0": unplug requested, deadline passed, DEVICE_DELETED not
     * seen yet; still assigned.  Durable. */
    GHashTable *unplug_pending;
    struct _hddMonitor *monitor; /* the QMP connection kept to its QEMU; NULL: none */
    gboolean resolve;         /* pending unplugs to look at once it is not busy */
    gboolean busy;            /* a destroy/detach/attach runs on it */
} hddDomain;

typedef struct _hddClient hddClient;
typedef struct _hddWatcher hddWatcher;

typedef struct {
    hddConfig *config;
    hdManager *mgr;
    hdSecurityManager *sec;
    GHashTable *domains;      /* name -> hddDomain *; main thread only */
    GMainLoop *loop;
    guint ops;                /* commands running on workers */
    guint queries;            /* queries running on workers (the sweep goes on) */
    gboolean sweeping;
    hddWatcher *watcher;      /* release watches of the pending groups */
    gboolean group_freed;     /* a watch found its group free: give back now */
    guint sweep_ticks;        /* since the last give-back attempt */
    guint64 served;           /* requests dispatched */
    guint64 trimmed;          /* served at the last hddTrim */
} hddDaemon;

/* hdd-server.c */
gboolean hddServerStart(hddDaemon *dmn, GError **error);
/* SIGTERM: stop taking connections and requests; running ones finish and
 * are answered.  hddServerStop then closes every connection. */
void hddServerDrain(void);
void hddServerStop(void);
/* Thread-safe: queue @msg (consumed) for @client (NULL: every negotiated
 * client, an event). */
void hddSend(hddClient *client, JsonNode *msg);
void hddEmitEvent(const char *name, JsonNode *data);
hddClient *hddClientRef(hddClient *client);
/* The client's uid (SO_PEERCRED), for the domains' owners. */
uid_t hddClientGetUid(hddClient *client);
/* A request of @client runs on a worker, until its reply: it counts
 * towards the requests a connection may have in the daemon (NULL: an
 * operation of the daemon's own). */
void hddClientOpStarted(hddClient *client);
void hddClientOpDone(hddClient *client);
/* Connections open now. */
guint hddServerClientCount(void);
void hddClientUnref(hddClient *client);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hddClient, hddClientUnref)

/* hdd-commands.c: run one validated request.  The reply is sent through
 * hddSend, now or once a worker finished. */
void hddDispatch(hddDaemon *dmn, hddClient *client, const char *command,
                 JsonObject *args, JsonNode *id);
gboolean hddDomainsLoad(hddDaemon *dmn, GError **error);
void hddDomainFree(hddDomain *dom);
void hddStartSweeper(hddDaemon *dmn);
void hddSweepNow(hddDaemon *dmn);

/* hdd-notice.c: another thread tells the main context something; @func
 * runs there with @data, unless the notice was cancelled meanwhile. */
typedef struct _hddNotice hddNotice;
typedef void (*hddNoticeFunc)(gpointer opaque, gpointer data);
hddNotice *hddNoticeNew(hddNoticeFunc func, gpointer opaque);
/* Any thread; @free_data (may be NULL) frees @data after the call. */
void hddNoticePost(hddNotice *notice, gpointer data, GDestroyNotify free_data);
/* Main context: nothing posted runs any more; drops the notice. */
void hddNoticeCancel(hddNotice *notice);

/* hdd-monitor.c: the QMP connection hostdevd keeps to a domain's QEMU, on
 * a thread of its own; it reconnects when QEMU's monitor goes away. */
typedef struct _hddMonitor hddMonitor;
typedef enum {
    HDD_MONITOR_CONNECTED,          /* (again): what QEMU said meanwhile was missed */
    HDD_MONITOR_DEVICE_DELETED,     /* QEMU unplugged the device @alias */
} hddMonitorNoticeType;
/* Runs on the main context. */
typedef void (*hddMonitorFunc)(const char *domain, hddMonitorNoticeType type,
                               const char *alias, gpointer opaque);
/* NULL with @error past the limit (hddMonitorSetMax, HDD_MAX_MONITORS by
 * default), or without a thread for it. */
hddMonitor *hddMonitorNew(const char *domain, const char *path, hddMonitorFunc func,
                          gpointer opaque, GError **error);
void hddMonitorSetMax(guint max);
/* Main context; the monitor must not be borrowed.  Its thread ends on
 * its own: nothing waits for it. */
void hddMonitorFree(hddMonitor *mon);
/* At exit: wait (at most @timeout_ms) until the threads of freed monitors
 * ended; FALSE if some still run. */
gboolean hddMonitorsWait(guint timeout_ms);
const char *hddMonitorGetPath(hddMonitor *mon);
/* A worker takes the connection (connected now if it was not; NULL and
 * @error if that fails) and runs its context until hddMonitorReturn, which
 * every call must be paired with, whatever it returned. */
hdQmp *hddMonitorBorrow(hddMonitor *mon, GError **error);
void hddMonitorReturn(hddMonitor *mon, hdQmp *qmp);

/* hdd-watch.c: one release watch per pending group, on a thread of its
 * own; @func runs on the main context when one of them is free. */
typedef void (*hddWatcherFreeFunc)(gpointer opaque);
hddWatcher *hddWatcherNew(hdHost *host, hddWatcherFreeFunc func, gpointer opaque);
void hddWatcherFree(hddWatcher *watcher);
/* Watch exactly @groups (unsigned int), from now on. */
void hddWatcherSync(hddWatcher *watcher, GArray *groups);

/* Replies. */
JsonNode *hddReply(JsonNode *ret, JsonNode *id);
JsonNode *hddErrorReply(const GError *error, JsonNode *id);
const char *hddErrorClass(const GError *error);
