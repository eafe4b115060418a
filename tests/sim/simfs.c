/*
 * simfs.c: the FUSE file system of the simulated host
 *
 * The directory tree (simTree) is built from the model once; when files
 * appear or vanish (the model's tree generation changes on bind and
 * unbind) only what changed is patched: a device's driver links and vfio
 * cdev, a group's /dev/vfio/N.  The tree is guarded by the model lock;
 * nodes are reference counted and never change once made, so a request
 * may keep using its node after dropping the lock.  File contents are not
 * in the tree: they are read from the model when a file is read, and
 * writes go straight to the model's kernel entry points, which may block
 * for a long time; the daemon runs a multi-threaded loop with enough
 * threads for that.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "simfs.h"

/* sysfs reports this size for every attribute. */
#define SIM_ATTR_SIZE 4096

/* How long the kernel caches what never changes (see simNodeCacheTimeout). */
#define SIM_CACHE_TIMEOUT_S 3600.0

/* The major number of vfio-dev/vfioX/dev, as on a typical host. */
#define SIM_VFIO_CDEV_MAJOR 511

typedef enum {
    SIM_NODE_DIR,
    SIM_NODE_FILE,
    SIM_NODE_LINK,
} simNodeType;

typedef enum {
    SIM_FILE_VENDOR,
    SIM_FILE_DEVICE,
    SIM_FILE_CLASS,
    SIM_FILE_DRIVER_OVERRIDE,
    SIM_FILE_RESET,
    SIM_FILE_RESET_METHOD,
    SIM_FILE_VFIO_DEV,
    SIM_FILE_BIND,
    SIM_FILE_UNBIND,
    SIM_FILE_DRIVERS_PROBE,
    SIM_FILE_CTL,
    SIM_FILE_STATE,
    SIM_FILE_EVENTS,
    SIM_FILE_CONTAINER,
    SIM_FILE_GROUP,
    SIM_FILE_CDEV,
    SIM_FILE_NET_ADDRESS,
    SIM_FILE_NET_IFINDEX,
} simFileKind;

typedef struct {
    gint refs;
    simNodeType type;
    simFileKind kind;
    mode_t mode;                /* permission bits of files */
    simDevice *dev;             /* device attributes, cdevs */
    const char *driver;         /* bind, unbind: borrowed from the model */
    int group;                  /* dev/vfio/N */
    char *target;               /* links, relative as in sysfs */
    GPtrArray *children;        /* directories: names, owned; changes */
    gboolean lasting;           /* there for the life of the daemon */
} simNode;

/* What of a device's files depends on the model's state. */
typedef struct {
    char *driver;               /* the driver the links show, or NULL */
    int vfio_cdev;              /* -1: none */
    const char *netdev;         /* its interface (borrowed), NULL: none */
} simDeviceShape;

typedef struct {
    guint64 generation;
    gboolean building;          /* adding the nodes that last */
    GHashTable *nodes;          /* path without leading '/' -> simNode */
    GHashTable *shapes;         /* simDevice * -> simDeviceShape */
    GHashTable *group_nodes;    /* simGroup * with a dev/vfio/N node */
} simTree;

/* What an open file refers to; outlives tree rebuilds. */
typedef struct {
    simFileKind kind;
    simDevice *dev;
    const char *driver;
    int group;
    GMutex lock;                /* guards content: reads may overlap */
    char *content;              /* what reads return, taken at offset 0 */
    gint closer;                /* thread that closed it last (FLUSH) */
} simHandle;

struct _simFs {
    simModel *model;
    int ready_fd;
    struct timespec start;
    simTree *tree;              /* guarded by the model lock */
    GMutex lock;                /* guards handles and inodes */
    GHashTable *handles;        /* simHandle set: freed at the end */
    GPtrArray *inode_paths;     /* inode - 1 -> path */
    GHashTable *inodes;         /* path -> inode */
};


/* ---- The tree ---------------------------------------------------------- */

