/*
 * test-simmodel.c: the simulated host's kernel model, without FUSE
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <string.h>
#include <linux/if_ether.h>

#include <json-glib/json-glib.h>

#include "simmodel.h"

#define W(str) (str), strlen(str)


static simModel *
testLoad(const char *name)
{
    g_autofree char *path = g_build_filename(g_getenv("HD_TOPOLOGY_DIR"), name, NULL);
    g_autoptr(GError) error = NULL;
    simModel *model = simModelNewFromFile(path, &error);

    g_assert_no_error(error);
    g_assert_nonnull(model);
    return model;
}


static simDevice *
testDevice(simModel *model, const char *address)
{
    simDevice *dev;

    simModelLock(model);
    dev = simModelFindDevice(model, address);
    simModelUnlock(model);
    g_assert_nonnull(dev);
    return dev;
}


static void
testTopologySmall(void)
{
    g_autoptr(simModel) model = testLoad("small.json");
    simDevice *gpu = testDevice(model, "0000:01:00.0");
    simDevice *nic = testDevice(model, "0000:05:01.0");
    simDevice *bridge = testDevice(model, "0000:00:1e.0");
    simGroup *group;

    simModelLock(model);
    g_assert_cmpstr(gpu->sysfs_path, ==, "sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0");
    g_assert_cmpstr(gpu->driver, ==, "nvidia");
    g_assert_cmpstr(gpu->reset_method, ==, "flr bus");
    g_assert_cmpuint(gpu->vendor, ==, 0x10de);
    g_assert_cmpuint(gpu->pci_class, ==, 0x030000);
    g_assert_null(nic->reset_method);
    g_assert_null(bridge->driver);
    g_assert_cmpstr(nic->sysfs_path, ==, "sys/devices/pci0000:00/0000:00:1e.0/0000:05:01.0");

    group = simModelFindGroup(model, 5);
    g_assert_nonnull(group);
    g_assert_cmpuint(group->members->len, ==, 4);
    g_assert_false(simGroupHasDevNode(group));
    g_assert_false(simGroupViable(group));
    /* Bridges and pcieport do not make a group non-viable. */
    g_assert_true(simGroupViable(simModelFindGroup(model, 1)));
    g_assert_cmpuint(simModelGroups(model)->len, ==, 6);
    g_assert_cmpuint(simModelDevices(model)->len, ==, 12);
    g_assert_cmpstr(g_ptr_array_index(simModelDrivers(model), 0), ==, "e1000");
    simModelUnlock(model);
}


static void
testTopologyGpu16(void)
{
    g_autoptr(simModel) model = testLoad("gpu16.json");
    simDevice *pf = testDevice(model, "0000:60:00.0");
    simDevice *vf = testDevice(model, "0000:60:10.2");
    simDevice *gpu = testDevice(model, "0000:20:00.0");

    simModelLock(model);
    g_assert_cmpuint(pf->virtfns->len, ==, 4);
    g_assert_true(g_ptr_array_index(pf->virtfns, 1) == vf);
    g_assert_true(vf->physfn == pf);
    g_assert_cmpuint(gpu->release_ms, ==, 1000);
    g_assert_cmpuint(gpu->probe_ms, ==, 300);
    g_assert_cmpuint(gpu->reset_ms, ==, 100);
    g_assert_cmpuint(gpu->group->members->len, ==, 2);
    g_assert_cmpuint(pf->release_ms, ==, 0);
    simModelUnlock(model);
}


typedef struct {
    const char *name;
    const char *json;
    const char *message;
} testBadTopology;

