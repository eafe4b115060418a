/*
 * simnl-shim.c: LD_PRELOAD stand-in for the kernel's rtnetlink socket, so
 * that a program on the simulated host talks rtnetlink to it
 * (docs/simhost.rst, "Network interfaces")
 *
 *   HD_SIM_RTNL=PATH   the simulated host's --rtnl-socket; unset: the shim
 *                      does nothing and every call goes to the kernel
 *
 * socket(AF_NETLINK, ..., NETLINK_ROUTE) becomes a SOCK_SEQPACKET
 * connection to PATH, which keeps datagram boundaries as netlink does;
 * bind(), getsockname(), getsockopt() and the receive calls answer with the
 * sockaddr_nl a netlink socket has, so that the program's own netlink code
 * (libnl here) runs unchanged: the messages are the kernel's, built by the
 * simulated host.  Other sockets, other netlink families and every other
 * call are left alone.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/netlink.h>

/* Fds above this are never ours (their socket() fails with EMFILE). */
#define SHIM_MAX_FD 65536
#define SHIM_MAX_MSG 65536

static pthread_mutex_t shimLock = PTHREAD_MUTEX_INITIALIZER;
/* The netlink port of each of our fds, 0 if the fd is not ours. */
static unsigned int shimPorts[SHIM_MAX_FD];
static unsigned int shimNextPort;

int socket(int domain, int type, int protocol);
int close(int fd);
int bind(int fd, const struct sockaddr *addr, socklen_t len);
int getsockname(int fd, struct sockaddr *addr, socklen_t *len);
int getsockopt(int fd, int level, int name, void *value, socklen_t *len);
int setsockopt(int fd, int level, int name, const void *value, socklen_t len);
ssize_t sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t sendto(int fd, const void *buf, size_t len, int flags,
               const struct sockaddr *addr, socklen_t addr_len);
ssize_t send(int fd, const void *buf, size_t len, int flags);
ssize_t recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                 socklen_t *addr_len);
ssize_t recv(int fd, void *buf, size_t len, int flags);


#define SHIM_REAL(ret, name, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) \
        real = (ret (*)(__VA_ARGS__)) dlsym(RTLD_NEXT, name)


static unsigned int
shimPort(int fd)
{
    unsigned int port = 0;

    if (fd >= 0 && fd < SHIM_MAX_FD) {
        pthread_mutex_lock(&shimLock);
        port = shimPorts[fd];
        pthread_mutex_unlock(&shimLock);
    }
    return port;
}


static void
shimSetPort(int fd, unsigned int port)
{
    pthread_mutex_lock(&shimLock);
    shimPorts[fd] = port;
    pthread_mutex_unlock(&shimLock);
}


/* What the kernel says a netlink peer is: the kernel itself, port 0. */
static void
shimKernelAddress(struct sockaddr *addr, socklen_t *len)
{
    struct sockaddr_nl nla = { .nl_family = AF_NETLINK };

    if (!addr || !len)
        return;
    memcpy(addr, &nla, *len < sizeof(nla) ? *len : sizeof(nla));
    *len = sizeof(nla);
}


int
socket(int domain, int type, int protocol)
{
    SHIM_REAL(int, "socket", int, int, int);
    const char *path = getenv("HD_SIM_RTNL");
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int fd;
    int errsv;

    if (domain != AF_NETLINK || protocol != NETLINK_ROUTE || !path || !*path) {
        /* Its number is a real socket's now, whatever was closed behind
         * our back (close_range()) before. */
        if ((fd = real(domain, type, protocol)) >= 0 && fd < SHIM_MAX_FD && shimPort(fd))
            shimSetPort(fd, 0);
        return fd;
    }
    if (strlen(path) >= sizeof(sun.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    fd = real(AF_UNIX, SOCK_SEQPACKET | (type & (SOCK_CLOEXEC | SOCK_NONBLOCK)), 0);
    if (fd < 0)
        return -1;
    if (fd >= SHIM_MAX_FD || connect(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
        errsv = fd >= SHIM_MAX_FD ? EMFILE : errno;
        close(fd);
        errno = errsv;
        return -1;
    }
    /* Unbound: the first bind() (or send) gets a port, as the kernel's
     * autobind does; the kernel gives the process's pid to the first. */
    shimSetPort(fd, (unsigned int) -1);
    return fd;
}


int
close(int fd)
{
    SHIM_REAL(int, "close", int);

    if (shimPort(fd))
        shimSetPort(fd, 0);
    return real(fd);
}


/* The port of @fd, bound now if it is not yet. */
static unsigned int
shimBoundPort(int fd, unsigned int want)
{
    unsigned int port;

    pthread_mutex_lock(&shimLock);
    if (shimPorts[fd] == (unsigned int) -1) {
        if (!want)
            want = shimNextPort++ == 0 ? (unsigned int) getpid() :
                   0x80000000u | (unsigned int) shimNextPort;
        shimPorts[fd] = want;
    }
    port = shimPorts[fd];
    pthread_mutex_unlock(&shimLock);
    return port;
}


int
bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    SHIM_REAL(int, "bind", int, const struct sockaddr *, socklen_t);
    const struct sockaddr_nl *nla = (const struct sockaddr_nl *) addr;

    if (!shimPort(fd))
        return real(fd, addr, len);
    if (len < sizeof(*nla) || nla->nl_family != AF_NETLINK) {
        errno = EINVAL;
        return -1;
    }
    if (shimBoundPort(fd, nla->nl_pid) != nla->nl_pid && nla->nl_pid) {
        errno = EINVAL;     /* already bound elsewhere */
        return -1;
    }
    return 0;
}


int
getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    SHIM_REAL(int, "getsockname", int, struct sockaddr *, socklen_t *);
    struct sockaddr_nl nla = { .nl_family = AF_NETLINK };

    if (!shimPort(fd))
        return real(fd, addr, len);
    nla.nl_pid = shimBoundPort(fd, 0);
    memcpy(addr, &nla, *len < sizeof(nla) ? *len : sizeof(nla));
    *len = sizeof(nla);
    return 0;
}


int
getsockopt(int fd, int level, int name, void *value, socklen_t *len)
{
    SHIM_REAL(int, "getsockopt", int, int, int, void *, socklen_t *);
    int answer;

    if (!shimPort(fd) || level != SOL_SOCKET ||
        (name != SO_DOMAIN && name != SO_PROTOCOL && name != SO_TYPE) || *len < sizeof(int))
        return real(fd, level, name, value, len);
    answer = name == SO_DOMAIN ? AF_NETLINK : name == SO_PROTOCOL ? NETLINK_ROUTE : SOCK_RAW;
    memcpy(value, &answer, sizeof(answer));
    *len = sizeof(answer);
    return 0;
}


int
setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    SHIM_REAL(int, "setsockopt", int, int, int, const void *, socklen_t);

    /* Netlink's own options (extended acks, strict checking...) change
     * nothing the simulated host does. */
    if (shimPort(fd) && level == SOL_NETLINK)
        return 0;
    return real(fd, level, name, value, len);
}


