/*
 * hdsecurity.c: the security manager: SELinux labels, cgroup device ACLs
 * and SR-IOV VF settings, driven by the manager's events
 *
 * Naming: an hdSecDomain is the configuration a caller gave for a domain
 * (in memory only); an hdSecRecord is one thing hostdev changed on the host
 * (a label, an ACL entry, a VF setting), owned by sec->records and written
 * to security.json before the change is made.  A record marked *pending*
 * is due to be undone; it is dropped once it is.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <json-glib/json-glib.h>

#include "hdinternal.h"
#include "hdfile.h"
#include "hdholders.h"
#include "hostdev/security.h"
#include "hdcgroup.h"
#include "hdselinux.h"
#include "hdvfnet.h"

#define HD_SEC_FORMAT "hostdev-security"
#define HD_SEC_VERSION 1
/* The ACL record of /dev/vfio/vfio uses this instead of a group number. */
#define HD_SEC_CONTAINER G_MAXUINT

typedef enum {
    HD_SEC_LABEL,   /* path: the node; original: its label before */
    HD_SEC_ACL,     /* path: the cgroup; major:minor; group or HD_SEC_CONTAINER */
    HD_SEC_VF,      /* address: the VF; pf, index; the PF's settings before */
} hdSecKind;

static const char *const hdSecKindNames[] = { "label", "acl", "vf" };

typedef struct {
    hdSecKind kind;
    char *domain;
    unsigned int group;
    char *address;        /* LABEL of a cdev, VF; NULL otherwise */
    char *path;
    char *original;       /* LABEL */
    unsigned int major;   /* ACL */
    unsigned int minor;
    char *pf;             /* VF */
    unsigned int index;
    hdVFNetConfig saved;
    gboolean pending;     /* to be undone */
    gboolean wait_free;   /* ... once no process holds the group */
} hdSecRecord;

typedef struct {
    char *name;
    char *label;
    char *cgroup;
    GHashTable *nets;     /* address string -> hdHostdevNet (owned) */
    GError *failure;      /* first assignment failure */
} hdSecDomain;

struct _hdSecurityManager {
    GMutex lock;
    hdManager *mgr;
    hdHost *host;
    char *state_path;
    guint handler_id;
    gboolean selinux;
    GPtrArray *records;      /* hdSecRecord * */
    GHashTable *domains;     /* name -> hdSecDomain */
    GHashTable *cgroups;     /* path -> hdCgroup, opened once */
    hdSecurityReportFunc report;
    gpointer report_opaque;
    hdSecurityDevNumFunc devnum;
    gpointer devnum_opaque;
    const hdVFNetBackend *vfnet;
    gpointer vfnet_opaque;
    hdGroupFreeFunc group_free;
    gpointer group_free_opaque;
};


static void
hdSecRecordFree(hdSecRecord *rec)
{
    g_free(rec->domain);
    g_free(rec->address);
    g_free(rec->path);
    g_free(rec->original);
    g_free(rec->pf);
    g_free(rec);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(hdSecRecord, hdSecRecordFree)


static void
hdHostdevNetFree(hdHostdevNet *net)
{
    g_free(net->mac);
    g_free(net);
}


static void
hdSecDomainFree(hdSecDomain *dom)
{
    g_free(dom->name);
    g_free(dom->label);
    g_free(dom->cgroup);
    g_hash_table_unref(dom->nets);
    g_clear_error(&dom->failure);
    g_free(dom);
}


static hdSecDomain *
hdSecDomainGet(hdSecurityManager *sec, const char *name)
{
    hdSecDomain *dom = g_hash_table_lookup(sec->domains, name);

    if (!dom) {
        dom = g_new0(hdSecDomain, 1);
        dom->name = g_strdup(name);
        dom->nets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify)hdHostdevNetFree);
        g_hash_table_insert(sec->domains, dom->name, dom);
    }
    return dom;
}


/* ---- durable state ---------------------------------------------------- */

static void
hdJsonAddString(JsonBuilder *b, const char *member, const char *value)
{
    json_builder_set_member_name(b, member);
    if (value)
        json_builder_add_string_value(b, value);
    else
        json_builder_add_null_value(b);
}


static void
hdJsonAddInt(JsonBuilder *b, const char *member, gint64 value)
{
    json_builder_set_member_name(b, member);
    json_builder_add_int_value(b, value);
}


static void
hdJsonAddBool(JsonBuilder *b, const char *member, gboolean value)
{
    json_builder_set_member_name(b, member);
    json_builder_add_boolean_value(b, value);
}


static void
hdSecRecordToJson(JsonBuilder *b, const hdSecRecord *rec)
{
    json_builder_begin_object(b);
    hdJsonAddString(b, "kind", hdSecKindNames[rec->kind]);
    hdJsonAddString(b, "domain", rec->domain);
    hdJsonAddInt(b, "group", rec->group == HD_SEC_CONTAINER ? -1 : (gint64)rec->group);
    hdJsonAddString(b, "address", rec->address);
    hdJsonAddString(b, "path", rec->path);
    switch (rec->kind) {
    case HD_SEC_LABEL:
        hdJsonAddString(b, "original", rec->original);
        break;
    case HD_SEC_ACL:
        hdJsonAddInt(b, "major", rec->major);
        hdJsonAddInt(b, "minor", rec->minor);
        break;
    case HD_SEC_VF:
        hdJsonAddString(b, "pf", rec->pf);
        hdJsonAddInt(b, "index", rec->index);
        hdJsonAddString(b, "mac", rec->saved.mac);
        hdJsonAddInt(b, "vlan", rec->saved.vlan);
        break;
    }
    hdJsonAddBool(b, "pending", rec->pending);
    hdJsonAddBool(b, "wait_free", rec->wait_free);
    json_builder_end_object(b);
}


