/*
 * test-simhost.c: the mounted simulated host, through real system calls
 *
 * Each test starts its own daemon (hdtest-sim.h) on the "small" topology
 * unless it says otherwise:
 *   group 1  0000:00:1c.0 pcieport (root port)
 *   group 2  0000:01:00.0 nvidia + 0000:01:00.1 snd_hda_intel
 *   group 3  0000:00:19.0 e1000e
 *   group 4  0000:00:1c.4 pcieport
 *   group 5  0000:03:00.0-3 igb
 *   group 6  0000:00:1e.0 bridge (no driver), 0000:05:00.0 and
 *            0000:05:01.0 e1000 (the latter without reset)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostdev/error.h"
#include "hdtest-sim.h"

#define NIC "0000:00:19.0"
#define GPU "0000:01:00.0"
#define AUDIO "0000:01:00.1"

/* Generous bounds: a broken simulated host hangs, a working one is fast. */
#define WAIT_MS 10000

/* How long a blocked writer must stay blocked to count as blocked. */
#define BLOCKED_MS 200


static hdSimHost *
testStart(const char *topology, const char *const *extra)
{
    g_autoptr(GError) error = NULL;
    hdSimHost *sim = hdSimHostStart(topology, extra, &error);

    g_assert_no_error(error);
    g_assert_nonnull(sim);
    return sim;
}


static void
testCtl(hdSimHost *sim, const char *command)
{
    g_autoptr(GError) error = NULL;

    g_assert_true(hdSimHostCtl(sim, command, &error));
    g_assert_no_error(error);
}


/* Write @content to @relative in one write(); 0 or the errno. */
static int
testWrite(hdSimHost *sim, const char *relative, const char *content)
{
    g_autofree char *path = hdSimHostPath(sim, relative);
    ssize_t len = strlen(content);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int ret = 0;

    if (fd < 0)
        return errno;
    if (write(fd, content, len) != len)
        ret = errno;
    close(fd);
    return ret;
}


static char *
testRead(hdSimHost *sim, const char *relative)
{
    g_autofree char *path = hdSimHostPath(sim, relative);
    g_autoptr(GError) error = NULL;
    char *content = NULL;

    g_assert_true(g_file_get_contents(path, &content, NULL, &error));
    g_assert_no_error(error);
    return content;
}


static gboolean
testExists(hdSimHost *sim, const char *relative)
{
    g_autofree char *path = hdSimHostPath(sim, relative);

    return access(path, F_OK) == 0;
}


/* open() of a device node: the fd, or -errno. */
static int
testOpen(hdSimHost *sim, const char *relative)
{
    g_autofree char *path = hdSimHostPath(sim, relative);
    int fd = open(path, O_RDWR | O_CLOEXEC);

    return fd >= 0 ? fd : -errno;
}


static void
testAssertDriver(hdSimHost *sim, const char *address, const char *driver)
{
    g_autofree char *actual = hdSimHostDriverOf(sim, address);

    g_assert_cmpstr(actual, ==, driver);
}


/* What hostdev does: override, unbind, drivers_probe. */
static void
testToVfio(hdSimHost *sim, const char *address)
{
    g_autofree char *override = g_strdup_printf("sys/bus/pci/devices/%s/driver_override",
                                                address);
    g_autofree char *driver = hdSimHostDriverOf(sim, address);

    g_assert_cmpint(testWrite(sim, override, "vfio-pci\n"), ==, 0);
    if (driver) {
        g_autofree char *unbind = g_strdup_printf("sys/bus/pci/drivers/%s/unbind", driver);

        g_assert_cmpint(testWrite(sim, unbind, address), ==, 0);
    }
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", address), ==, 0);
    testAssertDriver(sim, address, "vfio-pci");
}


static JsonObject *
testFind(JsonNode *state, const char *array, const char *key, const char *value)
{
    JsonArray *items = json_object_get_array_member(json_node_get_object(state), array);
    guint i;

    for (i = 0; i < json_array_get_length(items); i++) {
        JsonObject *item = json_array_get_object_element(items, i);
        JsonNode *member = json_object_get_member(item, key);
        g_autofree char *text = NULL;

        if (json_node_get_value_type(member) == G_TYPE_STRING)
            text = g_strdup(json_node_get_string(member));
        else
            text = g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(member));
        if (strcmp(text, value) == 0)
            return item;
    }
    g_assert_not_reached();
}


static JsonNode *
testState(hdSimHost *sim)
{
    g_autoptr(GError) error = NULL;
    JsonNode *state = hdSimHostState(sim, &error);

    g_assert_no_error(error);
    return state;
}


/* The events named @event (for @address unless NULL), oldest first. */
static GPtrArray *
testEvents(hdSimHost *sim, const char *event, const char *address)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonArray) events = hdSimHostEvents(sim, &error);
    GPtrArray *found = g_ptr_array_new_with_free_func((GDestroyNotify) json_object_unref);
    guint i;

    g_assert_no_error(error);
    for (i = 0; i < json_array_get_length(events); i++) {
        JsonObject *item = json_array_get_object_element(events, i);

        if (g_strcmp0(json_object_get_string_member(item, "event"), event) == 0 &&
            (!address ||
             g_strcmp0(json_object_get_string_member(item, "device"), address) == 0))
            g_ptr_array_add(found, json_object_ref(item));
    }
    return found;
}


static double
testEventTime(hdSimHost *sim, const char *event, const char *address)
{
    g_autoptr(GPtrArray) found = testEvents(sim, event, address);

    g_assert_cmpuint(found->len, >=, 1);
    return json_object_get_double_member(g_ptr_array_index(found, found->len - 1), "t_ms");
}


static gint64
testNowMs(void)
{
    return g_get_monotonic_time() / 1000;
}


/* A write in another thread, to block in the daemon. */
typedef struct {
    hdSimHost *sim;
    char *relative;
    char *content;
    GThread *thread;
    gint done;
    int result;
    gint64 end_ms;
} testWriter;


static gpointer
testWriterRun(gpointer opaque)
{
    testWriter *writer = opaque;

    writer->result = testWrite(writer->sim, writer->relative, writer->content);
    writer->end_ms = testNowMs();
    g_atomic_int_set(&writer->done, 1);
    return NULL;
}


static testWriter *
testWriterStart(hdSimHost *sim, const char *relative, const char *content)
{
    testWriter *writer = g_new0(testWriter, 1);

    writer->sim = sim;
    writer->relative = g_strdup(relative);
    writer->content = g_strdup(content);
    writer->thread = g_thread_new("test-writer", testWriterRun, writer);
    return writer;
}