ssize_t
sendmsg(int fd, const struct msghdr *msg, int flags)
{
    SHIM_REAL(ssize_t, "sendmsg", int, const struct msghdr *, int);
    struct msghdr flat = { 0 };
    struct iovec iov;
    char *buf;
    size_t len = 0;
    size_t i;
    ssize_t ret;

    if (!shimPort(fd))
        return real(fd, msg, flags);
    /* One datagram, whatever the iovec: the destination is the kernel. */
    shimBoundPort(fd, 0);
    for (i = 0; i < msg->msg_iovlen; i++)
        len += msg->msg_iov[i].iov_len;
    if (len > SHIM_MAX_MSG) {
        errno = EMSGSIZE;
        return -1;
    }
    if (!(buf = malloc(len ? len : 1)))
        return -1;
    for (len = 0, i = 0; i < msg->msg_iovlen; i++) {
        memcpy(buf + len, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
        len += msg->msg_iov[i].iov_len;
    }
    iov.iov_base = buf;
    iov.iov_len = len;
    flat.msg_iov = &iov;
    flat.msg_iovlen = 1;
    ret = real(fd, &flat, flags | MSG_NOSIGNAL);
    free(buf);
    return ret;
}


ssize_t
sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
       socklen_t addr_len)
{
    SHIM_REAL(ssize_t, "sendto", int, const void *, size_t, int, const struct sockaddr *,
              socklen_t);
    struct iovec iov = { .iov_base = (void *) buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

    if (!shimPort(fd))
        return real(fd, buf, len, flags, addr, addr_len);
    return sendmsg(fd, &msg, flags);
}


ssize_t
send(int fd, const void *buf, size_t len, int flags)
{
    return sendto(fd, buf, len, flags, NULL, 0);
}


ssize_t
recvmsg(int fd, struct msghdr *msg, int flags)
{
    SHIM_REAL(ssize_t, "recvmsg", int, struct msghdr *, int);
    struct msghdr mine;
    ssize_t ret;

    if (!shimPort(fd))
        return real(fd, msg, flags);
    /* The data and flags (MSG_PEEK, MSG_TRUNC) as they come; the sender is
     * the kernel and sends no control data. */
    mine = *msg;
    mine.msg_name = NULL;
    mine.msg_namelen = 0;
    mine.msg_control = NULL;
    mine.msg_controllen = 0;
    if ((ret = real(fd, &mine, flags)) < 0)
        return ret;
    msg->msg_flags = mine.msg_flags;
    msg->msg_controllen = 0;
    shimKernelAddress(msg->msg_name, &msg->msg_namelen);
    return ret;
}


ssize_t
recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *addr_len)
{
    SHIM_REAL(ssize_t, "recvfrom", int, void *, size_t, int, struct sockaddr *, socklen_t *);
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t ret;

    if (!shimPort(fd))
        return real(fd, buf, len, flags, addr, addr_len);
    if ((ret = recvmsg(fd, &msg, flags)) >= 0)
        shimKernelAddress(addr, addr_len);
    return ret;
}


ssize_t
recv(int fd, void *buf, size_t len, int flags)
{
    return recvfrom(fd, buf, len, flags, NULL, NULL);
}
