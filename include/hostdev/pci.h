/*
 * pci.h: PCI devices, IOMMU groups and their sysfs/devfs files
 *
 * Naming: an hdPCIAddress is a plain value (no ownership).  An hdHost says
 * where the host's files are: every path is built from its root ("/" on a
 * real host, the mount point of the simulated host in tests), never
 * hard-coded elsewhere.  Functions return TRUE on success, FALSE with
 * @error set on failure; system failures carry errno (HD_SYSTEM_ERROR)
 * and the path in the message.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define HD_PCI_ADDRESS_STRLEN 17  /* "ffffffff:ff:1f.7" (16) plus NUL */
#define HD_VFIO_DRIVER "vfio-pci"

typedef struct {
    unsigned int domain;    /* 0 .. 0xffffffff (VMD domains exceed 0xffff) */
    unsigned int bus;       /* 0 .. 0xff */
    unsigned int slot;      /* 0 .. 0x1f */
    unsigned int function;  /* 0 .. 7 */
} hdPCIAddress;

/* Strict "DDDD:BB:SS.F" (domain 4 to 8 hex digits, kernel's spelling; upper
 * case accepted); anything else, including trailing characters, whitespace
 * or path tricks, fails with HD_ERROR_INVALID_ARG quoting the input. */
gboolean hdPCIAddressParse(const char *str, hdPCIAddress *addr, GError **error);

/* libvirt XML attributes: domain/bus/slot/function, "0x" (or "0X") and hex
 * digits, or decimal digits without leading zeros (libvirt would read
 * "010" as octal), no sign, no spaces, each in range.  @domain and
 * @function may be NULL (0, as libvirt defaults them); @bus and @slot are
 * required. */
gboolean hdPCIAddressParseParts(const char *domain, const char *bus,
                                const char *slot, const char *function,
                                hdPCIAddress *addr, GError **error);

/* Writes the canonical lower-case form into @buf. */
const char *hdPCIAddressFormat(const hdPCIAddress *addr,
                               char buf[HD_PCI_ADDRESS_STRLEN]);
char *hdPCIAddressToString(const hdPCIAddress *addr);
gboolean hdPCIAddressEqual(const hdPCIAddress *a, const hdPCIAddress *b);
/* Order by domain, bus, slot, function; a GCompareFunc on hdPCIAddress
 * pointers (g_array_sort). */
gint hdPCIAddressCompare(gconstpointer a, gconstpointer b);

typedef struct _hdHost hdHost;

hdHost *hdHostNew(const char *root);
hdHost *hdHostRef(hdHost *host);
void hdHostUnref(hdHost *host);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdHost, hdHostUnref)

const char *hdHostRoot(const hdHost *host);
/* root + "/" + printf(fmt, ...), with no doubled slashes. */
char *hdHostPath(const hdHost *host, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* /sys/bus/pci/devices/<addr> exists. */
gboolean hdPCIDeviceExists(hdHost *host, const hdPCIAddress *addr);

typedef struct {
    unsigned int vendor;
    unsigned int device;
    unsigned int class_code;  /* 24 bits: base class, subclass, prog-if */
} hdPCIDeviceIDs;

gboolean hdPCIDeviceReadIDs(hdHost *host, const hdPCIAddress *addr,
                            hdPCIDeviceIDs *ids, GError **error);

/* The bound driver's name, or NULL in *driver when the device has none. */
gboolean hdPCIDeviceGetDriver(hdHost *host, const hdPCIAddress *addr,
                              char **driver, GError **error);

/* vfio-pci itself or a vfio-pci variant driver (the device has vfio-dev/). */
gboolean hdPCIDeviceIsVFIOBound(hdHost *host, const hdPCIAddress *addr);

/* PCI-to-PCI bridges (class 0x0604) and devices bound to pcieport: they
 * never make their IOMMU group non-viable. */
gboolean hdPCIDeviceIsBridge(hdHost *host, const hdPCIAddress *addr);

/* driver_override: NULL in *value when empty ("(null)" in sysfs). */
gboolean hdPCIDeviceGetDriverOverride(hdHost *host, const hdPCIAddress *addr,
                                      char **value, GError **error);

/* Write @driver to driver_override, or clear it when @driver is NULL.  The
 * kernel uses it at the next probe; it does not change the bound driver. */
gboolean hdPCIDeviceSetDriverOverride(hdHost *host, const hdPCIAddress *addr,
                                      const char *driver, GError **error);

/* Write the address to drivers_probe: the kernel binds the override driver
 * if one is set, else the native one; a device that has a driver is left
 * alone.  A driver's failing probe may not be reported here (the device
 * just stays driverless): check the driver afterwards. */
gboolean hdPCIDeviceProbe(hdHost *host, const hdPCIAddress *addr, GError **error);

/* Bind @driver: write driver_override, unbind the current driver (if it is
 * another one), write drivers_probe, then check the device is bound to
 * @driver.  The override stays set, as libvirt leaves it for vfio-pci.
 * On failure nothing is rolled back (the device may be left without a
 * driver): whether giving it back is safe is the caller's decision. */
gboolean hdPCIDeviceBindDriver(hdHost *host, const hdPCIAddress *addr,
                               const char *driver, GError **error);

/* Give the device back to the host: clear driver_override, unbind the
 * current driver, write drivers_probe so the kernel picks the native
 * driver.  *driver receives what it ended on (NULL for none); @driver
 * may be NULL.  Never call this while another member of the device's
 * IOMMU group is used by a guest: the kernel refuses the probe (>= 5.19)
 * or crashes (older). */
gboolean hdPCIDeviceReprobe(hdHost *host, const hdPCIAddress *addr,
                            char **driver, GError **error);

/* Unbind from the current driver, if any.  Blocks while a user holds a
 * VFIO device, as the kernel does. */
gboolean hdPCIDeviceUnbind(hdHost *host, const hdPCIAddress *addr, GError **error);

/* Function reset through sysfs "reset".  A device without the file
 * cannot be reset: HD_ERROR_OPERATION_FAILED. */
gboolean hdPCIDeviceReset(hdHost *host, const hdPCIAddress *addr, GError **error);

/* Space-separated reset_method contents, NULL if the file is absent. */
gboolean hdPCIDeviceGetResetMethod(hdHost *host, const hdPCIAddress *addr,
                                   char **methods, GError **error);

/* IOMMU group number; HD_ERROR_NOT_FOUND if the device has none. */
gboolean hdPCIDeviceGetIOMMUGroup(hdHost *host, const hdPCIAddress *addr,
                                  unsigned int *group, GError **error);

/* Members of group @group, sorted by address.  Returns a GArray of
 * hdPCIAddress, or NULL with @error set. */
GArray *hdIOMMUGroupGetMembers(hdHost *host, unsigned int group, GError **error);

/* /dev/vfio/<group> (full path under the root); the file exists only
 * while a member is bound to a VFIO driver. */
char *hdIOMMUGroupDevPath(hdHost *host, unsigned int group);

/* The iommufd cdev /dev/vfio/devices/vfioX of a VFIO-bound device, from its
 * vfio-dev/vfioX directory; NULL in *path when the device has none. */
gboolean hdPCIDeviceGetVFIOCdev(hdHost *host, const hdPCIAddress *addr,
                                char **path, GError **error);

G_END_DECLS
