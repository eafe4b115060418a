/*
 * manager.h: the hostdev manager
 *
 * One hdManager owns the bookkeeping of every device hostdev has taken from
 * the host: the *active* devices (assigned to a domain) and the *inactive
 * list* (on vfio-pci, used by no domain, waiting to be given back with the
 * rest of their IOMMU group).  Everything else asks it.
 *
 * Naming: an hdHostdevDef (domain.h) is a request; an hdDeviceInfo is a
 * snapshot copied out to the caller; the manager's own records never leave
 * it.
 *
 * Rules it enforces:
 *  - a device is active in at most one domain, and an IOMMU group in at
 *    most one domain;
 *  - a group is never made non-viable: preparing a device whose group
 *    siblings sit on host drivers is refused (or, with
 *    HD_PREPARE_WHOLE_GROUP, the siblings are detached too);
 *  - a group is given back to the host only as a whole, once no member is
 *    active and no process holds the group (the *group-free* predicate);
 *  - every change is written to the state directory before it is made on
 *    the host, so a crash never loses a device's original driver.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#include "hostdev/domain.h"
#include "hostdev/pci.h"

G_BEGIN_DECLS

#define HD_DEFAULT_STATE_DIR "/run/hostdev"

typedef struct _hdManager hdManager;

typedef enum {
    HD_DEVICE_HOST = 0,   /* untracked: on whatever driver the host gave it */
    HD_DEVICE_INACTIVE,   /* on vfio-pci, no domain; waits for its group */
    HD_DEVICE_ACTIVE,     /* assigned to a domain */
} hdDeviceState;

const char *hdDeviceStateToString(hdDeviceState state);

typedef struct {
    hdPCIAddress addr;
    unsigned int group;
    hdDeviceState state;
    char *domain;            /* ACTIVE: its domain */
    gboolean managed;
    /* INACTIVE: goes back to its host driver once its group is free; FALSE:
     * stays on vfio-pci (detached with nodedev-detach) */
    gboolean give_back;
    char *original_driver;   /* what to give it back to; NULL: none */
    char *driver;            /* bound now (from sysfs), NULL if none */
} hdDeviceInfo;

void hdDeviceInfoFree(hdDeviceInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdDeviceInfo, hdDeviceInfoFree)

/* Whether any process still holds IOMMU group @group (its /dev/vfio node or a
 * member's cdev).  Set *free_ to TRUE when none does.  Supplied by the
 * release-detection layer; the default scans /proc. */
typedef gboolean (*hdGroupFreeFunc)(hdHost *host, unsigned int group, gboolean *free_,
                                    gpointer opaque, GError **error);

/* Events tell the layers above (security cleanup, the daemon) what changed.
 * They are delivered after the operation that caused them, outside the
 * manager's lock (a handler may call the manager), in order, from the thread
 * that ran the operation. */
typedef enum {
    HD_EVENT_DEVICE_ASSIGNED,     /* a prepare committed: addr is active in domain */
    HD_EVENT_DEVICE_RELEASED,     /* addr left domain (its group may still be held) */
    HD_EVENT_GROUP_GIVEN_BACK,    /* addr (each member given back) is on its original driver */
    HD_EVENT_GIVE_BACK_FAILED,    /* group stays on the inactive list: message says why */
} hdEventType;

const char *hdEventTypeToString(hdEventType type);

typedef struct {
    hdEventType type;
    const char *domain;           /* DEVICE_* events */
    hdPCIAddress addr;            /* not for GIVE_BACK_FAILED */
    unsigned int group;
    const char *message;          /* GIVE_BACK_FAILED */
} hdEvent;

typedef void (*hdEventFunc)(hdManager *mgr, const hdEvent *event, gpointer opaque);

/* Returns an id for hdManagerRemoveEventHandler. */
guint hdManagerAddEventHandler(hdManager *mgr, hdEventFunc func, gpointer opaque);
void hdManagerRemoveEventHandler(hdManager *mgr, guint id);