static void
simNodeUnref(simNode *node)
{
    if (!node || !g_atomic_int_dec_and_test(&node->refs))
        return;
    g_free(node->target);
    if (node->children)
        g_ptr_array_unref(node->children);
    g_free(node);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(simNode, simNodeUnref)


static simNode *
simNodeNew(simNodeType type)
{
    simNode *node = g_new0(simNode, 1);

    node->refs = 1;
    node->type = type;
    node->group = -1;
    return node;
}


static void
simDeviceShapeFree(simDeviceShape *shape)
{
    g_free(shape->driver);
    g_free(shape);
}


static void
simTreeFree(simTree *tree)
{
    if (!tree)
        return;
    g_hash_table_unref(tree->nodes);
    g_hash_table_unref(tree->shapes);
    g_hash_table_unref(tree->group_nodes);
    g_free(tree);
}


/* The directory part of @path ("" for the root), and its last name. */
static char *
simPathSplit(const char *path, const char **name)
{
    const char *slash = strrchr(path, '/');

    *name = slash ? slash + 1 : path;
    return slash ? g_strndup(path, slash - path) : g_strdup("");
}


static simNode *simTreeDir(simTree *tree, const char *path);

/* Add @node at @path, creating the directories above it. */
static simNode *
simTreeAdd(simTree *tree, const char *path, simNode *node)
{
    g_autofree char *parent = NULL;
    const char *name;

    node->lasting = tree->building;
    g_hash_table_insert(tree->nodes, g_strdup(path), node);
    if (!*path)
        return node;
    parent = simPathSplit(path, &name);
    g_ptr_array_add(simTreeDir(tree, parent)->children, g_strdup(name));
    return node;
}


/* Remove the node at @path (which must exist) from its directory. */
static void
simTreeRemove(simTree *tree, const char *path)
{
    const char *name;
    g_autofree char *parent = simPathSplit(path, &name);
    simNode *dir = g_hash_table_lookup(tree->nodes, parent);
    guint i;

    for (i = 0; i < dir->children->len; i++) {
        if (strcmp(g_ptr_array_index(dir->children, i), name) == 0) {
            g_ptr_array_remove_index(dir->children, i);
            break;
        }
    }
    g_hash_table_remove(tree->nodes, path);
}


static simNode *
simTreeDir(simTree *tree, const char *path)
{
    simNode *node = g_hash_table_lookup(tree->nodes, path);

    if (node)
        return node;
    node = simNodeNew(SIM_NODE_DIR);
    node->mode = 0755;
    node->children = g_ptr_array_new_with_free_func(g_free);
    return simTreeAdd(tree, path, node);
}


static simNode *
simTreeFile(simTree *tree, const char *path, simFileKind kind, mode_t mode)
{
    simNode *node = simNodeNew(SIM_NODE_FILE);

    node->kind = kind;
    node->mode = mode;
    return simTreeAdd(tree, path, node);
}


static simNode *
simTreeDeviceFile(simTree *tree, simDevice *dev, const char *name,
                  simFileKind kind, mode_t mode)
{
    g_autofree char *path = g_strdup_printf("%s/%s", dev->sysfs_path, name);
    simNode *node = simTreeFile(tree, path, kind, mode);

    node->dev = dev;
    return node;
}


/* The target of a link at @path to @target (both relative to the mount
 * point), relative to the link's directory as sysfs writes it. */
static char *
simRelativeTarget(const char *path, const char *target)
{
    g_auto(GStrv) from = g_strsplit(path, "/", -1);
    g_auto(GStrv) to = g_strsplit(target, "/", -1);
    g_autoptr(GString) result = g_string_new(NULL);
    guint nfrom = g_strv_length(from) - 1;    /* the link's directory */
    guint common = 0;
    guint i;

    while (common < nfrom && to[common] && strcmp(from[common], to[common]) == 0)
        common++;
    for (i = common; i < nfrom; i++)
        g_string_append(result, "../");
    for (i = common; to[i]; i++)
        g_string_append_printf(result, "%s%s", i > common ? "/" : "", to[i]);
    return g_string_free(g_steal_pointer(&result), FALSE);
}


/* A link at the path @fmt... to @target. */
static void G_GNUC_PRINTF(3, 4)
simTreeLink(simTree *tree, const char *target, const char *fmt, ...)
{
    simNode *node = simNodeNew(SIM_NODE_LINK);
    g_autofree char *path = NULL;
    va_list ap;

    va_start(ap, fmt);
    path = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    node->target = simRelativeTarget(path, target);
    simTreeAdd(tree, path, node);
}


/* What of @dev's files the model's state calls for now. */
static simDeviceShape
simDeviceShapeOf(const simDevice *dev)
{
    simDeviceShape shape = { NULL, dev->vfio_cdev, NULL };

    /* During a blocked unbind the kernel has already removed the link. */
    if (dev->driver && !dev->unbinding)
        shape.driver = dev->driver;
    if (dev->ifindex > 0)
        shape.netdev = dev->netdev;
    return shape;
}


/* The files of @dev that come and go: its driver links and vfio cdev. */
static void
simTreeAddDeviceShape(simTree *tree, simDevice *dev, const simDeviceShape *shape)
{
    const char *p = dev->sysfs_path;

    if (shape->driver) {
        g_autofree char *driver_dir = g_strdup_printf("sys/bus/pci/drivers/%s",
                                                      shape->driver);

        simTreeLink(tree, driver_dir, "%s/driver", p);
        simTreeLink(tree, p, "%s/%s", driver_dir, dev->address);
    }
    if (shape->vfio_cdev >= 0) {
        g_autofree char *attr = g_strdup_printf("vfio-dev/vfio%d/dev", shape->vfio_cdev);
        g_autofree char *cdev = g_strdup_printf("dev/vfio/devices/vfio%d",
                                                shape->vfio_cdev);

        simTreeDeviceFile(tree, dev, attr, SIM_FILE_VFIO_DEV, 0444);
        simTreeFile(tree, cdev, SIM_FILE_CDEV, 0600)->dev = dev;
    }
    if (shape->netdev) {
        g_autofree char *dir = g_strdup_printf("%s/net/%s", p, shape->netdev);
        g_autofree char *address = g_strdup_printf("net/%s/address", shape->netdev);
        g_autofree char *ifindex = g_strdup_printf("net/%s/ifindex", shape->netdev);

        simTreeDeviceFile(tree, dev, address, SIM_FILE_NET_ADDRESS, 0444);
        simTreeDeviceFile(tree, dev, ifindex, SIM_FILE_NET_IFINDEX, 0444);
        simTreeLink(tree, dir, "sys/class/net/%s", shape->netdev);
    }
}


static void
simTreeRemoveDeviceShape(simTree *tree, simDevice *dev, const simDeviceShape *shape)
{
    const char *p = dev->sysfs_path;

    if (shape->driver) {
        g_autofree char *driver_link = g_strdup_printf("%s/driver", p);
        g_autofree char *device_link = g_strdup_printf("sys/bus/pci/drivers/%s/%s",
                                                       shape->driver, dev->address);

        simTreeRemove(tree, driver_link);
        simTreeRemove(tree, device_link);
    }
    if (shape->vfio_cdev >= 0) {
        g_autofree char *dir = g_strdup_printf("%s/vfio-dev", p);
        g_autofree char *cdev_dir = g_strdup_printf("%s/vfio%d", dir, shape->vfio_cdev);
        g_autofree char *attr = g_strdup_printf("%s/dev", cdev_dir);
        g_autofree char *cdev = g_strdup_printf("dev/vfio/devices/vfio%d",
                                                shape->vfio_cdev);

        simTreeRemove(tree, attr);
        simTreeRemove(tree, cdev_dir);
        simTreeRemove(tree, dir);
        simTreeRemove(tree, cdev);
    }
    if (shape->netdev) {
        g_autofree char *dir = g_strdup_printf("%s/net", p);
        g_autofree char *if_dir = g_strdup_printf("%s/%s", dir, shape->netdev);
        g_autofree char *address = g_strdup_printf("%s/address", if_dir);
        g_autofree char *ifindex = g_strdup_printf("%s/ifindex", if_dir);
        g_autofree char *class_link = g_strdup_printf("sys/class/net/%s", shape->netdev);

        simTreeRemove(tree, address);
        simTreeRemove(tree, ifindex);
        simTreeRemove(tree, if_dir);
        simTreeRemove(tree, dir);
        simTreeRemove(tree, class_link);
    }
}


/* Make @dev's changing files match the model. */
static void
simTreeSyncDevice(simTree *tree, simDevice *dev)
{
    simDeviceShape *have = g_hash_table_lookup(tree->shapes, dev);
    simDeviceShape want = simDeviceShapeOf(dev);

    if (have && g_strcmp0(have->driver, want.driver) == 0 &&
        have->vfio_cdev == want.vfio_cdev && have->netdev == want.netdev)
        return;
    if (have)
        simTreeRemoveDeviceShape(tree, dev, have);
    simTreeAddDeviceShape(tree, dev, &want);
    have = g_new0(simDeviceShape, 1);
    have->driver = g_strdup(want.driver);
    have->vfio_cdev = want.vfio_cdev;
    have->netdev = want.netdev;
    g_hash_table_replace(tree->shapes, dev, have);
}


/* Make /dev/vfio/N match the model: it exists while a member is on
 * vfio-pci. */
static void
simTreeSyncGroup(simTree *tree, simGroup *group)
{
    gboolean want = simGroupHasDevNode(group);
    g_autofree char *path = NULL;

    if (want == g_hash_table_contains(tree->group_nodes, group))
        return;
    path = g_strdup_printf("dev/vfio/%d", group->number);
    if (want) {
        simTreeFile(tree, path, SIM_FILE_GROUP, 0600)->group = group->number;
        g_hash_table_add(tree->group_nodes, group);
    } else {
        simTreeRemove(tree, path);
        g_hash_table_remove(tree->group_nodes, group);
    }
}


/* The files of @dev that stay as long as the device. */
static void
simTreeAddDevice(simTree *tree, simDevice *dev)
{
    const char *p = dev->sysfs_path;
    g_autofree char *group_dir = g_strdup_printf("sys/kernel/iommu_groups/%d",
                                                 dev->group_number);
    guint i;

    simTreeDir(tree, p);
    simTreeDeviceFile(tree, dev, "vendor", SIM_FILE_VENDOR, 0444);
    simTreeDeviceFile(tree, dev, "device", SIM_FILE_DEVICE, 0444);
    simTreeDeviceFile(tree, dev, "class", SIM_FILE_CLASS, 0444);
    simTreeDeviceFile(tree, dev, "driver_override", SIM_FILE_DRIVER_OVERRIDE, 0644);
    if (dev->reset_method) {
        simTreeDeviceFile(tree, dev, "reset", SIM_FILE_RESET, 0200);
        simTreeDeviceFile(tree, dev, "reset_method", SIM_FILE_RESET_METHOD, 0444);
    }

    simTreeLink(tree, group_dir, "%s/iommu_group", p);
    simTreeLink(tree, p, "%s/devices/%s", group_dir, dev->address);
    simTreeLink(tree, p, "sys/bus/pci/devices/%s", dev->address);

    if (dev->physfn)
        simTreeLink(tree, dev->physfn->sysfs_path, "%s/physfn", p);
    for (i = 0; i < dev->virtfns->len; i++) {
        simDevice *vf = g_ptr_array_index(dev->virtfns, i);

        simTreeLink(tree, vf->sysfs_path, "%s/virtfn%u", p, i);
    }
}


/* Make the tree match the model.  Called with the model lock held. */
static void
simTreeSync(simTree *tree, simModel *model)
{
    GPtrArray *devices = simModelDevices(model);
    GPtrArray *groups = simModelGroups(model);
    guint i;

    if (tree->generation == simModelTreeGeneration(model))
        return;
    for (i = 0; i < devices->len; i++)
        simTreeSyncDevice(tree, g_ptr_array_index(devices, i));
    for (i = 0; i < groups->len; i++)
        simTreeSyncGroup(tree, g_ptr_array_index(groups, i));
    tree->generation = simModelTreeGeneration(model);
}


/* Called with the model lock held. */
static simTree *
simTreeBuild(simModel *model)
{
    simTree *tree = g_new0(simTree, 1);
    GPtrArray *devices = simModelDevices(model);
    GPtrArray *groups = simModelGroups(model);
    GPtrArray *drivers = simModelDrivers(model);
    guint i;

    tree->nodes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify) simNodeUnref);
    tree->shapes = g_hash_table_new_full(NULL, NULL, NULL,
                                         (GDestroyNotify) simDeviceShapeFree);
    tree->group_nodes = g_hash_table_new(NULL, NULL);

    tree->building = TRUE;
    simTreeDir(tree, "");
    simTreeFile(tree, ".sim/ctl", SIM_FILE_CTL, 0200);
    simTreeFile(tree, ".sim/state", SIM_FILE_STATE, 0444);
    simTreeFile(tree, ".sim/events", SIM_FILE_EVENTS, 0444);
    simTreeFile(tree, "dev/vfio/vfio", SIM_FILE_CONTAINER, 0666);
    simTreeDir(tree, "dev/vfio/devices");
    simTreeFile(tree, "sys/bus/pci/drivers_probe", SIM_FILE_DRIVERS_PROBE, 0200);
    simTreeDir(tree, "sys/bus/pci/devices");
    simTreeDir(tree, "sys/class/net");

    for (i = 0; i < drivers->len; i++) {
        const char *driver = g_ptr_array_index(drivers, i);
        g_autofree char *bind = g_strdup_printf("sys/bus/pci/drivers/%s/bind", driver);
        g_autofree char *unbind = g_strdup_printf("sys/bus/pci/drivers/%s/unbind", driver);

        simTreeFile(tree, bind, SIM_FILE_BIND, 0200)->driver = driver;
        simTreeFile(tree, unbind, SIM_FILE_UNBIND, 0200)->driver = driver;
    }

    for (i = 0; i < groups->len; i++) {
        simGroup *group = g_ptr_array_index(groups, i);
        g_autofree char *dir = g_strdup_printf("sys/kernel/iommu_groups/%d/devices",
                                               group->number);

        simTreeDir(tree, dir);
    }

    for (i = 0; i < devices->len; i++)
        simTreeAddDevice(tree, g_ptr_array_index(devices, i));
    tree->building = FALSE;
    /* No generation is the model's yet: the first sync adds the rest. */
    tree->generation = G_MAXUINT64;
    simTreeSync(tree, model);
    return tree;
}


