/*
 * test-interleave.c: random interleavings against the simulated host
 *
 * A seeded, reproducible model-based test.  Three domains share the IOMMU
 * groups of a topology ("small" by default: a GPU with its audio function,
 * a 4-function card, a NIC, two NICs behind a PCI bridge) and go through a
 * random sequence of operations: prepare (with and without the whole
 * group), hot-unplug releases, release of a whole domain, destroy with a
 * stand-in QEMU, start and crash of stand-in QEMUs, nodedev detach,
 * reattach and reset, slow and hung kernel releases, and injected probe
 * and reset failures.
 *
 * The reference model is deliberately simple: who owns each device
 * (a domain, or nobody) and which devices were nodedev-detached.  Each
 * operation updates it from what must happen (a release always succeeds, a
 * conflicting prepare always fails, a prepare on a clean host always
 * succeeds), and after every step the manager's view and the simulated
 * host must agree with it:
 *  - every device the model gives to a domain is ACTIVE there, and no other;
 *  - an IOMMU group is never split between domains, and a group with an
 *    active member has no member on a host driver (viable);
 *  - active devices are on vfio-pci, inactive ones on vfio-pci or on no
 *    driver (a give-back that failed), untracked ones on their original
 *    driver;
 *  - the simulated kernel counted no viability violation.
 * Every few hundred steps, and at the end, the test quiesces (QEMUs gone,
 * faults cleared, every domain released, pending groups given back,
 * nodedev-detached devices reattached) and every device must be home.
 *
 *   HD_STRESS_SEED      seed (default: random; printed at start and on failure)
 *   HD_STRESS_STEPS     steps in all (default 10000, 400 under valgrind)
 *   HD_STRESS_WORKERS   simulated hosts driven at once, each by its own
 *                       thread with seed SEED+i (default 2)
 *   HD_STRESS_TOPOLOGY  "small" (default) or "gpu16" (costs set to zero)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "hostdev/destroy.h"
#include "hostdev/error.h"
#include "mgrtest.h"
#include "stresstest.h"

#define STRESS_DOMAINS 3
#define STRESS_QUIESCE_EVERY 250
#define STRESS_HISTORY 24
/* Simulated hosts driven at once: a step waits on FUSE round trips, so
 * while one host's step waits another's runs (two beat one on two cores;
 * more beat two only on an idle machine). */
#define STRESS_WORKERS 2
/* How long a hung release hangs before a helper thread wakes it. */
#define STRESS_HANG_MS 30

/* Injected faults make the manager warn (a reset failed, a give-back
 * failed): expected here, so counted and kept quiet, not fatal. */
static gint stressWarnings;

typedef struct {
    char *addr;             /* canonical */
    hdPCIAddress pci;
    unsigned int group;
    char *original;         /* its host driver, NULL: none */
    gboolean assignable;    /* an endpoint (not a bridge or a root port) */
    int owner;              /* model: domain index, or -1 */
    gboolean nodedev;       /* model: nodedev-detached, not reattached */
} StressDevice;

typedef struct {
    char name[8];
    pid_t qemu;             /* stand-in QEMU, 0: none */
    GHashTable *held;       /* groups its QEMU holds (it keeps them after a release) */
} StressDomain;

typedef struct {
    guint64 seed;
    guint64 steps;
    guint64 step;
    GThread *worker;
    GRand *rand;
    hdSimHost *sim;
    hdHost *host;
    char *state_dir;
    hdManager *mgr;
    GPtrArray *devices;     /* StressDevice *, sorted by address */
    StressDomain domains[STRESS_DOMAINS];
    /* Faults in force: while any is, a prepare may fail for a good reason. */
    GHashTable *faults;     /* "ADDR probe" / "ADDR reset" -> TRUE */
    GThread *unhanger;
    gint hangs;             /* release hangs set since the last unhang */
    char *history[STRESS_HISTORY];
    GHashTable *counts;     /* operation -> times run */
    GHashTable *times;      /* operation -> microseconds spent, checks included */
    const char *last_op;
    guint refusals;         /* operations refused as the model predicted */
    guint settled;          /* checks that agreed once background work ended */
    /* A destroy left a give-back running (a group held by another QEMU):
     * its group is busy, operations on it may be refused, until quiesce. */
    gboolean background;
} Stress;


static void
stressDeviceFree(StressDevice *dev)
{
    g_free(dev->addr);
    g_free(dev->original);
    g_free(dev);
}


/* On every failure, not only verbose ones: a failure that depends on
 * timing may not replay, and what the simulated host saw (a violation's
 * device, driver and pid, the opens and closes around it) may be all there
 * is to go by. */
static void
stressPrintEvents(Stress *s)
{
    g_autoptr(JsonArray) events = hdSimHostEvents(s->sim, NULL);
    guint n = events ? json_array_get_length(events) : 0;
    guint i;

    g_printerr("stress: the simulated host's last events:\n");
    for (i = n > 60 ? n - 60 : 0; i < n; i++) {
        g_autofree char *line = json_to_string(json_array_get_element(events, i), FALSE);

        g_printerr("  %s\n", line);
    }
}


