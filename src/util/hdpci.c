/*
 * hdpci.c: PCI devices, IOMMU groups and their sysfs/devfs files
 *
 * Naming: @addr is an hdPCIAddress value, @name its canonical string (a
 * buffer of HD_PCI_ADDRESS_STRLEN on the stack), @host says where the files
 * are.  Paths are built only by hdHostPath() and the hdPCIDevice*Path()
 * helpers below.  Nothing here keeps state besides the hdHost, which is
 * immutable once created, so every function is safe from any thread.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "hdinternal.h"
#include "hdfile.h"
#include "hostdev/pci.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(DIR, closedir)

/* Quoted input is cut to this many bytes: the rest adds nothing. */
#define HD_PCI_QUOTE_MAX 64

struct _hdHost {
    gatomicrefcount refs;
    char *root;     /* no trailing slash, except for "/" itself */
};


/* ---- Addresses --------------------------------------------------------- */

typedef enum {
    HD_NUMBER_OK,
    HD_NUMBER_SYNTAX,
    HD_NUMBER_RANGE,
} hdNumberResult;


/* Digits only (no sign, space or prefix), in @base (10 or 16), at most
 * @max (below 2^32, so the accumulator cannot overflow).  Decimal numbers
 * have no leading zeros: libvirt's own parser would read "010" as octal. */
static hdNumberResult
hdParseNumber(const char *str, unsigned int base, guint64 max, unsigned int *value)
{
    guint64 acc = 0;
    const char *p;

    if (*str == '\0')
        return HD_NUMBER_SYNTAX;
    if (base == 10 && str[0] == '0' && str[1] != '\0')
        return HD_NUMBER_SYNTAX;

    for (p = str; *p; p++) {
        int digit = base == 16 ? g_ascii_xdigit_value(*p) : g_ascii_digit_value(*p);

        if (digit < 0)
            return HD_NUMBER_SYNTAX;
        /* Stop accumulating past @max, but keep checking the syntax. */
        if (acc <= max)
            acc = acc * base + digit;
    }

    if (acc > max)
        return HD_NUMBER_RANGE;
    *value = acc;
    return HD_NUMBER_OK;
}


/* Exactly @mindigits to @maxdigits hex digits at @p; returns the character
 * after them, or NULL. */
static const char *
hdParseHexField(const char *p, gsize mindigits, gsize maxdigits, unsigned int *value)
{
    gsize ndigits = 0;
    gsize i;
    unsigned int acc = 0;

    while (g_ascii_isxdigit(p[ndigits]))
        ndigits++;
    if (ndigits < mindigits || ndigits > maxdigits)
        return NULL;

    /* At most 8 digits: no overflow. */
    for (i = 0; i < ndigits; i++)
        acc = acc * 16 + g_ascii_xdigit_value(p[i]);

    *value = acc;
    return p + ndigits;
}


/* @str shown in a message: escaped (it may hold control characters) and
 * cut short (it may be huge). */
static char *
hdQuoteInput(const char *str)
{
    g_autofree char *head = g_strndup(str, HD_PCI_QUOTE_MAX);
    g_autofree char *escaped = g_strescape(head, NULL);

    if (strlen(str) > HD_PCI_QUOTE_MAX)
        return g_strconcat(escaped, "...", NULL);
    return g_steal_pointer(&escaped);
}


gboolean
hdPCIAddressParse(const char *str, hdPCIAddress *addr, GError **error)
{
    hdPCIAddress parsed;
    const char *p = str;
    const char *reason = NULL;
    g_autofree char *quoted = NULL;

    g_return_val_if_fail(str != NULL, FALSE);
    g_return_val_if_fail(addr != NULL, FALSE);

    if (!(p = hdParseHexField(p, 4, 8, &parsed.domain)) || *p++ != ':' ||
        !(p = hdParseHexField(p, 2, 2, &parsed.bus)) || *p++ != ':' ||
        !(p = hdParseHexField(p, 2, 2, &parsed.slot)) || *p++ != '.' ||
        !(p = hdParseHexField(p, 1, 1, &parsed.function)) || *p != '\0')
        reason = _("expected DDDD:BB:SS.F in hexadecimal, with 4 to 8 domain digits");
    else if (parsed.slot > 0x1f)
        reason = _("the slot is greater than 0x1f");
    else if (parsed.function > 7)
        reason = _("the function is greater than 7");

    if (reason) {
        quoted = hdQuoteInput(str);
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("invalid PCI address '%1$s': %2$s"),
                   quoted, reason);
        return FALSE;
    }

    *addr = parsed;
    return TRUE;
}