/* Lock the tree (the model lock) and bring it up to date. */
static simTree *
simFsLockTree(simFs *fs)
{
    simModelLock(fs->model);
    if (!fs->tree)
        fs->tree = simTreeBuild(fs->model);
    simTreeSync(fs->tree, fs->model);
    return fs->tree;
}


static void
simFsUnlockTree(simFs *fs)
{
    simModelUnlock(fs->model);
}


/* The node at @path in the current tree, referenced, or NULL. */
static simNode *
simFsLookupPath(simFs *fs, const char *path)
{
    simTree *tree = simFsLockTree(fs);
    simNode *node = g_hash_table_lookup(tree->nodes, path);

    if (node)
        g_atomic_int_inc(&node->refs);
    simFsUnlockTree(fs);
    return node;
}


/* ---- Inodes ------------------------------------------------------------ */

/* The inode number of @path, the same for the life of the daemon; paths
 * that come back (dev/vfio/N) get their old number. */
static fuse_ino_t
simFsInode(simFs *fs, const char *path)
{
    gpointer ino;

    g_mutex_lock(&fs->lock);
    if (!(ino = g_hash_table_lookup(fs->inodes, path))) {
        char *copy = g_strdup(path);

        g_ptr_array_add(fs->inode_paths, copy);
        ino = GUINT_TO_POINTER(fs->inode_paths->len);
        g_hash_table_insert(fs->inodes, copy, ino);
    }
    g_mutex_unlock(&fs->lock);
    return GPOINTER_TO_UINT(ino);
}


