/*
 * simmodel.c: the kernel behind the simulated host
 *
 * One mutex guards the whole model; one condition variable is broadcast on
 * every change anybody may wait for (a release done, a device unlocked,
 * unhang, shutdown).  Costs are waits on that condition with a deadline, so
 * they drop the lock and end early on shutdown.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "hdfile.h"
#include "simmodel-priv.h"

void
simDeviceFree(simDevice *dev)
{
    g_free(dev->address);
    g_free(dev->native_driver);
    g_free(dev->reset_method);
    g_free(dev->sysfs_path);
    g_free(dev->driver);
    g_free(dev->driver_override);
    g_free(dev->probe_fault_driver);
    g_free(dev->netdev);
    g_ptr_array_unref(dev->virtfns);
    g_free(dev);
}


static void
simGroupFree(simGroup *group)
{
    g_ptr_array_unref(group->members);
    g_free(group);
}


simModel *
simModelNewEmpty(void)
{
    simModel *model = g_new0(simModel, 1);

    g_mutex_init(&model->lock);
    g_cond_init(&model->cond);
    model->devices = g_ptr_array_new_with_free_func((GDestroyNotify) simDeviceFree);
    model->groups = g_ptr_array_new_with_free_func((GDestroyNotify) simGroupFree);
    model->drivers = g_ptr_array_new_with_free_func(g_free);
    model->by_address = g_hash_table_new(g_str_hash, g_str_equal);
    model->releasing_tasks = g_hash_table_new(g_direct_hash, g_direct_equal);
    model->events = g_string_new(NULL);
    return model;
}


simModel *
simModelNewFromData(const char *data, gssize length, GError **error)
{
    g_autoptr(simModel) model = simModelNewEmpty();

    if (!simTopologyLoad(model, data, length, error))
        return NULL;
    return g_steal_pointer(&model);
}


simModel *
simModelNewFromFile(const char *path, GError **error)
{
    g_autofree char *data = NULL;
    gsize length = 0;

    /* A file the user names: a FIFO or a device must not hang the start. */
    if (!hdFileReadRegular(path, SIM_TOPOLOGY_MAX, &data, &length, error))
        return NULL;
    return simModelNewFromData(data, length, error);
}


void
simModelFree(simModel *model)
{
    if (!model)
        return;
    g_ptr_array_unref(model->groups);
    g_ptr_array_unref(model->devices);
    g_ptr_array_unref(model->drivers);
    g_hash_table_unref(model->by_address);
    g_hash_table_unref(model->releasing_tasks);
    g_string_free(model->events, TRUE);
    g_cond_clear(&model->cond);
    g_mutex_clear(&model->lock);
    g_free(model);
}


void
simModelLock(simModel *model)
{
    g_mutex_lock(&model->lock);
}


void
simModelUnlock(simModel *model)
{
    g_mutex_unlock(&model->lock);
}


GPtrArray *
simModelDevices(simModel *model)
{
    return model->devices;
}


GPtrArray *
simModelGroups(simModel *model)
{
    return model->groups;
}


GPtrArray *
simModelDrivers(simModel *model)
{
    return model->drivers;
}


guint64
simModelTreeGeneration(simModel *model)
{
    return model->tree_generation;
}


simDevice *
simModelFindDevice(simModel *model, const char *address)
{
    return g_hash_table_lookup(model->by_address, address);
}


simGroup *
simModelFindGroup(simModel *model, int number)
{
    guint i;

    for (i = 0; i < model->groups->len; i++) {
        simGroup *group = g_ptr_array_index(model->groups, i);

        if (group->number == number)
            return group;
    }
    return NULL;
}


simDevice *
simModelFindCdev(simModel *model, int cdev)
{
    guint i;

    for (i = 0; i < model->devices->len; i++) {
        simDevice *dev = g_ptr_array_index(model->devices, i);

        if (cdev >= 0 && dev->vfio_cdev == cdev)
            return dev;
    }
    return NULL;
}


/* Topology loading: the loader adds devices sorted by address and then
 * calls simModelFinishTopology(). */
void
simModelAddDevice(simModel *model, simDevice *dev)
{
    g_ptr_array_add(model->devices, dev);
    g_hash_table_insert(model->by_address, dev->address, dev);
}