static void G_GNUC_PRINTF(2, 3) G_GNUC_NORETURN
stressFail(Stress *s, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;
    guint i;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_printerr("\nstress: FAILED at step %" G_GUINT64_FORMAT ": %s\n", s->step, msg);
    g_printerr("stress: last operations, oldest first:\n");
    for (i = 0; i < STRESS_HISTORY; i++) {
        const char *h = s->history[(s->step + 1 + i) % STRESS_HISTORY];

        if (h)
            g_printerr("  %s\n", h);
    }
    stressPrintEvents(s);
    g_printerr("stress: reproduce with HD_STRESS_SEED=%" G_GUINT64_FORMAT
               " HD_STRESS_WORKERS=1 HD_STRESS_STEPS=%" G_GUINT64_FORMAT "\n", s->seed,
               s->step + 1);
    g_error("stress: seed %" G_GUINT64_FORMAT ": %s", s->seed, msg);
}


static void G_GNUC_PRINTF(2, 3)
stressLog(Stress *s, const char *fmt, ...)
{
    char **slot = &s->history[s->step % STRESS_HISTORY];
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_free(*slot);
    *slot = g_strdup_printf("#%" G_GUINT64_FORMAT " %s", s->step, msg);
    if (g_getenv("HD_STRESS_VERBOSE"))
        g_printerr("%s\n", *slot);
}


static void
stressCount(Stress *s, const char *op)
{
    s->last_op = op;
    g_hash_table_insert(s->counts, (char *)op,
                        GUINT_TO_POINTER(GPOINTER_TO_UINT(g_hash_table_lookup(s->counts,
                                                                              op)) + 1));
}


static void
stressCtl(Stress *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
stressCtl(Stress *s, const char *fmt, ...)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *cmd = NULL;
    va_list ap;

    va_start(ap, fmt);
    cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (!hdSimHostCtl(s->sim, cmd, &error))
        stressFail(s, "control command '%s': %s", cmd, error->message);
}


/* ---- stand-in QEMUs ---------------------------------------------------- */

static void
stressKillQemu(StressDomain *dom)
{
    if (dom->qemu <= 0)
        return;
    kill(dom->qemu, SIGKILL);
    g_assert_cmpint(waitpid(dom->qemu, NULL, 0), ==, dom->qemu);
    dom->qemu = 0;
    g_hash_table_remove_all(dom->held);
}


/* ---- the reference model and the checks -------------------------------- */

static StressDevice *
stressFind(Stress *s, const hdPCIAddress *addr)
{
    guint i;

    for (i = 0; i < s->devices->len; i++) {
        StressDevice *dev = g_ptr_array_index(s->devices, i);

        if (hdPCIAddressEqual(&dev->pci, addr))
            return dev;
    }
    return NULL;
}


static gboolean
stressOnHostDriver(const char *driver, const StressDevice *dev)
{
    /* Bridges and root ports never make a group non-viable. */
    return driver && *driver && !dev->assignable ? FALSE :
        driver && *driver && strcmp(driver, "vfio-pci") != 0;
}


/* hdManagerGetDevice, for one device per step in turn, against the model
 * and the simulated host (@drivers: address -> driver or ""). */
static char *
stressCheckDevice(Stress *s, StressDevice *dev, GHashTable *drivers)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDeviceInfo) info = hdManagerGetDevice(s->mgr, &dev->pci, &error);
    const char *driver = g_hash_table_lookup(drivers, dev->addr);

    if (!info)
        return g_strdup_printf("no snapshot of %s: %s", dev->addr, error->message);
    if ((info->state == HD_DEVICE_ACTIVE) != (dev->owner >= 0) ||
        (dev->owner >= 0 && g_strcmp0(info->domain, s->domains[dev->owner].name) != 0))
        return g_strdup_printf("%s is %s (%s), the model gives it to %s", dev->addr,
                               hdDeviceStateToString(info->state),
                               info->domain ? info->domain : "no domain",
                               dev->owner >= 0 ? s->domains[dev->owner].name : "nobody");
    if (g_strcmp0(info->driver ? info->driver : "", driver) != 0)
        return g_strdup_printf("the snapshot of %s says driver '%s', the host '%s'", dev->addr,
                               info->driver, driver);
    return NULL;
}


/* Compare the manager, the simulated host and the model; NULL when they
 * agree, else what is wrong. */