/* Join the writer; its errno result. */
static int
testWriterFinish(testWriter *writer)
{
    int result;

    g_thread_join(writer->thread);
    result = writer->result;
    g_free(writer->relative);
    g_free(writer->content);
    g_free(writer);
    return result;
}


static void
testAssertStillBlocked(testWriter *writer)
{
    g_usleep(BLOCKED_MS * 1000);
    g_assert_false(g_atomic_int_get(&writer->done));
}


/* ---- The tree ---------------------------------------------------------- */

static void
testTree(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    g_autofree char *vendor = testRead(sim, "sys/bus/pci/devices/" GPU "/vendor");
    g_autofree char *device = testRead(sim, "sys/bus/pci/devices/" GPU "/device");
    g_autofree char *klass = testRead(sim, "sys/bus/pci/devices/" AUDIO "/class");
    g_autofree char *override = testRead(sim, "sys/bus/pci/devices/" GPU "/driver_override");
    g_autofree char *method = testRead(sim, "sys/bus/pci/devices/" GPU "/reset_method");
    g_autofree char *path = hdSimHostPath(sim, "dev/vfio/vfio");
    struct stat st;

    g_assert_cmpstr(vendor, ==, "0x10de\n");
    g_assert_cmpstr(device, ==, "0x2204\n");
    g_assert_cmpstr(klass, ==, "0x040300\n");
    g_assert_cmpstr(override, ==, "(null)\n");
    g_assert_cmpstr(method, ==, "flr bus\n");
    g_assert_true(testExists(sim, "sys/bus/pci/devices/0000:05:00.0/reset"));
    g_assert_false(testExists(sim, "sys/bus/pci/devices/0000:05:01.0/reset"));
    g_assert_false(testExists(sim, "sys/bus/pci/devices/0000:00:1e.0/driver"));
    g_assert_false(testExists(sim, "dev/vfio/3"));

    g_assert_cmpint(stat(path, &st), ==, 0);
    g_assert_true(S_ISREG(st.st_mode));
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 0);

    /* Read-only attributes refuse writers, write-only ones readers. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/devices/" GPU "/vendor", "1"), ==, EACCES);
    g_free(path);
    path = hdSimHostPath(sim, "sys/bus/pci/drivers_probe");
    g_assert_cmpint(open(path, O_RDONLY), ==, -1);
    g_assert_cmpint(errno, ==, EACCES);
}


static void
testAssertLink(hdSimHost *sim, const char *link, const char *target, const char *resolved)
{
    g_autofree char *path = hdSimHostPath(sim, link);
    g_autofree char *expected = hdSimHostPath(sim, resolved);
    g_autofree char *real = realpath(path, NULL);
    char buf[PATH_MAX];
    ssize_t len = readlink(path, buf, sizeof(buf) - 1);

    g_assert_cmpint(len, >, 0);
    buf[len] = '\0';
    if (target)
        g_assert_cmpstr(buf, ==, target);
    g_assert_nonnull(real);
    g_assert_cmpstr(real, ==, expected);
}


static void
testLinks(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    const char *gpu_dir = "sys/devices/pci0000:00/0000:00:1c.0/" GPU;
    g_autofree char *gpu_driver = g_strdup_printf("%s/driver", gpu_dir);
    g_autofree char *gpu_group = g_strdup_printf("%s/iommu_group", gpu_dir);
    g_autofree char *audio_group = NULL;
    g_autoptr(GDir) dir = NULL;
    g_autofree char *group_dir = hdSimHostPath(sim, "sys/kernel/iommu_groups/2/devices");
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;

    testAssertLink(sim, "sys/bus/pci/devices/" GPU,
                   "../../../devices/pci0000:00/0000:00:1c.0/" GPU, gpu_dir);
    testAssertLink(sim, gpu_driver, "../../../../bus/pci/drivers/nvidia",
                   "sys/bus/pci/drivers/nvidia");
    testAssertLink(sim, gpu_group, "../../../../kernel/iommu_groups/2",
                   "sys/kernel/iommu_groups/2");
    testAssertLink(sim, "sys/bus/pci/drivers/nvidia/" GPU, NULL, gpu_dir);
    testAssertLink(sim, "sys/kernel/iommu_groups/2/devices/" AUDIO, NULL,
                   "sys/devices/pci0000:00/0000:00:1c.0/" AUDIO);
    testAssertLink(sim, "sys/bus/pci/devices/0000:00:19.0/driver", NULL,
                   "sys/bus/pci/drivers/e1000e");
    testAssertLink(sim, "sys/bus/pci/devices/0000:05:01.0", NULL,
                   "sys/devices/pci0000:00/0000:00:1e.0/0000:05:01.0");
    /* Through a link, as hostdev reads them. */
    audio_group = g_strdup("sys/bus/pci/devices/" AUDIO "/iommu_group");
    testAssertLink(sim, audio_group, NULL, "sys/kernel/iommu_groups/2");

    dir = g_dir_open(group_dir, 0, NULL);
    g_assert_nonnull(dir);
    while ((name = g_dir_read_name(dir)))
        g_ptr_array_add(names, g_strdup(name));
    g_assert_cmpuint(names->len, ==, 2);
    g_assert_true(g_ptr_array_find_with_equal_func(names, GPU, g_str_equal, NULL));
    g_assert_true(g_ptr_array_find_with_equal_func(names, AUDIO, g_str_equal, NULL));

    /* The driver link follows the binding. */
    testToVfio(sim, NIC);
    testAssertLink(sim, "sys/bus/pci/devices/" NIC "/driver", NULL,
                   "sys/bus/pci/drivers/vfio-pci");
    g_assert_true(testExists(sim, "sys/bus/pci/drivers/vfio-pci/" NIC));
    g_assert_false(testExists(sim, "sys/bus/pci/drivers/e1000e/" NIC));
}


static void
testSriovLinks(void)
{
    g_autoptr(hdSimHost) sim = testStart("gpu16", NULL);

    testAssertLink(sim, "sys/bus/pci/devices/0000:60:10.4/physfn", "../0000:60:00.0",
                   "sys/devices/pci0000:00/0000:00:1c.0/0000:60:00.0");
    testAssertLink(sim, "sys/bus/pci/devices/0000:60:00.0/virtfn3", "../0000:60:10.6",
                   "sys/devices/pci0000:00/0000:00:1c.0/0000:60:10.6");
    testAssertLink(sim, "sys/bus/pci/devices/0000:60:10.0/driver", NULL,
                   "sys/bus/pci/drivers/ixgbevf");
    testAssertLink(sim, "sys/bus/pci/devices/0000:70:01.0", NULL,
                   "sys/devices/pci0000:00/0000:00:1e.0/0000:70:01.0");
}


