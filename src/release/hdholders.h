/*
 * hdholders.h: which processes hold a VFIO group or device
 *
 * A group is held while any process has an fd open on /dev/vfio/N or on the
 * iommufd cdev of one of its members.  This is the truth the kernel acts
 * on (the release of a device starts at the last close), whatever a QEMU
 * monitor says.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include "hostdev/pci.h"

/* Where /proc is; tests may point it elsewhere. */
#define HD_PROC_ROOT "/proc"

/* pids (GArray of pid_t) of every process with an fd open on one of @paths
 * (absolute).  If @pid is > 0 only that process is scanned. */
GArray *hdHoldersFind(const char *proc_root, pid_t pid, const char *const *paths,
                      GError **error);

/* The files that hold group @group: its /dev/vfio node and the cdevs of its
 * VFIO-bound members.  NULL-terminated, absolute. */
GStrv hdGroupHolderPaths(hdHost *host, unsigned int group, GError **error);

/* Is group @group held by anyone?  A read-only open of /dev/vfio/N fails
 * with EBUSY while any file of the group is open (measured on 6.1: a vfio
 * device fd alone keeps it, and /proc shows it only as
 * anon_inode:[vfio-device]); the open claims no device and no DMA
 * ownership, and is closed at once.  Sets *held; returns FALSE when the
 * probe could not tell (no node means nothing can hold it: TRUE, *held
 * FALSE). */
gboolean hdGroupOpenProbe(hdHost *host, unsigned int group, gboolean *held);

/* hdGroupFreeFunc scanning every process in /proc, then probing the group
 * node when no process shows it. */
gboolean hdGroupFreeByProc(hdHost *host, unsigned int group, gboolean *free_,
                           gpointer opaque, GError **error);