static const testBadTopology badTopologies[] = {
    { "syntax", "{ \"devices\": [ ", NULL },
    { "not-object", "[]", "must be a JSON object" },
    { "no-devices", "{ \"name\": \"x\" }", "'devices' must be an array" },
    { "empty", "{ \"devices\": [] }", "'devices' is empty" },
    { "duplicate",
      "{ \"devices\": ["
      " { \"address\": \"0000:00:01.0\", \"vendor\": \"0x8086\", \"device\": \"0x1\","
      "   \"class\": \"0x020000\", \"iommu_group\": 1 },"
      " { \"address\": \"0000:00:01.0\", \"vendor\": \"0x8086\", \"device\": \"0x1\","
      "   \"class\": \"0x020000\", \"iommu_group\": 2 } ] }",
      "duplicate device address 0000:00:01.0" },
    { "unknown-parent",
      "{ \"devices\": ["
      " { \"address\": \"0000:01:00.0\", \"vendor\": \"0x8086\", \"device\": \"0x1\","
      "   \"class\": \"0x020000\", \"iommu_group\": 1, \"parent\": \"0000:00:09.0\" } ] }",
      "device 0000:01:00.0: unknown parent 0000:00:09.0" },
    { "cycle",
      "{ \"devices\": ["
      " { \"address\": \"0000:01:00.0\", \"vendor\": \"0x8086\", \"device\": \"0x1\","
      "   \"class\": \"0x060400\", \"iommu_group\": 1, \"parent\": \"0000:02:00.0\" },"
      " { \"address\": \"0000:02:00.0\", \"vendor\": \"0x8086\", \"device\": \"0x1\","
      "   \"class\": \"0x060400\", \"iommu_group\": 1, \"parent\": \"0000:01:00.0\" } ] }",
      "parents form a cycle" },
    { "bad-address",
      "{ \"devices\": [ { \"address\": \"0000:01:00\", \"vendor\": \"0x8086\","
      " \"device\": \"0x1\", \"class\": \"0x020000\", \"iommu_group\": 1 } ] }",
      "malformed address '0000:01:00'" },
    { "unknown-key",
      "{ \"devices\": [ { \"address\": \"0000:01:00.0\", \"vendor\": \"0x8086\","
      " \"device\": \"0x1\", \"class\": \"0x020000\", \"iommu_group\": 1, \"drvier\": \"x\" } ] }",
      "device 0000:01:00.0: unknown key 'drvier'" },
    { "bad-vendor",
      "{ \"devices\": [ { \"address\": \"0000:01:00.0\", \"vendor\": \"8086\","
      " \"device\": \"0x1\", \"class\": \"0x020000\", \"iommu_group\": 1 } ] }",
      "device 0000:01:00.0: 'vendor' must be a hexadecimal string" },
    { "no-group",
      "{ \"devices\": [ { \"address\": \"0000:01:00.0\", \"vendor\": \"0x8086\","
      " \"device\": \"0x1\", \"class\": \"0x020000\" } ] }",
      "device 0000:01:00.0: 'iommu_group' is missing" },
    { "bad-cost",
      "{ \"defaults\": { \"release_ms\": -1 }, \"devices\": [ { \"address\": \"0000:01:00.0\","
      " \"vendor\": \"0x8086\", \"device\": \"0x1\", \"class\": \"0x020000\","
      " \"iommu_group\": 1 } ] }",
      "defaults: 'release_ms' must be an integer" },
};


static void
testTopologyErrors(gconstpointer opaque)
{
    const testBadTopology *bad = opaque;
    g_autoptr(GError) error = NULL;
    g_autoptr(simModel) model = simModelNewFromData(bad->json, -1, &error);

    g_assert_null(model);
    g_assert_nonnull(error);
    g_test_message("%s: %s", bad->name, error->message);
    if (bad->message)
        g_assert_nonnull(strstr(error->message, bad->message));
}