/* Open the manager on @host with its durable state in @state_dir (created if
 * missing, locked against other processes), and reconcile that state with
 * what sysfs shows: interrupted prepares are rolled back, interrupted
 * give-backs are finished when their group is free. */
hdManager *hdManagerOpen(hdHost *host, const char *state_dir, GError **error);
/* The manager is reference counted (work finishing in the background holds a
 * reference); hdManagerFree drops one. */
hdManager *hdManagerRef(hdManager *mgr);
void hdManagerFree(hdManager *mgr);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdManager, hdManagerFree)

hdHost *hdManagerGetHost(hdManager *mgr);
const char *hdManagerGetStateDir(hdManager *mgr);

void hdManagerSetGroupFreeFunc(hdManager *mgr, hdGroupFreeFunc func, gpointer opaque);

typedef enum {
    /* Detach group siblings that sit on host drivers too, and hold them on
     * the inactive list until the group is given back. */
    HD_PREPARE_WHOLE_GROUP = 1 << 0,
} hdPrepareFlags;

/* Assign @hostdevs (hdHostdevDef *) to @domain as one transaction: validate
 * everything first, then bind the managed devices to vfio-pci; on failure
 * restore everything this call changed and report the first error. */
gboolean hdManagerPrepare(hdManager *mgr, const char *domain, GPtrArray *hostdevs,
                          unsigned int flags, GError **error);

/* @addrs (hdPCIAddress) leave @domain: they move to the inactive list and
 * every group that became free is given back.  Groups that are not free
 * yet stay pending (see hdManagerGiveBackPending). */
gboolean hdManagerRelease(hdManager *mgr, const char *domain, GArray *addrs, GError **error);

/* Every device of @domain leaves it, as hdManagerRelease. */
gboolean hdManagerReleaseDomain(hdManager *mgr, const char *domain, GError **error);

/* Every device of @domain leaves it, but no group is given back yet:
 * *groups (may be NULL) receives the groups left behind, each once, for the
 * caller to give back (in parallel: hdManagerGiveBackGroup is thread-safe,
 * and groups go back concurrently). */
gboolean hdManagerLeaveDomain(hdManager *mgr, const char *domain, GArray **groups,
                              GError **error);

/* Groups whose devices all wait on the inactive list, with no member active. */
GArray *hdManagerPendingGroups(hdManager *mgr);

/* Try to give back group @group now.  Sets *given_back to FALSE (and returns
 * TRUE) when the group is not free yet, or is being given back by another
 * thread: nothing was touched.  The slow host work (resets, the kernel's
 * release, probes) runs without the manager's lock; meanwhile the group is
 * busy and operations on it are refused with HD_ERROR_IN_USE.  Returns FALSE
 * when giving back failed; the devices stay on the inactive list. */
gboolean hdManagerGiveBackGroup(hdManager *mgr, unsigned int group, gboolean *given_back,
                                GError **error);

/* Try every pending group; returns how many were given back.  The first
 * error is reported, the other groups are still tried. */
guint hdManagerGiveBackPending(hdManager *mgr, GError **error);

/* Node-device operations (virsh nodedev-*).  Detach binds @addr to vfio-pci
 * and puts it on the inactive list; *siblings receives the members of its
 * group still on host drivers, which must follow before a domain can use
 * the group. */
gboolean hdManagerNodeDetach(hdManager *mgr, const hdPCIAddress *addr, GArray **siblings,
                             GError **error);
/* Give @addr back to its original driver; refused while it or its group is
 * in use. */
gboolean hdManagerNodeReattach(hdManager *mgr, const hdPCIAddress *addr, GError **error);
/* Reset @addr; refused while it or its group is in use. */
gboolean hdManagerNodeReset(hdManager *mgr, const hdPCIAddress *addr, GError **error);

/* Snapshot of one device (tracked or not); NULL with @error if it does not
 * exist. */
hdDeviceInfo *hdManagerGetDevice(hdManager *mgr, const hdPCIAddress *addr, GError **error);

/* Snapshots of every tracked device (hdDeviceInfo *), sorted by address. */
GPtrArray *hdManagerListTracked(hdManager *mgr);

G_END_DECLS
