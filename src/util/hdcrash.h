/*
 * hdcrash.h: crash points for crash-safety tests
 *
 * hdCrashPoint("name") marks a place where a crash must be survivable.
 * HD_CRASH_TRACE=FILE appends the name of every point reached to FILE, one
 * per line, so tests enumerate the points a scenario passes instead of
 * hand-picking them; HD_CRASH_AT=NAME[:N] kills the process with SIGKILL at
 * the N-th time (default the first) NAME is reached.  Without either
 * variable a crash point costs one branch.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

void hdCrashPoint(const char *name);
