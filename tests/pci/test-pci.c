/*
 * test-pci.c: every PCI/sysfs operation against the simulated host
 *
 * The topology (topology-pci.json next to this file) is this test's own:
 *
 *   group 1  0000:00:1c.0  root port, pcieport
 *   group 2  0000:01:00.0  GPU, nvidia, reset "flr bus"  (behind 1c.0)
 *            0000:01:00.1  its audio, snd_hda_intel, reset "flr"
 *   group 3  0000:02:00.0  NIC, e1000e, no reset file
 *   group 4  0000:03:00.0  PCIe-to-PCI bridge (class 0x060401), no driver
 *            0000:04:00.0  NIC, igb, reset "bus"  (behind 03:00.0)
 *            0000:04:01.0  NIC, igb, not bound at start
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "hostdev/error.h"
#include "hostdev/pci.h"
#include "hdtest-sim.h"

#define GPU "0000:01:00.0"
#define AUDIO "0000:01:00.1"
#define NIC "0000:02:00.0"
#define ROOT_PORT "0000:00:1c.0"
#define PCI_BRIDGE "0000:03:00.0"
#define IGB0 "0000:04:00.0"
#define IGB1 "0000:04:01.0"
#define MISSING "0000:0f:00.0"

typedef struct {
    hdSimHost *sim;
    hdHost *host;
    guint violations;   /* the test expects this many */
} Fixture;


static void
fixture_setup(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) err = NULL;

    f->sim = hdSimHostStart(HD_PCI_TOPOLOGY, NULL, &err);
    g_assert_no_error(err);
    f->host = hdHostNew(hdSimHostRoot(f->sim));
    f->violations = 0;
}


static void
fixture_teardown(Fixture *f, gconstpointer data)
{
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, f->violations);
    hdHostUnref(f->host);
    hdSimHostStop(f->sim);
}


static hdPCIAddress
addr_of(const char *str)
{
    hdPCIAddress addr;

    g_assert_true(hdPCIAddressParse(str, &addr, NULL));
    return addr;
}


static char *
driver_of(Fixture *f, const char *str)
{
    hdPCIAddress addr = addr_of(str);
    g_autoptr(GError) err = NULL;
    char *driver = NULL;

    g_assert_true(hdPCIDeviceGetDriver(f->host, &addr, &driver, &err));
    g_assert_no_error(err);
    return driver;
}


static void
assert_driver(Fixture *f, const char *str, const char *expected)
{
    g_autofree char *ours = driver_of(f, str);
    g_autofree char *sims = hdSimHostDriverOf(f->sim, str);

    g_assert_cmpstr(ours, ==, expected);
    g_assert_cmpstr(sims, ==, expected);
}


static void
bind(Fixture *f, const char *str, const char *driver)
{
    hdPCIAddress addr = addr_of(str);
    g_autoptr(GError) err = NULL;

    g_assert_true(hdPCIDeviceBindDriver(f->host, &addr, driver, &err));
    g_assert_no_error(err);
    assert_driver(f, str, driver);
}


