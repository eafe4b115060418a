/*
 * bench-teardown.c: destroy of a guest with 1 to 64 GPUs, hostdev against a
 * serial baseline, on the simulated host
 *
 * Each GPU is one IOMMU group with its HDMI audio function.  Kernel costs
 * are seed 002's: releasing a device takes 1 s after the last close, probing
 * a host driver 300 ms.  Two kernels: "per-device" (releases of different
 * groups run at the same time) and "global" (one lock over every release,
 * the kernel of seed 002).
 *
 *  - hostdev: QEMU (a process holding every group) is killed, then
 *    hdDestroyDomain gives every group back.
 *  - serial: the same QEMU exit, then one device after the other: wait
 *    until it is released, give it back to its host driver (no reset: the
 *    kernel reset it on release, and libvirt skips it for vfio-pci too).
 *    See benchSerialGroup for why it keeps the group's members together.
 *
 * The lower bound is what no manager can overlap: with the global kernel
 * every device's release one after the other, with per-device locks one
 * group's releases; then the last group's host-driver probes (a group's
 * functions are probed in order, function 0 first, as the kernel does at
 * boot and libvirt does).  Results: a table on stdout, $HD_BUILDDIR/bench/teardown.json
 * and teardown.svg.  HD_BENCH_GPUS="1 8" limits the sizes, HD_BENCH_SCALE=0.1
 * scales every cost, HD_BENCH_KERNELS="per-device" runs one kernel, and
 * HD_BENCH_SERIAL=0 skips the baseline (serial_s is then 0): quick runs.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "hdholders.h"
#include "hostdev/destroy.h"
#include "hostdev/error.h"
#include "mgrtest.h"

#define RELEASE_MS 1000
#define PROBE_MS 300

typedef struct {
    guint gpus;
    gboolean global;
    double hostdev_s;
    double serial_s;
    double bound_s;      /* lower bound, see above */
    guint violations;
} BenchResult;

typedef struct {
    hdSimHost *sim;
    hdHost *host;
    char *state_dir;
    hdManager *mgr;
    pid_t qemu;
    GPtrArray *devices;  /* char *: every GPU and audio function */
} BenchHost;


static double
benchScale(void)
{
    const char *scale = g_getenv("HD_BENCH_SCALE");

    return scale ? g_ascii_strtod(scale, NULL) : 1.0;
}


static char *
benchTopology(const char *dir, guint gpus)
{
    g_autoptr(GString) json = g_string_new("{\"name\": \"bench\", \"devices\": [\n");
    g_autofree char *path = g_strdup_printf("%s/gpu%u.json", dir, gpus);
    guint release = (guint)(RELEASE_MS * benchScale());
    guint probe = (guint)(PROBE_MS * benchScale());
    guint i;

    for (i = 0; i < gpus; i++) {
        guint port = 0x100 + i;
        guint bus = 0x10 + i;
        const char *funcs[][4] = {
            { "0", "0x030000", "nvidia", "0x2204" },
            { "1", "0x040300", "snd_hda_intel", "0x1aef" },
        };
        guint f;

        g_string_append_printf(json,
                               "%s{\"address\": \"0000:00:%02x.%x\", \"vendor\": \"0x8086\", "
                               "\"device\": \"0x2030\", \"class\": \"0x060400\", "
                               "\"driver\": \"pcieport\", \"iommu_group\": %u}",
                               i ? ",\n" : "", (port >> 3) & 0x1f, port & 7, 1000 + i);
        for (f = 0; f < 2; f++)
            g_string_append_printf(json,
                                   ",\n{\"address\": \"0000:%02x:00.%s\", \"vendor\": \"0x10de\", "
                                   "\"device\": \"%s\", \"class\": \"%s\", \"driver\": \"%s\", "
                                   "\"iommu_group\": %u, \"parent\": \"0000:00:%02x.%x\", "
                                   "\"reset_method\": \"flr\", \"reset_ms\": 0, "
                                   "\"probe_ms\": %u, \"release_ms\": %u}",
                                   bus, funcs[f][0], funcs[f][3], funcs[f][1], funcs[f][2], i,
                                   (port >> 3) & 0x1f, port & 7, probe, release);
    }
    g_string_append(json, "\n]}\n");
    g_assert_true(g_file_set_contents(path, json->str, -1, NULL));
    return g_steal_pointer(&path);
}


