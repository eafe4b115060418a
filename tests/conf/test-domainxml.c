/*
 * test-domainxml.c: parsing libvirt's <domain> and <hostdev> XML
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "hostdev/domain.h"
#include "hostdev/error.h"

static char *
testDataPath(const char *name)
{
    return g_build_filename(g_getenv("HD_SRCDIR"), "tests", "conf", "data", name, NULL);
}


static const char *
testAddr(const hdHostdevDef *def, char buf[HD_PCI_ADDRESS_STRLEN])
{
    return hdPCIAddressFormat(&def->addr, buf);
}


static void
testDumpxml(void)
{
    g_autofree char *path = testDataPath("dumpxml-gpu.xml");
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseFile(path, &error);
    char buf[HD_PCI_ADDRESS_STRLEN];
    hdHostdevDef *h;
    guint i;
    gboolean usb_noted = FALSE;

    g_assert_no_error(error);
    g_assert_cmpstr(def->name, ==, "gpu-guest");
    g_assert_cmpuint(def->hostdevs->len, ==, 3);

    h = g_ptr_array_index(def->hostdevs, 0);
    g_assert_cmpstr(testAddr(h, buf), ==, "0000:01:00.0");
    g_assert_true(h->managed);
    g_assert_cmpstr(h->alias, ==, "hostdev0");
    g_assert_nonnull(h->guest);
    g_assert_cmpstr(hdPCIAddressFormat(h->guest, buf), ==, "0000:06:00.0");
    h = g_ptr_array_index(def->hostdevs, 1);
    g_assert_cmpstr(testAddr(h, buf), ==, "0000:01:00.1");
    g_assert_cmpstr(h->alias, ==, "hostdev1");
    g_assert_cmpstr(hdPCIAddressFormat(h->guest, buf), ==, "0000:07:00.0");
    h = g_ptr_array_index(def->hostdevs, 2);
    g_assert_cmpstr(testAddr(h, buf), ==, "0000:02:00.0");
    g_assert_false(h->managed);
    g_assert_null(h->guest);

    /* The USB hostdev and the <rom> are noted. */
    for (i = 0; i < def->notes->len; i++) {
        const char *note = g_ptr_array_index(def->notes, i);
        if (strstr(note, "type='usb'"))
            usb_noted = TRUE;
    }
    g_assert_true(usb_noted);
    g_assert_cmpuint(def->notes->len, ==, 2);
}


static void
testLoneHostdev(void)
{
    g_autofree char *path = testDataPath("hostdev-managed.xml");
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseFile(path, &error);
    char buf[HD_PCI_ADDRESS_STRLEN];

    g_assert_no_error(error);
    g_assert_null(def->name);
    g_assert_cmpuint(def->hostdevs->len, ==, 1);
    g_assert_cmpstr(testAddr(g_ptr_array_index(def->hostdevs, 0), buf), ==, "0000:01:00.1");
    g_assert_cmpuint(def->notes->len, ==, 0);
}


/* An SR-IOV VF assigned as a network device is a hostdev with a MAC and a
 * VLAN; other interface types are not ours. */
static void
testInterfaceHostdev(void)
{
    g_autofree char *path = testDataPath("interface-hostdev.xml");
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseFile(path, &error);
    char buf[HD_PCI_ADDRESS_STRLEN];
    hdHostdevDef *h;
    guint i;
    gboolean model_noted = FALSE;

    g_assert_no_error(error);
    g_assert_cmpuint(def->hostdevs->len, ==, 3);

    h = g_ptr_array_index(def->hostdevs, 0);
    g_assert_cmpstr(testAddr(h, buf), ==, "0000:03:10.2");
    g_assert_true(h->managed);
    g_assert_cmpstr(h->alias, ==, "hostdev1");
    g_assert_nonnull(h->net);
    g_assert_cmpstr(h->net->mac, ==, "52:54:00:6d:90:02");
    g_assert_cmpint(h->net->vlan, ==, 42);

    h = g_ptr_array_index(def->hostdevs, 1);
    g_assert_cmpstr(testAddr(h, buf), ==, "0000:03:10.4");
    g_assert_false(h->managed);
    g_assert_nonnull(h->net);
    g_assert_null(h->net->mac);
    g_assert_cmpint(h->net->vlan, ==, -1);

    h = g_ptr_array_index(def->hostdevs, 2);
    g_assert_cmpstr(testAddr(h, buf), ==, "0000:01:00.0");
    g_assert_null(h->net);

    for (i = 0; i < def->notes->len; i++) {
        if (strstr(g_ptr_array_index(def->notes, i), "<model>"))
            model_noted = TRUE;
    }
    g_assert_true(model_noted);
}


