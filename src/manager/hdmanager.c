/*
 * hdmanager.c: the hostdev manager
 *
 * Naming: an hdHostdevDef is a request; an hdDeviceRecord is the manager's
 * own record of a device it took from the host (owned by mgr->records, or by
 * a copy of that list being prepared); an hdPrepareItem is a short-lived
 * step of one prepare.  Every record change is written to the state file
 * (hdManagerCommit) before the host is touched.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "hdinternal.h"
#include "hdcrash.h"
#include "hdholders.h"
#include "hdstate.h"
#include "hostdev/manager.h"

typedef struct {
    hdEventType type;
    char *domain;
    hdPCIAddress addr;
    unsigned int group;
    char *message;
} hdQueuedEvent;

typedef struct {
    guint id;
    hdEventFunc func;
    gpointer opaque;
} hdEventHandler;

struct _hdManager {
    gint refs;
    hdHost *host;
    char *state_dir;
    char *state_path;
    int lock_fd;
    GPtrArray *records;          /* hdDeviceRecord *, the committed state */
    hdGroupFreeFunc group_free;
    gpointer group_free_opaque;
    GMutex lock;                 /* everything above and below */
    GHashTable *busy;            /* group + 1 -> being given back, lock not held */
    GArray *events;              /* hdQueuedEvent, not delivered yet */
    GArray *handlers;            /* hdEventHandler */
    guint next_handler_id;
    GRecMutex dispatch_lock;     /* keeps deliveries in order */
};

typedef struct {
    hdPCIAddress addr;
    unsigned int group;
    gboolean managed;
    gboolean sibling;            /* detached only to keep its group viable */
    char *driver;                /* bound now, NULL if none */
} hdPrepareItem;


const char *
hdDeviceStateToString(hdDeviceState state)
{
    switch (state) {
    case HD_DEVICE_HOST:
        return "host";
    case HD_DEVICE_INACTIVE:
        return "inactive";
    case HD_DEVICE_ACTIVE:
        return "active";
    }
    return "unknown";
}


void
hdDeviceInfoFree(hdDeviceInfo *info)
{
    if (!info)
        return;
    g_free(info->domain);
    g_free(info->original_driver);
    g_free(info->driver);
    g_free(info);
}


const char *
hdEventTypeToString(hdEventType type)
{
    switch (type) {
    case HD_EVENT_DEVICE_ASSIGNED:
        return "device-assigned";
    case HD_EVENT_DEVICE_RELEASED:
        return "device-released";
    case HD_EVENT_GROUP_GIVEN_BACK:
        return "group-given-back";
    case HD_EVENT_GIVE_BACK_FAILED:
        return "give-back-failed";
    }
    return "unknown";
}


static void
hdQueuedEventClear(hdQueuedEvent *event)
{
    g_clear_pointer(&event->domain, g_free);
    g_clear_pointer(&event->message, g_free);
}


/* Queue an event; the caller holds mgr->lock.  @addr may be NULL. */
static void
hdManagerQueueEvent(hdManager *mgr, hdEventType type, const char *domain,
                    const hdPCIAddress *addr, unsigned int group, const char *message)
{
    hdQueuedEvent event = {
        .type = type,
        .domain = g_strdup(domain),
        .group = group,
        .message = g_strdup(message),
    };

    if (addr)
        event.addr = *addr;
    g_array_append_val(mgr->events, event);
}


/* Deliver the queued events; the caller does not hold mgr->lock.  Events
 * wait in the queue until a handler is there to take them. */
static void
hdManagerFlushEvents(hdManager *mgr)
{
    g_autoptr(GArray) events = NULL;
    g_autoptr(GArray) handlers = NULL;
    guint i;
    guint j;

    g_rec_mutex_lock(&mgr->dispatch_lock);
    g_mutex_lock(&mgr->lock);
    if (mgr->handlers->len > 0 && mgr->events->len > 0) {
        events = g_steal_pointer(&mgr->events);
        mgr->events = g_array_new(FALSE, TRUE, sizeof(hdQueuedEvent));
        g_array_set_clear_func(mgr->events, (GDestroyNotify)hdQueuedEventClear);
        handlers = g_array_copy(mgr->handlers);
    }
    g_mutex_unlock(&mgr->lock);

    for (i = 0; events && i < events->len; i++) {
        const hdQueuedEvent *queued = &g_array_index(events, hdQueuedEvent, i);
        hdEvent event = {
            .type = queued->type,
            .domain = queued->domain,
            .addr = queued->addr,
            .group = queued->group,
            .message = queued->message,
        };

        for (j = 0; j < handlers->len; j++) {
            hdEventHandler *handler = &g_array_index(handlers, hdEventHandler, j);
            handler->func(mgr, &event, handler->opaque);
        }
    }
    g_rec_mutex_unlock(&mgr->dispatch_lock);
}


guint
hdManagerAddEventHandler(hdManager *mgr, hdEventFunc func, gpointer opaque)
{
    hdEventHandler handler = { .func = func, .opaque = opaque };

    g_mutex_lock(&mgr->lock);
    handler.id = ++mgr->next_handler_id;
    g_array_append_val(mgr->handlers, handler);
    g_mutex_unlock(&mgr->lock);
    hdManagerFlushEvents(mgr);
    return handler.id;
}


void
hdManagerRemoveEventHandler(hdManager *mgr, guint id)
{
    guint i;

    g_rec_mutex_lock(&mgr->dispatch_lock);
    g_mutex_lock(&mgr->lock);
    for (i = 0; i < mgr->handlers->len; i++) {
        if (g_array_index(mgr->handlers, hdEventHandler, i).id == id) {
            g_array_remove_index(mgr->handlers, i);
            break;
        }
    }
    g_mutex_unlock(&mgr->lock);
    g_rec_mutex_unlock(&mgr->dispatch_lock);
}


static void
hdPrepareItemClear(hdPrepareItem *item)
{
    g_clear_pointer(&item->driver, g_free);
}


static const char *
hdAddr(const hdPCIAddress *addr, char buf[HD_PCI_ADDRESS_STRLEN])
{
    return hdPCIAddressFormat(addr, buf);
}


static hdDeviceRecord *
hdRecordFind(GPtrArray *records, const hdPCIAddress *addr, guint *index)
{
    guint i;

    for (i = 0; i < records->len; i++) {
        hdDeviceRecord *rec = g_ptr_array_index(records, i);

        if (hdPCIAddressEqual(&rec->addr, addr)) {
            if (index)
                *index = i;
            return rec;
        }
    }
    return NULL;
}