static char *
stressCheckOnce(Stress *s)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = hdSimHostState(s->sim, &error);
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(s->mgr);
    g_autoptr(GHashTable) drivers = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GHashTable) group_domain = g_hash_table_new(NULL, NULL);
    g_autoptr(GHashTable) active_groups = g_hash_table_new(NULL, NULL);
    JsonObject *root;
    JsonArray *devs;
    guint seen_active = 0;
    guint model_active = 0;
    guint i;

    if (!state)
        return g_strdup_printf("cannot read the simulated host's state: %s", error->message);
    root = json_node_get_object(state);
    if (json_object_get_int_member(root, "violations") != 0)
        return g_strdup_printf("the simulated kernel counted %" G_GINT64_FORMAT
                               " viability violations",
                               json_object_get_int_member(root, "violations"));
    devs = json_object_get_array_member(root, "devices");
    for (i = 0; i < json_array_get_length(devs); i++) {
        JsonObject *d = json_array_get_object_element(devs, i);
        const char *driver = json_object_get_string_member_with_default(d, "driver", NULL);

        g_hash_table_insert(drivers, (char *)json_object_get_string_member(d, "address"),
                            (char *)(driver ? driver : ""));
    }

    for (i = 0; i < tracked->len; i++) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, i);
        StressDevice *dev = stressFind(s, &info->addr);
        const char *driver;

        if (!dev)
            return g_strdup_printf("the manager tracks an unknown device");
        driver = g_hash_table_lookup(drivers, dev->addr);
        if (info->state == HD_DEVICE_ACTIVE) {
            gpointer other;

            seen_active++;
            if (dev->owner < 0 || g_strcmp0(s->domains[dev->owner].name, info->domain) != 0)
                return g_strdup_printf("%s is active in %s, the model says %s", dev->addr,
                                       info->domain, dev->owner < 0 ? "nobody" :
                                       s->domains[dev->owner].name);
            if (g_strcmp0(driver, "vfio-pci") != 0)
                return g_strdup_printf("%s is active in %s but on driver '%s'", dev->addr,
                                       info->domain, driver);
            if (g_hash_table_lookup_extended(group_domain, GUINT_TO_POINTER(dev->group), NULL,
                                             &other) &&
                GPOINTER_TO_INT(other) != dev->owner)
                return g_strdup_printf("IOMMU group %u is split between domains %s and %s",
                                       dev->group, s->domains[GPOINTER_TO_INT(other)].name,
                                       info->domain);
            g_hash_table_insert(group_domain, GUINT_TO_POINTER(dev->group),
                                GINT_TO_POINTER(dev->owner));
            g_hash_table_add(active_groups, GUINT_TO_POINTER(dev->group));
        } else {
            if (dev->owner >= 0)
                return g_strdup_printf("%s is inactive, the model gives it to %s", dev->addr,
                                       s->domains[dev->owner].name);
            if (*driver && g_strcmp0(driver, "vfio-pci") != 0)
                return g_strdup_printf("%s is on the inactive list but on driver '%s'", dev->addr,
                                       driver);
        }
    }

    for (i = 0; i < s->devices->len; i++) {
        StressDevice *dev = g_ptr_array_index(s->devices, i);
        const char *driver = g_hash_table_lookup(drivers, dev->addr);
        gboolean is_tracked = FALSE;
        guint j;

        model_active += dev->owner >= 0;
        for (j = 0; j < tracked->len; j++)
            is_tracked |= hdPCIAddressEqual(&((hdDeviceInfo *)g_ptr_array_index(tracked,
                                                                                j))->addr,
                                            &dev->pci);
        if (dev->nodedev && !is_tracked)
            return g_strdup_printf("%s was nodedev-detached but is not tracked", dev->addr);
        if (!is_tracked && g_strcmp0(driver, dev->original ? dev->original : "") != 0)
            return g_strdup_printf("%s is untracked but on driver '%s' instead of '%s'", dev->addr,
                                   driver, dev->original ? dev->original : "");
        if (g_hash_table_contains(active_groups, GUINT_TO_POINTER(dev->group)) &&
            stressOnHostDriver(driver, dev))
            return g_strdup_printf("group %u has an active member but %s is on host driver '%s'",
                                   dev->group, dev->addr, driver);
    }
    if (seen_active != model_active)
        return g_strdup_printf("the manager has %u active devices, the model %u", seen_active,
                               model_active);
    return stressCheckDevice(s, g_ptr_array_index(s->devices, s->step % s->devices->len),
                             drivers);
}


/* A give-back destroy left running in the background (a release slower
 * than its wait) moves devices while we look: give it a moment before
 * calling a difference a failure.  Nothing that is wrong for good (a
 * violation, a device in the wrong domain) goes away by waiting. */
static void
stressCheck(Stress *s)
{
    guint tries;

    for (tries = 0; tries < 100; tries++) {
        g_autofree char *wrong = stressCheckOnce(s);

        if (!wrong) {
            s->settled += tries > 0;
            return;
        }
        if (tries == 99)
            stressFail(s, "%s", wrong);
        g_usleep(20 * 1000);
    }
}


/* ---- operations -------------------------------------------------------- */

static StressDevice *
stressPick(Stress *s)
{
    StressDevice *dev;

    do {
        dev = g_ptr_array_index(s->devices, g_rand_int_range(s->rand, 0, s->devices->len));
    } while (!dev->assignable);
    return dev;
}


static int
stressGroupOwner(Stress *s, unsigned int group)
{
    guint i;

    for (i = 0; i < s->devices->len; i++) {
        StressDevice *dev = g_ptr_array_index(s->devices, i);

        if (dev->group == group && dev->owner >= 0)
            return dev->owner;
    }
    return -1;
}


/* Whether a member of @group other than those in @asked sits on a host
 * driver (what a prepare without the whole group refuses). */
static gboolean
stressGroupHasHostSibling(Stress *s, unsigned int group, GPtrArray *asked)
{
    guint i;

    for (i = 0; i < s->devices->len; i++) {
        StressDevice *dev = g_ptr_array_index(s->devices, i);
        g_autofree char *driver = NULL;

        if (dev->group != group || g_ptr_array_find(asked, dev, NULL))
            continue;
        driver = hdSimHostDriverOf(s->sim, dev->addr);
        if (stressOnHostDriver(driver, dev))
            return TRUE;
    }
    return FALSE;
}


