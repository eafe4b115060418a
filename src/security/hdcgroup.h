/*
 * hdcgroup.h: device access of a domain's cgroup
 *
 * The domain's QEMU runs in a cgroup; hostdev lets it open exactly the VFIO
 * nodes of the groups the domain uses.  cgroup v1: the devices controller's
 * devices.allow and devices.deny.  cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE
 * program attached to the cgroup (BPF_F_ALLOW_MULTI, so other device
 * programs keep their say) with a hash map of the character devices it
 * decides about: key major << 32 | minor, value the allowed access bits
 * (0: denied).  Devices not in the map are left to the other programs and
 * to the parent cgroups.  Changes are map edits; after a restart the
 * program is found again by its name ("hostdev_dev") among the programs
 * attached to the cgroup.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
    HD_CGROUP_V1 = 1,
    HD_CGROUP_V2,
} hdCgroupMode;

const char *hdCgroupModeToString(hdCgroupMode mode);

typedef struct _hdCgroup hdCgroup;

/* Open the cgroup directory @path: its file system says the mode; v1
 * needs the devices controller there. */
hdCgroup *hdCgroupOpen(const char *path, GError **error);
void hdCgroupFree(hdCgroup *cg);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdCgroup, hdCgroupFree)

hdCgroupMode hdCgroupGetMode(const hdCgroup *cg);

/* Let the cgroup read and write character device @major:@minor. */
gboolean hdCgroupAllowDevice(hdCgroup *cg, unsigned int major, unsigned int minor,
                             GError **error);

/* Take that access away again. */
gboolean hdCgroupDenyDevice(hdCgroup *cg, unsigned int major, unsigned int minor,
                            GError **error);

/* v2: detach hostdev's program from the cgroup (its map goes with it);
 * v1: nothing.  For a domain hostdev no longer knows. */
gboolean hdCgroupRemoveProgram(hdCgroup *cg, GError **error);

/* v2: whether hostdev's program is attached (tests).  v1: FALSE. */
gboolean hdCgroupHasProgram(hdCgroup *cg);

G_END_DECLS