static int
hdRecordCompare(gconstpointer a, gconstpointer b)
{
    const hdDeviceRecord *ra = *(hdDeviceRecord *const *)a;
    const hdDeviceRecord *rb = *(hdDeviceRecord *const *)b;
    char sa[HD_PCI_ADDRESS_STRLEN];
    char sb[HD_PCI_ADDRESS_STRLEN];

    return strcmp(hdAddr(&ra->addr, sa), hdAddr(&rb->addr, sb));
}


/* Write @records to the state file, then make them the manager's records.
 * The host must not be touched for a change before this succeeded. */
static gboolean
hdManagerCommit(hdManager *mgr, GPtrArray *records, GError **error)
{
    g_ptr_array_sort(records, hdRecordCompare);
    if (!hdStateSave(mgr->state_path, records, error))
        return FALSE;
    if (records != mgr->records) {
        g_ptr_array_unref(mgr->records);
        mgr->records = g_ptr_array_ref(records);
    }
    return TRUE;
}


static gboolean
hdManagerGroupIsFree(hdManager *mgr, unsigned int group, gboolean *free_, GError **error)
{
    return mgr->group_free(mgr->host, group, free_, mgr->group_free_opaque, error);
}


/* The first record of @group that is active, if any. */
static hdDeviceRecord *
hdManagerGroupActiveRecord(hdManager *mgr, unsigned int group)
{
    guint i;

    for (i = 0; i < mgr->records->len; i++) {
        hdDeviceRecord *rec = g_ptr_array_index(mgr->records, i);

        if (rec->group == group && rec->state == HD_DEVICE_ACTIVE)
            return rec;
    }
    return NULL;
}


/* First half of returning a device: restore its original driver_override
 * and take it off vfio-pci.  The unbind blocks until the kernel has
 * released the device.  Idempotent, so an interrupted give-back can run
 * again. */
static gboolean
hdManagerUnbindForReturn(hdManager *mgr, const hdDeviceRecord *rec, GError **error)
{
    g_autofree char *driver = NULL;

    if (!hdPCIDeviceGetDriver(mgr->host, &rec->addr, &driver, error) ||
        !hdPCIDeviceSetDriverOverride(mgr->host, &rec->addr, rec->original_override, error))
        return FALSE;
    if (g_strcmp0(driver, rec->original_driver) == 0)
        return TRUE;
    if (!hdPCIDeviceUnbind(mgr->host, &rec->addr, error))
        return FALSE;
    hdCrashPoint("return-unbound");
    return TRUE;
}


/* Second half: probe the original driver.  Only once every member of the
 * group has left vfio-pci: until the kernel has released the whole group, it
 * refuses host drivers (and kernels before 5.19 crashed). */
static gboolean
hdManagerProbeForReturn(hdManager *mgr, const hdDeviceRecord *rec, GError **error)
{
    g_autofree char *driver = NULL;
    char addr[HD_PCI_ADDRESS_STRLEN];

    if (!hdPCIDeviceGetDriver(mgr->host, &rec->addr, &driver, error))
        return FALSE;
    /* A device that had no driver is left without one. */
    if (g_strcmp0(driver, rec->original_driver) == 0 || !rec->original_driver)
        return TRUE;
    if (!driver && !hdPCIDeviceProbe(mgr->host, &rec->addr, error))
        return FALSE;
    g_clear_pointer(&driver, g_free);
    if (!hdPCIDeviceGetDriver(mgr->host, &rec->addr, &driver, error))
        return FALSE;
    if (g_strcmp0(driver, rec->original_driver) != 0) {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED,
                   _("device %1$s came back on driver '%2$s' instead of its original '%3$s'"),
                   hdAddr(&rec->addr, addr), driver ? driver : "none", rec->original_driver);
        return FALSE;
    }
    return TRUE;
}


/* Step 1 of a group give-back: reset the members going back, before any
 * host driver binds (a bus reset hits every function on the bus).  A member
 * still on vfio-pci was reset by the kernel when its last user closed it
 * (vfio_pci_core_disable), so, as libvirt does, only members that left
 * vfio-pci already (an interrupted give-back) are reset here: a second
 * reset would double the second per device that teardown costs.  Failures
 * are reported and do not stop the give-back, as in libvirt. */
static void
hdManagerResetForGiveBack(hdManager *mgr, GPtrArray *recs)
{
    guint i;

    for (i = 0; i < recs->len; i++) {
        const hdDeviceRecord *rec = g_ptr_array_index(recs, i);
        g_autoptr(GError) local = NULL;
        g_autofree char *methods = NULL;
        char buf[HD_PCI_ADDRESS_STRLEN];

        if (!rec->detached || hdPCIDeviceIsVFIOBound(mgr->host, &rec->addr))
            continue;
        if (!hdPCIDeviceGetResetMethod(mgr->host, &rec->addr, &methods, &local) || !methods)
            continue;
        if (!hdPCIDeviceReset(mgr->host, &rec->addr, &local))
            g_warning(_("reset of %1$s before giving it back failed: %2$s"),
                      hdAddr(&rec->addr, buf), local->message);
        hdCrashPoint("give-back-reset");
    }
}


/* Copies of the records of @group that wait to be given back. */
static GPtrArray *
hdManagerGroupGiveBackRecords(hdManager *mgr, unsigned int group)
{
    GPtrArray *recs = hdDeviceRecordListNew();
    guint i;

    for (i = 0; i < mgr->records->len; i++) {
        hdDeviceRecord *rec = g_ptr_array_index(mgr->records, i);

        if (rec->group == group && rec->state == HD_DEVICE_INACTIVE && rec->give_back)
            g_ptr_array_add(recs, hdDeviceRecordCopy(rec));
    }
    return recs;
}


static gboolean
hdManagerGroupIsBusy(hdManager *mgr, unsigned int group)
{
    return g_hash_table_contains(mgr->busy, GUINT_TO_POINTER(group + 1));
}


/* Refuse to touch a group whose give-back is running. */
static gboolean
hdManagerCheckNotBusy(hdManager *mgr, unsigned int group, GError **error)
{
    if (hdManagerGroupIsBusy(mgr, group)) {
        hdErrorSet(error, HD_ERROR_IN_USE,
                   _("IOMMU group %1$u is being given back to the host; try again when it is "
                     "done"),
                   group);
        return FALSE;
    }
    return TRUE;
}


/* Drop the records of @addrs (hdPCIAddress), back on their original
 * drivers: one write of the state file for all of them. */