static void
testBindCodes(void)
{
    g_autoptr(simModel) model = testLoad("small.json");
    simDevice *nic = testDevice(model, "0000:00:19.0");

    g_assert_cmpint(simModelBind(model, "e1000e", W("0000:00:19.0\n"), 1), ==, -EBUSY);
    g_assert_cmpint(simModelBind(model, "igb", W("0000:00:19.0"), 1), ==, -ENODEV);
    g_assert_cmpint(simModelBind(model, "e1000e", W("0000:99:00.0"), 1), ==, -ENODEV);
    g_assert_cmpint(simModelUnbind(model, "igb", W("0000:00:19.0"), 1), ==, -ENODEV);
    g_assert_cmpint(simModelUnbind(model, "e1000e", W("0000:00:19.0\n"), 1), ==, 0);
    g_assert_null(nic->driver);
    g_assert_cmpint(simModelUnbind(model, "e1000e", W("0000:00:19.0"), 1), ==, -ENODEV);
    /* vfio-pci matches only through the override. */
    g_assert_cmpint(simModelBind(model, "vfio-pci", W("0000:00:19.0"), 1), ==, -ENODEV);
    g_assert_cmpint(simModelSetOverride(model, nic, W("vfio-pci\n"), 1), ==, 0);
    g_assert_cmpint(simModelBind(model, "e1000e", W("0000:00:19.0"), 1), ==, -ENODEV);
    g_assert_cmpint(simModelBind(model, "vfio-pci", W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpstr(nic->driver, ==, "vfio-pci");
    g_assert_cmpint(nic->vfio_cdev, ==, 0);
    g_assert_true(simGroupHasDevNode(nic->group));
    g_assert_cmpint(simModelReset(model, nic, W("2"), 1), ==, -EINVAL);
    g_assert_cmpint(simModelReset(model, nic, W("1\n"), 1), ==, 0);
}


static void
testProbe(void)
{
    g_autoptr(simModel) model = testLoad("small.json");
    simDevice *nic = testDevice(model, "0000:00:19.0");

    g_assert_cmpint(simModelProbe(model, W("0000:99:00.0"), 1), ==, -ENODEV);
    /* Bound: nothing happens. */
    g_assert_cmpint(simModelProbe(model, W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpstr(nic->driver, ==, "e1000e");

    g_assert_cmpint(simModelUnbind(model, "e1000e", W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpint(simModelSetOverride(model, nic, W("none"), 1), ==, 0);
    g_assert_cmpint(simModelProbe(model, W("0000:00:19.0"), 1), ==, 0);
    g_assert_null(nic->driver);
    g_assert_cmpint(simModelSetOverride(model, nic, W("no-such-driver"), 1), ==, 0);
    g_assert_cmpint(simModelProbe(model, W("0000:00:19.0"), 1), ==, 0);
    g_assert_null(nic->driver);
    g_assert_cmpint(simModelSetOverride(model, nic, W("vfio-pci"), 1), ==, 0);
    g_assert_cmpint(simModelProbe(model, W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpstr(nic->driver, ==, "vfio-pci");
    g_assert_cmpint(simModelUnbind(model, "vfio-pci", W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpint(simModelSetOverride(model, nic, W("\n"), 1), ==, 0);
    g_assert_null(nic->driver_override);
    g_assert_cmpint(simModelProbe(model, W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpstr(nic->driver, ==, "e1000e");
}


static void
testOpen(void)
{
    g_autoptr(simModel) model = testLoad("small.json");
    simDevice *gpu = testDevice(model, "0000:01:00.0");
    simDevice *audio = testDevice(model, "0000:01:00.1");

    g_assert_cmpint(simModelOpenGroup(model, 2, 1, FALSE), ==, -ENOENT);
    g_assert_cmpint(simModelOpenGroup(model, 42, 1, FALSE), ==, -ENOENT);
    g_assert_cmpint(simModelSetOverride(model, gpu, W("vfio-pci"), 1), ==, 0);
    g_assert_cmpint(simModelUnbind(model, "nvidia", W("0000:01:00.0"), 1), ==, 0);
    g_assert_cmpint(simModelProbe(model, W("0000:01:00.0"), 1), ==, 0);
    /* The audio function is still on its host driver. */
    g_assert_cmpint(simModelOpenGroup(model, 2, 1, FALSE), ==, -EPERM);
    g_assert_cmpint(simModelOpenCdev(model, gpu, 1), ==, -EPERM);
    g_assert_cmpint(simModelUnbind(model, "snd_hda_intel", W("0000:01:00.1"), 1), ==, 0);

    g_assert_cmpint(simModelOpenGroup(model, 2, 1, FALSE), ==, 0);
    g_assert_cmpint(simModelOpenGroup(model, 2, 1, FALSE), ==, -EBUSY);
    g_assert_cmpint(simModelOpenCdev(model, gpu, 1), ==, -EBUSY);
    g_assert_true(gpu->in_use);
    g_assert_false(audio->in_use);
    /* Host driver into the owned group: refused, a violation. */
    g_assert_cmpint(simModelProbe(model, W("0000:01:00.1"), 1), ==, -EINVAL);
    g_assert_cmpint(simModelBind(model, "snd_hda_intel", W("0000:01:00.1"), 1), ==, -EBUSY);
    g_assert_null(audio->driver);
    simModelCloseGroup(model, 2, 0);
    /* The release runs in its own thread (cost 0): unbind waits for it. */
    g_assert_cmpint(simModelUnbind(model, "vfio-pci", W("0000:01:00.0"), 1), ==, 0);
    g_assert_false(gpu->in_use || gpu->releasing);
    g_assert_false(simGroupHasDevNode(gpu->group));
    simModelShutdown(model);
}


static guint
testViolations(simModel *model)
{
    g_autofree char *state = simModelStateJson(model);
    g_autoptr(JsonNode) root = json_from_string(state, NULL);

    g_assert_nonnull(root);
    return (guint)json_object_get_int_member(json_node_get_object(root), "violations");
}


/* hostdev's read-only probe of a group claims nothing (testOpen: a group fd
 * in use does): FUSE may deliver its close after the prober's next writes,
 * so a host driver may bind while it still counts as open here.  Other opens
 * are refused meanwhile. */
static void
testOpenProbe(void)
{
    g_autoptr(simModel) model = testLoad("small.json");
    simDevice *nic = testDevice(model, "0000:00:19.0");

    g_assert_cmpint(simModelSetOverride(model, nic, W("vfio-pci"), 1), ==, 0);
    g_assert_cmpint(simModelUnbind(model, "e1000e", W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpint(simModelProbe(model, W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpstr(nic->driver, ==, "vfio-pci");

    g_assert_cmpint(simModelOpenGroup(model, 3, 1, TRUE), ==, 0);
    g_assert_cmpint(simModelOpenGroup(model, 3, 2, TRUE), ==, -EBUSY);
    g_assert_cmpint(simModelOpenGroup(model, 3, 2, FALSE), ==, -EBUSY);
    g_assert_cmpint(simModelOpenCdev(model, nic, 2), ==, -EBUSY);
    g_assert_false(nic->in_use);
    g_assert_cmpint(simModelUnbind(model, "vfio-pci", W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpint(simModelSetOverride(model, nic, W("\n"), 1), ==, 0);
    g_assert_cmpint(simModelProbe(model, W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpstr(nic->driver, ==, "e1000e");
    g_assert_cmpuint(testViolations(model), ==, 0);
    simModelCloseGroup(model, 3, 1);
    g_assert_false(simGroupOwned(nic->group));
    simModelShutdown(model);
}


static void
testControl(void)
{
    g_autoptr(simModel) model = testLoad("small.json");
    simDevice *nic = testDevice(model, "0000:00:19.0");
    static const char *const bad[] = {
        "", "bogus", "fault", "fault 0000:00:19.0 probe", "fault 0000:99:00.0 probe fail",
        "fault 0000:00:19.0 probe maybe", "fault 0000:00:19.0 release fail",
        "fault 0000:00:19.0 bind fail", "cost 0000:00:19.0 release_ms", "cost all foo_ms 3",
        "cost all release_ms -1", "cost all release_ms 12x", "serialized", "serialized yes",
        "unhang now", "clear-events 1", "fault 0000:00:19.0 probe fail no-such-driver",
        "fault 0000:00:19.0 reset fail vfio-pci",
    };
    guint i;

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) error = NULL;

        g_assert_false(simModelControl(model, W(bad[i]), &error));
        g_assert_nonnull(error);
        g_test_message("'%s': %s", bad[i], error->message);
    }
    g_assert_cmpuint(nic->release_ms, ==, 0);
    g_assert_cmpint(nic->probe_fault, ==, SIM_FAULT_OK);

    g_assert_true(simModelControl(model, W("cost all release_ms 250\n"), NULL));
    g_assert_cmpuint(testDevice(model, "0000:03:00.2")->release_ms, ==, 250);
    g_assert_true(simModelControl(model, W("cost 0000:00:19.0 probe_ms 7"), NULL));
    g_assert_cmpuint(nic->probe_ms, ==, 7);
    g_assert_true(simModelControl(model, W("fault 0000:00:19.0  reset\tfail"), NULL));
    g_assert_cmpint(nic->reset_fault, ==, SIM_FAULT_FAIL);
    g_assert_true(simModelControl(model, W("fault 0000:00:19.0 release hang"), NULL));
    g_assert_true(nic->release_hang);
    g_assert_true(simModelControl(model, W("serialized on"), NULL));
    g_assert_true(simModelControl(model, W("unhang"), NULL));
}


/* "fault ADDR probe fail DRIVER": only that driver's probes fail. */
static void
testProbeFaultDriver(void)
{
    g_autoptr(simModel) model = testLoad("small.json");
    simDevice *nic = testDevice(model, "0000:00:19.0");

    g_assert_true(simModelControl(model, W("fault 0000:00:19.0 probe fail vfio-pci"), NULL));
    g_assert_cmpint(simModelSetOverride(model, nic, W("vfio-pci"), 1), ==, 0);
    g_assert_cmpint(simModelUnbind(model, "e1000e", W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpint(simModelBind(model, "vfio-pci", W("0000:00:19.0"), 1), ==, -EIO);
    g_assert_null(nic->driver);
    g_assert_cmpint(simModelSetOverride(model, nic, W(""), 1), ==, 0);
    g_assert_cmpint(simModelBind(model, "e1000e", W("0000:00:19.0"), 1), ==, 0);
    g_assert_cmpstr(nic->driver, ==, "e1000e");

    g_assert_true(simModelControl(model, W("fault 0000:00:19.0 probe ok"), NULL));
    g_assert_null(nic->probe_fault_driver);
}


static void
testEventsAndState(void)
{
    g_autoptr(simModel) model = testLoad("small.json");
    g_autoptr(GError) error = NULL;
    g_autofree char *events = NULL;
    g_autofree char *state = NULL;
    g_auto(GStrv) lines = NULL;
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(JsonNode) first = NULL;
    JsonObject *obj;

    g_assert_cmpint(simModelSetOverride(model, testDevice(model, "0000:00:19.0"),
                                        W("we\"ird\\\n"), 42), ==, 0);
    g_assert_cmpint(simModelUnbind(model, "e1000e", W("0000:00:19.0"), 42), ==, 0);
    events = simModelEventsText(model);
    lines = g_strsplit(events, "\n", -1);
    /* override, unbind, and the NIC's interface going with its driver */
    g_assert_cmpuint(g_strv_length(lines), ==, 4);
    g_assert_nonnull(strstr(lines[2], "\"event\": \"netdev-removed\""));
    first = json_from_string(lines[0], &error);
    g_assert_no_error(error);
    obj = json_node_get_object(first);
    g_assert_cmpint(json_object_get_int_member(obj, "seq"), ==, 1);
    g_assert_cmpstr(json_object_get_string_member(obj, "event"), ==, "override");
    g_assert_cmpstr(json_object_get_string_member(obj, "driver"), ==, "we\"ird\\");
    g_assert_cmpint(json_object_get_int_member(obj, "group"), ==, 3);
    g_assert_cmpint(json_object_get_int_member(obj, "pid"), ==, 42);
    g_assert_true(json_object_get_null_member(obj, "error"));
    g_assert_cmpfloat(json_object_get_double_member(obj, "t_ms"), >, 0);

    g_assert_true(simModelControl(model, W("clear-events"), NULL));
    g_free(events);
    events = simModelEventsText(model);
    g_assert_cmpstr(events, ==, "");

    state = simModelStateJson(model);
    root = json_from_string(state, &error);
    g_assert_no_error(error);
    obj = json_node_get_object(root);
    g_assert_cmpint(json_object_get_int_member(obj, "violations"), ==, 0);
    g_assert_false(json_object_get_boolean_member(obj, "serialized"));
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(obj, "devices")), ==, 12);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(obj, "groups")), ==, 6);
}


/* Interfaces are named as udev names them and come and go with their
 * driver; a VF's MAC and VLAN are set through its PF, with ixgbe's checks. */
static void
testNetdevs(void)
{
    g_autoptr(simModel) small = testLoad("small.json");
    g_autoptr(simModel) model = testLoad("gpu16.json");
    simDevice *pf = testDevice(model, "0000:60:00.0");
    simDevice *vf = testDevice(model, "0000:60:10.2");
    simDevice *nic = testDevice(model, "0000:70:00.0");
    static const guint8 mac[SIM_MAC_LEN] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };
    static const guint8 multicast[SIM_MAC_LEN] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
    static const guint8 zero[SIM_MAC_LEN];
    guint8 address[SIM_MAC_LEN];
    int ifindex;

    g_assert_cmpstr(testDevice(small, "0000:00:19.0")->netdev, ==, "enp0s25");
    g_assert_cmpstr(testDevice(small, "0000:03:00.1")->netdev, ==, "enp3s0f1");
    g_assert_null(testDevice(small, "0000:01:00.0")->netdev);
    g_assert_cmpstr(pf->netdev, ==, "enp96s0");
    g_assert_cmpstr(vf->netdev, ==, "enp96s0v1");

    simModelLock(model);
    g_assert_true(simModelFindNetdev(model, "enp96s0", 0) == pf);
    g_assert_true(simModelFindNetdev(model, NULL, vf->ifindex) == vf);
    g_assert_null(simModelFindNetdev(model, "enp96s9", 0));

    g_assert_cmpint(simModelSetVFMac(model, pf, 1, mac, 7), ==, 0);
    g_assert_cmpmem(vf->vf_mac, SIM_MAC_LEN, mac, SIM_MAC_LEN);
    simNetdevAddress(vf, address);
    g_assert_cmpmem(address, SIM_MAC_LEN, mac, SIM_MAC_LEN);
    g_assert_cmpint(simModelSetVFMac(model, pf, 1, multicast, 7), ==, -EINVAL);
    g_assert_cmpint(simModelSetVFMac(model, pf, 4, mac, 7), ==, -EINVAL);
    g_assert_cmpint(simModelSetVFVlan(model, pf, 1, 42, 3, ETH_P_8021Q, 7), ==, 0);
    g_assert_cmpint(simModelSetVFVlan(model, pf, 1, 4096, 0, ETH_P_8021Q, 7), ==, -EINVAL);
    g_assert_cmpint(simModelSetVFVlan(model, pf, 1, 7, 8, ETH_P_8021Q, 7), ==, -EINVAL);
    g_assert_cmpint(simModelSetVFVlan(model, pf, 1, 7, 0, ETH_P_8021AD, 7), ==,
                    -EPROTONOSUPPORT);
    g_assert_cmpuint(vf->vf_vlan, ==, 42);
    g_assert_cmpuint(vf->vf_qos, ==, 3);
    /* No such driver operation on a PF without VFs. */
    g_assert_cmpint(simModelSetVFMac(model, nic, 0, mac, 7), ==, -EOPNOTSUPP);
    g_assert_cmpint(simModelSetVFMac(model, pf, 1, zero, 7), ==, 0);
    g_assert_cmpmem(vf->vf_mac, SIM_MAC_LEN, zero, SIM_MAC_LEN);
    simModelUnlock(model);

    /* A VF rebound keeps what its PF set; a PF without its driver has no
     * interface to set anything through. */
    ifindex = vf->ifindex;
    g_assert_true(simModelControl(model, W("vf 0000:60:10.2 mac 52:54:00:aa:bb:cc"), NULL));
    g_assert_cmpint(simModelUnbind(model, "ixgbevf", W("0000:60:10.2"), 1), ==, 0);
    g_assert_cmpint(vf->ifindex, ==, 0);
    g_assert_cmpint(simModelProbe(model, W("0000:60:10.2"), 1), ==, 0);
    g_assert_cmpint(vf->ifindex, >, ifindex);
    g_assert_cmpmem(vf->vf_mac, SIM_MAC_LEN, mac, SIM_MAC_LEN);
    g_assert_cmpint(simModelUnbind(model, "ixgbe", W("0000:60:00.0"), 1), ==, 0);
    g_assert_false(simModelControl(model, W("vf 0000:60:10.2 vlan 5"), NULL));
    simModelLock(model);
    g_assert_null(simModelFindNetdev(model, "enp96s0", 0));
    g_assert_cmpint(simModelSetVFVlan(model, pf, 1, 5, 0, ETH_P_8021Q, 7), ==, -ENODEV);
    simModelUnlock(model);
    g_assert_cmpint(simModelProbe(model, W("0000:60:00.0"), 1), ==, 0);

    /* A fault makes setting fail (EIO), and changes nothing. */
    g_assert_true(simModelControl(model, W("fault 0000:60:10.2 vf fail"), NULL));
    g_assert_false(simModelControl(model, W("vf 0000:60:10.2 vlan 9 qos 1"), NULL));
    g_assert_cmpuint(vf->vf_vlan, ==, 42);
    g_assert_true(simModelControl(model, W("fault 0000:60:10.2 vf ok"), NULL));
    g_assert_true(simModelControl(model, W("vf 0000:60:10.2 vlan 9 qos 1"), NULL));
    g_assert_cmpuint(vf->vf_vlan, ==, 9);
    g_assert_false(simModelControl(model, W("fault 0000:60:00.0 vf fail"), NULL));
    g_assert_false(simModelControl(model, W("vf 0000:60:10.2 mac 52:54"), NULL));
}


/* The topology is a file the user names: a device or a FIFO is refused
 * at once instead of being read for ever. */
static void
testTopologyNotRegular(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(simModel) model = simModelNewFromFile("/dev/zero", &error);

    g_assert_null(model);
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "not a regular file"));
}


int
main(int argc, char **argv)
{
    guint i;

    g_test_init(&argc, &argv, NULL);
    if (!g_getenv("HD_TOPOLOGY_DIR")) {
        g_printerr("SKIP: HD_TOPOLOGY_DIR is not set\n");
        return 77;
    }

    g_test_add_func("/simmodel/topology/small", testTopologySmall);
    g_test_add_func("/simmodel/topology/gpu16", testTopologyGpu16);
    for (i = 0; i < G_N_ELEMENTS(badTopologies); i++) {
        g_autofree char *path = g_strdup_printf("/simmodel/topology/error/%s",
                                                badTopologies[i].name);

        g_test_add_data_func(path, &badTopologies[i], testTopologyErrors);
    }
    g_test_add_func("/simmodel/topology/not-regular", testTopologyNotRegular);
    g_test_add_func("/simmodel/netdevs", testNetdevs);
    g_test_add_func("/simmodel/bind-codes", testBindCodes);
    g_test_add_func("/simmodel/drivers-probe", testProbe);
    g_test_add_func("/simmodel/open", testOpen);
    g_test_add_func("/simmodel/open/probe", testOpenProbe);
    g_test_add_func("/simmodel/control", testControl);
    g_test_add_func("/simmodel/control/probe-fault-driver", testProbeFaultDriver);
    g_test_add_func("/simmodel/events-and-state", testEventsAndState);
    return g_test_run();
}