static gboolean
hdSecSave(hdSecurityManager *sec, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *data = NULL;
    guint i;

    json_builder_begin_object(b);
    hdJsonAddString(b, "format", HD_SEC_FORMAT);
    hdJsonAddInt(b, "version", HD_SEC_VERSION);
    json_builder_set_member_name(b, "records");
    json_builder_begin_array(b);
    for (i = 0; i < sec->records->len; i++)
        hdSecRecordToJson(b, g_ptr_array_index(sec->records, i));
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    data = json_generator_to_data(gen, NULL);
    return hdFileWriteAtomic(sec->state_path, data, strlen(data), 0600, error);
}


static gboolean
hdSecRecordFromJson(JsonObject *obj, hdSecRecord **out, GError **error)
{
    g_autoptr(hdSecRecord) rec = g_new0(hdSecRecord, 1);
    const char *kind = json_object_get_string_member_with_default(obj, "kind", "");
    gint64 group = json_object_get_int_member_with_default(obj, "group", -2);
    guint k;

    for (k = 0; k < G_N_ELEMENTS(hdSecKindNames); k++) {
        if (strcmp(kind, hdSecKindNames[k]) == 0)
            break;
    }
    rec->kind = k;
    rec->domain = g_strdup(json_object_get_string_member_with_default(obj, "domain", NULL));
    rec->address = g_strdup(json_object_get_string_member_with_default(obj, "address", NULL));
    rec->path = g_strdup(json_object_get_string_member_with_default(obj, "path", NULL));
    rec->pending = json_object_get_boolean_member_with_default(obj, "pending", FALSE);
    rec->wait_free = json_object_get_boolean_member_with_default(obj, "wait_free", FALSE);
    rec->group = group == -1 ? HD_SEC_CONTAINER : (unsigned int)group;
    if (k == HD_SEC_LABEL) {
        rec->original = g_strdup(json_object_get_string_member_with_default(obj, "original",
                                                                            NULL));
    } else if (k == HD_SEC_ACL) {
        rec->major = json_object_get_int_member_with_default(obj, "major", 0);
        rec->minor = json_object_get_int_member_with_default(obj, "minor", 0);
    } else if (k == HD_SEC_VF) {
        rec->pf = g_strdup(json_object_get_string_member_with_default(obj, "pf", NULL));
        rec->index = json_object_get_int_member_with_default(obj, "index", 0);
        g_strlcpy(rec->saved.mac, json_object_get_string_member_with_default(obj, "mac", ""),
                  sizeof(rec->saved.mac));
        rec->saved.vlan = json_object_get_int_member_with_default(obj, "vlan", 0);
    }
    if (k >= G_N_ELEMENTS(hdSecKindNames) || !rec->domain || !rec->path || group < -1 ||
        group > G_MAXUINT32 || (k == HD_SEC_LABEL && !rec->original) ||
        (k == HD_SEC_VF && (!rec->pf || !rec->address))) {
        hdErrorSet(error, HD_ERROR_STATE, _("invalid record of kind '%1$s' in '%2$s'"),
                   kind, HD_SECURITY_STATE_FILE);
        return FALSE;
    }
    *out = g_steal_pointer(&rec);
    return TRUE;
}


static gboolean
hdSecLoad(hdSecurityManager *sec, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local = NULL;
    JsonObject *root;
    JsonArray *records;
    guint i;

    if (!g_file_test(sec->state_path, G_FILE_TEST_EXISTS))
        return TRUE;
    if (!json_parser_load_from_file(parser, sec->state_path, &local)) {
        hdErrorSet(error, HD_ERROR_STATE, _("cannot read security state '%1$s': %2$s"),
                   sec->state_path, local->message);
        return FALSE;
    }
    if (!JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)) ||
        !(root = json_node_get_object(json_parser_get_root(parser))) ||
        g_strcmp0(json_object_get_string_member_with_default(root, "format", NULL),
                  HD_SEC_FORMAT) != 0 ||
        json_object_get_int_member_with_default(root, "version", 0) != HD_SEC_VERSION ||
        !json_object_has_member(root, "records") ||
        !JSON_NODE_HOLDS_ARRAY(json_object_get_member(root, "records"))) {
        hdErrorSet(error, HD_ERROR_STATE,
                   _("'%1$s' is not a security state file of version %2$d"),
                   sec->state_path, HD_SEC_VERSION);
        return FALSE;
    }
    records = json_object_get_array_member(root, "records");
    for (i = 0; i < json_array_get_length(records); i++) {
        JsonNode *node = json_array_get_element(records, i);
        hdSecRecord *rec = NULL;

        if (!JSON_NODE_HOLDS_OBJECT(node)) {
            hdErrorSet(error, HD_ERROR_STATE, _("invalid record %1$u in '%2$s'"),
                       i, sec->state_path);
            return FALSE;
        }
        if (!hdSecRecordFromJson(json_node_get_object(node), &rec, error))
            return FALSE;
        g_ptr_array_add(sec->records, rec);
    }
    return TRUE;
}


/* ---- helpers ------------------------------------------------------------ */

static void
hdSecReport(hdSecurityManager *sec, hdSecurityProblem problem, const char *domain,
            const GError *error)
{
    if (sec->report)
        sec->report(sec, problem, domain, error, sec->report_opaque);
    else
        hdSecurityProblemLog(problem, domain, error);
}