/* A network device has net/<name>/ (and /sys/class/net/<name>) while its
 * own driver has it; a VF's address is the MAC its PF set for it. */
static void
testNetdevs(void)
{
    g_autoptr(hdSimHost) sim = testStart("gpu16", NULL);
    const char *vf = "0000:60:10.2";
    g_autofree char *pf_address = NULL;
    g_autofree char *ifindex = NULL;
    g_autofree char *again = NULL;
    g_autofree char *vf_address = NULL;

    testAssertLink(sim, "sys/class/net/enp96s0", NULL,
                   "sys/devices/pci0000:00/0000:00:1c.0/0000:60:00.0/net/enp96s0");
    testAssertLink(sim, "sys/class/net/enp96s0v1", NULL,
                   "sys/devices/pci0000:00/0000:00:1c.0/0000:60:10.2/net/enp96s0v1");
    pf_address = testRead(sim, "sys/class/net/enp96s0/address");
    g_assert_cmpstr(pf_address, ==, "02:00:00:60:00:00\n");
    ifindex = testRead(sim, "sys/class/net/enp96s0v1/ifindex");
    g_assert_false(testExists(sim, "sys/bus/pci/devices/0000:11:00.0/net"));

    /* Its driver gone, the interface is gone; back, it has a new ifindex. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/ixgbevf/unbind", vf), ==, 0);
    g_assert_false(testExists(sim, "sys/bus/pci/devices/0000:60:10.2/net"));
    g_assert_false(testExists(sim, "sys/class/net/enp96s0v1"));
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", vf), ==, 0);
    again = testRead(sim, "sys/class/net/enp96s0v1/ifindex");
    g_assert_cmpint(atoi(again), >, atoi(ifindex));

    testCtl(sim, "vf 0000:60:10.2 mac 52:54:00:aa:bb:cc");
    vf_address = testRead(sim, "sys/class/net/enp96s0v1/address");
    g_assert_cmpstr(vf_address, ==, "52:54:00:aa:bb:cc\n");
}


/* ---- Binding ----------------------------------------------------------- */

static void
testBindErrors(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);

    /* Not the matching driver, already bound, unknown device. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/igb/bind", NIC), ==, ENODEV);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/bind", NIC "\n"), ==, EBUSY);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/bind", "0000:99:00.0"),
                    ==, ENODEV);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/igb/unbind", NIC), ==, ENODEV);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/unbind", "junk"), ==, ENODEV);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", "0000:99:00.0"), ==, ENODEV);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/devices/" NIC "/reset", "0"), ==, EINVAL);

    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/unbind", NIC "\n"), ==, 0);
    testAssertDriver(sim, NIC, NULL);
    g_assert_false(testExists(sim, "sys/bus/pci/devices/" NIC "/driver"));
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/unbind", NIC), ==, ENODEV);
    /* vfio-pci matches through driver_override only. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/bind", NIC), ==, ENODEV);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/devices/" NIC "/driver_override",
                              "vfio-pci"), ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/bind", NIC), ==, ENODEV);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/bind", NIC), ==, 0);
    testAssertDriver(sim, NIC, "vfio-pci");
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/bind", NIC), ==, EBUSY);
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 0);
}


static void
testDriversProbe(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    const char *override = "sys/bus/pci/devices/" NIC "/driver_override";
    g_autofree char *value = NULL;

    /* A bound device is left alone. */
    g_assert_cmpint(testWrite(sim, override, "vfio-pci\n"), ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", NIC), ==, 0);
    testAssertDriver(sim, NIC, "e1000e");
    value = testRead(sim, override);
    g_assert_cmpstr(value, ==, "vfio-pci\n");

    /* The override wins over the native driver. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/unbind", NIC), ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", NIC "\n"), ==, 0);
    testAssertDriver(sim, NIC, "vfio-pci");

    /* "none" (or any unknown name): no driver, and no error. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/unbind", NIC), ==, 0);
    g_assert_cmpint(testWrite(sim, override, "none"), ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", NIC), ==, 0);
    testAssertDriver(sim, NIC, NULL);
    g_assert_cmpint(testWrite(sim, override, "no-such-driver\n"), ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", NIC), ==, 0);
    testAssertDriver(sim, NIC, NULL);

    /* Cleared ("\n", as echo writes it): the native driver. */
    g_assert_cmpint(testWrite(sim, override, "\n"), ==, 0);
    g_free(value);
    value = testRead(sim, override);
    g_assert_cmpstr(value, ==, "(null)\n");
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", NIC), ==, 0);
    testAssertDriver(sim, NIC, "e1000e");

    /* A bridge has no driver to probe. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", "0000:00:1e.0"), ==, 0);
    testAssertDriver(sim, "0000:00:1e.0", NULL);
}


static void
testDevNode(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    g_autoptr(JsonNode) state = NULL;
    g_autoptr(GPtrArray) created = NULL;
    g_autoptr(GPtrArray) removed = NULL;

    g_assert_false(testExists(sim, "dev/vfio/5"));
    testToVfio(sim, "0000:03:00.2");
    g_assert_true(testExists(sim, "dev/vfio/5"));
    g_assert_true(testExists(sim, "dev/vfio/devices/vfio0"));
    g_assert_true(testExists(sim, "sys/bus/pci/devices/0000:03:00.2/vfio-dev/vfio0"));
    testToVfio(sim, "0000:03:00.0");
    g_assert_true(testExists(sim, "dev/vfio/devices/vfio1"));
    g_assert_true(testExists(sim, "sys/bus/pci/devices/0000:03:00.0/vfio-dev/vfio1/dev"));

    state = testState(sim);
    g_assert_true(json_object_get_boolean_member(testFind(state, "groups", "group", "5"),
                                                 "dev_node"));
    g_assert_cmpstr(json_object_get_string_member(testFind(state, "devices", "address",
                                                           "0000:03:00.2"), "vfio_cdev"),
                    ==, "vfio0");

    /* The first unbind keeps the node, the last removes it. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/unbind", "0000:03:00.2"),
                    ==, 0);
    g_assert_true(testExists(sim, "dev/vfio/5"));
    g_assert_false(testExists(sim, "dev/vfio/devices/vfio0"));
    g_assert_false(testExists(sim, "sys/bus/pci/devices/0000:03:00.2/vfio-dev"));
    /* The smallest free number is taken again. */
    testToVfio(sim, "0000:03:00.3");
    g_assert_true(testExists(sim, "sys/bus/pci/devices/0000:03:00.3/vfio-dev/vfio0"));
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/unbind", "0000:03:00.3"),
                    ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/unbind", "0000:03:00.0"),
                    ==, 0);
    g_assert_false(testExists(sim, "dev/vfio/5"));
    g_assert_cmpint(testOpen(sim, "dev/vfio/5"), ==, -ENOENT);

    created = testEvents(sim, "dev-node-created", NULL);
    removed = testEvents(sim, "dev-node-removed", NULL);
    g_assert_cmpuint(created->len, ==, 1);
    g_assert_cmpuint(removed->len, ==, 1);
    g_assert_cmpint(json_object_get_int_member(g_ptr_array_index(created, 0), "group"), ==, 5);
    g_assert_cmpstr(json_object_get_string_member(g_ptr_array_index(removed, 0), "device"),
                    ==, "0000:03:00.0");
}