/* The path of @ino (never freed before the simFs), or NULL. */
static const char *
simFsInodePath(simFs *fs, fuse_ino_t ino)
{
    const char *path = NULL;

    g_mutex_lock(&fs->lock);
    if (ino >= 1 && ino <= fs->inode_paths->len)
        path = g_ptr_array_index(fs->inode_paths, ino - 1);
    g_mutex_unlock(&fs->lock);
    return path;
}


/* The process behind the request: FUSE gives the thread id. */
static pid_t
simFsCallerPid(fuse_req_t req)
{
    pid_t tid = fuse_req_ctx(req)->pid;
    g_autofree char *status_path = g_strdup_printf("/proc/%d/status", (int) tid);
    g_autofree char *status = NULL;
    const char *line;

    if (tid <= 0 || !g_file_get_contents(status_path, &status, NULL, NULL))
        return tid;
    if (!(line = strstr(status, "\nTgid:")))
        return tid;
    return (pid_t) g_ascii_strtoll(line + strlen("\nTgid:"), NULL, 10);
}


/* ---- File contents ---------------------------------------------------- */

static char *
simFsContent(simFs *fs, const simHandle *handle)
{
    const simDevice *dev = handle->dev;
    char *content = NULL;

    if (handle->kind == SIM_FILE_STATE)
        return simModelStateJson(fs->model);
    if (handle->kind == SIM_FILE_EVENTS)
        return simModelEventsText(fs->model);

    simModelLock(fs->model);
    switch (handle->kind) {
    case SIM_FILE_VENDOR:
        content = g_strdup_printf("0x%04x\n", dev->vendor);
        break;
    case SIM_FILE_DEVICE:
        content = g_strdup_printf("0x%04x\n", dev->device);
        break;
    case SIM_FILE_CLASS:
        content = g_strdup_printf("0x%06x\n", dev->pci_class);
        break;
    case SIM_FILE_DRIVER_OVERRIDE:
        content = g_strdup_printf("%s\n", dev->driver_override ?
                                  dev->driver_override : "(null)");
        break;
    case SIM_FILE_RESET_METHOD:
        content = g_strdup_printf("%s\n", dev->reset_method);
        break;
    case SIM_FILE_VFIO_DEV:
        content = g_strdup_printf("%d:%d\n", SIM_VFIO_CDEV_MAJOR, dev->vfio_cdev);
        break;
    case SIM_FILE_NET_ADDRESS: {
        guint8 mac[SIM_MAC_LEN];
        g_autofree char *text = NULL;

        simNetdevAddress(dev, mac);
        text = simFormatMac(mac);
        content = g_strdup_printf("%s\n", text);
        break;
    }
    case SIM_FILE_NET_IFINDEX:
        content = g_strdup_printf("%d\n", dev->ifindex);
        break;
    default:
        content = g_strdup("");
        break;
    }
    simModelUnlock(fs->model);
    return content;
}


