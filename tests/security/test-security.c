/*
 * test-security.c: the security manager above a real manager on the
 * simulated host
 *
 * Runs with selinux-shim.so preloaded (labels in memory for the FUSE
 * nodes, see selinux-shim.c), VF settings in an in-memory backend, and the
 * domain's cgroup a real one when the machine has one we may create
 * (root); the device numbers of the simulated nodes (regular files) are
 * given by the test.  Every test ends with no label, ACL or VF setting
 * left behind.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <selinux/selinux.h>

#include "mgrtest.h"
#include "hdvfnet.h"
#include "selinux-shim.h"
#include "hostdev/error.h"
#include "hostdev/security.h"

#define TEST_LABEL "system_u:object_r:svirt_image_t:s0:c10,c20"
#define TEST_PF "enp0s25"
#define TEST_VF_MAC0 "02:00:00:00:00:01"

/* The small topology: a GPU and its audio function in group 2, an e1000e
 * alone in group 3 (it plays an SR-IOV VF here: the backend resolves it). */
#define GPU "0000:01:00.0"
#define AUDIO "0000:01:00.1"
#define NIC "0000:00:19.0"

typedef struct {
    hdSimHost *sim;
    hdHost *host;
    char *state_dir;
    hdManager *mgr;
    hdSecurityManager *sec;
    char *cgroup;                 /* NULL when the machine has none for us */
    hdVFNetConfig vf;             /* what the PF has for the VF now */
    gboolean vf_fail;             /* the backend's set fails */
    guint reports;
    guint problems[HD_SECURITY_PROBLEM_STATE + 1];   /* reports by hdSecurityProblem */
} Fixture;


static gboolean
testVFResolve(hdHost *host, const hdPCIAddress *vf, char **pf_ifname, unsigned int *index,
              gpointer opaque, GError **error)
{
    *pf_ifname = g_strdup(TEST_PF);
    *index = 3;
    return TRUE;
}


static gboolean
testVFGet(const char *pf_ifname, unsigned int index, hdVFNetConfig *config,
          gpointer opaque, GError **error)
{
    Fixture *f = opaque;

    g_assert_cmpstr(pf_ifname, ==, TEST_PF);
    g_assert_cmpuint(index, ==, 3);
    *config = f->vf;
    return TRUE;
}


static gboolean
testVFSet(const char *pf_ifname, unsigned int index, const hdVFNetConfig *config,
          gpointer opaque, GError **error)
{
    Fixture *f = opaque;

    if (f->vf_fail) {
        hdErrorSet(error, HD_ERROR_OPERATION_FAILED, "test: VF %u of %s refuses", index,
                   pf_ifname);
        return FALSE;
    }
    f->vf = *config;
    return TRUE;
}


static const hdVFNetBackend testVFBackend = {
    .resolve = testVFResolve,
    .get = testVFGet,
    .set = testVFSet,
};


/* The simulated nodes are regular files: /dev/vfio/vfio is 1:5 (as
 * /dev/zero), group N is 1:(100 + N). */
static gboolean
testDevNum(const char *path, unsigned int *major, unsigned int *minor, gpointer opaque,
           GError **error)
{
    const char *base = strrchr(path, '/') + 1;
    guint64 group;

    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
        hdErrorSetSystem(error, ENOENT, "test: no '%s'", path);
        return FALSE;
    }
    *major = 1;
    if (strcmp(base, "vfio") == 0)
        *minor = 5;
    else if (g_ascii_string_to_unsigned(base, 10, 0, 1000, &group, NULL))
        *minor = 100 + (unsigned int)group;
    else
        g_assert_not_reached();
    return TRUE;
}


static void
testReport(hdSecurityManager *sec, hdSecurityProblem problem, const char *domain,
           const GError *error, gpointer opaque)
{
    Fixture *f = opaque;

    g_test_message("reported (%d, %s): %s", (int)problem, domain, error->message);
    f->reports++;
    f->problems[problem]++;
}


static void
testOpenSecurity(Fixture *f)
{
    g_autoptr(GError) error = NULL;

    f->mgr = hdManagerOpen(f->host, f->state_dir, &error);
    g_assert_no_error(error);
    f->sec = hdSecurityManagerNew(f->mgr, f->state_dir, &error);
    g_assert_no_error(error);
    hdSecurityManagerSetReportFunc(f->sec, testReport, f);
    hdSecurityManagerSetDevNumFunc(f->sec, testDevNum, NULL);
    hdSecurityManagerSetVFNetBackend(f->sec, &testVFBackend, f);
}


