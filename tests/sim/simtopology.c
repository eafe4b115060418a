/*
 * simtopology.c: read a topology file (docs/simhost.rst, "Topology files")
 *
 * Everything is checked before the model is used: a typo in a topology must
 * stop the daemon with a message naming the device and the key, not give a
 * host that quietly differs from the one the test author meant.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "simmodel-priv.h"

#define SIM_TOPOLOGY_ERROR (g_quark_from_static_string("sim-topology-error"))

/* Nesting deeper than this is a parent cycle. */
#define SIM_MAX_DEPTH 64

typedef struct {
    guint reset_ms;
    guint probe_ms;
    guint release_ms;
} simCosts;

static const char *const simDeviceKeys[] = {
    "address", "vendor", "device", "class", "driver", "iommu_group", "parent",
    "reset_method", "bound", "physfn", "reset_ms", "probe_ms", "release_ms",
    NULL
};
static const char *const simTopKeys[] = { "name", "defaults", "devices", NULL };
static const char *const simCostKeys[] = { "reset_ms", "probe_ms", "release_ms", NULL };


static gboolean
simTopoCheckKeys(JsonObject *obj, const char *const *allowed,
                 const char *where, GError **error)
{
    g_autoptr(GList) members = json_object_get_members(obj);
    GList *l;

    for (l = members; l; l = l->next) {
        if (!g_strv_contains(allowed, l->data)) {
            g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "%s: unknown key '%s'",
                        where, (const char *) l->data);
            return FALSE;
        }
    }
    return TRUE;
}


/* A string member; *@value NULL if absent and not @required. */
static gboolean
simTopoGetString(JsonObject *obj, const char *key, gboolean required,
                 const char **value, const char *where, GError **error)
{
    JsonNode *node = json_object_get_member(obj, key);

    *value = NULL;
    if (!node) {
        if (!required)
            return TRUE;
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "%s: '%s' is missing", where, key);
        return FALSE;
    }
    if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING ||
        !*json_node_get_string(node)) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "%s: '%s' must be a non-empty string",
                    where, key);
        return FALSE;
    }
    *value = json_node_get_string(node);
    return TRUE;
}


/* An integer member in [0, @max]; *@value untouched if absent. */
static gboolean
simTopoGetUInt(JsonObject *obj, const char *key, gboolean required, gint64 max,
               guint *value, const char *where, GError **error)
{
    JsonNode *node = json_object_get_member(obj, key);

    if (!node) {
        if (!required)
            return TRUE;
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "%s: '%s' is missing", where, key);
        return FALSE;
    }
    if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64 ||
        json_node_get_int(node) < 0 || json_node_get_int(node) > max) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0,
                    "%s: '%s' must be an integer from 0 to %" G_GINT64_FORMAT,
                    where, key, max);
        return FALSE;
    }
    *value = json_node_get_int(node);
    return TRUE;
}


/* "0x1234" (at most @max) as the kernel prints vendor, device, class. */
static gboolean
simTopoGetHex(JsonObject *obj, const char *key, guint max, guint *value,
              const char *where, GError **error)
{
    const char *str;
    guint64 number;

    if (!simTopoGetString(obj, key, TRUE, &str, where, error))
        return FALSE;
    if (!g_str_has_prefix(str, "0x") ||
        !g_ascii_string_to_unsigned(str + 2, 16, 0, max, &number, NULL)) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0,
                    "%s: '%s' must be a hexadecimal string like \"0x%0*x\", not \"%s\"",
                    where, key, max > 0xffff ? 6 : 4, max > 0xffff ? 0x30000 : 0x8086, str);
        return FALSE;
    }
    *value = number;
    return TRUE;
}


static gboolean
simTopoValidAddress(const char *address)
{
    unsigned int domain, bus, slot, function;
    char canonical[16];
    int end = 0;

    if (sscanf(address, "%4x:%2x:%2x.%1x%n", &domain, &bus, &slot, &function, &end) != 4 ||
        address[end] != '\0' || slot > 0x1f || function > 7)
        return FALSE;
    g_snprintf(canonical, sizeof(canonical), "%04x:%02x:%02x.%x",
               domain, bus, slot, function);
    return strcmp(canonical, address) == 0;
}


static gboolean
simTopoValidDriverName(const char *name)
{
    const char *p;

    for (p = name; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-')
            return FALSE;
    }
    return TRUE;
}


