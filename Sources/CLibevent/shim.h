#ifndef SWITCHYARD_CLIBEVENT_SHIM_H
#define SWITCHYARD_CLIBEVENT_SHIM_H
// Only event2/*.h here: adding system headers such as <signal.h> broke the module build
// (see shared/NOTES-libevent-swift.md). <netdb.h> and <sys/socket.h> come in through util.h.
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/listener.h>
#include <event2/util.h>

// getsockname's `__SOCKADDR_ARG` transparent union does not import into Swift.
// Returns the bound port of a socket (IPv4 or IPv6), or -1.
static inline int switchyard_bound_port(evutil_socket_t fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

// TCP_NODELAY lives in <netinet/tcp.h>, which the shim does not include; its value is 1 on Linux.
static inline int switchyard_set_nodelay(evutil_socket_t fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
}

// Half-closes a socket (FIN after the queued output) so a closing server can linger and read
// what the client still sends instead of resetting the connection. Here for SHUT_WR's enum.
static inline int switchyard_shutdown_write(evutil_socket_t fd) {
    return shutdown(fd, SHUT_WR);
}

// Writes the peer's IP address as text into `out`; returns 1 when it is a loopback address
// (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104), 0 otherwise, -1 for an unknown family.
// Done in C because the sockaddr casts and in6_addr's union are awkward from Swift.
static inline int switchyard_peer_text(const struct sockaddr *sa, char *out, size_t outlen) {
    if (sa == NULL || outlen == 0) return -1;
    out[0] = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &sin->sin_addr, out, outlen);
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127 ? 1 : 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, out, outlen);
        const unsigned char *b = sin6->sin6_addr.s6_addr;
        int zeros10 = 1;
        for (int i = 0; i < 10; i++) if (b[i] != 0) zeros10 = 0;
        if (zeros10 && b[10] == 0 && b[11] == 0 && b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] == 1) return 1;
        if (zeros10 && b[10] == 0xff && b[11] == 0xff && b[12] == 127) return 1;
        return 0;
    }
    return -1;
}

// Fills a sockaddr_storage from an IPv4 or IPv6 literal and a port; returns the sockaddr
// length, or 0 when `host` is not an IP literal. Keeps sockaddr layout out of Swift.
static inline int switchyard_make_sockaddr(const char *host, int port, struct sockaddr_storage *out) {
    __builtin_memset(out, 0, sizeof(*out));
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    if (evutil_inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        return (int)sizeof(struct sockaddr_in);
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    if (evutil_inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        return (int)sizeof(struct sockaddr_in6);
    }
    return 0;
}

// Resolves a host name synchronously (getaddrinfo, first IPv4 or IPv6 result) into `out`;
// returns the sockaddr length or 0. Used once, when an upstream pool is created.
static inline int switchyard_resolve(const char *host, int port, struct sockaddr_storage *out) {
    struct evutil_addrinfo hints, *res = NULL;
    __builtin_memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (evutil_getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL) return 0;
    int len = 0;
    for (struct evutil_addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
            __builtin_memcpy(out, ai->ai_addr, ai->ai_addrlen);
            len = (int)ai->ai_addrlen;
            if (ai->ai_family == AF_INET) ((struct sockaddr_in *)out)->sin_port = htons((unsigned short)port);
            else ((struct sockaddr_in6 *)out)->sin6_port = htons((unsigned short)port);
            break;
        }
    }
    evutil_freeaddrinfo(res);
    return len;
}

// Connection I/O without bufferevents: one recv straight into an evbuffer's spare space, one
// sendmsg from an evbuffer's segments. Done in C for the iovec/msghdr casts and errno.