static gboolean
simDriverIsVfio(const char *driver)
{
    return g_strcmp0(driver, SIM_DRIVER_VFIO) == 0;
}


/* Drivers that set driver_managed_dma: they may bind into a group a user
 * owns and do not make it non-viable. */
static gboolean
simDriverManagesDma(const char *driver)
{
    return simDriverIsVfio(driver) ||
        g_strcmp0(driver, "pci-stub") == 0 ||
        g_strcmp0(driver, "pcieport") == 0;
}


static gboolean
simDeviceIsBridge(const simDevice *dev)
{
    return (dev->pci_class >> 8) == 0x0604;
}


gboolean
simGroupHasDevNode(const simGroup *group)
{
    guint i;

    for (i = 0; i < group->members->len; i++) {
        const simDevice *dev = g_ptr_array_index(group->members, i);

        if (simDriverIsVfio(dev->driver))
            return TRUE;
    }
    return FALSE;
}


/* Whether a user owns the group's DMA, which refuses host drivers: a group
 * fd in use, an open cdev, or a release still running.  hostdev's read-only
 * probe claims nothing, as an open without VFIO ioctls claims nothing in the
 * kernel: its close reaches us with FUSE's asynchronous release, possibly
 * after the host driver the prober binds next. */
static gboolean
simGroupClaimed(const simGroup *group)
{
    guint i;

    if ((group->open && !group->probe) || group->releasing > 0)
        return TRUE;
    for (i = 0; i < group->members->len; i++) {
        const simDevice *dev = g_ptr_array_index(group->members, i);

        if (dev->cdev_open)
            return TRUE;
    }
    return FALSE;
}


/* Whether the group's node or a cdev is open or a release runs: a new open
 * fails with EBUSY. */
gboolean
simGroupOwned(const simGroup *group)
{
    return group->open || simGroupClaimed(group);
}


gboolean
simGroupViable(const simGroup *group)
{
    guint i;

    for (i = 0; i < group->members->len; i++) {
        const simDevice *dev = g_ptr_array_index(group->members, i);

        if (dev->probing_host)
            return FALSE;
        if (dev->driver && !simDriverManagesDma(dev->driver) &&
            !simDeviceIsBridge(dev))
            return FALSE;
    }
    return TRUE;
}


static int
simModelFreeCdev(simModel *model)
{
    int cdev = 0;

    while (simModelFindCdev(model, cdev))
        cdev++;
    return cdev;
}


static simGroup *
simModelEnsureGroup(simModel *model, int number)
{
    simGroup *group = simModelFindGroup(model, number);
    guint i;

    if (group)
        return group;

    group = g_new0(simGroup, 1);
    group->number = number;
    group->members = g_ptr_array_new();
    for (i = 0; i < model->groups->len; i++) {
        simGroup *other = g_ptr_array_index(model->groups, i);

        if (other->number > number)
            break;
    }
    g_ptr_array_insert(model->groups, i, group);
    return group;
}