static gboolean
simTopoParseCosts(JsonObject *obj, simCosts *costs, const char *where, GError **error)
{
    return simTopoGetUInt(obj, "reset_ms", FALSE, SIM_COST_MAX_MS, &costs->reset_ms,
                          where, error) &&
        simTopoGetUInt(obj, "probe_ms", FALSE, SIM_COST_MAX_MS, &costs->probe_ms,
                       where, error) &&
        simTopoGetUInt(obj, "release_ms", FALSE, SIM_COST_MAX_MS, &costs->release_ms,
                       where, error);
}


/* One device, without its parent and physfn links (they may name devices
 * further down the file). */
static simDevice *
simTopoParseDevice(JsonObject *obj, guint index, const simCosts *defaults, GError **error)
{
    g_autofree char *where = g_strdup_printf("device #%u", index);
    g_autoptr(GError) local = NULL;
    simCosts costs = *defaults;
    simDevice *dev;
    const char *address;
    const char *driver;
    const char *reset_method;
    guint group = 0;
    guint vendor, device, pci_class;
    JsonNode *bound;

    if (!simTopoGetString(obj, "address", TRUE, &address, where, error))
        return NULL;
    if (!simTopoValidAddress(address)) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0,
                    "%s: malformed address '%s' (want e.g. 0000:01:00.0)", where, address);
        return NULL;
    }
    g_free(where);
    where = g_strdup_printf("device %s", address);

    if (!simTopoCheckKeys(obj, simDeviceKeys, where, error) ||
        !simTopoGetHex(obj, "vendor", 0xffff, &vendor, where, error) ||
        !simTopoGetHex(obj, "device", 0xffff, &device, where, error) ||
        !simTopoGetHex(obj, "class", 0xffffff, &pci_class, where, error) ||
        !simTopoGetString(obj, "driver", FALSE, &driver, where, error) ||
        !simTopoGetString(obj, "reset_method", FALSE, &reset_method, where, error) ||
        !simTopoGetUInt(obj, "iommu_group", TRUE, G_MAXINT, &group, where, error) ||
        !simTopoParseCosts(obj, &costs, where, error))
        return NULL;

    if (driver && !simTopoValidDriverName(driver)) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "%s: invalid driver name '%s'",
                    where, driver);
        return NULL;
    }
    bound = json_object_get_member(obj, "bound");
    if (bound && (!JSON_NODE_HOLDS_VALUE(bound) ||
                  json_node_get_value_type(bound) != G_TYPE_BOOLEAN)) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "%s: 'bound' must be true or false", where);
        return NULL;
    }

    dev = g_new0(simDevice, 1);
    dev->address = g_strdup(address);
    dev->vendor = vendor;
    dev->device = device;
    dev->pci_class = pci_class;
    dev->native_driver = g_strdup(driver);
    dev->reset_method = g_strdup(reset_method);
    dev->group_number = group;
    dev->virtfns = g_ptr_array_new();
    dev->vfio_cdev = -1;
    dev->reset_ms = costs.reset_ms;
    dev->probe_ms = costs.probe_ms;
    dev->release_ms = costs.release_ms;
    if (driver && (!bound || json_node_get_boolean(bound)))
        dev->driver = g_strdup(driver);
    return dev;
}


/* parent and physfn: both must name another device. */
static gboolean
simTopoLink(simModel *model, simDevice *dev, JsonObject *obj, const char *key,
            simDevice **target, GError **error)
{
    g_autofree char *where = g_strdup_printf("device %s", dev->address);
    const char *address;

    if (!simTopoGetString(obj, key, FALSE, &address, where, error))
        return FALSE;
    if (!address)
        return TRUE;
    if (!(*target = simModelFindDevice(model, address))) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "%s: unknown %s %s", where, key, address);
        return FALSE;
    }
    if (*target == dev) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "%s: is its own %s", where, key);
        return FALSE;
    }
    return TRUE;
}