static gint
testCompareNames(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


/* The names in the directory @relative, sorted, separated by spaces. */
static char *
testList(hdSimHost *sim, const char *relative)
{
    g_autofree char *path = hdSimHostPath(sim, relative);
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;

    g_assert_nonnull(dir);
    while ((name = g_dir_read_name(dir)))
        g_ptr_array_add(names, g_strdup(name));
    g_ptr_array_sort(names, testCompareNames);
    g_ptr_array_add(names, NULL);
    return g_strjoinv(" ", (char **) names->pdata);
}


static void
testAssertList(hdSimHost *sim, const char *relative, const char *expected)
{
    g_autofree char *names = testList(sim, relative);

    g_assert_cmpstr(names, ==, expected);
}


/* The tree is patched on bind and unbind, not rebuilt: every listing must
 * show each file exactly once, and nothing that went away, however often
 * a device goes back and forth. */
static void
testTreeFollowsBinding(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    const char *nic_dir = "sys/devices/pci0000:00/" NIC;
    const char *nic_files = "class device driver driver_override iommu_group reset "
        "reset_method vendor";
    g_autofree char *nic_vfio_files = g_strdup_printf("%s vfio-dev", nic_files);
    /* Its e1000e registers the interface enp0s25. */
    const char *nic_host_files = "class device driver driver_override iommu_group net reset "
        "reset_method vendor";
    guint round;

    for (round = 0; round < 3; round++) {
        testToVfio(sim, NIC);
        testAssertList(sim, "sys/bus/pci/drivers/vfio-pci", "0000:00:19.0 bind unbind");
        testAssertList(sim, "sys/bus/pci/drivers/e1000e", "bind unbind");
        testAssertList(sim, "dev/vfio", "3 devices vfio");
        testAssertList(sim, "dev/vfio/devices", "vfio0");
        testAssertList(sim, nic_dir, nic_vfio_files);
        testAssertList(sim, "sys/class/net", "enp3s0f0 enp3s0f1 enp3s0f2 enp3s0f3 enp5s0 "
                       "enp5s1");

        g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/unbind", NIC), ==, 0);
        testAssertList(sim, "sys/bus/pci/drivers/vfio-pci", "bind unbind");
        testAssertList(sim, "dev/vfio", "devices vfio");
        testAssertList(sim, "dev/vfio/devices", "");
        testAssertList(sim, nic_dir, "class device driver_override iommu_group reset "
                       "reset_method vendor");

        g_assert_cmpint(testWrite(sim, "sys/bus/pci/devices/" NIC "/driver_override", "\n"),
                        ==, 0);
        g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", NIC), ==, 0);
        testAssertList(sim, "sys/bus/pci/drivers/e1000e", "0000:00:19.0 bind unbind");
        testAssertList(sim, nic_dir, nic_host_files);
        testAssertList(sim, "sys/class/net", "enp0s25 enp3s0f0 enp3s0f1 enp3s0f2 enp3s0f3 "
                       "enp5s0 enp5s1");
        testAssertList(sim, "sys/bus/pci/devices/" NIC "/net/enp0s25", "address ifindex");
        testAssertLink(sim, "sys/bus/pci/devices/" NIC "/driver", NULL,
                       "sys/bus/pci/drivers/e1000e");
    }
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 0);
}

/* ---- Holders ----------------------------------------------------------- */

static void
testOpenExclusive(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    g_autoptr(JsonNode) state = NULL;
    JsonObject *group;
    JsonArray *holders;
    int fd, cdev;

    g_assert_cmpint(testOpen(sim, "dev/vfio/3"), ==, -ENOENT);
    testToVfio(sim, NIC);

    fd = testOpen(sim, "dev/vfio/3");
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(testOpen(sim, "dev/vfio/3"), ==, -EBUSY);
    g_assert_cmpint(testOpen(sim, "dev/vfio/devices/vfio0"), ==, -EBUSY);
    /* The container node is not exclusive. */
    cdev = testOpen(sim, "dev/vfio/vfio");
    g_assert_cmpint(cdev, >=, 0);
    close(cdev);

    state = testState(sim);
    group = testFind(state, "groups", "group", "3");
    g_assert_true(json_object_get_boolean_member(group, "owned"));
    holders = json_object_get_array_member(group, "holders");
    g_assert_cmpuint(json_array_get_length(holders), ==, 1);
    g_assert_cmpint(json_array_get_int_element(holders, 0), ==, getpid());
    g_assert_true(json_object_get_boolean_member(testFind(state, "devices", "address", NIC),
                                                 "in_use"));

    close(fd);
    g_assert_true(hdSimHostWaitGroupFree(sim, 3, WAIT_MS));

    /* The cdev excludes the group the same way. */
    cdev = testOpen(sim, "dev/vfio/devices/vfio0");
    g_assert_cmpint(cdev, >=, 0);
    g_assert_cmpint(testOpen(sim, "dev/vfio/devices/vfio0"), ==, -EBUSY);
    g_assert_cmpint(testOpen(sim, "dev/vfio/3"), ==, -EBUSY);
    close(cdev);
    g_assert_true(hdSimHostWaitGroupFree(sim, 3, WAIT_MS));
    fd = testOpen(sim, "dev/vfio/3");
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    g_assert_true(hdSimHostWaitEvent(sim, "release-done", NIC, WAIT_MS));
}