static gint
simCompareStrings(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


void
simModelFinishTopology(simModel *model)
{
    g_autoptr(GHashTable) drivers = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter iter;
    gpointer name;
    guint i;

    g_hash_table_add(drivers, (char *) SIM_DRIVER_VFIO);
    for (i = 0; i < model->devices->len; i++) {
        simDevice *dev = g_ptr_array_index(model->devices, i);

        dev->group = simModelEnsureGroup(model, dev->group_number);
        g_ptr_array_add(dev->group->members, dev);
        if (dev->native_driver)
            g_hash_table_add(drivers, dev->native_driver);
        if (simDriverIsVfio(dev->driver))
            dev->vfio_cdev = simModelFreeCdev(model);
    }

    g_hash_table_iter_init(&iter, drivers);
    while (g_hash_table_iter_next(&iter, &name, NULL))
        g_ptr_array_add(model->drivers, g_strdup(name));
    g_ptr_array_sort(model->drivers, simCompareStrings);
    simNetdevNameAll(model);
}


/* ---- The event log ---------------------------------------------------- */

static void
simJsonAppendString(GString *out, const char *str)
{
    const char *p;

    if (!str) {
        g_string_append(out, "null");
        return;
    }
    g_string_append_c(out, '"');
    for (p = str; *p; p++) {
        unsigned char c = *p;

        if (c == '"' || c == '\\')
            g_string_append_printf(out, "\\%c", c);
        else if (c < 0x20)
            g_string_append_printf(out, "\\u%04x", c);
        else
            g_string_append_c(out, c);
    }
    g_string_append_c(out, '"');
}


void
simModelLog(simModel *model, const char *event, const simDevice *dev,
            const char *driver, int group, pid_t pid, const char *error)
{
    char t_ms[G_ASCII_DTOSTR_BUF_SIZE];

    if (group < 0 && dev)
        group = dev->group_number;
    g_ascii_formatd(t_ms, sizeof(t_ms), "%.3f", g_get_monotonic_time() / 1000.0);

    g_string_append_printf(model->events, "{\"seq\": %" G_GUINT64_FORMAT
                           ", \"t_ms\": %s, \"event\": ", ++model->seq, t_ms);
    simJsonAppendString(model->events, event);
    g_string_append(model->events, ", \"device\": ");
    simJsonAppendString(model->events, dev ? dev->address : NULL);
    g_string_append(model->events, ", \"driver\": ");
    simJsonAppendString(model->events, driver);
    if (group >= 0)
        g_string_append_printf(model->events, ", \"group\": %d", group);
    else
        g_string_append(model->events, ", \"group\": null");
    if (pid > 0)
        g_string_append_printf(model->events, ", \"pid\": %d", (int) pid);
    else
        g_string_append(model->events, ", \"pid\": null");
    g_string_append(model->events, ", \"error\": ");
    simJsonAppendString(model->events, error);
    g_string_append(model->events, "}\n");
}


char *
simModelEventsText(simModel *model)
{
    char *text;

    g_mutex_lock(&model->lock);
    text = g_strdup(model->events->str);
    g_mutex_unlock(&model->lock);
    return text;
}


/* ---- Waiting ---------------------------------------------------------- */

/* Wait for the next broadcast; FALSE once the model shuts down. */
static gboolean
simModelWait(simModel *model)
{
    if (model->shutdown)
        return FALSE;
    g_cond_wait(&model->cond, &model->lock);
    return !model->shutdown;
}


/* A cost: @ms milliseconds with the lock dropped.  FALSE on shutdown. */
static gboolean
simModelSleep(simModel *model, guint ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64) ms * G_TIME_SPAN_MILLISECOND;

    while (!model->shutdown) {
        if (!g_cond_wait_until(&model->cond, &model->lock, deadline))
            break;
    }
    return !model->shutdown;
}


/* A hang: until the next unhang.  FALSE on shutdown. */
static gboolean
simModelHang(simModel *model)
{
    guint generation = model->unhang_generation;

    while (generation == model->unhang_generation) {
        if (!simModelWait(model))
            return FALSE;
    }
    return TRUE;
}


/* The kernel's device_lock: bind, unbind, probe and reset of one device
 * exclude each other, and a blocked unbind keeps it. */
static int
simDeviceLock(simModel *model, simDevice *dev)
{
    while (dev->locked) {
        if (!simModelWait(model))
            return -ENODEV;
    }
    dev->locked = TRUE;
    return 0;
}


static void
simDeviceUnlock(simModel *model, simDevice *dev)
{
    dev->locked = FALSE;
    g_cond_broadcast(&model->cond);
}


/* The global release/reset lock of serialized mode.  *@taken tells
 * simSerialLeave() whether it was taken (the mode may change meanwhile). */
static int
simSerialEnter(simModel *model, gboolean *taken)
{
    *taken = FALSE;
    while (model->serialized && model->serial_busy) {
        if (!simModelWait(model))
            return -ENODEV;
    }
    if (model->serialized) {
        model->serial_busy = TRUE;
        *taken = TRUE;
    }
    return 0;
}


static void
simSerialLeave(simModel *model, gboolean taken)
{
    if (!taken)
        return;
    model->serial_busy = FALSE;
    g_cond_broadcast(&model->cond);
}


/* ---- Binding ---------------------------------------------------------- */