/* The first failure of an assignment is kept for hdSecurityManagerCheckDomain. */
static void
hdSecDomainFail(hdSecurityManager *sec, const char *domain, GError *error)
{
    hdSecDomain *dom = hdSecDomainGet(sec, domain);

    hdSecReport(sec, HD_SECURITY_PROBLEM_SETUP, domain, error);
    if (!dom->failure)
        dom->failure = error;
    else
        g_error_free(error);
}


static gboolean
hdSecDevNumStat(const char *path, unsigned int *major_, unsigned int *minor_,
                gpointer opaque, GError **error)
{
    struct stat sb;

    if (stat(path, &sb) < 0) {
        hdErrorSetSystem(error, errno, _("cannot stat '%1$s'"), path);
        return FALSE;
    }
    if (!S_ISCHR(sb.st_mode)) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("'%1$s' is not a character device"), path);
        return FALSE;
    }
    *major_ = major(sb.st_rdev);
    *minor_ = minor(sb.st_rdev);
    return TRUE;
}


static hdCgroup *
hdSecCgroupGet(hdSecurityManager *sec, const char *path, GError **error)
{
    hdCgroup *cg = g_hash_table_lookup(sec->cgroups, path);

    if (!cg && (cg = hdCgroupOpen(path, error)))
        g_hash_table_insert(sec->cgroups, g_strdup(path), cg);
    return cg;
}


static hdSecRecord *
hdSecFind(hdSecurityManager *sec, hdSecKind kind, const char *domain, const char *path,
          const char *address, unsigned int group)
{
    guint i;

    for (i = 0; i < sec->records->len; i++) {
        hdSecRecord *rec = g_ptr_array_index(sec->records, i);

        if (rec->kind == kind && (!domain || g_strcmp0(rec->domain, domain) == 0) &&
            (!path || g_strcmp0(rec->path, path) == 0) &&
            (!address || g_strcmp0(rec->address, address) == 0) &&
            (kind != HD_SEC_ACL || rec->group == group))
            return rec;
    }
    return NULL;
}


/* Add @rec and write the state; on failure nothing is recorded. */
static gboolean
hdSecAdd(hdSecurityManager *sec, hdSecRecord *rec, GError **error)
{
    g_ptr_array_add(sec->records, rec);
    if (!hdSecSave(sec, error)) {
        g_ptr_array_remove_index(sec->records, sec->records->len - 1);   /* frees it */
        return FALSE;
    }
    return TRUE;
}


/* Drop @rec (done, or never applied) and write the state. */
static gboolean
hdSecDrop(hdSecurityManager *sec, hdSecRecord *rec, GError **error)
{
    g_ptr_array_remove(sec->records, rec);   /* frees it */
    return hdSecSave(sec, error);
}


/* ---- assignment ------------------------------------------------------- */

static gboolean
hdSecApplyLabel(hdSecurityManager *sec, const char *domain, const char *label,
                const char *path, unsigned int group, const char *address, GError **error)
{
    g_autoptr(hdSecRecord) rec = NULL;
    hdSecRecord *existing = hdSecFind(sec, HD_SEC_LABEL, NULL, path, NULL, 0);
    g_autofree char *original = NULL;
    gboolean exists;

    /* Step 1: validate.  A node already labelled (another member of the
     * group) keeps the original recorded then. */
    if (existing) {
        existing->pending = FALSE;
        existing->wait_free = FALSE;
        return hdSecSave(sec, error);
    }
    if (!hdSELinuxGetLabel(path, &original, &exists, error))
        return FALSE;
    if (!exists) {
        hdErrorSetSystem(error, ENOENT, _("cannot label '%1$s' for domain %2$s"),
                         path, domain);
        return FALSE;
    }

    /* Step 2: record the original; step 3: label. */
    rec = g_new0(hdSecRecord, 1);
    rec->kind = HD_SEC_LABEL;
    rec->domain = g_strdup(domain);
    rec->group = group;
    rec->address = g_strdup(address);
    rec->path = g_strdup(path);
    rec->original = g_steal_pointer(&original);
    existing = rec;
    if (!hdSecAdd(sec, g_steal_pointer(&rec), error))
        return FALSE;
    if (!hdSELinuxSetLabel(path, label, &exists, error) || !exists) {
        g_autoptr(GError) ignored = NULL;

        if (error && !*error)
            hdErrorSetSystem(error, ENOENT, _("cannot label '%1$s' for domain %2$s"),
                             path, domain);
        /* Nothing was changed: forget the record again. */
        hdSecDrop(sec, existing, &ignored);
        return FALSE;
    }
    return TRUE;
}


