/*
 * test-manager.c: the manager against the simulated host
 *
 * Devices are found by the driver the "small" topology gives them, so the
 * tests say what they mean: "the GPU", "its audio function", "the igb card".
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <string.h>

#include "mgrtest.h"
#include "hostdev/error.h"
#include "hostdev/manager.h"

typedef struct {
    hdSimHost *sim;
    hdHost *host;
    char *state_dir;
    char *state_path;
    hdManager *mgr;
} Fixture;


static void
fixtureSetUp(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    f->sim = hdSimHostStart("small", NULL, &error);
    g_assert_no_error(error);
    f->host = hdHostNew(hdSimHostRoot(f->sim));
    f->state_dir = g_dir_make_tmp("hdstate-XXXXXX", &error);
    g_assert_no_error(error);
    f->state_path = g_build_filename(f->state_dir, "state.json", NULL);
    f->mgr = hdManagerOpen(f->host, f->state_dir, &error);
    g_assert_no_error(error);
}


static void
fixtureTearDown(Fixture *f, gconstpointer data)
{
    g_clear_pointer(&f->mgr, hdManagerFree);
    g_clear_pointer(&f->host, hdHostUnref);
    g_clear_pointer(&f->sim, hdSimHostStop);
    mgrtestRemoveTree(f->state_dir);
    g_free(f->state_dir);
    g_free(f->state_path);
}


static guint
testTrackedCount(Fixture *f)
{
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(f->mgr);

    return tracked->len;
}


static guint
testPendingCount(Fixture *f)
{
    g_autoptr(GArray) pending = hdManagerPendingGroups(f->mgr);

    return pending->len;
}


static char *
testFirstOn(Fixture *f, const char *driver)
{
    g_autoptr(GPtrArray) found = mgrtestDevicesOn(f->sim, driver);

    g_assert_cmpuint(found->len, >=, 1);
    return g_strdup(g_ptr_array_index(found, 0));
}


/* hdHostdevDefs for the NULL-terminated addresses. */
static GPtrArray *
testDefs(gboolean managed, const char *first, ...)
{
    GPtrArray *defs = g_ptr_array_new_with_free_func((GDestroyNotify)hdHostdevDefFree);
    const char *addr;
    va_list ap;

    va_start(ap, first);
    for (addr = first; addr; addr = va_arg(ap, const char *)) {
        hdHostdevDef *def = g_new0(hdHostdevDef, 1);

        def->addr = mgrtestAddr(addr);
        def->managed = managed;
        g_ptr_array_add(defs, def);
    }
    va_end(ap);
    return defs;
}


static GArray *
testAddrs(const char *first, ...)
{
    GArray *addrs = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    const char *str;
    va_list ap;

    va_start(ap, first);
    for (str = first; str; str = va_arg(ap, const char *)) {
        hdPCIAddress addr = mgrtestAddr(str);
        g_array_append_val(addrs, addr);
    }
    va_end(ap);
    return addrs;
}


static hdDeviceState
testStateOf(Fixture *f, const char *addr)
{
    g_autoptr(GError) error = NULL;
    hdPCIAddress pci = mgrtestAddr(addr);
    g_autoptr(hdDeviceInfo) info = hdManagerGetDevice(f->mgr, &pci, &error);

    g_assert_no_error(error);
    return info->state;
}


static unsigned int
testGroupOf(Fixture *f, const char *addr)
{
    g_autoptr(GError) error = NULL;
    hdPCIAddress pci = mgrtestAddr(addr);
    unsigned int group = 0;

    g_assert_true(hdPCIDeviceGetIOMMUGroup(f->host, &pci, &group, &error));
    return group;
}


/* Hold group @group the way a QEMU does: an open fd on /dev/vfio/N. */
static int
testHoldGroup(Fixture *f, unsigned int group)
{
    g_autofree char *node = hdIOMMUGroupDevPath(f->host, group);
    int fd = open(node, O_RDWR | O_CLOEXEC);

    if (fd < 0)
        g_error("cannot open %s: %s", node, g_strerror(errno));
    return fd;
}