/* sys/devices/pciDDDD:BB/<ancestors>/<address>; FALSE on a parent cycle. */
static gboolean
simTopoSysfsPath(simDevice *dev, GError **error)
{
    g_autoptr(GPtrArray) chain = g_ptr_array_new();
    g_autoptr(GString) path = g_string_new("sys/devices/");
    simDevice *top;
    int i;

    for (top = dev; top; top = top->parent) {
        if (chain->len == SIM_MAX_DEPTH) {
            g_set_error(error, SIM_TOPOLOGY_ERROR, 0,
                        "device %s: its parents form a cycle", dev->address);
            return FALSE;
        }
        g_ptr_array_add(chain, top);
    }
    top = g_ptr_array_index(chain, chain->len - 1);
    /* The root bus: "pci" + the domain and bus of the topmost device. */
    g_string_append_printf(path, "pci%.7s", top->address);
    for (i = chain->len - 1; i >= 0; i--) {
        simDevice *link = g_ptr_array_index(chain, i);

        g_string_append_printf(path, "/%s", link->address);
    }
    dev->sysfs_path = g_string_free(g_steal_pointer(&path), FALSE);
    return TRUE;
}


static gint
simTopoCompareDevices(gconstpointer a, gconstpointer b)
{
    const simDevice *da = *(const simDevice *const *) a;
    const simDevice *db = *(const simDevice *const *) b;

    return strcmp(da->address, db->address);
}


static gboolean
simTopoParseDevices(simModel *model, JsonArray *array, const simCosts *defaults,
                    GError **error)
{
    g_autoptr(GPtrArray) devices = g_ptr_array_new();
    guint i;

    if (json_array_get_length(array) == 0) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "'devices' is empty");
        return FALSE;
    }

    /* Step 1: every device on its own. */
    for (i = 0; i < json_array_get_length(array); i++) {
        JsonNode *node = json_array_get_element(array, i);
        simDevice *dev;

        if (!JSON_NODE_HOLDS_OBJECT(node)) {
            g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "device #%u: not an object", i);
            return FALSE;
        }
        if (!(dev = simTopoParseDevice(json_node_get_object(node), i, defaults, error)))
            return FALSE;
        if (simModelFindDevice(model, dev->address)) {
            g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "duplicate device address %s",
                        dev->address);
            simDeviceFree(dev);
            return FALSE;
        }
        simModelAddDevice(model, dev);
        g_ptr_array_add(devices, dev);
    }

    /* Step 2: links between devices, in file order (virtfn numbering). */
    for (i = 0; i < devices->len; i++) {
        simDevice *dev = g_ptr_array_index(devices, i);
        JsonObject *obj = json_array_get_object_element(array, i);

        if (!simTopoLink(model, dev, obj, "parent", &dev->parent, error) ||
            !simTopoLink(model, dev, obj, "physfn", &dev->physfn, error))
            return FALSE;
        if (dev->physfn)
            g_ptr_array_add(dev->physfn->virtfns, dev);
    }

    /* Step 3: paths, once all parents are known. */
    for (i = 0; i < devices->len; i++) {
        if (!simTopoSysfsPath(g_ptr_array_index(devices, i), error))
            return FALSE;
    }

    g_ptr_array_sort(model->devices, simTopoCompareDevices);
    simModelFinishTopology(model);
    return TRUE;
}


gboolean
simTopologyLoad(simModel *model, const char *data, gssize length, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    simCosts defaults = { 0, 0, 0 };
    const char *name;
    JsonObject *top;
    JsonNode *node;

    if (!json_parser_load_from_data(parser, data, length, error))
        return FALSE;
    node = json_parser_get_root(parser);
    if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "the topology must be a JSON object");
        return FALSE;
    }
    top = json_node_get_object(node);
    if (!simTopoCheckKeys(top, simTopKeys, "topology", error) ||
        !simTopoGetString(top, "name", FALSE, &name, "topology", error))
        return FALSE;

    node = json_object_get_member(top, "defaults");
    if (node) {
        if (!JSON_NODE_HOLDS_OBJECT(node)) {
            g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "'defaults' must be an object");
            return FALSE;
        }
        if (!simTopoCheckKeys(json_node_get_object(node), simCostKeys, "defaults", error) ||
            !simTopoParseCosts(json_node_get_object(node), &defaults, "defaults", error))
            return FALSE;
    }

    node = json_object_get_member(top, "devices");
    if (!node || !JSON_NODE_HOLDS_ARRAY(node)) {
        g_set_error(error, SIM_TOPOLOGY_ERROR, 0, "'devices' must be an array");
        return FALSE;
    }
    return simTopoParseDevices(model, json_node_get_array(node), &defaults, error);
}