static void
testOpenNotViable(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    g_autoptr(GPtrArray) refused = NULL;
    int fd;

    testToVfio(sim, GPU);
    /* The audio function is still on snd_hda_intel. */
    g_assert_cmpint(testOpen(sim, "dev/vfio/2"), ==, -EPERM);
    g_assert_cmpint(testOpen(sim, "dev/vfio/devices/vfio0"), ==, -EPERM);
    refused = testEvents(sim, "open-refused", NULL);
    g_assert_cmpuint(refused->len, ==, 2);
    g_assert_cmpint(json_object_get_int_member(g_ptr_array_index(refused, 0), "group"), ==, 2);

    /* Driverless is fine. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/snd_hda_intel/unbind", AUDIO), ==, 0);
    fd = testOpen(sim, "dev/vfio/2");
    g_assert_cmpint(fd, >=, 0);
    close(fd);
}


static void
testProcFd(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    g_autofree char *expected = hdSimHostPath(sim, "dev/vfio/3");
    g_autofree char *link = NULL;
    g_autofree char *target = NULL;
    int fd;

    testToVfio(sim, NIC);
    fd = testOpen(sim, "dev/vfio/3");
    g_assert_cmpint(fd, >=, 0);
    link = g_strdup_printf("/proc/self/fd/%d", fd);
    target = g_file_read_link(link, NULL);
    g_assert_cmpstr(target, ==, expected);
    close(fd);
}


/* A thread holds the group; another writes unbind, which must return only
 * after the holder closed and the release (release_ms) ran. */
static void
testBlockedUnbind(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    const guint release_ms = 300;
    g_autofree char *cost = g_strdup_printf("cost " NIC " release_ms %u", release_ms);
    testWriter *writer;
    gint64 closed_ms;
    int fd;

    testToVfio(sim, NIC);
    testCtl(sim, cost);
    fd = testOpen(sim, "dev/vfio/3");
    g_assert_cmpint(fd, >=, 0);

    writer = testWriterStart(sim, "sys/bus/pci/drivers/vfio-pci/unbind", NIC);
    g_assert_true(hdSimHostWaitEvent(sim, "unbind-blocked", NIC, WAIT_MS));
    testAssertStillBlocked(writer);
    /* Other requests still get served meanwhile.  As on the real kernel
     * (measured in the VM tier), the "driver" link is already gone while
     * the unbind waits; the group node stays. */
    testAssertDriver(sim, NIC, NULL);
    g_assert_true(testExists(sim, "dev/vfio/3"));

    closed_ms = testNowMs();
    close(fd);
    g_assert_cmpint(testWriterFinish(writer), ==, 0);
    g_assert_cmpint(testNowMs() - closed_ms, >=, release_ms);
    testAssertDriver(sim, NIC, NULL);
    g_assert_false(testExists(sim, "dev/vfio/3"));

    g_assert_cmpfloat(testEventTime(sim, "release-done", NIC) -
                      testEventTime(sim, "release-start", NIC), >=, release_ms);
    g_assert_cmpfloat(testEventTime(sim, "unbind", NIC), >=,
                      testEventTime(sim, "release-done", NIC));
}


/* A host driver for a member of an owned group: refused, a violation, the
 * device left without driver.  vfio-pci may still bind. */
static void
testRefusedProbe(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    g_autoptr(GPtrArray) failed = NULL;
    g_autoptr(GPtrArray) violations = NULL;
    int fd;

    testToVfio(sim, "0000:05:00.0");
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000/unbind", "0000:05:01.0"), ==, 0);
    fd = testOpen(sim, "dev/vfio/6");
    g_assert_cmpint(fd, >=, 0);

    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", "0000:05:01.0"), ==, EINVAL);
    testAssertDriver(sim, "0000:05:01.0", NULL);
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 1);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000/bind", "0000:05:01.0"), ==, EBUSY);
    testAssertDriver(sim, "0000:05:01.0", NULL);
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 2);

    failed = testEvents(sim, "probe-failed", "0000:05:01.0");
    violations = testEvents(sim, "violation", "0000:05:01.0");
    g_assert_cmpuint(failed->len, ==, 2);
    g_assert_cmpuint(violations->len, ==, 2);
    g_assert_cmpstr(json_object_get_string_member(g_ptr_array_index(failed, 0), "error"),
                    ==, "EBUSY");
    g_assert_cmpstr(json_object_get_string_member(g_ptr_array_index(violations, 0), "driver"),
                    ==, "e1000");

    /* driver_managed_dma: vfio-pci joins the owned group. */
    testToVfio(sim, "0000:05:01.0");
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 2);
    close(fd);
    g_assert_true(hdSimHostWaitGroupFree(sim, 6, WAIT_MS));
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/vfio-pci/unbind", "0000:05:00.0"), ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/devices/0000:05:00.0/driver_override", "\n"),
                    ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", "0000:05:00.0"), ==, 0);
    testAssertDriver(sim, "0000:05:00.0", "e1000");
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 2);
}


/* ---- Costs ------------------------------------------------------------- */

/* Release the four igb functions (one cdev each, so they may overlap):
 * the time from the first close until the group is free. */
static gpointer
testCloseThread(gpointer opaque)
{
    close(GPOINTER_TO_INT(opaque));
    return NULL;
}


/* Close each fd from a thread of its own, as a QEMU closing its devices
 * concurrently would (seed 002's "threads" mode). */
static void
testCloseInThreads(const int *fds, guint n)
{
    g_autoptr(GPtrArray) threads = g_ptr_array_new();
    guint i;

    for (i = 0; i < n; i++)
        g_ptr_array_add(threads, g_thread_new("closer", testCloseThread,
                                              GINT_TO_POINTER(fds[i])));
    for (i = 0; i < n; i++)
        g_thread_join(g_ptr_array_index(threads, i));
}


static gint64
testReleaseFour(hdSimHost *sim)
{
    int fds[4];
    gint64 start;
    guint i;

    for (i = 0; i < 4; i++) {
        g_autofree char *cdev = g_strdup_printf("dev/vfio/devices/vfio%u", i);

        fds[i] = testOpen(sim, cdev);
        g_assert_cmpint(fds[i], >=, 0);
    }
    start = testNowMs();
    testCloseInThreads(fds, 4);
    g_assert_true(hdSimHostWaitGroupFree(sim, 5, WAIT_MS));
    return testNowMs() - start;
}


static void
testSerializedTiming(void)
{
    const char *const serialized[] = { "--serialized", NULL };
    g_autoptr(hdSimHost) sim = testStart("small", serialized);
    g_autoptr(JsonNode) state = testState(sim);
    gint64 serial_ms, parallel_ms;
    guint i;

    g_assert_true(json_object_get_boolean_member(json_node_get_object(state), "serialized"));
    for (i = 0; i < 4; i++) {
        g_autofree char *address = g_strdup_printf("0000:03:00.%u", i);

        testToVfio(sim, address);
    }
    testCtl(sim, "cost all release_ms 200");

    serial_ms = testReleaseFour(sim);
    testCtl(sim, "serialized off");
    parallel_ms = testReleaseFour(sim);
    g_test_message("4 releases of 200 ms: serialized %" G_GINT64_FORMAT " ms, "
                   "parallel %" G_GINT64_FORMAT " ms", serial_ms, parallel_ms);
    g_assert_cmpint(serial_ms, >=, 750);
    g_assert_cmpint(parallel_ms, <, serial_ms);
    g_assert_cmpint(parallel_ms, >=, 200);
}