static gboolean
hdManagerForgetLocked(hdManager *mgr, GArray *addrs, GError **error)
{
    g_autoptr(GPtrArray) next = hdDeviceRecordListCopy(mgr->records);
    guint index;
    guint i;

    for (i = 0; i < addrs->len; i++) {
        if (hdRecordFind(next, &g_array_index(addrs, hdPCIAddress, i), &index))
            g_ptr_array_remove_index(next, index);
    }
    return hdManagerCommit(mgr, next, error);
}


static gboolean
hdManagerForgetOneLocked(hdManager *mgr, const hdPCIAddress *addr, GError **error)
{
    g_autoptr(GArray) addrs = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));

    g_array_append_val(addrs, *addr);
    return hdManagerForgetLocked(mgr, addrs, error);
}


static void
hdManagerQueueFailure(hdManager *mgr, unsigned int group, const GError *error)
{
    g_mutex_lock(&mgr->lock);
    hdManagerQueueEvent(mgr, HD_EVENT_GIVE_BACK_FAILED, NULL, NULL, group, error->message);
    g_mutex_unlock(&mgr->lock);
}


/* Step 4: drop the records of the members that came home, in one write
 * (the state file is written under the lock, which every group's
 * give-back needs: one write per group, not per device). */
static gboolean
hdManagerForgetReturned(hdManager *mgr, unsigned int group, GArray *returned,
                        GError **error)
{
    gboolean ret;
    guint i;

    if (returned->len == 0)
        return TRUE;
    g_mutex_lock(&mgr->lock);
    if ((ret = hdManagerForgetLocked(mgr, returned, error))) {
        for (i = 0; i < returned->len; i++)
            hdManagerQueueEvent(mgr, HD_EVENT_GROUP_GIVEN_BACK, NULL,
                                &g_array_index(returned, hdPCIAddress, i), group, NULL);
    }
    g_mutex_unlock(&mgr->lock);
    return ret;
}


/* Steps 1 to 3 of a group give-back, on a claimed group, without the
 * manager's lock: the kernel's release, resets and probes take seconds, and
 * other groups go back meanwhile. */
