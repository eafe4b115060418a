/*
 * hdvfnet.h: the network settings an SR-IOV PF keeps for one of its VFs
 *
 * A VF assigned as <interface type='hostdev'> gets its MAC address and VLAN
 * from its PF (as `ip link set PF vf N mac M vlan V` does): the guest
 * cannot change them.  hostdev saves what the PF had for the VF before the
 * assignment and puts it back when the VF is given back.
 *
 * Backends are replaceable (tests use one in memory); the default one talks
 * rtnetlink through libnl-route-3 and finds the PF in sysfs.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

#include "hostdev/domain.h"
#include "hostdev/pci.h"

G_BEGIN_DECLS

typedef struct {
    char mac[HD_MAC_STRLEN];   /* lower case; "00:00:00:00:00:00" when unset */
    int vlan;                  /* 0: untagged */
} hdVFNetConfig;

typedef struct {
    /* The PF's network interface and the VF's index on it. */
    gboolean (*resolve)(hdHost *host, const hdPCIAddress *vf, char **pf_ifname,
                        unsigned int *index, gpointer opaque, GError **error);
    gboolean (*get)(const char *pf_ifname, unsigned int index, hdVFNetConfig *config,
                    gpointer opaque, GError **error);
    gboolean (*set)(const char *pf_ifname, unsigned int index, const hdVFNetConfig *config,
                    gpointer opaque, GError **error);
} hdVFNetBackend;

/* sysfs (physfn, virtfnN, net/) and rtnetlink through libnl-route-3. */
extern const hdVFNetBackend hdVFNetBackendDefault;

gboolean hdVFNetResolveSysfs(hdHost *host, const hdPCIAddress *vf, char **pf_ifname,
                             unsigned int *index, gpointer opaque, GError **error);
gboolean hdVFNetGetNetlink(const char *pf_ifname, unsigned int index, hdVFNetConfig *config,
                           gpointer opaque, GError **error);
gboolean hdVFNetSetNetlink(const char *pf_ifname, unsigned int index,
                           const hdVFNetConfig *config, gpointer opaque, GError **error);

G_END_DECLS
