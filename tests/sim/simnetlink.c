/*
 * simnetlink.c: the simulated host's rtnetlink (docs/simhost.rst,
 * "Network interfaces")
 *
 * The kernel side of NETLINK_ROUTE for what hostdev uses: RTM_GETLINK of
 * one interface (by index or name) or of all of them (a dump), with the
 * VF list when RTEXT_FILTER_VF is asked for, and RTM_SETLINK (or
 * RTM_NEWLINK of an existing interface) with IFLA_VFINFO_LIST setting a
 * VF's MAC and VLAN, in the order and with the checks of the kernel's
 * do_setvfinfo() and ixgbe.  Messages are the kernel's, built from the
 * uapi headers, not with libnl: the client under test (hostdev's libnl
 * code) must not be checked against itself.
 *
 * The transport: a SOCK_SEQPACKET UNIX socket, one packet per netlink
 * datagram; simnl-shim.so turns a client's AF_NETLINK socket into a
 * connection to it.  One thread per connection; the peer's credentials
 * (SO_PEERCRED) stand for the sender's: changing a link needs uid 0
 * (CAP_NET_ADMIN), reading it does not.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <glib-unix.h>

#include "simnetlink.h"

/* The largest request read; the kernel's default socket buffer is bigger,
 * but no request of hostdev's comes near. */
#define SIM_NL_MAX_REQUEST 65536

/* A dump or a request the handler answered itself: no ack. */
#define SIM_NL_NO_ACK 1

struct _simNetlink {
    simModel *model;
    char *path;
    gboolean bound;             /* path is our socket */
    int listen_fd;
    int wake[2];                /* stops the accept loop */
    GThread *thread;
    GMutex lock;
    GCond cond;
    GHashTable *conns;          /* simNlConn set, guarded by lock */
};

typedef struct {
    simNetlink *nl;
    int fd;
    pid_t pid;
    uid_t uid;
} simNlConn;


/* ---- Building messages --------------------------------------------------- */

static gsize
simNlMsgStart(GByteArray *out, guint16 type, guint16 flags, const struct nlmsghdr *req)
{
    struct nlmsghdr hdr = {
        .nlmsg_type = type, .nlmsg_flags = flags,
        .nlmsg_seq = req->nlmsg_seq, .nlmsg_pid = req->nlmsg_pid,
    };
    gsize off = out->len;

    g_byte_array_append(out, (const guint8 *) &hdr, sizeof(hdr));
    return off;
}


static void
simNlPad(GByteArray *out)
{
    static const guint8 zero[NLMSG_ALIGNTO];

    g_byte_array_append(out, zero, NLMSG_ALIGN(out->len) - out->len);
}


static void
simNlMsgEnd(GByteArray *out, gsize off)
{
    simNlPad(out);
    ((struct nlmsghdr *) (out->data + off))->nlmsg_len = out->len - off;
}


static void
simNlPut(GByteArray *out, guint16 type, const void *data, gsize len)
{
    struct rtattr rta = { .rta_len = RTA_LENGTH(len), .rta_type = type };

    g_byte_array_append(out, (const guint8 *) &rta, sizeof(rta));
    g_byte_array_append(out, data, len);
    simNlPad(out);
}


static void
simNlPutU32(GByteArray *out, guint16 type, guint32 value)
{
    simNlPut(out, type, &value, sizeof(value));
}


static void
simNlPutU8(GByteArray *out, guint16 type, guint8 value)
{
    simNlPut(out, type, &value, sizeof(value));
}


static gsize
simNlNestStart(GByteArray *out, guint16 type)
{
    gsize off = out->len;

    simNlPut(out, type, NULL, 0);
    return off;
}


static void
simNlNestEnd(GByteArray *out, gsize off)
{
    ((struct rtattr *) (out->data + off))->rta_len = out->len - off;
}


/* ---- Parsing --------------------------------------------------------------- */

/* nla_type(): without the NLA_F_NESTED flag libnl sets on nests. */
static guint
simNlType(const struct rtattr *rta)
{
    return rta->rta_type & NLA_TYPE_MASK;
}


/* The attributes of @rta (@len bytes) by type, the last of each kept, as
 * the kernel's (deprecated, lenient) parser does: what does not fit is
 * left over and ignored. */
static void
simNlParse(const struct rtattr **tb, guint max, const struct rtattr *rta, int len)
{
    memset(tb, 0, sizeof(*tb) * (max + 1));
    for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
        if (simNlType(rta) <= max)
            tb[simNlType(rta)] = rta;
    }
}


