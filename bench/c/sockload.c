// sockload: a small keep-alive HTTP/1.1 load client for TCP and Unix domain sockets (wrk
// cannot open unix: sockets). One thread, epoll, like `wrk -t1`: it opens N connections, sends
// the same request on each as soon as the previous answer has fully arrived (Content-Length or
// chunked framing), for D seconds, and prints one line:
//
//   requests=N rps=R p50_ms=A p99_ms=B errors=E non2xx=F
//
//   sockload [-c CONNS] [-d SECS] [-p PATH] [-b BODY] [-H 'Name: value']... unix:/path/to.sock | HOST:PORT
//
// Without -b it sends bench's ~200-byte JSON prediction (the body of shared/bench/wrk/post.lua)
// as a POST to PATH (default /v1/models/m:predict). A connection that fails or is closed is
// counted in errors and reopened. Each -H adds a header field after Content-Length (at most
// 2 KiB of them), for a request that looks like a real client's.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char DEFAULT_BODY[] =
    "{\"instances\":[{\"features\":[0.12,0.53,0.98,0.33,0.71,0.05,0.44,0.87,0.19,0.62,0.28,0.91,"
    "0.14,0.76,0.39,0.58],\"user\":\"u-12345\",\"item\":\"i-67890\",\"ctx\":{\"country\":\"DE\","
    "\"device\":\"ios\"}}],\"model_version\":\"7\"}";

#define INBUF 65536
#define HIST_US 1000000 // 1 µs buckets up to 1 s; slower answers land in the last one
typedef struct conn {
  int fd;
  size_t sent, inlen;
  double t0;
  char in[INBUF];
} conn;

static struct sockaddr_storage addr;
static socklen_t addrlen;
static int is_unix;
static char req[4096];
static size_t reqlen;
static unsigned *hist;
static long long done_reqs, errors, non2xx;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_conn(int ep, conn *c) {
  c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) { perror("socket"); exit(1); }
  if (!is_unix) { int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }
  if (connect(c->fd, (struct sockaddr *)&addr, addrlen) < 0 && errno != EINPROGRESS && errno != EAGAIN) {
    close(c->fd);
    return -1;
  }
  c->sent = 0; c->inlen = 0; c->t0 = now();
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  return 0;
}

static void reopen(int ep, conn *c) {
  errors++;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  while (open_conn(ep, c) < 0) usleep(1000);
}

static int try_send(conn *c) {
  while (c->sent < reqlen) {
    ssize_t w = send(c->fd, req + c->sent, reqlen - c->sent, MSG_NOSIGNAL);
    if (w < 0) return (errno == EAGAIN || errno == EINPROGRESS || errno == ENOTCONN) ? 0 : -1;
    c->sent += (size_t)w;
  }
  return 0;
}

// Length of one complete response at the start of c->in, 0 if incomplete, -1 if unparsable.
static long response_length(conn *c, int *status) {
  char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
  if (!end) return c->inlen == INBUF ? -1 : 0;
  size_t hlen = (size_t)(end - c->in) + 4;
  if (c->inlen < 12) return -1;
  *status = atoi(c->in + 9);
  long clen = -1;
  int chunked = 0;
  for (char *p = memchr(c->in, '\n', hlen); p && p < end; p = memchr(p, '\n', (size_t)(end + 4 - p))) {
    p++;
    if (end - p > 15 && strncasecmp(p, "content-length:", 15) == 0) clen = atol(p + 15);
    else if (end - p > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0 && memmem(p, (size_t)(end - p), "chunked", 7))
      chunked = 1;
  }
  if (!chunked) {
    if (clen < 0) clen = 0;
    return c->inlen >= hlen + (size_t)clen ? (long)(hlen + (size_t)clen) : (hlen + (size_t)clen > INBUF ? -1 : 0);
  }
  size_t off = hlen;
  for (;;) {
    char *nl = memmem(c->in + off, c->inlen - off, "\r\n", 2);
    if (!nl) return 0;
    long sz = strtol(c->in + off, NULL, 16);
    off = (size_t)(nl - c->in) + 2;
    if (sz == 0) {
      char *fin = memmem(c->in + off - 2, c->inlen - (off - 2), "\r\n\r\n", 4);
      return fin ? (long)(fin - c->in) + 4 : 0;
    }
    if (c->inlen < off + (size_t)sz + 2) return off + (size_t)sz + 2 > INBUF ? -1 : 0;
    off += (size_t)sz + 2;
  }
}

