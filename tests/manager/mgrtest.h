/*
 * mgrtest.h: helpers shared by the manager tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "hdtest-sim.h"
#include "hostdev/pci.h"

/* Addresses (char *) of the devices the simulated host has on @driver, sorted. */
GPtrArray *mgrtestDevicesOn(hdSimHost *sim, const char *driver);

/* address -> driver (or "" for none) of every device of the simulated host. */
GHashTable *mgrtestDriverMap(hdSimHost *sim);

hdPCIAddress mgrtestAddr(const char *str);

void mgrtestAssertDriver(hdSimHost *sim, const char *addr, const char *expected);

typedef enum {
    MGRTEST_QEMU_EXITS,          /* SIGTERM ends it */
    MGRTEST_QEMU_IGNORES_TERM,   /* only SIGKILL does */
    MGRTEST_QEMU_EXITS_SLOWLY,   /* takes 300 ms to shut down after SIGTERM */
} mgrtestQemuKind;

/* A stand-in for a guest's QEMU: a child process holding every file of
 * @nodes (char *) open, as QEMU holds its groups.  Returns its pid once the
 * files are open. */
pid_t mgrtestStartQemu(GPtrArray *nodes, mgrtestQemuKind kind);

/* Remove a state directory and the files in it. */
void mgrtestRemoveTree(const char *dir);
