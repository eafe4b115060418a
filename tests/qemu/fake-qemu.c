/*
 * fake-qemu.c: a QMP server that holds files the way QEMU holds VFIO groups
 *
 *   fake-qemu --socket PATH [--version X.Y.Z] [--no-schema]
 *             [--mode modern|old|ignore|slow] [--close-delay-ms N]
 *             [--unplug-delay-ms N] [--finalize-event NAME] --device ALIAS=PATH...
 *
 * Each --device is a passed-through device: PATH (its group node, e.g. a
 * simulated /dev/vfio/N) is opened at start, once per distinct path, as
 * QEMU opens a group once for all its devices.  device_del ALIAS then, per
 * --mode:
 *   modern  closes the group if it was its last device, then sends
 *           DEVICE_DELETED (QEMU >= 2.11: the event comes from finalize);
 *   old     sends DEVICE_DELETED at once and closes the group
 *           --close-delay-ms later (QEMU < 2.11, seed 000: ~5 s);
 *   ignore  does nothing (a guest that ignores the unplug);
 *   slow    a slow guest: --unplug-delay-ms later, as modern.  Meanwhile
 *           the device is still there, and another device_del of it is
 *           refused as QEMU >= 6.1 refuses it ("already in the process of
 *           unplug").
 * With --finalize-event, NAME {"device": ALIAS} follows the close.
 * qom-list of /machine/peripheral lists the devices still there.
 * --no-schema answers query-qmp-schema with CommandNotFound (QEMU < 2.5).
 * Prints "ready" once it listens and holds its files.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

typedef struct {
    char *alias;
    char *path;
    gboolean present;
    gboolean unplugging;         /* slow: device_del accepted, not done yet */
} FakeDevice;

typedef struct {
    gint64 when;                 /* monotonic, us */
    char *alias;
} FakeTimer;

static struct {
    int client;
    GHashTable *fds;             /* path -> fd + 1 */
    GPtrArray *devices;          /* FakeDevice * */
    GPtrArray *timers;           /* FakeTimer * */
    char *mode;
    guint close_delay_ms;
    guint unplug_delay_ms;
    char *finalize_event;
    gboolean no_schema;
    int version[3];
} fake;


static void
fakeSend(const char *text)
{
    gsize len = strlen(text);
    gsize done = 0;

    while (fake.client >= 0 && done < len) {
        ssize_t n = send(fake.client, text + done, len - done, MSG_NOSIGNAL);

        if (n <= 0)
            return;
        done += n;
    }
}


static void
fakeEvent(const char *name, const char *alias)
{
    g_autofree char *text = NULL;
    gint64 now = g_get_real_time();

    text = g_strdup_printf("{\"timestamp\": {\"seconds\": %" G_GINT64_FORMAT ", "
                           "\"microseconds\": %" G_GINT64_FORMAT "}, \"event\": \"%s\", "
                           "\"data\": {\"device\": \"%s\", \"path\": "
                           "\"/machine/peripheral/%s\"}}\r\n",
                           now / G_USEC_PER_SEC, now % G_USEC_PER_SEC, name, alias, alias);
    fakeSend(text);
}


static FakeDevice *
fakeFindDevice(const char *alias)
{
    guint i;

    for (i = 0; i < fake.devices->len; i++) {
        FakeDevice *dev = g_ptr_array_index(fake.devices, i);

        if (dev->present && g_str_equal(dev->alias, alias))
            return dev;
    }
    return NULL;
}


/* The device is gone from the guest: close its group if no other device
 * of it is left, as QEMU's vfio_put_group does. */
static void
fakeFinalize(FakeDevice *dev)
{
    guint i;
    gpointer fd;

    dev->present = FALSE;
    for (i = 0; i < fake.devices->len; i++) {
        FakeDevice *other = g_ptr_array_index(fake.devices, i);

        if (other->present && g_str_equal(other->path, dev->path))
            return;
    }
    if ((fd = g_hash_table_lookup(fake.fds, dev->path))) {
        close(GPOINTER_TO_INT(fd) - 1);
        g_hash_table_remove(fake.fds, dev->path);
    }
}


