/*
 * hdhotplug.c: taking devices out of a running guest
 *
 * Naming: an hdHotplugItem is one device of a detach in progress (its
 * request is borrowed from the caller); an hdHotplugWatch is a group
 * watched in the background after its deadline, owned by hotplug->watches.
 *
 * Nothing here decides that a group is free: the manager asks its
 * group-free predicate (a scan of every process) before any give-back.
 * The release signal only says when to look and how long to wait.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "hdinternal.h"
#include "hostdev/hotplug.h"
#include "hostdev/release.h"

typedef struct {
    const hdHostdevDef *def;
    unsigned int group;
    gboolean requested;          /* device_del accepted */
    gboolean deleted;            /* DEVICE_DELETED seen */
    gboolean finalized;          /* the finalize event seen */
} hdHotplugItem;

typedef struct {
    GArray *items;               /* hdHotplugItem */
    const char *finalize_event;  /* NULL unless HD_RELEASE_SIGNAL_FINALIZE_EVENT */
    gboolean deleted;            /* every requested item deleted */
    gboolean finalized;          /* ... and finalized */
} hdHotplugUnplug;

typedef struct {
    hdHotplug *hotplug;
    unsigned int group;
    hdReleaseWatch *watch;
} hdHotplugWatch;

struct _hdHotplug {
    hdManager *mgr;
    GPtrArray *watches;          /* hdHotplugWatch * */
};


void
hdHotplugOptionsInit(hdHotplugOptions *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->command_timeout_ms = 10000;
    opts->unplug_base_ms = 10000;
    opts->unplug_per_device_ms = 5000;
    opts->release_base_ms = 5000;
    opts->release_per_device_ms = 2000;
    opts->proc_release_per_device_ms = 10000;
}


void
hdHotplugResultClear(hdHotplugResult *result)
{
    g_clear_pointer(&result->problem, g_free);
    g_clear_pointer(&result->unplug_pending, g_array_unref);
    memset(result, 0, sizeof(*result));
}


static void
hdHotplugWatchFree(hdHotplugWatch *hw)
{
    hdReleaseWatchFree(hw->watch);
    g_free(hw);
}


hdHotplug *
hdHotplugNew(hdManager *mgr)
{
    hdHotplug *hotplug = g_new0(hdHotplug, 1);

    hotplug->mgr = mgr;
    hotplug->watches = g_ptr_array_new_with_free_func((GDestroyNotify)hdHotplugWatchFree);
    return hotplug;
}


void
hdHotplugFree(hdHotplug *hotplug)
{
    if (!hotplug)
        return;
    g_ptr_array_unref(hotplug->watches);
    g_free(hotplug);
}


guint
hdHotplugWatchedGroups(hdHotplug *hotplug)
{
    return hotplug->watches->len;
}


static const char *
hdHotplugAddr(const hdPCIAddress *addr, char buf[HD_PCI_ADDRESS_STRLEN])
{
    return hdPCIAddressFormat(addr, buf);
}


static void
hdHotplugUpdate(hdHotplugUnplug *unplug)
{
    guint i;

    unplug->deleted = TRUE;
    unplug->finalized = TRUE;
    for (i = 0; i < unplug->items->len; i++) {
        hdHotplugItem *item = &g_array_index(unplug->items, hdHotplugItem, i);

        if (!item->requested)
            continue;
        unplug->deleted &= item->deleted;
        unplug->finalized &= item->deleted && (item->finalized || !unplug->finalize_event);
    }
}


/* DEVICE_DELETED {"device": alias, "path": ...}, or the finalize event
 * naming the device (or, for a group-level event, its group). */