static gboolean
hdManagerGiveBackClaimed(hdManager *mgr, unsigned int group, GPtrArray *recs,
                         gboolean *given_back, GError **error)
{
    g_autoptr(GArray) returned = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    g_autoptr(GError) local_forget = NULL;
    gboolean ret = TRUE;
    guint i;

    hdManagerResetForGiveBack(mgr, recs);

    /* Step 2: every member off vfio-pci (each unbind waits until the kernel
     * has released the device); step 3: each back on its original driver.
     * A failing member stays on the inactive list and the others still go,
     * but no host driver is probed while a member could not leave vfio-pci
     * (it may still be held). */
    for (i = 0; i < recs->len; i++) {
        g_autoptr(GError) local = NULL;

        if (!hdManagerUnbindForReturn(mgr, g_ptr_array_index(recs, i), &local)) {
            hdManagerQueueFailure(mgr, group, local);
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
    }
    for (i = 0; i < recs->len; i++) {
        const hdDeviceRecord *rec = g_ptr_array_index(recs, i);
        g_autoptr(GError) local = NULL;

        if (!hdManagerProbeForReturn(mgr, rec, &local)) {
            hdManagerQueueFailure(mgr, group, local);
            if (ret)
                g_propagate_error(error, g_steal_pointer(&local));
            ret = FALSE;
            continue;
        }
        hdCrashPoint("give-back-returned");
        g_array_append_val(returned, rec->addr);
    }
    if (!hdManagerForgetReturned(mgr, group, returned, &local_forget)) {
        hdManagerQueueFailure(mgr, group, local_forget);
        if (ret)
            g_propagate_error(error, g_steal_pointer(&local_forget));
        ret = FALSE;
    }
    *given_back = ret;
    return ret;
}


/* Give back @group if it is free; the caller does not hold the lock.  The
 * group is claimed (busy) for the duration, so nothing else touches it. */
static gboolean
hdManagerGiveBackGroupUnlocked(hdManager *mgr, unsigned int group, gboolean *given_back,
                               GError **error)
{
    g_autoptr(GPtrArray) recs = NULL;
    hdGroupFreeFunc group_free;
    gpointer group_free_opaque;
    gboolean free_ = FALSE;
    gboolean ret = TRUE;

    *given_back = FALSE;
    g_mutex_lock(&mgr->lock);
    recs = hdManagerGroupGiveBackRecords(mgr, group);
    if (recs->len == 0 || hdManagerGroupActiveRecord(mgr, group) ||
        hdManagerGroupIsBusy(mgr, group)) {
        g_mutex_unlock(&mgr->lock);
        return TRUE;
    }
    g_hash_table_add(mgr->busy, GUINT_TO_POINTER(group + 1));
    group_free = mgr->group_free;
    group_free_opaque = mgr->group_free_opaque;
    g_mutex_unlock(&mgr->lock);

    if (!group_free(mgr->host, group, &free_, group_free_opaque, error))
        ret = FALSE;
    else if (free_)
        ret = hdManagerGiveBackClaimed(mgr, group, recs, given_back, error);

    g_mutex_lock(&mgr->lock);
    g_hash_table_remove(mgr->busy, GUINT_TO_POINTER(group + 1));
    g_mutex_unlock(&mgr->lock);
    return ret;
}


gboolean
hdManagerGiveBackGroup(hdManager *mgr, unsigned int group, gboolean *given_back,
                       GError **error)
{
    gboolean ret = hdManagerGiveBackGroupUnlocked(mgr, group, given_back, error);

    hdManagerFlushEvents(mgr);
    return ret;
}


static GArray *
hdManagerPendingGroupsLocked(hdManager *mgr)
{
    GArray *groups = g_array_new(FALSE, FALSE, sizeof(unsigned int));
    guint i;
    guint j;

    for (i = 0; i < mgr->records->len; i++) {
        hdDeviceRecord *rec = g_ptr_array_index(mgr->records, i);
        gboolean seen = FALSE;

        if (rec->state != HD_DEVICE_INACTIVE || !rec->give_back ||
            hdManagerGroupActiveRecord(mgr, rec->group))
            continue;
        for (j = 0; j < groups->len; j++)
            seen |= g_array_index(groups, unsigned int, j) == rec->group;
        if (!seen)
            g_array_append_val(groups, rec->group);
    }
    return groups;
}


GArray *
hdManagerPendingGroups(hdManager *mgr)
{
    GArray *groups;

    g_mutex_lock(&mgr->lock);
    groups = hdManagerPendingGroupsLocked(mgr);
    g_mutex_unlock(&mgr->lock);
    return groups;
}


/* Try @groups one after the other; the first error is reported. */
static guint
hdManagerGiveBackGroups(hdManager *mgr, GArray *groups, GError **error)
{
    guint count = 0;
    guint i;

    for (i = 0; i < groups->len; i++) {
        g_autoptr(GError) local = NULL;
        gboolean given_back = FALSE;

        if (!hdManagerGiveBackGroupUnlocked(mgr, g_array_index(groups, unsigned int, i),
                                            &given_back, &local)) {
            if (error && !*error)
                g_propagate_error(error, g_steal_pointer(&local));
            continue;
        }
        count += given_back;
    }
    return count;
}


guint
hdManagerGiveBackPending(hdManager *mgr, GError **error)
{
    g_autoptr(GArray) groups = hdManagerPendingGroups(mgr);
    guint count = hdManagerGiveBackGroups(mgr, groups, error);

    hdManagerFlushEvents(mgr);
    return count;
}


/* Undo the records of an interrupted or failed prepare: a record that
 * existed before gets its previous form back; a record the prepare created
 * goes on the inactive list, to be given back to its original driver as
 * soon as its group is free (never while a sibling is in use). */
static GPtrArray *
hdManagerRevertPrepareRecords(GPtrArray *records)
{
    GPtrArray *next = hdDeviceRecordListNew();
    guint i;

    for (i = 0; i < records->len; i++) {
        hdDeviceRecord *rec = hdDeviceRecordCopy(g_ptr_array_index(records, i));

        if (rec->in_prepare && rec->previous) {
            hdDeviceRecord *previous = g_steal_pointer(&rec->previous);

            hdDeviceRecordFree(rec);
            rec = previous;
        } else if (rec->in_prepare) {
            rec->state = HD_DEVICE_INACTIVE;
            g_clear_pointer(&rec->domain, g_free);
            rec->give_back = TRUE;
        }
        rec->in_prepare = FALSE;
        g_ptr_array_add(next, rec);
    }
    return next;
}


static gboolean
hdManagerHasPrepareRecords(hdManager *mgr)
{
    guint i;

    for (i = 0; i < mgr->records->len; i++) {
        if (((hdDeviceRecord *)g_ptr_array_index(mgr->records, i))->in_prepare)
            return TRUE;
    }
    return FALSE;
}


/* Roll back a prepare's records; the caller gives the devices back
 * (hdManagerGiveBackPending) once it released the lock. */
static void
hdManagerRollbackPrepareRecords(hdManager *mgr)
{
    g_autoptr(GPtrArray) next = hdManagerRevertPrepareRecords(mgr->records);
    g_autoptr(GError) local = NULL;

    if (!hdManagerCommit(mgr, next, &local)) {
        /* The state file still says "in prepare": the next start rolls back. */
        g_warning(_("cannot record the rollback of a prepare: %1$s"), local->message);
        return;
    }
    hdCrashPoint("rollback-recorded");
}


/* Give back what a failed prepare took; the caller does not hold the lock. */
static void
hdManagerRollbackPrepareHost(hdManager *mgr)
{
    g_autoptr(GError) local = NULL;

    hdManagerGiveBackPending(mgr, &local);
    if (local)
        g_warning(_("rollback could not give every device back yet: %1$s"), local->message);
}


/* Does a member make its group non-viable where it is?  Only a host
 * driver does: bridges, pcieport, driverless and VFIO-bound members don't. */
static gboolean
hdManagerMemberOnHostDriver(hdManager *mgr, const hdPCIAddress *addr, char **driver,
                            gboolean *on_host, GError **error)
{
    if (!hdPCIDeviceGetDriver(mgr->host, addr, driver, error))
        return FALSE;
    *on_host = *driver && !hdPCIDeviceIsBridge(mgr->host, addr) &&
        !hdPCIDeviceIsVFIOBound(mgr->host, addr);
    return TRUE;
}


static hdPrepareItem *
hdPrepareFindItem(GArray *items, const hdPCIAddress *addr)
{
    guint i;

    for (i = 0; i < items->len; i++) {
        hdPrepareItem *item = &g_array_index(items, hdPrepareItem, i);

        if (hdPCIAddressEqual(&item->addr, addr))
            return item;
    }
    return NULL;
}


/* Step 1a: one requested device exists, is free for @domain, and (if
 * unmanaged) already sits on vfio-pci. */
static gboolean
hdManagerValidateDevice(hdManager *mgr, const char *domain, const hdHostdevDef *def,
                        hdPrepareItem *item, GError **error)
{
    hdDeviceRecord *rec = hdRecordFind(mgr->records, &def->addr, NULL);
    char addr[HD_PCI_ADDRESS_STRLEN];

    hdAddr(&def->addr, addr);
    item->addr = def->addr;
    item->managed = def->managed;
    if (!hdPCIDeviceExists(mgr->host, &def->addr)) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("PCI device %1$s does not exist on this host"),
                   addr);
        return FALSE;
    }
    if (!hdPCIDeviceGetIOMMUGroup(mgr->host, &def->addr, &item->group, error) ||
        !hdManagerCheckNotBusy(mgr, item->group, error) ||
        !hdPCIDeviceGetDriver(mgr->host, &def->addr, &item->driver, error))
        return FALSE;
    if (rec && rec->state == HD_DEVICE_ACTIVE) {
        if (g_strcmp0(rec->domain, domain) == 0)
            hdErrorSet(error, HD_ERROR_IN_USE,
                       _("device %1$s is already assigned to domain %2$s"), addr, domain);
        else
            hdErrorSet(error, HD_ERROR_IN_USE,
                       _("device %1$s (IOMMU group %2$u) is in use by domain %3$s"),
                       addr, item->group, rec->domain);
        return FALSE;
    }
    if (!def->managed && !hdPCIDeviceIsVFIOBound(mgr->host, &def->addr)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("unmanaged device %1$s is bound to '%2$s', not to vfio-pci: "
                     "detach it first or set managed='yes'"),
                   addr, item->driver ? item->driver : "no driver");
        return FALSE;
    }
    return TRUE;
}


/* Step 1b: the group of @item can be used by @domain.  Members on host
 * drivers are refused, or with HD_PREPARE_WHOLE_GROUP added to @items as
 * siblings to detach. */
