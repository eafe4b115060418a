/*
 * hdprocess.c: signalling and waiting for a process through a pidfd
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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


GStrv
hdProcessStatusField(const char *proc_root, pid_t pid, const char *field)
{
    g_autofree char *path = g_strdup_printf("%s/%d/status", proc_root, (int)pid);
    g_autofree char *status = NULL;
    g_auto(GStrv) lines = NULL;
    gsize len = strlen(field);
    guint i;

    if (!g_file_get_contents(path, &status, NULL, NULL))
        return NULL;
    lines = g_strsplit(status, "\n", -1);
    for (i = 0; lines[i]; i++) {
        g_autoptr(GStrvBuilder) words = NULL;
        g_auto(GStrv) split = NULL;
        guint j;

        if (strncmp(lines[i], field, len) != 0 || lines[i][len] != ':')
            continue;
        words = g_strv_builder_new();
        split = g_strsplit_set(lines[i] + len + 1, " \t", -1);
        for (j = 0; split[j]; j++) {
            if (*split[j])
                g_strv_builder_add(words, split[j]);
        }
        return g_strv_builder_end(words);
    }
    return NULL;
}


/* The uids (real, effective, saved, file system) and the thread-group id
 * of @pid; FALSE if it is gone or unreadable. */
static gboolean
hdProcessReadStatus(const char *proc_root, pid_t pid, guint64 uids[4], guint64 *tgid)
{
    g_auto(GStrv) uid_words = hdProcessStatusField(proc_root, pid, "Uid");
    g_auto(GStrv) tgid_words = hdProcessStatusField(proc_root, pid, "Tgid");
    guint i;

    if (!uid_words || g_strv_length(uid_words) != 4 || !tgid_words || !tgid_words[0] ||
        !g_ascii_string_to_unsigned(tgid_words[0], 10, 1, G_MAXINT32, tgid, NULL))
        return FALSE;
    for (i = 0; i < 4; i++) {
        if (!g_ascii_string_to_unsigned(uid_words[i], 10, 0, G_MAXUINT32, &uids[i], NULL))
            return FALSE;
    }
    return TRUE;
}


gboolean
hdProcessCheckSignallable(const char *proc_root, pid_t pid, gint64 uid, GError **error)
{
    guint64 uids[4] = { 0 };
    guint64 tgid = 0;
    guint i;

    if (pid == 1) {
        hdErrorSet(error, HD_ERROR_PERMISSION, "%s",
                   _("pid 1 is the init process: hostdev never signals it"));
        return FALSE;
    }
    if (pid == getpid()) {
        hdErrorSet(error, HD_ERROR_PERMISSION,
                   _("pid %1$d is hostdev's own process: it never signals itself"), (int)pid);
        return FALSE;
    }
    if (pid <= 0 || !hdProcessReadStatus(proc_root, pid, uids, &tgid)) {
        hdErrorSet(error, HD_ERROR_NOT_FOUND, _("no process with pid %1$d"), (int)pid);
        return FALSE;
    }
    if (tgid != (guint64)pid) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("pid %1$d is a thread of process %2$d, not a process"), (int)pid,
                   (int)tgid);
        return FALSE;
    }
    for (i = 0; uid >= 0 && i < G_N_ELEMENTS(uids); i++) {
        if (uids[i] != (guint64)uid) {
            hdErrorSet(error, HD_ERROR_PERMISSION,
                       _("process %1$d runs as uid %2$" G_GUINT64_FORMAT ", not as uid %3$"
                         G_GINT64_FORMAT), (int)pid, uids[i], uid);
            return FALSE;
        }
    }
    return TRUE;
}