static void
hdHotplugOnEvent(hdQmp *qmp, const char *event, JsonObject *data, gpointer opaque)
{
    hdHotplugUnplug *unplug = opaque;
    const char *device = NULL;
    gint64 group = -1;
    guint i;

    if (data) {
        JsonNode *node = json_object_get_member(data, "device");

        if (node && JSON_NODE_HOLDS_VALUE(node) &&
            json_node_get_value_type(node) == G_TYPE_STRING)
            device = json_node_get_string(node);
        node = json_object_get_member(data, "group");
        if (node && JSON_NODE_HOLDS_VALUE(node) &&
            json_node_get_value_type(node) == G_TYPE_INT64)
            group = json_node_get_int(node);
    }
    for (i = 0; i < unplug->items->len; i++) {
        hdHotplugItem *item = &g_array_index(unplug->items, hdHotplugItem, i);
        gboolean named = device && g_strcmp0(device, item->def->alias) == 0;

        if (g_str_equal(event, "DEVICE_DELETED") && named)
            item->deleted = TRUE;
        if (unplug->finalize_event && g_str_equal(event, unplug->finalize_event) &&
            (named || group == (gint64)item->group))
            item->finalized = TRUE;
    }
    hdHotplugUpdate(unplug);
}


/* Step 1: every device is assigned to @domain and has an alias. */
static gboolean
hdHotplugValidate(hdHotplug *hotplug, const char *domain, GPtrArray *hostdevs, GArray *items,
                  GError **error)
{
    guint i;

    for (i = 0; i < hostdevs->len; i++) {
        const hdHostdevDef *def = g_ptr_array_index(hostdevs, i);
        g_autoptr(hdDeviceInfo) info = hdManagerGetDevice(hotplug->mgr, &def->addr, error);
        hdHotplugItem item = { .def = def };
        char buf[HD_PCI_ADDRESS_STRLEN];

        if (!info)
            return FALSE;
        if (info->state != HD_DEVICE_ACTIVE || g_strcmp0(info->domain, domain) != 0) {
            hdErrorSet(error, HD_ERROR_NOT_FOUND, _("device %1$s is not assigned to domain %2$s"),
                       hdHotplugAddr(&def->addr, buf), domain);
            return FALSE;
        }
        if (!def->alias || !*def->alias) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG,
                       _("device %1$s has no alias: QEMU knows it by its alias"),
                       hdHotplugAddr(&def->addr, buf));
            return FALSE;
        }
        item.group = info->group;
        g_array_append_val(items, item);
    }
    return TRUE;
}


static gboolean
hdHotplugWasRequested(const hdHotplugOptions *opts, const char *alias)
{
    return opts->requested && g_strv_contains(opts->requested, alias);
}


/* Whether QEMU still has the device @alias. */
static gboolean
hdHotplugQemuHas(hdQmp *qmp, const char *alias, const hdHotplugOptions *opts,
                 gboolean *has, GError **error)
{
    g_autoptr(GHashTable) ids = hdQemuListDevices(qmp, opts->command_timeout_ms, error);

    if (!ids)
        return FALSE;
    *has = g_hash_table_contains(ids, alias);
    return TRUE;
}


/* QEMU no longer has @item: it was deleted, its group closed by QEMU as
 * far as QEMU is concerned (the holder watch still decides). */
static void
hdHotplugGone(hdHotplugUnplug *unplug, hdHotplugItem *item)
{
    g_debug("QEMU no longer has %s: its unplug completed unheard", item->def->alias);
    item->requested = TRUE;
    item->deleted = TRUE;
    item->finalized = TRUE;
    hdHotplugUpdate(unplug);
}


static JsonNode *
hdHotplugDeviceDel(hdQmp *qmp, const char *alias, const hdHotplugOptions *opts, GError **error)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonNode) args = NULL;

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "id");
    json_builder_add_string_value(builder, alias);
    json_builder_end_object(builder);
    args = json_builder_get_root(builder);
    return hdQmpCommand(qmp, "device_del", args, NULL, 0, opts->command_timeout_ms, error);
}


/* Step 2 for a device whose unplug an earlier call requested: gone from
 * QEMU, asked again, or (QEMU refusing a second request) still leaving. */
