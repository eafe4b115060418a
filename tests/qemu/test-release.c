/*
 * test-release.c: the holder watch with real processes holding plain files
 *
 * A child process holds a temporary file as QEMU holds /dev/vfio/N; the
 * watch must say "held" while it does and wake up when it lets go, by
 * inotify, by the pidfd, or by polling alone.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "hostdev/error.h"
#include "hostdev/release.h"

typedef struct {
    char *dir;
    char *path;
    GMainContext *ctx;
    pid_t holder;
    int control;                 /* write a byte: the holder closes its file */
} Fixture;


static void
fixtureSetUp(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    f->dir = g_dir_make_tmp("hdrelease-XXXXXX", &error);
    g_assert_no_error(error);
    f->path = g_build_filename(f->dir, "group", NULL);
    g_assert_true(g_file_set_contents(f->path, "", 0, NULL));
    f->ctx = g_main_context_new();
    f->holder = -1;
    f->control = -1;
}


/* A child that opens the file, says so, closes it when told, then sleeps
 * until killed (or exits at once with @exit_after_close). */
static void
holderStart(Fixture *f, gboolean exit_after_close)
{
    int ready[2];
    int control[2];
    char c;

    g_assert_cmpint(pipe2(ready, O_CLOEXEC), ==, 0);
    g_assert_cmpint(pipe2(control, O_CLOEXEC), ==, 0);
    f->holder = fork();
    g_assert_cmpint(f->holder, >=, 0);
    if (f->holder == 0) {
        int fd = open(f->path, O_RDWR);

        if (fd < 0 || write(ready[1], "r", 1) != 1)
            _exit(1);
        if (read(control[0], &c, 1) != 1)
            _exit(0);
        close(fd);
        if (exit_after_close)
            _exit(0);
        pause();
        _exit(0);
    }
    close(ready[1]);
    close(control[0]);
    g_assert_cmpint(read(ready[0], &c, 1), ==, 1);
    close(ready[0]);
    f->control = control[1];
}


static void
holderRelease(Fixture *f)
{
    g_assert_cmpint(write(f->control, "c", 1), ==, 1);
}


static void
holderKill(Fixture *f)
{
    if (f->holder > 0) {
        kill(f->holder, SIGKILL);
        waitpid(f->holder, NULL, 0);
    }
    f->holder = -1;
}


static void
fixtureTearDown(Fixture *f, gconstpointer data)
{
    holderKill(f);
    if (f->control >= 0)
        close(f->control);
    g_unlink(f->path);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
    g_main_context_unref(f->ctx);
}


static hdReleaseWatch *
watchNew(Fixture *f, const hdReleaseWatchOptions *opts, hdReleaseFreeFunc func,
         gpointer opaque)
{
    const char *paths[] = { f->path, NULL };
    g_autoptr(GError) error = NULL;
    hdReleaseWatch *watch = hdReleaseWatchNew(paths, opts, f->ctx, func, opaque, &error);

    g_assert_no_error(error);
    return watch;
}


static void
testFreeAtStart(Fixture *f, gconstpointer data)
{
    g_autoptr(hdReleaseWatch) watch = watchNew(f, NULL, NULL, NULL);
    g_autoptr(GError) error = NULL;

    g_assert_true(hdReleaseWatchIsFree(watch));
    g_assert_true(hdReleaseWatchWait(watch, 0, &error));
    g_assert_no_error(error);
    /* Nothing left on the context: idle costs nothing. */
    g_assert_false(g_main_context_pending(f->ctx));
}


static void
onFree(hdReleaseWatch *watch, gpointer opaque)
{
    (*(guint *)opaque)++;
}


/* The holder closes (and stays alive): inotify wakes the watch long before
 * the first poll would (the poll interval is an hour). */