static gboolean
hdManagerValidateGroup(hdManager *mgr, const char *domain, unsigned int group,
                       const hdPCIAddress *requested, GArray *items, unsigned int flags,
                       GError **error)
{
    g_autoptr(GArray) members = hdIOMMUGroupGetMembers(mgr->host, group, error);
    g_autoptr(GString) blockers = g_string_new(NULL);
    g_autoptr(GArray) siblings = g_array_new(FALSE, TRUE, sizeof(hdPrepareItem));
    char addr[HD_PCI_ADDRESS_STRLEN];
    char other[HD_PCI_ADDRESS_STRLEN];
    guint i;

    g_array_set_clear_func(siblings, (GDestroyNotify)hdPrepareItemClear);
    if (!members)
        return FALSE;
    hdAddr(requested, addr);
    for (i = 0; i < members->len; i++) {
        const hdPCIAddress *member = &g_array_index(members, hdPCIAddress, i);
        hdDeviceRecord *rec = hdRecordFind(mgr->records, member, NULL);
        hdPrepareItem sibling = { 0 };
        gboolean on_host = FALSE;

        if (rec && rec->state == HD_DEVICE_ACTIVE && g_strcmp0(rec->domain, domain) != 0) {
            hdErrorSet(error, HD_ERROR_IN_USE,
                       _("cannot assign %1$s to domain %2$s: its IOMMU group %3$u is in use by "
                         "domain %4$s (device %5$s)"),
                       addr, domain ? domain : "-", group, rec->domain, hdAddr(member, other));
            return FALSE;
        }
        if (rec || hdPrepareFindItem(items, member))
            continue;
        if (!hdManagerMemberOnHostDriver(mgr, member, &sibling.driver, &on_host, error))
            return FALSE;
        if (!on_host) {
            g_free(sibling.driver);
            continue;
        }
        g_string_append_printf(blockers, "%s%s (%s)", blockers->len ? ", " : "",
                               hdAddr(member, other), sibling.driver);
        sibling.addr = *member;
        sibling.group = group;
        sibling.managed = TRUE;
        sibling.sibling = TRUE;
        g_array_append_val(siblings, sibling);
    }
    if (siblings->len == 0)
        return TRUE;
    if (!(flags & HD_PREPARE_WHOLE_GROUP)) {
        hdErrorSet(error, HD_ERROR_NOT_VIABLE,
                   _("cannot assign %1$s: IOMMU group %2$u would not be viable, because these "
                     "members are bound to host drivers: %3$s; assign them too, or ask for the "
                     "whole group"),
                   addr, group, blockers->str);
        return FALSE;
    }
    for (i = 0; i < siblings->len; i++) {
        hdPrepareItem *sibling = &g_array_index(siblings, hdPrepareItem, i);

        g_array_append_val(items, *sibling);
        sibling->driver = NULL;  /* now owned by @items */
    }
    return TRUE;
}


/* Step 2: the records as they will be once the prepare succeeded, marked
 * in_prepare with their previous form so that a crash can undo them. */
static GPtrArray *
hdManagerPrepareRecords(hdManager *mgr, const char *domain, GArray *items, gboolean stay)
{
    GPtrArray *next = hdDeviceRecordListCopy(mgr->records);
    guint i;

    for (i = 0; i < items->len; i++) {
        hdPrepareItem *item = &g_array_index(items, hdPrepareItem, i);
        hdDeviceRecord *rec = hdRecordFind(next, &item->addr, NULL);
        g_autoptr(GError) local = NULL;

        if (rec) {
            rec->previous = hdDeviceRecordCopy(rec);
        } else {
            rec = hdDeviceRecordNew(&item->addr, item->group);
            rec->original_driver = g_strdup(item->driver);
            if (!hdPCIDeviceGetDriverOverride(mgr->host, &item->addr, &rec->original_override,
                                              &local))
                g_debug("no driver_override for a new record: %s", local->message);
            rec->detached = item->managed &&
                !hdPCIDeviceIsVFIOBound(mgr->host, &item->addr);
            rec->managed = item->managed;
            g_ptr_array_add(next, rec);
        }
        rec->in_prepare = TRUE;
        if (item->sibling || !domain) {
            rec->state = HD_DEVICE_INACTIVE;
            rec->give_back = !stay;
        } else {
            rec->state = HD_DEVICE_ACTIVE;
            g_free(rec->domain);
            rec->domain = g_strdup(domain);
            rec->managed = item->managed;
            rec->give_back = FALSE;
        }
    }
    return next;
}


/* Step 3: bind every managed device that is not on vfio-pci yet. */
static gboolean
hdManagerPrepareBind(hdManager *mgr, GArray *items, GError **error)
{
    guint i;

    for (i = 0; i < items->len; i++) {
        hdPrepareItem *item = &g_array_index(items, hdPrepareItem, i);

        if (!item->managed || hdPCIDeviceIsVFIOBound(mgr->host, &item->addr))
            continue;
        if (!hdPCIDeviceBindDriver(mgr->host, &item->addr, HD_VFIO_DRIVER, error))
            return FALSE;
        hdCrashPoint("prepare-bound");
    }
    return TRUE;
}


static GPtrArray *
hdManagerFinishPrepareRecords(GPtrArray *records)
{
    GPtrArray *next = hdDeviceRecordListCopy(records);
    guint i;

    for (i = 0; i < next->len; i++) {
        hdDeviceRecord *rec = g_ptr_array_index(next, i);

        rec->in_prepare = FALSE;
        g_clear_pointer(&rec->previous, hdDeviceRecordFree);
    }
    return next;
}


/* Steps 2 to 4 of a prepare or a node detach, on validated @items.  On
 * failure *rolled_back says the records were rolled back: the caller then
 * gives the devices back with hdManagerRollbackPrepareHost, unlocked. */
static gboolean
hdManagerPrepareItems(hdManager *mgr, const char *domain, GArray *items, gboolean stay,
                      gboolean *rolled_back, GError **error)
{
    g_autoptr(GPtrArray) next = hdManagerPrepareRecords(mgr, domain, items, stay);
    g_autoptr(GPtrArray) done = NULL;
    guint i;

    if (!hdManagerCommit(mgr, next, error))
        return FALSE;
    hdCrashPoint("prepare-recorded");

    if (!hdManagerPrepareBind(mgr, items, error)) {
        hdManagerRollbackPrepareRecords(mgr);
        *rolled_back = TRUE;
        return FALSE;
    }

    done = hdManagerFinishPrepareRecords(mgr->records);
    if (!hdManagerCommit(mgr, done, error)) {
        hdManagerRollbackPrepareRecords(mgr);
        *rolled_back = TRUE;
        return FALSE;
    }
    hdCrashPoint("prepare-committed");
    for (i = 0; domain && i < items->len; i++) {
        hdPrepareItem *item = &g_array_index(items, hdPrepareItem, i);

        if (!item->sibling)
            hdManagerQueueEvent(mgr, HD_EVENT_DEVICE_ASSIGNED, domain, &item->addr,
                                item->group, NULL);
    }
    return TRUE;
}