static void
fakeAddTimer(const char *alias, guint delay_ms)
{
    FakeTimer *timer = g_new0(FakeTimer, 1);

    timer->when = g_get_monotonic_time() + (gint64)delay_ms * 1000;
    timer->alias = g_strdup(alias);
    g_ptr_array_add(fake.timers, timer);
}


/* QEMU >= 2.11: the group closed, then DEVICE_DELETED from finalize. */
static void
fakeUnplugModern(FakeDevice *dev)
{
    g_autofree char *alias = g_strdup(dev->alias);

    fakeFinalize(dev);
    fakeEvent("DEVICE_DELETED", alias);
    if (fake.finalize_event)
        fakeEvent(fake.finalize_event, alias);
}


static void
fakeDeviceDel(const char *id, const char *alias)
{
    FakeDevice *dev = alias ? fakeFindDevice(alias) : NULL;
    g_autofree char *reply = NULL;

    if (!dev) {
        reply = g_strdup_printf("{\"id\": \"%s\", \"error\": {\"class\": \"DeviceNotFound\", "
                                "\"desc\": \"Device '%s' not found\"}}\r\n", id,
                                alias ? alias : "");
        fakeSend(reply);
        return;
    }
    if (dev->unplugging) {
        reply = g_strdup_printf("{\"id\": \"%s\", \"error\": {\"class\": \"GenericError\", "
                                "\"desc\": \"Device %s is already in the process of unplug\"}}"
                                "\r\n", id, alias);
        fakeSend(reply);
        return;
    }
    reply = g_strdup_printf("{\"return\": {}, \"id\": \"%s\"}\r\n", id);
    fakeSend(reply);

    if (g_str_equal(fake.mode, "modern")) {
        fakeUnplugModern(dev);
    } else if (g_str_equal(fake.mode, "old")) {
        fakeEvent("DEVICE_DELETED", alias);
        fakeAddTimer(alias, fake.close_delay_ms);
    } else if (g_str_equal(fake.mode, "slow")) {
        dev->unplugging = TRUE;
        fakeAddTimer(alias, fake.unplug_delay_ms);
    }
}


/* The children of /machine/peripheral: the devices still there. */
static char *
fakeQomList(JsonObject *args)
{
    g_autoptr(GString) out = g_string_new("[{\"name\": \"type\", \"type\": \"string\"}");
    guint i;

    if (!args || g_strcmp0(json_object_get_string_member_with_default(args, "path", NULL),
                           "/machine/peripheral") != 0)
        return NULL;
    for (i = 0; i < fake.devices->len; i++) {
        FakeDevice *dev = g_ptr_array_index(fake.devices, i);

        if (dev->present)
            g_string_append_printf(out, ", {\"name\": \"%s\", \"type\": \"child<vfio-pci>\"}",
                                   dev->alias);
    }
    g_string_append(out, "]");
    return g_string_free(g_steal_pointer(&out), FALSE);
}


static char *
fakeSchema(void)
{
    g_autoptr(GString) out = g_string_new("[{\"name\": \"query-status\", \"meta-type\": "
                                          "\"command\"}, {\"name\": \"SHUTDOWN\", "
                                          "\"meta-type\": \"event\"}, {\"name\": "
                                          "\"DEVICE_DELETED\", \"meta-type\": \"event\"}");

    if (fake.finalize_event)
        g_string_append_printf(out, ", {\"name\": \"%s\", \"meta-type\": \"event\"}",
                               fake.finalize_event);
    g_string_append(out, "]");
    return g_string_free(g_steal_pointer(&out), FALSE);
}


