/*
 * fuzz-qmp-command.c: what the QMP client writes to QEMU
 *
 * The input is a command name, a NUL byte, then the command's arguments
 * as JSON text.  Whatever name and arguments a caller passes, the client
 * must write exactly one line that QEMU reads back as that command with
 * those arguments: a newline or a quote in a name or an argument must not
 * end the message early or smuggle a second command in.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "hostdev/qemu.h"

#define FUZZ_QMP_GREETING \
    "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 8, \"minor\": 2, \"micro\": 0}}, " \
    "\"capabilities\": []}}\n{\"return\": {}, \"id\": \"hd-1\"}\n"


static void
fuzzOnReply(hdQmp *qmp, JsonNode *ret, const GError *error, gpointer opaque)
{
}


/* Everything the client wrote so far. */
static GString *
fuzzReadAll(int fd)
{
    GString *out = g_string_new(NULL);
    char buf[4096];
    ssize_t n;

    while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        g_string_append_len(out, buf, n);
    return out;
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzzQuietLogs();
    signal(SIGPIPE, SIG_IGN);
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, '\0', size);
    g_autofree char *command = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(JsonParser) wire = json_parser_new();
    g_autoptr(GMainContext) ctx = g_main_context_new();
    g_autoptr(hdQmp) qmp = NULL;
    g_autoptr(GString) written = NULL;
    g_auto(GStrv) lines = NULL;
    JsonNode *args;
    JsonObject *msg;
    int fds[2];

    if (!nul || size > 64 * 1024)
        return 0;
    command = g_strndup((const char *)data, nul - (const char *)data);
    /* Command names and arguments come from hostdev's own code and from
     * validated XML: always UTF-8. */
    if (!g_utf8_validate(command, -1, NULL) ||
        !json_parser_load_from_data(parser, nul + 1, size - (nul + 1 - (const char *)data),
                                    NULL))
        return 0;
    args = json_parser_get_root(parser);
    if (args && !JSON_NODE_HOLDS_OBJECT(args))
        return 0;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    g_assert_cmpint(write(fds[1], FUZZ_QMP_GREETING, strlen(FUZZ_QMP_GREETING)), ==,
                    strlen(FUZZ_QMP_GREETING));
    qmp = hdQmpNewFromFd(fds[0], ctx);
    g_assert_true(hdQmpNegotiate(qmp, 5000, NULL));
    hdQmpCommandAsync(qmp, command, args, NULL, 0, 0, fuzzOnReply, NULL);
    while (g_main_context_iteration(ctx, FALSE))
        ;
    written = fuzzReadAll(fds[1]);

    /* qmp_capabilities, then our command: two lines, nothing after. */
    if (!g_str_has_suffix(written->str, "\n"))
        g_error("the client wrote an unterminated message: %s", written->str);
    lines = g_strsplit(written->str, "\n", -1);
    if (g_strv_length(lines) != 3 || *lines[2])
        g_error("the client wrote %u lines for one command: %s", g_strv_length(lines) - 1,
                written->str);
    if (!json_parser_load_from_data(wire, lines[1], -1, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(wire)))
        g_error("the client wrote a message that is not a JSON object: %s", lines[1]);
    msg = json_node_get_object(json_parser_get_root(wire));
    if (g_strcmp0(json_object_get_string_member_with_default(msg, "execute", NULL),
                  command) != 0)
        g_error("the command does not read back as '%s': %s", command, lines[1]);
    if (g_strcmp0(json_object_get_string_member_with_default(msg, "id", NULL), "hd-2") != 0)
        g_error("the command lost its id: %s", lines[1]);
    if (args && !json_node_equal(args, json_object_get_member(msg, "arguments")))
        g_error("the arguments do not read back: %s", lines[1]);
    hdQmpClose(qmp);
    close(fds[1]);
    return 0;
}