/* A lone <interface type='hostdev'>, as `virsh attach-device` takes it. */
static void
testLoneInterface(void)
{
    const char *xml =
        "<interface type='hostdev' managed='yes'>\n"
        "  <source><address type='pci' domain='0' bus='3' slot='0x10' function='2'/></source>\n"
        "  <mac address='52:54:00:6D:90:02'/><vlan><tag id='42'/></vlan>\n"
        "</interface>";
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseString(xml, strlen(xml), &error);
    char buf[HD_PCI_ADDRESS_STRLEN];
    hdHostdevDef *h;

    g_assert_no_error(error);
    g_assert_null(def->name);
    g_assert_cmpuint(def->hostdevs->len, ==, 1);
    h = g_ptr_array_index(def->hostdevs, 0);
    g_assert_cmpstr(testAddr(h, buf), ==, "0000:03:10.2");
    g_assert_true(h->managed);
    g_assert_nonnull(h->net);
    g_assert_cmpstr(h->net->mac, ==, "52:54:00:6d:90:02");
    g_assert_cmpint(h->net->vlan, ==, 42);
}


typedef struct {
    const char *name;
    const char *xml;
    const char *message;  /* substring the error must contain */
} testBadXML;

#define HOSTDEV_OPEN "<hostdev mode='subsystem' type='pci' managed='yes'>"
#define SOURCE(d, b, s, f) \
    "<source><address domain='" d "' bus='" b "' slot='" s "' function='" f "'/></source>"