/* ---- FUSE operations -------------------------------------------------- */

/* The open reply, written by hand: libfuse 3.14 cannot set
 * FOPEN_PARALLEL_DIRECT_WRITES, and without it the kernel serializes all
 * writes to one file (one blocked unbind would stop every other). */
#define SIM_FOPEN_DIRECT_IO (1 << 0)
#define SIM_FOPEN_PARALLEL_DIRECT_WRITES (1 << 6)

typedef struct {
    uint64_t fh;
    uint32_t open_flags;
    uint32_t padding;
} simFuseOpenOut;


static gboolean
simFileIsDevNode(simFileKind kind)
{
    return kind == SIM_FILE_CONTAINER || kind == SIM_FILE_GROUP || kind == SIM_FILE_CDEV;
}


static void
simFsStat(simFs *fs, const simNode *node, fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_atim = st->st_mtim = st->st_ctim = fs->start;
    st->st_nlink = 1;
    st->st_blksize = SIM_ATTR_SIZE;
    switch (node->type) {
    case SIM_NODE_DIR:
        st->st_mode = S_IFDIR | node->mode;
        st->st_nlink = 2;
        break;
    case SIM_NODE_LINK:
        st->st_mode = S_IFLNK | 0777;
        st->st_size = strlen(node->target);
        break;
    case SIM_NODE_FILE:
        st->st_mode = S_IFREG | node->mode;
        /* sysfs says 4096 (and writes within the size may run in
         * parallel); the .sim files and device nodes say 0 so that readers
         * read until EOF. */
        if (node->kind < SIM_FILE_CTL)
            st->st_size = SIM_ATTR_SIZE;
        break;
    }
}


/* How long the kernel may keep @node's entry and attributes.  Nodes that
 * come and go must reach us on every lookup, or a vanished driver link or
 * /dev/vfio/N would still be seen; the others never change, and path
 * walks through them are most of the requests. */
