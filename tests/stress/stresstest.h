/*
 * stresstest.h: helpers shared by the stress tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include <glib.h>

/* A stand-in for a guest's QEMU: a child holding every file of @nodes
 * (char *) open, as QEMU holds its groups, and nothing else.  Returns its
 * pid once the files are open, or 0 when one could not be opened (a group
 * still held by another QEMU): unlike mgrtestStartQemu, a refusal is an
 * outcome, not a test failure.  The child dies with the thread that
 * started it (PR_SET_PDEATHSIG), so a failing test leaves no QEMU holding
 * meson's output pipe open. */
pid_t stressStartQemu(GPtrArray *nodes);