static const testBadXML badCases[] = {
    { "malformed", "<hostdev mode='subsystem' type='pci'>", "malformed XML at line" },
    { "empty", "", "malformed XML" },
    { "root", "<network><name>x</name></network>", "unexpected root element <network>" },
    { "no-name", "<domain><devices/></domain>", "<domain> has no <name>" },
    { "empty-name", "<domain><name> </name></domain>", "invalid domain <name>" },
    { "slash-name", "<domain><name>../etc</name></domain>", "invalid domain <name> '../etc'" },
    { "usb-lone", "<hostdev mode='subsystem' type='usb'/>", "<hostdev type='usb'>" },
    { "interface-lone-network", "<interface type='network'><source network='default'/>"
      "</interface>", "unsupported <interface type='network'>" },
    { "interface-lone-no-source", "<interface type='hostdev'/>", "has no <source><address" },
    { "no-type", "<hostdev mode='subsystem'/>", "has no 'type' attribute" },
    { "mode", "<hostdev mode='capabilities' type='pci'>" SOURCE("0", "1", "0", "0")
      "</hostdev>", "mode='capabilities'" },
    { "managed", "<hostdev mode='subsystem' type='pci' managed='maybe'>"
      SOURCE("0", "1", "0", "0") "</hostdev>", "invalid value 'maybe' for attribute 'managed'" },
    { "driver", HOSTDEV_OPEN "<driver name='kvm'/>" SOURCE("0", "1", "0", "0") "</hostdev>",
      "unsupported <driver name='kvm'/>" },
    { "no-source", HOSTDEV_OPEN "</hostdev>", "has no <source><address" },
    { "bus-range", HOSTDEV_OPEN SOURCE("0x0000", "0x100", "0x00", "0x0") "</hostdev>",
      "invalid source <address>" },
    { "slot-range", HOSTDEV_OPEN SOURCE("0x0000", "0x01", "0x20", "0x0") "</hostdev>",
      "invalid source <address>" },
    { "function-range", HOSTDEV_OPEN SOURCE("0x0000", "0x01", "0x00", "0x8") "</hostdev>",
      "invalid source <address>" },
    { "path-trick", HOSTDEV_OPEN SOURCE("0x0000", "../..", "0x00", "0x0") "</hostdev>",
      "invalid source <address>" },
    { "missing-bus", HOSTDEV_OPEN "<source><address slot='0' function='0'/></source></hostdev>",
      "invalid source <address>" },
    { "guest-type", HOSTDEV_OPEN SOURCE("0", "1", "0", "0")
      "<address type='ccw' cssid='0xfe' ssid='0' devno='1'/></hostdev>",
      "unsupported guest <address type='ccw'>" },
    { "guest-domain", HOSTDEV_OPEN SOURCE("0", "1", "0", "0")
      "<address type='pci' domain='1' bus='4' slot='0' function='0'/></hostdev>",
      "QEMU guests have PCI domain 0 only" },
    { "guest-slot", HOSTDEV_OPEN SOURCE("0", "1", "0", "0")
      "<address type='pci' bus='4' slot='0x20'/></hostdev>", "invalid guest <address>" },
    { "duplicate", "<domain><name>d</name><devices>" HOSTDEV_OPEN
      SOURCE("0x0000", "0x01", "0x00", "0x0") "</hostdev>" HOSTDEV_OPEN
      SOURCE("0", "1", "0", "0") "</hostdev></devices></domain>",
      "duplicate <hostdev> for PCI device 0000:01:00.0" },
    { "bad-in-domain", "<domain><name>d</name><devices>"
      "<hostdev mode='subsystem' type='pci' managed='on'>" SOURCE("0", "1", "0", "0")
      "</hostdev></devices></domain>", "invalid value 'on'" },
#define NET_OPEN "<domain><name>d</name><devices><interface type='hostdev' managed='yes'>" \
    SOURCE("0", "3", "0x10", "2")
#define NET_CLOSE "</interface></devices></domain>"
    { "mac-short", NET_OPEN "<mac address='52:54:00:12:34'/>" NET_CLOSE,
      "invalid <mac address='52:54:00:12:34'/>" },
    { "mac-junk", NET_OPEN "<mac address='52:54:00:12:34:zz'/>" NET_CLOSE,
      "invalid <mac address" },
    { "mac-multicast", NET_OPEN "<mac address='01:00:5e:00:00:01'/>" NET_CLOSE,
      "unicast" },
    { "vlan-range", NET_OPEN "<vlan><tag id='4096'/></vlan>" NET_CLOSE, "invalid <vlan>" },
    { "vlan-none", NET_OPEN "<vlan/>" NET_CLOSE, "invalid <vlan>" },
    { "vlan-trunk", NET_OPEN "<vlan trunk='yes'><tag id='1'/><tag id='2'/></vlan>" NET_CLOSE,
      "exactly one VLAN tag" },
    { "vlan-native", NET_OPEN "<vlan><tag id='7' nativeMode='untagged'/></vlan>" NET_CLOSE,
      "without nativeMode" },
    { "net-no-source", "<domain><name>d</name><devices><interface type='hostdev'>"
      NET_CLOSE, "has no <source><address" },
    /* Entities: a small document could expand to gigabytes. */
#define ENTITY "entities are not accepted"
    { "entity-name", "<!DOCTYPE domain [<!ENTITY e 'xxxxxxxxxxxxxxxx'>]>\n"
      "<domain><name>&e;&e;&e;&e;&e;&e;&e;&e;</name></domain>", "declaration at line 1: " ENTITY },
    { "entity-attribute", "<!DOCTYPE hostdev [\n<!ENTITY e 'vm'>]>" HOSTDEV_OPEN
      SOURCE("0", "1", "0", "0") "<alias name='&e;&e;'/></hostdev>", "at line 2: " ENTITY },
    { "entity-nested", "<!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'>"
      "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;'>]>"
      "<domain><name>&c;&c;&c;&c;</name></domain>", ENTITY },
    { "entity-parameter", "<!DOCTYPE domain [<!ENTITY % p '<!ENTITY e \"x\">'> %p;]>"
      "<domain><name>&e;</name></domain>", ENTITY },
    { "entity-external", "<!DOCTYPE domain [<!ENTITY e SYSTEM 'file:///dev/zero'>]>"
      "<domain><name>&e;</name></domain>", ENTITY },
    /* Names taken from the document are text. */
    { "control-name", "<domain><name>vm&#x9b;31m</name></domain>",
      "<name> at line 1 contains the control character U+009B" },
    { "control-alias", HOSTDEV_OPEN SOURCE("0", "1", "0", "0")
      "<alias name='a&#x7f;'/></hostdev>", "contains the control character U+007F" },
};


static void
testBad(gconstpointer opaque)
{
    const testBadXML *tc = opaque;
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseString(tc->xml, strlen(tc->xml), &error);

    g_assert_null(def);
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
    if (!strstr(error->message, tc->message))
        g_error("error '%s' does not contain '%s'", error->message, tc->message);
}