/* One libvirt XML attribute: "0x" and hex digits, or decimal digits. */
static gboolean
hdPCIAddressParsePart(const char *attr, const char *value, guint64 max,
                      unsigned int *result, GError **error)
{
    hdNumberResult res;
    g_autofree char *quoted = NULL;
    g_autofree char *reason = NULL;
    g_autofree char *limit = NULL;

    if (value[0] == '0' && (value[1] == 'x' || value[1] == 'X'))
        res = hdParseNumber(value + 2, 16, max, result);
    else
        res = hdParseNumber(value, 10, max, result);

    if (res == HD_NUMBER_OK)
        return TRUE;

    if (res == HD_NUMBER_RANGE) {
        limit = g_strdup_printf("0x%" G_GINT64_MODIFIER "x", max);
        reason = g_strdup_printf(_("greater than %1$s"), limit);
    } else {
        reason = g_strdup(_("expected 0x and hexadecimal digits, or decimal digits "
                            "without leading zeros"));
    }
    quoted = hdQuoteInput(value);
    hdErrorSet(error, HD_ERROR_INVALID_ARG,
               _("invalid PCI address attribute %1$s='%2$s': %3$s"),
               attr, quoted, reason);
    return FALSE;
}


gboolean
hdPCIAddressParseParts(const char *domain, const char *bus,
                       const char *slot, const char *function,
                       hdPCIAddress *addr, GError **error)
{
    hdPCIAddress parsed = { 0 };

    g_return_val_if_fail(addr != NULL, FALSE);

    if (!bus || !slot) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("invalid PCI address: attribute '%1$s' is missing"),
                   bus ? "slot" : "bus");
        return FALSE;
    }

    /* libvirt's XML may leave out the domain and function: they are 0. */
    if ((domain && !hdPCIAddressParsePart("domain", domain, 0xffffffff,
                                          &parsed.domain, error)) ||
        !hdPCIAddressParsePart("bus", bus, 0xff, &parsed.bus, error) ||
        !hdPCIAddressParsePart("slot", slot, 0x1f, &parsed.slot, error) ||
        (function && !hdPCIAddressParsePart("function", function, 7,
                                            &parsed.function, error)))
        return FALSE;

    *addr = parsed;
    return TRUE;
}


const char *
hdPCIAddressFormat(const hdPCIAddress *addr, char buf[HD_PCI_ADDRESS_STRLEN])
{
    g_snprintf(buf, HD_PCI_ADDRESS_STRLEN, "%04x:%02x:%02x.%x",
               addr->domain, addr->bus, addr->slot, addr->function);
    return buf;
}


char *
hdPCIAddressToString(const hdPCIAddress *addr)
{
    char buf[HD_PCI_ADDRESS_STRLEN];

    return g_strdup(hdPCIAddressFormat(addr, buf));
}


gboolean
hdPCIAddressEqual(const hdPCIAddress *a, const hdPCIAddress *b)
{
    return a->domain == b->domain && a->bus == b->bus &&
           a->slot == b->slot && a->function == b->function;
}


gint
hdPCIAddressCompare(gconstpointer a, gconstpointer b)
{
    const hdPCIAddress *x = a;
    const hdPCIAddress *y = b;

    if (x->domain != y->domain)
        return x->domain < y->domain ? -1 : 1;
    if (x->bus != y->bus)
        return x->bus < y->bus ? -1 : 1;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    if (x->function != y->function)
        return x->function < y->function ? -1 : 1;
    return 0;
}


/* ---- The host ---------------------------------------------------------- */

hdHost *
hdHostNew(const char *root)
{
    hdHost *host = g_new0(hdHost, 1);
    gsize len;

    if (!root || !*root)
        root = "/";

    /* Keep "/" itself; drop other trailing slashes so that hdHostPath()
     * never doubles them. */
    len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        len--;

    g_atomic_ref_count_init(&host->refs);
    host->root = g_strndup(root, len);
    return host;
}


hdHost *
hdHostRef(hdHost *host)
{
    g_atomic_ref_count_inc(&host->refs);
    return host;
}


