// big_upstream: a measuring instrument for bench/stream.sh, not a server. It answers every
// request (any method and path; a Content-Length request body is read and dropped) with a
// large body written straight from one static buffer: no per-byte work, one thread per
// connection, blocking send()s of up to 1 MiB, so the kernel's copy is all it costs and it is
// never what limits a proxy in front of it.
//
//   big_upstream PORT BYTES [CHUNK]
//
// A path containing "chunked" gets `Transfer-Encoding: chunked` with CHUNK-byte chunks
// (default 65536); any other path gets `Content-Length: BYTES`. A query `bytes=N` overrides
// BYTES for that request. Keep-alive; stops on SIGTERM.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define BUF (1 << 20)
static char body[BUF];
static long long default_bytes;
static size_t chunk_size = 65536;

static int send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) { if (errno == EINTR) continue; return -1; }
    p += w; n -= (size_t)w;
  }
  return 0;
}

static int writev_all(int fd, struct iovec *iov, int cnt) {
  while (cnt) {
    ssize_t w = writev(fd, iov, cnt);
    if (w < 0) { if (errno == EINTR) continue; return -1; }
    while (cnt && (size_t)w >= iov->iov_len) { w -= (ssize_t)iov->iov_len; iov++; cnt--; }
    if (cnt) { iov->iov_base = (char *)iov->iov_base + w; iov->iov_len -= (size_t)w; }
  }
  return 0;
}

static int serve_one(int fd, const char *path, size_t pathlen) {
  long long n = default_bytes;
  const char *q = memmem(path, pathlen, "bytes=", 6);
  if (q) n = atoll(q + 6);
  int chunked = memmem(path, pathlen, "chunked", 7) != NULL;
  char head[256];
  int hl;
  if (chunked) {
    hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n");
    if (send_all(fd, head, (size_t)hl)) return -1;
    while (n > 0) {
      size_t c = n < (long long)chunk_size ? (size_t)n : chunk_size;
      char sz[32];
      int sl = snprintf(sz, sizeof sz, "%zx\r\n", c);
      struct iovec iov[3] = {{sz, (size_t)sl}, {body, c}, {"\r\n", 2}};
      if (writev_all(fd, iov, 3)) return -1;
      n -= (long long)c;
    }
    return send_all(fd, "0\r\n\r\n", 5);
  }
  hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   "Content-Length: %lld\r\n\r\n", n);
  if (send_all(fd, head, (size_t)hl)) return -1;
  while (n > 0) {
    size_t c = n < BUF ? (size_t)n : BUF;
    if (send_all(fd, body, c)) return -1;
    n -= (long long)c;
  }
  return 0;
}

static void *conn_main(void *arg) {
  int fd = (int)(long)arg;
  char in[65536];
  size_t len = 0;
  for (;;) {
    char *end;
    while (!(end = memmem(in, len, "\r\n\r\n", 4))) {
      if (len == sizeof in) goto out;
      ssize_t r = recv(fd, in + len, sizeof in - len, 0);
      if (r <= 0) goto out;
      len += (size_t)r;
    }
    size_t hlen = (size_t)(end - in) + 4;
    long long clen = 0;
    for (char *p = memchr(in, '\n', hlen); p && p < end; p = memchr(p, '\n', (size_t)(end + 4 - p))) {
      p++;
      if (end - p > 15 && strncasecmp(p, "content-length:", 15) == 0) clen = atoll(p + 15);
    }
    char *sp = memchr(in, ' ', hlen);
    char *sp2 = sp ? memchr(sp + 1, ' ', (size_t)(end - sp - 1)) : NULL;
    const char *path = sp ? sp + 1 : "";
    size_t pathlen = sp && sp2 ? (size_t)(sp2 - sp - 1) : 0;
    char pbuf[512];
    if (pathlen >= sizeof pbuf) pathlen = sizeof pbuf - 1;
    memcpy(pbuf, path, pathlen);
    pbuf[pathlen] = 0;
    // drop the request body
    size_t have = len - hlen;
    if ((long long)have >= clen) {
      memmove(in, in + hlen + clen, have - (size_t)clen);
      len = have - (size_t)clen;
    } else {
      long long left = clen - (long long)have;
      len = 0;
      while (left > 0) {
        ssize_t r = recv(fd, in, left < (long long)sizeof in ? (size_t)left : sizeof in, 0);
        if (r <= 0) goto out;
        left -= r;
      }
    }
    if (serve_one(fd, pbuf, pathlen)) goto out;
  }
out:
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: big_upstream PORT BYTES [CHUNK]\n"); return 2; }
  int port = atoi(argv[1]);
  default_bytes = atoll(argv[2]);
  if (argc > 3) chunk_size = (size_t)atol(argv[3]);
  if (chunk_size == 0 || chunk_size > BUF) chunk_size = 65536;
  memset(body, 'x', sizeof body);
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
  if (listen(lfd, 128) < 0) { perror("listen"); return 1; }
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) { if (errno == EINTR) continue; perror("accept"); return 1; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, conn_main, (void *)(long)fd)) close(fd);
    pthread_attr_destroy(&at);
  }
}
