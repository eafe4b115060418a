/*
 * hdcgroup.c: device access of a domain's cgroup (v1 devices controller,
 * v2 BPF device program)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <fcntl.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <linux/magic.h>

#include "hdinternal.h"
#include "hdfile.h"
#include "hdcgroup.h"

#define HD_CGROUP_PROG_NAME "hostdev_dev"
/* Entries: one per VFIO node a domain was ever given (denied ones stay). */
#define HD_CGROUP_MAP_ENTRIES 4096
#define HD_CGROUP_MAX_PROGS 64

struct _hdCgroup {
    char *path;
    hdCgroupMode mode;
    int dir_fd;
    int map_fd;    /* v2: hostdev's map, -1 until needed */
    int prog_fd;   /* v2: hostdev's program, -1 until needed */
};


const char *
hdCgroupModeToString(hdCgroupMode mode)
{
    return mode == HD_CGROUP_V2 ? "v2" : "v1";
}


static int
hdFdSteal(int *fd)
{
    int ret = *fd;

    *fd = -1;
    return ret;
}


static void
hdFdClear(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}


static int
hdBPF(int cmd, union bpf_attr *attr)
{
    return (int)syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}


void
hdCgroupFree(hdCgroup *cg)
{
    if (!cg)
        return;
    hdFdClear(&cg->map_fd);
    hdFdClear(&cg->prog_fd);
    hdFdClear(&cg->dir_fd);
    g_free(cg->path);
    g_free(cg);
}


