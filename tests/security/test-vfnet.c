/*
 * test-vfnet.c: the VF settings backend (sysfs and rtnetlink through
 * libnl, hdvfnet.c) against the simulated host's rtnetlink
 *
 * The same code as on a real host: the PF is found through physfn,
 * virtfnN and net/ on the simulated sysfs, and libnl talks rtnetlink to
 * the simulated host (simnl-shim.so preloaded, HD_SIM_RTNL set), which
 * answers with the kernel's messages and ixgbe's checks.  The VM tier's
 * vf-netdevsim scenario does the same against a real kernel.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "hdtest-sim.h"
#include "hdfile.h"
#include "hdinternal.h"
#include "hdvfnet.h"
#include "hostdev/error.h"

#define PF "0000:60:00.0"
#define VF "0000:60:10.2"       /* virtfn1 of PF */
#define PF_IFNAME "enp96s0"

typedef struct {
    hdSimHost *sim;
    hdHost *host;
} Fixture;


static void
fixtureSetUp(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    f->sim = hdSimHostStart("gpu16", NULL, &error);
    g_assert_no_error(error);
    f->host = hdHostNew(hdSimHostRoot(f->sim));
    g_setenv("HD_SIM_RTNL", hdSimHostRtnlSocket(f->sim), TRUE);
}


static void
fixtureTearDown(Fixture *f, gconstpointer data)
{
    g_unsetenv("HD_SIM_RTNL");
    hdHostUnref(f->host);
    hdSimHostStop(f->sim);
}


static void
testCtl(Fixture *f, const char *command)
{
    g_autoptr(GError) error = NULL;

    g_assert_true(hdSimHostCtl(f->sim, command, &error));
    g_assert_no_error(error);
}


/* What the simulated host's state says the PF keeps for @address. */
static void
testSimVF(Fixture *f, const char *address, char **mac, gint64 *vlan)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = hdSimHostState(f->sim, &error);
    JsonArray *devices;
    guint i;

    g_assert_no_error(error);
    devices = json_object_get_array_member(json_node_get_object(state), "devices");
    for (i = 0; i < json_array_get_length(devices); i++) {
        JsonObject *dev = json_array_get_object_element(devices, i);
        JsonObject *vf;

        if (strcmp(json_object_get_string_member(dev, "address"), address) != 0)
            continue;
        vf = json_object_get_object_member(dev, "vf");
        g_assert_nonnull(vf);
        *mac = g_strdup(json_object_get_string_member(vf, "mac"));
        *vlan = json_object_get_int_member(vf, "vlan");
        return;
    }
    g_assert_not_reached();
}


static void
testAssertSimVF(Fixture *f, const char *mac, gint64 vlan)
{
    g_autofree char *have_mac = NULL;
    gint64 have_vlan = -1;

    testSimVF(f, VF, &have_mac, &have_vlan);
    g_assert_cmpstr(have_mac, ==, mac);
    g_assert_cmpint(have_vlan, ==, vlan);
}