static void
testCloseSecurity(Fixture *f)
{
    g_clear_pointer(&f->sec, hdSecurityManagerFree);
    g_clear_pointer(&f->mgr, hdManagerFree);
}


/* A cgroup we may create: v2 first, else the v1 devices controller. */
static char *
testMakeCgroup(void)
{
    static const char *const parents[] = {
        "/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/devices", NULL
    };
    guint i;

    if (geteuid() != 0)
        return NULL;
    for (i = 0; parents[i]; i++) {
        g_autofree char *path = g_strdup_printf("%s/hdsec-%d", parents[i], (int)getpid());
        struct statfs sfs;

        if (statfs(parents[i], &sfs) < 0 ||
            (sfs.f_type != CGROUP2_SUPER_MAGIC && sfs.f_type != CGROUP_SUPER_MAGIC))
            continue;
        if (mkdir(path, 0755) == 0)
            return g_steal_pointer(&path);
    }
    return NULL;
}


static void
fixtureSetUp(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;

    f->sim = hdSimHostStart("small", NULL, &error);
    g_assert_no_error(error);
    f->host = hdHostNew(hdSimHostRoot(f->sim));
    f->state_dir = g_dir_make_tmp("hdsec-XXXXXX", &error);
    g_assert_no_error(error);
    g_strlcpy(f->vf.mac, TEST_VF_MAC0, sizeof(f->vf.mac));
    f->cgroup = testMakeCgroup();
    testOpenSecurity(f);
}


static void
fixtureTearDown(Fixture *f, gconstpointer data)
{
    testCloseSecurity(f);
    if (f->cgroup)
        g_assert_cmpint(rmdir(f->cgroup), ==, 0);
    g_free(f->cgroup);
    g_clear_pointer(&f->host, hdHostUnref);
    g_clear_pointer(&f->sim, hdSimHostStop);
    mgrtestRemoveTree(f->state_dir);
    g_free(f->state_dir);
}


static char *
testLabelOf(Fixture *f, unsigned int group)
{
    g_autofree char *node = hdIOMMUGroupDevPath(f->host, group);
    char *con = NULL;
    char *ret;

    if (getfilecon_raw(node, &con) < 0)
        return NULL;   /* the node is gone, and its label with it */
    ret = g_strdup(con);
    freecon(con);
    return ret;
}


static void
testAssertLabel(Fixture *f, unsigned int group, const char *expected)
{
    g_autofree char *label = testLabelOf(f, group);

    g_assert_cmpstr(label, ==, expected);
}


static guint
testCount(GStrv lines, const char *prefix)
{
    guint n = 0;
    guint i;

    for (i = 0; lines[i]; i++) {
        if (g_str_has_prefix(lines[i], prefix))
            n++;
    }
    return n;
}


static void
testAssertNothingLeft(Fixture *f)
{
    g_auto(GStrv) applied = hdSecurityManagerListApplied(f->sec);
    g_auto(GStrv) pending = hdSecurityManagerListPending(f->sec);

    g_assert_cmpuint(g_strv_length(applied), ==, 0);
    g_assert_cmpuint(g_strv_length(pending), ==, 0);
    g_assert_cmpstr(f->vf.mac, ==, TEST_VF_MAC0);
    g_assert_cmpint(f->vf.vlan, ==, 0);
    g_assert_cmpuint(hdSimHostViolations(f->sim), ==, 0);
}


static void
testConfigure(Fixture *f, const char *domain)
{
    g_autofree char *xml = g_strdup_printf(
        "<domain><name>%s</name><devices>"
        "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
        "<address domain='0' bus='1' slot='0' function='0'/></source></hostdev>"
        "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
        "<address domain='0' bus='1' slot='0' function='1'/></source></hostdev>"
        "<interface type='hostdev' managed='yes'><source>"
        "<address type='pci' domain='0' bus='0' slot='0x19' function='0'/></source>"
        "<mac address='52:54:00:aa:bb:cc'/><vlan><tag id='42'/></vlan></interface>"
        "</devices></domain>", domain);
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseString(xml, strlen(xml), &error);

    g_assert_no_error(error);
    g_assert_true(hdSecurityManagerSetDomain(f->sec, domain, TEST_LABEL, f->cgroup, &error));
    g_assert_no_error(error);
    g_assert_true(hdSecurityManagerSetDomainDef(f->sec, domain, def, &error));
    g_assert_no_error(error);
    g_assert_true(hdManagerPrepare(f->mgr, domain, def->hostdevs, 0, &error));
    g_assert_no_error(error);
}


