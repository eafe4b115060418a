/*
 * hdtest-sim.h: run a simulated host for one test
 *
 * Each hdSimHost is a hostdev-simhost daemon mounted in a fresh temporary
 * directory.  The daemon dies with the test (PR_SET_PDEATHSIG) and the test
 * runs in a private mount namespace when it can (hdTestSetup), so a crashed
 * test never leaves a mount behind; hdSimHostStop() unmounts (lazily if
 * needed) and removes the directory.
 *
 * PR_SET_PDEATHSIG fires when the *thread* that started the daemon exits:
 * start simulated hosts from the thread that runs the test.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct _hdSimHost hdSimHost;

/* Call first in main(): g_test_init, a private mount namespace if root.
 * Returns the reason the simulated host cannot run here (no /dev/fuse, no
 * daemon binary), or NULL.  A suite that needs it prints the reason and
 * exits 77 (see HD_TEST_REQUIRE_SIMHOST). */
const char *hdTestSetup(int *argc, char ***argv);

#define HD_TEST_SKIP_EXIT 77
#define HD_TEST_REQUIRE_SIMHOST(reason) \
    do { \
        if (reason) { \
            g_printerr("SKIP: %s\n", reason); \
            return HD_TEST_SKIP_EXIT; \
        } \
    } while (0)

/* @topology: a name in tests/sim/topologies ("small", "gpu16") or a path.
 * @extra_args: more daemon options (e.g. "--serialized"), NULL-terminated,
 * may be NULL. */
hdSimHost *hdSimHostStart(const char *topology, const char *const *extra_args,
                          GError **error);
void hdSimHostStop(hdSimHost *sim);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdSimHost, hdSimHostStop)

/* The mount point: use it as the hdHost root. */
const char *hdSimHostRoot(hdSimHost *sim);

/* One control command (docs/simhost.rst), e.g. "fault 0000:01:00.0 probe fail". */
gboolean hdSimHostCtl(hdSimHost *sim, const char *command, GError **error);

/* The parsed .sim/state and .sim/events documents (caller owns them). */
JsonNode *hdSimHostState(hdSimHost *sim, GError **error);
JsonArray *hdSimHostEvents(hdSimHost *sim, GError **error);

/* Violations recorded so far (from .sim/state); aborts the test on error. */
guint hdSimHostViolations(hdSimHost *sim);

/* The driver a device is bound to now as the daemon sees it, NULL if none. */
char *hdSimHostDriverOf(hdSimHost *sim, const char *address);

/* More helpers (added after the first version of this header). */

/* @relative below the mount point, e.g. "sys/bus/pci/drivers_probe". */
char *hdSimHostPath(hdSimHost *sim, const char *relative);

/* Its rtnetlink socket (--rtnl-socket): a process with simnl-shim.so
 * preloaded and HD_SIM_RTNL set to it talks rtnetlink to this host. */
const char *hdSimHostRtnlSocket(hdSimHost *sim);

/* The daemon's pid, e.g. to signal it; then hdSimHostWaitExit() reaps it
 * (TRUE, *@wait_status set) or times out (FALSE).  hdSimHostStop() still
 * has to be called: it unmounts and removes the directory. */
GPid hdSimHostPid(hdSimHost *sim);
gboolean hdSimHostWaitExit(hdSimHost *sim, guint timeout_ms, int *wait_status);

/* Releases run after the close returned: wait until group @group is no
 * longer owned (FALSE on timeout). */
gboolean hdSimHostWaitGroupFree(hdSimHost *sim, int group, guint timeout_ms);

/* Wait until the event log has an @event (for @address, unless NULL). */
gboolean hdSimHostWaitEvent(hdSimHost *sim, const char *event, const char *address,
                            guint timeout_ms);

G_END_DECLS