// Reads once from `fd` into the end of `buffer` (evbuffer_reserve_space, recv or recvmsg,
// evbuffer_commit_space; no FIONREAD, no copy), at most `max_bytes`. Returns the bytes read,
// 0 at end of stream, -1 when nothing is available (EAGAIN, EINTR), or -2 on an error with
// the errno in `*error`.
static inline long switchyard_read_into(struct evbuffer *buffer, evutil_socket_t fd, size_t max_bytes, int *error) {
    struct evbuffer_iovec vec[2];
    int n = evbuffer_reserve_space(buffer, (ev_ssize_t)max_bytes, vec, 2);
    if (n <= 0) {
        *error = ENOMEM;
        return -2;
    }
    ssize_t got;
    if (n == 1) {
        got = recv(fd, vec[0].iov_base, vec[0].iov_len, 0);
    } else {
        struct msghdr msg;
        __builtin_memset(&msg, 0, sizeof(msg));
        msg.msg_iov = (struct iovec *)vec;  // evbuffer_iovec is laid out as struct iovec
        msg.msg_iovlen = (size_t)n;
        got = recvmsg(fd, &msg, 0);
    }
    if (got <= 0) {
        int saved = errno;
        evbuffer_commit_space(buffer, vec, 0);
        if (got == 0) return 0;
        if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR) return -1;
        *error = saved;
        return -2;
    }
    size_t left = (size_t)got;
    int used = 0;
    for (int i = 0; i < n && left > 0; i++) {
        if (vec[i].iov_len > left) vec[i].iov_len = left;
        left -= vec[i].iov_len;
        used = i + 1;
    }
    evbuffer_commit_space(buffer, vec, used);
    return (long)got;
}

// Reads once from `fd` into `scratch` (the caller's, at least `max_bytes` long, reused for every
// read) and appends what arrived to `buffer`, which gets a chain sized to it. For an empty buffer:
// reserving space there would malloc a `max_bytes` chain per message (freed again once the message
// is consumed), where a small message needs a small chain (malloc's fast path). Returns as
// `switchyard_read_into` does.
static inline long switchyard_read_via(struct evbuffer *buffer, evutil_socket_t fd, size_t max_bytes, void *scratch,
                                       int *error) {
    ssize_t got = recv(fd, scratch, max_bytes, 0);
    if (got <= 0) {
        int saved = errno;
        if (got == 0) return 0;
        if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR) return -1;
        *error = saved;
        return -2;
    }
    if (evbuffer_add(buffer, scratch, (size_t)got) != 0) {
        *error = ENOMEM;
        return -2;
    }
    return (long)got;
}

// A per-thread cache of evbuffer chain blocks for libevent's allocator (event_set_mem_functions).
// A message that arrives in an empty evbuffer gets a new chain (`switchyard_read_via`'s
// evbuffer_add), and libevent frees every chain of a buffer drained empty, so each request read
// and each response read cost a malloc and a free of a MIN_BUFFER_SIZE (1024-byte) chain that no
// reuse of the evbuffer can keep. Here a freed block of that size goes to a small per-thread list
// and the next chain takes it back. Every block is still malloc's (the list holds only blocks
// whose malloc_usable_size is the chain size's), so memory that libevent allocated before the
// functions were installed may be freed through them: the order libevent's documentation asks
// for (install before any allocation) is not needed. A thread that ends leaves its list (at most
// SWITCHYARD_CHAIN_CACHE blocks) allocated.
#define SWITCHYARD_CHAIN_BYTES 1024
#define SWITCHYARD_CHAIN_CACHE 16
extern void *malloc(size_t size);
extern void *realloc(void *pointer, size_t size);
extern void free(void *pointer);
extern size_t malloc_usable_size(void *pointer);
// The state lives in functions: Swift's importer emits a header's static functions, not its
// static variables.
struct switchyard_chain_list {
    void *blocks[SWITCHYARD_CHAIN_CACHE];
    int count;
};
static inline struct switchyard_chain_list *switchyard_chain_list(void) {
    static __thread struct switchyard_chain_list list;
    return &list;
}
// malloc_usable_size of a SWITCHYARD_CHAIN_BYTES block; 0 until installed.
static inline size_t *switchyard_chain_usable(void) {
    static size_t usable;
    return &usable;
}

static void *switchyard_chain_malloc(size_t size) {
    struct switchyard_chain_list *list = switchyard_chain_list();
    if (size > SWITCHYARD_CHAIN_BYTES / 2 && size <= *switchyard_chain_usable() && list->count > 0) {
        return list->blocks[--list->count];
    }
    return malloc(size);
}

static void *switchyard_chain_realloc(void *pointer, size_t size) { return realloc(pointer, size); }