void
hdHostUnref(hdHost *host)
{
    if (!host || !g_atomic_ref_count_dec(&host->refs))
        return;
    g_free(host->root);
    g_free(host);
}


const char *
hdHostRoot(const hdHost *host)
{
    return host->root;
}


char *
hdHostPath(const hdHost *host, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *rel = NULL;
    const char *tail;

    va_start(ap, fmt);
    rel = g_strdup_vprintf(fmt, ap);
    va_end(ap);

    for (tail = rel; *tail == '/'; tail++)
        ;

    if (strcmp(host->root, "/") == 0)
        return g_strconcat("/", tail, NULL);
    return g_strconcat(host->root, "/", tail, NULL);
}


/* ---- Devices: paths and plain reads ------------------------------------ */

/* The device's directory, or @file inside it. */
static char *
hdPCIDevicePath(hdHost *host, const hdPCIAddress *addr, const char *file)
{
    char name[HD_PCI_ADDRESS_STRLEN];

    hdPCIAddressFormat(addr, name);
    if (!file)
        return hdHostPath(host, "sys/bus/pci/devices/%s", name);
    return hdHostPath(host, "sys/bus/pci/devices/%s/%s", name, file);
}


/* Fails with errno and the path when the device is not there, so that a
 * missing optional file afterwards means just that. */
static gboolean
hdPCIDeviceCheck(hdHost *host, const hdPCIAddress *addr, GError **error)
{
    g_autofree char *path = hdPCIDevicePath(host, addr, NULL);
    char name[HD_PCI_ADDRESS_STRLEN];
    struct stat sb;

    if (stat(path, &sb) < 0) {
        hdErrorSetSystem(error, errno, _("cannot find PCI device %1$s at '%2$s'"),
                         hdPCIAddressFormat(addr, name), path);
        return FALSE;
    }
    return TRUE;
}


gboolean
hdPCIDeviceExists(hdHost *host, const hdPCIAddress *addr)
{
    g_autofree char *path = hdPCIDevicePath(host, addr, NULL);
    struct stat sb;

    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}


/* An ID attribute as the kernel prints it: "0x" and hex digits. */
static gboolean
hdPCIDeviceReadHex(hdHost *host, const hdPCIAddress *addr, const char *file,
                   guint64 max, unsigned int *value, GError **error)
{
    g_autofree char *path = hdPCIDevicePath(host, addr, file);
    g_autofree char *text = NULL;
    g_autofree char *quoted = NULL;

    if (!hdFileReadAttr(path, &text, error))
        return FALSE;

    if (text[0] == '0' && text[1] == 'x' &&
        hdParseNumber(text + 2, 16, max, value) == HD_NUMBER_OK)
        return TRUE;

    quoted = hdQuoteInput(text);
    hdErrorSet(error, HD_ERROR_OPERATION_FAILED, _("unexpected contents '%1$s' in '%2$s'"),
               quoted, path);
    return FALSE;
}


gboolean
hdPCIDeviceReadIDs(hdHost *host, const hdPCIAddress *addr,
                   hdPCIDeviceIDs *ids, GError **error)
{
    hdPCIDeviceIDs read;

    if (!hdPCIDeviceReadHex(host, addr, "vendor", 0xffff, &read.vendor, error) ||
        !hdPCIDeviceReadHex(host, addr, "device", 0xffff, &read.device, error) ||
        !hdPCIDeviceReadHex(host, addr, "class", 0xffffff, &read.class_code, error))
        return FALSE;

    *ids = read;
    return TRUE;
}


gboolean
hdPCIDeviceGetDriver(hdHost *host, const hdPCIAddress *addr,
                     char **driver, GError **error)
{
    g_autofree char *path = hdPCIDevicePath(host, addr, "driver");

    if (!hdPCIDeviceCheck(host, addr, error))
        return FALSE;
    return hdFileReadLinkName(path, TRUE, driver, error);
}


gboolean
hdPCIDeviceIsVFIOBound(hdHost *host, const hdPCIAddress *addr)
{
    g_autofree char *driver = NULL;
    g_autofree char *vfiodev = NULL;

    if (!hdPCIDeviceGetDriver(host, addr, &driver, NULL))
        return FALSE;
    if (g_strcmp0(driver, HD_VFIO_DRIVER) == 0)
        return TRUE;

    /* Variant drivers (mlx5_vfio_pci, ...) register a VFIO device too. */
    vfiodev = hdPCIDevicePath(host, addr, "vfio-dev");
    return driver && g_file_test(vfiodev, G_FILE_TEST_IS_DIR);
}