static void
testExternalEntityNotLoaded(void)
{
    const char *xml =
        "<?xml version='1.0'?>\n"
        "<!DOCTYPE domain [<!ENTITY leak SYSTEM 'file:///etc/hostname'>]>\n"
        "<domain><name>x&leak;</name></domain>";
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseString(xml, strlen(xml), &error);
    g_autofree char *hostname = NULL;

    /* Either refused or parsed without the file's contents. */
    if (!def) {
        g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
        return;
    }
    if (g_file_get_contents("/etc/hostname", &hostname, NULL, NULL)) {
        g_strstrip(hostname);
        if (hostname[0])
            g_assert_null(strstr(def->name, hostname));
    }
}


static void
testTooLarge(void)
{
    gsize len = HD_XML_MAX_SIZE + 1;
    g_autofree char *xml = g_malloc(len);
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = NULL;

    memset(xml, ' ', len);
    def = hdDomainDefParseString(xml, len, &error);
    g_assert_null(def);
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "exceeds the limit"));
}


static void
testMissingFile(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) def = hdDomainDefParseFile("/nonexistent/dom.xml", &error);

    g_assert_null(def);
    g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "/nonexistent/dom.xml"));
}


/* A file is read in the encoding it declares; a string is UTF-8 text
 * whatever its declaration says (hostdevctl converted the file already). */
static void
testEncoding(void)
{
    const char *latin1 = "<?xml version='1.0' encoding='ISO-8859-1'?>\n"
                         "<domain><name>g\xe4st</name></domain>\n";
    const char *utf8 = "<?xml version='1.0' encoding='ISO-8859-1'?>\n"
                       "<domain><name>g\xc3\xa4st</name></domain>\n";
    g_autofree char *dir = g_dir_make_tmp("hdtest-xml-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "latin1.xml", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(hdDomainDef) from_file = NULL;
    g_autoptr(hdDomainDef) from_string = NULL;

    g_assert_true(g_file_set_contents(path, latin1, -1, NULL));
    from_file = hdDomainDefParseFile(path, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(from_file->name, ==, "g\xc3\xa4st");
    from_string = hdDomainDefParseString(utf8, strlen(utf8), &error);
    g_assert_no_error(error);
    g_assert_cmpstr(from_string->name, ==, "g\xc3\xa4st");
    g_unlink(path);
    g_rmdir(dir);
}


/* Not a regular file: refused at once, not read (a FIFO without a writer
 * would block for ever, /dev/zero never ends). */
static void
testNotRegular(void)
{
    g_autofree char *dir = g_dir_make_tmp("hdtest-xml-XXXXXX", NULL);
    g_autofree char *fifo = g_build_filename(dir, "fifo.xml", NULL);
    const char *const paths[] = { fifo, "/dev/zero" };
    guint i;

    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    for (i = 0; i < G_N_ELEMENTS(paths); i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(hdDomainDef) def = hdDomainDefParseFile(paths[i], &error);

        g_assert_null(def);
        g_assert_error(error, HD_ERROR, HD_ERROR_INVALID_ARG);
        g_assert_nonnull(strstr(error->message, "not a regular file"));
        g_assert_nonnull(strstr(error->message, paths[i]));
    }
    g_unlink(fifo);
    g_rmdir(dir);
}


int
main(int argc, char **argv)
{
    guint i;

    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/domainxml/dumpxml", testDumpxml);
    g_test_add_func("/domainxml/lone-hostdev", testLoneHostdev);
    g_test_add_func("/domainxml/interface-hostdev", testInterfaceHostdev);
    g_test_add_func("/domainxml/lone-interface", testLoneInterface);
    g_test_add_func("/domainxml/encoding", testEncoding);
    g_test_add_func("/domainxml/not-regular", testNotRegular);
    g_test_add_func("/domainxml/external-entity", testExternalEntityNotLoaded);
    g_test_add_func("/domainxml/too-large", testTooLarge);
    g_test_add_func("/domainxml/missing-file", testMissingFile);
    for (i = 0; i < G_N_ELEMENTS(badCases); i++) {
        g_autofree char *name = g_strdup_printf("/domainxml/bad/%s", badCases[i].name);
        g_test_add_data_func(name, &badCases[i], testBad);
    }
    return g_test_run();
}
