/*
 * hdqemudevices.c: which devices a QEMU still has
 *
 * device_del finds a device by its id in the QOM container
 * /machine/peripheral, and a device leaves that container when QEMU
 * unplugs it, before DEVICE_DELETED is sent (from the device's finalize
 * since QEMU 2.11, from its unparent before).  So the children of
 * /machine/peripheral (qom-list) are exactly the ids device_del still
 * knows: a device whose unplug was requested and that is not among them
 * is gone from the guest, whether or not anybody heard its DEVICE_DELETED.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "hdinternal.h"
#include "hdqemu-priv.h"
#include "hostdev/qemu.h"

#define HD_QEMU_PERIPHERAL "/machine/peripheral"


GHashTable *
hdQemuListDevices(hdQmp *qmp, guint timeout_ms, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) args = NULL;
    g_autoptr(JsonNode) ret = NULL;
    g_autoptr(GHashTable) ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    JsonArray *children;
    guint i;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "path");
    json_builder_add_string_value(b, HD_QEMU_PERIPHERAL);
    json_builder_end_object(b);
    args = json_builder_get_root(b);
    if (!(ret = hdQmpCommand(qmp, "qom-list", args, NULL, 0, timeout_ms, error)))
        return NULL;
    if (!JSON_NODE_HOLDS_ARRAY(ret)) {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED, "%s",
                   _("QEMU's answer to qom-list is not a list"));
        return NULL;
    }
    children = json_node_get_array(ret);
    for (i = 0; i < json_array_get_length(children); i++) {
        JsonNode *node = json_array_get_element(children, i);
        JsonObject *child = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        const char *name = hdQmpJsonString(child, "name");
        const char *type = hdQmpJsonString(child, "type");

        /* The container's own properties ("type") are not devices. */
        if (name && type && g_str_has_prefix(type, "child<"))
            g_hash_table_add(ids, g_strdup(name));
    }
    return g_steal_pointer(&ids);
}