static gboolean
hdManagerValidatePrepare(hdManager *mgr, const char *domain, GPtrArray *hostdevs,
                         unsigned int flags, GArray *items, GError **error)
{
    guint i;

    for (i = 0; i < hostdevs->len; i++) {
        const hdHostdevDef *def = g_ptr_array_index(hostdevs, i);
        hdPrepareItem item = { 0 };
        char addr[HD_PCI_ADDRESS_STRLEN];

        if (hdPrepareFindItem(items, &def->addr)) {
            hdErrorSet(error, HD_ERROR_INVALID_ARG, _("device %1$s is requested twice"),
                       hdAddr(&def->addr, addr));
            return FALSE;
        }
        if (!hdManagerValidateDevice(mgr, domain, def, &item, error)) {
            hdPrepareItemClear(&item);
            return FALSE;
        }
        g_array_append_val(items, item);
    }
    for (i = 0; i < hostdevs->len; i++) {
        hdPrepareItem *item = &g_array_index(items, hdPrepareItem, i);
        hdPCIAddress addr = item->addr;

        if (!hdManagerValidateGroup(mgr, domain, item->group, &addr, items, flags, error))
            return FALSE;
    }
    return TRUE;
}


static gboolean
hdManagerCheckDomainName(const char *domain, GError **error)
{
    if (!domain || !*domain || strchr(domain, '/') || !g_utf8_validate(domain, -1, NULL)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("invalid domain name '%1$s'"),
                   domain ? domain : "");
        return FALSE;
    }
    return TRUE;
}


gboolean
hdManagerPrepare(hdManager *mgr, const char *domain, GPtrArray *hostdevs, unsigned int flags,
                 GError **error)
{
    g_autoptr(GArray) items = g_array_new(FALSE, TRUE, sizeof(hdPrepareItem));
    gboolean rolled_back = FALSE;
    gboolean ret = FALSE;

    g_array_set_clear_func(items, (GDestroyNotify)hdPrepareItemClear);
    if (!hdManagerCheckDomainName(domain, error))
        return FALSE;
    if (hostdevs->len == 0)
        return TRUE;

    g_mutex_lock(&mgr->lock);
    if (hdManagerValidatePrepare(mgr, domain, hostdevs, flags, items, error))
        ret = hdManagerPrepareItems(mgr, domain, items, FALSE, &rolled_back, error);
    g_mutex_unlock(&mgr->lock);
    if (rolled_back)
        hdManagerRollbackPrepareHost(mgr);
    hdManagerFlushEvents(mgr);
    return ret;
}


/* Records after @addrs left @domain: managed devices wait on the inactive
 * list, unmanaged ones are no longer tracked (they stay on vfio-pci). */
static GPtrArray *
hdManagerReleaseRecords(hdManager *mgr, const char *domain, GArray *addrs, GArray *groups,
                        GError **error)
{
    g_autoptr(GPtrArray) next = hdDeviceRecordListCopy(mgr->records);
    guint i;

    for (i = 0; i < addrs->len; i++) {
        const hdPCIAddress *addr = &g_array_index(addrs, hdPCIAddress, i);
        guint index;
        hdDeviceRecord *rec = hdRecordFind(next, addr, &index);
        char buf[HD_PCI_ADDRESS_STRLEN];

        if (!rec || rec->state != HD_DEVICE_ACTIVE || g_strcmp0(rec->domain, domain) != 0) {
            hdErrorSet(error, HD_ERROR_NOT_FOUND,
                       _("device %1$s is not assigned to domain %2$s"),
                       hdAddr(addr, buf), domain);
            return NULL;
        }
        g_array_append_val(groups, rec->group);
        if (!rec->managed && !rec->detached) {
            g_ptr_array_remove_index(next, index);
            continue;
        }
        rec->state = HD_DEVICE_INACTIVE;
        g_clear_pointer(&rec->domain, g_free);
        /* An unmanaged device we detached (nodedev-detach) stays detached. */
        rec->give_back = rec->managed;
    }
    return g_steal_pointer(&next);
}


/* @addrs leave @domain in the records; *groups gets their groups (each
 * once), to be given back once the lock is released. */
static gboolean
hdManagerReleaseLocked(hdManager *mgr, const char *domain, GArray *addrs, GArray *groups,
                       GError **error)
{
    g_autoptr(GArray) per_addr = g_array_new(FALSE, FALSE, sizeof(unsigned int));
    g_autoptr(GPtrArray) next = hdManagerReleaseRecords(mgr, domain, addrs, per_addr, error);
    guint i;
    guint j;

    if (!next || !hdManagerCommit(mgr, next, error))
        return FALSE;
    hdCrashPoint("release-recorded");
    for (i = 0; i < addrs->len; i++) {
        unsigned int group = g_array_index(per_addr, unsigned int, i);
        gboolean seen = FALSE;

        hdManagerQueueEvent(mgr, HD_EVENT_DEVICE_RELEASED, domain,
                            &g_array_index(addrs, hdPCIAddress, i), group, NULL);
        for (j = 0; j < groups->len; j++)
            seen |= g_array_index(groups, unsigned int, j) == group;
        if (!seen)
            g_array_append_val(groups, group);
    }
    return TRUE;
}


/* The devices have left the domain; a group that cannot be given back yet
 * stays pending and is retried when something changes. */
static void
hdManagerGiveBackReleased(hdManager *mgr, GArray *groups)
{
    g_autoptr(GError) local = NULL;

    hdManagerGiveBackGroups(mgr, groups, &local);
    if (local)
        g_warning(_("a released IOMMU group stays on the inactive list: %1$s"),
                  local->message);
}


gboolean
hdManagerRelease(hdManager *mgr, const char *domain, GArray *addrs, GError **error)
{
    g_autoptr(GArray) groups = g_array_new(FALSE, FALSE, sizeof(unsigned int));
    gboolean ret;

    if (!hdManagerCheckDomainName(domain, error))
        return FALSE;
    g_mutex_lock(&mgr->lock);
    ret = hdManagerReleaseLocked(mgr, domain, addrs, groups, error);
    g_mutex_unlock(&mgr->lock);
    hdManagerGiveBackReleased(mgr, groups);
    hdManagerFlushEvents(mgr);
    return ret;
}


static GArray *
hdManagerDomainAddrsLocked(hdManager *mgr, const char *domain)
{
    GArray *addrs = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    guint i;

    for (i = 0; i < mgr->records->len; i++) {
        hdDeviceRecord *rec = g_ptr_array_index(mgr->records, i);

        if (rec->state == HD_DEVICE_ACTIVE && g_strcmp0(rec->domain, domain) == 0)
            g_array_append_val(addrs, rec->addr);
    }
    return addrs;
}