static double
simNodeCacheTimeout(const simNode *node)
{
    return node->lasting ? SIM_CACHE_TIMEOUT_S : 0;
}


/* The node of @ino in the current tree, referenced, or NULL. */
static simNode *
simFsNode(simFs *fs, fuse_ino_t ino)
{
    const char *path = simFsInodePath(fs, ino);

    return path ? simFsLookupPath(fs, path) : NULL;
}


static void
simFsLookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    simFs *fs = fuse_req_userdata(req);
    const char *dir = simFsInodePath(fs, parent);
    g_autoptr(simNode) node = NULL;
    g_autofree char *path = NULL;
    struct fuse_entry_param entry = { 0 };

    if (!dir) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    path = *dir ? g_strdup_printf("%s/%s", dir, name) : g_strdup(name);
    if (!(node = simFsLookupPath(fs, path))) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    entry.ino = simFsInode(fs, path);
    simFsStat(fs, node, entry.ino, &entry.attr);
    entry.attr_timeout = entry.entry_timeout = simNodeCacheTimeout(node);
    fuse_reply_entry(req, &entry);
}


static void
simFsForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    /* Inode numbers live as long as the daemon. */
    fuse_reply_none(req);
}


static void
simFsGetattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    simFs *fs = fuse_req_userdata(req);
    g_autoptr(simNode) node = simFsNode(fs, ino);
    struct stat st;

    if (!node) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    simFsStat(fs, node, ino, &st);
    fuse_reply_attr(req, &st, simNodeCacheTimeout(node));
}


/* Only O_TRUNC ("echo 1 > reset") gets here: nothing to do. */
static void
simFsSetattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
             struct fuse_file_info *fi)
{
    simFs *fs = fuse_req_userdata(req);
    g_autoptr(simNode) node = simFsNode(fs, ino);
    struct stat st;

    if (!node) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (to_set != FUSE_SET_ATTR_SIZE || node->type != SIM_NODE_FILE) {
        fuse_reply_err(req, EPERM);
        return;
    }
    simFsStat(fs, node, ino, &st);
    fuse_reply_attr(req, &st, 0);
}


static void
simFsReadlink(fuse_req_t req, fuse_ino_t ino)
{
    simFs *fs = fuse_req_userdata(req);
    g_autoptr(simNode) node = simFsNode(fs, ino);

    if (!node)
        fuse_reply_err(req, ENOENT);
    else if (node->type != SIM_NODE_LINK)
        fuse_reply_err(req, EINVAL);
    else
        fuse_reply_readlink(req, node->target);
}


/* A directory listing, taken at opendir so that offsets stay meaningful. */
typedef struct {
    char *name;
    fuse_ino_t ino;
    mode_t type;                /* S_IFDIR, S_IFREG, S_IFLNK */
} simDirEntry;


static void
simDirEntryClear(gpointer opaque)
{
    simDirEntry *entry = opaque;

    g_free(entry->name);
}


static void
simDirAdd(simFs *fs, GArray *entries, const char *dir, const char *name, const simNode *node)
{
    g_autofree char *path = *dir ? g_strdup_printf("%s/%s", dir, name) : g_strdup(name);
    simDirEntry entry = { .name = g_strdup(name) };

    /* "..": any non-zero number will do (readdir skips inode 0). */
    entry.ino = node ? simFsInode(fs, path) : FUSE_ROOT_ID;
    if (!node || node->type == SIM_NODE_DIR)
        entry.type = S_IFDIR;
    else if (node->type == SIM_NODE_LINK)
        entry.type = S_IFLNK;
    else
        entry.type = S_IFREG;
    g_array_append_val(entries, entry);
}


/* The listing of the directory at @dir, or NULL with errno set. */
static GArray *
simFsListDir(simFs *fs, const char *dir, fuse_ino_t ino)
{
    simTree *tree = simFsLockTree(fs);
    simNode *node = g_hash_table_lookup(tree->nodes, dir);
    GArray *entries = NULL;
    simDirEntry self;
    guint i;

    if (!node || node->type != SIM_NODE_DIR) {
        errno = node ? ENOTDIR : ENOENT;
        goto cleanup;
    }
    entries = g_array_new(FALSE, FALSE, sizeof(simDirEntry));
    g_array_set_clear_func(entries, simDirEntryClear);
    self = (simDirEntry) { .name = g_strdup("."), .ino = ino, .type = S_IFDIR };
    g_array_append_val(entries, self);
    simDirAdd(fs, entries, dir, "..", NULL);
    for (i = 0; i < node->children->len; i++) {
        const char *name = g_ptr_array_index(node->children, i);
        g_autofree char *path = *dir ? g_strdup_printf("%s/%s", dir, name) : g_strdup(name);

        simDirAdd(fs, entries, dir, name, g_hash_table_lookup(tree->nodes, path));
    }

 cleanup:
    simFsUnlockTree(fs);
    return entries;
}