static void
stressOpPrepare(Stress *s)
{
    int d = g_rand_int_range(s->rand, 0, STRESS_DOMAINS);
    gboolean whole = g_rand_boolean(s->rand);
    guint count = g_rand_int_range(s->rand, 1, 4);
    g_autoptr(GPtrArray) asked = g_ptr_array_new();
    g_autoptr(GPtrArray) defs = g_ptr_array_new_with_free_func((GDestroyNotify)hdHostdevDefFree);
    g_autoptr(GString) what = g_string_new(NULL);
    g_autoptr(GError) error = NULL;
    gboolean must_fail = FALSE;
    gboolean may_fail = g_hash_table_size(s->faults) > 0 || s->background;
    gboolean ok;
    guint i;

    for (i = 0; i < count; i++) {
        StressDevice *dev = stressPick(s);
        hdHostdevDef *def;
        int owner;

        if (g_ptr_array_find(asked, dev, NULL))
            continue;
        g_ptr_array_add(asked, dev);
        def = g_new0(hdHostdevDef, 1);
        def->addr = dev->pci;
        def->managed = TRUE;
        g_ptr_array_add(defs, def);
        g_string_append_printf(what, " %s", dev->addr);
        owner = stressGroupOwner(s, dev->group);
        /* Active anywhere, or its group in another domain: refused. */
        must_fail |= dev->owner >= 0 || (owner >= 0 && owner != d);
    }
    for (i = 0; i < asked->len && !whole; i++)
        must_fail |= stressGroupHasHostSibling(s, ((StressDevice *)asked->pdata[i])->group,
                                               asked);

    stressLog(s, "prepare %s%s:%s", s->domains[d].name, whole ? " whole-group" : "", what->str);
    ok = hdManagerPrepare(s->mgr, s->domains[d].name, defs, whole ? HD_PREPARE_WHOLE_GROUP : 0,
                          &error);
    stressCount(s, whole ? "prepare whole-group" : "prepare");
    if (ok && must_fail)
        stressFail(s, "prepare of%s for %s succeeded; the model refuses it", what->str,
                   s->domains[d].name);
    if (!ok && !must_fail && !may_fail)
        stressFail(s, "prepare of%s for %s failed on a clean host: %s", what->str,
                   s->domains[d].name, error->message);
    if (!ok) {
        s->refusals += must_fail;
        return;
    }
    for (i = 0; i < asked->len; i++) {
        StressDevice *dev = g_ptr_array_index(asked, i);

        dev->owner = d;
        dev->nodedev = FALSE;
    }
}


static GArray *
stressDomainAddrs(Stress *s, int d, gboolean some)
{
    GArray *addrs = g_array_new(FALSE, FALSE, sizeof(hdPCIAddress));
    guint i;

    for (i = 0; i < s->devices->len; i++) {
        StressDevice *dev = g_ptr_array_index(s->devices, i);

        if (dev->owner == d && (!some || g_rand_boolean(s->rand)))
            g_array_append_val(addrs, dev->pci);
    }
    return addrs;
}


static void
stressModelLeave(Stress *s, GArray *addrs)
{
    guint i;

    for (i = 0; i < addrs->len; i++)
        stressFind(s, &g_array_index(addrs, hdPCIAddress, i))->owner = -1;
}


/* Hot-unplug: some devices of a domain leave it (its QEMU lives on). */
static void
stressOpRelease(Stress *s)
{
    int d = g_rand_int_range(s->rand, 0, STRESS_DOMAINS);
    g_autoptr(GArray) addrs = stressDomainAddrs(s, d, TRUE);
    g_autoptr(GError) error = NULL;

    if (addrs->len == 0)
        return;
    stressLog(s, "release %u devices of %s", addrs->len, s->domains[d].name);
    stressCount(s, "release");
    /* The give-back may fail on an injected fault; leaving may not. */
    if (!hdManagerRelease(s->mgr, s->domains[d].name, addrs, &error) &&
        g_hash_table_size(s->faults) == 0)
        stressFail(s, "release from %s failed: %s", s->domains[d].name, error->message);
    stressModelLeave(s, addrs);
}


static void
stressOpReleaseDomain(Stress *s, int d)
{
    g_autoptr(GArray) addrs = stressDomainAddrs(s, d, FALSE);
    g_autoptr(GError) error = NULL;

    stressLog(s, "release-domain %s (%u devices)", s->domains[d].name, addrs->len);
    stressCount(s, "release-domain");
    if (!hdManagerReleaseDomain(s->mgr, s->domains[d].name, &error) &&
        g_hash_table_size(s->faults) == 0)
        stressFail(s, "release of domain %s failed: %s", s->domains[d].name, error->message);
    stressModelLeave(s, addrs);
}


static void
stressOpDestroy(Stress *s)
{
    int d = g_rand_int_range(s->rand, 0, STRESS_DOMAINS);
    g_autoptr(GArray) addrs = stressDomainAddrs(s, d, FALSE);
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GError) error = NULL;
    /* Short waits: the stand-in QEMU ends on SIGTERM at once. */
    hdDestroyOptions opts = {
        .term_wait_ms = 2000, .kill_wait_ms = 2000, .release_wait_ms = 2000,
        .per_device_ms = 1, .workers = 4,
    };
    pid_t qemu = s->domains[d].qemu;
    gboolean held_elsewhere = FALSE;
    guint i;
    int other;

    /* Another domain's QEMU may still hold a group it was released from
     * (hot-unplug) that this domain got since: that group must wait. */
    for (i = 0; i < addrs->len; i++) {
        StressDevice *dev = stressFind(s, &g_array_index(addrs, hdPCIAddress, i));

        for (other = 0; other < STRESS_DOMAINS; other++)
            held_elsewhere |= other != d &&
                g_hash_table_contains(s->domains[other].held, GUINT_TO_POINTER(dev->group));
    }

    if (g_getenv("HD_UNDER_VALGRIND")) {
        /* Destroy needs pidfd_open(2), which valgrind does not implement:
         * the closest thing is QEMU's death and the domain's release. */
        stressKillQemu(&s->domains[d]);
        stressOpReleaseDomain(s, d);
        return;
    }
    stressLog(s, "destroy %s (QEMU %d, %u devices)", s->domains[d].name, (int)qemu,
              addrs->len);
    stressCount(s, "destroy");
    if (!hdDestroyDomain(s->mgr, s->domains[d].name, qemu, &opts, &report, &error))
        stressFail(s, "destroy of %s failed: %s", s->domains[d].name, error->message);
    if (qemu > 0) {
        g_assert_cmpint(waitpid(qemu, NULL, 0), ==, qemu);
        s->domains[d].qemu = 0;
    }
    s->background |= report->problems->len > 0;
    if (report->problems->len > 0 && g_hash_table_size(s->faults) == 0 && !held_elsewhere)
        stressFail(s, "destroy of %s left a group behind on a clean host: %s",
                   s->domains[d].name, (char *)g_ptr_array_index(report->problems, 0));
    stressModelLeave(s, addrs);
}


