/*
 * stresstest.c: helpers shared by the stress tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stresstest.h"


pid_t
stressStartQemu(GPtrArray *nodes)
{
    int ready[2];
    char byte = 0;
    pid_t pid;
    guint i;

    g_assert_cmpint(pipe2(ready, O_CLOEXEC), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        int fd;

        /* Only async-signal-safe calls in the child.  A real QEMU is
         * exec'ed, so it holds none of our files: close what the fork
         * copied (another thread's group fds would keep its group held). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (fd = 3; fd < 4096; fd++) {
            if (fd != ready[1])
                close(fd);
        }
        for (i = 0; i < nodes->len; i++) {
            if (open(g_ptr_array_index(nodes, i), O_RDWR) < 0) {
                byte = 'f';
                (void)!write(ready[1], &byte, 1);
                _exit(1);
            }
        }
        byte = 'r';
        (void)!write(ready[1], &byte, 1);
        for (;;)
            pause();
    }
    close(ready[1]);
    g_assert_cmpint(read(ready[0], &byte, 1), ==, 1);
    close(ready[0]);
    if (byte != 'r') {
        g_assert_cmpint(waitpid(pid, NULL, 0), ==, pid);
        return 0;
    }
    return pid;
}
