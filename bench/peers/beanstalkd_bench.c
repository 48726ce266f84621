// beanstalkd workloads for bench/peers (see README.md), over its text protocol on TCP.
// Prints one line "RESULT <value> <unit>" (latency: "RESULT <p50> <p99> <p999> ms").
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_common.h"

static struct peer_args A = {.host = "127.0.0.1", .workload = "produce", .port = 11300,
                             .size = 256, .window = 1, .consumers = 1, .count = 100000,
                             .rate = 10000, .duration_s = 10};
static char tube[64];

static void die(const char *what) {
  fprintf(stderr, "beanstalkd_bench: %s\n", what);
  exit(1);
}

// A connection with a read buffer.
struct conn {
  int fd;
  size_t start, end;
  char buf[1 << 16];
};

static struct conn *connect_or_die(void) {
  struct conn *c = calloc(1, sizeof *c);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)A.port)};
  if (inet_pton(AF_INET, A.host, &addr.sin_addr) != 1) die("bad --host");
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return c;
}

static void send_all(struct conn *c, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(c->fd, p, n);
    if (w <= 0) die("write");
    p += w;
    n -= (size_t)w;
  }
}

static void fill(struct conn *c) {
  if (c->start > 0) {
    memmove(c->buf, c->buf + c->start, c->end - c->start);
    c->end -= c->start;
    c->start = 0;
  }
  if (c->end == sizeof c->buf) die("reply too long");
  ssize_t r = read(c->fd, c->buf + c->end, sizeof c->buf - c->end);
  if (r <= 0) die("connection closed");
  c->end += (size_t)r;
}

// Reads one reply line (without "\r\n") into `line`.
static void read_line(struct conn *c, char *line, size_t cap) {
  for (;;) {
    char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
    if (nl) {
      size_t n = (size_t)(nl - (c->buf + c->start));
      if (n > 0 && nl[-1] == '\r') n--;
      if (n >= cap) die("reply line too long");
      memcpy(line, c->buf + c->start, n);
      line[n] = 0;
      c->start = (size_t)(nl - c->buf) + 1;
      return;
    }
    fill(c);
  }
}

// Reads `n` bytes of job body plus its "\r\n" into `out`.
static void read_body(struct conn *c, char *out, size_t n) {
  while (c->end - c->start < n + 2) fill(c);
  memcpy(out, c->buf + c->start, n);
  c->start += n + 2;
}

static void expect(struct conn *c, const char *prefix) {
  char line[256];
  read_line(c, line, sizeof line);
  if (strncmp(line, prefix, strlen(prefix)) != 0) {
    fprintf(stderr, "beanstalkd_bench: expected %s, got %s\n", prefix, line);
    exit(1);
  }
}

static void command(struct conn *c, const char *cmd, const char *reply) {
  send_all(c, cmd, strlen(cmd));
  expect(c, reply);
}

static void use_tube(struct conn *c) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "use %s\r\n", tube);
  command(c, cmd, "USING");
}

static void watch_tube(struct conn *c) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "watch %s\r\n", tube);
  command(c, cmd, "WATCHING");
  command(c, "ignore default\r\n", "WATCHING");
}

// Appends a put of `body` to `c`'s socket.
static void send_put(struct conn *c, const char *body) {
  char head[64];
  int n = snprintf(head, sizeof head, "put 1024 0 60 %d\r\n", A.size);
  char *msg = malloc((size_t)n + (size_t)A.size + 2);
  memcpy(msg, head, (size_t)n);
  memcpy(msg + n, body, (size_t)A.size);
  memcpy(msg + n + A.size, "\r\n", 2);
  send_all(c, msg, (size_t)n + (size_t)A.size + 2);
  free(msg);
}

// Puts with up to `win` replies outstanding until `n` are inserted or `seconds` pass.
static long produce(struct conn *c, long n, int win, double seconds) {
  char *body = peer_payload((size_t)A.size);
  const double end = now_s() + seconds;
  long sent = 0, acked = 0;
  while (sent < n && now_s() < end) {
    send_put(c, body);
    sent++;
    if (sent - acked >= win) {
      expect(c, "INSERTED");
      acked++;
    }
  }
  for (; acked < sent; acked++) expect(c, "INSERTED");
  free(body);
  return acked;
}

// Reserves a job (waiting up to `timeout_s`); returns its id, or 0 when none came.
static unsigned long reserve(struct conn *c, int timeout_s, char *body) {
  char line[256], cmd[64];
  snprintf(cmd, sizeof cmd, "reserve-with-timeout %d\r\n", timeout_s);
  send_all(c, cmd, strlen(cmd));
  read_line(c, line, sizeof line);
  if (!strncmp(line, "TIMED_OUT", 9)) return 0;
  unsigned long id;
  int bytes;
  if (sscanf(line, "RESERVED %lu %d", &id, &bytes) != 2 || bytes != A.size) {
    fprintf(stderr, "beanstalkd_bench: reserve: %s\n", line);
    exit(1);
  }
  read_body(c, body, (size_t)bytes);
  return id;
}

static void delete_job(struct conn *c, unsigned long id) {
  char cmd[64];
  snprintf(cmd, sizeof cmd, "delete %lu\r\n", id);
  command(c, cmd, "DELETED");
}