static gboolean
hdSecApplyAcl(hdSecurityManager *sec, const char *domain, const char *cgroup,
              const char *node, unsigned int group, GError **error)
{
    g_autoptr(hdSecRecord) rec = NULL;
    hdSecRecord *existing = hdSecFind(sec, HD_SEC_ACL, domain, cgroup, NULL, group);
    hdCgroup *cg;
    unsigned int maj;
    unsigned int min;

    /* Step 1: validate: the cgroup and the node's device number. */
    if (!(cg = hdSecCgroupGet(sec, cgroup, error)))
        return FALSE;
    if (existing && !existing->pending)
        return TRUE;
    if (!sec->devnum(node, &maj, &min, sec->devnum_opaque, error))
        return FALSE;

    /* Step 2: record (a deny that was still pending becomes an allow);
     * step 3: allow. */
    if (!existing) {
        rec = g_new0(hdSecRecord, 1);
        rec->kind = HD_SEC_ACL;
        rec->domain = g_strdup(domain);
        rec->group = group;
        rec->path = g_strdup(cgroup);
        rec->major = maj;
        rec->minor = min;
        existing = rec;
        if (!hdSecAdd(sec, g_steal_pointer(&rec), error))
            return FALSE;
    } else {
        existing->pending = FALSE;
        if (!hdSecSave(sec, error))
            return FALSE;
    }
    if (!hdCgroupAllowDevice(cg, existing->major, existing->minor, error)) {
        g_autoptr(GError) ignored = NULL;

        /* A failed allow may still have changed nothing or everything:
         * deny it again before forgetting it. */
        existing->pending = TRUE;
        if (hdCgroupDenyDevice(cg, existing->major, existing->minor, NULL))
            hdSecDrop(sec, existing, &ignored);
        else
            hdSecSave(sec, &ignored);
        return FALSE;
    }
    return TRUE;
}


/* What a VF gets from @net: an absent <mac> keeps the VF's (@now); an
 * absent <vlan> means untagged, as libvirt does. */
static hdVFNetConfig
hdSecWantVF(const hdVFNetConfig *now, const hdHostdevNet *net)
{
    hdVFNetConfig want = *now;

    if (net->mac)
        g_strlcpy(want.mac, net->mac, sizeof(want.mac));
    want.vlan = net->vlan >= 0 ? net->vlan : 0;
    return want;
}


/* @rec, pending, becomes @domain's again: recorded before the VF is set;
 * if setting fails it stays pending, as it was. */
static gboolean
hdSecTakeOverVF(hdSecurityManager *sec, hdSecRecord *rec, const char *domain,
                unsigned int group, const hdHostdevNet *net, GError **error)
{
    hdVFNetConfig now;
    hdVFNetConfig want;
    g_autoptr(GError) ignored = NULL;

    if (!sec->vfnet->get(rec->pf, rec->index, &now, sec->vfnet_opaque, error))
        return FALSE;
    want = hdSecWantVF(&now, net);
    g_free(rec->domain);
    rec->domain = g_strdup(domain);
    rec->group = group;
    rec->pending = FALSE;
    rec->wait_free = FALSE;
    if (!hdSecSave(sec, error))
        return FALSE;
    if (!sec->vfnet->set(rec->pf, rec->index, &want, sec->vfnet_opaque, error)) {
        rec->pending = TRUE;
        hdSecSave(sec, &ignored);
        return FALSE;
    }
    return TRUE;
}


static gboolean
hdSecApplyVF(hdSecurityManager *sec, const char *domain, const char *address,
             unsigned int group, const hdHostdevNet *net, GError **error)
{
    g_autoptr(hdSecRecord) rec = g_new0(hdSecRecord, 1);
    hdSecRecord *existing = hdSecFind(sec, HD_SEC_VF, NULL, NULL, address, 0);
    hdVFNetConfig want;
    hdPCIAddress addr;

    /* A restore still pending (it failed, say after a failed assignment)
     * holds the VF's settings from before hostdev: this assignment takes
     * the record over, so that they are what goes back in the end. */
    if (existing && existing->pending)
        return hdSecTakeOverVF(sec, existing, domain, group, net, error);
    if (existing) {
        hdErrorSet(error, HD_ERROR_IN_USE,
                   _("the settings of VF %1$s saved for domain %2$s are not restored yet"),
                   address, existing->domain);
        return FALSE;
    }

    /* Step 1: validate: find the PF and read what it has for the VF now. */
    if (!hdPCIAddressParse(address, &addr, error) ||
        !sec->vfnet->resolve(sec->host, &addr, &rec->pf, &rec->index, sec->vfnet_opaque,
                             error) ||
        !sec->vfnet->get(rec->pf, rec->index, &rec->saved, sec->vfnet_opaque, error))
        return FALSE;

    /* Step 2: save it; step 3: set the domain's. */
    want = hdSecWantVF(&rec->saved, net);
    rec->kind = HD_SEC_VF;
    rec->domain = g_strdup(domain);
    rec->group = group;
    rec->address = g_strdup(address);
    rec->path = g_strdup_printf("%s/vf%u", rec->pf, rec->index);
    existing = rec;
    if (!hdSecAdd(sec, g_steal_pointer(&rec), error))
        return FALSE;
    if (!sec->vfnet->set(existing->pf, existing->index, &want, sec->vfnet_opaque, error)) {
        g_autoptr(GError) ignored = NULL;

        /* Put the saved settings back before forgetting them. */
        existing->pending = TRUE;
        if (sec->vfnet->set(existing->pf, existing->index, &existing->saved,
                            sec->vfnet_opaque, NULL))
            hdSecDrop(sec, existing, &ignored);
        else
            hdSecSave(sec, &ignored);
        return FALSE;
    }
    return TRUE;
}


