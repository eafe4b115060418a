/*
 * qemu.h: QEMU's monitor (QMP) and what it says about releasing devices
 *
 * An hdQmp is one connection to a QEMU's QMP socket, driven by a GLib main
 * context: commands are sent with an id and answered through a callback
 * (each exactly once: the reply, an error reply, a timeout or the monitor
 * closing), events are dispatched to handlers.  A monitor that closes,
 * sends something that is not a QMP message or a message over the size cap
 * is closed with a clear error; every pending command then fails with it.
 *
 * The synchronous helpers (hdQmpNegotiate, hdQmpCommand, hdQmpWaitUntil,
 * hdQemuProbe) run the monitor's main context until they are done, so they
 * must be called from the thread that owns (or may acquire) that context,
 * and never from a monitor callback (the monitor's sources do not recurse:
 * the nested wait would only end at its timeout).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* A QMP message larger than this (no newline within it) closes the monitor. */
#define HD_QMP_MAX_MESSAGE_SIZE (16 * 1024 * 1024)

/* Per-command timeout used when a caller passes 0. */
#define HD_QMP_DEFAULT_TIMEOUT_MS 30000

typedef struct _hdQmp hdQmp;

/* @ret is the command's "return" value (borrowed; json_node_copy to keep
 * it), NULL when @error is set. */
typedef void (*hdQmpReplyFunc)(hdQmp *qmp, JsonNode *ret, const GError *error,
                               gpointer opaque);
/* @data may be NULL (events without data). */
typedef void (*hdQmpEventFunc)(hdQmp *qmp, const char *event, JsonObject *data,
                               gpointer opaque);
typedef void (*hdQmpClosedFunc)(hdQmp *qmp, const GError *reason, gpointer opaque);

/* Connect to the QMP unix socket at @path.  The peer's pid (SO_PEERCRED) is
 * the QEMU whose holders release detection scans first. */
hdQmp *hdQmpConnectUnix(const char *path, GMainContext *ctx, GError **error);

/* The pid of the process listening on the QMP socket at @path
 * (SO_PEERCRED of a connection made and closed at once, without a word);
 * 0 with @error when nobody listens there. */
pid_t hdQmpSocketPeerPid(const char *path, GError **error);

/* Use the connected stream socket @fd (the hdQmp owns it from now on). */
hdQmp *hdQmpNewFromFd(int fd, GMainContext *ctx);

hdQmp *hdQmpRef(hdQmp *qmp);
/* The last unref closes the connection; pending commands fail. */
void hdQmpUnref(hdQmp *qmp);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdQmp, hdQmpUnref)

/* Close now: pending commands fail with "closed by hostdev". */
void hdQmpClose(hdQmp *qmp);
gboolean hdQmpIsOpen(hdQmp *qmp);

void hdQmpSetMaxMessageSize(hdQmp *qmp, gsize max);
void hdQmpSetClosedFunc(hdQmp *qmp, hdQmpClosedFunc func, gpointer opaque);
GMainContext *hdQmpGetContext(hdQmp *qmp);

/* The QEMU on the other end (0 if unknown); tests may override it. */
pid_t hdQmpGetPeerPid(hdQmp *qmp);
void hdQmpSetPeerPid(hdQmp *qmp, pid_t pid);

/* @name NULL: every event.  Returns an id for hdQmpRemoveEventHandler. */
guint hdQmpAddEventHandler(hdQmp *qmp, const char *name, hdQmpEventFunc func,
                           gpointer opaque);
void hdQmpRemoveEventHandler(hdQmp *qmp, guint id);

/* Wait for the greeting, then enter command mode (qmp_capabilities).
 * @func gets NULL as @ret on success. */
void hdQmpNegotiateAsync(hdQmp *qmp, guint timeout_ms, hdQmpReplyFunc func, gpointer opaque);
gboolean hdQmpNegotiate(hdQmp *qmp, guint timeout_ms, GError **error);

/* The version in QEMU's greeting (FALSE before it arrived). */
gboolean hdQmpGetGreetingVersion(hdQmp *qmp, unsigned int *major, unsigned int *minor,
                                 unsigned int *micro);

