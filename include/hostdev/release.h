/*
 * release.h: waiting until no process holds a VFIO group
 *
 * An hdReleaseWatch watches the files that hold one IOMMU group (its
 * /dev/vfio node and its members' iommufd cdevs) until no process has them
 * open, and then calls its function once.  "Held" is decided by /proc: the
 * guest's QEMU is scanned first (cheap, and it is the usual holder), and
 * "free" is only ever concluded from a scan of every process.
 *
 * What wakes it up, cheapest first:
 *  - inotify close events on the watched files (the kernel sends them at the
 *    last close of an open file, before the device's release runs);
 *  - a pidfd for the guest's QEMU (its exit closes everything);
 *  - polling with backoff (10 ms doubling to 1 s; 5 s once a deadline was
 *    missed) as the fallback, for holders whose close inotify cannot see.
 * No source is left once the group is free: idle costs nothing.
 *
 * The watch runs on a GLib main context; hdReleaseWatchWait runs that
 * context until the group is free or a deadline passes, and a watch that
 * missed its deadline keeps watching (in the background) until freed.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include <glib.h>

#include "hostdev/pci.h"

G_BEGIN_DECLS

typedef struct _hdReleaseWatch hdReleaseWatch;

/* Called once, from the watch's context, when no process holds the files.
 * The watch may be freed from it. */
typedef void (*hdReleaseFreeFunc)(hdReleaseWatch *watch, gpointer opaque);

typedef enum {
    HD_RELEASE_WATCH_NO_INOTIFY = 1 << 0,   /* wake-ups: polling (and pidfd) only */
    HD_RELEASE_WATCH_NO_PIDFD = 1 << 1,
} hdReleaseWatchFlags;

typedef struct {
    pid_t pid;               /* the guest's QEMU, scanned first; 0: unknown */
    unsigned int flags;      /* hdReleaseWatchFlags */
    guint poll_min_ms;       /* first poll interval; 0: 10 ms */
    guint poll_max_ms;       /* backoff bound; 0: 1000 ms */
    const char *proc_root;   /* NULL: /proc */
} hdReleaseWatchOptions;

/* Watch @paths (absolute, NULL-terminated).  The first check runs before
 * this returns: if nothing holds the files, hdReleaseWatchIsFree() is TRUE
 * and @func is never called. */
hdReleaseWatch *hdReleaseWatchNew(const char *const *paths, const hdReleaseWatchOptions *opts,
                                  GMainContext *ctx, hdReleaseFreeFunc func, gpointer opaque,
                                  GError **error);

/* Watch the holder files of IOMMU group @group (hdGroupHolderPaths); the
 * group counts as held while a read-only open of its node gets EBUSY too
 * (hdGroupOpenProbe): a holder of a vfio device fd alone, or the kernel
 * still releasing after the last close. */
hdReleaseWatch *hdReleaseWatchNewGroup(hdHost *host, unsigned int group,
                                       const hdReleaseWatchOptions *opts, GMainContext *ctx,
                                       hdReleaseFreeFunc func, gpointer opaque,
                                       GError **error);

void hdReleaseWatchFree(hdReleaseWatch *watch);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdReleaseWatch, hdReleaseWatchFree)

gboolean hdReleaseWatchIsFree(hdReleaseWatch *watch);

/* How many times /proc was consulted (for tests and benchmarks). */
guint hdReleaseWatchChecks(hdReleaseWatch *watch);

/* Run the watch's context until the files are free (TRUE) or @timeout_ms
 * passed: FALSE with HD_ERROR_TIMEOUT naming the holders.  The watch goes
 * on either way; after a timeout it polls less often. */
gboolean hdReleaseWatchWait(hdReleaseWatch *watch, guint timeout_ms, GError **error);

/* "pid 1234 (qemu-system-x86)" for each holder of the watched files, or
 * "none"; for messages. */
char *hdReleaseWatchDescribeHolders(hdReleaseWatch *watch);

/* @base_ms + @per_device_ms for each of @devices, saturating: every wait for
 * a release scales with the number of devices released together (the
 * kernel resets each one, about a second on real GPUs). */
guint hdReleaseDeadlineMs(guint base_ms, guint per_device_ms, guint devices);

G_END_DECLS