gboolean
hdPCIDeviceIsBridge(hdHost *host, const hdPCIAddress *addr)
{
    hdPCIDeviceIDs ids;
    g_autofree char *driver = NULL;

    if (hdPCIDeviceReadIDs(host, addr, &ids, NULL) && (ids.class_code >> 8) == 0x0604)
        return TRUE;
    return hdPCIDeviceGetDriver(host, addr, &driver, NULL) &&
           g_strcmp0(driver, "pcieport") == 0;
}


gboolean
hdPCIDeviceGetDriverOverride(hdHost *host, const hdPCIAddress *addr,
                             char **value, GError **error)
{
    g_autofree char *path = hdPCIDevicePath(host, addr, "driver_override");
    g_autofree char *text = NULL;

    if (!hdFileReadAttr(path, &text, error))
        return FALSE;

    if (*text == '\0' || strcmp(text, "(null)") == 0)
        *value = NULL;
    else
        *value = g_steal_pointer(&text);
    return TRUE;
}


/* ---- Devices: drivers -------------------------------------------------- */

/* @driver ends up in a path and in driver_override: a plain name only. */
static gboolean
hdPCIDriverNameCheck(const char *driver, GError **error)
{
    const char *p;
    g_autofree char *quoted = NULL;

    if (driver && *driver && strcmp(driver, ".") != 0 && strcmp(driver, "..") != 0) {
        for (p = driver; *p; p++) {
            if (*p == '/' || g_ascii_isspace(*p) || g_ascii_iscntrl(*p))
                break;
        }
        if (*p == '\0')
            return TRUE;
    }

    quoted = hdQuoteInput(driver ? driver : "");
    hdErrorSet(error, HD_ERROR_INVALID_ARG, _("invalid driver name '%1$s'"), quoted);
    return FALSE;
}


static gboolean
hdPCIDriverUnbind(hdHost *host, const char *name, const char *driver, GError **error)
{
    g_autofree char *path = hdHostPath(host, "sys/bus/pci/drivers/%s/unbind", driver);

    return hdFileWriteAttr(path, name, error);
}


gboolean
hdPCIDeviceSetDriverOverride(hdHost *host, const hdPCIAddress *addr,
                             const char *driver, GError **error)
{
    g_autofree char *path = hdPCIDevicePath(host, addr, "driver_override");

    if (driver && !hdPCIDriverNameCheck(driver, error))
        return FALSE;
    if (!hdPCIDeviceCheck(host, addr, error))
        return FALSE;

    /* The kernel clears the override on an empty line; an empty write
     * would never reach it. */
    return hdFileWriteAttr(path, driver ? driver : "\n", error);
}


gboolean
hdPCIDeviceProbe(hdHost *host, const hdPCIAddress *addr, GError **error)
{
    char name[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *path = hdHostPath(host, "sys/bus/pci/drivers_probe");

    return hdFileWriteAttr(path, hdPCIAddressFormat(addr, name), error);
}


/* The device is on @wanted now, or an error names both drivers. */
static gboolean
hdPCIDeviceCheckDriver(hdHost *host, const hdPCIAddress *addr, const char *wanted,
                       GError **error)
{
    char name[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *actual = NULL;

    if (!hdPCIDeviceGetDriver(host, addr, &actual, error))
        return FALSE;
    if (g_strcmp0(actual, wanted) == 0)
        return TRUE;

    hdPCIAddressFormat(addr, name);
    if (actual) {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
                   _("PCI device %1$s is bound to driver '%2$s' instead of '%3$s'"),
                   name, actual, wanted);
    } else {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
                   _("PCI device %1$s has no driver after binding it to '%2$s' "
                     "(the driver's probe failed)"),
                   name, wanted);
    }
    return FALSE;
}


/* Give *error the fuller @message (which quotes the old one), keeping its
 * domain and code so that errno survives. */
static void
hdPCIErrorSetMessage(GError *error, char *message)
{
    g_free(error->message);
    error->message = message;
}