static int
testHoldGroup(Fixture *f, unsigned int group)
{
    g_autofree char *node = hdIOMMUGroupDevPath(f->host, group);
    int fd = open(node, O_RDWR | O_CLOEXEC);

    if (fd < 0)
        g_error("cannot open %s: %s", node, g_strerror(errno));
    return fd;
}


static void
testGiveBackAll(Fixture *f)
{
    g_autoptr(GError) error = NULL;
    guint tries;

    /* The simulated kernel releases the devices after the last close. */
    for (tries = 0; tries < 500; tries++) {
        g_autoptr(GArray) pending = hdManagerPendingGroups(f->mgr);

        if (pending->len == 0)
            return;
        hdManagerGiveBackPending(f->mgr, &error);
        g_assert_no_error(error);
        g_usleep(10 * 1000);
    }
    g_assert_not_reached();
}


/* @domain leaves, its groups go back, and nothing of it is left. */
static void
testReleaseAll(Fixture *f, const char *domain)
{
    g_autoptr(GError) error = NULL;

    g_assert_true(hdManagerReleaseDomain(f->mgr, domain, &error));
    g_assert_no_error(error);
    testGiveBackAll(f);
    testAssertNothingLeft(f);
    g_assert_true(hdSecurityManagerForgetDomain(f->sec, domain, &error));
    g_assert_no_error(error);
}


/* Assignment labels the nodes, opens the cgroup and sets the VF; release
 * takes the ACLs away at once, but the labels of a group still held stay
 * until the group is given back. */
static void
testLifecycle(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) applied = NULL;
    g_auto(GStrv) after_release = NULL;
    g_autofree char *state = NULL;
    g_autofree char *state_path = g_build_filename(f->state_dir, "security.json", NULL);
    int qemu;

    testAssertLabel(f, 2, NULL);
    testConfigure(f, "vm1");
    g_assert_true(hdSecurityManagerCheckDomain(f->sec, "vm1", &error));
    g_assert_no_error(error);

    testAssertLabel(f, 2, TEST_LABEL);
    testAssertLabel(f, 3, TEST_LABEL);
    g_assert_cmpstr(f->vf.mac, ==, "52:54:00:aa:bb:cc");
    g_assert_cmpint(f->vf.vlan, ==, 42);
    /* Two group nodes and the iommufd cdev of each of the three devices. */
    applied = hdSecurityManagerListApplied(f->sec);
    g_assert_cmpuint(testCount(applied, "label "), ==, 5);
    g_assert_cmpuint(testCount(applied, "vf " NIC), ==, 1);
    /* Group 2, group 3 and the container. */
    g_assert_cmpuint(testCount(applied, "cgroup "), ==, f->cgroup ? 3 : 0);

    /* What was saved is on disk before the guest runs. */
    g_assert_true(g_file_get_contents(state_path, &state, NULL, NULL));
    g_assert_nonnull(strstr(state, "\"original\" : \"" HD_SELINUX_SHIM_DEFAULT "\""));
    g_assert_nonnull(strstr(state, "\"mac\" : \"" TEST_VF_MAC0 "\""));

    /* The guest holds group 2 and leaves: the NIC's group goes back at
     * once, the GPU's waits; every ACL is gone already. */
    qemu = testHoldGroup(f, 2);
    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    g_assert_no_error(error);
    after_release = hdSecurityManagerListApplied(f->sec);
    g_assert_cmpuint(testCount(after_release, "cgroup "), ==, 0);
    g_assert_cmpuint(testCount(after_release, "label "), ==, 3);
    testAssertLabel(f, 2, TEST_LABEL);
    g_assert_cmpstr(f->vf.mac, ==, TEST_VF_MAC0);
    mgrtestAssertDriver(f->sim, GPU, "vfio-pci");

    close(qemu);
    testGiveBackAll(f);
    mgrtestAssertDriver(f->sim, GPU, "nvidia");
    testAssertLabel(f, 2, NULL);
    testAssertNothingLeft(f);
    g_assert_cmpuint(f->reports, ==, 0);
    g_assert_true(hdSecurityManagerForgetDomain(f->sec, "vm1", &error));
    g_assert_no_error(error);
}


/* A daemon that restarts with the guest running still knows what to undo:
 * the records are on disk, the domain's configuration is not needed. */
static void
testRestart(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) applied = NULL;

    testConfigure(f, "vm1");
    testCloseSecurity(f);
    testOpenSecurity(f);
    applied = hdSecurityManagerListApplied(f->sec);
    g_assert_cmpuint(testCount(applied, "label "), ==, 5);
    g_assert_cmpuint(testCount(applied, "vf "), ==, 1);

    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    g_assert_no_error(error);
    testGiveBackAll(f);
    testAssertLabel(f, 2, NULL);
    testAssertNothingLeft(f);
    g_assert_true(hdSecurityManagerForgetDomain(f->sec, "vm1", &error));
    g_assert_no_error(error);
}