static gboolean
fakeCommand(const char *line)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autofree char *ret = NULL;
    g_autofree char *reply = NULL;
    JsonObject *cmd;
    JsonObject *args = NULL;
    const char *name;
    const char *id;

    if (!json_parser_load_from_data(parser, line, -1, NULL) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        fakeSend("{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n");
        return TRUE;
    }
    cmd = json_node_get_object(json_parser_get_root(parser));
    name = json_object_get_string_member_with_default(cmd, "execute", "");
    id = json_object_get_string_member_with_default(cmd, "id", "");
    if (json_object_has_member(cmd, "arguments"))
        args = json_object_get_object_member(cmd, "arguments");

    if (g_str_equal(name, "device_del")) {
        fakeDeviceDel(id, args ? json_object_get_string_member_with_default(args, "id", NULL)
                               : NULL);
        return TRUE;
    }
    if (g_str_equal(name, "quit")) {
        reply = g_strdup_printf("{\"return\": {}, \"id\": \"%s\"}\r\n", id);
        fakeSend(reply);
        return FALSE;
    }
    if (g_str_equal(name, "qmp_capabilities") || g_str_equal(name, "cont"))
        ret = g_strdup("{}");
    else if (g_str_equal(name, "query-version"))
        ret = g_strdup_printf("{\"qemu\": {\"major\": %d, \"minor\": %d, \"micro\": %d}, "
                              "\"package\": \"fake\"}", fake.version[0], fake.version[1],
                              fake.version[2]);
    else if (g_str_equal(name, "query-qmp-schema") && !fake.no_schema)
        ret = fakeSchema();
    else if (g_str_equal(name, "query-events"))
        ret = g_strdup("[{\"name\": \"SHUTDOWN\"}, {\"name\": \"DEVICE_DELETED\"}]");
    else if (g_str_equal(name, "qom-list"))
        ret = fakeQomList(args);

    if (ret)
        reply = g_strdup_printf("{\"return\": %s, \"id\": \"%s\"}\r\n", ret, id);
    else
        reply = g_strdup_printf("{\"id\": \"%s\", \"error\": {\"class\": \"CommandNotFound\", "
                                "\"desc\": \"The command %s has not been found\"}}\r\n", id,
                                name);
    fakeSend(reply);
    return TRUE;
}


/* Run the timers that are due; returns the poll timeout for the next one. */
static int
fakeRunTimers(void)
{
    gint64 now = g_get_monotonic_time();
    gint64 next = -1;
    guint i = 0;

    while (i < fake.timers->len) {
        FakeTimer *timer = g_ptr_array_index(fake.timers, i);
        FakeDevice *dev;

        if (timer->when > now) {
            next = next < 0 ? timer->when : MIN(next, timer->when);
            i++;
            continue;
        }
        if ((dev = fakeFindDevice(timer->alias)) && dev->unplugging) {
            fakeUnplugModern(dev);
        } else if (dev) {
            fakeFinalize(dev);
            if (fake.finalize_event)
                fakeEvent(fake.finalize_event, timer->alias);
        }
        g_free(timer->alias);
        g_ptr_array_remove_index(fake.timers, i);
    }
    return next < 0 ? -1 : (int)((next - now + 999) / 1000);
}


static gboolean
fakeAddDevice(const char *spec)
{
    const char *eq = strchr(spec, '=');
    FakeDevice *dev;

    if (!eq)
        return FALSE;
    dev = g_new0(FakeDevice, 1);
    dev->alias = g_strndup(spec, eq - spec);
    dev->path = g_strdup(eq + 1);
    dev->present = TRUE;
    g_ptr_array_add(fake.devices, dev);
    if (!g_hash_table_contains(fake.fds, dev->path)) {
        int fd = open(dev->path, O_RDWR | O_CLOEXEC);

        if (fd < 0) {
            g_printerr("fake-qemu: cannot open %s: %s\n", dev->path, g_strerror(errno));
            return FALSE;
        }
        g_hash_table_insert(fake.fds, g_strdup(dev->path), GINT_TO_POINTER(fd + 1));
    }
    return TRUE;
}


static int
fakeListen(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
    unlink(path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0) {
        g_printerr("fake-qemu: cannot listen on %s: %s\n", path, g_strerror(errno));
        return -1;
    }
    return fd;
}


