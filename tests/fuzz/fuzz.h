/*
 * fuzz.h: what every fuzz target defines
 *
 * A target is one LLVMFuzzerTestOneInput.  With -Dfuzzing=true (clang) it
 * links with libFuzzer; otherwise with fuzz-replay.c, whose main() runs the
 * target on every file of the seed corpus, so the `fuzz` suite replays the
 * corpus (crashes found earlier included) in every `make check`.
 *
 * A target checks properties, not only "does not crash": when the parser
 * accepts an input, what it produced must format and parse back to the
 * same thing.  A broken property aborts (g_error), which libFuzzer reports
 * as a crash with the input saved.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <glib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called once before the first input (libFuzzer's hook, also called by
 * the replay main). */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Quiet GLib's logging below errors: a target feeds garbage on purpose,
 * and a warning per input would drown libFuzzer's output. */
static inline void
fuzzQuietLogs(void)
{
    g_log_set_writer_func(g_log_writer_default, NULL, NULL);
    g_setenv("G_MESSAGES_DEBUG", "", TRUE);
}
