/*
 * simmodel.h: the kernel behind the simulated host
 *
 * The model knows devices, drivers, IOMMU groups, the holders of
 * /dev/vfio nodes, releases, costs, faults, violations and the event log.
 * It knows nothing about FUSE: simfs.c turns paths into calls of the
 * functions below.  docs/simhost.rst describes the semantics.
 *
 * Naming: a simDevice and a simGroup belong to the model and live as long
 * as it does, so pointers to them stay valid across lock drops; fields are
 * read only with the model lock held (simModelLock()).
 *
 * Functions that act like a kernel entry point return 0 or a negative
 * errno value.  They may block (costs, hangs, blocked unbinds) with the
 * model lock dropped; simModelShutdown() wakes them all and they fail with
 * -ENODEV.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include <glib.h>

G_BEGIN_DECLS

#define SIM_DRIVER_VFIO "vfio-pci"

typedef enum {
    SIM_FAULT_OK = 0,
    SIM_FAULT_FAIL,
    SIM_FAULT_HANG,
} simFault;

typedef struct _simDevice simDevice;
typedef struct _simGroup simGroup;
typedef struct _simModel simModel;

struct _simDevice {
    /* From the topology; never change. */
    char *address;
    guint vendor;
    guint device;
    guint pci_class;
    char *native_driver;        /* NULL: no driver matches (bridges) */
    char *reset_method;         /* NULL: the device has no reset file */
    int group_number;
    simGroup *group;
    simDevice *parent;
    simDevice *physfn;
    GPtrArray *virtfns;         /* simDevice *, borrowed, in topology order */
    char *sysfs_path;           /* "sys/devices/pci0000:00/.../<address>" */

    /* Run-time state. */
    char *driver;               /* bound driver, NULL if none */
    char *driver_override;      /* NULL when empty */
    int vfio_cdev;              /* X of vfio-dev/vfioX, -1 unless on vfio-pci */
    gboolean in_use;            /* held by a group fd or its cdev */
    gboolean releasing;         /* release after the last close pending */
    /* An unbind is waiting in the driver's remove(): the kernel has already
     * removed the "driver" link (driver_sysfs_remove() runs first). */
    gboolean unbinding;
    gboolean cdev_open;
    pid_t cdev_holder;
    gboolean locked;            /* the kernel's device_lock */
    gboolean probing_host;      /* a host driver is being probed */

    /* Costs (ms) and faults, changeable through .sim/ctl. */
    guint reset_ms;
    guint probe_ms;
    guint release_ms;
    simFault probe_fault;
    char *probe_fault_driver;   /* only probes of this driver; NULL: all */
    simFault reset_fault;
    gboolean release_hang;

    /* Network devices (simnet.c): the interface's name, NULL if none. */
    char *netdev;
    int ifindex;                /* > 0 while the interface exists */
    /* SR-IOV VFs: what the PF's driver keeps for the VF (all zero: no MAC
     * set), and whether setting it fails (EIO). */
    guint8 vf_mac[6];
    guint vf_vlan;
    guint vf_qos;
    simFault vf_fault;
};

struct _simGroup {
    int number;
    GPtrArray *members;         /* simDevice *, borrowed, by address */
    gboolean open;              /* /dev/vfio/N is open */
    gboolean probe;             /* ... read-only: no device in use */
    pid_t holder;               /* who opened it */
    guint releasing;            /* release threads still running */
};

simModel *simModelNewFromFile(const char *path, GError **error);
simModel *simModelNewFromData(const char *data, gssize length, GError **error);
void simModelFree(simModel *model);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(simModel, simModelFree)

/* The view (simfs.c) reads devices and groups under this lock. */
void simModelLock(simModel *model);
void simModelUnlock(simModel *model);