static void switchyard_chain_free(void *pointer) {
    struct switchyard_chain_list *list = switchyard_chain_list();
    if (pointer != NULL && list->count < SWITCHYARD_CHAIN_CACHE
        && malloc_usable_size(pointer) == *switchyard_chain_usable()) {
        list->blocks[list->count++] = pointer;
        return;
    }
    free(pointer);
}

// Installs the cache as libevent's allocator (once per process, any thread, any time).
static inline void switchyard_install_chain_cache(void) {
    void *probe = malloc(SWITCHYARD_CHAIN_BYTES);
    *switchyard_chain_usable() = malloc_usable_size(probe);
    free(probe);
    event_set_mem_functions(switchyard_chain_malloc, switchyard_chain_realloc, switchyard_chain_free);
}

// Sends the start of `buffer` (up to 16 segments, one send or sendmsg, MSG_NOSIGNAL so a
// closed peer is an EPIPE error and not a signal) and drains what the kernel took. Returns
// the bytes sent, -1 when the socket takes nothing now (EAGAIN, EINTR), or -2 on an error
// with the errno in `*error`.
static inline long switchyard_write_from(struct evbuffer *buffer, evutil_socket_t fd, int *error) {
    struct evbuffer_iovec vec[16];
    int n = evbuffer_peek(buffer, -1, NULL, vec, 16);
    if (n <= 0) return 0;
    if (n > 16) n = 16;
    ssize_t sent;
    if (n == 1) {
        sent = send(fd, vec[0].iov_base, vec[0].iov_len, MSG_NOSIGNAL);
    } else {
        struct msghdr msg;
        __builtin_memset(&msg, 0, sizeof(msg));
        msg.msg_iov = (struct iovec *)vec;
        msg.msg_iovlen = (size_t)n;
        sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
    }
    if (sent < 0) {
        int saved = errno;
        if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR) return -1;
        *error = saved;
        return -2;
    }
    evbuffer_drain(buffer, (size_t)sent);
    return (long)sent;
}

// One send of `length` bytes (MSG_NOSIGNAL), for a message written whole without an evbuffer.
// Returns the bytes sent, -1 when the socket takes nothing now (EAGAIN, EINTR), or -2 on an
// error with the errno in `*error`.
static inline long switchyard_send(evutil_socket_t fd, const void *bytes, size_t length, int *error) {
    ssize_t sent = send(fd, bytes, length, MSG_NOSIGNAL);
    if (sent < 0) {
        int saved = errno;
        if (saved == EAGAIN || saved == EWOULDBLOCK || saved == EINTR) return -1;
        *error = saved;
        return -2;
    }
    return (long)sent;
}

// Opens a non-blocking, close-on-exec TCP socket with TCP_NODELAY and starts connecting it.
// Returns the socket, with `*in_progress` set while the handshake runs (EINPROGRESS), or -1
// with the errno in `*error`.
static inline evutil_socket_t switchyard_connect(const struct sockaddr *address, int length, int *in_progress,
                                                 int *error) {
    evutil_socket_t fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *error = errno;
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
    *in_progress = 0;
    if (connect(fd, address, (socklen_t)length) == 0) return fd;
    if (errno == EINPROGRESS) {
        *in_progress = 1;
        return fd;
    }
    *error = errno;
    evutil_closesocket(fd);
    return -1;
}

// Whether a listening socket already holds the address: binds a probe without SO_REUSEPORT,
// which fails with EADDRINUSE when another socket listens there, SO_REUSEPORT or not (so a second
// process cannot silently share a port the first one's workers opened with SO_REUSEPORT).
// 0 when the address is free, else the bind's errno.
static inline int switchyard_address_taken(const struct sockaddr *address, int length) {
    evutil_socket_t fd = socket(address->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int result = bind(fd, address, (socklen_t)length) == 0 ? 0 : errno;
    evutil_closesocket(fd);
    return result;
}

// The outcome of a non-blocking connect once the socket is writable: 0 or an errno.
static inline int switchyard_socket_error(evutil_socket_t fd) {
    int value = 0;
    socklen_t length = sizeof(value);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) != 0) return errno;
    return value;
}

