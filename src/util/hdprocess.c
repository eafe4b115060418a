/*
 * hdprocess.c: signalling and waiting for a process through a pidfd
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>

#include "hdinternal.h"
#include "hdprocess.h"


gboolean
hdPidfdOpen(pid_t pid, int *pidfd, GError **error)
{
    *pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (*pidfd >= 0)
        return TRUE;
    if (errno == ESRCH)
        return TRUE;
    hdErrorSetSystem(error, errno, _("cannot open a pidfd for process %1$d"), (int)pid);
    return FALSE;
}


gboolean
hdPidfdSendSignal(int pidfd, pid_t pid, int sig, GError **error)
{
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0 || errno == ESRCH)
        return TRUE;
    hdErrorSetSystem(error, errno, _("cannot send signal %1$d to process %2$d"), sig, (int)pid);
    return FALSE;
}


int
hdPidfdGetFd(int pidfd, int targetfd)
{
    return (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, 0);
}


gboolean
hdPidfdWait(int pidfd, guint timeout_ms)
{
    struct pollfd pfd = { .fd = pidfd, .events = POLLIN };
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        int ret = poll(&pfd, 1, left > 0 ? (int)MIN(left, G_MAXINT) : 0);

        if (ret > 0)
            return TRUE;
        if (ret == 0 || (ret < 0 && errno != EINTR))
            return FALSE;
    }
}


int
hdProcessCountFds(const char *proc_root, pid_t pid)
{
    g_autofree char *dir = g_strdup_printf("%s/%d/fd", proc_root, (int)pid);
    g_autoptr(GDir) fds = g_dir_open(dir, 0, NULL);
    int count = 0;

    if (!fds)
        return -1;
    while (g_dir_read_name(fds))
        count++;
    return count;
}


/* The command name ends at the last ')' (it may hold spaces and
 * parentheses); split there, " S 1 ..." gives "", then field 3 and on:
 * field 22 is at index 20. */
#define HD_STAT_STARTTIME_AFTER_COMM 20

guint64
hdProcessStartTime(const char *proc_root, pid_t pid)
{
    g_autofree char *path = g_strdup_printf("%s/%d/stat", proc_root, (int)pid);
    g_autofree char *stat = NULL;
    g_auto(GStrv) fields = NULL;
    const char *end;
    guint64 start = 0;

    if (pid <= 0 || !g_file_get_contents(path, &stat, NULL, NULL) ||
        !(end = strrchr(stat, ')')))
        return 0;
    fields = g_strsplit(end + 1, " ", HD_STAT_STARTTIME_AFTER_COMM + 2);
    if (g_strv_length(fields) < HD_STAT_STARTTIME_AFTER_COMM + 1 ||
        !g_ascii_string_to_unsigned(fields[HD_STAT_STARTTIME_AFTER_COMM], 10, 1, G_MAXUINT64,
                                    &start, NULL))
        return 0;
    return start;
}