/* Send @command with @arguments (a JSON object, or NULL) and @nfds file
 * descriptors (SCM_RIGHTS, e.g. for add-fd; the caller keeps its copies).
 * @timeout_ms 0: HD_QMP_DEFAULT_TIMEOUT_MS.  A QEMU error reply is an
 * HD_ERROR_OPERATION_FAILED naming the command, QEMU's class and text; no
 * answer in time is HD_ERROR_TIMEOUT.  @func may run before this returns
 * (the monitor is closed).  QEMU's CommandNotFound and DeviceNotFound are
 * HD_ERROR_NOT_FOUND. */
void hdQmpCommandAsync(hdQmp *qmp, const char *command, JsonNode *arguments,
                       const int *fds, guint nfds, guint timeout_ms,
                       hdQmpReplyFunc func, gpointer opaque);

/* Synchronous form: returns a copy of "return" (caller frees), NULL on error. */
JsonNode *hdQmpCommand(hdQmp *qmp, const char *command, JsonNode *arguments,
                       const int *fds, guint nfds, guint timeout_ms, GError **error);

/* Run the monitor's context until *@done is TRUE (TRUE), the monitor closes
 * (FALSE, its reason) or @timeout_ms passes (FALSE, HD_ERROR_TIMEOUT). */
gboolean hdQmpWaitUntil(hdQmp *qmp, const gboolean *done, guint timeout_ms, GError **error);


/* How hostdev learns that a QEMU closed a device's VFIO group. */
typedef enum {
    /* A dedicated event sent once the group (or the device's fds) is
     * closed: its name is configured, since upstream QEMU has none yet. */
    HD_RELEASE_SIGNAL_FINALIZE_EVENT = 0,
    /* DEVICE_DELETED: since QEMU 2.11 (commit f7b879e072, "qdev: defer
     * DEVICE_DEL event until instance_finalize()") it is sent from the
     * device's finalize, after QEMU closed the device and, when it was the
     * group's last device in that QEMU, the group. */
    HD_RELEASE_SIGNAL_DEVICE_DELETED,
    /* Older QEMU sent DEVICE_DELETED seconds before closing the group:
     * only /proc tells. */
    HD_RELEASE_SIGNAL_PROC,
} hdReleaseSignal;

const char *hdReleaseSignalToString(hdReleaseSignal signal);

/* The event name tried first when the caller configures none. */
#define HD_QEMU_DEFAULT_FINALIZE_EVENT "VFIO_GROUP_RELEASED"

typedef struct {
    unsigned int major;
    unsigned int minor;
    unsigned int micro;
    char *package;              /* "Debian 1:7.2+dfsg-7", may be empty */
    GHashTable *events;         /* names of the events QEMU advertises */
    gboolean events_from_schema; /* from query-qmp-schema, else query-events */
    hdReleaseSignal release_signal;
    char *release_event;        /* the event to wait for, NULL for PROC */
    char *reason;               /* why this signal, for logs */
} hdQemuCaps;

void hdQemuCapsFree(hdQemuCaps *caps);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdQemuCaps, hdQemuCapsFree)

/* The decision alone: @finalize_event if @events has it, DEVICE_DELETED for
 * QEMU >= 2.11, else PROC.  *@reason (may be NULL) says why. */
hdReleaseSignal hdQemuChooseReleaseSignal(unsigned int major, unsigned int minor,
                                          GHashTable *events, const char *finalize_event,
                                          char **reason);

/* Ask a negotiated monitor for its version (query-version) and events
 * (query-qmp-schema; query-events on QEMU without it) and choose the
 * release signal, with @finalize_event as the dedicated event's name
 * (NULL: HD_QEMU_DEFAULT_FINALIZE_EVENT; "": none).  The result is also
 * kept by @qmp (hdQmpGetCaps). */
const hdQemuCaps *hdQemuProbe(hdQmp *qmp, const char *finalize_event, guint timeout_ms,
                              GError **error);
const hdQemuCaps *hdQmpGetCaps(hdQmp *qmp);

/* The ids of the devices QEMU has (the children of /machine/peripheral,
 * where device_del looks them up): a set of char *.  A device is there
 * until QEMU unplugged it, also while its unplug waits for the guest, and
 * gone by the time DEVICE_DELETED is sent. */
GHashTable *hdQemuListDevices(hdQmp *qmp, guint timeout_ms, GError **error);

G_END_DECLS