/* Start the domain's QEMU, holding the groups of its devices. */
static void
stressOpStartQemu(Stress *s)
{
    int d = g_rand_int_range(s->rand, 0, STRESS_DOMAINS);
    g_autoptr(GPtrArray) nodes = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GHashTable) groups = g_hash_table_new(NULL, NULL);
    guint i;

    if (s->domains[d].qemu > 0)
        return;
    for (i = 0; i < s->devices->len; i++) {
        StressDevice *dev = g_ptr_array_index(s->devices, i);

        if (dev->owner == d && g_hash_table_add(groups, GUINT_TO_POINTER(dev->group)))
            g_ptr_array_add(nodes, hdIOMMUGroupDevPath(s->host, dev->group));
    }
    if (nodes->len == 0)
        return;
    s->domains[d].qemu = stressStartQemu(nodes);
    if (s->domains[d].qemu > 0) {
        GHashTableIter iter;
        gpointer group;

        g_hash_table_iter_init(&iter, groups);
        while (g_hash_table_iter_next(&iter, &group, NULL))
            g_hash_table_add(s->domains[d].held, group);
    }
    stressLog(s, "start QEMU of %s on %u groups: %s", s->domains[d].name, nodes->len,
              s->domains[d].qemu > 0 ? "running" : "a group is held elsewhere");
    stressCount(s, s->domains[d].qemu > 0 ? "qemu start" : "qemu start refused");
}


/* QEMU dies under the domain; the groups it held come free. */
static void
stressOpCrashQemu(Stress *s)
{
    int d = g_rand_int_range(s->rand, 0, STRESS_DOMAINS);

    if (s->domains[d].qemu <= 0)
        return;
    stressLog(s, "QEMU of %s crashes", s->domains[d].name);
    stressCount(s, "qemu crash");
    stressKillQemu(&s->domains[d]);
}


static void
stressOpGiveBackPending(Stress *s)
{
    g_autoptr(GError) error = NULL;

    stressLog(s, "give back pending groups");
    stressCount(s, "give-back pending");
    hdManagerGiveBackPending(s->mgr, &error);
    if (error && g_hash_table_size(s->faults) == 0)
        stressFail(s, "give-back of pending groups failed on a clean host: %s",
                   error->message);
}


static void
stressOpNodeDev(Stress *s)
{
    StressDevice *dev = stressPick(s);
    guint which = g_rand_int_range(s->rand, 0, 3);
    const char *names[] = { "nodedev-detach", "nodedev-reattach", "nodedev-reset" };
    g_autoptr(GError) error = NULL;
    gboolean must_fail = stressGroupOwner(s, dev->group) >= 0;
    gboolean ok;

    stressLog(s, "%s %s", names[which], dev->addr);
    stressCount(s, names[which]);
    switch (which) {
    case 0:
        ok = hdManagerNodeDetach(s->mgr, &dev->pci, NULL, &error);
        break;
    case 1:
        ok = hdManagerNodeReattach(s->mgr, &dev->pci, &error);
        break;
    default:
        ok = hdManagerNodeReset(s->mgr, &dev->pci, &error);
        break;
    }
    if (ok && must_fail)
        stressFail(s, "%s %s succeeded while its group is in domain %s", names[which],
                   dev->addr, s->domains[stressGroupOwner(s, dev->group)].name);
    if (!ok) {
        s->refusals += must_fail;
        return;
    }
    if (which == 0)
        dev->nodedev = TRUE;
    else if (which == 1)
        dev->nodedev = FALSE;
}


/* A fault on one device for a while: a failing probe (of its host driver
 * or of vfio-pci) or reset, or a slow kernel release. */