/* Everything below the lock: lookups and derived state. */
GPtrArray *simModelDevices(simModel *model);   /* simDevice *, by address */
GPtrArray *simModelGroups(simModel *model);    /* simGroup *, by number */
GPtrArray *simModelDrivers(simModel *model);   /* char *, sorted */
simDevice *simModelFindDevice(simModel *model, const char *address);
simGroup *simModelFindGroup(simModel *model, int number);
simDevice *simModelFindCdev(simModel *model, int cdev);
gboolean simGroupHasDevNode(const simGroup *group);
gboolean simGroupOwned(const simGroup *group);
gboolean simGroupViable(const simGroup *group);
/* Changes whenever files appear or vanish (bind, unbind). */
guint64 simModelTreeGeneration(simModel *model);

/* The kernel entry points.  @buf is what the writer wrote (not NUL
 * terminated); @pid the writer's process. */
int simModelSetOverride(simModel *model, simDevice *dev,
                        const char *buf, gsize len, pid_t pid);
int simModelBind(simModel *model, const char *driver,
                 const char *buf, gsize len, pid_t pid);
int simModelUnbind(simModel *model, const char *driver,
                   const char *buf, gsize len, pid_t pid);
int simModelProbe(simModel *model, const char *buf, gsize len, pid_t pid);
int simModelReset(simModel *model, simDevice *dev,
                  const char *buf, gsize len, pid_t pid);
/* @probe: a read-only open, as hostdev's "is anyone holding it?" check.
 * On the real kernel an open claims no device and no DMA ownership until
 * VFIO ioctls do (measured in the VM tier), yet a second open gets EBUSY;
 * a probe models exactly that: exclusive, viability not needed (the real
 * open succeeds on a non-viable group), and no release at its close. */
int simModelOpenGroup(simModel *model, int number, pid_t pid, gboolean probe);
/* @closer: the thread whose close was the last (0: unknown).  One task
 * runs the releases of the files it closes one after the other (at exit,
 * __fput in task_work), different tasks at the same time (seed 002). */
void simModelCloseGroup(simModel *model, int number, pid_t closer);
int simModelOpenCdev(simModel *model, simDevice *dev, pid_t pid);
void simModelCloseCdev(simModel *model, simDevice *dev, pid_t closer);

/* Network interfaces and VF settings (simnet.c), lock held.  A network
 * device (class 0x02) has an interface while its native driver is bound. */
#define SIM_MAC_LEN 6
gboolean simDeviceIsNetwork(const simDevice *dev);
/* By @ifindex if > 0, else by @name; NULL if no interface has it now. */
simDevice *simModelFindNetdev(simModel *model, const char *name, int ifindex);
/* The devices with an interface now (simDevice *, borrowed), by ifindex. */
GPtrArray *simModelNetdevs(simModel *model);
/* The address of @dev's interface: for a VF the MAC its PF set, if any. */
void simNetdevAddress(const simDevice *dev, guint8 mac[SIM_MAC_LEN]);
char *simFormatMac(const guint8 mac[SIM_MAC_LEN]);
/* VF @vf of @pf, as `ip link set PF vf N mac M` or `... vlan V qos Q
 * proto P` ask its driver (ixgbe's checks): 0 or a negative errno, and a
 * vf-set event.  -ENODEV when @pf has no interface. */
int simModelSetVFMac(simModel *model, simDevice *pf, guint vf, const guint8 mac[SIM_MAC_LEN],
                     pid_t pid);
int simModelSetVFVlan(simModel *model, simDevice *pf, guint vf, guint vlan, guint qos,
                      guint proto, pid_t pid);

/* .sim/ctl: one command; FALSE (and -EINVAL for the writer) if it is
 * unknown or malformed, and then nothing changed. */
gboolean simModelControl(simModel *model, const char *buf, gsize len,
                         GError **error);

/* .sim/state and .sim/events. */
char *simModelStateJson(simModel *model);
char *simModelEventsText(simModel *model);

/* Wake every blocked entry point (they fail with -ENODEV) and wait, with a
 * bound, for the release threads to finish. */
void simModelShutdown(simModel *model);

/* Topology loading (simtopology.c), used by simModelNew*(). */
gboolean simTopologyLoad(simModel *model, const char *data, gssize length,
                         GError **error);
simModel *simModelNewEmpty(void);
void simModelAddDevice(simModel *model, simDevice *dev);
void simModelFinishTopology(simModel *model);

G_END_DECLS