static void
testGet(const char *pf, unsigned int index, const char *mac, int vlan)
{
    g_autoptr(GError) error = NULL;
    hdVFNetConfig config;

    g_assert_true(hdVFNetGetNetlink(pf, index, &config, NULL, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(config.mac, ==, mac);
    g_assert_cmpint(config.vlan, ==, vlan);
}


static gboolean
testSet(const char *pf, unsigned int index, const char *mac, int vlan, GError **error)
{
    hdVFNetConfig config = { .vlan = vlan };

    g_strlcpy(config.mac, mac, sizeof(config.mac));
    return hdVFNetSetNetlink(pf, index, &config, NULL, error);
}


/* Save, set, restore exactly; the simulated host saw each step. */
static void
testRoundTrip(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *pf = NULL;
    hdPCIAddress addr;
    unsigned int index = 0;

    g_assert_true(hdPCIAddressParse(VF, &addr, NULL));
    g_assert_true(hdVFNetResolveSysfs(f->host, &addr, &pf, &index, NULL, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(pf, ==, PF_IFNAME);
    g_assert_cmpuint(index, ==, 1);

    /* A VF set by hand (ip link set PF vf 1 ...), then by hostdev. */
    testCtl(f, "vf " VF " mac 02:11:22:33:44:55");
    testCtl(f, "vf " VF " vlan 7");
    testGet(pf, index, "02:11:22:33:44:55", 7);
    g_assert_true(testSet(pf, index, "52:54:00:6d:90:02", 42, &error));
    g_assert_no_error(error);
    testAssertSimVF(f, "52:54:00:6d:90:02", 42);
    testGet(pf, index, "52:54:00:6d:90:02", 42);
    g_assert_true(testSet(pf, index, "02:11:22:33:44:55", 7, &error));
    g_assert_no_error(error);
    testAssertSimVF(f, "02:11:22:33:44:55", 7);
    g_assert_true(hdSimHostWaitEvent(f->sim, "vf-set", VF, 1000));
}


/* Requests the PF's driver refuses fail and change nothing; the MAC goes
 * first, so a refused MAC leaves the VLAN too. */
static void
testRefused(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    hdVFNetConfig config;

    g_assert_false(testSet(PF_IFNAME, 1, "01:00:5e:00:00:01", 42, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_clear_error(&error);
    testAssertSimVF(f, "00:00:00:00:00:00", 0);

    g_assert_false(testSet(PF_IFNAME, 4, "52:54:00:6d:90:02", 42, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_clear_error(&error);

    g_assert_false(hdVFNetGetNetlink(PF_IFNAME, 4, &config, NULL, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_clear_error(&error);

    g_assert_false(hdVFNetGetNetlink("enp96s9", 0, &config, NULL, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_clear_error(&error);

    /* An interface whose driver has no VFs: refused, not a crash in libnl. */
    g_assert_false(hdVFNetGetNetlink("enp112s0", 0, &config, NULL, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_clear_error(&error);

    testCtl(f, "fault " VF " vf fail");
    g_assert_false(testSet(PF_IFNAME, 1, "52:54:00:6d:90:02", 42, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    testAssertSimVF(f, "00:00:00:00:00:00", 0);
}


/* The PF away from its driver has no interface: the VF cannot be
 * resolved, and the error says so. */
static void
testNoPFInterface(Fixture *f, gconstpointer data)
{
    g_autofree char *unbind = hdSimHostPath(f->sim, "sys/bus/pci/drivers/ixgbe/unbind");
    g_autoptr(GError) error = NULL;
    g_autofree char *pf = NULL;
    unsigned int index = 0;
    hdPCIAddress addr;
    hdVFNetConfig config;

    g_assert_true(hdFileWriteAttr(unbind, PF, &error));
    g_assert_no_error(error);
    g_assert_true(hdPCIAddressParse(VF, &addr, NULL));
    g_assert_false(hdVFNetResolveSysfs(f->host, &addr, &pf, &index, NULL, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "no network interface"));
    g_clear_error(&error);
    g_assert_false(hdVFNetGetNetlink(PF_IFNAME, 1, &config, NULL, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
}


int
main(int argc, char **argv)
{
    const char *reason = hdTestSetup(&argc, &argv);

    HD_TEST_REQUIRE_SIMHOST(reason);
    if (!g_getenv("LD_PRELOAD") || !strstr(g_getenv("LD_PRELOAD"), "simnl-shim")) {
        g_printerr("SKIP: run by meson with simnl-shim.so preloaded\n");
        return HD_TEST_SKIP_EXIT;
    }
#define ADD(name, func) \
    g_test_add(name, Fixture, NULL, fixtureSetUp, func, fixtureTearDown)
    ADD("/vfnet/round-trip", testRoundTrip);
    ADD("/vfnet/refused", testRefused);
    ADD("/vfnet/no-pf-interface", testNoPFInterface);
    return g_test_run();
}
