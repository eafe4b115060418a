/*
 * hotplug.h: taking devices out of a running guest (virsh detach-device)
 *
 * The flow, for one or more devices of one domain:
 *  1. device_del each device (by its alias) on the guest's QEMU monitor;
 *  2. wait for DEVICE_DELETED of each (deadline scaled by the number of
 *     devices, or the caller's); a guest that refuses, ignores or is slow
 *     to answer the unplug gets a timeout error and its devices stay
 *     assigned, their unplug still requested (hdHotplugResult): a later
 *     call with them in hdHotplugOptions.requested waits for them again,
 *     or finds them gone from QEMU (their DEVICE_DELETED came while nobody
 *     listened) and goes on as if it had come in time;
 *  3. with a dedicated finalize event (hdQemuCaps), wait for it too;
 *  4. hand the devices to the manager's release: they go on the inactive
 *     list, and their groups are given back if free;
 *  5. wait until no process holds each group that is still pending, as the
 *     release signal says (the QEMU first, then every process), and give it
 *     back.  At the deadline the group stays on the inactive list, the
 *     problem is reported in the result and the group is watched in the
 *     background: it is given back as soon as it is free.
 *
 * The monitor must have been probed (hdQemuProbe).  Everything runs on the
 * monitor's main context, from the thread that owns it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#include "hostdev/domain.h"
#include "hostdev/manager.h"
#include "hostdev/qemu.h"

G_BEGIN_DECLS

typedef struct {
    guint command_timeout_ms;        /* each QMP command */
    guint unplug_base_ms;            /* DEVICE_DELETED: base + per device */
    guint unplug_per_device_ms;
    guint unplug_timeout_ms;         /* non-zero: the DEVICE_DELETED deadline */
    guint release_base_ms;           /* group closed after the signal */
    guint release_per_device_ms;
    guint proc_release_per_device_ms; /* same, when QEMU predates 2.11 */
    /* Aliases (NULL-terminated; NULL: none) whose device_del QEMU accepted
     * in an earlier call that gave up at its deadline.  A device QEMU no
     * longer has (hdQemuListDevices) was deleted while nobody listened: it
     * is released without asking QEMU again.  One QEMU still has is asked
     * again, and a refusal (QEMU >= 6.1 refuses a second device_del while
     * the first waits for the guest) only means it is still leaving. */
    const char *const *requested;
} hdHotplugOptions;

/* Defaults: 10 s + 5 s per device for the unplug (Linux guests wait 5 s
 * for the PCIe attention button), 5 s + 2 s per device for the release,
 * 10 s per device for QEMU before 2.11 (seconds between DEVICE_DELETED and
 * the close were measured). */
void hdHotplugOptionsInit(hdHotplugOptions *opts);

typedef struct {
    guint released;                  /* devices that left the domain */
    guint groups_given_back;
    guint groups_watched;            /* still held at the deadline */
    /* Released devices still on the inactive list: their group has a member
     * left in the guest, or is still held.  Unmanaged devices, which stay on
     * vfio-pci as asked, are not counted. */
    guint waiting;
    char *problem;                   /* why groups wait; NULL if none */
    /* hdPCIAddress: devices whose unplug QEMU accepted but whose
     * DEVICE_DELETED did not come by the deadline; still assigned.  NULL
     * if none. */
    GArray *unplug_pending;
} hdHotplugResult;

void hdHotplugResultClear(hdHotplugResult *result);

typedef struct _hdHotplug hdHotplug;

hdHotplug *hdHotplugNew(hdManager *mgr);
/* Stops the background watches; their groups stay pending in the manager. */
void hdHotplugFree(hdHotplug *hotplug);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdHotplug, hdHotplugFree)

/* Detach @hostdevs (hdHostdevDef *, each with its alias) from @domain,
 * whose QEMU is behind @qmp.  FALSE when a device could not be unplugged
 * (it stays assigned); the devices that were unplugged are still released.
 * @result (may be NULL) says what became of them. */
gboolean hdHotplugDetach(hdHotplug *hotplug, hdQmp *qmp, const char *domain,
                         GPtrArray *hostdevs, const hdHotplugOptions *opts,
                         hdHotplugResult *result, GError **error);

/* Groups watched in the background now. */
guint hdHotplugWatchedGroups(hdHotplug *hotplug);

G_END_DECLS