/* The daemon dies after the manager recorded the guest's release but
 * before its events reached the security manager: the restarted one
 * catches up with the manager's state.  The NIC's group went home, so its
 * label and VF setting go; the GPU's group is still held, so its labels
 * stay until it is given back; every ACL goes at once. */
static void
testMissedEvents(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) applied = NULL;
    int qemu;

    testConfigure(f, "vm1");
    qemu = testHoldGroup(f, 2);
    /* No handler: the manager keeps the events, and loses them with it. */
    g_clear_pointer(&f->sec, hdSecurityManagerFree);
    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    g_assert_no_error(error);
    mgrtestAssertDriver(f->sim, NIC, "e1000e");
    g_clear_pointer(&f->mgr, hdManagerFree);

    /* The start restores the VF at once, with the real netlink backend
     * (the test's is set after the start): no such PF here. */
    g_test_expect_message("hostdev", G_LOG_LEVEL_WARNING, "*" TEST_PF "*");
    testOpenSecurity(f);
    g_test_assert_expected_messages();
    g_assert_cmpuint(hdSecurityManagerRetry(f->sec, &error), ==, 0);
    g_assert_no_error(error);
    applied = hdSecurityManagerListApplied(f->sec);
    g_assert_cmpuint(testCount(applied, "cgroup "), ==, 0);
    g_assert_cmpuint(testCount(applied, "vf "), ==, 0);
    g_assert_cmpuint(testCount(applied, "label "), ==, 3);
    g_assert_cmpstr(f->vf.mac, ==, TEST_VF_MAC0);
    testAssertLabel(f, 2, TEST_LABEL);

    close(qemu);
    testGiveBackAll(f);
    testAssertLabel(f, 2, NULL);
    testAssertNothingLeft(f);
    g_assert_true(hdSecurityManagerForgetDomain(f->sec, "vm1", &error));
    g_assert_no_error(error);
}


/* A restore that fails is reported and stays pending; the group is still
 * given back (the manager never waits for us); a retry finishes it. */
static void
testRetry(Fixture *f, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) pending = NULL;

    testConfigure(f, "vm1");
    f->vf_fail = TRUE;
    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    g_assert_no_error(error);
    testGiveBackAll(f);
    mgrtestAssertDriver(f->sim, NIC, "e1000e");
    g_assert_cmpuint(f->reports, >=, 1);
    g_assert_cmpuint(f->problems[HD_SECURITY_PROBLEM_CLEANUP], ==, f->reports);
    pending = hdSecurityManagerListPending(f->sec);
    g_assert_cmpuint(g_strv_length(pending), ==, 1);
    g_assert_cmpstr(pending[0], ==, "vf " NIC);
    g_assert_cmpstr(f->vf.mac, ==, "52:54:00:aa:bb:cc");

    g_assert_cmpuint(hdSecurityManagerRetry(f->sec, &error), ==, 1);
    g_assert_nonnull(error);
    g_clear_error(&error);

    f->vf_fail = FALSE;
    g_assert_cmpuint(hdSecurityManagerRetry(f->sec, &error), ==, 0);
    g_assert_no_error(error);
    testAssertNothingLeft(f);
    g_assert_true(hdSecurityManagerForgetDomain(f->sec, "vm1", &error));
    g_assert_no_error(error);
}


/* A label that cannot be set fails the domain's check (the guest must not
 * start) and leaves nothing recorded for that node. */
static void
testAssignFailure(Fixture *f, gconstpointer data)
{
    g_autofree char *node = hdIOMMUGroupDevPath(f->host, 3);
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) applied = NULL;

    g_setenv("HD_SELINUX_SHIM_FAIL", node, TRUE);
    testConfigure(f, "vm1");
    g_unsetenv("HD_SELINUX_SHIM_FAIL");
    g_assert_false(hdSecurityManagerCheckDomain(f->sec, "vm1", &error));
    g_assert_error(error, HD_SYSTEM_ERROR, EIO);
    g_assert_nonnull(strstr(error->message, node));
    /* Reported as the setup it is, not as a cleanup. */
    g_assert_cmpuint(f->problems[HD_SECURITY_PROBLEM_SETUP], ==, 1);
    g_assert_cmpuint(f->problems[HD_SECURITY_PROBLEM_CLEANUP], ==, 0);
    applied = hdSecurityManagerListApplied(f->sec);
    g_assert_cmpuint(testCount(applied, "label "), ==, 4);

    g_clear_error(&error);
    g_assert_true(hdManagerReleaseDomain(f->mgr, "vm1", &error));
    g_assert_no_error(error);
    testGiveBackAll(f);
    testAssertNothingLeft(f);

    /* The next assignment of the domain starts afresh: the failure of the
     * one before is not its own. */
    testConfigure(f, "vm1");
    g_assert_true(hdSecurityManagerCheckDomain(f->sec, "vm1", &error));
    g_assert_no_error(error);
    testReleaseAll(f, "vm1");
}


