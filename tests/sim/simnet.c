/*
 * simnet.c: the network side of the kernel model: interfaces of network
 * devices and the MAC and VLAN an SR-IOV PF keeps for each of its VFs
 * (docs/simhost.rst, "Network interfaces")
 *
 * A network device (PCI class 0x02) has an interface while its native
 * driver is bound, as a NIC driver registers one in its probe and
 * unregisters it in its remove; each registration gets a new ifindex.
 * Names are the ones udev's predictable naming gives: enp<bus>s<slot>,
 * with f<function> for a multifunction device and P<domain> for a domain
 * other than 0; a VF is named after its PF, <pf>v<index>.
 *
 * A VF's settings belong to its PF's driver: they are changed through the
 * PF's interface (rtnetlink, simnetlink.c) with the checks ixgbe makes, and
 * survive the VF's own rebinding.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <linux/if_ether.h>

#include "simmodel-priv.h"

/* The first ifindex a device gets (1 is the loopback, not modelled). */
#define SIM_FIRST_IFINDEX 2


gboolean
simDeviceIsNetwork(const simDevice *dev)
{
    return (dev->pci_class >> 16) == 0x02 && dev->native_driver;
}


/* Whether another function shares @dev's slot. */
static gboolean
simNetIsMultifunction(simModel *model, const simDevice *dev)
{
    gsize slot_len = strlen(dev->address) - 1;   /* "DDDD:BB:SS." */
    guint i;

    for (i = 0; i < model->devices->len; i++) {
        const simDevice *other = g_ptr_array_index(model->devices, i);

        if (other != dev && strncmp(other->address, dev->address, slot_len) == 0)
            return TRUE;
    }
    return FALSE;
}


static char *
simNetName(simModel *model, const simDevice *dev)
{
    guint domain, bus, slot, function;
    g_autoptr(GString) name = g_string_new("en");

    if (dev->physfn) {
        guint index;

        g_ptr_array_find(dev->physfn->virtfns, dev, &index);
        return g_strdup_printf("%sv%u", dev->physfn->netdev, index);
    }
    sscanf(dev->address, "%x:%x:%x.%x", &domain, &bus, &slot, &function);
    if (domain)
        g_string_append_printf(name, "P%u", domain);
    g_string_append_printf(name, "p%us%u", bus, slot);
    if (simNetIsMultifunction(model, dev))
        g_string_append_printf(name, "f%u", function);
    return g_string_free(g_steal_pointer(&name), FALSE);
}


/* Whether @dev's interface comes or goes; its new ifindex if it comes. */
static gboolean
simNetdevChange(simModel *model, simDevice *dev)
{
    gboolean want = dev->netdev && g_strcmp0(dev->driver, dev->native_driver) == 0;

    if (want == (dev->ifindex > 0))
        return FALSE;
    dev->ifindex = want ? (model->last_ifindex = MAX(model->last_ifindex + 1,
                                                     SIM_FIRST_IFINDEX)) : 0;
    return TRUE;
}


/* The interface registers or unregisters with its driver. */
void
simNetdevSync(simModel *model, simDevice *dev, pid_t pid)
{
    if (simNetdevChange(model, dev))
        simModelLog(model, dev->ifindex ? "netdev-added" : "netdev-removed", dev,
                    dev->ifindex ? dev->driver : NULL, -1, pid, NULL);
}


void
simNetdevNameAll(simModel *model)
{
    guint pass, i;

    /* PFs first: a VF's name is its PF's. */
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < model->devices->len; i++) {
            simDevice *dev = g_ptr_array_index(model->devices, i);

            if (!simDeviceIsNetwork(dev) || (pass == 0) != (dev->physfn == NULL))
                continue;
            if (dev->physfn && !dev->physfn->netdev)
                continue;   /* a VF of a PF that is no network device */
            dev->netdev = simNetName(model, dev);
        }
    }
    /* What the host booted with is no event. */
    for (i = 0; i < model->devices->len; i++)
        simNetdevChange(model, g_ptr_array_index(model->devices, i));
}


simDevice *
simModelFindNetdev(simModel *model, const char *name, int ifindex)
{
    guint i;

    for (i = 0; i < model->devices->len; i++) {
        simDevice *dev = g_ptr_array_index(model->devices, i);

        if (dev->ifindex > 0 && (ifindex > 0 ? dev->ifindex == ifindex :
                                 g_strcmp0(dev->netdev, name) == 0))
            return dev;
    }
    return NULL;
}


static gint
simCompareIfindex(gconstpointer a, gconstpointer b)
{
    const simDevice *x = *(simDevice *const *) a;
    const simDevice *y = *(simDevice *const *) b;

    return x->ifindex - y->ifindex;
}