gboolean
hdManagerLeaveDomain(hdManager *mgr, const char *domain, GArray **groups, GError **error)
{
    g_autoptr(GArray) left = g_array_new(FALSE, FALSE, sizeof(unsigned int));
    g_autoptr(GArray) addrs = NULL;
    gboolean ret;

    if (!hdManagerCheckDomainName(domain, error))
        return FALSE;
    g_mutex_lock(&mgr->lock);
    addrs = hdManagerDomainAddrsLocked(mgr, domain);
    ret = hdManagerReleaseLocked(mgr, domain, addrs, left, error);
    g_mutex_unlock(&mgr->lock);
    hdManagerFlushEvents(mgr);
    if (ret && groups)
        *groups = g_steal_pointer(&left);
    return ret;
}


gboolean
hdManagerReleaseDomain(hdManager *mgr, const char *domain, GError **error)
{
    g_autoptr(GArray) groups = NULL;

    if (!hdManagerLeaveDomain(mgr, domain, &groups, error))
        return FALSE;
    hdManagerGiveBackReleased(mgr, groups);
    hdManagerFlushEvents(mgr);
    return TRUE;
}


/* A node operation on @addr needs the device and its group unused. */
static gboolean
hdManagerCheckIdle(hdManager *mgr, const hdPCIAddress *addr, unsigned int *group,
                   GError **error)
{
    hdDeviceRecord *active;
    gboolean free_ = FALSE;
    char buf[HD_PCI_ADDRESS_STRLEN];
    char other[HD_PCI_ADDRESS_STRLEN];

    hdAddr(addr, buf);
    if (!hdPCIDeviceExists(mgr->host, addr)) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("PCI device %1$s does not exist on this host"),
                   buf);
        return FALSE;
    }
    if (!hdPCIDeviceGetIOMMUGroup(mgr->host, addr, group, error) ||
        !hdManagerCheckNotBusy(mgr, *group, error))
        return FALSE;
    if ((active = hdManagerGroupActiveRecord(mgr, *group))) {
        hdErrorSet(error, HD_ERROR_IN_USE,
                   _("device %1$s is busy: its IOMMU group %2$u is in use by domain %3$s "
                     "(device %4$s)"),
                   buf, *group, active->domain, hdAddr(&active->addr, other));
        return FALSE;
    }
    if (!hdManagerGroupIsFree(mgr, *group, &free_, error))
        return FALSE;
    if (!free_) {
        hdErrorSet(error, HD_ERROR_IN_USE,
                   _("device %1$s is busy: a process still holds its IOMMU group %2$u"),
                   buf, *group);
        return FALSE;
    }
    return TRUE;
}


gboolean
hdManagerNodeDetach(hdManager *mgr, const hdPCIAddress *addr, GArray **siblings,
                    GError **error)
{
    g_autoptr(GArray) items = g_array_new(FALSE, TRUE, sizeof(hdPrepareItem));
    g_autoptr(GArray) members = NULL;
    g_autoptr(GArray) follow = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    hdPrepareItem item = { .addr = *addr, .managed = TRUE };
    hdDeviceRecord *rec;
    gboolean rolled_back = FALSE;
    gboolean ret = FALSE;
    guint i;

    g_array_set_clear_func(items, (GDestroyNotify)hdPrepareItemClear);
    g_mutex_lock(&mgr->lock);
    if (!hdManagerCheckIdle(mgr, addr, &item.group, error) ||
        !hdPCIDeviceGetDriver(mgr->host, addr, &item.driver, error))
        goto cleanup;
    g_array_append_val(items, item);

    if ((rec = hdRecordFind(mgr->records, addr, NULL))) {
        /* Already detached: it now stays until reattached. */
        g_autoptr(GPtrArray) next = hdDeviceRecordListCopy(mgr->records);

        hdRecordFind(next, addr, NULL)->give_back = FALSE;
        if (!hdManagerCommit(mgr, next, error))
            goto cleanup;
    } else if (!hdManagerPrepareItems(mgr, NULL, items, TRUE, &rolled_back, error)) {
        goto cleanup;
    }

    if (!(members = hdIOMMUGroupGetMembers(mgr->host, item.group, error)))
        goto cleanup;
    for (i = 0; i < members->len; i++) {
        const hdPCIAddress *member = &g_array_index(members, hdPCIAddress, i);
        g_autofree char *driver = NULL;
        gboolean on_host = FALSE;

        if (!hdManagerMemberOnHostDriver(mgr, member, &driver, &on_host, error))
            goto cleanup;
        if (on_host)
            g_array_append_val(follow, *member);
    }
    if (siblings)
        *siblings = g_steal_pointer(&follow);
    ret = TRUE;

 cleanup:
    g_mutex_unlock(&mgr->lock);
    if (rolled_back)
        hdManagerRollbackPrepareHost(mgr);
    return ret;
}


gboolean
hdManagerNodeReattach(hdManager *mgr, const hdPCIAddress *addr, GError **error)
{
    hdDeviceRecord *rec;
    unsigned int group;
    gboolean ret = FALSE;

    g_mutex_lock(&mgr->lock);
    if (!hdManagerCheckIdle(mgr, addr, &group, error))
        goto cleanup;
    if (!(rec = hdRecordFind(mgr->records, addr, NULL))) {
        /* Not ours: a device someone bound to vfio-pci by hand goes to the
         * driver the kernel picks; any other device is already home. */
        if (!hdPCIDeviceIsVFIOBound(mgr->host, addr)) {
            ret = TRUE;
            goto cleanup;
        }
        ret = hdPCIDeviceReprobe(mgr->host, addr, NULL, error);
        goto cleanup;
    }
    if (hdManagerUnbindForReturn(mgr, rec, error) && hdManagerProbeForReturn(mgr, rec, error))
        ret = hdManagerForgetOneLocked(mgr, addr, error);

 cleanup:
    g_mutex_unlock(&mgr->lock);
    return ret;
}


gboolean
hdManagerNodeReset(hdManager *mgr, const hdPCIAddress *addr, GError **error)
{
    unsigned int group;
    gboolean ret = FALSE;

    g_mutex_lock(&mgr->lock);
    if (hdManagerCheckIdle(mgr, addr, &group, error))
        ret = hdPCIDeviceReset(mgr->host, addr, error);
    g_mutex_unlock(&mgr->lock);
    return ret;
}