static void
stressOpFault(Stress *s)
{
    StressDevice *dev = stressPick(s);
    g_autofree char *key = NULL;

    switch (g_rand_int_range(s->rand, 0, 4)) {
    case 0:
        key = g_strdup_printf("%s probe", dev->addr);
        if (g_hash_table_remove(s->faults, key)) {
            stressLog(s, "fault %s probe ok", dev->addr);
            stressCtl(s, "fault %s probe ok", dev->addr);
        } else {
            const char *driver = g_rand_boolean(s->rand) || !dev->original ?
                "vfio-pci" : dev->original;

            stressLog(s, "fault %s probe fail %s", dev->addr, driver);
            stressCtl(s, "fault %s probe fail %s", dev->addr, driver);
            g_hash_table_add(s->faults, g_steal_pointer(&key));
        }
        stressCount(s, "fault probe");
        break;
    case 1:
        key = g_strdup_printf("%s reset", dev->addr);
        if (g_hash_table_remove(s->faults, key)) {
            stressLog(s, "fault %s reset ok", dev->addr);
            stressCtl(s, "fault %s reset ok", dev->addr);
        } else {
            stressLog(s, "fault %s reset fail", dev->addr);
            stressCtl(s, "fault %s reset fail", dev->addr);
            g_hash_table_add(s->faults, g_steal_pointer(&key));
        }
        stressCount(s, "fault reset");
        break;
    case 2: {
        guint ms = g_rand_int_range(s->rand, 0, 2) * g_rand_int_range(s->rand, 1, 20);

        stressLog(s, "cost %s release_ms %u", dev->addr, ms);
        stressCtl(s, "cost %s release_ms %u", dev->addr, ms);
        stressCount(s, "slow release");
        break;
    }
    default:
        stressLog(s, "fault %s release hang (for %u ms)", dev->addr, STRESS_HANG_MS);
        stressCtl(s, "fault %s release hang", dev->addr);
        g_atomic_int_inc(&s->hangs);
        stressCount(s, "hung release");
        break;
    }
}


/* Hung releases are woken by a helper thread after STRESS_HANG_MS, as a
 * slow kernel eventually finishes: the test's own thread may be the one
 * waiting for them (an unbind waits for the release). */
static gpointer
stressUnhangThread(gpointer opaque)
{
    Stress *s = opaque;

    while (g_atomic_pointer_get(&s->sim)) {
        g_usleep(STRESS_HANG_MS * 1000);
        /* Clear every release hang first, or the next release hangs again. */
        gint hangs = g_atomic_int_get(&s->hangs);

        if (g_atomic_pointer_get(&s->sim) && hangs > 0 &&
            g_atomic_int_compare_and_exchange(&s->hangs, hangs, 0)) {
            guint i;

            for (i = 0; i < s->devices->len; i++) {
                StressDevice *dev = g_ptr_array_index(s->devices, i);
                g_autofree char *cmd = g_strdup_printf("fault %s release ok", dev->addr);

                hdSimHostCtl(s->sim, cmd, NULL);
            }
            hdSimHostCtl(s->sim, "unhang", NULL);
        }
    }
    return NULL;
}


/* Wait until no group is owned in the simulated kernel (a release running)
 * and no device is between drivers. */
static void
stressWaitSettled(Stress *s)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    for (;;) {
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) state = hdSimHostState(s->sim, &error);
        JsonArray *groups;
        gboolean owned = FALSE;
        guint i;

        if (!state)
            stressFail(s, "cannot read the simulated host's state: %s", error->message);
        groups = json_object_get_array_member(json_node_get_object(state), "groups");
        for (i = 0; i < json_array_get_length(groups); i++)
            owned |= json_object_get_boolean_member(json_array_get_object_element(groups, i),
                                                    "owned");
        if (!owned)
            return;
        if (g_get_monotonic_time() > deadline)
            stressFail(s, "a group is still owned 10 s after every QEMU ended");
        g_usleep(2000);
    }
}


/* Reattach a node device at quiesce.  A give-back that destroy left in the
 * background may still be running on its group (a sibling of the node
 * device was the domain's): the manager then refuses with IN_USE and asks
 * to try again, which is what it is told.  Anything else, or the group still
 * busy after 10 s, is a failure. */
static void
stressNodeReattachSettled(Stress *s, StressDevice *dev)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    for (;;) {
        g_autoptr(GError) error = NULL;

        if (hdManagerNodeReattach(s->mgr, &dev->pci, &error))
            return;
        if (!g_error_matches(error, HD_ERROR, HD_ERROR_IN_USE) ||
            g_get_monotonic_time() > deadline)
            stressFail(s, "quiesce: reattach of %s failed: %s", dev->addr, error->message);
        g_usleep(20 * 1000);
    }
}