// --- The POSIX calls EventHTTP needs, here so that no Swift file of the module imports Glibc:
// the Swift compiler builds several files of one module in one job, and SwiftGlibc and this
// module (whose libevent headers define _GNU_SOURCE) disagree on glibc's fd_set.

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline long long switchyard_monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline unsigned long long switchyard_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static inline int switchyard_errno(void) { return errno; }

static inline const char *switchyard_strerror(int code) { return strerror(code); }

// A non-blocking, close-on-exec pipe; returns 0 or -1 (errno set).
static inline int switchyard_wake_pipe(int fds[2]) {
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return -1;
    return 0;
}

static inline void switchyard_poke(int fd) {
    unsigned char byte = 1;
    (void)!write(fd, &byte, 1);
}

static inline void switchyard_drain_pipe(int fd) {
    unsigned char scratch[64];
    while (read(fd, scratch, sizeof(scratch)) > 0) {}
}

static inline void switchyard_close(int fd) { (void)close(fd); }

static inline pthread_mutex_t *switchyard_mutex_new(void) {
    pthread_mutex_t *m = (pthread_mutex_t *)malloc(sizeof(pthread_mutex_t));
    if (m != NULL) pthread_mutex_init(m, NULL);
    return m;
}

static inline void switchyard_mutex_free(pthread_mutex_t *m) {
    pthread_mutex_destroy(m);
    free(m);
}

// Runs fn(arg) on a new detached thread (a background DNS lookup); returns 0 or an errno.
typedef void (*switchyard_thread_fn)(void *);
struct switchyard_thread_start {
    switchyard_thread_fn fn;
    void *arg;
};
static inline void *switchyard_thread_trampoline(void *p) {
    struct switchyard_thread_start start = *(struct switchyard_thread_start *)p;
    free(p);
    start.fn(start.arg);
    return NULL;
}
static inline int switchyard_spawn_detached(switchyard_thread_fn fn, void *arg) {
    struct switchyard_thread_start *start = (struct switchyard_thread_start *)malloc(sizeof(*start));
    if (start == NULL) return ENOMEM;
    start->fn = fn;
    start->arg = arg;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create(&thread, &attributes, switchyard_thread_trampoline, start);
    pthread_attr_destroy(&attributes);
    if (rc != 0) free(start);
    return rc;
}

static inline void switchyard_mutex_lock(pthread_mutex_t *m) { pthread_mutex_lock(m); }
static inline void switchyard_mutex_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }

// --- Unix domain sockets (SPEC §12). sockaddr_un, stat and chmod are awkward or absent from
// Swift in this module (no Glibc import), so the whole bind sequence is one C helper.

#include <sys/stat.h>
#include <sys/un.h>

// Fills `out` with a sockaddr_un for `path`; returns its length, or 0 when the path is empty or
// does not fit sun_path (107 bytes and the NUL).
static inline int switchyard_make_unix_sockaddr(const char *path, struct sockaddr_storage *out) {
    __builtin_memset(out, 0, sizeof(*out));
    struct sockaddr_un *sun = (struct sockaddr_un *)out;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof(sun->sun_path)) return 0;
    sun->sun_family = AF_UNIX;
    __builtin_memcpy(sun->sun_path, path, length + 1);
    return (int)(__builtin_offsetof(struct sockaddr_un, sun_path) + length + 1);
}

// What `switchyard_unix_listen` found when it fails.
enum switchyard_unix_listen_failure {
    SWITCHYARD_UNIX_SYSCALL = 1,    // a call failed: `*error` holds its errno
    SWITCHYARD_UNIX_NOT_SOCKET = 2, // the path exists and is not a socket (left alone)
    SWITCHYARD_UNIX_TAKEN = 3,      // a socket there accepts connections: another process listens
    SWITCHYARD_UNIX_TOO_LONG = 4,   // the path does not fit sun_path
};