static void
simFsOpendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    simFs *fs = fuse_req_userdata(req);
    const char *dir = simFsInodePath(fs, ino);
    GArray *entries;

    if (!dir) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!(entries = simFsListDir(fs, dir, ino))) {
        fuse_reply_err(req, errno);
        return;
    }
    fi->fh = (uintptr_t) entries;
    if (fuse_reply_open(req, fi) != 0)
        g_array_unref(entries);
}


static void
simFsReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
             struct fuse_file_info *fi)
{
    GArray *entries = (GArray *) (uintptr_t) fi->fh;
    g_autofree char *buf = g_malloc(size);
    size_t used = 0;
    off_t i;

    for (i = offset; i < (off_t) entries->len; i++) {
        simDirEntry *entry = &g_array_index(entries, simDirEntry, i);
        struct stat st = { .st_ino = entry->ino, .st_mode = entry->type };
        size_t need = fuse_add_direntry(req, NULL, 0, entry->name, NULL, 0);

        if (used + need > size)
            break;
        fuse_add_direntry(req, buf + used, size - used, entry->name, &st, i + 1);
        used += need;
    }
    fuse_reply_buf(req, buf, used);
}


static void
simFsReleasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    g_array_unref((GArray *) (uintptr_t) fi->fh);
    fuse_reply_err(req, 0);
}


/* The kernel refuses opens a sysfs attribute cannot serve (kernfs). */
static int
simFsCheckAccess(const simNode *node, int flags)
{
    int mode = flags & O_ACCMODE;

    if (mode != O_WRONLY && !(node->mode & 0444))
        return -EACCES;
    if (mode != O_RDONLY && !(node->mode & 0222))
        return -EACCES;
    return 0;
}


static int
simFsOpenDevNode(simFs *fs, const simHandle *handle, pid_t pid, int flags)
{
    if (handle->kind == SIM_FILE_GROUP)
        return simModelOpenGroup(fs->model, handle->group, pid,
                                 (flags & O_ACCMODE) == O_RDONLY);
    if (handle->kind == SIM_FILE_CDEV)
        return simModelOpenCdev(fs->model, handle->dev, pid);
    return 0;
}


static void
simHandleFree(simHandle *handle)
{
    g_mutex_clear(&handle->lock);
    g_free(handle->content);
    g_free(handle);
}


/* Undo an open: the model's holder and our handle. */
static void
simFsClose(simFs *fs, simHandle *handle)
{
    /* The real kernel releases after the close too: the last fput. */
    pid_t closer = (pid_t) g_atomic_int_get(&handle->closer);

    if (handle->kind == SIM_FILE_GROUP)
        simModelCloseGroup(fs->model, handle->group, closer);
    else if (handle->kind == SIM_FILE_CDEV)
        simModelCloseCdev(fs->model, handle->dev, closer);

    g_mutex_lock(&fs->lock);
    g_hash_table_remove(fs->handles, handle);   /* frees it */
    g_mutex_unlock(&fs->lock);
}


static void
simFsOpen(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    simFs *fs = fuse_req_userdata(req);
    g_autoptr(simNode) node = simFsNode(fs, ino);
    simFuseOpenOut out = { 0 };
    simHandle *handle;
    int ret;

    if (!node) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (node->type == SIM_NODE_DIR) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if ((ret = simFsCheckAccess(node, fi->flags)) < 0) {
        fuse_reply_err(req, -ret);
        return;
    }

    handle = g_new0(simHandle, 1);
    g_mutex_init(&handle->lock);
    handle->kind = node->kind;
    handle->dev = node->dev;
    handle->driver = node->driver;
    handle->group = node->group;
    if ((ret = simFsOpenDevNode(fs, handle, simFsCallerPid(req), fi->flags)) < 0) {
        simHandleFree(handle);
        fuse_reply_err(req, -ret);
        return;
    }
    g_mutex_lock(&fs->lock);
    g_hash_table_add(fs->handles, handle);
    g_mutex_unlock(&fs->lock);

    out.fh = (uintptr_t) handle;
    out.open_flags = SIM_FOPEN_DIRECT_IO | SIM_FOPEN_PARALLEL_DIRECT_WRITES;
    /* If the opener is gone, the kernel sends no release. */
    if (fuse_reply_buf(req, (const char *) &out, sizeof(out)) != 0)
        simFsClose(fs, handle);
}


static void
simFsRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
          struct fuse_file_info *fi)
{
    simFs *fs = fuse_req_userdata(req);
    simHandle *handle = (simHandle *) (uintptr_t) fi->fh;
    g_autofree char *chunk = NULL;
    size_t length;