static void
testCloseWakes(Fixture *f, gconstpointer data)
{
    hdReleaseWatchOptions opts = { .poll_min_ms = 3600000, .poll_max_ms = 3600000 };
    g_autoptr(hdReleaseWatch) watch = NULL;
    g_autoptr(GError) error = NULL;
    guint calls = 0;

    holderStart(f, FALSE);
    opts.pid = f->holder;
    watch = watchNew(f, &opts, onFree, &calls);
    g_assert_false(hdReleaseWatchIsFree(watch));
    holderRelease(f);
    g_assert_true(hdReleaseWatchWait(watch, 20000, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(calls, ==, 1);
    g_assert_false(g_main_context_pending(f->ctx));
}


/* Iterate @ctx for @ms. */
static void
contextRunFor(GMainContext *ctx, guint ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;

    while (g_get_monotonic_time() < end) {
        while (g_main_context_iteration(ctx, FALSE))
            ;
        g_usleep(2000);
    }
}


/* One of two holders closes: the event finds the file still held, as when
 * the kernel is still releasing a group after its last close.  The watch
 * starts polling often again (from poll_min_ms) instead of waiting out its
 * long backoff. */
static void
testEventRestartsPolling(Fixture *f, gconstpointer data)
{
    hdReleaseWatchOptions opts = { .poll_min_ms = 20, .poll_max_ms = 3600000,
                                   .flags = HD_RELEASE_WATCH_NO_PIDFD };
    g_autoptr(hdReleaseWatch) watch = NULL;
    g_autoptr(GError) error = NULL;
    guint before;
    int fd;

    holderStart(f, FALSE);
    /* After the fork: the holder must not inherit it. */
    fd = open(f->path, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    watch = watchNew(f, &opts, NULL, NULL);
    /* Polls at 20, 60, 140, 300, 620 and 1260 ms; the next at 2540. */
    contextRunFor(f->ctx, 1500);
    before = hdReleaseWatchChecks(watch);
    holderRelease(f);
    contextRunFor(f->ctx, 500);
    /* The event's check, then polls 20, 60, 140 and 300 ms after it. */
    g_assert_cmpuint(hdReleaseWatchChecks(watch) - before, >=, 4);
    g_assert_false(hdReleaseWatchIsFree(watch));

    close(fd);
    g_assert_true(hdReleaseWatchWait(watch, 20000, &error));
    g_assert_no_error(error);
}


/* The holder is killed: the pidfd wakes the watch (no inotify here). */
static void
testExitWakes(Fixture *f, gconstpointer data)
{
    hdReleaseWatchOptions opts = {
        .flags = HD_RELEASE_WATCH_NO_INOTIFY,
        .poll_min_ms = 3600000,
        .poll_max_ms = 3600000,
    };
    g_autoptr(hdReleaseWatch) watch = NULL;
    g_autoptr(GError) error = NULL;

    holderStart(f, FALSE);
    opts.pid = f->holder;
    watch = watchNew(f, &opts, NULL, NULL);
    g_assert_false(hdReleaseWatchIsFree(watch));
    kill(f->holder, SIGKILL);
    g_assert_true(hdReleaseWatchWait(watch, 20000, &error));
    g_assert_no_error(error);
    holderKill(f);
}


/* No inotify, no pidfd: polling alone finds the close. */
static void
testPollingAlone(Fixture *f, gconstpointer data)
{
    hdReleaseWatchOptions opts = {
        .flags = HD_RELEASE_WATCH_NO_INOTIFY | HD_RELEASE_WATCH_NO_PIDFD,
        .poll_min_ms = 5,
        .poll_max_ms = 20,
    };
    g_autoptr(hdReleaseWatch) watch = NULL;
    g_autoptr(GError) error = NULL;
    guint checks;

    holderStart(f, TRUE);
    watch = watchNew(f, &opts, NULL, NULL);
    g_assert_false(hdReleaseWatchIsFree(watch));
    checks = hdReleaseWatchChecks(watch);
    holderRelease(f);
    g_assert_true(hdReleaseWatchWait(watch, 20000, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(hdReleaseWatchChecks(watch), >, checks);
}


/* Still held at the deadline: a timeout naming the holder, and the watch
 * goes on in the background. */
static void
testTimeoutNamesHolder(Fixture *f, gconstpointer data)
{
    g_autoptr(hdReleaseWatch) watch = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *pid = NULL;
    guint calls = 0;

    holderStart(f, FALSE);
    watch = watchNew(f, NULL, onFree, &calls);
    g_assert_false(hdReleaseWatchWait(watch, 30, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_TIMEOUT);
    pid = g_strdup_printf("pid %d", (int)f->holder);
    g_assert_nonnull(strstr(error->message, pid));
    g_assert_nonnull(strstr(error->message, f->path));
    g_clear_error(&error);
    g_assert_cmpuint(calls, ==, 0);

    holderRelease(f);
    while (!hdReleaseWatchIsFree(watch))
        g_main_context_iteration(f->ctx, TRUE);
    g_assert_cmpuint(calls, ==, 1);
}


/* Freeing the watch from its own function is allowed. */
static void
onFreeDrop(hdReleaseWatch *watch, gpointer opaque)
{
    hdReleaseWatch **slot = opaque;

    g_assert_true(*slot == watch);
    g_clear_pointer(slot, hdReleaseWatchFree);
}


static void
testFreeFromCallback(Fixture *f, gconstpointer data)
{
    hdReleaseWatch *watch = NULL;

    holderStart(f, FALSE);
    watch = watchNew(f, NULL, onFreeDrop, &watch);
    holderRelease(f);
    while (watch)
        g_main_context_iteration(f->ctx, TRUE);
}


static void
testDeadline(void)
{
    g_assert_cmpuint(hdReleaseDeadlineMs(5000, 2000, 0), ==, 5000);
    g_assert_cmpuint(hdReleaseDeadlineMs(5000, 2000, 16), ==, 37000);
    g_assert_cmpuint(hdReleaseDeadlineMs(G_MAXUINT - 1, 10, 3), ==, G_MAXUINT);
}


static void
testNoPaths(void)
{
    const char *none[] = { NULL };
    g_autoptr(GError) error = NULL;

    g_assert_null(hdReleaseWatchNew(none, NULL, NULL, NULL, NULL, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

#define ADD(name, func) \
    g_test_add(name, Fixture, NULL, fixtureSetUp, func, fixtureTearDown)
    ADD("/release/free-at-start", testFreeAtStart);
    ADD("/release/close-wakes", testCloseWakes);
    ADD("/release/exit-wakes", testExitWakes);
    ADD("/release/event-restarts-polling", testEventRestartsPolling);
    ADD("/release/polling-alone", testPollingAlone);
    ADD("/release/timeout-names-holder", testTimeoutNamesHolder);
    ADD("/release/free-from-callback", testFreeFromCallback);
#undef ADD
    g_test_add_func("/release/deadline", testDeadline);
    g_test_add_func("/release/no-paths", testNoPaths);
    return g_test_run();
}