gboolean
hdPCIDeviceBindDriver(hdHost *host, const hdPCIAddress *addr,
                      const char *driver, GError **error)
{
    char name[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *current = NULL;

    if (!hdPCIDriverNameCheck(driver, error))
        return FALSE;
    hdPCIAddressFormat(addr, name);

    /* Step 1: the override makes the next probe pick @driver, and only
     * @driver, so no other driver can grab the device in between.  It is
     * left set afterwards: rolling back is the caller's decision, because
     * giving a device back is unsafe while its group is in use. */
    if (!hdPCIDeviceSetDriverOverride(host, addr, driver, error))
        goto error;

    /* Step 2: leave the current driver, unless it already is @driver. */
    if (!hdPCIDeviceGetDriver(host, addr, &current, error))
        goto error;
    if (g_strcmp0(current, driver) != 0) {
        if (current && !hdPCIDriverUnbind(host, name, current, error))
            goto error;

        /* Step 3: probe; the kernel binds the override driver. */
        if (!hdPCIDeviceProbe(host, addr, error))
            goto error;
    }

    /* Step 4: a failed ->probe() is not reported to the writer of
     * drivers_probe on every kernel: look at what happened. */
    return hdPCIDeviceCheckDriver(host, addr, driver, error);

 error:
    if (error && *error) {
        char *message = g_strdup_printf(_("cannot bind PCI device %1$s to driver '%2$s': %3$s"),
                                        name, driver, (*error)->message);

        hdPCIErrorSetMessage(*error, message);
    }
    return FALSE;
}


gboolean
hdPCIDeviceReprobe(hdHost *host, const hdPCIAddress *addr,
                   char **driver, GError **error)
{
    char name[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *current = NULL;

    hdPCIAddressFormat(addr, name);

    /* Step 1: clear the override, so that the probe picks the native driver. */
    if (!hdPCIDeviceSetDriverOverride(host, addr, NULL, error))
        goto error;

    /* Step 2: leave the current driver (blocks while a VFIO user holds it). */
    if (!hdPCIDeviceGetDriver(host, addr, &current, error))
        goto error;
    if (current && !hdPCIDriverUnbind(host, name, current, error))
        goto error;

    /* Step 3: without an override the kernel picks the native driver. */
    if (!hdPCIDeviceProbe(host, addr, error))
        goto error;

    /* Step 4: a device may legitimately end without a driver. */
    g_clear_pointer(&current, g_free);
    if (!hdPCIDeviceGetDriver(host, addr, &current, error))
        goto error;
    if (driver)
        *driver = g_steal_pointer(&current);
    return TRUE;

 error:
    if (error && *error) {
        char *message = g_strdup_printf(_("cannot give PCI device %1$s back to the host: %2$s"),
                                        name, (*error)->message);

        hdPCIErrorSetMessage(*error, message);
    }
    return FALSE;
}


gboolean
hdPCIDeviceUnbind(hdHost *host, const hdPCIAddress *addr, GError **error)
{
    char name[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *current = NULL;

    if (!hdPCIDeviceGetDriver(host, addr, &current, error))
        return FALSE;
    if (!current)
        return TRUE;
    return hdPCIDriverUnbind(host, hdPCIAddressFormat(addr, name), current, error);
}


/* ---- Devices: reset ---------------------------------------------------- */

gboolean
hdPCIDeviceReset(hdHost *host, const hdPCIAddress *addr, GError **error)
{
    char name[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *path = hdPCIDevicePath(host, addr, "reset");

    hdPCIAddressFormat(addr, name);
    if (!hdPCIDeviceCheck(host, addr, error))
        return FALSE;

    /* The kernel shows "reset" only when the device has a reset method. */
    if (access(path, F_OK) < 0) {
        if (errno == ENOENT) {
            hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
                       _("PCI device %1$s cannot be reset: '%2$s' does not exist"),
                       name, path);
        } else {
            hdErrorSetSystem(error, errno, _("cannot access '%1$s'"), path);
        }
        return FALSE;
    }

    if (!hdFileWriteAttr(path, "1", error)) {
        if (error && *error) {
            char *message = g_strdup_printf(_("cannot reset PCI device %1$s: %2$s"),
                                            name, (*error)->message);

            hdPCIErrorSetMessage(*error, message);
        }
        return FALSE;
    }
    return TRUE;
}


gboolean
hdPCIDeviceGetResetMethod(hdHost *host, const hdPCIAddress *addr,
                          char **methods, GError **error)
{
    g_autofree char *path = hdPCIDevicePath(host, addr, "reset_method");
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;

    if (!hdPCIDeviceCheck(host, addr, error))
        return FALSE;

    if (!hdFileReadAttr(path, &text, &err)) {
        if (!g_error_matches(err, HD_SYSTEM_ERROR, ENOENT)) {
            g_propagate_error(error, g_steal_pointer(&err));
            return FALSE;
        }
    }

    *methods = text && *text ? g_steal_pointer(&text) : NULL;
    return TRUE;
}


/* ---- IOMMU groups ------------------------------------------------------ */

gboolean
hdPCIDeviceGetIOMMUGroup(hdHost *host, const hdPCIAddress *addr,
                         unsigned int *group, GError **error)
{
    char name[HD_PCI_ADDRESS_STRLEN];
    g_autofree char *path = hdPCIDevicePath(host, addr, "iommu_group");
    g_autofree char *target = NULL;
    g_autofree char *quoted = NULL;

    if (!hdPCIDeviceCheck(host, addr, error) ||
        !hdFileReadLinkName(path, TRUE, &target, error))
        return FALSE;

    hdPCIAddressFormat(addr, name);
    if (!target) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND,
                   _("PCI device %1$s has no IOMMU group ('%2$s' does not exist)"),
                   name, path);
        return FALSE;
    }

    if (hdParseNumber(target, 10, G_MAXUINT, group) == HD_NUMBER_OK)
        return TRUE;

    quoted = hdQuoteInput(target);
    hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
               _("unexpected IOMMU group '%1$s' at '%2$s'"), quoted, path);
    return FALSE;
}


