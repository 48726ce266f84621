// Redis Streams workloads for bench/peers (see README.md), with hiredis.
// Prints one line "RESULT <value> <unit>" (latency: "RESULT <p50> <p99> <p999> ms").
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *host = "127.0.0.1", *workload = "produce";
static int port = 6379, size = 256, window = 1, consumers = 1;
static long count = 100000;
static double rate = 10000, duration_s = 10;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, redisContext *c) {
  fprintf(stderr, "redis_bench: %s: %s\n", what, c && c->err ? c->errstr : "unexpected reply");
  exit(1);
}

static redisContext *connect_or_die(void) {
  redisContext *c = redisConnect(host, port);
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
  char *payload = malloc((size_t)size);
  memset(payload, 'x', (size_t)size);
  const double end = now_s() + seconds;
  long sent = 0, acked = 0;
  while (sent < n && now_s() < end) {
    redisAppendCommand(c, "XADD %s * d %b", key, payload, (size_t)size);
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
  const char **argv = malloc(sizeof(char *) * (size_t)(window + 3));
  while (now_s() < cycle_end) {
    redisReply *r = redisCommand(c, "XREADGROUP GROUP g %s COUNT %d STREAMS bench >", name,
                                 window);
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
// consumer XREAD BLOCKs the stream and records now - that time.
static double *lat_ms;
static volatile long lat_n, lat_sent;
static volatile int producing = 1;
static volatile double drain_until;  // the consumer gives up on messages still missing then

static void *lat_consumer(void *arg) {
  (void)arg;
  redisContext *c = connect_or_die();
  char last[64] = "0-0";
  for (;;) {
    redisReply *r = redisCommand(c, "XREAD BLOCK 200 COUNT 1000 STREAMS lat %s", last);
    const double t = now_s();
    if (!r || r->type == REDIS_REPLY_ERROR) die("XREAD", c);
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
      redisReply *entries = r->element[0]->element[1];
      for (size_t i = 0; i < entries->elements; i++) {
        redisReply *fields = entries->element[i]->element[1];
        double sent;
        memcpy(&sent, fields->element[1]->str, sizeof sent);
        if (lat_n < count) lat_ms[lat_n++] = (t - sent) * 1e3;
      }
      snprintf(last, sizeof last, "%s", entries->element[entries->elements - 1]->element[0]->str);
    }
    freeReplyObject(r);
    if (!producing && (lat_n >= lat_sent || t > drain_until)) break;
  }
  redisFree(c);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void latency(void) {
  redisContext *c = connect_or_die();
  must(c, "DEL lat");
  long n = (long)(rate * duration_s);
  if (n > count) n = count;
  count = n;
  lat_ms = calloc((size_t)n, sizeof *lat_ms);
  pthread_t reader;
  pthread_create(&reader, NULL, lat_consumer, NULL);
  char *payload = malloc((size_t)size);
  memset(payload, 'x', (size_t)size);
  const double start = now_s();
  long outstanding = 0;
  for (long i = 0; i < n; i++) {
    const double due = start + (double)i / rate;
    if (now_s() > start + duration_s + 1) break;  // saturated: stop sending, report below
    double t;
    while ((t = now_s()) < due) {
      if (due - t > 200e-6) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
      }
    }
    memcpy(payload, &due, sizeof due);  // the scheduled time: a late send counts as latency
    redisAppendCommand(c, "XADD lat * d %b", payload, (size_t)size);
    int done = 0;
    while (!done)
      if (redisBufferWrite(c, &done) != REDIS_OK) die("write", c);
    lat_sent = i + 1;
    if (++outstanding >= 1000) {
      get_reply_ok(c);
      outstanding--;
    }
  }
  while (outstanding-- > 0) get_reply_ok(c);
  drain_until = now_s() + (duration_s > 2 ? duration_s : 2);
  producing = 0;
  pthread_join(reader, NULL);
  if (lat_n < n) {
    // Saturated: what was not sent or not delivered in time waited at least until now.
    fprintf(stderr, "%s: latency: sent %ld, received %ld of %ld scheduled; the figures are "
            "lower bounds\n", "redis_bench", (long)lat_sent, (long)lat_n, n);
    const double waited_ms = (now_s() - (start + (double)(n - 1) / rate)) * 1e3;
    while (lat_n < n) lat_ms[lat_n++] = waited_ms;
  }
  qsort(lat_ms, (size_t)lat_n, sizeof *lat_ms, cmp_double);
  printf("RESULT %.3f %.3f %.3f ms\n", lat_ms[lat_n / 2], lat_ms[(long)(lat_n * 0.99)],
         lat_ms[(long)(lat_n * 0.999)]);
  free(payload);
  redisFree(c);
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--host")) host = v;
    else if (!strcmp(k, "--port")) port = atoi(v);
    else if (!strcmp(k, "--workload")) workload = v;
    else if (!strcmp(k, "--size")) size = atoi(v);
    else if (!strcmp(k, "--count")) count = atol(v);
    else if (!strcmp(k, "--window")) window = atoi(v);
    else if (!strcmp(k, "--consumers")) consumers = atoi(v);
    else if (!strcmp(k, "--rate")) rate = atof(v);
    else if (!strcmp(k, "--duration-s")) duration_s = atof(v);
    else {
      fprintf(stderr, "redis_bench: unknown flag %s\n", k);
      return 2;
    }
  }
  if (size < (int)sizeof(double) || count < 1 || window < 1 || consumers < 1 || rate <= 0) {
    fprintf(stderr, "redis_bench: bad arguments\n");
    return 2;
  }
  redisContext *c = connect_or_die();
  double start, seconds;
  long done;
  if (!strcmp(workload, "produce")) {
    must(c, "DEL bench");
    start = now_s();
    done = produce(c, "bench", count, window, duration_s);
    seconds = now_s() - start;
  } else if (!strcmp(workload, "stream")) {
    must(c, "DEL bench");
    long filled = produce(c, "bench", count, 1000, duration_s);
    start = now_s();
    done = stream_read(c, filled, start + duration_s);
    seconds = now_s() - start;
    if (done < filled) fprintf(stderr, "redis_bench: read %ld of %ld\n", done, filled);
  } else if (!strcmp(workload, "consume") || !strcmp(workload, "cycle")) {
    must(c, "DEL bench");
    long filled = produce(c, "bench", count, 1000, duration_s);
    must(c, "XGROUP CREATE bench g 0");
    pthread_t threads[64];
    if (consumers > 64) consumers = 64;
    start = now_s();
    cycle_end = start + duration_s;
    for (long i = 0; i < consumers; i++)
      pthread_create(&threads[i], NULL, cycle_consumer, (void *)i);
    for (int i = 0; i < consumers; i++) pthread_join(threads[i], NULL);
    seconds = now_s() - start;
    done = acked_total;
    if (done < filled) fprintf(stderr, "redis_bench: acked %ld of %ld\n", done, filled);
  } else if (!strcmp(workload, "latency")) {
    latency();
    redisFree(c);
    return 0;
  } else {
    fprintf(stderr, "redis_bench: unknown workload %s\n", workload);
    return 2;
  }
  redisFree(c);
  if (done <= 0) {
    fprintf(stderr, "redis_bench: nothing done\n");
    return 1;
  }
  printf("RESULT %.0f msgs/s\n", (double)done / seconds);
  return 0;
}