static void
hdSecAssigned(hdSecurityManager *sec, const hdEvent *event)
{
    hdSecDomain *dom = g_hash_table_lookup(sec->domains, event->domain);
    g_autofree char *address = hdPCIAddressToString(&event->addr);
    g_autofree char *node = hdIOMMUGroupDevPath(sec->host, event->group);
    g_autofree char *container = hdHostPath(sec->host, "dev/vfio/vfio");
    g_autofree char *cdev = NULL;
    const hdHostdevNet *net;
    GError *local = NULL;

    if (!dom)
        return;

    /* Step 1: SELinux labels of the group node and the device's cdev. */
    if (dom->label && sec->selinux) {
        if (!hdSecApplyLabel(sec, dom->name, dom->label, node, event->group, NULL, &local))
            hdSecDomainFail(sec, dom->name, g_steal_pointer(&local));
        if (!hdPCIDeviceGetVFIOCdev(sec->host, &event->addr, &cdev, &local))
            hdSecDomainFail(sec, dom->name, g_steal_pointer(&local));
        else if (cdev && !hdSecApplyLabel(sec, dom->name, dom->label, cdev, event->group,
                                          address, &local))
            hdSecDomainFail(sec, dom->name, g_steal_pointer(&local));
    }

    /* Step 2: the cgroup may open the group node and the container. */
    if (dom->cgroup) {
        if (!hdSecApplyAcl(sec, dom->name, dom->cgroup, node, event->group, &local) ||
            !hdSecApplyAcl(sec, dom->name, dom->cgroup, container, HD_SEC_CONTAINER, &local))
            hdSecDomainFail(sec, dom->name, g_steal_pointer(&local));
    }

    /* Step 3: the VF's network settings. */
    if ((net = g_hash_table_lookup(dom->nets, address)) &&
        !hdSecApplyVF(sec, dom->name, address, event->group, net, &local))
        hdSecDomainFail(sec, dom->name, g_steal_pointer(&local));
}


/* ---- cleanup -------------------------------------------------------- */

/* Undo one pending record; TRUE once it is done (and dropped). */
static gboolean
hdSecUndo(hdSecurityManager *sec, hdSecRecord *rec, GError **error)
{
    gboolean exists = TRUE;
    gboolean free_ = TRUE;
    hdCgroup *cg;

    switch (rec->kind) {
    case HD_SEC_LABEL:
        if (rec->wait_free &&
            !sec->group_free(sec->host, rec->group, &free_, sec->group_free_opaque, error))
            return FALSE;
        if (!free_)
            return FALSE;
        /* A node that vanished (its group left vfio-pci) has no label. */
        if (!hdSELinuxSetLabel(rec->path, rec->original, &exists, error))
            return FALSE;
        break;
    case HD_SEC_ACL:
        if (!g_file_test(rec->path, G_FILE_TEST_IS_DIR))
            break;   /* the cgroup is gone, and its ACL with it */
        if (!(cg = hdSecCgroupGet(sec, rec->path, error)) ||
            !hdCgroupDenyDevice(cg, rec->major, rec->minor, error))
            return FALSE;
        break;
    case HD_SEC_VF:
        if (rec->wait_free &&
            !sec->group_free(sec->host, rec->group, &free_, sec->group_free_opaque, error))
            return FALSE;
        if (!free_)
            return FALSE;
        if (!sec->vfnet->set(rec->pf, rec->index, &rec->saved, sec->vfnet_opaque, error))
            return FALSE;
        break;
    }
    return hdSecDrop(sec, rec, error);
}


/* Undo every pending record; returns how many are left.  Failures are
 * reported (and the first one propagated). */
static guint
hdSecRunPending(hdSecurityManager *sec, GError **error)
{
    g_autoptr(GPtrArray) todo = g_ptr_array_new();
    guint left = 0;
    guint i;

    for (i = 0; i < sec->records->len; i++) {
        hdSecRecord *rec = g_ptr_array_index(sec->records, i);

        if (rec->pending)
            g_ptr_array_add(todo, rec);
    }
    for (i = 0; i < todo->len; i++) {
        hdSecRecord *rec = g_ptr_array_index(todo, i);
        /* hdSecUndo may drop the record, even when it fails. */
        g_autofree char *domain = g_strdup(rec->domain);
        g_autoptr(GError) local = NULL;

        if (hdSecUndo(sec, rec, &local))
            continue;
        left++;
        if (!local)
            continue;   /* waits for its group to be free */
        hdSecReport(sec, HD_SECURITY_PROBLEM_CLEANUP, domain, local);
        if (error && !*error)
            g_propagate_error(error, g_steal_pointer(&local));
    }
    return left;
}


/* Whether @tracked (hdManagerListTracked: the manager is asked, since
 * events come after its changes) has a device of @group (any group for
 * HD_SEC_CONTAINER), active in @domain unless that is NULL, and that is
 * @addr unless that is NULL. */
static gboolean
hdSecTrackedHas(GPtrArray *tracked, const char *domain, unsigned int group,
                const hdPCIAddress *addr)
{
    guint i;

    for (i = 0; i < tracked->len; i++) {
        const hdDeviceInfo *info = g_ptr_array_index(tracked, i);

        if (info->state == HD_DEVICE_HOST ||
            (group != HD_SEC_CONTAINER && info->group != group) ||
            (domain && (info->state != HD_DEVICE_ACTIVE ||
                        g_strcmp0(info->domain, domain) != 0)) ||
            (addr && !hdPCIAddressEqual(&info->addr, addr)))
            continue;
        return TRUE;
    }
    return FALSE;
}


static void
hdSecMarkPending(hdSecRecord *rec, gboolean wait_free, gboolean *changed)
{
    if (!rec->pending || rec->wait_free != wait_free)
        *changed = TRUE;
    rec->pending = TRUE;
    rec->wait_free = wait_free;
}