// Binds a listening, non-blocking, close-on-exec Unix stream socket at `path` with file mode
// `mode`, and records the file's st_dev / st_ino (to remove it later only if it is still ours).
// A socket file nobody accepts on (connect: ECONNREFUSED) is a leftover and is unlinked first.
// The mode: bind creates the file with 0777 & ~umask; changing the umask around bind would race
// with other threads creating files, and fchmod on the socket does not reach the path on Linux.
// So chmod(path) follows bind, and listen follows chmod: until then a connect is refused, so no
// client gets in while the file still has the umask's mode.
// Returns the socket, or -1 with `*failure` (and `*error` for SWITCHYARD_UNIX_SYSCALL).
static inline evutil_socket_t switchyard_unix_listen(const char *path, unsigned int mode, int backlog,
                                                     unsigned long long *device, unsigned long long *inode,
                                                     int *failure, int *error) {
    struct sockaddr_storage address;
    int length = switchyard_make_unix_sockaddr(path, &address);
    if (length == 0) {
        *failure = SWITCHYARD_UNIX_TOO_LONG;
        return -1;
    }
    struct stat existing;
    if (lstat(path, &existing) == 0) {
        if (!S_ISSOCK(existing.st_mode)) {
            *failure = SWITCHYARD_UNIX_NOT_SOCKET;
            return -1;
        }
        evutil_socket_t probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            *failure = SWITCHYARD_UNIX_SYSCALL;
            *error = errno;
            return -1;
        }
        int connected = connect(probe, (struct sockaddr *)&address, (socklen_t)length);
        int saved = errno;
        evutil_closesocket(probe);
        if (connected == 0) {
            *failure = SWITCHYARD_UNIX_TAKEN;
            return -1;
        }
        if (saved == ECONNREFUSED) {
            if (unlink(path) != 0 && errno != ENOENT) {
                *failure = SWITCHYARD_UNIX_SYSCALL;
                *error = errno;
                return -1;
            }
        } else if (saved != ENOENT) {
            *failure = SWITCHYARD_UNIX_SYSCALL;
            *error = saved;
            return -1;
        }
    } else if (errno != ENOENT) {
        *failure = SWITCHYARD_UNIX_SYSCALL;
        *error = errno;
        return -1;
    }
    evutil_socket_t fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *failure = SWITCHYARD_UNIX_SYSCALL;
        *error = errno;
        return -1;
    }
    struct stat bound;
    if (bind(fd, (struct sockaddr *)&address, (socklen_t)length) != 0) {
        *failure = SWITCHYARD_UNIX_SYSCALL;
        *error = errno;
        evutil_closesocket(fd);
        return -1;
    }
    if (chmod(path, (mode_t)mode) != 0 || lstat(path, &bound) != 0 || listen(fd, backlog) != 0) {
        *failure = SWITCHYARD_UNIX_SYSCALL;
        *error = errno;
        evutil_closesocket(fd);
        (void)unlink(path);
        return -1;
    }
    *device = (unsigned long long)bound.st_dev;
    *inode = (unsigned long long)bound.st_ino;
    return fd;
}

// Unlinks `path` if it is still the socket file recorded at bind (same st_dev and st_ino), so a
// file another process has bound there since is left alone. Returns 1 when it was removed.
static inline int switchyard_unlink_if_same(const char *path, unsigned long long device, unsigned long long inode) {
    struct stat current;
    if (lstat(path, &current) != 0) return 0;
    if (!S_ISSOCK(current.st_mode) || (unsigned long long)current.st_dev != device ||
        (unsigned long long)current.st_ino != inode)
        return 0;
    return unlink(path) == 0 ? 1 : 0;
}

// A close-on-exec duplicate of `fd` (another loop's handle on one listening socket), or -1.
static inline evutil_socket_t switchyard_dup(evutil_socket_t fd) {
    return fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

// accept(2)'s errno as a kind for Swift, which does not see the errno names through this module:
// 1 for EMFILE (the process limit), 2 for ENFILE (the system limit), 0 for anything else.
static inline int switchyard_descriptor_error_kind(int code) {
    if (code == EMFILE) return 1;
    if (code == ENFILE) return 2;
    return 0;
}

#include <sys/resource.h>

// The soft RLIMIT_NOFILE (one more than the highest descriptor number the process may get),
// or -1 when it cannot be read or is unlimited. Here so that EventHTTP need not import Glibc.
static inline long long switchyard_open_file_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return -1;
    return (long long)limit.rlim_cur;
}

#endif