/* What the writer wrote, without the one trailing newline sysfs ignores. */
static char *
simParseWord(const char *buf, gsize len)
{
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    return g_strndup(buf, len);
}


gboolean
simModelKnowsDriver(simModel *model, const char *driver)
{
    guint i;

    for (i = 0; i < model->drivers->len; i++) {
        if (strcmp(g_ptr_array_index(model->drivers, i), driver) == 0)
            return TRUE;
    }
    return FALSE;
}


/* The driver that matches @dev: its override, else its native driver. */
static const char *
simDeviceMatchingDriver(const simDevice *dev)
{
    return dev->driver_override ? dev->driver_override : dev->native_driver;
}


static void
simModelAttach(simModel *model, simDevice *dev, const char *driver, pid_t pid)
{
    gboolean had_node = simGroupHasDevNode(dev->group);

    dev->driver = g_strdup(driver);
    if (simDriverIsVfio(driver)) {
        dev->vfio_cdev = simModelFreeCdev(model);
        /* An open group fd covers every member on vfio-pci. */
        if (dev->group->open)
            dev->in_use = TRUE;
    }
    model->tree_generation++;
    simModelLog(model, "bind", dev, driver, -1, pid, NULL);
    if (!had_node && simGroupHasDevNode(dev->group))
        simModelLog(model, "dev-node-created", dev, driver, -1, pid, NULL);
    simNetdevSync(model, dev, pid);
}


static void
simModelDetach(simModel *model, simDevice *dev, pid_t pid)
{
    g_autofree char *driver = g_steal_pointer(&dev->driver);

    dev->vfio_cdev = -1;
    dev->in_use = FALSE;
    model->tree_generation++;
    simModelLog(model, "unbind", dev, driver, -1, pid, NULL);
    if (simDriverIsVfio(driver) && !simGroupHasDevNode(dev->group))
        simModelLog(model, "dev-node-removed", dev, driver, -1, pid, NULL);
    simNetdevSync(model, dev, pid);
}


/* The driver's own probe: faults and the probe cost.  0, -EIO, -ENODEV. */
static int
simModelRunProbe(simModel *model, simDevice *dev, const char *driver)
{
    simFault fault = dev->probe_fault;

    if (dev->probe_fault_driver && strcmp(dev->probe_fault_driver, driver) != 0)
        fault = SIM_FAULT_OK;
    if (fault == SIM_FAULT_HANG && !simModelHang(model))
        return -ENODEV;
    if (!simDriverIsVfio(driver) && !simModelSleep(model, dev->probe_ms))
        return -ENODEV;
    if (fault == SIM_FAULT_FAIL)
        return -EIO;
    return 0;
}


/* Probe @driver for the locked, driverless @dev.  Returns 0, -EBUSY when
 * DMA ownership refuses a host driver, -EIO when the driver's probe fails,
 * -ENODEV on shutdown. */
static int
simModelProbeDriver(simModel *model, simDevice *dev, const char *driver, pid_t pid)
{
    gboolean host = !simDriverManagesDma(driver);
    int ret;

    if (host && simGroupClaimed(dev->group)) {
        simModelLog(model, "probe-failed", dev, driver, -1, pid, "EBUSY");
        model->violations++;
        simModelLog(model, "violation", dev, driver, -1, pid,
                    "host driver probed in a group owned by a user");
        return -EBUSY;
    }

    /* Like the DMA ownership a real probe claims first: the group cannot
     * be opened while a host driver is being probed. */
    dev->probing_host = host;
    ret = simModelRunProbe(model, dev, driver);
    dev->probing_host = FALSE;
    g_cond_broadcast(&model->cond);

    if (ret == -EIO)
        simModelLog(model, "probe-failed", dev, driver, -1, pid, "EIO");
    if (ret < 0)
        return ret;
    simModelAttach(model, dev, driver, pid);
    return 0;
}


int
simModelSetOverride(simModel *model, simDevice *dev,
                    const char *buf, gsize len, pid_t pid)
{
    g_autofree char *value = simParseWord(buf, len);

    if (strlen(value) > SIM_OVERRIDE_MAX)
        return -EINVAL;

    g_mutex_lock(&model->lock);
    g_clear_pointer(&dev->driver_override, g_free);
    if (*value)
        dev->driver_override = g_steal_pointer(&value);
    simModelLog(model, "override", dev, dev->driver_override, -1, pid, NULL);
    g_mutex_unlock(&model->lock);
    return 0;
}