/* One task releases the files it closes one after the other (a process's
 * exit: __fput in task_work, seed 002), whatever the kernel's locks: the
 * second group's release starts when the first one's is done. */
static void
testOneTaskReleasesInTurn(void)
{
    g_autoptr(hdSimHost) sim = testStart("gpu16", NULL);
    int fds[2];
    guint i;

    testCtl(sim, "cost all release_ms 100");
    for (i = 0; i < 2; i++) {
        g_autofree char *gpu = g_strdup_printf("0000:%02x:00.0", 0x11 + i);
        g_autofree char *audio = g_strdup_printf("0000:%02x:00.1", 0x11 + i);

        testToVfio(sim, gpu);
        testToVfio(sim, audio);
    }
    fds[0] = testOpen(sim, "dev/vfio/11");
    fds[1] = testOpen(sim, "dev/vfio/13");
    close(fds[0]);
    close(fds[1]);
    g_assert_true(hdSimHostWaitGroupFree(sim, 11, WAIT_MS));
    g_assert_true(hdSimHostWaitGroupFree(sim, 13, WAIT_MS));
    /* Whichever went first, the other started after it was done. */
    g_assert_true(testEventTime(sim, "release-start", "0000:12:00.0") >=
                  testEventTime(sim, "release-done", "0000:11:00.1") ||
                  testEventTime(sim, "release-start", "0000:11:00.0") >=
                  testEventTime(sim, "release-done", "0000:12:00.1"));
}


/* Group fds: members one after the other, groups side by side. */
static void
testGroupReleaseTiming(void)
{
    g_autoptr(hdSimHost) sim = testStart("gpu16", NULL);
    const char *groups[] = { "11", "13" };
    gint64 start, parallel_ms = 0, serial_ms = 0;
    int fds[2];
    guint round, i;

    testCtl(sim, "cost all release_ms 150");
    testCtl(sim, "cost all probe_ms 0");
    for (i = 0; i < 2; i++) {
        g_autofree char *gpu = g_strdup_printf("0000:%02x:00.0", 0x11 + i);
        g_autofree char *audio = g_strdup_printf("0000:%02x:00.1", 0x11 + i);

        testToVfio(sim, gpu);
        testToVfio(sim, audio);
    }

    for (round = 0; round < 2; round++) {
        for (i = 0; i < 2; i++) {
            g_autofree char *node = g_strdup_printf("dev/vfio/%s", groups[i]);

            fds[i] = testOpen(sim, node);
            g_assert_cmpint(fds[i], >=, 0);
        }
        start = testNowMs();
        testCloseInThreads(fds, 2);
        g_assert_true(hdSimHostWaitGroupFree(sim, 11, WAIT_MS));
        g_assert_true(hdSimHostWaitGroupFree(sim, 13, WAIT_MS));
        if (round == 0) {
            parallel_ms = testNowMs() - start;
            testCtl(sim, "serialized on");
        } else {
            serial_ms = testNowMs() - start;
        }
    }
    g_test_message("2 groups of 2 x 150 ms: parallel %" G_GINT64_FORMAT
                   " ms, serialized %" G_GINT64_FORMAT " ms", parallel_ms, serial_ms);
    g_assert_cmpint(parallel_ms, >=, 300);
    g_assert_cmpint(serial_ms, >=, 550);
    g_assert_cmpint(parallel_ms, <, serial_ms);
}


/* ---- Faults ------------------------------------------------------------ */

static void
testFaultProbeFail(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    g_autoptr(GPtrArray) failed = NULL;

    testCtl(sim, "fault " NIC " probe fail");
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/unbind", NIC), ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/bind", NIC), ==, EIO);
    testAssertDriver(sim, NIC, NULL);
    /* The driver core ignores a failing probe in drivers_probe. */
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", NIC), ==, 0);
    testAssertDriver(sim, NIC, NULL);
    failed = testEvents(sim, "probe-failed", NIC);
    g_assert_cmpuint(failed->len, ==, 2);
    g_assert_cmpstr(json_object_get_string_member(g_ptr_array_index(failed, 1), "error"),
                    ==, "EIO");
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 0);

    testCtl(sim, "fault " NIC " probe ok");
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers_probe", NIC), ==, 0);
    testAssertDriver(sim, NIC, "e1000e");
}


static void
testFaultProbeHang(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    testWriter *writer;
    int fd;

    testCtl(sim, "fault " NIC " probe hang");
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/devices/" NIC "/driver_override", "vfio-pci"),
                    ==, 0);
    g_assert_cmpint(testWrite(sim, "sys/bus/pci/drivers/e1000e/unbind", NIC), ==, 0);
    writer = testWriterStart(sim, "sys/bus/pci/drivers_probe", NIC);
    testAssertStillBlocked(writer);
    testAssertDriver(sim, NIC, NULL);

    testCtl(sim, "unhang");
    g_assert_cmpint(testWriterFinish(writer), ==, 0);
    testAssertDriver(sim, NIC, "vfio-pci");
    fd = testOpen(sim, "dev/vfio/3");
    g_assert_cmpint(fd, >=, 0);
    close(fd);
}


static void
testFaultReset(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    const char *reset = "sys/bus/pci/devices/" NIC "/reset";
    testWriter *writer;

    g_assert_cmpint(testWrite(sim, reset, "1\n"), ==, 0);
    g_assert_true(hdSimHostWaitEvent(sim, "reset", NIC, 0));

    testCtl(sim, "fault " NIC " reset fail");
    g_assert_cmpint(testWrite(sim, reset, "1"), ==, EIO);
    g_assert_true(hdSimHostWaitEvent(sim, "reset-failed", NIC, 0));

    testCtl(sim, "fault " NIC " reset hang");
    writer = testWriterStart(sim, reset, "1");
    testAssertStillBlocked(writer);
    testCtl(sim, "unhang");
    g_assert_cmpint(testWriterFinish(writer), ==, 0);

    testCtl(sim, "fault " NIC " reset ok");
    testCtl(sim, "cost " NIC " reset_ms 100");
    writer = testWriterStart(sim, reset, "1");
    g_assert_cmpint(testWriterFinish(writer), ==, 0);
    g_assert_cmpfloat(testEventTime(sim, "reset", NIC) -
                      testEventTime(sim, "reset-failed", NIC), >=, 100);
}


