/*
 * hdprocess.h: signalling and waiting for a process through a pidfd
 *
 * A pidfd names one process for good: signals cannot reach a new process
 * that reused the pid, and poll() on it says when the process exited
 * (whether or not it is our child).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <sys/types.h>

#include <glib.h>

/* A pidfd for @pid in *pidfd, or -1 there when the process is already gone. */
gboolean hdPidfdOpen(pid_t pid, int *pidfd, GError **error);

gboolean hdPidfdSendSignal(int pidfd, pid_t pid, int sig, GError **error);

/* A duplicate, in this process, of fd @targetfd of the process behind
 * @pidfd (pidfd_getfd(2): needs ptrace rights over it); -1 with errno set
 * on failure. */
int hdPidfdGetFd(int pidfd, int targetfd);

/* Wait up to @timeout_ms for the process to exit; TRUE if it did. */
gboolean hdPidfdWait(int pidfd, guint timeout_ms);

/* How many fds process @pid has open (-1 if it is gone or unreadable). */
int hdProcessCountFds(const char *proc_root, pid_t pid);

/* When process @pid started, in clock ticks after boot (field 22 of
 * /proc/PID/stat); 0 if it is gone or unreadable.  With the pid it names
 * one process for good: a process that reused the pid started later. */
guint64 hdProcessStartTime(const char *proc_root, pid_t pid);

/* The values of line "@field:" of /proc/PID/status (e.g. "Uid": real,
 * effective, saved and file-system uid), NULL if the process is gone or
 * has no such line. */
GStrv hdProcessStatusField(const char *proc_root, pid_t pid, const char *field);

/* Whether @pid may be signalled as a guest's QEMU on behalf of @uid (-1:
 * of root, whose request may name any uid's process): never pid 1 nor
 * this very process; a process (not a thread of one) that exists; and,
 * with @uid >= 0, one whose real, effective, saved and file-system uids
 * are all @uid.  HD_ERROR_PERMISSION, HD_ERROR_NOT_FOUND or
 * HD_ERROR_INVALID_ARG (a thread) says why not. */
gboolean hdProcessCheckSignallable(const char *proc_root, pid_t pid, gint64 uid,
                                   GError **error);