int
simModelBind(simModel *model, const char *driver,
             const char *buf, gsize len, pid_t pid)
{
    g_autofree char *address = simParseWord(buf, len);
    simDevice *dev;
    int ret;

    g_mutex_lock(&model->lock);
    if (!(dev = simModelFindDevice(model, address))) {
        ret = -ENODEV;
    } else if ((ret = simDeviceLock(model, dev)) == 0) {
        if (g_strcmp0(simDeviceMatchingDriver(dev), driver) != 0)
            ret = -ENODEV;
        else if (dev->driver)
            ret = -EBUSY;
        else
            ret = simModelProbeDriver(model, dev, driver, pid);
        simDeviceUnlock(model, dev);
    }
    g_mutex_unlock(&model->lock);
    return ret;
}


int
simModelProbe(simModel *model, const char *buf, gsize len, pid_t pid)
{
    g_autofree char *address = simParseWord(buf, len);
    const char *driver;
    simDevice *dev;
    int ret;

    g_mutex_lock(&model->lock);
    if (!(dev = simModelFindDevice(model, address))) {
        ret = -ENODEV;
    } else if ((ret = simDeviceLock(model, dev)) == 0) {
        driver = simDeviceMatchingDriver(dev);
        /* Already bound, or nothing matches ("none", an unknown override, a
         * bridge): the write succeeds and nothing happens. */
        if (!dev->driver && driver && simModelKnowsDriver(model, driver)) {
            ret = simModelProbeDriver(model, dev, driver, pid);
            /* bus_rescan_devices_helper() turns any error into EINVAL, but
             * the driver core ignores errors of the driver's own probe. */
            if (ret == -EIO)
                ret = 0;
            else if (ret == -EBUSY)
                ret = -EINVAL;
        }
        simDeviceUnlock(model, dev);
    }
    g_mutex_unlock(&model->lock);
    return ret;
}


int
simModelUnbind(simModel *model, const char *driver,
               const char *buf, gsize len, pid_t pid)
{
    g_autofree char *address = simParseWord(buf, len);
    simDevice *dev;
    int ret;

    g_mutex_lock(&model->lock);
    if (!(dev = simModelFindDevice(model, address))) {
        ret = -ENODEV;
    } else if ((ret = simDeviceLock(model, dev)) == 0) {
        if (g_strcmp0(dev->driver, driver) != 0) {
            ret = -ENODEV;
        } else {
            /* vfio_unregister_group_dev() waits for the last user. */
            if (simDriverIsVfio(driver) && (dev->in_use || dev->releasing)) {
                simModelLog(model, "unbind-blocked", dev, driver, -1, pid, NULL);
                dev->unbinding = TRUE;
                model->tree_generation++;
            }
            while (ret == 0 && (dev->in_use || dev->releasing)) {
                if (!simModelWait(model))
                    ret = -ENODEV;
            }
            if (dev->unbinding) {
                dev->unbinding = FALSE;
                /* On success the detach changes the tree anyway. */
                if (ret != 0)
                    model->tree_generation++;
            }
            if (ret == 0)
                simModelDetach(model, dev, pid);
        }
        simDeviceUnlock(model, dev);
    }
    g_mutex_unlock(&model->lock);
    return ret;
}


/* The value written to "reset" must be 1 (kstrtoul, base 0). */
static gboolean
simParseResetValue(const char *buf, gsize len)
{
    g_autofree char *value = simParseWord(buf, len);
    char *end = NULL;
    guint64 number;

    errno = 0;
    number = g_ascii_strtoull(value, &end, 0);
    return *value && errno == 0 && end && *end == '\0' && number == 1;
}


static int
simModelRunReset(simModel *model, simDevice *dev)
{
    if (dev->reset_fault == SIM_FAULT_HANG && !simModelHang(model))
        return -ENODEV;
    if (!simModelSleep(model, dev->reset_ms))
        return -ENODEV;
    if (dev->reset_fault == SIM_FAULT_FAIL)
        return -EIO;
    return 0;
}