GArray *
hdIOMMUGroupGetMembers(hdHost *host, unsigned int group, GError **error)
{
    g_autofree char *path = hdHostPath(host, "sys/kernel/iommu_groups/%u/devices", group);
    g_autoptr(GArray) members = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    g_autoptr(DIR) dir = NULL;
    struct dirent *ent;

    if (!(dir = opendir(path))) {
        hdErrorSetSystem(error, errno, _("cannot open IOMMU group directory '%1$s'"), path);
        return NULL;
    }

    for (errno = 0; (ent = readdir(dir)); errno = 0) {
        hdPCIAddress addr;
        g_autoptr(GError) err = NULL;

        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        /* Groups hold only PCI devices on the hosts we manage; anything else
         * is none of our business. */
        if (!hdPCIAddressParse(ent->d_name, &addr, &err)) {
            g_debug("ignoring '%s' in '%s': %s", ent->d_name, path, err->message);
            continue;
        }
        g_array_append_val(members, addr);
    }
    if (errno != 0) {
        hdErrorSetSystem(error, errno, _("cannot read IOMMU group directory '%1$s'"), path);
        return NULL;
    }

    g_array_sort(members, hdPCIAddressCompare);
    return g_steal_pointer(&members);
}


char *
hdIOMMUGroupDevPath(hdHost *host, unsigned int group)
{
    return hdHostPath(host, "dev/vfio/%u", group);
}


/* "vfio" and a decimal number, as the kernel names VFIO devices. */
static gboolean
hdVFIOCdevNameValid(const char *entry)
{
    unsigned int unused;

    return g_str_has_prefix(entry, "vfio") &&
           hdParseNumber(entry + strlen("vfio"), 10, G_MAXUINT, &unused) == HD_NUMBER_OK;
}


gboolean
hdPCIDeviceGetVFIOCdev(hdHost *host, const hdPCIAddress *addr,
                       char **path, GError **error)
{
    g_autofree char *dirpath = hdPCIDevicePath(host, addr, "vfio-dev");
    g_autoptr(DIR) dir = NULL;
    struct dirent *ent;

    if (!hdPCIDeviceCheck(host, addr, error))
        return FALSE;

    if (!(dir = opendir(dirpath))) {
        if (errno == ENOENT) {
            *path = NULL;
            return TRUE;
        }
        hdErrorSetSystem(error, errno, _("cannot open directory '%1$s'"), dirpath);
        return FALSE;
    }

    for (errno = 0; (ent = readdir(dir)); errno = 0) {
        if (hdVFIOCdevNameValid(ent->d_name)) {
            *path = hdHostPath(host, "dev/vfio/devices/%s", ent->d_name);
            return TRUE;
        }
    }
    if (errno != 0) {
        hdErrorSetSystem(error, errno, _("cannot read directory '%1$s'"), dirpath);
        return FALSE;
    }

    *path = NULL;
    return TRUE;
}
