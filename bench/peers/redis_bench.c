// Redis Streams workloads for bench/peers (see README.md), with hiredis.
// Prints one line "RESULT <value> <unit>" (latency: "RESULT <p50> <p99> <p999> ms").
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_common.h"

static struct peer_args A = {.host = "127.0.0.1", .workload = "produce", .port = 6379,
                             .size = 256, .window = 1, .consumers = 1, .count = 100000,
                             .rate = 10000, .duration_s = 10};

static void die(const char *what, redisContext *c) {
  fprintf(stderr, "redis_bench: %s: %s\n", what, c && c->err ? c->errstr : "unexpected reply");
  exit(1);
}

static redisContext *connect_or_die(void) {
  redisContext *c = redisConnect(A.host, A.port);
  if (!c || c->err) die("connect", c);
  return c;
}

// Runs a command whose reply must not be an error.
static void must(redisContext *c, const char *cmd) {
  redisReply *r = redisCommand(c, cmd);
  if (!r) die(cmd, c);
  if (r->type == REDIS_REPLY_ERROR) {
    fprintf(stderr, "redis_bench: %s: %s\n", cmd, r->str);
    exit(1);
  }
  freeReplyObject(r);
}

static void get_reply_ok(redisContext *c) {
  redisReply *r;
  if (redisGetReply(c, (void **)&r) != REDIS_OK) die("reply", c);
  if (r->type == REDIS_REPLY_ERROR) {
    fprintf(stderr, "redis_bench: %s\n", r->str);
    exit(1);
  }
  freeReplyObject(r);
}

// XADDs to `key` with up to `win` replies outstanding until `n` are acknowledged or
// `seconds` pass; returns the number acknowledged.
static long produce(redisContext *c, const char *key, long n, int win, double seconds) {
  char *payload = peer_payload((size_t)A.size);
  const double end = now_s() + seconds;
  long sent = 0, acked = 0;
  while (sent < n && now_s() < end) {
    redisAppendCommand(c, "XADD %s * d %b", key, payload, (size_t)A.size);
    sent++;
    if (sent - acked >= win) {
      get_reply_ok(c);
      acked++;
    }
  }
  while (acked < sent) {
    get_reply_ok(c);
    acked++;
  }
  free(payload);
  return acked;
}

// Reads the filled stream from the start with XREAD COUNT 100.
static long stream_read(redisContext *c, long n, double end) {
  char last[64] = "0-0";
  long got = 0;
  while (got < n && now_s() < end) {
    redisReply *r = redisCommand(c, "XREAD COUNT 100 STREAMS bench %s", last);
    if (!r || r->type == REDIS_REPLY_ERROR) die("XREAD", c);
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
      freeReplyObject(r);
      break;
    }
    redisReply *entries = r->element[0]->element[1];
    got += (long)entries->elements;
    if (entries->elements > 0)
      snprintf(last, sizeof last, "%s", entries->element[entries->elements - 1]->element[0]->str);
    freeReplyObject(r);
  }
  return got;
}

// Work-queue consumers: XREADGROUP COUNT window, then one XACK for the batch.
static long acked_total;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double cycle_end;

static void *cycle_consumer(void *arg) {
  long id = (long)arg, mine = 0;
  char name[32];
  snprintf(name, sizeof name, "c%ld", id);
  redisContext *c = connect_or_die();
  const char **argv = malloc(sizeof(char *) * (size_t)(A.window + 3));
  while (now_s() < cycle_end) {
    redisReply *r = redisCommand(c, "XREADGROUP GROUP g %s COUNT %d STREAMS bench >", name,
                                 A.window);
    if (!r || r->type == REDIS_REPLY_ERROR) die("XREADGROUP", c);
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {  // nil: nothing left
      freeReplyObject(r);
      break;
    }
    redisReply *entries = r->element[0]->element[1];
    if (entries->elements == 0) {
      freeReplyObject(r);
      break;
    }
    int argc = 0;
    argv[argc++] = "XACK";
    argv[argc++] = "bench";
    argv[argc++] = "g";
    for (size_t i = 0; i < entries->elements; i++)
      argv[argc++] = entries->element[i]->element[0]->str;
    redisReply *a = redisCommandArgv(c, argc, argv, NULL);
    if (!a || a->type != REDIS_REPLY_INTEGER) die("XACK", c);
    mine += (long)a->integer;
    freeReplyObject(a);
    freeReplyObject(r);
  }
  free(argv);
  redisFree(c);
  pthread_mutex_lock(&mu);
  acked_total += mine;
  pthread_mutex_unlock(&mu);
  return NULL;
}

// Latency: a producer XADDs at `rate` with its scheduled send time in the payload, a
// consumer records now - that time for each entry it gets. `latency`: the consumer XREAD
// BLOCKs the stream. `qlatency`: it reads as a consumer group member (XREADGROUP BLOCK ... >)
// and XACKs what it got, the queue cycle's commands.
static int lat_group;
static double *lat_ms;
static atomic_long lat_n;  // one writer, the consumer thread: a load and a store increment it
static atomic_long lat_sent;
static atomic_int producing = 1;
static _Atomic double drain_until;  // the consumer gives up on messages still missing then