int
simModelReset(simModel *model, simDevice *dev,
              const char *buf, gsize len, pid_t pid)
{
    gboolean taken = FALSE;
    int ret;

    if (!simParseResetValue(buf, len))
        return -EINVAL;

    g_mutex_lock(&model->lock);
    if ((ret = simDeviceLock(model, dev)) == 0) {
        if ((ret = simSerialEnter(model, &taken)) == 0) {
            ret = simModelRunReset(model, dev);
            simSerialLeave(model, taken);
        }
        if (ret == 0)
            simModelLog(model, "reset", dev, dev->driver, -1, pid, NULL);
        else if (ret == -EIO)
            simModelLog(model, "reset-failed", dev, dev->driver, -1, pid, "EIO");
        simDeviceUnlock(model, dev);
    }
    g_mutex_unlock(&model->lock);
    return ret;
}


/* ---- Holders and releases --------------------------------------------- */

typedef struct {
    simModel *model;
    simGroup *group;
    GPtrArray *devices;         /* simDevice *, borrowed */
    pid_t pid;                  /* the holder that closed */
    pid_t closer;               /* the thread that runs the release, 0: unknown */
} simRelease;


static void
simModelReleaseDevice(simModel *model, simDevice *dev, pid_t pid)
{
    gboolean taken = FALSE;

    if (simSerialEnter(model, &taken) == 0) {
        simModelLog(model, "release-start", dev, dev->driver, -1, pid, NULL);
        if (simModelSleep(model, dev->release_ms) && dev->release_hang)
            simModelHang(model);
        simSerialLeave(model, taken);
    }
    dev->releasing = FALSE;
    simModelLog(model, "release-done", dev, dev->driver, -1, pid, NULL);
    g_cond_broadcast(&model->cond);
}


/* Members of one group are released one after the other; groups each in
 * their own thread, so they overlap unless serialized. */
static gpointer
simReleaseThread(gpointer opaque)
{
    simRelease *job = opaque;
    simModel *model = job->model;
    guint i;

    g_mutex_lock(&model->lock);
    /* The closing task releases its files one after the other. */
    while (job->closer && g_hash_table_contains(model->releasing_tasks,
                                                GINT_TO_POINTER(job->closer))) {
        if (!simModelWait(model))
            break;
    }
    if (job->closer)
        g_hash_table_add(model->releasing_tasks, GINT_TO_POINTER(job->closer));
    for (i = 0; i < job->devices->len; i++)
        simModelReleaseDevice(model, g_ptr_array_index(job->devices, i), job->pid);
    if (job->closer)
        g_hash_table_remove(model->releasing_tasks, GINT_TO_POINTER(job->closer));
    job->group->releasing--;
    model->threads--;
    g_cond_broadcast(&model->cond);
    g_mutex_unlock(&model->lock);

    g_ptr_array_unref(job->devices);
    g_free(job);
    return NULL;
}


/* Called with the lock held: @devices (in use until now) are released in a
 * new thread; the group stays owned until that is done. */
static void
simModelStartRelease(simModel *model, simGroup *group, GPtrArray *devices, pid_t pid,
                     pid_t closer)
{
    simRelease *job;
    guint i;

    if (devices->len == 0) {
        g_ptr_array_unref(devices);
        return;
    }
    for (i = 0; i < devices->len; i++) {
        simDevice *dev = g_ptr_array_index(devices, i);

        dev->in_use = FALSE;
        dev->releasing = TRUE;
    }

    job = g_new0(simRelease, 1);
    job->model = model;
    job->group = group;
    job->devices = devices;
    job->pid = pid;
    job->closer = closer;
    group->releasing++;
    model->threads++;
    g_thread_unref(g_thread_new("sim-release", simReleaseThread, job));
}