static void
hdSecReleased(hdSecurityManager *sec, const hdEvent *event)
{
    g_autofree char *address = hdPCIAddressToString(&event->addr);
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(sec->mgr);
    gboolean untracked = !hdSecTrackedHas(tracked, NULL, event->group, &event->addr);
    gboolean changed = FALSE;
    g_autoptr(GError) local = NULL;
    guint i;

    /* Step 1: ACLs the domain no longer needs; step 2: an unmanaged device
     * stays on vfio-pci with no give-back to wait for: its label and VF
     * settings go once its group is free. */
    for (i = 0; i < sec->records->len; i++) {
        hdSecRecord *rec = g_ptr_array_index(sec->records, i);

        if (g_strcmp0(rec->domain, event->domain) != 0)
            continue;
        if (rec->kind == HD_SEC_ACL && !hdSecTrackedHas(tracked, event->domain, rec->group, NULL))
            hdSecMarkPending(rec, FALSE, &changed);
        else if (untracked && rec->kind != HD_SEC_ACL && rec->group == event->group &&
                 (!rec->address || g_strcmp0(rec->address, address) == 0))
            hdSecMarkPending(rec, TRUE, &changed);
    }
    if (changed && !hdSecSave(sec, &local)) {
        hdSecReport(sec, HD_SECURITY_PROBLEM_STATE, NULL, local);
        return;
    }
    hdSecRunPending(sec, NULL);
}


static void
hdSecGivenBack(hdSecurityManager *sec, const hdEvent *event)
{
    g_autofree char *address = hdPCIAddressToString(&event->addr);
    gboolean changed = FALSE;
    g_autoptr(GError) local = NULL;
    guint i;

    for (i = 0; i < sec->records->len; i++) {
        hdSecRecord *rec = g_ptr_array_index(sec->records, i);

        if (rec->group != event->group)
            continue;
        /* The group node and every ACL of the group; a cdev or VF only
         * with its own device. */
        if (rec->kind == HD_SEC_ACL || !rec->address ||
            g_strcmp0(rec->address, address) == 0)
            hdSecMarkPending(rec, FALSE, &changed);
    }
    if (changed && !hdSecSave(sec, &local)) {
        hdSecReport(sec, HD_SECURITY_PROBLEM_STATE, NULL, local);
        return;
    }
    hdSecRunPending(sec, NULL);
}


void
hdSecurityManagerHandleEvent(hdManager *mgr, const hdEvent *event, gpointer opaque)
{
    hdSecurityManager *sec = opaque;

    g_mutex_lock(&sec->lock);
    switch (event->type) {
    case HD_EVENT_DEVICE_ASSIGNED:
        hdSecAssigned(sec, event);
        break;
    case HD_EVENT_DEVICE_RELEASED:
        hdSecReleased(sec, event);
        break;
    case HD_EVENT_GROUP_GIVEN_BACK:
        hdSecGivenBack(sec, event);
        break;
    case HD_EVENT_GIVE_BACK_FAILED:
        /* The group stays on vfio-pci and may still be held: its labels
         * and VF settings stay until it is given back. */
        break;
    }
    g_mutex_unlock(&sec->lock);
}


/* Whether @rec is still needed by the manager's state (@tracked).  ACLs go
 * with the domain's last active device of the group; labels and VF
 * settings once their device (a group node: every device of its group) is
 * untracked. */
static gboolean
hdSecRecordNeeded(GPtrArray *tracked, const hdSecRecord *rec)
{
    hdPCIAddress addr;

    if (rec->kind == HD_SEC_ACL)
        return hdSecTrackedHas(tracked, rec->domain, rec->group, NULL);
    if (!rec->address)
        return hdSecTrackedHas(tracked, NULL, rec->group, NULL);
    return hdPCIAddressParse(rec->address, &addr, NULL) &&
        hdSecTrackedHas(tracked, NULL, rec->group, &addr);
}


/* Catch up with the manager's (reconciled) state at start: a daemon killed
 * after a release or give-back was recorded but before its event reached
 * us, or a give-back the manager finished before we subscribed, would
 * otherwise leave ACLs allowed, labels and VF settings in place for good.
 * What is no longer needed becomes pending; labels and VF settings wait
 * for their group to be free, as after an unmanaged device's release. */
static void
hdSecReconcile(hdSecurityManager *sec)
{
    g_autoptr(GPtrArray) tracked = hdManagerListTracked(sec->mgr);
    gboolean changed = FALSE;
    g_autoptr(GError) local = NULL;
    guint i;

    for (i = 0; i < sec->records->len; i++) {
        hdSecRecord *rec = g_ptr_array_index(sec->records, i);

        if (!rec->pending && !hdSecRecordNeeded(tracked, rec))
            hdSecMarkPending(rec, rec->kind != HD_SEC_ACL, &changed);
    }
    if (changed && !hdSecSave(sec, &local))
        hdSecReport(sec, HD_SECURITY_PROBLEM_STATE, NULL, local);
}


/* ---- public API ------------------------------------------------------- */