// Work-queue consumers: reserve + delete until the tube is empty.
static long deleted_total;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double cycle_end;

static void *cycle_consumer(void *arg) {
  (void)arg;
  struct conn *c = connect_or_die();
  watch_tube(c);
  char *body = malloc((size_t)A.size);
  long mine = 0;
  unsigned long id;
  while (now_s() < cycle_end && (id = reserve(c, 0, body)) != 0) {
    delete_job(c, id);
    mine++;
  }
  free(body);
  close(c->fd);
  free(c);
  pthread_mutex_lock(&mu);
  deleted_total += mine;
  pthread_mutex_unlock(&mu);
  return NULL;
}

// Latency: puts at `rate` with the scheduled send time in the body; a consumer reserves,
// records now - that time, and deletes.
static double *lat_ms;
static atomic_long lat_n;  // one writer, the consumer thread: a load and a store increment it
static atomic_long lat_sent;
static atomic_int producing = 1;
static _Atomic double drain_until;  // the consumer gives up on messages still missing then

static void *lat_consumer(void *arg) {
  (void)arg;
  struct conn *c = connect_or_die();
  watch_tube(c);
  char *body = malloc((size_t)A.size);
  for (;;) {
    unsigned long id = reserve(c, 1, body);
    if (id != 0) {
      double sent;
      memcpy(&sent, body, sizeof sent);
      const long got = atomic_load(&lat_n);
      if (got < A.count) {
        lat_ms[got] = (now_s() - sent) * 1e3;
        atomic_store(&lat_n, got + 1);
      }
      delete_job(c, id);
    }
    if (!atomic_load(&producing) &&
        (atomic_load(&lat_n) >= atomic_load(&lat_sent) || now_s() > atomic_load(&drain_until)))
      break;
  }
  free(body);
  close(c->fd);
  free(c);
  return NULL;
}

static int latency(struct conn *c) {
  long n = (long)(A.rate * A.duration_s);
  if (n > A.count) n = A.count;
  A.count = n;
  lat_ms = calloc((size_t)n, sizeof *lat_ms);
  pthread_t reader;
  pthread_create(&reader, NULL, lat_consumer, NULL);
  char *body = peer_payload((size_t)A.size);
  const double start = now_s();
  long outstanding = 0;
  for (long i = 0; i < n; i++) {
    const double due = start + (double)i / A.rate;
    if (now_s() > start + A.duration_s + 1) break;  // saturated: stop sending, report below
    spin_until_s(due);
    memcpy(body, &due, sizeof due);  // the scheduled time: a late send counts as latency
    send_put(c, body);
    atomic_store(&lat_sent, i + 1);
    if (++outstanding >= 1000) {
      expect(c, "INSERTED");
      outstanding--;
    }
  }
  for (; outstanding > 0; outstanding--) expect(c, "INSERTED");
  atomic_store(&drain_until, now_s() + (A.duration_s > 2 ? A.duration_s : 2));
  atomic_store(&producing, 0);
  pthread_join(reader, NULL);
  long got = atomic_load(&lat_n);
  if (got < n)  // saturated: what was not sent or not delivered in time waited at least until now
    got = peer_fill_missing(lat_ms, got, n, atomic_load(&lat_sent),
                            (now_s() - (start + (double)(n - 1) / A.rate)) * 1e3);
  const int rc = peer_print_latency(lat_ms, got);
  free(body);
  return rc;
}

int main(int argc, char **argv) {
  peer_parse_args("beanstalkd_bench",
                  "usage: beanstalkd_bench --host H --port N "
                  "--workload produce|consume|cycle|latency\n" PEER_USAGE_COMMON,
                  argc, argv, &A, NULL);
  if (A.size < (int)sizeof(double) || A.count < 1 || A.window < 1 || A.consumers < 1 ||
      A.rate <= 0)
    die("bad arguments");
  // a fresh tube per run
  snprintf(tube, sizeof tube, "bench-%s-%ld", A.workload, (long)getpid());
  struct conn *c = connect_or_die();
  use_tube(c);
  double start, seconds;
  long done, wanted;
  if (!strcmp(A.workload, "produce")) {
    start = now_s();
    done = produce(c, A.count, A.window, A.duration_s);
    seconds = now_s() - start;
    wanted = A.count;
  } else if (!strcmp(A.workload, "consume") || !strcmp(A.workload, "cycle")) {
    wanted = produce(c, A.count, 1000, A.duration_s);
    pthread_t threads[64];
    if (A.consumers > 64) A.consumers = 64;
    start = now_s();
    cycle_end = start + A.duration_s;
    for (int i = 0; i < A.consumers; i++) pthread_create(&threads[i], NULL, cycle_consumer, NULL);
    for (int i = 0; i < A.consumers; i++) pthread_join(threads[i], NULL);
    seconds = now_s() - start;
    done = deleted_total;
  } else if (!strcmp(A.workload, "latency")) {
    return latency(c);
  } else {
    fprintf(stderr, "beanstalkd_bench: unknown workload %s\n", A.workload);
    return 2;
  }
  close(c->fd);
  free(c);
  if (done <= 0) die("nothing done");
  peer_print_rate(done, wanted, seconds);
  return 0;
}