static char *
testReadState(Fixture *f)
{
    g_autofree char *data = NULL;

    if (!g_file_get_contents(f->state_path, &data, NULL, NULL))
        return g_strdup("");
    return g_steal_pointer(&data);
}


static void
testAssertMessage(const GError *error, const char *part)
{
    g_assert_nonnull(error);
    if (!strstr(error->message, part))
        g_error("error '%s' does not mention '%s'", error->message, part);
}


static void
testRecordEvent(hdManager *mgr, const hdEvent *event, gpointer opaque)
{
    GPtrArray *log = opaque;
    char addr[HD_PCI_ADDRESS_STRLEN];

    g_ptr_array_add(log, g_strdup_printf("%s %s %s", hdEventTypeToString(event->type),
                                         event->domain ? event->domain : "-",
                                         hdPCIAddressFormat(&event->addr, addr)));
}


static void
testAssertEvents(GPtrArray *log, const char *const *expected)
{
    guint i;

    for (i = 0; i < log->len && expected[i]; i++)
        g_assert_cmpstr(g_ptr_array_index(log, i), ==, expected[i]);
    g_assert_cmpuint(log->len, ==, g_strv_length((char **)expected));
}


/* Seed 000: both functions of a GPU group go to one domain; the first to
 * leave waits on the inactive list, the second takes the group home. */
static void
testSeed000(Fixture *f, gconstpointer data)
{
    g_autofree char *gpu = testFirstOn(f, "nvidia");
    g_autofree char *audio = testFirstOn(f, "snd_hda_intel");
    g_autoptr(GPtrArray) defs = testDefs(TRUE, gpu, audio, NULL);
    g_autoptr(GArray) first = testAddrs(audio, NULL);
    g_autoptr(GArray) second = testAddrs(gpu, NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) log = g_ptr_array_new_with_free_func(g_free);
    unsigned int group = testGroupOf(f, gpu);
    g_autofree char *assigned_gpu = g_strdup_printf("device-assigned vm1 %s", gpu);
    g_autofree char *assigned_audio = g_strdup_printf("device-assigned vm1 %s", audio);
    g_autofree char *released_audio = g_strdup_printf("device-released vm1 %s", audio);
    g_autofree char *released_gpu = g_strdup_printf("device-released vm1 %s", gpu);
    g_autofree char *back_gpu = g_strdup_printf("group-given-back - %s", gpu);
    g_autofree char *back_audio = g_strdup_printf("group-given-back - %s", audio);
    const char *expected[] = {
        assigned_gpu, assigned_audio, released_audio, released_gpu, back_gpu, back_audio, NULL
    };
    int qemu;

    g_assert_cmpuint(group, ==, testGroupOf(f, audio));
    /* The kernel still releases the devices for a while after the last
     * close, when /proc already shows no holder. */
    g_assert_true(hdSimHostCtl(f->sim, "cost all release_ms 150", &error));
    hdManagerAddEventHandler(f->mgr, testRecordEvent, log);
    g_assert_true(hdManagerPrepare(f->mgr, "vm1", defs, 0, &error));
    g_assert_no_error(error);
    mgrtestAssertDriver(f->sim, gpu, "vfio-pci");
    mgrtestAssertDriver(f->sim, audio, "vfio-pci");
    g_assert_cmpint(testStateOf(f, gpu), ==, HD_DEVICE_ACTIVE);

    qemu = testHoldGroup(f, group);
    g_assert_true(hdManagerRelease(f->mgr, "vm1", first, &error));
    g_assert_cmpint(testStateOf(f, audio), ==, HD_DEVICE_INACTIVE);
    mgrtestAssertDriver(f->sim, audio, "vfio-pci");

    /* The group is still held: nothing goes back yet. */
    g_assert_true(hdManagerRelease(f->mgr, "vm1", second, &error));
    mgrtestAssertDriver(f->sim, gpu, "vfio-pci");
    mgrtestAssertDriver(f->sim, audio, "vfio-pci");
    g_assert_cmpuint(hdManagerGiveBackPending(f->mgr, &error), ==, 0);
    g_assert_no_error(error);

    close(qemu);
    /* The simulated kernel releases the devices after the close. */
    while (hdManagerGiveBackPending(f->mgr, &error) == 0) {
        g_assert_no_error(error);
        g_usleep(10 * 1000);
    }
    mgrtestAssertDriver(f->sim, gpu, "nvidia");
    mgrtestAssertDriver(f->sim, audio, "snd_hda_intel");
    g_assert_cmpint(testStateOf(f, gpu), ==, HD_DEVICE_HOST);
    g_assert_cmpuint(testPendingCount(f), ==, 0);
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
    testAssertEvents(log, expected);
}