static void
reprobe(Fixture *f, const char *str, const char *expected)
{
    hdPCIAddress addr = addr_of(str);
    g_autoptr(GError) err = NULL;
    g_autofree char *driver = NULL;

    g_assert_true(hdPCIDeviceReprobe(f->host, &addr, &driver, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(driver, ==, expected);
    assert_driver(f, str, expected);
}


static gboolean
group_node_exists(Fixture *f, unsigned int group)
{
    g_autofree char *path = hdIOMMUGroupDevPath(f->host, group);

    return g_file_test(path, G_FILE_TEST_EXISTS);
}


/* Index of the first event @name of @device at or after @from, or -1. */
static int
find_event(JsonArray *events, int from, const char *name, const char *device)
{
    guint i;

    for (i = MAX(from, 0); i < json_array_get_length(events); i++) {
        JsonObject *ev = json_array_get_object_element(events, i);

        if (g_strcmp0(json_object_get_string_member_with_default(ev, "event", NULL),
                      name) == 0 &&
            g_strcmp0(json_object_get_string_member_with_default(ev, "device", NULL),
                      device) == 0)
            return i;
    }
    return -1;
}


static JsonArray *
events_of(Fixture *f)
{
    g_autoptr(GError) err = NULL;
    JsonArray *events = hdSimHostEvents(f->sim, &err);

    g_assert_no_error(err);
    g_assert_nonnull(events);
    return events;
}


static void
assert_no_device(const GError *err, const char *root)
{
    g_autofree char *path = g_strdup_printf("%s/sys/bus/pci/devices/" MISSING, root);

    g_assert_nonnull(err);
    g_test_message("%s", err->message);
    g_assert_true(err->domain == HD_SYSTEM_ERROR);
    g_assert_cmpint(err->code, ==, ENOENT);
    g_assert_cmpint(hdErrorErrno(err), ==, ENOENT);
    g_assert_nonnull(strstr(err->message, path));
}


static void
test_ids(Fixture *f, gconstpointer data)
{
    hdPCIAddress gpu = addr_of(GPU);
    hdPCIAddress bridge = addr_of(PCI_BRIDGE);
    hdPCIAddress missing = addr_of(MISSING);
    hdPCIDeviceIDs ids;
    g_autoptr(GError) err = NULL;

    g_assert_true(hdPCIDeviceExists(f->host, &gpu));
    g_assert_false(hdPCIDeviceExists(f->host, &missing));

    g_assert_true(hdPCIDeviceReadIDs(f->host, &gpu, &ids, &err));
    g_assert_no_error(err);
    g_assert_cmphex(ids.vendor, ==, 0x10de);
    g_assert_cmphex(ids.device, ==, 0x2204);
    g_assert_cmphex(ids.class_code, ==, 0x030000);

    g_assert_true(hdPCIDeviceReadIDs(f->host, &bridge, &ids, &err));
    g_assert_cmphex(ids.vendor, ==, 0x1b21);
    g_assert_cmphex(ids.device, ==, 0x1080);
    g_assert_cmphex(ids.class_code, ==, 0x060401);
}


static void
test_driver(Fixture *f, gconstpointer data)
{
    hdPCIAddress gpu = addr_of(GPU);
    hdPCIAddress igb1 = addr_of(IGB1);
    g_autofree char *override = NULL;
    g_autoptr(GError) err = NULL;

    assert_driver(f, GPU, "nvidia");
    assert_driver(f, ROOT_PORT, "pcieport");
    assert_driver(f, PCI_BRIDGE, NULL);
    assert_driver(f, IGB1, NULL);

    g_assert_true(hdPCIDeviceGetDriverOverride(f->host, &gpu, &override, &err));
    g_assert_no_error(err);
    g_assert_null(override);

    g_assert_false(hdPCIDeviceIsVFIOBound(f->host, &gpu));
    g_assert_false(hdPCIDeviceIsVFIOBound(f->host, &igb1));
}


static void
test_bind_vfio_and_back(Fixture *f, gconstpointer data)
{
    hdPCIAddress nic = addr_of(NIC);
    g_autofree char *override = NULL;
    g_autofree char *cdev = NULL;
    g_autofree char *prefix = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonArray) events = NULL;
    int seen;

    g_assert_false(group_node_exists(f, 3));
    g_assert_true(hdPCIDeviceGetVFIOCdev(f->host, &nic, &cdev, &err));
    g_assert_null(cdev);

    bind(f, NIC, HD_VFIO_DRIVER);

    g_assert_true(hdPCIDeviceIsVFIOBound(f->host, &nic));
    g_assert_true(hdPCIDeviceGetDriverOverride(f->host, &nic, &override, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(override, ==, HD_VFIO_DRIVER);
    g_assert_true(group_node_exists(f, 3));

    g_assert_true(hdPCIDeviceGetVFIOCdev(f->host, &nic, &cdev, &err));
    g_assert_no_error(err);
    g_assert_nonnull(cdev);
    prefix = g_strdup_printf("%s/dev/vfio/devices/vfio", hdSimHostRoot(f->sim));
    g_assert_true(g_str_has_prefix(cdev, prefix));
    g_assert_true(g_file_test(cdev, G_FILE_TEST_EXISTS));

    /* Binding again changes nothing. */
    bind(f, NIC, HD_VFIO_DRIVER);

    /* The steps, in the order the kernel needs them. */
    events = events_of(f);
    seen = find_event(events, 0, "override", NIC);
    g_assert_cmpint(seen, >=, 0);
    seen = find_event(events, seen, "unbind", NIC);
    g_assert_cmpint(seen, >=, 0);
    seen = find_event(events, seen, "bind", NIC);
    g_assert_cmpint(seen, >=, 0);

    reprobe(f, NIC, "e1000e");
    g_clear_pointer(&override, g_free);
    g_assert_true(hdPCIDeviceGetDriverOverride(f->host, &nic, &override, &err));
    g_assert_null(override);
    g_assert_false(hdPCIDeviceIsVFIOBound(f->host, &nic));
    g_assert_false(group_node_exists(f, 3));
    g_assert_false(g_file_test(cdev, G_FILE_TEST_EXISTS));
    g_clear_pointer(&cdev, g_free);
    g_assert_true(hdPCIDeviceGetVFIOCdev(f->host, &nic, &cdev, &err));
    g_assert_no_error(err);
    g_assert_null(cdev);
}


/* A device that starts without a driver gets one and gives it back. */
static void
test_bind_driverless(Fixture *f, gconstpointer data)
{
    bind(f, IGB1, HD_VFIO_DRIVER);
    g_assert_true(group_node_exists(f, 4));
    reprobe(f, IGB1, "igb");
    g_assert_false(group_node_exists(f, 4));
}


static void
test_group(Fixture *f, gconstpointer data)
{
    static const struct {
        const char *device;
        unsigned int group;
    } groups[] = {
        { ROOT_PORT, 1 }, { GPU, 2 }, { AUDIO, 2 }, { NIC, 3 },
        { PCI_BRIDGE, 4 }, { IGB0, 4 }, { IGB1, 4 },
    };
    static const char *const group4[] = { PCI_BRIDGE, IGB0, IGB1 };
    g_autoptr(GArray) members = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *path = NULL;
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(groups); i++) {
        hdPCIAddress addr = addr_of(groups[i].device);
        unsigned int group = G_MAXUINT;

        g_assert_true(hdPCIDeviceGetIOMMUGroup(f->host, &addr, &group, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(group, ==, groups[i].group);
    }

    members = hdIOMMUGroupGetMembers(f->host, 4, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(members->len, ==, G_N_ELEMENTS(group4));
    for (i = 0; i < G_N_ELEMENTS(group4); i++) {
        hdPCIAddress addr = addr_of(group4[i]);

        g_assert_true(hdPCIAddressEqual(&g_array_index(members, hdPCIAddress, i), &addr));
    }
    g_clear_pointer(&members, g_array_unref);

    members = hdIOMMUGroupGetMembers(f->host, 99, &err);
    g_assert_null(members);
    g_assert_error(err, HD_SYSTEM_ERROR, ENOENT);
    path = g_strdup_printf("%s/sys/kernel/iommu_groups/99/devices", hdSimHostRoot(f->sim));
    g_assert_nonnull(strstr(err->message, path));
}


/* Binding a whole group: its /dev/vfio node appears with the first member
 * and goes with the last. */
static void
test_group_node(Fixture *f, gconstpointer data)
{
    g_autoptr(GArray) members = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *node = hdIOMMUGroupDevPath(f->host, 2);
    g_autofree char *expected = g_strdup_printf("%s/dev/vfio/2", hdSimHostRoot(f->sim));

    g_assert_cmpstr(node, ==, expected);
    members = hdIOMMUGroupGetMembers(f->host, 2, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(members->len, ==, 2);

    g_assert_false(group_node_exists(f, 2));
    bind(f, GPU, HD_VFIO_DRIVER);
    g_assert_true(group_node_exists(f, 2));
    bind(f, AUDIO, HD_VFIO_DRIVER);

    reprobe(f, AUDIO, "snd_hda_intel");
    g_assert_true(group_node_exists(f, 2));
    reprobe(f, GPU, "nvidia");
    g_assert_false(group_node_exists(f, 2));
}


static void
test_bridge(Fixture *f, gconstpointer data)
{
    hdPCIAddress root_port = addr_of(ROOT_PORT);
    hdPCIAddress bridge = addr_of(PCI_BRIDGE);
    hdPCIAddress gpu = addr_of(GPU);
    hdPCIAddress nic = addr_of(NIC);
    hdPCIAddress missing = addr_of(MISSING);

    g_assert_true(hdPCIDeviceIsBridge(f->host, &root_port));
    g_assert_true(hdPCIDeviceIsBridge(f->host, &bridge));
    g_assert_false(hdPCIDeviceIsBridge(f->host, &gpu));
    g_assert_false(hdPCIDeviceIsBridge(f->host, &nic));
    g_assert_false(hdPCIDeviceIsBridge(f->host, &missing));
}


static void
test_reset(Fixture *f, gconstpointer data)
{
    hdPCIAddress gpu = addr_of(GPU);
    hdPCIAddress audio = addr_of(AUDIO);
    hdPCIAddress nic = addr_of(NIC);
    g_autofree char *methods = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonArray) events = NULL;

    g_assert_true(hdPCIDeviceGetResetMethod(f->host, &gpu, &methods, &err));
    g_assert_no_error(err);
    g_assert_cmpstr(methods, ==, "flr bus");
    g_clear_pointer(&methods, g_free);
    g_assert_true(hdPCIDeviceGetResetMethod(f->host, &audio, &methods, &err));
    g_assert_cmpstr(methods, ==, "flr");
    g_clear_pointer(&methods, g_free);

    g_assert_true(hdPCIDeviceReset(f->host, &gpu, &err));
    g_assert_no_error(err);
    events = events_of(f);
    g_assert_cmpint(find_event(events, 0, "reset", GPU), >=, 0);

    /* Bound to vfio-pci, as the manager resets it. */
    bind(f, GPU, HD_VFIO_DRIVER);
    g_assert_true(hdPCIDeviceReset(f->host, &gpu, &err));
    g_assert_no_error(err);
    reprobe(f, GPU, "nvidia");

    /* No reset file: the device cannot be reset, and the error says which. */
    g_assert_true(hdPCIDeviceGetResetMethod(f->host, &nic, &methods, &err));
    g_assert_no_error(err);
    g_assert_null(methods);
    g_assert_false(hdPCIDeviceReset(f->host, &nic, &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, NIC));
}


static void
test_reset_fault(Fixture *f, gconstpointer data)
{
    hdPCIAddress gpu = addr_of(GPU);
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonArray) events = NULL;

    g_assert_true(hdSimHostCtl(f->sim, "fault " GPU " reset fail", &err));
    g_assert_no_error(err);

    g_assert_false(hdPCIDeviceReset(f->host, &gpu, &err));
    g_assert_nonnull(err);
    g_test_message("%s", err->message);
    g_assert_true(err->domain == HD_SYSTEM_ERROR);
    g_assert_cmpint(hdErrorErrno(err), !=, 0);
    g_assert_nonnull(strstr(err->message, GPU));
    g_assert_nonnull(strstr(err->message, "/reset'"));
    g_clear_error(&err);
    events = events_of(f);
    g_assert_cmpint(find_event(events, 0, "reset-failed", GPU), >=, 0);

    g_assert_true(hdSimHostCtl(f->sim, "fault " GPU " reset ok", &err));
    g_assert_true(hdPCIDeviceReset(f->host, &gpu, &err));
    g_assert_no_error(err);
}


/* The probe fails: the error names the device and the wanted driver, and
 * the device is left without one for the caller to decide. */
static void
test_bind_probe_fails(Fixture *f, gconstpointer data)
{
    hdPCIAddress nic = addr_of(NIC);
    g_autoptr(GError) err = NULL;

    g_assert_true(hdSimHostCtl(f->sim, "fault " NIC " probe fail", &err));
    g_assert_no_error(err);

    g_assert_false(hdPCIDeviceBindDriver(f->host, &nic, HD_VFIO_DRIVER, &err));
    g_assert_nonnull(err);
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, NIC));
    g_assert_nonnull(strstr(err->message, "'" HD_VFIO_DRIVER "'"));
    g_clear_error(&err);
    assert_driver(f, NIC, NULL);
    g_assert_false(group_node_exists(f, 3));

    /* Giving back while the native probe fails too: not an error, the
     * device just ends without a driver, and the caller is told so. */
    reprobe(f, NIC, NULL);

    g_assert_true(hdSimHostCtl(f->sim, "fault " NIC " probe ok", &err));
    reprobe(f, NIC, "e1000e");
}


typedef struct {
    hdHost *host;
    hdPCIAddress addr;
    gint done;
    gboolean ok;
    GError *err;
} UnbindJob;


static gpointer
unbind_thread(gpointer data)
{
    UnbindJob *job = data;

    job->ok = hdPCIDeviceUnbind(job->host, &job->addr, &job->err);
    g_atomic_int_set(&job->done, 1);
    return NULL;
}


/* Unbinding from vfio-pci blocks while a holder has the group open and
 * completes once it closes it. */
static void
test_unbind_blocked(Fixture *f, gconstpointer data)
{
    g_autofree char *node = hdIOMMUGroupDevPath(f->host, 3);
    UnbindJob job = { f->host, addr_of(NIC), 0, FALSE, NULL };
    g_autoptr(JsonArray) events = NULL;
    GThread *thread;
    gint64 start;
    int fd;

    bind(f, NIC, HD_VFIO_DRIVER);
    fd = open(node, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);

    start = g_get_monotonic_time();
    thread = g_thread_new("unbind", unbind_thread, &job);
    g_usleep(300 * 1000);
    g_assert_cmpint(g_atomic_int_get(&job.done), ==, 0);
    events = events_of(f);
    g_assert_cmpint(find_event(events, 0, "unbind-blocked", NIC), >=, 0);

    g_assert_cmpint(close(fd), ==, 0);
    g_thread_join(thread);
    g_assert_no_error(job.err);
    g_assert_true(job.ok);
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 300 * 1000);
    assert_driver(f, NIC, NULL);

    reprobe(f, NIC, "e1000e");
}


/* The separate steps, as the manager uses them to restore a device's
 * original override and driver. */
static void
test_override_and_probe(Fixture *f, gconstpointer data)
{
    hdPCIAddress nic = addr_of(NIC);
    g_autofree char *override = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_true(hdPCIDeviceSetDriverOverride(f->host, &nic, HD_VFIO_DRIVER, &err));
    g_assert_no_error(err);
    g_assert_true(hdPCIDeviceGetDriverOverride(f->host, &nic, &override, &err));
    g_assert_cmpstr(override, ==, HD_VFIO_DRIVER);
    g_clear_pointer(&override, g_free);
    /* The override alone changes nothing, nor does probing a bound device. */
    assert_driver(f, NIC, "e1000e");
    g_assert_true(hdPCIDeviceProbe(f->host, &nic, &err));
    g_assert_no_error(err);
    assert_driver(f, NIC, "e1000e");

    g_assert_true(hdPCIDeviceUnbind(f->host, &nic, &err));
    g_assert_true(hdPCIDeviceProbe(f->host, &nic, &err));
    g_assert_no_error(err);
    assert_driver(f, NIC, HD_VFIO_DRIVER);

    g_assert_true(hdPCIDeviceSetDriverOverride(f->host, &nic, NULL, &err));
    g_assert_no_error(err);
    g_assert_true(hdPCIDeviceGetDriverOverride(f->host, &nic, &override, &err));
    g_assert_null(override);
    g_assert_true(hdPCIDeviceUnbind(f->host, &nic, &err));
    g_assert_true(hdPCIDeviceProbe(f->host, &nic, &err));
    g_assert_no_error(err);
    assert_driver(f, NIC, "e1000e");

    g_assert_false(hdPCIDeviceSetDriverOverride(f->host, &nic, "../e1000e", &err));
    g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
}


static void
test_unbind(Fixture *f, gconstpointer data)
{
    hdPCIAddress igb0 = addr_of(IGB0);
    g_autoptr(GError) err = NULL;

    g_assert_true(hdPCIDeviceUnbind(f->host, &igb0, &err));
    g_assert_no_error(err);
    assert_driver(f, IGB0, NULL);

    /* Nothing to unbind is not an error. */
    g_assert_true(hdPCIDeviceUnbind(f->host, &igb0, &err));
    g_assert_no_error(err);

    reprobe(f, IGB0, "igb");
}


/* What the manager must never do: give a member of a group back to a host
 * driver while a user holds the group.  The kernel (>= 5.19) refuses, the
 * device stays driverless, and the simulated host records a violation. */
static void
test_bind_host_driver_into_held_group(Fixture *f, gconstpointer data)
{
    hdPCIAddress audio = addr_of(AUDIO);
    g_autofree char *node = hdIOMMUGroupDevPath(f->host, 2);
    g_autoptr(GError) err = NULL;
    int fd;

    bind(f, GPU, HD_VFIO_DRIVER);
    g_assert_true(hdPCIDeviceUnbind(f->host, &audio, &err));
    g_assert_no_error(err);
    /* Viable: the other member has no driver. */
    fd = open(node, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);

    g_assert_false(hdPCIDeviceBindDriver(f->host, &audio, "snd_hda_intel", &err));
    g_assert_nonnull(err);
    g_test_message("%s", err->message);
    g_assert_nonnull(strstr(err->message, AUDIO));
    g_assert_nonnull(strstr(err->message, "'snd_hda_intel'"));
    assert_driver(f, AUDIO, NULL);
    f->violations = 1;
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 1);

    g_assert_cmpint(close(fd), ==, 0);
}