static gboolean
hdHotplugRequestAgain(hdQmp *qmp, hdHotplugUnplug *unplug, hdHotplugItem *item,
                      const hdHotplugOptions *opts, GError **error)
{
    g_autoptr(JsonNode) ret = NULL;
    g_autoptr(GError) refused = NULL;
    gboolean has = FALSE;

    if (!hdHotplugQemuHas(qmp, item->def->alias, opts, &has, error))
        return FALSE;
    if (has && !(ret = hdHotplugDeviceDel(qmp, item->def->alias, opts, &refused)) &&
        !hdHotplugQemuHas(qmp, item->def->alias, opts, &has, error))
        return FALSE;
    if (!has) {
        hdHotplugGone(unplug, item);
        return TRUE;
    }
    if (refused)
        g_debug("%s is still leaving the guest: %s", item->def->alias, refused->message);
    item->requested = TRUE;
    hdHotplugUpdate(unplug);
    return TRUE;
}


/* Step 2: device_del each device.  Stops at the first refusal: the devices
 * already requested are still waited for and released. */
static gboolean
hdHotplugRequest(hdQmp *qmp, hdHotplugUnplug *unplug, const hdHotplugOptions *opts,
                 GError **error)
{
    guint i;

    for (i = 0; i < unplug->items->len; i++) {
        hdHotplugItem *item = &g_array_index(unplug->items, hdHotplugItem, i);
        g_autoptr(JsonNode) ret = NULL;

        if (hdHotplugWasRequested(opts, item->def->alias)) {
            if (!hdHotplugRequestAgain(qmp, unplug, item, opts, error))
                return FALSE;
            continue;
        }
        if (!(ret = hdHotplugDeviceDel(qmp, item->def->alias, opts, error)))
            return FALSE;
        item->requested = TRUE;
        hdHotplugUpdate(unplug);
    }
    return TRUE;
}


static guint
hdHotplugRequested(hdHotplugUnplug *unplug)
{
    guint count = 0;
    guint i;

    for (i = 0; i < unplug->items->len; i++)
        count += g_array_index(unplug->items, hdHotplugItem, i).requested;
    return count;
}


/* Step 3: wait for DEVICE_DELETED of every requested device.  At the
 * deadline the ones still in the guest go to result->unplug_pending. */
