/*
 * test-process.c: which processes hostdev may signal (src/util/hdprocess.c)
 *
 * hdProcessCheckSignallable is what stands between a client's pid and a
 * SIGTERM: never pid 1 or hostdev itself, only a process (not a thread),
 * and only one of the requester's uid unless root asked.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "hostdev/error.h"
#include "util/hdprocess.h"

#define PROC "/proc"


/* A child that waits to be killed. */
static pid_t
startChild(void)
{
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}


static void
stopChild(pid_t pid)
{
    kill(pid, SIGKILL);
    g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
}


static void
testInit(void)
{
    g_autoptr(GError) error = NULL;

    /* Not even for root. */
    g_assert_false(hdProcessCheckSignallable(PROC, 1, -1, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_PERMISSION);
    g_assert_nonnull(strstr(error->message, "init"));
}


static void
testSelf(void)
{
    g_autoptr(GError) error = NULL;

    g_assert_false(hdProcessCheckSignallable(PROC, getpid(), -1, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_PERMISSION);
    g_assert_nonnull(strstr(error->message, "own process"));
}


static void
testGone(void)
{
    g_autoptr(GError) error = NULL;
    pid_t pid = startChild();

    stopChild(pid);
    g_assert_false(hdProcessCheckSignallable(PROC, pid, -1, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
    g_clear_error(&error);
    g_assert_false(hdProcessCheckSignallable(PROC, 0, -1, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_NOT_FOUND);
}


typedef struct {
    GAsyncQueue *tid;           /* the thread tells its id */
    GAsyncQueue *done;          /* the test lets it end */
} ThreadData;


static gpointer
threadWait(gpointer opaque)
{
    ThreadData *data = opaque;

    g_async_queue_push(data->tid, GINT_TO_POINTER((int)syscall(SYS_gettid)));
    g_async_queue_pop(data->done);
    return NULL;
}


static void
testThread(void)
{
    ThreadData data = { g_async_queue_new(), g_async_queue_new() };
    g_autoptr(GError) error = NULL;
    GThread *thread = g_thread_new("tid", threadWait, &data);
    pid_t tid = GPOINTER_TO_INT(g_async_queue_pop(data.tid));

    g_assert_false(hdProcessCheckSignallable(PROC, tid, -1, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "thread"));
    g_async_queue_push(data.done, GINT_TO_POINTER(1));
    g_thread_join(thread);
    g_async_queue_unref(data.tid);
    g_async_queue_unref(data.done);
}


static void
testUid(void)
{
    g_autoptr(GError) error = NULL;
    pid_t pid = startChild();

    /* Root asks: any uid; the owner asks: its own. */
    g_assert_true(hdProcessCheckSignallable(PROC, pid, -1, &error));
    g_assert_no_error(error);
    g_assert_true(hdProcessCheckSignallable(PROC, pid, getuid(), &error));
    g_assert_no_error(error);
    /* Anyone else: refused, naming both uids. */
    g_assert_false(hdProcessCheckSignallable(PROC, pid, getuid() + 1, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_PERMISSION);
    g_assert_nonnull(strstr(error->message, "runs as uid"));
    stopChild(pid);
}


/* A process that changed only its effective uid is not the other uid's. */
static void
testMixedUids(void)
{
    g_autoptr(GError) error = NULL;
    int ready[2];
    char byte;
    pid_t pid;

    if (geteuid() != 0) {
        g_test_skip("changing uids needs root");
        return;
    }
    g_assert_cmpint(pipe(ready), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        close(ready[0]);
        if (setresuid(0, 65534, 0) < 0)
            _exit(1);
        byte = 1;
        if (write(ready[1], &byte, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    g_assert_cmpint(read(ready[0], &byte, 1), ==, 1);
    close(ready[0]);
    g_assert_false(hdProcessCheckSignallable(PROC, pid, 65534, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_PERMISSION);
    g_clear_error(&error);
    g_assert_false(hdProcessCheckSignallable(PROC, pid, 0, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_PERMISSION);
    stopChild(pid);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/process/signallable/init", testInit);
    g_test_add_func("/process/signallable/self", testSelf);
    g_test_add_func("/process/signallable/gone", testGone);
    g_test_add_func("/process/signallable/thread", testThread);
    g_test_add_func("/process/signallable/uid", testUid);
    g_test_add_func("/process/signallable/mixed-uids", testMixedUids);
    return g_test_run();
}