/* Serve one client until it leaves or says quit. */
static gboolean
fakeServe(void)
{
    g_autoptr(GString) buf = g_string_new(NULL);
    g_autofree char *greeting = g_strdup_printf(
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %d, \"minor\": %d, \"major\": %d}, "
        "\"package\": \"fake\"}, \"capabilities\": []}}\r\n",
        fake.version[2], fake.version[1], fake.version[0]);

    fakeSend(greeting);
    for (;;) {
        struct pollfd pfd = { .fd = fake.client, .events = POLLIN };
        char chunk[4096];
        ssize_t got;
        char *nl;
        int rc = poll(&pfd, 1, fakeRunTimers());

        if (rc < 0 && errno != EINTR)
            return FALSE;
        if (rc <= 0)
            continue;
        if ((got = read(fake.client, chunk, sizeof(chunk))) <= 0)
            return TRUE;
        g_string_append_len(buf, chunk, got);
        while ((nl = memchr(buf->str, '\n', buf->len))) {
            g_autofree char *line = g_strndup(buf->str, nl - buf->str);

            g_string_erase(buf, 0, nl - buf->str + 1);
            if (!fakeCommand(line))
                return FALSE;
        }
    }
}


int
main(int argc, char **argv)
{
    g_autofree char *socket_path = NULL;
    g_autofree char *version = NULL;
    g_auto(GStrv) devices = NULL;
    gint close_delay = 0;
    gint unplug_delay = 0;
    GOptionEntry entries[] = {
        { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path, "QMP socket", "PATH" },
        { "version", 0, 0, G_OPTION_ARG_STRING, &version, "QEMU version", "X.Y.Z" },
        { "no-schema", 0, 0, G_OPTION_ARG_NONE, &fake.no_schema, "no query-qmp-schema", NULL },
        { "mode", 0, 0, G_OPTION_ARG_STRING, &fake.mode, "modern|old|ignore", "MODE" },
        { "close-delay-ms", 0, 0, G_OPTION_ARG_INT, &close_delay, "old: close delay", "MS" },
        { "unplug-delay-ms", 0, 0, G_OPTION_ARG_INT, &unplug_delay, "slow: unplug delay",
          "MS" },
        { "finalize-event", 0, 0, G_OPTION_ARG_STRING, &fake.finalize_event, "event", "NAME" },
        { "device", 0, 0, G_OPTION_ARG_STRING_ARRAY, &devices, "device", "ALIAS=PATH" },
        { NULL },
    };
    g_autoptr(GOptionContext) opts = g_option_context_new(NULL);
    g_autoptr(GError) error = NULL;
    int listener;
    guint i;

    /* A crashed test takes its fake QEMU with it (and its output pipes). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    g_option_context_add_main_entries(opts, entries, NULL);
    if (!g_option_context_parse(opts, &argc, &argv, &error) || !socket_path) {
        g_printerr("fake-qemu: %s\n", error ? error->message : "--socket is required");
        return 2;
    }
    fake.client = -1;
    fake.close_delay_ms = MAX(close_delay, 0);
    fake.unplug_delay_ms = MAX(unplug_delay, 0);
    if (!fake.mode)
        fake.mode = g_strdup("modern");
    if (!version || sscanf(version, "%d.%d.%d", &fake.version[0], &fake.version[1],
                           &fake.version[2]) != 3) {
        fake.version[0] = 7;
        fake.version[1] = 2;
    }
    fake.fds = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    fake.devices = g_ptr_array_new();
    fake.timers = g_ptr_array_new_with_free_func(g_free);
    for (i = 0; devices && devices[i]; i++) {
        if (!fakeAddDevice(devices[i]))
            return 1;
    }
    if ((listener = fakeListen(socket_path)) < 0)
        return 1;
    printf("ready\n");
    fflush(stdout);

    for (;;) {
        gboolean more;

        if ((fake.client = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) < 0)
            return 1;
        more = fakeServe();
        close(fake.client);
        fake.client = -1;
        if (!more)
            return 0;
    }
}