int main(int argc, char **argv) {
  int conns = 32, opt;
  double dur = 5;
  const char *path = "/v1/models/m:predict", *body = DEFAULT_BODY;
  static char extra[2048];
  size_t extralen = 0;
  while ((opt = getopt(argc, argv, "c:d:p:b:H:")) != -1) {
    switch (opt) {
    case 'c': conns = atoi(optarg); break;
    case 'd': dur = atof(optarg); break;
    case 'p': path = optarg; break;
    case 'b': body = optarg; break;
    case 'H': {
      size_t n = strlen(optarg);
      if (extralen + n + 2 >= sizeof extra) { fprintf(stderr, "-H: more than %zu bytes of fields\n", sizeof extra); return 2; }
      memcpy(extra + extralen, optarg, n);
      memcpy(extra + extralen + n, "\r\n", 2);
      extralen += n + 2;
      break;
    }
    default: fprintf(stderr, "usage: sockload [-c CONNS] [-d SECS] [-p PATH] [-b BODY] unix:/path | HOST:PORT\n"); return 2;
    }
  }
  if (optind >= argc) { fprintf(stderr, "missing target\n"); return 2; }
  const char *target = argv[optind];
  memset(&addr, 0, sizeof addr);
  if (strncmp(target, "unix:", 5) == 0) {
    struct sockaddr_un *u = (struct sockaddr_un *)&addr;
    u->sun_family = AF_UNIX;
    strncpy(u->sun_path, target + 5, sizeof u->sun_path - 1);
    addrlen = sizeof *u;
    is_unix = 1;
  } else {
    struct sockaddr_in *in = (struct sockaddr_in *)&addr;
    const char *colon = strrchr(target, ':');
    if (!colon) { fprintf(stderr, "target: unix:/path or HOST:PORT\n"); return 2; }
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - target), target);
    in->sin_family = AF_INET;
    in->sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); return 2; }
    addrlen = sizeof *in;
  }
  reqlen = (size_t)snprintf(req, sizeof req,
                            "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n%.*s\r\n%s", path, strlen(body), (int)extralen, extra, body);
  hist = calloc(HIST_US, sizeof *hist);
  int ep = epoll_create1(0);
  conn *cs = calloc((size_t)conns, sizeof *cs);
  for (int i = 0; i < conns; i++)
    if (open_conn(ep, &cs[i]) < 0) { perror("connect"); return 1; }
  struct epoll_event evs[256];
  double start = now(), stop = start + dur;
  for (;;) {
    double t = now();
    if (t >= stop) break;
    int n = epoll_wait(ep, evs, 256, (int)((stop - t) * 1000) + 1);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (evs[i].events & EPOLLOUT) {
        if (try_send(c) < 0) { reopen(ep, c); continue; }
        if (c->sent == reqlen) {
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
      }
      if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      for (;;) {
        ssize_t r = recv(c->fd, c->in + c->inlen, INBUF - c->inlen, 0);
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) { reopen(ep, c); goto next; }
        c->inlen += (size_t)r;
        int status = 0;
        long l = response_length(c, &status);
        if (l < 0) { reopen(ep, c); goto next; }
        if (l == 0) continue;
        double lat = now() - c->t0;
        long us = (long)(lat * 1e6);
        hist[us < HIST_US ? us : HIST_US - 1]++;
        done_reqs++;
        if (status < 200 || status > 299) non2xx++;
        memmove(c->in, c->in + l, c->inlen - (size_t)l);
        c->inlen -= (size_t)l;
        // next request on the same connection
        c->sent = 0;
        c->t0 = now();
        if (try_send(c) < 0) { reopen(ep, c); goto next; }
        if (c->sent < reqlen) {
          struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
          break;
        }
      }
    next:;
    }
  }
  double elapsed = now() - start;
  long long acc = 0;
  double p50 = 0, p99 = 0;
  int got50 = 0;
  for (long i = 0; i < HIST_US; i++) {
    acc += hist[i];
    if (!got50 && acc * 2 >= done_reqs) { p50 = i / 1000.0; got50 = 1; }
    if (acc * 100 >= done_reqs * 99) { p99 = i / 1000.0; break; }
  }
  printf("requests=%lld rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%lld non2xx=%lld\n", done_reqs,
         done_reqs / elapsed, p50, p99, errors, non2xx);
  return 0;
}