/* Everything ends: QEMUs, faults, domains; every device must go home. */
static void
stressQuiesce(Stress *s)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) tracked = NULL;
    GHashTableIter iter;
    gpointer key;
    guint i;
    gint64 start = g_get_monotonic_time();

    stressLog(s, "quiesce");
    stressCount(s, "quiesce");
    for (i = 0; i < STRESS_DOMAINS; i++)
        stressKillQemu(&s->domains[i]);
    g_hash_table_iter_init(&iter, s->faults);
    while (g_hash_table_iter_next(&iter, &key, NULL))
        stressCtl(s, "fault %s ok", (char *)key);
    g_hash_table_remove_all(s->faults);
    stressCtl(s, "cost all release_ms 0");
    for (i = 0; i < s->devices->len; i++)
        stressCtl(s, "fault %s release ok", ((StressDevice *)s->devices->pdata[i])->addr);
    stressCtl(s, "unhang");
    stressCtl(s, "clear-events");
    /* A group stays owned until the kernel finished releasing it (a killed
     * QEMU's files, a background give-back): not free yet, rightly. */
    stressWaitSettled(s);

    for (i = 0; i < STRESS_DOMAINS; i++) {
        g_autoptr(GArray) addrs = stressDomainAddrs(s, i, FALSE);

        if (!hdManagerReleaseDomain(s->mgr, s->domains[i].name, &error))
            stressFail(s, "quiesce: release of %s failed: %s", s->domains[i].name,
                       error->message);
        stressModelLeave(s, addrs);
    }
    for (i = 0; i < s->devices->len; i++) {
        StressDevice *dev = g_ptr_array_index(s->devices, i);

        if (dev->nodedev)
            stressNodeReattachSettled(s, dev);
        dev->nodedev = FALSE;
    }
    /* Groups a failed give-back left behind go now that nothing fails; a
     * give-back destroy left in the background (its group was held by
     * another QEMU) finishes on its own now that the holder is gone. */
    for (i = 0; i < 500; i++) {
        hdManagerGiveBackPending(s->mgr, &error);
        if (error)
            stressFail(s, "quiesce: give-back failed: %s", error->message);
        g_clear_pointer(&tracked, g_ptr_array_unref);
        tracked = hdManagerListTracked(s->mgr);
        if (tracked->len == 0)
            break;
        g_usleep(20 * 1000);
    }
    s->background = FALSE;
    if (tracked->len > 0) {
        hdDeviceInfo *info = g_ptr_array_index(tracked, 0);
        char addr[HD_PCI_ADDRESS_STRLEN];

        stressFail(s, "quiesce: %u devices still tracked 10 s after every holder ended, "
                   "first %s (%s)", tracked->len,
                   hdPCIAddressFormat(&info->addr, addr), hdDeviceStateToString(info->state));
    }
    stressCheck(s);
    g_hash_table_insert(s->times, "quiesce",
                        GSIZE_TO_POINTER(GPOINTER_TO_SIZE(g_hash_table_lookup(s->times,
                                                                              "quiesce")) +
                                         g_get_monotonic_time() - start));
}


static void
stressStep(Stress *s)
{
    guint r = g_rand_int_range(s->rand, 0, 100);
    gint64 start = g_get_monotonic_time();
    gint64 spent;

    s->last_op = "nothing";
    g_clear_pointer(&s->history[s->step % STRESS_HISTORY], g_free);
    if (r < 30)
        stressOpPrepare(s);
    else if (r < 42)
        stressOpRelease(s);
    else if (r < 48)
        stressOpReleaseDomain(s, g_rand_int_range(s->rand, 0, STRESS_DOMAINS));
    else if (r < 54)
        stressOpDestroy(s);
    else if (r < 64)
        stressOpStartQemu(s);
    else if (r < 70)
        stressOpCrashQemu(s);
    else if (r < 76)
        stressOpGiveBackPending(s);
    else if (r < 88)
        stressOpNodeDev(s);
    else
        stressOpFault(s);
    stressCheck(s);
    spent = g_get_monotonic_time() - start;
    g_hash_table_insert(s->times, (char *)s->last_op,
                        GSIZE_TO_POINTER(GPOINTER_TO_SIZE(g_hash_table_lookup(s->times,
                                                                              s->last_op)) +
                                         spent));
}


static void
stressSetup(Stress *s, const char *topology)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) state = NULL;
    const char *tmp = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();
    g_autofree char *tmpl = g_build_filename(tmp, "hdstress-XXXXXX", NULL);
    JsonArray *devs;
    guint i;

    s->sim = hdSimHostStart(topology, NULL, &error);
    g_assert_no_error(error);
    /* Cheap steps: no simulated costs unless a step sets one. */
    stressCtl(s, "cost all release_ms 0");
    stressCtl(s, "cost all probe_ms 0");
    stressCtl(s, "cost all reset_ms 0");
    s->host = hdHostNew(hdSimHostRoot(s->sim));
    /* The state file is fsync'ed before every change: keep it in memory. */
    s->state_dir = g_mkdtemp(g_steal_pointer(&tmpl));
    g_assert_nonnull(s->state_dir);
    s->mgr = hdManagerOpen(s->host, s->state_dir, &error);
    g_assert_no_error(error);

    s->devices = g_ptr_array_new_with_free_func((GDestroyNotify)stressDeviceFree);
    state = hdSimHostState(s->sim, &error);
    g_assert_no_error(error);
    devs = json_object_get_array_member(json_node_get_object(state), "devices");
    for (i = 0; i < json_array_get_length(devs); i++) {
        JsonObject *d = json_array_get_object_element(devs, i);
        StressDevice *dev = g_new0(StressDevice, 1);
        const char *driver = json_object_get_string_member_with_default(d, "driver", NULL);

        dev->addr = g_strdup(json_object_get_string_member(d, "address"));
        dev->pci = mgrtestAddr(dev->addr);
        dev->group = json_object_get_int_member(d, "iommu_group");
        dev->original = g_strdup(driver);
        dev->assignable = !hdPCIDeviceIsBridge(s->host, &dev->pci) &&
            g_strcmp0(driver, "pcieport") != 0;
        dev->owner = -1;
        g_ptr_array_add(s->devices, dev);
    }
    for (i = 0; i < STRESS_DOMAINS; i++) {
        g_snprintf(s->domains[i].name, sizeof(s->domains[i].name), "vm%u", i + 1);
        s->domains[i].held = g_hash_table_new(NULL, NULL);
    }
    s->faults = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    s->counts = g_hash_table_new(g_str_hash, g_str_equal);
    s->times = g_hash_table_new(g_str_hash, g_str_equal);
    s->unhanger = g_thread_new("unhang", stressUnhangThread, s);
}