static gboolean
hdHotplugWaitDeleted(hdQmp *qmp, const char *domain, hdHotplugUnplug *unplug,
                     const hdHotplugOptions *opts, hdHotplugResult *result, GError **error)
{
    guint timeout = opts->unplug_timeout_ms ? opts->unplug_timeout_ms :
                    hdReleaseDeadlineMs(opts->unplug_base_ms, opts->unplug_per_device_ms,
                                        hdHotplugRequested(unplug));
    g_autoptr(GString) missing = g_string_new(NULL);
    g_autoptr(GError) local = NULL;
    guint i;

    if (unplug->deleted || hdQmpWaitUntil(qmp, &unplug->deleted, timeout, &local))
        return TRUE;
    if (!g_error_matches(local, HD_ERROR, HD_ERROR_TIMEOUT)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    for (i = 0; i < unplug->items->len; i++) {
        hdHotplugItem *item = &g_array_index(unplug->items, hdHotplugItem, i);

        if (!item->requested || item->deleted)
            continue;
        g_string_append_printf(missing, "%s%s", missing->len ? ", " : "", item->def->alias);
        if (!result->unplug_pending)
            result->unplug_pending = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
        g_array_append_val(result->unplug_pending, item->def->addr);
    }
    hdErrorSet(error, HD_ERROR_TIMEOUT,
               _("the guest of domain %1$s did not release %2$s within %3$u ms; it stays "
                 "assigned while QEMU waits for the guest"), domain, missing->str, timeout);
    return FALSE;
}


/* The addresses of the deleted devices, and how many there are per group. */
static GArray *
hdHotplugDeletedAddrs(hdHotplugUnplug *unplug, GHashTable *per_group)
{
    GArray *addrs = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    guint i;

    for (i = 0; i < unplug->items->len; i++) {
        hdHotplugItem *item = &g_array_index(unplug->items, hdHotplugItem, i);
        gpointer key = GUINT_TO_POINTER(item->group + 1);

        if (!item->deleted)
            continue;
        g_array_append_val(addrs, item->def->addr);
        g_hash_table_insert(per_group, key,
                            GUINT_TO_POINTER(GPOINTER_TO_UINT(g_hash_table_lookup(per_group,
                                                                                  key)) + 1));
    }
    return addrs;
}


static void
hdHotplugOnBackgroundFree(hdReleaseWatch *watch, gpointer opaque)
{
    hdHotplugWatch *hw = opaque;
    hdHotplug *hotplug = hw->hotplug;
    unsigned int group = hw->group;
    g_autoptr(GError) error = NULL;
    gboolean given_back = FALSE;

    g_ptr_array_remove(hotplug->watches, hw);
    if (!hdManagerGiveBackGroup(hotplug->mgr, group, &given_back, &error)) {
        g_warning(_("IOMMU group %1$u stays on the inactive list: %2$s"), group,
                  error->message);
        return;
    }
    if (given_back)
        g_info("IOMMU group %u given back after its holders let go", group);
}


static gboolean
hdHotplugIsWatched(hdHotplug *hotplug, unsigned int group)
{
    guint i;

    for (i = 0; i < hotplug->watches->len; i++) {
        if (((hdHotplugWatch *)g_ptr_array_index(hotplug->watches, i))->group == group)
            return TRUE;
    }
    return FALSE;
}


static void
hdHotplugWatchInBackground(hdHotplug *hotplug, hdQmp *qmp, unsigned int group)
{
    hdReleaseWatchOptions wopts = { .pid = hdQmpGetPeerPid(qmp) };
    hdHotplugWatch *hw;
    g_autoptr(GError) error = NULL;

    if (hdHotplugIsWatched(hotplug, group))
        return;
    hw = g_new0(hdHotplugWatch, 1);
    hw->hotplug = hotplug;
    hw->group = group;
    hw->watch = hdReleaseWatchNewGroup(hdManagerGetHost(hotplug->mgr), group, &wopts,
                                       hdQmpGetContext(qmp), hdHotplugOnBackgroundFree, hw,
                                       &error);
    if (!hw->watch) {
        g_warning(_("cannot watch IOMMU group %1$u: %2$s"), group, error->message);
        g_free(hw);
        return;
    }
    g_ptr_array_add(hotplug->watches, hw);
    /* Its holder let go since the deadline: no wake-up will come. */
    if (hdReleaseWatchIsFree(hw->watch))
        hdHotplugOnBackgroundFree(hw->watch, hw);
}


/* The manager gives a group back from hdManagerRelease when it is free
 * already: count those too. */
static void
hdHotplugOnManagerEvent(hdManager *mgr, const hdEvent *event, gpointer opaque)
{
    if (event->type == HD_EVENT_GROUP_GIVEN_BACK)
        g_hash_table_add(opaque, GUINT_TO_POINTER(event->group + 1));
}


static gboolean
hdHotplugIsPending(hdHotplug *hotplug, unsigned int group)
{
    g_autoptr(GArray) pending = hdManagerPendingGroups(hotplug->mgr);
    guint i;

    for (i = 0; i < pending->len; i++) {
        if (g_array_index(pending, unsigned int, i) == group)
            return TRUE;
    }
    return FALSE;
}


/* Step 5 for one group: wait (at most @timeout_ms) until nobody holds it,
 * then give it back.  FALSE with @error when it is still held: the caller
 * watches it in the background. */
static gboolean
hdHotplugGiveBackWhenFree(hdHotplug *hotplug, hdQmp *qmp, unsigned int group,
                          guint timeout_ms, gboolean *given_back, GError **error)
{
    hdReleaseWatchOptions wopts = { .pid = hdQmpGetPeerPid(qmp) };
    g_autoptr(hdReleaseWatch) watch = NULL;
    g_autoptr(GError) local = NULL;

    *given_back = FALSE;
    watch = hdReleaseWatchNewGroup(hdManagerGetHost(hotplug->mgr), group, &wopts,
                                   hdQmpGetContext(qmp), NULL, NULL, error);
    if (!watch)
        return FALSE;
    if (!hdReleaseWatchWait(watch, timeout_ms, &local)) {
        hdErrorSet(error, HD_ERROR_TIMEOUT,
                   _("IOMMU group %1$u is still held %2$u ms after its devices left the "
                     "guest: %3$s; it stays on the inactive list and is watched"),
                   group, timeout_ms, local->message);
        return FALSE;
    }
    return hdManagerGiveBackGroup(hotplug->mgr, group, given_back, error);
}


static void
hdHotplugAddProblem(hdHotplugResult *result, const char *message)
{
    g_autofree char *old = result->problem;

    result->problem = old ? g_strdup_printf("%s; %s", old, message) : g_strdup(message);
}


/* Step 5: every group of a released device that waits to be given back. */
static void
hdHotplugGiveBackGroups(hdHotplug *hotplug, hdQmp *qmp, GHashTable *per_group,
                        const hdHotplugOptions *opts, hdHotplugResult *result)
{
    const hdQemuCaps *caps = hdQmpGetCaps(qmp);
    guint per_device = caps->release_signal == HD_RELEASE_SIGNAL_PROC ?
                       opts->proc_release_per_device_ms : opts->release_per_device_ms;
    guint devices = 0;
    gint64 deadline;
    GHashTableIter iter;
    gpointer key;
    gpointer value;

    g_hash_table_iter_init(&iter, per_group);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        devices += GPOINTER_TO_UINT(value);
    /* One deadline for all: the kernel releases groups in parallel. */
    deadline = g_get_monotonic_time() +
               (gint64)hdReleaseDeadlineMs(opts->release_base_ms, per_device, devices) * 1000;

    g_hash_table_iter_init(&iter, per_group);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        unsigned int group = GPOINTER_TO_UINT(key) - 1;
        gint64 left = MAX(0, deadline - g_get_monotonic_time()) / 1000;
        g_autoptr(GError) error = NULL;
        gboolean given_back = FALSE;

        /* Given back already, a sibling still in the guest, or an
         * unmanaged device: nothing to wait for. */
        if (!hdHotplugIsPending(hotplug, group))
            continue;
        if (hdHotplugGiveBackWhenFree(hotplug, qmp, group, (guint)left, &given_back, &error)) {
            if (!given_back && hdHotplugIsPending(hotplug, group))
                hdHotplugWatchInBackground(hotplug, qmp, group);
            continue;
        }
        /* The caller reports it: hdHotplugResult.problem. */
        hdHotplugAddProblem(result, error->message);
        if (g_error_matches(error, HD_ERROR, HD_ERROR_TIMEOUT)) {
            hdHotplugWatchInBackground(hotplug, qmp, group);
            result->groups_watched++;
        }
    }
}


