/*
 * simmodel-priv.h: the model's insides, shared by simmodel.c,
 * simcontrol.c and simtopology.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "simmodel.h"

/* How long simModelShutdown() waits for release threads. */
#define SIM_SHUTDOWN_WAIT_MS 5000

/* Longest driver_override the kernel accepts (PAGE_SIZE - 1, minus NUL). */
#define SIM_OVERRIDE_MAX 4094

/* Largest topology file read. */
#define SIM_TOPOLOGY_MAX (4 * 1024 * 1024)

/* Largest cost a ctl command may set: one hour. */
#define SIM_COST_MAX_MS 3600000

struct _simModel {
    GMutex lock;
    GCond cond;

    GPtrArray *devices;         /* simDevice *, owned, by address */
    GPtrArray *groups;          /* simGroup *, owned, by number */
    GPtrArray *drivers;         /* char *, owned, sorted */
    GHashTable *by_address;     /* address -> simDevice *, borrowed */

    guint violations;
    gboolean serialized;
    gboolean serial_busy;       /* somebody holds the global lock */
    guint unhang_generation;
    gboolean shutdown;
    guint threads;              /* release threads running */
    GHashTable *releasing_tasks; /* closing threads running a release */
    guint64 tree_generation;

    guint64 seq;
    GString *events;            /* JSON lines */

    int last_ifindex;           /* the last interface's (simnet.c) */
};

/* Append one event; @dev, @driver, @error may be NULL, @group < 0 means the
 * device's group (or none), @pid <= 0 none.  Lock held. */
void simModelLog(simModel *model, const char *event, const simDevice *dev,
                 const char *driver, int group, pid_t pid, const char *error);

void simDeviceFree(simDevice *dev);

/* simnet.c: name the interfaces once the topology is complete; register
 * or unregister @dev's after its driver changed. */
void simNetdevNameAll(simModel *model);
void simNetdevSync(simModel *model, simDevice *dev, pid_t pid);

/* @driver is one of the model's drivers. */
gboolean simModelKnowsDriver(simModel *model, const char *driver);