hdSecurityManager *
hdSecurityManagerNew(hdManager *mgr, const char *state_dir, GError **error)
{
    g_autoptr(hdSecurityManager) sec = g_new0(hdSecurityManager, 1);
    static gsize selinux_reported;
    g_autoptr(GError) local = NULL;

    g_mutex_init(&sec->lock);
    sec->mgr = mgr;
    sec->host = hdHostRef(hdManagerGetHost(mgr));
    sec->state_path = g_build_filename(state_dir, HD_SECURITY_STATE_FILE, NULL);
    sec->records = g_ptr_array_new_with_free_func((GDestroyNotify)hdSecRecordFree);
    sec->domains = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                         (GDestroyNotify)hdSecDomainFree);
    sec->cgroups = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify)hdCgroupFree);
    sec->devnum = hdSecDevNumStat;
    sec->vfnet = &hdVFNetBackendDefault;
    sec->group_free = hdGroupFreeByProc;
    sec->selinux = hdSELinuxEnabled();
    if (!sec->selinux && g_once_init_enter(&selinux_reported)) {
        g_message(_("SELinux is disabled: hostdev does not label VFIO nodes"));
        g_once_init_leave(&selinux_reported, 1);
    }
    if (!hdSecLoad(sec, error))
        return NULL;
    hdSecReconcile(sec);

    /* What a previous run left pending is tried now, and again on retry. */
    if (hdSecRunPending(sec, &local) > 0 && local)
        g_debug("security cleanup still pending after start: %s", local->message);
    sec->handler_id = hdManagerAddEventHandler(mgr, hdSecurityManagerHandleEvent, sec);
    return g_steal_pointer(&sec);
}


void
hdSecurityManagerFree(hdSecurityManager *sec)
{
    if (!sec)
        return;
    if (sec->handler_id)
        hdManagerRemoveEventHandler(sec->mgr, sec->handler_id);
    g_clear_pointer(&sec->records, g_ptr_array_unref);
    g_clear_pointer(&sec->domains, g_hash_table_unref);
    g_clear_pointer(&sec->cgroups, g_hash_table_unref);
    g_clear_pointer(&sec->host, hdHostUnref);
    g_free(sec->state_path);
    g_mutex_clear(&sec->lock);
    g_free(sec);
}


gboolean
hdSecurityManagerSetDomain(hdSecurityManager *sec, const char *domain,
                           const char *selinux_label, const char *cgroup_path,
                           GError **error)
{
    hdSecDomain *dom;
    gboolean ret = FALSE;

    g_mutex_lock(&sec->lock);
    if (!domain || !domain[0]) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("a domain needs a name"));
        goto cleanup;
    }
    if (selinux_label && !selinux_label[0]) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG, _("empty SELinux label for domain %1$s"),
                   domain);
        goto cleanup;
    }
    if (cgroup_path && (!g_path_is_absolute(cgroup_path) ||
                        !hdSecCgroupGet(sec, cgroup_path, error)))  {
        if (!g_path_is_absolute(cgroup_path))
            hdErrorSet(error, HD_ERROR_INVALID_ARG,
                       _("cgroup path '%1$s' of domain %2$s is not absolute"),
                       cgroup_path, domain);
        goto cleanup;
    }
    dom = hdSecDomainGet(sec, domain);
    g_free(dom->label);
    dom->label = g_strdup(selinux_label);
    g_free(dom->cgroup);
    dom->cgroup = g_strdup(cgroup_path);
    g_clear_error(&dom->failure);
    ret = TRUE;

 cleanup:
    g_mutex_unlock(&sec->lock);
    return ret;
}


/* The first <interface type='hostdev'> of @def, or NULL. */
static const hdHostdevDef *
hdSecFirstNet(const hdDomainDef *def)
{
    guint i;

    for (i = 0; i < def->hostdevs->len; i++) {
        const hdHostdevDef *h = g_ptr_array_index(def->hostdevs, i);

        if (h->net)
            return h;
    }
    return NULL;
}


gboolean
hdSecurityManagerSetDomainDef(hdSecurityManager *sec, const char *domain,
                              const hdDomainDef *def, GError **error)
{
    const hdHostdevDef *first_net = hdSecFirstNet(def);
    hdSecDomain *dom;
    guint i;

    if (!domain)
        domain = def->name;
    if (def->name && g_strcmp0(def->name, domain) != 0) {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("the XML describes domain '%1$s', not '%2$s'"), def->name, domain);
        return FALSE;
    }
    /* Only VF settings are kept per domain: without any, a lone device
     * needs no domain here. */
    if (!domain && !first_net)
        return TRUE;
    if (!domain || !domain[0]) {
        char buf[HD_PCI_ADDRESS_STRLEN];

        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("the MAC and VLAN of VF %1$s need the domain it is assigned to: "
                     "none was given and the XML has no <domain><name>"),
                   hdPCIAddressFormat(&first_net->addr, buf));
        return FALSE;
    }
    g_mutex_lock(&sec->lock);
    dom = hdSecDomainGet(sec, domain);
    g_clear_error(&dom->failure);
    g_hash_table_remove_all(dom->nets);
    for (i = 0; i < def->hostdevs->len; i++) {
        const hdHostdevDef *h = g_ptr_array_index(def->hostdevs, i);
        hdHostdevNet *net;

        if (!h->net)
            continue;
        net = g_new0(hdHostdevNet, 1);
        net->mac = g_strdup(h->net->mac);
        net->vlan = h->net->vlan;
        g_hash_table_insert(dom->nets, hdPCIAddressToString(&h->addr), net);
    }
    g_mutex_unlock(&sec->lock);
    return TRUE;
}