static gboolean
simNlHasLen(const struct rtattr *rta, gsize len)
{
    return !rta || RTA_PAYLOAD(rta) >= len;
}


/* ---- RTM_GETLINK ----------------------------------------------------------- */

static void
simNlPutVF(GByteArray *out, const simDevice *vf_dev, guint index)
{
    struct ifla_vf_mac mac = { .vf = index };
    struct ifla_vf_broadcast broadcast;
    struct ifla_vf_vlan vlan = { .vf = index, .vlan = vf_dev->vf_vlan, .qos = vf_dev->vf_qos };
    struct ifla_vf_vlan_info info = {
        .vf = index, .vlan = vf_dev->vf_vlan, .qos = vf_dev->vf_qos,
        .vlan_proto = htons(ETH_P_8021Q),
    };
    struct ifla_vf_tx_rate tx_rate = { .vf = index };
    struct ifla_vf_rate rate = { .vf = index };
    struct ifla_vf_spoofchk spoofchk = { .vf = index, .setting = 1 };
    struct ifla_vf_link_state link_state = { .vf = index, .link_state = IFLA_VF_LINK_STATE_AUTO };
    struct ifla_vf_rss_query_en rss = { .vf = index };
    struct ifla_vf_trust trust = { .vf = index };
    gsize info_off = simNlNestStart(out, IFLA_VF_INFO);
    gsize list_off;

    /* What rtnl_fill_vfinfo() sends, statistics aside. */
    memcpy(mac.mac, vf_dev->vf_mac, SIM_MAC_LEN);
    memset(broadcast.broadcast, 0, sizeof(broadcast.broadcast));
    memset(broadcast.broadcast, 0xff, ETH_ALEN);
    simNlPut(out, IFLA_VF_MAC, &mac, sizeof(mac));
    simNlPut(out, IFLA_VF_BROADCAST, &broadcast, sizeof(broadcast));
    simNlPut(out, IFLA_VF_VLAN, &vlan, sizeof(vlan));
    simNlPut(out, IFLA_VF_RATE, &rate, sizeof(rate));
    simNlPut(out, IFLA_VF_TX_RATE, &tx_rate, sizeof(tx_rate));
    simNlPut(out, IFLA_VF_SPOOFCHK, &spoofchk, sizeof(spoofchk));
    simNlPut(out, IFLA_VF_LINK_STATE, &link_state, sizeof(link_state));
    simNlPut(out, IFLA_VF_RSS_QUERY_EN, &rss, sizeof(rss));
    simNlPut(out, IFLA_VF_TRUST, &trust, sizeof(trust));
    list_off = simNlNestStart(out, IFLA_VF_VLAN_LIST);
    simNlPut(out, IFLA_VF_VLAN_INFO, &info, sizeof(info));
    simNlNestEnd(out, list_off);
    simNlNestEnd(out, info_off);
}


