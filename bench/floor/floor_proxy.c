// floor_proxy: a measuring instrument, not a proxy. It relays bytes between each client
// connection and a dedicated keep-alive connection to the upstream with the fewest system calls
// a keep-alive HTTP proxy can make per request (recv from the client, send to the upstream,
// recv from the upstream, send to the client; epoll_wait shared by every ready socket), and
// does no HTTP work at all: it assumes every recv holds exactly one whole message, which is
// true of the small keep-alive exchanges `peers.sh` drives and of nothing else. With a third
// argument it also sends each request to a shadow upstream and reads and drops its answers.
// Its CPU per request is the kernel's floor for any proxy design that makes those calls.
//
//   floor_proxy LISTEN_PORT UPSTREAM_PORT [SHADOW_PORT|0] [THREADS]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { CLIENT, UPSTREAM, SHADOW };
typedef struct end {
  int fd, kind;
  struct end *peer;   // client <-> upstream
  struct end *shadow; // client -> its shadow connection
} end;

static int listen_port, upstream_port, shadow_port;

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { close(fd); return -1; }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static end *watch(int ep, int fd, int kind) {
  end *e = calloc(1, sizeof *e);
  e->fd = fd;
  e->kind = kind;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = e};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  return e;
}

// Closed ends are freed after the batch of events they may still appear in.
static __thread end *graveyard[1024];
static __thread int buried;

static void drop(int ep, end *e) {
  if (!e || e->fd < 0) return;
  epoll_ctl(ep, EPOLL_CTL_DEL, e->fd, NULL);
  close(e->fd);
  e->fd = -1;
  if (buried < 1024) graveyard[buried++] = e;  // beyond that, leaked: an instrument, not a server
}

static void *worker(void *arg) {
  (void)arg;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(listen_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1024) < 0) { perror("listen"); exit(1); }
  int ep = epoll_create1(0);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  static __thread char buf[65536];
  struct epoll_event evs[256];
  for (;;) {
    while (buried > 0) free(graveyard[--buried]);
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      end *e = evs[i].data.ptr;
      if (e && e->fd < 0) continue;
      if (!e) {
        int cfd;
        while ((cfd = accept4(lfd, NULL, NULL, 0)) >= 0) {
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          int ufd = dial(upstream_port);
          if (ufd < 0) { close(cfd); continue; }
          end *c = watch(ep, cfd, CLIENT), *u = watch(ep, ufd, UPSTREAM);
          c->peer = u;
          u->peer = c;
          if (shadow_port) {
            int sfd = dial(shadow_port);
            if (sfd >= 0) c->shadow = watch(ep, sfd, SHADOW);
          }
        }
        continue;
      }
      ssize_t r = recv(e->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        if (e->kind == SHADOW) { drop(ep, e); continue; }  // its client sends no more shadow copies
        end *c = e->kind == CLIENT ? e : e->peer;
        if (c->shadow && c->shadow->fd >= 0) drop(ep, c->shadow);
        drop(ep, c->peer);
        drop(ep, c);
        continue;
      }
      if (e->kind == SHADOW) continue;  // answers read and dropped
      send(e->peer->fd, buf, (size_t)r, MSG_NOSIGNAL);
      if (e->kind == CLIENT && e->shadow && e->shadow->fd >= 0) send(e->shadow->fd, buf, (size_t)r, MSG_NOSIGNAL);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: floor_proxy LISTEN UPSTREAM [SHADOW|0] [THREADS]\n"); return 2; }
  listen_port = atoi(argv[1]);
  upstream_port = atoi(argv[2]);
  shadow_port = argc > 3 ? atoi(argv[3]) : 0;
  int threads = argc > 4 ? atoi(argv[4]) : 1;
  pthread_t t;
  for (int i = 1; i < threads; i++) pthread_create(&t, NULL, worker, NULL);
  worker(NULL);
}