/* How many of @addrs wait on the inactive list to be given back. */
static guint
hdHotplugCountWaiting(hdHotplug *hotplug, GArray *addrs)
{
    guint count = 0;
    guint i;

    for (i = 0; i < addrs->len; i++) {
        g_autoptr(hdDeviceInfo) info = hdManagerGetDevice(hotplug->mgr,
                                                          &g_array_index(addrs, hdPCIAddress, i),
                                                          NULL);

        count += info && info->state == HD_DEVICE_INACTIVE && info->give_back;
    }
    return count;
}


gboolean
hdHotplugDetach(hdHotplug *hotplug, hdQmp *qmp, const char *domain, GPtrArray *hostdevs,
                const hdHotplugOptions *opts, hdHotplugResult *result, GError **error)
{
    const hdQemuCaps *caps = hdQmpGetCaps(qmp);
    hdHotplugOptions defaults;
    hdHotplugResult ignored = { 0 };
    hdHotplugUnplug unplug = { 0 };
    g_autoptr(GArray) items = g_array_new(FALSE, FALSE, sizeof(hdHotplugItem));
    g_autoptr(GHashTable) per_group = g_hash_table_new(NULL, NULL);
    g_autoptr(GArray) addrs = NULL;
    g_autoptr(GError) unplug_error = NULL;
    guint handler;
    guint finalize_handler = 0;

    if (!opts) {
        hdHotplugOptionsInit(&defaults);
        opts = &defaults;
    }
    if (!result)
        result = &ignored;
    if (!caps) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, "%s",
                   _("the QEMU monitor was not probed: no release signal chosen"));
        return FALSE;
    }

    /* Step 1: validate. */
    if (!hdHotplugValidate(hotplug, domain, hostdevs, items, error))
        return FALSE;
    unplug.items = items;
    if (caps->release_signal == HD_RELEASE_SIGNAL_FINALIZE_EVENT)
        unplug.finalize_event = caps->release_event;
    g_debug("detaching %u device(s) from %s; release signal %s", items->len, domain,
            hdReleaseSignalToString(caps->release_signal));

    /* Step 2: device_del, listening first: the event may come before the
     * command's reply. */
    handler = hdQmpAddEventHandler(qmp, "DEVICE_DELETED", hdHotplugOnEvent, &unplug);
    if (unplug.finalize_event)
        finalize_handler = hdQmpAddEventHandler(qmp, unplug.finalize_event,
                                                hdHotplugOnEvent, &unplug);
    if (hdHotplugRequest(qmp, &unplug, opts, &unplug_error) || hdHotplugRequested(&unplug))
        /* Step 3: the guest lets go of each requested device. */
        hdHotplugWaitDeleted(qmp, domain, &unplug, opts, result,
                             unplug_error ? NULL : &unplug_error);

    /* Step 3b: the dedicated event says QEMU closed the group.  Without it
     * in time the holder watch below decides alone. */
    if (unplug.finalize_event && !unplug.finalized) {
        g_autoptr(GError) local = NULL;

        if (!hdQmpWaitUntil(qmp, &unplug.finalized, opts->release_base_ms, &local))
            g_debug("no %s: %s", unplug.finalize_event, local->message);
    }
    hdQmpRemoveEventHandler(qmp, handler);
    if (finalize_handler)
        hdQmpRemoveEventHandler(qmp, finalize_handler);

    /* Step 4: the deleted devices leave the domain. */
    addrs = hdHotplugDeletedAddrs(&unplug, per_group);
    if (addrs->len > 0) {
        g_autoptr(GHashTable) given_back = g_hash_table_new(NULL, NULL);
        guint id = hdManagerAddEventHandler(hotplug->mgr, hdHotplugOnManagerEvent, given_back);
        gboolean released = hdManagerRelease(hotplug->mgr, domain, addrs, error);

        /* Step 5: give their groups back once nobody holds them. */
        if (released) {
            result->released = addrs->len;
            hdHotplugGiveBackGroups(hotplug, qmp, per_group, opts, result);
        }
        hdManagerRemoveEventHandler(hotplug->mgr, id);
        result->groups_given_back = g_hash_table_size(given_back);
        result->waiting = hdHotplugCountWaiting(hotplug, addrs);
        if (!released) {
            hdHotplugResultClear(&ignored);
            return FALSE;
        }
    }
    hdHotplugResultClear(&ignored);
    if (unplug_error) {
        g_propagate_error(error, g_steal_pointer(&unplug_error));
        return FALSE;
    }
    return TRUE;
}