GPtrArray *
simModelNetdevs(simModel *model)
{
    GPtrArray *netdevs = g_ptr_array_new();
    guint i;

    for (i = 0; i < model->devices->len; i++) {
        simDevice *dev = g_ptr_array_index(model->devices, i);

        if (dev->ifindex > 0)
            g_ptr_array_add(netdevs, dev);
    }
    g_ptr_array_sort(netdevs, simCompareIfindex);
    return netdevs;
}


/* The permanent address of @dev's own interface: locally administered,
 * made of its PCI address. */
static void
simNetPermAddress(const simDevice *dev, guint8 mac[SIM_MAC_LEN])
{
    guint domain, bus, slot, function;

    sscanf(dev->address, "%x:%x:%x.%x", &domain, &bus, &slot, &function);
    mac[0] = 0x02;
    mac[1] = (domain >> 8) & 0xff;
    mac[2] = domain & 0xff;
    mac[3] = bus;
    mac[4] = slot;
    mac[5] = function;
}


void
simNetdevAddress(const simDevice *dev, guint8 mac[SIM_MAC_LEN])
{
    static const guint8 zero[SIM_MAC_LEN];

    /* A VF's driver takes the MAC its PF set for it, if any. */
    if (dev->physfn && memcmp(dev->vf_mac, zero, SIM_MAC_LEN) != 0)
        memcpy(mac, dev->vf_mac, SIM_MAC_LEN);
    else
        simNetPermAddress(dev, mac);
}


char *
simFormatMac(const guint8 mac[SIM_MAC_LEN])
{
    return g_strdup_printf("%02x:%02x:%02x:%02x:%02x:%02x",
                           mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}


/* VF @vf of @pf as its driver sees it: the PF needs its interface (the
 * request goes through it) and must have that many VFs. */
static int
simNetFindVF(simDevice *pf, guint vf, simDevice **out)
{
    if (pf->ifindex <= 0)
        return -ENODEV;
    if (pf->virtfns->len == 0)
        return -EOPNOTSUPP;     /* a driver without ndo_set_vf_mac */
    if (vf >= pf->virtfns->len)
        return -EINVAL;
    *out = g_ptr_array_index(pf->virtfns, vf);
    return 0;
}


/* The errno names of the event log ("error": "EINVAL"). */
static const char *
simErrnoName(int errnum)
{
    switch (errnum) {
    case ENODEV: return "ENODEV";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    }
    return g_strerror(errnum);
}


/* A "vf-set" event for the VF (the PF when there is no such VF). */
static void
simNetLogVF(simModel *model, simDevice *pf, simDevice *vf_dev, int ret, pid_t pid)
{
    simModelLog(model, "vf-set", vf_dev ? vf_dev : pf, pf->driver, -1, pid,
                ret < 0 ? simErrnoName(-ret) : NULL);
}


int
simModelSetVFMac(simModel *model, simDevice *pf, guint vf, const guint8 mac[SIM_MAC_LEN],
                 pid_t pid)
{
    simDevice *vf_dev = NULL;
    int ret;

    /* ixgbe_ndo_set_vf_mac(): a unicast address, or all zero to unset;
     * multicast (broadcast included) is refused. */
    if ((ret = simNetFindVF(pf, vf, &vf_dev)) == 0) {
        if (vf_dev->vf_fault == SIM_FAULT_FAIL)
            ret = -EIO;
        else if ((mac[0] & 1) != 0)
            ret = -EINVAL;
        else
            memcpy(vf_dev->vf_mac, mac, SIM_MAC_LEN);
    }
    simNetLogVF(model, pf, vf_dev, ret, pid);
    return ret;
}


int
simModelSetVFVlan(simModel *model, simDevice *pf, guint vf, guint vlan, guint qos,
                  guint proto, pid_t pid)
{
    simDevice *vf_dev = NULL;
    int ret;

    /* ixgbe_ndo_set_vf_vlan(): 802.1Q only, VLAN 0..4095, QoS 0..7. */
    if ((ret = simNetFindVF(pf, vf, &vf_dev)) == 0) {
        if (vf_dev->vf_fault == SIM_FAULT_FAIL) {
            ret = -EIO;
        } else if (vlan > 4095 || qos > 7) {
            ret = -EINVAL;
        } else if (proto != ETH_P_8021Q) {
            ret = -EPROTONOSUPPORT;
        } else {
            vf_dev->vf_vlan = vlan;
            vf_dev->vf_qos = qos;
        }
    }
    simNetLogVF(model, pf, vf_dev, ret, pid);
    return ret;
}