/* One RTM_NEWLINK describing @dev, as rtnl_fill_ifinfo() does. */
static void
simNlPutLink(GByteArray *out, const simDevice *dev, guint32 ext_mask, guint16 flags,
             const struct nlmsghdr *req)
{
    struct ifinfomsg ifi = {
        .ifi_family = AF_UNSPEC, .ifi_type = ARPHRD_ETHER, .ifi_index = dev->ifindex,
        .ifi_flags = IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST | IFF_LOWER_UP,
    };
    static const guint8 broadcast[SIM_MAC_LEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    gsize off = simNlMsgStart(out, RTM_NEWLINK, flags, req);
    guint8 mac[SIM_MAC_LEN];
    guint i;

    g_byte_array_append(out, (const guint8 *) &ifi, sizeof(ifi));
    simNlPut(out, IFLA_IFNAME, dev->netdev, strlen(dev->netdev) + 1);
    simNlPutU32(out, IFLA_TXQLEN, 1000);
    simNlPutU8(out, IFLA_OPERSTATE, IF_OPER_UP);
    simNlPutU8(out, IFLA_LINKMODE, 0);
    simNlPutU32(out, IFLA_MTU, 1500);
    simNlPutU32(out, IFLA_GROUP, 0);
    simNetdevAddress(dev, mac);
    simNlPut(out, IFLA_ADDRESS, mac, SIM_MAC_LEN);
    simNlPut(out, IFLA_BROADCAST, broadcast, SIM_MAC_LEN);
    if ((ext_mask & RTEXT_FILTER_VF) && dev->virtfns->len > 0) {
        gsize list;

        simNlPutU32(out, IFLA_NUM_VF, dev->virtfns->len);
        list = simNlNestStart(out, IFLA_VFINFO_LIST);
        for (i = 0; i < dev->virtfns->len; i++)
            simNlPutVF(out, g_ptr_array_index(dev->virtfns, i), i);
        simNlNestEnd(out, list);
    }
    simNlMsgEnd(out, off);
}


/* The interface a request names: by index if it gives one, else by name. */
static int
simNlLookup(simModel *model, const struct ifinfomsg *ifi, const struct rtattr **tb,
            simDevice **dev)
{
    char name[IFNAMSIZ];

    if (ifi->ifi_index > 0) {
        *dev = simModelFindNetdev(model, NULL, ifi->ifi_index);
    } else if (tb[IFLA_IFNAME]) {
        if (RTA_PAYLOAD(tb[IFLA_IFNAME]) == 0 || RTA_PAYLOAD(tb[IFLA_IFNAME]) > IFNAMSIZ)
            return -EINVAL;
        memset(name, 0, sizeof(name));
        memcpy(name, RTA_DATA(tb[IFLA_IFNAME]), RTA_PAYLOAD(tb[IFLA_IFNAME]));
        name[IFNAMSIZ - 1] = '\0';
        *dev = simModelFindNetdev(model, name, 0);
    } else {
        return -EINVAL;
    }
    return *dev ? 0 : -ENODEV;
}


static int
simNlGetLink(simNlConn *conn, const struct nlmsghdr *nlh, const struct ifinfomsg *ifi,
             const struct rtattr **tb, GByteArray *out)
{
    guint32 ext_mask = 0;
    simDevice *dev = NULL;
    int ret;
    guint i;

    if (!simNlHasLen(tb[IFLA_EXT_MASK], sizeof(guint32)))
        return -EINVAL;
    if (tb[IFLA_EXT_MASK])
        memcpy(&ext_mask, RTA_DATA(tb[IFLA_EXT_MASK]), sizeof(ext_mask));

    simModelLock(conn->nl->model);
    if (nlh->nlmsg_flags & NLM_F_DUMP) {
        g_autoptr(GPtrArray) netdevs = simModelNetdevs(conn->nl->model);

        for (i = 0; i < netdevs->len; i++)
            simNlPutLink(out, g_ptr_array_index(netdevs, i), ext_mask, NLM_F_MULTI, nlh);
        ret = SIM_NL_NO_ACK;
    } else if ((ret = simNlLookup(conn->nl->model, ifi, tb, &dev)) == 0) {
        simNlPutLink(out, dev, ext_mask, 0, nlh);
    }
    simModelUnlock(conn->nl->model);
    if (ret == SIM_NL_NO_ACK) {
        gsize off = simNlMsgStart(out, NLMSG_DONE, NLM_F_MULTI, nlh);
        int done = 0;

        g_byte_array_append(out, (const guint8 *) &done, sizeof(done));
        simNlMsgEnd(out, off);
    }
    return ret;
}


/* ---- RTM_SETLINK ------------------------------------------------------------ */

/* One IFLA_VF_INFO, as do_setvfinfo() applies it: the MAC, then the VLAN;
 * a step that fails leaves the ones before it done. */
static int
simNlSetVF(simNlConn *conn, simDevice *pf, const struct rtattr *info)
{
    const struct rtattr *vf[IFLA_VF_MAX + 1];
    static const guint16 unmodelled[] = {
        IFLA_VF_TX_RATE, IFLA_VF_RATE, IFLA_VF_SPOOFCHK, IFLA_VF_LINK_STATE,
        IFLA_VF_RSS_QUERY_EN, IFLA_VF_TRUST, IFLA_VF_IB_NODE_GUID, IFLA_VF_IB_PORT_GUID,
    };
    simModel *model = conn->nl->model;
    int ret;
    guint i;

    simNlParse(vf, IFLA_VF_MAX, RTA_DATA(info), RTA_PAYLOAD(info));
    if (!simNlHasLen(vf[IFLA_VF_MAC], sizeof(struct ifla_vf_mac)) ||
        !simNlHasLen(vf[IFLA_VF_VLAN], sizeof(struct ifla_vf_vlan)) ||
        vf[IFLA_VF_BROADCAST])
        return -EINVAL;
    if (vf[IFLA_VF_MAC]) {
        const struct ifla_vf_mac *ivm = RTA_DATA(vf[IFLA_VF_MAC]);

        if (ivm->vf >= G_MAXINT)
            return -EINVAL;
        if ((ret = simModelSetVFMac(model, pf, ivm->vf, ivm->mac, conn->pid)) < 0)
            return ret;
    }
    if (vf[IFLA_VF_VLAN]) {
        const struct ifla_vf_vlan *ivv = RTA_DATA(vf[IFLA_VF_VLAN]);

        if (ivv->vf >= G_MAXINT)
            return -EINVAL;
        if ((ret = simModelSetVFVlan(model, pf, ivv->vf, ivv->vlan, ivv->qos, ETH_P_8021Q,
                                     conn->pid)) < 0)
            return ret;
    }
    if (vf[IFLA_VF_VLAN_LIST]) {
        const struct rtattr *attr = RTA_DATA(vf[IFLA_VF_VLAN_LIST]);
        int rem = RTA_PAYLOAD(vf[IFLA_VF_VLAN_LIST]);
        const struct ifla_vf_vlan_info *ivvl = NULL;

        /* Drivers take one VLAN (MAX_VLAN_LIST_LEN). */
        for (; RTA_OK(attr, rem); attr = RTA_NEXT(attr, rem)) {
            if (simNlType(attr) != IFLA_VF_VLAN_INFO ||
                RTA_PAYLOAD(attr) < sizeof(struct ifla_vf_vlan_info))
                return -EINVAL;
            if (ivvl)
                return -EOPNOTSUPP;
            ivvl = RTA_DATA(attr);
        }
        if (!ivvl || ivvl->vf >= G_MAXINT)
            return -EINVAL;
        if ((ret = simModelSetVFVlan(model, pf, ivvl->vf, ivvl->vlan, ivvl->qos,
                                     ntohs(ivvl->vlan_proto), conn->pid)) < 0)
            return ret;
    }
    for (i = 0; i < G_N_ELEMENTS(unmodelled); i++) {
        if (vf[unmodelled[i]]) {
            g_printerr("hostdev-simhost: rtnetlink: VF attribute %u is not modelled\n",
                       unmodelled[i]);
            return -EOPNOTSUPP;
        }
    }
    return 0;
}


static int
simNlSetLink(simNlConn *conn, const struct nlmsghdr *nlh, const struct ifinfomsg *ifi,
             const struct rtattr **tb)
{
    simModel *model = conn->nl->model;
    simDevice *dev = NULL;
    int ret;
    guint type;

    /* rtnetlink_rcv_msg(): changing a link needs CAP_NET_ADMIN. */
    if (conn->uid != 0)
        return -EPERM;
    simModelLock(model);
    ret = simNlLookup(model, ifi, tb, &dev);
    if (nlh->nlmsg_type == RTM_NEWLINK) {
        /* __rtnl_newlink(): only links of a kind can be created. */
        if (ret == -ENODEV && (nlh->nlmsg_flags & NLM_F_CREATE))
            ret = -EOPNOTSUPP;
        else if (ret == 0 && (nlh->nlmsg_flags & NLM_F_EXCL))
            ret = -EEXIST;
        else if (ret == 0 && (nlh->nlmsg_flags & NLM_F_REPLACE))
            ret = -EOPNOTSUPP;
    }
    /* What else do_setlink() could change is not modelled (libnl sends an
     * empty IFLA_AF_SPEC with every change). */
    for (type = 0; ret == 0 && type <= IFLA_MAX; type++) {
        if (tb[type] && type != IFLA_VFINFO_LIST && type != IFLA_IFNAME &&
            type != IFLA_EXT_MASK && !(type == IFLA_AF_SPEC && RTA_PAYLOAD(tb[type]) == 0)) {
            g_printerr("hostdev-simhost: rtnetlink: link attribute %u is not modelled\n", type);
            ret = -EOPNOTSUPP;
        }
    }
    if (ret == 0 && (ifi->ifi_change || (tb[IFLA_IFNAME] && ifi->ifi_index > 0 &&
                                         strncmp(RTA_DATA(tb[IFLA_IFNAME]), dev->netdev,
                                                 RTA_PAYLOAD(tb[IFLA_IFNAME])) != 0)))
        ret = -EOPNOTSUPP;
    if (ret == 0 && tb[IFLA_VFINFO_LIST]) {
        const struct rtattr *attr = RTA_DATA(tb[IFLA_VFINFO_LIST]);
        int rem = RTA_PAYLOAD(tb[IFLA_VFINFO_LIST]);

        for (; ret == 0 && RTA_OK(attr, rem); attr = RTA_NEXT(attr, rem)) {
            if (simNlType(attr) != IFLA_VF_INFO)
                ret = -EINVAL;
            else
                ret = simNlSetVF(conn, dev, attr);
        }
    }
    simModelUnlock(model);
    return ret;
}


/* ---- Requests ---------------------------------------------------------------- */

static void
simNlAck(GByteArray *out, const struct nlmsghdr *nlh, int error)
{
    gsize off = simNlMsgStart(out, NLMSG_ERROR, error ? 0 : NLM_F_CAPPED, nlh);

    g_byte_array_append(out, (const guint8 *) &error, sizeof(error));
    /* netlink_ack(): the request's header, and its payload with an error. */
    g_byte_array_append(out, (const guint8 *) nlh,
                        error ? nlh->nlmsg_len : sizeof(struct nlmsghdr));
    simNlMsgEnd(out, off);
}


static int
simNlDispatch(simNlConn *conn, const struct nlmsghdr *nlh, GByteArray *out)
{
    const struct rtattr *tb[IFLA_MAX + 1];
    const struct ifinfomsg *ifi = NLMSG_DATA(nlh);

    if (nlh->nlmsg_type != RTM_GETLINK && nlh->nlmsg_type != RTM_SETLINK &&
        nlh->nlmsg_type != RTM_NEWLINK)
        return -EOPNOTSUPP;
    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(*ifi)))
        return -EINVAL;
    simNlParse(tb, IFLA_MAX, IFLA_RTA(ifi), IFLA_PAYLOAD(nlh));
    if (nlh->nlmsg_type == RTM_GETLINK)
        return simNlGetLink(conn, nlh, ifi, tb, out);
    return simNlSetLink(conn, nlh, ifi, tb);
}