static void
testFaultReleaseHang(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    int fd;

    testToVfio(sim, NIC);
    testCtl(sim, "fault " NIC " release hang");
    fd = testOpen(sim, "dev/vfio/3");
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    g_assert_true(hdSimHostWaitEvent(sim, "release-start", NIC, WAIT_MS));
    g_assert_false(hdSimHostWaitGroupFree(sim, 3, BLOCKED_MS));
    g_assert_cmpint(testOpen(sim, "dev/vfio/3"), ==, -EBUSY);
    testCtl(sim, "unhang");
    g_assert_true(hdSimHostWaitGroupFree(sim, 3, WAIT_MS));
}


/* ---- Control and topology errors --------------------------------------- */

static void
testCtlErrors(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonArray) events = NULL;
    g_autoptr(JsonNode) state = NULL;

    g_assert_false(hdSimHostCtl(sim, "frobnicate", &error));
    g_assert_error(error, HD_SYSTEM_ERROR, EINVAL);
    g_clear_error(&error);
    g_assert_false(hdSimHostCtl(sim, "cost all release_ms many", &error));
    g_assert_error(error, HD_SYSTEM_ERROR, EINVAL);
    g_clear_error(&error);
    g_assert_false(hdSimHostCtl(sim, "fault " NIC " release fail", &error));
    g_assert_error(error, HD_SYSTEM_ERROR, EINVAL);
    g_clear_error(&error);
    g_assert_false(hdSimHostCtl(sim, "serialized maybe", &error));
    g_assert_error(error, HD_SYSTEM_ERROR, EINVAL);

    /* Nothing changed: a release still costs nothing, not serialized. */
    testToVfio(sim, NIC);
    state = testState(sim);
    g_assert_false(json_object_get_boolean_member(json_node_get_object(state), "serialized"));

    testCtl(sim, "clear-events");
    events = hdSimHostEvents(sim, NULL);
    g_assert_cmpuint(json_array_get_length(events), ==, 0);
}


static void
testTopologyError(gconstpointer opaque)
{
    const char *const *item = opaque;
    g_autoptr(GError) error = NULL;
    g_autofree char *path = NULL;
    hdSimHost *sim;
    int fd = g_file_open_tmp("hdsim-topology-XXXXXX.json", &path, &error);

    g_assert_no_error(error);
    g_assert_true(g_file_set_contents(path, item[0], -1, NULL));
    close(fd);
    sim = hdSimHostStart(path, NULL, &error);
    unlink(path);
    g_assert_null(sim);
    g_assert_error(error, HD_ERROR, HD_ERROR_OPERATION_FAILED);
    g_test_message("%s", error->message);
    g_assert_nonnull(strstr(error->message, "exited with status 1"));
    g_assert_nonnull(strstr(error->message, item[1]));
    g_assert_nonnull(strstr(error->message, path));
}

static const char *const topologyMalformed[] = {
    "{ \"devices\": [ { \"address\": ", "Parse error",
};
static const char *const topologyDuplicate[] = {
    "{ \"devices\": ["
    " { \"address\": \"0000:00:02.0\", \"vendor\": \"0x8086\", \"device\": \"0x1\","
    "   \"class\": \"0x020000\", \"iommu_group\": 1 },"
    " { \"address\": \"0000:00:02.0\", \"vendor\": \"0x8086\", \"device\": \"0x1\","
    "   \"class\": \"0x020000\", \"iommu_group\": 1 } ] }",
    "duplicate device address 0000:00:02.0",
};
static const char *const topologyParent[] = {
    "{ \"devices\": ["
    " { \"address\": \"0000:01:00.0\", \"vendor\": \"0x8086\", \"device\": \"0x1\","
    "   \"class\": \"0x020000\", \"iommu_group\": 1, \"parent\": \"0000:00:1c.7\" } ] }",
    "device 0000:01:00.0: unknown parent 0000:00:1c.7",
};


/* ---- Shutdown ---------------------------------------------------------- */

static gboolean
testMounted(const char *root)
{
    g_autofree char *mountinfo = NULL;
    g_autofree char *needle = g_strdup_printf(" %s ", root);

    g_assert_true(g_file_get_contents("/proc/self/mountinfo", &mountinfo, NULL, NULL));
    return strstr(mountinfo, needle) != NULL;
}


/* SIGTERM while a writer is blocked in unbind: the writer fails, the
 * daemon unmounts and exits 0, all promptly. */
static void
testShutdownBlocked(void)
{
    g_autoptr(hdSimHost) sim = testStart("small", NULL);
    testWriter *writer;
    gint64 start;
    int status = -1;
    int result;
    int fd;

    testToVfio(sim, NIC);
    fd = testOpen(sim, "dev/vfio/3");
    g_assert_cmpint(fd, >=, 0);
    writer = testWriterStart(sim, "sys/bus/pci/drivers/vfio-pci/unbind", NIC);
    g_assert_true(hdSimHostWaitEvent(sim, "unbind-blocked", NIC, WAIT_MS));
    g_assert_true(testMounted(hdSimHostRoot(sim)));

    start = testNowMs();
    g_assert_cmpint(kill(hdSimHostPid(sim), SIGTERM), ==, 0);
    result = testWriterFinish(writer);
    g_test_message("the blocked writer got %s after %" G_GINT64_FORMAT " ms",
                   g_strerror(result), testNowMs() - start);
    g_assert_true(result == ENODEV || result == EIO || result == ENOTCONN);
    g_assert_true(hdSimHostWaitExit(sim, 5000, &status));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_assert_cmpint(testNowMs() - start, <, 5000);
    g_assert_false(testMounted(hdSimHostRoot(sim)));
    close(fd);
}


/* The test dies without stopping its daemon: the daemon goes too. */
static void
testDieWithParent(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *root = NULL;
    gsize length = 0;
    char buf[512];
    int fds[2];
    pid_t child, daemon_pid;
    int status;
    gint64 deadline;

    /* The orphaned daemon becomes our child, so we can reap it. */
    g_assert_cmpint(prctl(PR_SET_CHILD_SUBREAPER, 1), ==, 0);
    g_assert_cmpint(pipe(fds), ==, 0);
    child = fork();
    g_assert_cmpint(child, >=, 0);
    if (child == 0) {
        hdSimHost *sim = hdSimHostStart("small", NULL, NULL);

        if (sim) {
            g_autofree char *line = g_strdup_printf("%d %s", hdSimHostPid(sim),
                                                    hdSimHostRoot(sim));

            if (write(fds[1], line, strlen(line)) < 0)
                _exit(2);
        }
        _exit(sim ? 0 : 1);
    }
    close(fds[1]);
    while (length < sizeof(buf) - 1) {
        ssize_t got = read(fds[0], buf + length, sizeof(buf) - 1 - length);

        if (got <= 0)
            break;
        length += got;
    }
    close(fds[0]);
    buf[length] = '\0';
    g_assert_cmpint(waitpid(child, &status, 0), ==, child);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    daemon_pid = g_ascii_strtoll(buf, NULL, 10);
    root = g_strdup(strchr(buf, ' ') + 1);
    g_assert_cmpint(daemon_pid, >, 0);
    deadline = testNowMs() + WAIT_MS;
    while (waitpid(daemon_pid, &status, WNOHANG) == 0) {
        g_assert_cmpint(testNowMs(), <, deadline);
        g_usleep(10000);
    }
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_assert_false(testMounted(root));
    g_assert_cmpint(rmdir(root), ==, 0);
    prctl(PR_SET_CHILD_SUBREAPER, 0);
}


