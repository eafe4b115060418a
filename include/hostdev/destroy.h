/*
 * destroy.h: tear a guest down and give every IOMMU group back, in parallel
 *
 * `virsh destroy` for a guest with many devices (seed 002): the kernel
 * spends about a second releasing each device, so every wait scales with the
 * number of devices, and the groups are given back in parallel by a bounded
 * pool of workers, one pipeline per group (wait until no process holds it,
 * reset, rebind); one slow or failing group never holds up the others and
 * is reported on its own.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include "hostdev/manager.h"

G_BEGIN_DECLS

/* Called from worker threads, one call at a time, each time devices went
 * back: @given_back of @total so far. */
typedef void (*hdDestroyProgressFunc)(guint given_back, guint total, gpointer opaque);

typedef struct {
    guint term_wait_ms;     /* fixed part of the wait after SIGTERM; 0: 10 s */
    guint kill_wait_ms;     /* fixed part of the wait after SIGKILL; 0: 30 s */
    guint release_wait_ms;  /* fixed part of the wait for the groups; 0: 10 s */
    /* Allowance per device added to every wait; 0: hdDestroyPerDeviceMs() */
    guint per_device_ms;
    guint workers;          /* groups given back at once; 0: 64 */
    /* Do not adopt QEMU's VFIO files (see hdDestroyDomain). */
    gboolean no_adopt;
    /* Non-zero: @pid is QEMU only if it started then (/proc/PID/stat field
     * 22, as recorded when QEMU was started); another process with that pid
     * means QEMU is long gone, and it is left alone. */
    guint64 pid_start_time;
    /* Signal only a process proven to be the domain's QEMU: it holds one of
     * the domain's VFIO groups (a group file, or a member's cdev), or it is
     * @monitor_pid (the peer of the domain's QMP socket).  Checked through
     * the pidfd right before its files are adopted and it is signalled. */
    gboolean verify_qemu;
    pid_t monitor_pid;
    /* With verify_qemu: >= 0, the process must run as this uid (real,
     * effective, saved and file-system uid); -1: any (asked by root). */
    gint64 uid;
    hdDestroyProgressFunc progress;
    gpointer progress_opaque;
} hdDestroyOptions;

typedef struct {
    guint devices;          /* devices of the domain's groups (siblings included) */
    guint given_back;       /* of them, back on their original drivers */
    guint stay;             /* of them, left on vfio-pci as asked (unmanaged, detached) */
    gboolean killed;        /* QEMU needed SIGKILL */
    guint adopted;          /* VFIO files taken over from QEMU and closed in parallel */
    double terminate_s;     /* QEMU's end */
    double give_back_s;     /* the groups' give-back */
    GPtrArray *problems;    /* char *: each group left on the inactive list, and why */
} hdDestroyReport;

void hdDestroyReportFree(hdDestroyReport *report);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdDestroyReport, hdDestroyReportFree)

/* The per-device allowance: libvirt's 2 s, or three times the slowest
 * per-device give-back this manager has measured on this host (kept in the
 * state directory), whichever is larger. */
guint hdDestroyPerDeviceMs(hdManager *mgr);

/* Destroy @domain: end its QEMU @pid (<= 0: already gone) with SIGTERM, then
 * SIGKILL after a grace period, waiting while the kernel visibly makes
 * progress; then every device leaves the domain and every group is given
 * back in parallel.
 *
 * Before ending QEMU, hostdev takes over QEMU's VFIO files (its group
 * files, device cdevs and vfio device fds) with pidfd_getfd(2).  Otherwise
 * QEMU's exit would release its devices from one task, one after the other
 * (seed 002: 18 s for 16 GPUs even on a fixed kernel); instead hostdev's
 * workers close them side by side, each group's in its own pipeline.
 * Without the rights to do so, destroy goes on the slow way.
 *
 * Pid 1 and the calling process are never signalled (HD_ERROR_PERMISSION),
 * and with verify_qemu neither is a process that cannot be proven to be
 * the domain's QEMU: nothing changes then.
 *
 * Returns FALSE only when QEMU could not be ended or may not be signalled
 * (the devices stay assigned).  Groups that could not be given back stay
 * on the inactive list and are listed in (*report)->problems; a group
 * whose kernel release is still running finishes in the background. */
gboolean hdDestroyDomain(hdManager *mgr, const char *domain, pid_t pid,
                         const hdDestroyOptions *opts, hdDestroyReport **report,
                         GError **error);

G_END_DECLS