static void
testOtherDomainRefused(Fixture *f, gconstpointer data)
{
    g_autofree char *gpu = testFirstOn(f, "nvidia");
    g_autofree char *audio = testFirstOn(f, "snd_hda_intel");
    g_autoptr(GPtrArray) both = testDefs(TRUE, gpu, audio, NULL);
    g_autoptr(GPtrArray) one = testDefs(TRUE, audio, NULL);
    g_autoptr(GError) error = NULL;
    g_autofree char *before = NULL;
    g_autofree char *after = NULL;
    g_autofree char *group = NULL;

    g_assert_true(hdManagerPrepare(f->mgr, "vm1", both, 0, &error));
    before = testReadState(f);
    g_assert_false(hdManagerPrepare(f->mgr, "vm2", one, 0, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_IN_USE);
    group = g_strdup_printf("IOMMU group %u", testGroupOf(f, audio));
    testAssertMessage(error, audio);
    testAssertMessage(error, group);
    testAssertMessage(error, "vm1");
    after = testReadState(f);
    g_assert_cmpstr(after, ==, before);
    mgrtestAssertDriver(f->sim, audio, "vfio-pci");
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
}


/* A domain that holds one function through the whole-group option blocks
 * the group for every other domain, whichever member it asks for. */
static void
testOtherDomainSiblingRefused(Fixture *f, gconstpointer data)
{
    g_autofree char *gpu = testFirstOn(f, "nvidia");
    g_autofree char *audio = testFirstOn(f, "snd_hda_intel");
    g_autoptr(GPtrArray) vm1 = testDefs(TRUE, gpu, NULL);
    g_autoptr(GPtrArray) vm2 = testDefs(TRUE, audio, NULL);
    g_autoptr(GError) error = NULL;

    g_assert_true(hdManagerPrepare(f->mgr, "vm1", vm1, HD_PREPARE_WHOLE_GROUP, &error));
    g_assert_cmpint(testStateOf(f, audio), ==, HD_DEVICE_INACTIVE);
    g_assert_false(hdManagerPrepare(f->mgr, "vm2", vm2, 0, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_IN_USE);
    testAssertMessage(error, "domain vm1");
    testAssertMessage(error, gpu);
}


static void
testSiblingOnHostDriver(Fixture *f, gconstpointer data)
{
    g_autofree char *gpu = testFirstOn(f, "nvidia");
    g_autofree char *audio = testFirstOn(f, "snd_hda_intel");
    g_autoptr(GPtrArray) defs = testDefs(TRUE, gpu, NULL);
    g_autoptr(GError) error = NULL;
    g_autofree char *group = g_strdup_printf("IOMMU group %u", testGroupOf(f, gpu));

    /* By default: refused upfront, naming the sibling, its driver, the group. */
    g_assert_false(hdManagerPrepare(f->mgr, "vm1", defs, 0, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_VIABLE);
    testAssertMessage(error, audio);
    testAssertMessage(error, "snd_hda_intel");
    testAssertMessage(error, group);
    mgrtestAssertDriver(f->sim, gpu, "nvidia");
    g_assert_cmpuint(testTrackedCount(f), ==, 0);
    g_clear_error(&error);

    /* With the whole group: the sibling waits on the inactive list. */
    g_assert_true(hdManagerPrepare(f->mgr, "vm1", defs, HD_PREPARE_WHOLE_GROUP, &error));
    g_assert_no_error(error);
    mgrtestAssertDriver(f->sim, gpu, "vfio-pci");
    mgrtestAssertDriver(f->sim, audio, "vfio-pci");
    g_assert_cmpint(testStateOf(f, audio), ==, HD_DEVICE_INACTIVE);
    g_assert_cmpuint(testPendingCount(f), ==, 0);

    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    mgrtestAssertDriver(f->sim, gpu, "nvidia");
    mgrtestAssertDriver(f->sim, audio, "snd_hda_intel");
    g_assert_cmpuint(testTrackedCount(f), ==, 0);
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
}


/* The NICs behind a PCIe-to-PCI bridge share its group; the bridge itself
 * never makes the group non-viable. */
static void
testBridgeGroup(Fixture *f, gconstpointer data)
{
    g_autoptr(GPtrArray) nics = mgrtestDevicesOn(f->sim, "e1000");
    g_autoptr(GPtrArray) one = NULL;
    g_autoptr(GPtrArray) both = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_cmpuint(nics->len, ==, 2);
    one = testDefs(TRUE, g_ptr_array_index(nics, 0), NULL);
    both = testDefs(TRUE, g_ptr_array_index(nics, 0), g_ptr_array_index(nics, 1), NULL);
    g_assert_false(hdManagerPrepare(f->mgr, "vm1", one, 0, &error));
    testAssertMessage(error, g_ptr_array_index(nics, 1));
    g_clear_error(&error);
    g_assert_true(hdManagerPrepare(f->mgr, "vm1", both, 0, &error));
    g_assert_no_error(error);
    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    mgrtestAssertDriver(f->sim, g_ptr_array_index(nics, 0), "e1000");
    mgrtestAssertDriver(f->sim, g_ptr_array_index(nics, 1), "e1000");
}


/* The probe of the 3rd device of a 4-device prepare fails: everything goes
 * back where it was. */
static void
testProbeFailureRollsBack(Fixture *f, gconstpointer data)
{
    g_autoptr(GPtrArray) card = mgrtestDevicesOn(f->sim, "igb");
    g_autoptr(GPtrArray) defs = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *fault = NULL;
    guint i;

    g_assert_cmpuint(card->len, ==, 4);
    defs = testDefs(TRUE, g_ptr_array_index(card, 0), g_ptr_array_index(card, 1),
                    g_ptr_array_index(card, 2), g_ptr_array_index(card, 3), NULL);
    fault = g_strdup_printf("fault %s probe fail vfio-pci",
                            (char *)g_ptr_array_index(card, 2));
    g_assert_true(hdSimHostCtl(f->sim, fault, &error));

    g_assert_false(hdManagerPrepare(f->mgr, "vm1", defs, 0, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    testAssertMessage(error, g_ptr_array_index(card, 2));
    for (i = 0; i < card->len; i++)
        mgrtestAssertDriver(f->sim, g_ptr_array_index(card, i), "igb");
    g_assert_cmpuint(testTrackedCount(f), ==, 0);
    g_assert_cmpuint(testPendingCount(f), ==, 0);
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
}


static void
testBadRequests(Fixture *f, gconstpointer data)
{
    g_autofree char *gpu = testFirstOn(f, "nvidia");
    g_autofree char *audio = testFirstOn(f, "snd_hda_intel");
    g_autofree char *nic = testFirstOn(f, "e1000e");
    g_autoptr(GPtrArray) unknown = testDefs(TRUE, "0000:7e:1f.7", NULL);
    g_autoptr(GPtrArray) twice = testDefs(TRUE, gpu, audio, gpu, NULL);
    g_autoptr(GPtrArray) unmanaged = testDefs(FALSE, nic, NULL);
    g_autoptr(GPtrArray) ok = testDefs(TRUE, gpu, audio, NULL);
    g_autoptr(GArray) notours = testAddrs(nic, NULL);
    g_autoptr(GError) error = NULL;
    g_autofree char *before = testReadState(f);
    g_autofree char *after = NULL;

    g_assert_false(hdManagerPrepare(f->mgr, "vm1", unknown, 0, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    testAssertMessage(error, "0000:7e:1f.7");
    g_clear_error(&error);

    g_assert_false(hdManagerPrepare(f->mgr, "vm1", twice, 0, &error));
    testAssertMessage(error, "requested twice");
    g_clear_error(&error);

    g_assert_false(hdManagerPrepare(f->mgr, "vm1", unmanaged, 0, &error));
    testAssertMessage(error, "e1000e");
    g_clear_error(&error);

    g_assert_false(hdManagerPrepare(f->mgr, "../vm", ok, 0, &error));
    testAssertMessage(error, "invalid domain name");
    g_clear_error(&error);

    g_assert_false(hdManagerRelease(f->mgr, "vm1", notours, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_clear_error(&error);

    after = testReadState(f);
    g_assert_cmpstr(after, ==, before);
    mgrtestAssertDriver(f->sim, gpu, "nvidia");
    mgrtestAssertDriver(f->sim, nic, "e1000e");
    g_assert_cmpuint(testTrackedCount(f), ==, 0);
}


static void
testNodeDevice(Fixture *f, gconstpointer data)
{
    g_autofree char *gpu = testFirstOn(f, "nvidia");
    g_autofree char *audio = testFirstOn(f, "snd_hda_intel");
    hdPCIAddress addr = mgrtestAddr(gpu);
    hdPCIAddress sibling = mgrtestAddr(audio);
    g_autoptr(GArray) siblings = NULL;
    g_autoptr(GError) error = NULL;
    char buf[HD_PCI_ADDRESS_STRLEN];
    int holder;

    g_assert_true(hdManagerNodeDetach(f->mgr, &addr, &siblings, &error));
    g_assert_no_error(error);
    mgrtestAssertDriver(f->sim, gpu, "vfio-pci");
    g_assert_cmpuint(siblings->len, ==, 1);
    g_assert_cmpstr(hdPCIAddressFormat(&g_array_index(siblings, hdPCIAddress, 0), buf), ==,
                    audio);
    /* Detached by hand: it stays, it is not pending. */
    g_assert_cmpuint(hdManagerGiveBackPending(f->mgr, &error), ==, 0);
    mgrtestAssertDriver(f->sim, gpu, "vfio-pci");

    /* The sibling must follow before anyone can use the group. */
    g_assert_true(hdManagerNodeDetach(f->mgr, &sibling, NULL, &error));
    g_assert_no_error(error);

    /* Refused while a process holds the group. */
    holder = testHoldGroup(f, testGroupOf(f, gpu));
    g_assert_false(hdManagerNodeReattach(f->mgr, &addr, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_IN_USE);
    g_clear_error(&error);
    g_assert_false(hdManagerNodeReset(f->mgr, &addr, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_IN_USE);
    g_clear_error(&error);
    close(holder);

    /* Wait for the simulated release, then reset and reattach. */
    while (!hdManagerNodeReset(f->mgr, &addr, &error)) {
        g_assert_error(error, HD_ERROR, HD_ERROR_IN_USE);
        g_clear_error(&error);
        g_usleep(10 * 1000);
    }
    g_assert_true(hdManagerNodeReattach(f->mgr, &addr, &error));
    g_assert_no_error(error);
    g_assert_true(hdManagerNodeReattach(f->mgr, &sibling, &error));
    g_assert_no_error(error);
    mgrtestAssertDriver(f->sim, gpu, "nvidia");
    mgrtestAssertDriver(f->sim, audio, "snd_hda_intel");
    g_assert_cmpuint(testTrackedCount(f), ==, 0);
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
}


static void
testNodeReattachRefusedWhileActive(Fixture *f, gconstpointer data)
{
    g_autofree char *gpu = testFirstOn(f, "nvidia");
    g_autofree char *audio = testFirstOn(f, "snd_hda_intel");
    g_autoptr(GPtrArray) defs = testDefs(TRUE, gpu, NULL);
    hdPCIAddress sibling = mgrtestAddr(audio);
    g_autoptr(GError) error = NULL;

    g_assert_true(hdManagerPrepare(f->mgr, "vm1", defs, HD_PREPARE_WHOLE_GROUP, &error));
    g_assert_false(hdManagerNodeReattach(f->mgr, &sibling, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_IN_USE);
    testAssertMessage(error, "vm1");
    mgrtestAssertDriver(f->sim, audio, "vfio-pci");
}


/* An unmanaged device stays on vfio-pci when it leaves its domain. */
static void
testUnmanaged(Fixture *f, gconstpointer data)
{
    g_autofree char *nic = testFirstOn(f, "e1000e");
    hdPCIAddress addr = mgrtestAddr(nic);
    g_autoptr(GPtrArray) defs = testDefs(FALSE, nic, NULL);
    g_autoptr(GError) error = NULL;

    g_assert_true(hdPCIDeviceBindDriver(f->host, &addr, "vfio-pci", &error));
    g_assert_true(hdManagerPrepare(f->mgr, "vm1", defs, 0, &error));
    g_assert_no_error(error);
    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    mgrtestAssertDriver(f->sim, nic, "vfio-pci");
    g_assert_cmpuint(testTrackedCount(f), ==, 0);
}


static void
testDurableState(Fixture *f, gconstpointer data)
{
    g_autofree char *gpu = testFirstOn(f, "nvidia");
    g_autofree char *audio = testFirstOn(f, "snd_hda_intel");
    g_autoptr(GPtrArray) defs = testDefs(TRUE, gpu, audio, NULL);
    g_autoptr(GPtrArray) tracked = NULL;
    g_autoptr(GError) error = NULL;
    hdManager *second;

    g_assert_true(hdManagerPrepare(f->mgr, "vm1", defs, 0, &error));

    /* One process per state directory. */
    second = hdManagerOpen(f->host, f->state_dir, &error);
    g_assert_null(second);
    g_assert_error(error, HD_ERROR, HD_ERROR_STATE);
    testAssertMessage(error, "in use by another process");
    g_clear_error(&error);

    g_clear_pointer(&f->mgr, hdManagerFree);
    f->mgr = hdManagerOpen(f->host, f->state_dir, &error);
    g_assert_no_error(error);
    tracked = hdManagerListTracked(f->mgr);
    g_assert_cmpuint(tracked->len, ==, 2);
    g_assert_cmpint(((hdDeviceInfo *)g_ptr_array_index(tracked, 0))->state, ==,
                    HD_DEVICE_ACTIVE);
    g_assert_cmpstr(((hdDeviceInfo *)g_ptr_array_index(tracked, 1))->original_driver, ==,
                    "snd_hda_intel");

    /* After a restart the devices still go home. */
    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    mgrtestAssertDriver(f->sim, gpu, "nvidia");
    mgrtestAssertDriver(f->sim, audio, "snd_hda_intel");
}


static void
testCorruptState(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    hdManager *mgr;

    g_clear_pointer(&f->mgr, hdManagerFree);
    g_assert_true(g_file_set_contents(f->state_path, "{\"format\":\"hostdev-state\","
                                      "\"version\":99,\"devices\":[]}", -1, NULL));
    mgr = hdManagerOpen(f->host, f->state_dir, &error);
    g_assert_null(mgr);
    g_assert_error(error, HD_ERROR, HD_ERROR_STATE);
    testAssertMessage(error, "version 99");
    g_clear_error(&error);

    g_assert_true(g_file_set_contents(f->state_path, "{\"devices\": [", -1, NULL));
    mgr = hdManagerOpen(f->host, f->state_dir, &error);
    g_assert_null(mgr);
    testAssertMessage(error, "malformed state");
}


#define ADD(name, func) \
    g_test_add(name, Fixture, NULL, fixtureSetUp, func, fixtureTearDown)

int
main(int argc, char **argv)
{
    const char *skip = hdTestSetup(&argc, &argv);

    HD_TEST_REQUIRE_SIMHOST(skip);
    ADD("/manager/seed-000", testSeed000);
    ADD("/manager/other-domain-refused", testOtherDomainRefused);
    ADD("/manager/other-domain-sibling-refused", testOtherDomainSiblingRefused);
    ADD("/manager/sibling-on-host-driver", testSiblingOnHostDriver);
    ADD("/manager/bridge-group", testBridgeGroup);
    ADD("/manager/probe-failure-rolls-back", testProbeFailureRollsBack);
    ADD("/manager/bad-requests", testBadRequests);
    ADD("/manager/node-device", testNodeDevice);
    ADD("/manager/node-reattach-refused-while-active", testNodeReattachRefusedWhileActive);
    ADD("/manager/unmanaged", testUnmanaged);
    ADD("/manager/durable-state", testDurableState);
    ADD("/manager/corrupt-state", testCorruptState);
    return g_test_run();
}
