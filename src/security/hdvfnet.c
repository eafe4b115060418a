/*
 * hdvfnet.c: an SR-IOV VF's MAC and VLAN as its PF keeps them
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>
#include <linux/if_ether.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/link/sriov.h>

#include "hdinternal.h"
#include "hdfile.h"
#include "hdvfnet.h"

const hdVFNetBackend hdVFNetBackendDefault = {
    .resolve = hdVFNetResolveSysfs,
    .get = hdVFNetGetNetlink,
    .set = hdVFNetSetNetlink,
};

typedef struct nl_sock hdNlSock;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdNlSock, nl_socket_free)


/* The VF's physfn link names its PF; the PF's virtfnN link that points at
 * the VF gives N; the PF's net/ directory names its interface. */
gboolean
hdVFNetResolveSysfs(hdHost *host, const hdPCIAddress *vf, char **pf_ifname,
                    unsigned int *index, gpointer opaque, GError **error)
{
    char buf[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *physfn = hdHostPath(host, "sys/bus/pci/devices/%s/physfn",
                                         hdPCIAddressFormat(vf, buf));
    g_autofree char *pf = NULL;
    g_autofree char *pf_dir = NULL;
    g_autofree char *net_dir = NULL;
    g_autoptr(GDir) dir = NULL;
    g_autoptr(GError) local = NULL;
    const char *name;
    gboolean found = FALSE;

    if (!hdFileReadLinkName(physfn, TRUE, &pf, error))
        return FALSE;
    if (!pf) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("PCI device %1$s is not an SR-IOV VF: it has no physfn"), buf);
        return FALSE;
    }
    pf_dir = hdHostPath(host, "sys/bus/pci/devices/%s", pf);
    if (!(dir = g_dir_open(pf_dir, 0, &local))) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("cannot read PF directory '%1$s': %2$s"),
                   pf_dir, local->message);
        return FALSE;
    }
    while (!found && (name = g_dir_read_name(dir))) {
        g_autofree char *link = NULL;
        g_autofree char *target = NULL;
        guint64 n;

        if (!g_str_has_prefix(name, "virtfn") ||
            !g_ascii_string_to_unsigned(name + strlen("virtfn"), 10, 0, G_MAXUINT, &n, NULL))
            continue;
        link = g_build_filename(pf_dir, name, NULL);
        if (!hdFileReadLinkName(link, TRUE, &target, error))
            return FALSE;
        if (g_strcmp0(target, buf) == 0) {
            *index = (unsigned int)n;
            found = TRUE;
        }
    }
    if (!found) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND,
                   _("PF %1$s has no virtfn link to VF %2$s"), pf, buf);
        return FALSE;
    }

    g_clear_pointer(&dir, g_dir_close);
    net_dir = g_build_filename(pf_dir, "net", NULL);
    if (!(dir = g_dir_open(net_dir, 0, NULL)) || !(name = g_dir_read_name(dir))) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND,
                   _("PF %1$s of VF %2$s has no network interface (no '%3$s')"),
                   pf, buf, net_dir);
        return FALSE;
    }
    *pf_ifname = g_strdup(name);
    return TRUE;
}


static struct nl_sock *
hdVFNetConnect(GError **error)
{
    g_autoptr(hdNlSock) sk = nl_socket_alloc();
    int rc;

    if (!sk) {
        hdErrorSet(error, HD_ERROR_INTERNAL, _("cannot allocate a netlink socket"));
        return NULL;
    }
    if ((rc = nl_connect(sk, NETLINK_ROUTE)) < 0) {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
                   _("cannot connect to rtnetlink: %1$s"), nl_geterror(rc));
        return NULL;
    }
    return g_steal_pointer(&sk);
}