static void
benchHostStart(BenchHost *b, const char *topology, gboolean global, guint gpus)
{
    const char *serialized[] = { "--serialized", NULL };
    g_autoptr(GPtrArray) defs = g_ptr_array_new_with_free_func((GDestroyNotify)hdHostdevDefFree);
    g_autoptr(GError) error = NULL;
    guint i;

    b->sim = hdSimHostStart(topology, global ? serialized : NULL, &error);
    g_assert_no_error(error);
    b->host = hdHostNew(hdSimHostRoot(b->sim));
    b->state_dir = g_dir_make_tmp("hdbench-XXXXXX", &error);
    g_assert_no_error(error);
    b->mgr = hdManagerOpen(b->host, b->state_dir, &error);
    g_assert_no_error(error);
    b->devices = g_ptr_array_new_with_free_func(g_free);
    for (i = 0; i < gpus; i++) {
        hdHostdevDef *def;
        guint f;

        for (f = 0; f < 2; f++) {
            char *addr = g_strdup_printf("0000:%02x:00.%u", 0x10 + i, f);

            def = g_new0(hdHostdevDef, 1);
            g_assert_true(hdPCIAddressParse(addr, &def->addr, NULL));
            def->managed = TRUE;
            g_ptr_array_add(defs, def);
            g_ptr_array_add(b->devices, addr);
        }
    }
    g_assert_true(hdManagerPrepare(b->mgr, "guest", defs, 0, &error));
    g_assert_no_error(error);
}


/* QEMU: a child holding every group open. */
static void
benchStartQemu(BenchHost *b, guint gpus)
{
    g_autoptr(GPtrArray) nodes = g_ptr_array_new_with_free_func(g_free);
    guint i;

    for (i = 0; i < gpus; i++)
        g_ptr_array_add(nodes, hdIOMMUGroupDevPath(b->host, i));
    b->qemu = mgrtestStartQemu(nodes, MGRTEST_QEMU_EXITS);
}


static guint
benchHostStop(BenchHost *b)
{
    g_autoptr(GPtrArray) on_vfio = NULL;
    guint violations = hdSimHostViolations(b->sim);
    guint i;

    /* Every device must be home, or the figure means nothing. */
    for (i = 0; i < b->devices->len; i++) {
        g_autofree char *driver = hdSimHostDriverOf(b->sim, g_ptr_array_index(b->devices, i));

        if (!driver || strcmp(driver, "vfio-pci") == 0)
            g_error("%s did not come back (on %s)", (char *)g_ptr_array_index(b->devices, i),
                    driver ? driver : "no driver");
    }
    g_clear_pointer(&b->mgr, hdManagerFree);
    g_clear_pointer(&b->host, hdHostUnref);
    g_clear_pointer(&b->sim, hdSimHostStop);
    mgrtestRemoveTree(b->state_dir);
    g_free(b->state_dir);
    g_ptr_array_unref(b->devices);
    return violations;
}


static double
benchNow(void)
{
    return g_get_monotonic_time() / 1e6;
}


static double
benchHostdev(const char *topology, guint gpus, gboolean global, guint *violations)
{
    BenchHost b = { 0 };
    g_autoptr(hdDestroyReport) report = NULL;
    g_autoptr(GError) error = NULL;
    double start;
    double elapsed;

    benchHostStart(&b, topology, global, gpus);
    benchStartQemu(&b, gpus);
    start = benchNow();
    g_assert_true(hdDestroyDomain(b.mgr, "guest", b.qemu, NULL, &report, &error));
    elapsed = benchNow() - start;
    g_assert_no_error(error);
    waitpid(b.qemu, NULL, 0);
    if (report->problems->len > 0)
        g_error("spurious problem: %s", (char *)g_ptr_array_index(report->problems, 0));
    *violations += benchHostStop(&b);
    return elapsed;
}


/* One device after the other, after the same QEMU exit: wait until the
 * group is free, then each member off vfio-pci (the unbind waits for its
 * release) and back on its host driver.  The members of a group leave
 * vfio-pci before any is probed: libvirt's plain per-device loop probes the
 * GPU while the kernel still releases its audio function, which the kernel
 * refuses (seed 000; the simulated host counts a violation), so the
 * baseline keeps hostdev's order and drops only its parallelism. */