/* Every message of one datagram, as netlink_rcv_skb() goes through them:
 * each reply, then an ack when asked for or on error. */
static void
simNlReceive(simNlConn *conn, const guint8 *buf, gsize len, GPtrArray *replies)
{
    while (len >= NLMSG_HDRLEN) {
        const struct nlmsghdr *nlh = (const struct nlmsghdr *) buf;
        GByteArray *out = g_byte_array_new();
        gsize step;
        int ret = 0;

        if (nlh->nlmsg_len < NLMSG_HDRLEN || nlh->nlmsg_len > len) {
            g_byte_array_unref(out);
            return;
        }
        /* Only requests are handled; control messages are skipped. */
        if ((nlh->nlmsg_flags & NLM_F_REQUEST) && nlh->nlmsg_type >= NLMSG_MIN_TYPE)
            ret = simNlDispatch(conn, nlh, out);
        if (out->len > 0)
            g_ptr_array_add(replies, g_byte_array_ref(out));
        g_byte_array_unref(out);
        if (ret < 0 || (ret == 0 && (nlh->nlmsg_flags & NLM_F_ACK))) {
            GByteArray *ack = g_byte_array_new();

            simNlAck(ack, nlh, ret);
            g_ptr_array_add(replies, ack);
        }
        step = NLMSG_ALIGN(nlh->nlmsg_len);
        if (step > len)
            return;
        buf += step;
        len -= step;
    }
}