    if (simFileIsDevNode(handle->kind)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    g_mutex_lock(&handle->lock);
    /* Like sysfs: reading from the start shows the current value. */
    if (offset == 0 || !handle->content) {
        g_free(handle->content);
        handle->content = simFsContent(fs, handle);
    }
    length = strlen(handle->content);
    if ((size_t) offset < length) {
        size = MIN(size, length - offset);
        chunk = g_strndup(handle->content + offset, size);
    } else {
        size = 0;
    }
    g_mutex_unlock(&handle->lock);
    /* From a copy: the release may free the handle before the reply is
     * fully sent (the reader wakes up as soon as the kernel has it). */
    fuse_reply_buf(req, chunk, size);
}


static int
simFsControl(simFs *fs, const char *buf, size_t size)
{
    g_autoptr(GError) error = NULL;

    if (!simModelControl(fs->model, buf, size, &error)) {
        g_printerr("hostdev-simhost: .sim/ctl: %s\n", error->message);
        return -EINVAL;
    }
    return 0;
}


static void
simFsWrite(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t offset,
           struct fuse_file_info *fi)
{
    simFs *fs = fuse_req_userdata(req);
    simHandle *handle = (simHandle *) (uintptr_t) fi->fh;
    pid_t pid = simFsCallerPid(req);
    int ret;

    switch (handle->kind) {
    case SIM_FILE_DRIVER_OVERRIDE:
        ret = simModelSetOverride(fs->model, handle->dev, buf, size, pid);
        break;
    case SIM_FILE_BIND:
        ret = simModelBind(fs->model, handle->driver, buf, size, pid);
        break;
    case SIM_FILE_UNBIND:
        ret = simModelUnbind(fs->model, handle->driver, buf, size, pid);
        break;
    case SIM_FILE_DRIVERS_PROBE:
        ret = simModelProbe(fs->model, buf, size, pid);
        break;
    case SIM_FILE_RESET:
        ret = simModelReset(fs->model, handle->dev, buf, size, pid);
        break;
    case SIM_FILE_CTL:
        ret = simFsControl(fs, buf, size);
        break;
    default:
        ret = -EINVAL;
        break;
    }
    if (ret < 0)
        fuse_reply_err(req, -ret);
    else
        fuse_reply_write(req, size);
}


/* Every close() sends a FLUSH from the closing thread; the last one before
 * the RELEASE names the task that runs the release in the kernel. */
static void
simFsFlush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    simHandle *handle = (simHandle *) (uintptr_t) fi->fh;

    g_atomic_int_set(&handle->closer, (gint) fuse_req_ctx(req)->pid);
    fuse_reply_err(req, 0);
}


static void
simFsRelease(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    simFsClose(fuse_req_userdata(req), (simHandle *) (uintptr_t) fi->fh);
    fuse_reply_err(req, 0);
}


static void
simFsReady(simFs *fs)
{
    static const char ready[] = "ready\n";

    if (fs->ready_fd < 0)
        return;
    if (write(fs->ready_fd, ready, strlen(ready)) != (ssize_t) strlen(ready))
        g_printerr("hostdev-simhost: cannot write to --ready-fd %d: %s\n",
                   fs->ready_fd, g_strerror(errno));
    close(fs->ready_fd);
    fs->ready_fd = -1;
}


static void
simFsInit(void *userdata, struct fuse_conn_info *conn)
{
    simFs *fs = userdata;

    /* Every lookup of what comes and goes must reach us (see
     * simNodeCacheTimeout); READDIRPLUS would fill the cache with it. */
    conn->want &= ~FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
    /* INIT is answered once we return: the mount is usable now. */
    simFsReady(fs);
}


static const struct fuse_lowlevel_ops simFsOps = {
    .init = simFsInit,
    .lookup = simFsLookup,
    .forget = simFsForget,
    .getattr = simFsGetattr,
    .setattr = simFsSetattr,
    .readlink = simFsReadlink,
    .opendir = simFsOpendir,
    .readdir = simFsReaddir,
    .releasedir = simFsReleasedir,
    .open = simFsOpen,
    .read = simFsRead,
    .write = simFsWrite,
    .flush = simFsFlush,
    .release = simFsRelease,
};


const struct fuse_lowlevel_ops *
simFsOperations(void)
{
    return &simFsOps;
}


simFs *
simFsNew(simModel *model, int ready_fd)
{
    simFs *fs = g_new0(simFs, 1);

    fs->model = model;
    fs->ready_fd = ready_fd;
    clock_gettime(CLOCK_REALTIME, &fs->start);
    g_mutex_init(&fs->lock);
    fs->handles = g_hash_table_new_full(NULL, NULL, (GDestroyNotify) simHandleFree, NULL);
    fs->inode_paths = g_ptr_array_new_with_free_func(g_free);
    fs->inodes = g_hash_table_new(g_str_hash, g_str_equal);
    /* FUSE_ROOT_ID (1): the mount point itself. */
    simFsInode(fs, "");
    return fs;
}


void
simFsFree(simFs *fs)
{
    if (!fs)
        return;
    g_hash_table_unref(fs->handles);
    g_hash_table_unref(fs->inodes);
    g_ptr_array_unref(fs->inode_paths);
    g_mutex_clear(&fs->lock);
    simTreeFree(fs->tree);
    if (fs->ready_fd >= 0)
        close(fs->ready_fd);
    g_free(fs);
}