static void
test_invalid_driver_name(Fixture *f, gconstpointer data)
{
    static const char *const names[] = { "", ".", "..", "../vfio-pci", "vfio-pci\n",
                                         "vfio pci", "a/b" };
    hdPCIAddress nic = addr_of(NIC);
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autoptr(GError) err = NULL;

        g_assert_false(hdPCIDeviceBindDriver(f->host, &nic, names[i], &err));
        g_assert_error(err, HD_ERROR, HD_ERROR_INVALID_ARG);
    }
    assert_driver(f, NIC, "e1000e");
}


static void
test_nonexistent(Fixture *f, gconstpointer data)
{
    hdPCIAddress addr = addr_of(MISSING);
    const char *root = hdSimHostRoot(f->sim);
    hdPCIDeviceIDs ids;
    g_autofree char *str = NULL;
    unsigned int group;
    g_autoptr(GError) err = NULL;

    g_assert_false(hdPCIDeviceReadIDs(f->host, &addr, &ids, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceGetDriver(f->host, &addr, &str, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceGetDriverOverride(f->host, &addr, &str, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceSetDriverOverride(f->host, &addr, HD_VFIO_DRIVER, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceBindDriver(f->host, &addr, HD_VFIO_DRIVER, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceReprobe(f->host, &addr, &str, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceUnbind(f->host, &addr, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceReset(f->host, &addr, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceGetResetMethod(f->host, &addr, &str, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceGetIOMMUGroup(f->host, &addr, &group, &err));
    assert_no_device(err, root);
    g_clear_error(&err);
    g_assert_false(hdPCIDeviceGetVFIOCdev(f->host, &addr, &str, &err));
    assert_no_device(err, root);

    g_assert_false(hdPCIDeviceIsVFIOBound(f->host, &addr));
    g_assert_null(str);
}


int
main(int argc, char **argv)
{
    const char *reason = hdTestSetup(&argc, &argv);

    HD_TEST_REQUIRE_SIMHOST(reason);

#define ADD(name, func) \
    g_test_add("/pci/sim/" name, Fixture, NULL, fixture_setup, func, fixture_teardown)

    ADD("ids", test_ids);
    ADD("driver", test_driver);
    ADD("bind-vfio-and-back", test_bind_vfio_and_back);
    ADD("bind-driverless", test_bind_driverless);
    ADD("group", test_group);
    ADD("group-node", test_group_node);
    ADD("bridge", test_bridge);
    ADD("reset", test_reset);
    ADD("reset-fault", test_reset_fault);
    ADD("bind-probe-fails", test_bind_probe_fails);
    ADD("override-and-probe", test_override_and_probe);
    ADD("unbind", test_unbind);
    ADD("unbind-blocked", test_unbind_blocked);
    ADD("bind-host-driver-into-held-group", test_bind_host_driver_into_held_group);
    ADD("invalid-driver-name", test_invalid_driver_name);
    ADD("nonexistent", test_nonexistent);

#undef ADD

    return g_test_run();
}