static void
benchSerialGroup(BenchHost *b, guint gpu)
{
    g_autoptr(GError) error = NULL;
    gboolean free_ = FALSE;
    hdPCIAddress addrs[2];
    guint f;

    for (;;) {
        if (!hdGroupFreeByProc(b->host, gpu, &free_, NULL, &error))
            g_error("%s", error->message);
        if (free_)
            break;
        g_usleep(10 * 1000);
    }
    for (f = 0; f < 2; f++) {
        g_assert_true(hdPCIAddressParse(g_ptr_array_index(b->devices, 2 * gpu + f),
                                        &addrs[f], NULL));
        if (!hdPCIDeviceSetDriverOverride(b->host, &addrs[f], NULL, &error) ||
            !hdPCIDeviceUnbind(b->host, &addrs[f], &error))
            g_error("serial unbind: %s", error->message);
    }
    for (f = 0; f < 2; f++) {
        if (!hdPCIDeviceProbe(b->host, &addrs[f], &error))
            g_error("serial probe: %s", error->message);
    }
}


static double
benchSerial(const char *topology, guint gpus, gboolean global, guint *violations)
{
    BenchHost b = { 0 };
    double start;
    double elapsed;
    guint i;

    benchHostStart(&b, topology, global, gpus);
    benchStartQemu(&b, gpus);
    start = benchNow();
    kill(b.qemu, SIGKILL);
    waitpid(b.qemu, NULL, 0);
    for (i = 0; i < gpus; i++)
        benchSerialGroup(&b, i);
    elapsed = benchNow() - start;
    *violations += benchHostStop(&b);
    return elapsed;
}


static GArray *
benchSizes(void)
{
    const char *env = g_getenv("HD_BENCH_GPUS");
    g_auto(GStrv) words = g_strsplit(env ? env : "1 8 16 32 64", " ", -1);
    GArray *sizes = g_array_new(FALSE, FALSE, sizeof(guint));
    guint i;

    for (i = 0; words[i]; i++) {
        guint n = (guint)g_ascii_strtoull(words[i], NULL, 10);

        if (n > 0 && n <= 200)
            g_array_append_val(sizes, n);
    }
    return sizes;
}


static void
benchWriteJSON(const char *path, GArray *results)
{
    g_autoptr(GString) json = g_string_new("[\n");
    guint i;

    for (i = 0; i < results->len; i++) {
        BenchResult *r = &g_array_index(results, BenchResult, i);

        g_string_append_printf(json,
                               "  {\"gpus\": %u, \"kernel\": \"%s\", \"hostdev_s\": %.3f, "
                               "\"serial_s\": %.3f, \"lower_bound_s\": %.3f, "
                               "\"violations\": %u}%s\n",
                               r->gpus, r->global ? "global" : "per-device", r->hostdev_s,
                               r->serial_s, r->bound_s, r->violations,
                               i + 1 < results->len ? "," : "");
    }
    g_string_append(json, "]\n");
    g_assert_true(g_file_set_contents(path, json->str, -1, NULL));
}