static void
stressTeardown(Stress *s)
{
    hdSimHost *sim = s->sim;
    guint i;

    g_atomic_pointer_set(&s->sim, NULL);
    g_thread_join(s->unhanger);
    for (i = 0; i < STRESS_DOMAINS; i++) {
        stressKillQemu(&s->domains[i]);
        g_hash_table_unref(s->domains[i].held);
    }
    g_clear_pointer(&s->mgr, hdManagerFree);
    g_clear_pointer(&s->host, hdHostUnref);
    hdSimHostStop(sim);
    mgrtestRemoveTree(s->state_dir);
    g_free(s->state_dir);
    g_ptr_array_unref(s->devices);
    g_hash_table_unref(s->faults);
    g_hash_table_unref(s->counts);
    g_hash_table_unref(s->times);
    g_rand_free(s->rand);
    for (i = 0; i < STRESS_HISTORY; i++)
        g_free(s->history[i]);
}


/* One worker: its own simulated host, manager and seed. */
static gpointer
stressWorker(gpointer opaque)
{
    Stress *s = opaque;

    for (s->step = 0; s->step < s->steps; s->step++) {
        stressStep(s);
        if ((s->step + 1) % STRESS_QUIESCE_EVERY == 0)
            stressQuiesce(s);
    }
    stressQuiesce(s);
    return NULL;
}


static void
stressReport(Stress *s, double seconds)
{
    g_autoptr(GList) ops = g_hash_table_get_keys(s->counts);
    g_autoptr(GString) counts = g_string_new(NULL);
    GList *l;

    ops = g_list_sort(ops, (GCompareFunc)g_strcmp0);
    for (l = ops; l; l = l->next) {
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(s->counts, l->data));

        g_string_append_printf(counts, "%s%s %u (%.1f ms)", l == ops ? "" : ", ",
                               (char *)l->data, n,
                               GPOINTER_TO_SIZE(g_hash_table_lookup(s->times, l->data)) /
                               1e3 / MAX(1, n));
    }
    g_printerr("stress: seed %" G_GUINT64_FORMAT ": %" G_GUINT64_FORMAT
               " steps in %.1f s, 0 violations, %u refusals as predicted, "
               "%u checks waited for background work\nstress:   %s\n",
               s->seed, s->steps, seconds, s->refusals, s->settled, counts->str);
}


static void
testInterleavings(void)
{
    const char *seed_env = g_getenv("HD_STRESS_SEED");
    const char *steps_env = g_getenv("HD_STRESS_STEPS");
    const char *workers_env = g_getenv("HD_STRESS_WORKERS");
    const char *topology = g_getenv("HD_STRESS_TOPOLOGY");
    /* Under valgrind every step is some 20 times slower: leaks show in
     * a few hundred steps as well. */
    guint64 steps = steps_env ? g_ascii_strtoull(steps_env, NULL, 10) :
        g_getenv("HD_UNDER_VALGRIND") ? 400 : 10000;
    guint workers = workers_env ? MAX(1, (guint)g_ascii_strtoull(workers_env, NULL, 10)) :
        STRESS_WORKERS;
    guint64 seed = seed_env ? g_ascii_strtoull(seed_env, NULL, 10) :
        (guint64)g_get_real_time() ^ (guint64)getpid();
    g_autofree Stress *all = g_new0(Stress, workers);
    gint64 start = g_get_monotonic_time();
    guint64 total = 0;
    guint i;

    /* Printed first: a crash of the test itself must still be reproducible. */
    g_printerr("stress: seed %" G_GUINT64_FORMAT " (workers: seeds %" G_GUINT64_FORMAT
               " to %" G_GUINT64_FORMAT "), %" G_GUINT64_FORMAT " steps, topology %s\n",
               seed, seed, seed + workers - 1, steps, topology ? topology : "small");
    /* The simulated hosts die with the thread that started them: this one. */
    for (i = 0; i < workers; i++) {
        Stress *s = &all[i];

        s->seed = seed + i;
        s->steps = steps / workers + (i < steps % workers);
        s->rand = g_rand_new_with_seed_array((const guint32 *)&s->seed, 2);
        stressSetup(s, topology ? topology : "small");
        stressCheck(s);
    }
    for (i = 0; i < workers; i++)
        all[i].worker = g_thread_new("stress", stressWorker, &all[i]);
    for (i = 0; i < workers; i++)
        g_thread_join(all[i].worker);
    for (i = 0; i < workers; i++) {
        stressReport(&all[i], (g_get_monotonic_time() - start) / 1e6);
        total += all[i].steps;
        stressTeardown(&all[i]);
    }
    g_printerr("stress: %" G_GUINT64_FORMAT " steps in %.1f s on %u simulated hosts, "
               "0 violations, %d warnings from injected faults\n", total,
               (g_get_monotonic_time() - start) / 1e6, workers,
               g_atomic_int_get(&stressWarnings));
}


static void
stressLogHandler(const char *domain, GLogLevelFlags level, const char *message,
                 gpointer opaque)
{
    g_atomic_int_inc(&stressWarnings);
    if (g_getenv("HD_STRESS_VERBOSE"))
        g_printerr("stress: %s\n", message);
}


int
main(int argc, char **argv)
{
    const char *skip = hdTestSetup(&argc, &argv);

    HD_TEST_REQUIRE_SIMHOST(skip);
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    g_log_set_handler("hostdev", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, stressLogHandler,
                      NULL);
    g_test_add_func("/stress/interleavings", testInterleavings);
    return g_test_run();
}