int
simModelOpenGroup(simModel *model, int number, pid_t pid, gboolean probe)
{
    simGroup *group;
    int ret = 0;
    guint i;

    g_mutex_lock(&model->lock);
    group = simModelFindGroup(model, number);
    if (!group || !simGroupHasDevNode(group)) {
        ret = -ENOENT;
    } else if (simGroupOwned(group)) {
        ret = -EBUSY;
    } else if (probe) {
        group->open = TRUE;
        group->probe = TRUE;
        group->holder = pid;
        simModelLog(model, "open", NULL, NULL, number, pid, "read-only");
    } else if (!simGroupViable(group)) {
        simModelLog(model, "open-refused", NULL, NULL, number, pid, "group is not viable");
        ret = -EPERM;
    } else {
        group->open = TRUE;
        group->holder = pid;
        for (i = 0; i < group->members->len; i++) {
            simDevice *dev = g_ptr_array_index(group->members, i);

            if (simDriverIsVfio(dev->driver))
                dev->in_use = TRUE;
        }
        simModelLog(model, "open", NULL, NULL, number, pid, NULL);
    }
    g_mutex_unlock(&model->lock);
    return ret;
}


void
simModelCloseGroup(simModel *model, int number, pid_t closer)
{
    g_autoptr(GPtrArray) devices = g_ptr_array_new();
    simGroup *group;
    guint i;

    g_mutex_lock(&model->lock);
    group = simModelFindGroup(model, number);
    if (group && group->open && group->probe) {
        group->open = FALSE;
        group->probe = FALSE;
        simModelLog(model, "close", NULL, NULL, number, group->holder, "read-only");
        group->holder = 0;
    } else if (group && group->open) {
        group->open = FALSE;
        simModelLog(model, "close", NULL, NULL, number, group->holder, NULL);
        for (i = 0; i < group->members->len; i++) {
            simDevice *dev = g_ptr_array_index(group->members, i);

            if (dev->in_use)
                g_ptr_array_add(devices, dev);
        }
        simModelStartRelease(model, group, g_steal_pointer(&devices), group->holder, closer);
        group->holder = 0;
    }
    g_mutex_unlock(&model->lock);
}


int
simModelOpenCdev(simModel *model, simDevice *dev, pid_t pid)
{
    int ret = 0;

    g_mutex_lock(&model->lock);
    if (!simDriverIsVfio(dev->driver)) {
        ret = -ENOENT;
    } else if (dev->group->open || dev->cdev_open || dev->releasing) {
        ret = -EBUSY;
    } else if (!simGroupViable(dev->group)) {
        simModelLog(model, "open-refused", dev, dev->driver, -1, pid, "group is not viable");
        ret = -EPERM;
    } else {
        dev->cdev_open = TRUE;
        dev->cdev_holder = pid;
        dev->in_use = TRUE;
        simModelLog(model, "open", dev, dev->driver, -1, pid, NULL);
    }
    g_mutex_unlock(&model->lock);
    return ret;
}


void
simModelCloseCdev(simModel *model, simDevice *dev, pid_t closer)
{
    GPtrArray *devices;

    g_mutex_lock(&model->lock);
    if (dev->cdev_open) {
        dev->cdev_open = FALSE;
        simModelLog(model, "close", dev, dev->driver, -1, dev->cdev_holder, NULL);
        devices = g_ptr_array_new();
        g_ptr_array_add(devices, dev);
        simModelStartRelease(model, dev->group, devices, dev->cdev_holder, closer);
        dev->cdev_holder = 0;
    }
    g_mutex_unlock(&model->lock);
}


void
simModelShutdown(simModel *model)
{
    gint64 deadline = g_get_monotonic_time() +
        SIM_SHUTDOWN_WAIT_MS * G_TIME_SPAN_MILLISECOND;

    g_mutex_lock(&model->lock);
    model->shutdown = TRUE;
    g_cond_broadcast(&model->cond);
    while (model->threads > 0) {
        if (!g_cond_wait_until(&model->cond, &model->lock, deadline))
            break;
    }
    if (model->threads > 0)
        g_printerr("hostdev-simhost: %u release threads still running at exit\n",
                   model->threads);
    g_mutex_unlock(&model->lock);
}


/* ---- .sim/state ------------------------------------------------------- */

/* "netdev": the interface now, or null; "vf": what the PF keeps for a
 * VF, or null. */
