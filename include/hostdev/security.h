/*
 * security.h: security cleanup above the manager
 *
 * An hdSecurityManager sits above an hdManager and reacts to its events; the
 * manager never calls it, and it never binds or unbinds anything.  For each
 * domain it knows (hdSecurityManagerSetDomain) it keeps:
 *
 *  - SELinux: on assignment the original label of /dev/vfio/N (and of the
 *    device's iommufd cdev, if any) is remembered and the domain's label
 *    set; when the group is given back the original is put back (a node
 *    that vanished with the group's last vfio-pci member needs nothing).
 *  - cgroup device ACL: the domain's cgroup may read and write /dev/vfio/N
 *    while the domain has a device of group N, and /dev/vfio/vfio while it
 *    has any; the access is taken away as soon as it no longer does.
 *  - SR-IOV VF network settings: for a VF assigned as <interface
 *    type='hostdev'>, the MAC and VLAN its PF had for it are saved and the
 *    configured ones set; the saved ones are put back when the VF is given
 *    back.
 *
 * Every change is recorded in security.json in the manager's state
 * directory (replaced atomically) before it is made, so a restart finishes
 * what was left.  A setup that fails is reported (hdSecurityReportFunc) and
 * fails the domain's assignment; a cleanup that fails is reported and stays
 * pending; hdSecurityManagerRetry() tries again.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#include "hostdev/domain.h"
#include "hostdev/manager.h"

G_BEGIN_DECLS

typedef struct _hdSecurityManager hdSecurityManager;

#define HD_SECURITY_STATE_FILE "security.json"

/* Attach to @mgr with the state in @state_dir (the manager's): load the
 * saved state, subscribe to the manager's events and retry what was left
 * pending.  SELinux being disabled is reported once, here. */
hdSecurityManager *hdSecurityManagerNew(hdManager *mgr, const char *state_dir,
                                        GError **error);
void hdSecurityManagerFree(hdSecurityManager *sec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdSecurityManager, hdSecurityManagerFree)

/* Per-domain configuration, before hdManagerPrepare().  @selinux_label: the
 * domain's image label (libvirt's sVirt <imagelabel>), NULL for none;
 * @cgroup_path: the directory of the domain's cgroup (v1 devices
 * controller or v2), NULL for none.  Validated here. */
gboolean hdSecurityManagerSetDomain(hdSecurityManager *sec, const char *domain,
                                    const char *selinux_label, const char *cgroup_path,
                                    GError **error);

/* Start an assignment of @def's devices to @domain, before
 * hdManagerPrepare(): the VF network settings of its <interface
 * type='hostdev'> devices are kept for it, and the failure of an earlier
 * assignment of @domain (hdSecurityManagerCheckDomain) is forgotten.
 * @domain NULL: @def's <name>.  A <name> in @def must be @domain; only VF
 * settings need a domain at all. */
gboolean hdSecurityManagerSetDomainDef(hdSecurityManager *sec, const char *domain,
                                       const hdDomainDef *def, GError **error);

/* Forget a domain that has no device left: v2 cgroups lose hostdev's
 * device program.  Refused while the domain still has VFIO access. */
gboolean hdSecurityManagerForgetDomain(hdSecurityManager *sec, const char *domain,
                                       GError **error);

/* Whether everything the assignment of @domain's devices needed was done;
 * the first failure otherwise.  Call after hdManagerPrepare(), before
 * starting the guest. */
gboolean hdSecurityManagerCheckDomain(hdSecurityManager *sec, const char *domain,
                                      GError **error);

/* Retry every pending cleanup; returns how many are still pending.  The
 * first error is reported in @error. */
guint hdSecurityManagerRetry(hdSecurityManager *sec, GError **error);

/* One line per pending cleanup ("label /dev/vfio/5", "cgroup vm1
 * 241:5", "vf 0000:03:10.2"), sorted; for tests and status output. */
GStrv hdSecurityManagerListPending(hdSecurityManager *sec);

/* One line per label, ACL and VF setting hostdev has in place now. */
GStrv hdSecurityManagerListApplied(hdSecurityManager *sec);

/* What failed, for hdSecurityReportFunc. */
typedef enum {
    /* Setting up a domain's label, ACL or VF settings: its assignment
     * fails (hdSecurityManagerCheckDomain), what was set is undone. */
    HD_SECURITY_PROBLEM_SETUP,
    /* Undoing one: left pending, tried again (hdSecurityManagerRetry). */
    HD_SECURITY_PROBLEM_CLEANUP,
    /* Recording a change in security.json. */
    HD_SECURITY_PROBLEM_STATE,
} hdSecurityProblem;

/* "setup", "cleanup", "state": the `kind` of a SECURITY_PROBLEM event. */
const char *hdSecurityProblemToString(hdSecurityProblem problem);

/* Called for each failure, with the domain when it is one's (else NULL);
 * the default is hdSecurityProblemLog(). */
typedef void (*hdSecurityReportFunc)(hdSecurityManager *sec, hdSecurityProblem problem,
                                     const char *domain, const GError *error,
                                     gpointer opaque);
void hdSecurityManagerSetReportFunc(hdSecurityManager *sec, hdSecurityReportFunc func,
                                    gpointer opaque);

/* @error logged as a warning that says what failed ("domain vm1: security
 * setup failed, its assignment fails: ..."). */
void hdSecurityProblemLog(hdSecurityProblem problem, const char *domain, const GError *error);

/* Replaceable for tests: the device number of a VFIO node (default: stat()
 * of the character device; on the simulated host the nodes are regular
 * files). */
typedef gboolean (*hdSecurityDevNumFunc)(const char *path, unsigned int *major,
                                         unsigned int *minor, gpointer opaque,
                                         GError **error);
void hdSecurityManagerSetDevNumFunc(hdSecurityManager *sec, hdSecurityDevNumFunc func,
                                    gpointer opaque);

/* Replaceable for tests: an hdVFNetBackend (src/security/hdvfnet.h). */
void hdSecurityManagerSetVFNetBackend(hdSecurityManager *sec, const void *backend,
                                      gpointer opaque);

/* Replaceable for tests: whether a group left on vfio-pci by an unmanaged
 * device is free (default: hdGroupFreeByProc). */
void hdSecurityManagerSetGroupFreeFunc(hdSecurityManager *sec, hdGroupFreeFunc func,
                                       gpointer opaque);

/* The handler registered with the manager, exposed so tests can feed it
 * events. */
void hdSecurityManagerHandleEvent(hdManager *mgr, const hdEvent *event, gpointer opaque);

G_END_DECLS