/* Time against GPU count: one line per (program, kernel). */
static void
benchWriteSVG(const char *path, GArray *results)
{
    const int w = 640, h = 420, left = 60, bottom = 360, top = 30, right = 620;
    const char *colors[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728" };
    g_autoptr(GString) svg = g_string_new(NULL);
    double ymax = 1;
    guint xmax = 1;
    guint line;
    guint i;

    for (i = 0; i < results->len; i++) {
        BenchResult *r = &g_array_index(results, BenchResult, i);
        ymax = MAX(ymax, MAX(r->hostdev_s, r->serial_s));
        xmax = MAX(xmax, r->gpus);
    }
    g_string_append_printf(svg,
                           "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
                           "font-family='sans-serif' font-size='12'>\n"
                           "<rect width='100%%' height='100%%' fill='white'/>\n"
                           "<text x='%d' y='18'>Teardown time (s) against GPUs (GPU + audio "
                           "per group)</text>\n"
                           "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n"
                           "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n"
                           "<text x='%d' y='%d'>0</text><text x='%d' y='%d'>%.0f s</text>\n"
                           "<text x='%d' y='%d'>%u GPUs</text>\n",
                           w, h, left, left, bottom, right, bottom, left, bottom, left, top,
                           left - 15, bottom + 15, 5, top + 5, ymax, right - 50, bottom + 30,
                           xmax);
    for (line = 0; line < 4; line++) {
        gboolean global = line >= 2;
        gboolean serial = line % 2;
        g_autoptr(GString) points = g_string_new(NULL);

        for (i = 0; i < results->len; i++) {
            BenchResult *r = &g_array_index(results, BenchResult, i);
            double v = serial ? r->serial_s : r->hostdev_s;

            if (r->global != global)
                continue;
            g_string_append_printf(points, "%.1f,%.1f ",
                                   left + (double)(right - left) * r->gpus / xmax,
                                   bottom - (bottom - top) * v / ymax);
        }
        g_string_append_printf(svg,
                               "<polyline fill='none' stroke='%s' stroke-width='2' "
                               "points='%s'/>\n<text x='%d' y='%d' fill='%s'>%s, %s kernel"
                               "</text>\n",
                               colors[line], points->str, left + 10, top + 20 + 15 * line,
                               colors[line], serial ? "serial" : "hostdev",
                               global ? "global-lock" : "per-device");
    }
    g_string_append(svg, "</svg>\n");
    g_assert_true(g_file_set_contents(path, svg->str, -1, NULL));
}


static void
benchTargets(GArray *results)
{
    BenchResult *one = NULL;
    guint i;

    for (i = 0; i < results->len; i++) {
        BenchResult *r = &g_array_index(results, BenchResult, i);

        if (!r->global && r->gpus == 1)
            one = r;
    }
    for (i = 0; i < results->len; i++) {
        BenchResult *r = &g_array_index(results, BenchResult, i);

        if (!r->global && r->gpus == 64 && one)
            g_print("per-device, 64 GPUs: %.2fx hostdev's 1-GPU time (target <= 1.25)\n",
                    r->hostdev_s / one->hostdev_s);
        if (!r->global && r->gpus == 32)
            g_print("per-device, 32 GPUs: hostdev %.1fx faster than serial (target >= 20)\n",
                    r->serial_s / r->hostdev_s);
        if (r->global)
            g_print("global lock, %u GPUs: hostdev at %.1f%% of the lower bound "
                    "(target within 10%%)\n", r->gpus, 100.0 * r->hostdev_s / r->bound_s);
    }
}


/* The lower bound of a teardown of @gpus groups of two functions. */
static double
benchLowerBound(guint gpus, gboolean global)
{
    guint serial_releases = 2 * (global ? gpus : 1);

    return (serial_releases * RELEASE_MS + 2 * PROBE_MS) * benchScale() / 1000;
}


int
main(int argc, char **argv)
{
    const char *skip = hdTestSetup(&argc, &argv);
    g_autoptr(GArray) sizes = benchSizes();
    g_autoptr(GArray) results = g_array_new(FALSE, TRUE, sizeof(BenchResult));
    g_autofree char *outdir = NULL;
    g_autofree char *json = NULL;
    g_autofree char *svg = NULL;
    g_autofree char *topodir = NULL;
    const char *kernels = g_getenv("HD_BENCH_KERNELS");
    guint mode;
    guint i;

    HD_TEST_REQUIRE_SIMHOST(skip);
    outdir = g_build_filename(g_getenv("HD_BUILDDIR") ? g_getenv("HD_BUILDDIR") : ".",
                              "bench", NULL);
    g_mkdir_with_parents(outdir, 0755);
    topodir = g_dir_make_tmp("hdbench-topo-XXXXXX", NULL);

    g_print("%6s  %-10s  %10s  %10s  %12s  %10s\n", "gpus", "kernel", "hostdev_s",
            "serial_s", "lower_bound", "violations");
    for (mode = 0; mode < 2; mode++) {
        if (kernels && !strstr(kernels, mode ? "global" : "per-device"))
            continue;
        for (i = 0; i < sizes->len; i++) {
            BenchResult r = { .gpus = g_array_index(sizes, guint, i), .global = mode == 1 };
            g_autofree char *topology = benchTopology(topodir, r.gpus);

            r.hostdev_s = benchHostdev(topology, r.gpus, r.global, &r.violations);
            if (g_strcmp0(g_getenv("HD_BENCH_SERIAL"), "0") != 0)
                r.serial_s = benchSerial(topology, r.gpus, r.global, &r.violations);
            r.bound_s = benchLowerBound(r.gpus, r.global);
            g_print("%6u  %-10s  %10.2f  %10.2f  %12.2f  %10u\n", r.gpus,
                    r.global ? "global" : "per-device", r.hostdev_s, r.serial_s, r.bound_s,
                    r.violations);
            g_array_append_val(results, r);
            g_unlink(topology);
        }
    }
    g_rmdir(topodir);
    json = g_build_filename(outdir, "teardown.json", NULL);
    svg = g_build_filename(outdir, "teardown.svg", NULL);
    benchWriteJSON(json, results);
    benchWriteSVG(svg, results);
    benchTargets(results);
    g_print("results: %s, %s\n", json, svg);
    for (i = 0; i < results->len; i++)
        g_assert_cmpuint(g_array_index(results, BenchResult, i).violations, ==, 0);
    return 0;
}