gboolean
hdSecurityManagerForgetDomain(hdSecurityManager *sec, const char *domain, GError **error)
{
    hdSecDomain *dom;
    gboolean ret = FALSE;
    guint i;

    g_mutex_lock(&sec->lock);
    for (i = 0; i < sec->records->len; i++) {
        hdSecRecord *rec = g_ptr_array_index(sec->records, i);

        if (rec->kind == HD_SEC_ACL && g_strcmp0(rec->domain, domain) == 0) {
            hdErrorSet(error, HD_ERROR_IN_USE,
                       _("domain %1$s still has access to device %2$u:%3$u in cgroup '%4$s'"),
                       domain, rec->major, rec->minor, rec->path);
            goto cleanup;
        }
    }
    if ((dom = g_hash_table_lookup(sec->domains, domain))) {
        hdCgroup *cg;

        if (dom->cgroup && g_file_test(dom->cgroup, G_FILE_TEST_IS_DIR) &&
            (!(cg = hdSecCgroupGet(sec, dom->cgroup, error)) ||
             !hdCgroupRemoveProgram(cg, error)))
            goto cleanup;
        if (dom->cgroup)
            g_hash_table_remove(sec->cgroups, dom->cgroup);
        g_hash_table_remove(sec->domains, domain);
    }
    ret = TRUE;

 cleanup:
    g_mutex_unlock(&sec->lock);
    return ret;
}


gboolean
hdSecurityManagerCheckDomain(hdSecurityManager *sec, const char *domain, GError **error)
{
    hdSecDomain *dom;
    gboolean ret = TRUE;

    g_mutex_lock(&sec->lock);
    dom = g_hash_table_lookup(sec->domains, domain);
    if (dom && dom->failure) {
        g_propagate_error(error, g_error_copy(dom->failure));
        ret = FALSE;
    }
    g_mutex_unlock(&sec->lock);
    return ret;
}


guint
hdSecurityManagerRetry(hdSecurityManager *sec, GError **error)
{
    guint left;

    g_mutex_lock(&sec->lock);
    left = hdSecRunPending(sec, error);
    g_mutex_unlock(&sec->lock);
    return left;
}


static char *
hdSecRecordDescribe(const hdSecRecord *rec)
{
    switch (rec->kind) {
    case HD_SEC_LABEL:
        return g_strdup_printf("label %s", rec->path);
    case HD_SEC_ACL:
        return g_strdup_printf("cgroup %s %u:%u", rec->domain, rec->major, rec->minor);
    case HD_SEC_VF:
        return g_strdup_printf("vf %s", rec->address);
    }
    return g_strdup("?");
}


static gint
hdSecCompareLines(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}


static GStrv
hdSecList(hdSecurityManager *sec, gboolean pending)
{
    g_autoptr(GPtrArray) lines = g_ptr_array_new();
    guint i;

    g_mutex_lock(&sec->lock);
    for (i = 0; i < sec->records->len; i++) {
        const hdSecRecord *rec = g_ptr_array_index(sec->records, i);

        if (rec->pending == pending)
            g_ptr_array_add(lines, hdSecRecordDescribe(rec));
    }
    g_mutex_unlock(&sec->lock);
    g_ptr_array_sort(lines, hdSecCompareLines);
    g_ptr_array_add(lines, NULL);
    return (GStrv)g_ptr_array_steal(lines, NULL);
}


GStrv
hdSecurityManagerListPending(hdSecurityManager *sec)
{
    return hdSecList(sec, TRUE);
}


GStrv
hdSecurityManagerListApplied(hdSecurityManager *sec)
{
    return hdSecList(sec, FALSE);
}


const char *
hdSecurityProblemToString(hdSecurityProblem problem)
{
    switch (problem) {
    case HD_SECURITY_PROBLEM_SETUP:
        return "setup";
    case HD_SECURITY_PROBLEM_CLEANUP:
        return "cleanup";
    case HD_SECURITY_PROBLEM_STATE:
        return "state";
    }
    return "unknown";
}


void
hdSecurityProblemLog(hdSecurityProblem problem, const char *domain, const GError *error)
{
    switch (problem) {
    case HD_SECURITY_PROBLEM_SETUP:
        g_warning(_("domain %1$s: security setup failed, its assignment fails: %2$s"),
                  domain, error->message);
        break;
    case HD_SECURITY_PROBLEM_CLEANUP:
        if (domain)
            g_warning(_("domain %1$s: security cleanup failed, retried later: %2$s"),
                      domain, error->message);
        else
            g_warning(_("security cleanup failed, retried later: %1$s"), error->message);
        break;
    case HD_SECURITY_PROBLEM_STATE:
        g_warning(_("security state not recorded: %1$s"), error->message);
        break;
    }
}


void
hdSecurityManagerSetReportFunc(hdSecurityManager *sec, hdSecurityReportFunc func,
                               gpointer opaque)
{
    g_mutex_lock(&sec->lock);
    sec->report = func;
    sec->report_opaque = opaque;
    g_mutex_unlock(&sec->lock);
}


void
hdSecurityManagerSetDevNumFunc(hdSecurityManager *sec, hdSecurityDevNumFunc func,
                               gpointer opaque)
{
    g_mutex_lock(&sec->lock);
    sec->devnum = func ? func : hdSecDevNumStat;
    sec->devnum_opaque = opaque;
    g_mutex_unlock(&sec->lock);
}


void
hdSecurityManagerSetVFNetBackend(hdSecurityManager *sec, const void *backend,
                                 gpointer opaque)
{
    g_mutex_lock(&sec->lock);
    sec->vfnet = backend ? backend : &hdVFNetBackendDefault;
    sec->vfnet_opaque = opaque;
    g_mutex_unlock(&sec->lock);
}


void
hdSecurityManagerSetGroupFreeFunc(hdSecurityManager *sec, hdGroupFreeFunc func,
                                  gpointer opaque)
{
    g_mutex_lock(&sec->lock);
    sec->group_free = func ? func : hdGroupFreeByProc;
    sec->group_free_opaque = opaque;
    g_mutex_unlock(&sec->lock);
}