/* ---- Many blocked writers ---------------------------------------------- */

/* gpu16: all 32 GPU and audio functions on vfio-pci, 16 groups held, 64
 * writers blocked at once (an unbind and a drivers_probe per device, the
 * latter waiting for the device lock the unbind holds), the daemon still
 * answering; then every group is closed and everything completes. */
static void
testManyBlockedWriters(void)
{
    g_autoptr(hdSimHost) sim = testStart("gpu16", NULL);
    g_autoptr(GPtrArray) writers = g_ptr_array_new();
    g_autoptr(GPtrArray) blocked = NULL;
    int fds[16];
    guint i;

    testCtl(sim, "cost all probe_ms 0");
    testCtl(sim, "cost all release_ms 100");
    for (i = 0; i < 16; i++) {
        g_autofree char *gpu = g_strdup_printf("0000:%02x:00.0", 0x11 + i);
        g_autofree char *audio = g_strdup_printf("0000:%02x:00.1", 0x11 + i);
        g_autofree char *node = g_strdup_printf("dev/vfio/%u", 11 + 2 * i);

        testToVfio(sim, gpu);
        testToVfio(sim, audio);
        fds[i] = testOpen(sim, node);
        g_assert_cmpint(fds[i], >=, 0);
    }

    for (i = 0; i < 32; i++) {
        g_autofree char *address = g_strdup_printf("0000:%02x:00.%u", 0x11 + i / 2, i % 2);

        g_ptr_array_add(writers, testWriterStart(sim, "sys/bus/pci/drivers/vfio-pci/unbind",
                                                 address));
    }
    for (i = 0; i < WAIT_MS / 20; i++) {
        g_clear_pointer(&blocked, g_ptr_array_unref);
        blocked = testEvents(sim, "unbind-blocked", NULL);
        if (blocked->len == 32)
            break;
        g_usleep(20000);
    }
    g_assert_cmpuint(blocked->len, ==, 32);
    /* Now the probes wait for the device lock each unbind holds. */
    for (i = 0; i < 32; i++) {
        g_autofree char *address = g_strdup_printf("0000:%02x:00.%u", 0x11 + i / 2, i % 2);

        g_ptr_array_add(writers, testWriterStart(sim, "sys/bus/pci/drivers_probe", address));
    }
    g_usleep(BLOCKED_MS * 1000);
    for (i = 0; i < writers->len; i++)
        g_assert_false(g_atomic_int_get(&((testWriter *) g_ptr_array_index(writers, i))->done));
    /* 64 writers blocked, and the daemon still answers (the driver link is
     * gone while the unbind waits, as on the real kernel). */
    testAssertDriver(sim, "0000:11:00.0", NULL);
    g_assert_true(testExists(sim, "dev/vfio/11"));
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 0);

    for (i = 0; i < 16; i++)
        close(fds[i]);
    for (i = 0; i < writers->len; i++)
        g_assert_cmpint(testWriterFinish(g_ptr_array_index(writers, i)), ==, 0);

    /* Each device was unbound and probed again (its override: vfio-pci). */
    for (i = 0; i < 32; i++) {
        g_autofree char *address = g_strdup_printf("0000:%02x:00.%u", 0x11 + i / 2, i % 2);

        testAssertDriver(sim, address, "vfio-pci");
    }
    g_assert_cmpuint(hdSimHostViolations(sim), ==, 0);
}


int
main(int argc, char **argv)
{
    const char *reason = hdTestSetup(&argc, &argv);

    HD_TEST_REQUIRE_SIMHOST(reason);

    g_test_add_func("/simhost/tree", testTree);
    g_test_add_func("/simhost/links", testLinks);
    g_test_add_func("/simhost/links/sriov", testSriovLinks);
    g_test_add_func("/simhost/netdevs", testNetdevs);
    g_test_add_func("/simhost/bind/errors", testBindErrors);
    g_test_add_func("/simhost/bind/drivers-probe", testDriversProbe);
    g_test_add_func("/simhost/bind/dev-node", testDevNode);
    g_test_add_func("/simhost/bind/tree-follows", testTreeFollowsBinding);
    g_test_add_func("/simhost/open/exclusive", testOpenExclusive);
    g_test_add_func("/simhost/open/not-viable", testOpenNotViable);
    g_test_add_func("/simhost/open/proc-fd", testProcFd);
    g_test_add_func("/simhost/unbind/blocked", testBlockedUnbind);
    g_test_add_func("/simhost/probe/refused", testRefusedProbe);
    g_test_add_func("/simhost/release/serialized", testSerializedTiming);
    g_test_add_func("/simhost/release/groups", testGroupReleaseTiming);
    g_test_add_func("/simhost/release/one-task-in-turn", testOneTaskReleasesInTurn);
    g_test_add_func("/simhost/fault/probe-fail", testFaultProbeFail);
    g_test_add_func("/simhost/fault/probe-hang", testFaultProbeHang);
    g_test_add_func("/simhost/fault/reset", testFaultReset);
    g_test_add_func("/simhost/fault/release-hang", testFaultReleaseHang);
    g_test_add_func("/simhost/ctl/errors", testCtlErrors);
    g_test_add_data_func("/simhost/topology/malformed", topologyMalformed, testTopologyError);
    g_test_add_data_func("/simhost/topology/duplicate", topologyDuplicate, testTopologyError);
    g_test_add_data_func("/simhost/topology/unknown-parent", topologyParent,
                         testTopologyError);
    g_test_add_func("/simhost/shutdown/blocked-writer", testShutdownBlocked);
    g_test_add_func("/simhost/shutdown/die-with-parent", testDieWithParent);
    g_test_add_func("/simhost/many-blocked-writers", testManyBlockedWriters);
    return g_test_run();
}