static gpointer
simNlConnThread(gpointer opaque)
{
    simNlConn *conn = opaque;
    simNetlink *nl = conn->nl;
    g_autofree guint8 *buf = g_malloc(SIM_NL_MAX_REQUEST);

    for (;;) {
        g_autoptr(GPtrArray) replies =
            g_ptr_array_new_with_free_func((GDestroyNotify) g_byte_array_unref);
        ssize_t n = recv(conn->fd, buf, SIM_NL_MAX_REQUEST, MSG_TRUNC);
        guint i;

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (n > SIM_NL_MAX_REQUEST) {
            g_printerr("hostdev-simhost: rtnetlink: a request of %zd bytes dropped\n", n);
            continue;
        }
        simNlReceive(conn, buf, n, replies);
        for (i = 0; i < replies->len; i++) {
            GByteArray *reply = g_ptr_array_index(replies, i);

            if (send(conn->fd, reply->data, reply->len, MSG_NOSIGNAL) < 0)
                break;
        }
    }

    g_mutex_lock(&nl->lock);
    g_hash_table_remove(nl->conns, conn);
    g_cond_broadcast(&nl->cond);
    g_mutex_unlock(&nl->lock);
    close(conn->fd);
    g_free(conn);
    return NULL;
}


static gpointer
simNlAcceptThread(gpointer opaque)
{
    simNetlink *nl = opaque;
    struct pollfd pfd[2] = {
        { .fd = nl->listen_fd, .events = POLLIN }, { .fd = nl->wake[0], .events = POLLIN },
    };

    while (poll(pfd, 2, -1) >= 0 || errno == EINTR) {
        struct ucred cred;
        socklen_t cred_len = sizeof(cred);
        simNlConn *conn;
        int fd;

        if (pfd[1].revents)
            break;
        if (!(pfd[0].revents & POLLIN))
            continue;
        if ((fd = accept4(nl->listen_fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            continue;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) < 0) {
            close(fd);
            continue;
        }
        conn = g_new0(simNlConn, 1);
        conn->nl = nl;
        conn->fd = fd;
        conn->pid = cred.pid;
        conn->uid = cred.uid;
        g_mutex_lock(&nl->lock);
        g_hash_table_add(nl->conns, conn);
        g_mutex_unlock(&nl->lock);
        g_thread_unref(g_thread_new("sim-rtnl", simNlConnThread, conn));
    }
    return NULL;
}


simNetlink *
simNetlinkStart(simModel *model, const char *path, GError **error)
{
    g_autoptr(simNetlink) nl = g_new0(simNetlink, 1);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct stat sb;
    sigset_t all, old;

    nl->model = model;
    nl->path = g_strdup(path);
    nl->listen_fd = nl->wake[0] = nl->wake[1] = -1;
    g_mutex_init(&nl->lock);
    g_cond_init(&nl->cond);
    nl->conns = g_hash_table_new(NULL, NULL);
    if (strlen(path) >= sizeof(sun.sun_path)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG,
                    "rtnetlink socket path '%s' is too long", path);
        return NULL;
    }
    strcpy(sun.sun_path, path);
    /* A socket a previous run left behind is replaced. */
    if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
        unlink(path);
    if ((nl->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0 ||
        bind(nl->listen_fd, (struct sockaddr *) &sun, sizeof(sun)) < 0 ||
        !(nl->bound = TRUE) || chmod(path, 0666) < 0 || listen(nl->listen_fd, 64) < 0 ||
        !g_unix_open_pipe(nl->wake, FD_CLOEXEC, NULL)) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "cannot listen for rtnetlink on '%s': %s", path, g_strerror(errno));
        return NULL;
    }
    /* Its threads (and the connections' it starts) take no signal: the
     * daemon's signal thread does (simhost.c). */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    nl->thread = g_thread_new("sim-rtnl-accept", simNlAcceptThread, nl);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return g_steal_pointer(&nl);
}


void
simNetlinkStop(simNetlink *nl)
{
    GHashTableIter iter;
    gpointer key;

    if (!nl)
        return;
    if (nl->thread) {
        if (write(nl->wake[1], "x", 1) < 0)
            g_printerr("hostdev-simhost: cannot stop rtnetlink: %s\n", g_strerror(errno));
        g_thread_join(nl->thread);
    }
    /* Connections end when their peer or we hang up. */
    g_mutex_lock(&nl->lock);
    g_hash_table_iter_init(&iter, nl->conns);
    while (g_hash_table_iter_next(&iter, &key, NULL))
        shutdown(((simNlConn *) key)->fd, SHUT_RDWR);
    while (g_hash_table_size(nl->conns) > 0)
        g_cond_wait(&nl->cond, &nl->lock);
    g_mutex_unlock(&nl->lock);
    if (nl->listen_fd >= 0)
        close(nl->listen_fd);
    if (nl->bound)
        unlink(nl->path);
    if (nl->wake[0] >= 0) {
        close(nl->wake[0]);
        close(nl->wake[1]);
    }
    g_hash_table_unref(nl->conns);
    g_mutex_clear(&nl->lock);
    g_cond_clear(&nl->cond);
    g_free(nl->path);
    g_free(nl);
}