static void *lat_consumer(void *arg) {
  (void)arg;
  redisContext *c = connect_or_die();
  char last[64] = "0-0";
  // XACK lat g id...: at most 1000 ids, one read's worth.
  const char **argv = malloc(sizeof *argv * 1003);
  if (!argv) die("malloc", c);
  for (;;) {
    redisReply *r = lat_group
                        ? redisCommand(c, "XREADGROUP GROUP g c BLOCK 200 COUNT 1000 STREAMS lat >")
                        : redisCommand(c, "XREAD BLOCK 200 COUNT 1000 STREAMS lat %s", last);
    const double t = now_s();
    if (!r || r->type == REDIS_REPLY_ERROR) die(lat_group ? "XREADGROUP" : "XREAD", c);
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
      redisReply *entries = r->element[0]->element[1];
      for (size_t i = 0; i < entries->elements; i++) {
        redisReply *fields = entries->element[i]->element[1];
        double sent;
        memcpy(&sent, fields->element[1]->str, sizeof sent);
        const long got = atomic_load(&lat_n);
        if (got < A.count) {
          lat_ms[got] = (t - sent) * 1e3;
          atomic_store(&lat_n, got + 1);
        }
        argv[3 + i] = entries->element[i]->element[0]->str;
      }
      snprintf(last, sizeof last, "%s", entries->element[entries->elements - 1]->element[0]->str);
      if (lat_group && entries->elements > 0) {
        argv[0] = "XACK", argv[1] = "lat", argv[2] = "g";
        redisReply *a = redisCommandArgv(c, 3 + (int)entries->elements, argv, NULL);
        if (!a || a->type != REDIS_REPLY_INTEGER) die("XACK", c);
        freeReplyObject(a);
      }
    }
    freeReplyObject(r);
    if (!atomic_load(&producing) &&
        (atomic_load(&lat_n) >= atomic_load(&lat_sent) || t > atomic_load(&drain_until)))
      break;
  }
  free(argv);
  redisFree(c);
  return NULL;
}

static int latency(void) {
  redisContext *c = connect_or_die();
  must(c, "DEL lat");
  if (lat_group) must(c, "XGROUP CREATE lat g $ MKSTREAM");
  long n = (long)(A.rate * A.duration_s);
  if (n > A.count) n = A.count;
  A.count = n;
  lat_ms = calloc((size_t)n, sizeof *lat_ms);
  pthread_t reader;
  pthread_create(&reader, NULL, lat_consumer, NULL);
  char *payload = peer_payload((size_t)A.size);
  const double start = now_s();
  long outstanding = 0;
  for (long i = 0; i < n; i++) {
    const double due = start + (double)i / A.rate;
    if (now_s() > start + A.duration_s + 1) break;  // saturated: stop sending, report below
    spin_until_s(due);
    memcpy(payload, &due, sizeof due);  // the scheduled time: a late send counts as latency
    redisAppendCommand(c, "XADD lat * d %b", payload, (size_t)A.size);
    int done = 0;
    while (!done)
      if (redisBufferWrite(c, &done) != REDIS_OK) die("write", c);
    atomic_store(&lat_sent, i + 1);
    if (++outstanding >= 1000) {
      get_reply_ok(c);
      outstanding--;
    }
  }
  while (outstanding-- > 0) get_reply_ok(c);
  atomic_store(&drain_until, now_s() + (A.duration_s > 2 ? A.duration_s : 2));
  atomic_store(&producing, 0);
  pthread_join(reader, NULL);
  long got = atomic_load(&lat_n);
  if (got < n)  // saturated: what was not sent or not delivered in time waited at least until now
    got = peer_fill_missing(lat_ms, got, n, atomic_load(&lat_sent),
                            (now_s() - (start + (double)(n - 1) / A.rate)) * 1e3);
  const int rc = peer_print_latency(lat_ms, got);
  free(payload);
  redisFree(c);
  return rc;
}

int main(int argc, char **argv) {
  peer_parse_args("redis_bench",
                  "usage: redis_bench --host H --port N "
                  "--workload produce|stream|consume|cycle|latency|qlatency\n" PEER_USAGE_COMMON,
                  argc, argv, &A, NULL);
  if (A.size < (int)sizeof(double) || A.count < 1 || A.window < 1 || A.consumers < 1 ||
      A.rate <= 0) {
    fprintf(stderr, "redis_bench: bad arguments\n");
    return 2;
  }
  redisContext *c = connect_or_die();
  double start, seconds;
  long done, wanted;
  if (!strcmp(A.workload, "produce")) {
    must(c, "DEL bench");
    start = now_s();
    done = produce(c, "bench", A.count, A.window, A.duration_s);
    seconds = now_s() - start;
    wanted = A.count;
  } else if (!strcmp(A.workload, "stream")) {
    must(c, "DEL bench");
    wanted = produce(c, "bench", A.count, 1000, A.duration_s);
    start = now_s();
    done = stream_read(c, wanted, start + A.duration_s);
    seconds = now_s() - start;
  } else if (!strcmp(A.workload, "consume") || !strcmp(A.workload, "cycle")) {
    must(c, "DEL bench");
    wanted = produce(c, "bench", A.count, 1000, A.duration_s);
    must(c, "XGROUP CREATE bench g 0");
    pthread_t threads[64];
    if (A.consumers > 64) A.consumers = 64;
    start = now_s();
    cycle_end = start + A.duration_s;
    for (long i = 0; i < A.consumers; i++)
      pthread_create(&threads[i], NULL, cycle_consumer, (void *)i);
    for (int i = 0; i < A.consumers; i++) pthread_join(threads[i], NULL);
    seconds = now_s() - start;
    done = acked_total;
  } else if (!strcmp(A.workload, "latency") || !strcmp(A.workload, "qlatency")) {
    lat_group = !strcmp(A.workload, "qlatency");
    const int rc = latency();
    redisFree(c);
    return rc;
  } else {
    fprintf(stderr, "redis_bench: unknown workload %s\n", A.workload);
    return 2;
  }
  redisFree(c);
  if (done <= 0) {
    fprintf(stderr, "redis_bench: nothing done\n");
    return 1;
  }
  peer_print_rate(done, wanted, seconds);
  return 0;
}