hdCgroup *
hdCgroupOpen(const char *path, GError **error)
{
    g_autoptr(hdCgroup) cg = g_new0(hdCgroup, 1);
    struct statfs sfs;

    cg->dir_fd = -1;
    cg->map_fd = -1;
    cg->prog_fd = -1;
    cg->path = g_strdup(path);
    if ((cg->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot open cgroup '%1$s'"), path);
        return NULL;
    }
    if (fstatfs(cg->dir_fd, &sfs) < 0) {
        hdErrorSetSystem(error, errno, _("cannot stat file system of cgroup '%1$s'"), path);
        return NULL;
    }
    if (sfs.f_type == CGROUP2_SUPER_MAGIC) {
        cg->mode = HD_CGROUP_V2;
    } else if (sfs.f_type == CGROUP_SUPER_MAGIC &&
               faccessat(cg->dir_fd, "devices.allow", W_OK, 0) == 0) {
        cg->mode = HD_CGROUP_V1;
    } else {
        hdErrorSet(error, HD_ERROR_INVALID_ARG,
                   _("'%1$s' is neither a cgroup v2 directory nor one of the cgroup v1 "
                     "devices controller"), path);
        return NULL;
    }
    return g_steal_pointer(&cg);
}


hdCgroupMode
hdCgroupGetMode(const hdCgroup *cg)
{
    return cg->mode;
}


static gboolean
hdCgroupV1Write(hdCgroup *cg, const char *file, unsigned int major, unsigned int minor,
                GError **error)
{
    g_autofree char *path = g_build_filename(cg->path, file, NULL);
    g_autofree char *rule = g_strdup_printf("c %u:%u rw", major, minor);

    return hdFileWriteAttr(path, rule, error);
}


/* Instructions, as the kernel's filter.h spells them (not in the uapi). */
#define HD_BPF_INSN(c, d, s, o, i) \
    ((struct bpf_insn) { .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define HD_MOV64_REG(d, s) HD_BPF_INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define HD_MOV64_IMM(d, i) HD_BPF_INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define HD_ALU64_IMM(op, d, i) HD_BPF_INSN(BPF_ALU64 | (op) | BPF_K, d, 0, 0, i)
#define HD_ALU64_REG(op, d, s) HD_BPF_INSN(BPF_ALU64 | (op) | BPF_X, d, s, 0, 0)
#define HD_LDX_W(d, s, o) HD_BPF_INSN(BPF_LDX | BPF_W | BPF_MEM, d, s, o, 0)
#define HD_STX_DW(d, s, o) HD_BPF_INSN(BPF_STX | BPF_DW | BPF_MEM, d, s, o, 0)
#define HD_JMP_IMM(op, d, i, o) HD_BPF_INSN(BPF_JMP | (op) | BPF_K, d, 0, o, i)
#define HD_CALL(f) HD_BPF_INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define HD_EXIT() HD_BPF_INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* The program, for struct bpf_cgroup_dev_ctx { access_type = access << 16 |
 * type; major; minor } in r1:
 *
 *   not a character device                -> 1 (not ours)
 *   v = map[major << 32 | minor]; none    -> 1 (not ours)
 *   requested access & ~v                 -> 0 (denied) else 1
 */
static int
hdCgroupLoadProgram(int map_fd, GError **error)
{
    struct bpf_insn prog[] = {
        /* 0 */ HD_MOV64_REG(BPF_REG_6, BPF_REG_1),
        /* 1 */ HD_LDX_W(BPF_REG_2, BPF_REG_6, offsetof(struct bpf_cgroup_dev_ctx, access_type)),
        /* 2 */ HD_ALU64_IMM(BPF_AND, BPF_REG_2, 0xffff),
        /* 3 */ HD_JMP_IMM(BPF_JNE, BPF_REG_2, BPF_DEVCG_DEV_CHAR, 17),   /* -> 21 */
        /* 4 */ HD_LDX_W(BPF_REG_2, BPF_REG_6, offsetof(struct bpf_cgroup_dev_ctx, major)),
        /* 5 */ HD_ALU64_IMM(BPF_LSH, BPF_REG_2, 32),
        /* 6 */ HD_LDX_W(BPF_REG_3, BPF_REG_6, offsetof(struct bpf_cgroup_dev_ctx, minor)),
        /* 7 */ HD_ALU64_REG(BPF_OR, BPF_REG_2, BPF_REG_3),
        /* 8 */ HD_STX_DW(BPF_REG_10, BPF_REG_2, -8),
        /* 9 */ HD_BPF_INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        /* 10 */ HD_BPF_INSN(0, 0, 0, 0, 0),
        /* 11 */ HD_MOV64_REG(BPF_REG_2, BPF_REG_10),
        /* 12 */ HD_ALU64_IMM(BPF_ADD, BPF_REG_2, -8),
        /* 13 */ HD_CALL(BPF_FUNC_map_lookup_elem),
        /* 14 */ HD_JMP_IMM(BPF_JEQ, BPF_REG_0, 0, 6),                    /* -> 21 */
        /* 15 */ HD_LDX_W(BPF_REG_1, BPF_REG_0, 0),
        /* 16 */ HD_LDX_W(BPF_REG_2, BPF_REG_6, offsetof(struct bpf_cgroup_dev_ctx, access_type)),
        /* 17 */ HD_ALU64_IMM(BPF_RSH, BPF_REG_2, 16),
        /* 18 */ HD_ALU64_IMM(BPF_XOR, BPF_REG_1, -1),
        /* 19 */ HD_ALU64_REG(BPF_AND, BPF_REG_2, BPF_REG_1),
        /* 20 */ HD_JMP_IMM(BPF_JNE, BPF_REG_2, 0, 2),                    /* -> 23 */
        /* 21 */ HD_MOV64_IMM(BPF_REG_0, 1),
        /* 22 */ HD_EXIT(),
        /* 23 */ HD_MOV64_IMM(BPF_REG_0, 0),
        /* 24 */ HD_EXIT(),
    };
    char log[4096] = "";
    union bpf_attr attr;
    int fd;

    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (guint64)(guintptr)prog;
    attr.insn_cnt = G_N_ELEMENTS(prog);
    attr.license = (guint64)(guintptr)"LGPL";
    attr.log_buf = (guint64)(guintptr)log;
    attr.log_size = sizeof(log);
    attr.log_level = 1;
    g_strlcpy(attr.prog_name, HD_CGROUP_PROG_NAME, sizeof(attr.prog_name));
    if ((fd = hdBPF(BPF_PROG_LOAD, &attr)) < 0) {
        int saved = errno;

        g_strchomp(log);
        hdErrorSetSystem(error, saved, _("cannot load the cgroup device program (%1$s)"),
                         log);
        return -1;
    }
    return fd;
}


/* The map of hostdev's program if it is attached to the cgroup: the
 * program is found by name among those attached. */
static gboolean
hdCgroupFindProgram(hdCgroup *cg, GError **error)
{
    guint32 ids[HD_CGROUP_MAX_PROGS];
    union bpf_attr attr;
    guint32 i;

    memset(&attr, 0, sizeof(attr));
    attr.query.target_fd = cg->dir_fd;
    attr.query.attach_type = BPF_CGROUP_DEVICE;
    attr.query.prog_ids = (guint64)(guintptr)ids;
    attr.query.prog_cnt = G_N_ELEMENTS(ids);
    if (hdBPF(BPF_PROG_QUERY, &attr) < 0) {
        hdErrorSetSystem(error, errno, _("cannot list the device programs of cgroup '%1$s'"),
                         cg->path);
        return FALSE;
    }
    for (i = 0; i < attr.query.prog_cnt && i < G_N_ELEMENTS(ids); i++) {
        struct bpf_prog_info info;
        guint32 map_ids[1] = { 0 };
        union bpf_attr get;
        g_auto(hdFd) prog_fd = -1;

        memset(&get, 0, sizeof(get));
        get.prog_id = ids[i];
        if ((prog_fd = hdBPF(BPF_PROG_GET_FD_BY_ID, &get)) < 0)
            continue;   /* detached meanwhile */
        memset(&info, 0, sizeof(info));
        info.nr_map_ids = G_N_ELEMENTS(map_ids);
        info.map_ids = (guint64)(guintptr)map_ids;
        memset(&get, 0, sizeof(get));
        get.info.bpf_fd = prog_fd;
        get.info.info_len = sizeof(info);
        get.info.info = (guint64)(guintptr)&info;
        if (hdBPF(BPF_OBJ_GET_INFO_BY_FD, &get) < 0) {
            hdErrorSetSystem(error, errno,
                             _("cannot read device program %1$u of cgroup '%2$s'"),
                             ids[i], cg->path);
            return FALSE;
        }
        if (strcmp(info.name, HD_CGROUP_PROG_NAME) != 0 || info.nr_map_ids != 1)
            continue;
        memset(&get, 0, sizeof(get));
        get.map_id = map_ids[0];
        if ((cg->map_fd = hdBPF(BPF_MAP_GET_FD_BY_ID, &get)) < 0) {
            hdErrorSetSystem(error, errno,
                             _("cannot open the map of device program %1$u of cgroup '%2$s'"),
                             ids[i], cg->path);
            return FALSE;
        }
        cg->prog_fd = hdFdSteal(&prog_fd);
        return TRUE;
    }
    return TRUE;
}


/* Find hostdev's program on the cgroup, or create and attach it. */
static gboolean
hdCgroupEnsureProgram(hdCgroup *cg, GError **error)
{
    union bpf_attr attr;
    g_auto(hdFd) map_fd = -1;
    g_auto(hdFd) prog_fd = -1;

    if (cg->map_fd >= 0)
        return TRUE;
    if (!hdCgroupFindProgram(cg, error))
        return FALSE;
    if (cg->map_fd >= 0)
        return TRUE;

    /* Step 1: the map, empty: nothing changes until it has entries. */
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_HASH;
    attr.key_size = sizeof(guint64);
    attr.value_size = sizeof(guint32);
    attr.max_entries = HD_CGROUP_MAP_ENTRIES;
    g_strlcpy(attr.map_name, HD_CGROUP_PROG_NAME, sizeof(attr.map_name));
    if ((map_fd = hdBPF(BPF_MAP_CREATE, &attr)) < 0) {
        hdErrorSetSystem(error, errno, _("cannot create the device map for cgroup '%1$s'"),
                         cg->path);
        return FALSE;
    }

    /* Step 2: the program; step 3: attach it.  The attachment keeps both
     * alive after we close them. */
    if ((prog_fd = hdCgroupLoadProgram(map_fd, error)) < 0)
        return FALSE;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = cg->dir_fd;
    attr.attach_bpf_fd = prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    if (hdBPF(BPF_PROG_ATTACH, &attr) < 0) {
        hdErrorSetSystem(error, errno,
                         _("cannot attach the device program to cgroup '%1$s'"), cg->path);
        return FALSE;
    }
    cg->map_fd = hdFdSteal(&map_fd);
    cg->prog_fd = hdFdSteal(&prog_fd);
    return TRUE;
}


static gboolean
hdCgroupV2Set(hdCgroup *cg, unsigned int major, unsigned int minor, guint32 access,
              GError **error)
{
    guint64 key = ((guint64)major << 32) | minor;
    union bpf_attr attr;

    if (!hdCgroupEnsureProgram(cg, error))
        return FALSE;
    memset(&attr, 0, sizeof(attr));
    attr.map_fd = cg->map_fd;
    attr.key = (guint64)(guintptr)&key;
    attr.value = (guint64)(guintptr)&access;
    attr.flags = BPF_ANY;
    if (hdBPF(BPF_MAP_UPDATE_ELEM, &attr) < 0) {
        hdErrorSetSystem(error, errno,
                         _("cannot set access to device %1$u:%2$u in cgroup '%3$s'"),
                         major, minor, cg->path);
        return FALSE;
    }
    return TRUE;
}


gboolean
hdCgroupAllowDevice(hdCgroup *cg, unsigned int major, unsigned int minor, GError **error)
{
    if (cg->mode == HD_CGROUP_V1)
        return hdCgroupV1Write(cg, "devices.allow", major, minor, error);
    return hdCgroupV2Set(cg, major, minor, BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE, error);
}


gboolean
hdCgroupDenyDevice(hdCgroup *cg, unsigned int major, unsigned int minor, GError **error)
{
    if (cg->mode == HD_CGROUP_V1)
        return hdCgroupV1Write(cg, "devices.deny", major, minor, error);
    /* An explicit 0, not a deleted entry: without an entry the program
     * would leave the device to whatever else allows it. */
    return hdCgroupV2Set(cg, major, minor, 0, error);
}


gboolean
hdCgroupRemoveProgram(hdCgroup *cg, GError **error)
{
    union bpf_attr attr;

    if (cg->mode == HD_CGROUP_V1)
        return TRUE;
    if (cg->prog_fd < 0 && !hdCgroupFindProgram(cg, error))
        return FALSE;
    if (cg->prog_fd < 0)
        return TRUE;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = cg->dir_fd;
    attr.attach_bpf_fd = cg->prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    if (hdBPF(BPF_PROG_DETACH, &attr) < 0 && errno != ENOENT) {
        hdErrorSetSystem(error, errno,
                         _("cannot detach the device program from cgroup '%1$s'"), cg->path);
        return FALSE;
    }
    hdFdClear(&cg->prog_fd);
    hdFdClear(&cg->map_fd);
    return TRUE;
}


gboolean
hdCgroupHasProgram(hdCgroup *cg)
{
    g_autoptr(hdCgroup) fresh = NULL;
    g_autoptr(GError) local = NULL;

    if (cg->mode == HD_CGROUP_V1)
        return FALSE;
    /* Ask the kernel, not our cached fds. */
    if (!(fresh = hdCgroupOpen(cg->path, &local)) || !hdCgroupFindProgram(fresh, &local))
        return FALSE;
    return fresh->prog_fd >= 0;
}
