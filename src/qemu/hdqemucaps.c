/*
 * hdqemucaps.c: what a QEMU can tell about releasing a device
 *
 * Probed once per connection: the version (query-version) and the events
 * it can send (query-qmp-schema, whose event entries reflect the build;
 * query-events on QEMU before 2.5, which lacks the schema; query-events
 * itself is gone since QEMU 6.0).  From these comes the release signal
 * (hdReleaseSignal, see qemu.h).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "hdinternal.h"
#include "hdqemu-priv.h"
#include "hostdev/qemu.h"

/* QEMU 2.11 moved DEVICE_DELETED to the device's finalize. */
#define HD_QEMU_FINALIZE_DELETED_MAJOR 2
#define HD_QEMU_FINALIZE_DELETED_MINOR 11


const char *
hdReleaseSignalToString(hdReleaseSignal signal)
{
    switch (signal) {
    case HD_RELEASE_SIGNAL_FINALIZE_EVENT:
        return "finalize-event";
    case HD_RELEASE_SIGNAL_DEVICE_DELETED:
        return "device-deleted";
    case HD_RELEASE_SIGNAL_PROC:
        return "proc";
    }
    return "unknown";
}


void
hdQemuCapsFree(hdQemuCaps *caps)
{
    if (!caps)
        return;
    g_free(caps->package);
    g_clear_pointer(&caps->events, g_hash_table_unref);
    g_free(caps->release_event);
    g_free(caps->reason);
    g_free(caps);
}


hdReleaseSignal
hdQemuChooseReleaseSignal(unsigned int major, unsigned int minor, GHashTable *events,
                          const char *finalize_event, char **reason)
{
    gboolean finalize_deleted = major > HD_QEMU_FINALIZE_DELETED_MAJOR ||
        (major == HD_QEMU_FINALIZE_DELETED_MAJOR && minor >= HD_QEMU_FINALIZE_DELETED_MINOR);
    hdReleaseSignal signal;
    char *why;

    if (finalize_event && *finalize_event && events &&
        g_hash_table_contains(events, finalize_event)) {
        signal = HD_RELEASE_SIGNAL_FINALIZE_EVENT;
        why = g_strdup_printf(_("QEMU advertises the event %1$s"), finalize_event);
    } else if (finalize_deleted && (!events || g_hash_table_contains(events, "DEVICE_DELETED"))) {
        signal = HD_RELEASE_SIGNAL_DEVICE_DELETED;
        why = g_strdup_printf(_("QEMU %1$u.%2$u sends DEVICE_DELETED from the device's "
                                "finalize (since 2.11)"), major, minor);
    } else {
        signal = HD_RELEASE_SIGNAL_PROC;
        why = g_strdup_printf(_("QEMU %1$u.%2$u may send DEVICE_DELETED before closing the "
                                "group (before 2.11): watching its file descriptors"),
                              major, minor);
    }
    if (reason)
        *reason = why;
    else
        g_free(why);
    return signal;
}


static gboolean
hdQemuProbeVersion(hdQmp *qmp, hdQemuCaps *caps, guint timeout_ms, GError **error)
{
    g_autoptr(JsonNode) ret = hdQmpCommand(qmp, "query-version", NULL, NULL, 0, timeout_ms,
                                           error);
    JsonObject *qemu;
    const char *package;

    if (!ret)
        return FALSE;
    if (!JSON_NODE_HOLDS_OBJECT(ret) ||
        !(qemu = hdQmpJsonObject(json_node_get_object(ret), "qemu"))) {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED, "%s",
                   _("QEMU's answer to query-version has no version"));
        return FALSE;
    }
    caps->major = CLAMP(hdQmpJsonInt(qemu, "major", 0), 0, G_MAXINT);
    caps->minor = CLAMP(hdQmpJsonInt(qemu, "minor", 0), 0, G_MAXINT);
    caps->micro = CLAMP(hdQmpJsonInt(qemu, "micro", 0), 0, G_MAXINT);
    package = hdQmpJsonString(json_node_get_object(ret), "package");
    caps->package = g_strdup(package ? package : "");
    return TRUE;
}


/* Event names from query-qmp-schema ({"name", "meta-type": "event"}) or
 * query-events ({"name"}). */
static void
hdQemuAddEvents(hdQemuCaps *caps, JsonNode *ret, gboolean schema)
{
    JsonArray *list = JSON_NODE_HOLDS_ARRAY(ret) ? json_node_get_array(ret) : NULL;
    guint i;

    for (i = 0; list && i < json_array_get_length(list); i++) {
        JsonNode *node = json_array_get_element(list, i);
        JsonObject *entry = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        const char *name = hdQmpJsonString(entry, "name");

        if (!name || (schema && g_strcmp0(hdQmpJsonString(entry, "meta-type"), "event")))
            continue;
        g_hash_table_add(caps->events, g_strdup(name));
    }
}


static gboolean
hdQemuProbeEvents(hdQmp *qmp, hdQemuCaps *caps, guint timeout_ms, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autoptr(JsonNode) ret = hdQmpCommand(qmp, "query-qmp-schema", NULL, NULL, 0,
                                           timeout_ms, &local);

    if (ret) {
        caps->events_from_schema = TRUE;
        hdQemuAddEvents(caps, ret, TRUE);
        return TRUE;
    }
    if (!g_error_matches(local, HD_ERROR, HD_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (!(ret = hdQmpCommand(qmp, "query-events", NULL, NULL, 0, timeout_ms, error)))
        return FALSE;
    hdQemuAddEvents(caps, ret, FALSE);
    return TRUE;
}


const hdQemuCaps *
hdQemuProbe(hdQmp *qmp, const char *finalize_event, guint timeout_ms, GError **error)
{
    g_autoptr(hdQemuCaps) caps = g_new0(hdQemuCaps, 1);

    if (!finalize_event)
        finalize_event = HD_QEMU_DEFAULT_FINALIZE_EVENT;
    caps->events = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (!hdQemuProbeVersion(qmp, caps, timeout_ms, error) ||
        !hdQemuProbeEvents(qmp, caps, timeout_ms, error))
        return NULL;
    caps->release_signal = hdQemuChooseReleaseSignal(caps->major, caps->minor, caps->events,
                                                     finalize_event, &caps->reason);
    if (caps->release_signal == HD_RELEASE_SIGNAL_FINALIZE_EVENT)
        caps->release_event = g_strdup(finalize_event);
    else if (caps->release_signal == HD_RELEASE_SIGNAL_DEVICE_DELETED)
        caps->release_event = g_strdup("DEVICE_DELETED");
    g_info("QEMU %u.%u.%u: release signal %s (%s)", caps->major, caps->minor, caps->micro,
           hdReleaseSignalToString(caps->release_signal), caps->reason);
    hdQmpSetCaps(qmp, g_steal_pointer(&caps));
    return hdQmpGetCaps(qmp);
}