gboolean
hdVFNetGetNetlink(const char *pf_ifname, unsigned int index, hdVFNetConfig *config,
                  gpointer opaque, GError **error)
{
    g_autoptr(hdNlSock) sk = NULL;
    struct rtnl_link *link = NULL;
    struct rtnl_link_vf *vf = NULL;
    struct nl_addr *addr = NULL;
    nl_vf_vlans_t *vlans = NULL;
    gboolean ret = FALSE;
    int rc;

    memset(config, 0, sizeof(*config));
    if (!(sk = hdVFNetConnect(error)))
        return FALSE;
    /* libnl asks for the VF list (RTEXT_FILTER_VF) in this request. */
    if ((rc = rtnl_link_get_kernel(sk, 0, pf_ifname, &link)) < 0) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("cannot get network interface %1$s: %2$s"),
                   pf_ifname, nl_geterror(rc));
        return FALSE;
    }
    /* libnl's rtnl_link_vf_get() dereferences the VF list without looking:
     * a PF whose driver reports none (no ndo_get_vf_config, e.g. e1000e)
     * must be caught first. */
    if (!rtnl_link_has_vf_list(link) || !(vf = rtnl_link_vf_get(link, index))) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("network interface %1$s has no VF %2$u"),
                   pf_ifname, index);
        goto cleanup;
    }
    if (rtnl_link_vf_get_addr(vf, &addr) == 0 && addr &&
        nl_addr_get_len(addr) == ETH_ALEN) {
        const guint8 *b = nl_addr_get_binary_addr(addr);

        g_snprintf(config->mac, sizeof(config->mac), "%02x:%02x:%02x:%02x:%02x:%02x",
                   b[0], b[1], b[2], b[3], b[4], b[5]);
    } else {
        g_strlcpy(config->mac, "00:00:00:00:00:00", sizeof(config->mac));
    }
    /* rtnl_link_vf_get_vlans() takes a reference: put it back below. */
    if (rtnl_link_vf_get_vlans(vf, &vlans) == 0 && vlans && vlans->size > 0)
        config->vlan = (int)vlans->vlans[0].vf_vlan;
    ret = TRUE;

 cleanup:
    if (vlans)
        rtnl_link_vf_vlan_put(vlans);
    if (vf)
        rtnl_link_vf_put(vf);
    rtnl_link_put(link);
    return ret;
}


gboolean
hdVFNetSetNetlink(const char *pf_ifname, unsigned int index, const hdVFNetConfig *config,
                  gpointer opaque, GError **error)
{
    g_autoptr(hdNlSock) sk = NULL;
    struct rtnl_link *link = NULL;
    struct rtnl_link *changes = NULL;
    struct rtnl_link_vf *vf = NULL;
    struct nl_addr *addr = NULL;
    nl_vf_vlans_t *vlans = NULL;
    gboolean ret = FALSE;
    int rc;

    if (!(sk = hdVFNetConnect(error)))
        return FALSE;
    if ((rc = rtnl_link_get_kernel(sk, 0, pf_ifname, &link)) < 0) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("cannot get network interface %1$s: %2$s"),
                   pf_ifname, nl_geterror(rc));
        return FALSE;
    }
    if ((rc = nl_addr_parse(config->mac, AF_LLC, &addr)) < 0 ||
        rtnl_link_vf_vlan_alloc(&vlans, 1) < 0 ||
        !(changes = rtnl_link_alloc()) || !(vf = rtnl_link_vf_alloc())) {
        hdErrorSet(error, HD_ERROR_INTERNAL, _("cannot build the VF settings '%1$s'"),
                   config->mac);
        goto cleanup;
    }
    vlans->vlans[0].vf_vlan = (uint32_t)config->vlan;
    vlans->vlans[0].vf_vlan_qos = 0;
    vlans->vlans[0].vf_vlan_proto = ETH_P_8021Q;
    rtnl_link_vf_set_index(vf, index);
    rtnl_link_vf_set_addr(vf, addr);
    rtnl_link_vf_set_vlans(vf, vlans);
    rtnl_link_vf_add(changes, vf);
    if ((rc = rtnl_link_change(sk, link, changes, 0)) < 0) {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
                   _("cannot set MAC %1$s and VLAN %2$d for VF %3$u of %4$s: %5$s"),
                   config->mac, config->vlan, index, pf_ifname, nl_geterror(rc));
        goto cleanup;
    }
    ret = TRUE;

 cleanup:
    if (vf)
        rtnl_link_vf_put(vf);
    if (vlans)
        rtnl_link_vf_vlan_put(vlans);
    nl_addr_put(addr);
    rtnl_link_put(changes);
    rtnl_link_put(link);
    return ret;
}