static void
simStateAddNet(JsonBuilder *builder, const simDevice *dev)
{
    json_builder_set_member_name(builder, "netdev");
    if (dev->ifindex > 0)
        json_builder_add_string_value(builder, dev->netdev);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "vf");
    if (dev->physfn && dev->netdev) {
        g_autofree char *mac = simFormatMac(dev->vf_mac);

        json_builder_begin_object(builder);
        json_builder_set_member_name(builder, "mac");
        json_builder_add_string_value(builder, mac);
        json_builder_set_member_name(builder, "vlan");
        json_builder_add_int_value(builder, dev->vf_vlan);
        json_builder_set_member_name(builder, "qos");
        json_builder_add_int_value(builder, dev->vf_qos);
        json_builder_end_object(builder);
    } else {
        json_builder_add_null_value(builder);
    }
}


static void
simStateAddDevice(JsonBuilder *builder, const simDevice *dev)
{
    g_autofree char *cdev = NULL;

    if (dev->vfio_cdev >= 0)
        cdev = g_strdup_printf("vfio%d", dev->vfio_cdev);

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "address");
    json_builder_add_string_value(builder, dev->address);
    json_builder_set_member_name(builder, "driver");
    if (dev->driver && !dev->unbinding)
        json_builder_add_string_value(builder, dev->driver);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "driver_override");
    if (dev->driver_override)
        json_builder_add_string_value(builder, dev->driver_override);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "iommu_group");
    json_builder_add_int_value(builder, dev->group_number);
    json_builder_set_member_name(builder, "in_use");
    json_builder_add_boolean_value(builder, dev->in_use);
    json_builder_set_member_name(builder, "releasing");
    json_builder_add_boolean_value(builder, dev->releasing);
    json_builder_set_member_name(builder, "vfio_cdev");
    if (cdev)
        json_builder_add_string_value(builder, cdev);
    else
        json_builder_add_null_value(builder);
    simStateAddNet(builder, dev);
    json_builder_end_object(builder);
}


static void
simStateAddGroup(JsonBuilder *builder, const simGroup *group)
{
    g_autoptr(GArray) holders = g_array_new(FALSE, FALSE, sizeof(pid_t));
    guint i, j;

    if (group->open)
        g_array_append_val(holders, group->holder);
    for (i = 0; i < group->members->len; i++) {
        const simDevice *dev = g_ptr_array_index(group->members, i);

        if (!dev->cdev_open)
            continue;
        for (j = 0; j < holders->len; j++) {
            if (g_array_index(holders, pid_t, j) == dev->cdev_holder)
                break;
        }
        if (j == holders->len)
            g_array_append_val(holders, dev->cdev_holder);
    }

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "group");
    json_builder_add_int_value(builder, group->number);
    json_builder_set_member_name(builder, "dev_node");
    json_builder_add_boolean_value(builder, simGroupHasDevNode(group));
    json_builder_set_member_name(builder, "owned");
    json_builder_add_boolean_value(builder, simGroupOwned(group));
    json_builder_set_member_name(builder, "holders");
    json_builder_begin_array(builder);
    for (i = 0; i < holders->len; i++)
        json_builder_add_int_value(builder, g_array_index(holders, pid_t, i));
    json_builder_end_array(builder);
    json_builder_set_member_name(builder, "viable");
    json_builder_add_boolean_value(builder, simGroupViable(group));
    json_builder_end_object(builder);
}


char *
simModelStateJson(simModel *model)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    guint i;

    g_mutex_lock(&model->lock);
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "violations");
    json_builder_add_int_value(builder, model->violations);
    json_builder_set_member_name(builder, "serialized");
    json_builder_add_boolean_value(builder, model->serialized);
    json_builder_set_member_name(builder, "devices");
    json_builder_begin_array(builder);
    for (i = 0; i < model->devices->len; i++)
        simStateAddDevice(builder, g_ptr_array_index(model->devices, i));
    json_builder_end_array(builder);
    json_builder_set_member_name(builder, "groups");
    json_builder_begin_array(builder);
    for (i = 0; i < model->groups->len; i++)
        simStateAddGroup(builder, g_ptr_array_index(model->groups, i));
    json_builder_end_array(builder);
    json_builder_end_object(builder);
    g_mutex_unlock(&model->lock);

    root = json_builder_get_root(builder);
    json_generator_set_root(generator, root);
    json_generator_set_pretty(generator, TRUE);
    return json_generator_to_data(generator, NULL);
}