static hdDomainDef *
testParse(const char *xml)
{
    g_autoptr(GError) error = NULL;
    hdDomainDef *def = hdDomainDefParseString(xml, strlen(xml), &error);

    g_assert_no_error(error);
    return def;
}


/* A lone <hostdev> needs no domain; the VF settings of a lone <interface
 * type='hostdev'> need the one the request is for, and only that. */
static void
testDomainDef(Fixture *f, gconstpointer data)
{
    g_autoptr(hdDomainDef) hostdev = testParse(
        "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
        "<address domain='0' bus='1' slot='0' function='0'/></source></hostdev>");
    g_autoptr(hdDomainDef) iface = testParse(
        "<interface type='hostdev' managed='yes'><source>"
        "<address type='pci' domain='0' bus='0' slot='0x19' function='0'/></source>"
        "<mac address='52:54:00:aa:bb:cd'/></interface>");
    g_autoptr(hdDomainDef) named = testParse("<domain><name>vm2</name></domain>");
    g_autoptr(GError) error = NULL;

    g_assert_true(hdSecurityManagerSetDomainDef(f->sec, NULL, hostdev, &error));
    g_assert_no_error(error);
    g_assert_true(hdSecurityManagerSetDomainDef(f->sec, "vm1", hostdev, &error));
    g_assert_no_error(error);

    g_assert_false(hdSecurityManagerSetDomainDef(f->sec, NULL, iface, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "VF " NIC));
    g_clear_error(&error);

    g_assert_false(hdSecurityManagerSetDomainDef(f->sec, "vm1", named, &error));
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_clear_error(&error);

    g_assert_true(hdSecurityManagerSetDomain(f->sec, "vm1", NULL, NULL, &error));
    g_assert_no_error(error);
    g_assert_true(hdSecurityManagerSetDomainDef(f->sec, "vm1", iface, &error));
    g_assert_no_error(error);
    g_assert_true(hdManagerPrepare(f->mgr, "vm1", iface->hostdevs, 0, &error));
    g_assert_no_error(error);
    g_assert_true(hdSecurityManagerCheckDomain(f->sec, "vm1", &error));
    g_assert_no_error(error);
    g_assert_cmpstr(f->vf.mac, ==, "52:54:00:aa:bb:cd");
    g_assert_cmpint(f->vf.vlan, ==, 0);

    testReleaseAll(f, "vm1");
}


static int
testFindSELinux(struct dl_phdr_info *info, size_t size, void *data)
{
    if (strstr(info->dlpi_name, "libselinux.so"))
        *(gboolean *)data = TRUE;
    return 0;
}


/* The build links the real libselinux; the shim only stands in front of
 * it in this test. */
static void
testLinked(void)
{
    gboolean found = FALSE;
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "getfilecon_raw");

    dl_iterate_phdr(testFindSELinux, &found);
    g_assert_true(found);
    g_assert_nonnull(sym);
    g_assert_true(dladdr(sym, &info) != 0);
    g_assert_nonnull(strstr(info.dli_fname, "selinux-shim"));
}


int
main(int argc, char **argv)
{
    const char *reason = hdTestSetup(&argc, &argv);

    g_test_add_func("/security/linked", testLinked);
    HD_TEST_REQUIRE_SIMHOST(reason);
    if (!g_getenv("HD_SELINUX_SHIM_ENABLED")) {
        g_printerr("SKIP: run by meson with selinux-shim.so preloaded\n");
        return HD_TEST_SKIP_EXIT;
    }
#define ADD(name, func) \
    g_test_add(name, Fixture, NULL, fixtureSetUp, func, fixtureTearDown)
    ADD("/security/lifecycle", testLifecycle);
    ADD("/security/restart", testRestart);
    ADD("/security/missed-events", testMissedEvents);
    ADD("/security/retry", testRetry);
    ADD("/security/assign-failure", testAssignFailure);
    ADD("/security/domain-def", testDomainDef);
    return g_test_run();
}