static hdDeviceInfo *
hdManagerInfoFromRecord(hdManager *mgr, const hdDeviceRecord *rec)
{
    hdDeviceInfo *info = g_new0(hdDeviceInfo, 1);
    g_autoptr(GError) local = NULL;

    info->addr = rec->addr;
    info->group = rec->group;
    info->state = rec->state;
    info->domain = g_strdup(rec->domain);
    info->managed = rec->managed;
    info->give_back = rec->give_back;
    info->original_driver = g_strdup(rec->original_driver);
    if (!hdPCIDeviceGetDriver(mgr->host, &rec->addr, &info->driver, &local))
        g_debug("%s", local->message);
    return info;
}


hdDeviceInfo *
hdManagerGetDevice(hdManager *mgr, const hdPCIAddress *addr, GError **error)
{
    g_autoptr(hdDeviceRecord) untracked = NULL;
    hdDeviceRecord *rec;
    hdDeviceInfo *info = NULL;
    char buf[HD_PCI_ADDRESS_STRLEN];

    g_mutex_lock(&mgr->lock);
    if (!hdPCIDeviceExists(mgr->host, addr)) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("PCI device %1$s does not exist on this host"),
                   hdAddr(addr, buf));
        goto cleanup;
    }
    if (!(rec = hdRecordFind(mgr->records, addr, NULL))) {
        unsigned int group = 0;

        if (!hdPCIDeviceGetIOMMUGroup(mgr->host, addr, &group, error))
            goto cleanup;
        rec = untracked = hdDeviceRecordNew(addr, group);
        untracked->state = HD_DEVICE_HOST;
    }
    info = hdManagerInfoFromRecord(mgr, rec);
    if (untracked)
        info->original_driver = g_strdup(info->driver);

 cleanup:
    g_mutex_unlock(&mgr->lock);
    return info;
}


GPtrArray *
hdManagerListTracked(hdManager *mgr)
{
    GPtrArray *list = g_ptr_array_new_with_free_func((GDestroyNotify)hdDeviceInfoFree);
    guint i;

    g_mutex_lock(&mgr->lock);
    for (i = 0; i < mgr->records->len; i++)
        g_ptr_array_add(list, hdManagerInfoFromRecord(mgr, g_ptr_array_index(mgr->records, i)));
    g_mutex_unlock(&mgr->lock);
    return list;
}


/* A record that says "active" for a device no longer on vfio-pci was
 * changed behind our back; it is kept (its original driver is still
 * needed) and reported. */
static void
hdManagerCheckActiveRecords(hdManager *mgr)
{
    guint i;

    for (i = 0; i < mgr->records->len; i++) {
        hdDeviceRecord *rec = g_ptr_array_index(mgr->records, i);
        char addr[HD_PCI_ADDRESS_STRLEN];

        if (rec->state != HD_DEVICE_ACTIVE || !rec->managed)
            continue;
        if (!hdPCIDeviceExists(mgr->host, &rec->addr))
            g_warning(_("device %1$s of domain %2$s has disappeared from the host"),
                      hdAddr(&rec->addr, addr), rec->domain);
        else if (!hdPCIDeviceIsVFIOBound(mgr->host, &rec->addr))
            g_warning(_("device %1$s of domain %2$s is no longer bound to vfio-pci"),
                      hdAddr(&rec->addr, addr), rec->domain);
    }
}


/* Bring the records in line with the host after a restart: undo what a
 * crash interrupted; the caller then finishes pending give-backs. */
static void
hdManagerReconcileLocked(hdManager *mgr)
{
    if (hdManagerHasPrepareRecords(mgr))
        hdManagerRollbackPrepareRecords(mgr);
    hdManagerCheckActiveRecords(mgr);
}


hdManager *
hdManagerOpen(hdHost *host, const char *state_dir, GError **error)
{
    g_autoptr(hdManager) mgr = g_new0(hdManager, 1);
    g_autoptr(GError) local = NULL;

    mgr->refs = 1;
    g_mutex_init(&mgr->lock);
    mgr->busy = g_hash_table_new(g_direct_hash, g_direct_equal);
    g_rec_mutex_init(&mgr->dispatch_lock);
    mgr->events = g_array_new(FALSE, TRUE, sizeof(hdQueuedEvent));
    g_array_set_clear_func(mgr->events, (GDestroyNotify)hdQueuedEventClear);
    mgr->handlers = g_array_new(FALSE, FALSE, sizeof(hdEventHandler));
    mgr->lock_fd = -1;
    mgr->host = hdHostRef(host);
    mgr->state_dir = g_strdup(state_dir ? state_dir : HD_DEFAULT_STATE_DIR);
    mgr->state_path = g_build_filename(mgr->state_dir, "state.json", NULL);
    mgr->group_free = hdGroupFreeByProc;

    if ((mgr->lock_fd = hdStateLock(mgr->state_dir, error)) < 0)
        return NULL;
    if (!(mgr->records = hdStateLoad(mgr->state_path, error)))
        return NULL;

    g_mutex_lock(&mgr->lock);
    hdManagerReconcileLocked(mgr);
    g_mutex_unlock(&mgr->lock);
    hdManagerGiveBackPending(mgr, &local);
    if (local)
        g_warning(_("some IOMMU groups stay on the inactive list: %1$s"), local->message);
    return g_steal_pointer(&mgr);
}


hdManager *
hdManagerRef(hdManager *mgr)
{
    g_atomic_int_inc(&mgr->refs);
    return mgr;
}


void
hdManagerFree(hdManager *mgr)
{
    if (!mgr || !g_atomic_int_dec_and_test(&mgr->refs))
        return;
    if (mgr->lock_fd >= 0)
        close(mgr->lock_fd);
    g_clear_pointer(&mgr->records, g_ptr_array_unref);
    g_clear_pointer(&mgr->events, g_array_unref);
    g_clear_pointer(&mgr->busy, g_hash_table_unref);
    g_clear_pointer(&mgr->handlers, g_array_unref);
    g_clear_pointer(&mgr->host, hdHostUnref);
    g_free(mgr->state_dir);
    g_free(mgr->state_path);
    g_mutex_clear(&mgr->lock);
    g_rec_mutex_clear(&mgr->dispatch_lock);
    g_free(mgr);
}


hdHost *
hdManagerGetHost(hdManager *mgr)
{
    return mgr->host;
}


const char *
hdManagerGetStateDir(hdManager *mgr)
{
    return mgr->state_dir;
}


void
hdManagerSetGroupFreeFunc(hdManager *mgr, hdGroupFreeFunc func, gpointer opaque)
{
    g_mutex_lock(&mgr->lock);
    mgr->group_free = func ? func : hdGroupFreeByProc;
    mgr->group_free_opaque = func ? opaque : NULL;
    g_mutex_unlock(&mgr->lock);
}
