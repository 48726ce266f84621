// Helpers every peer client (bench/peers/*_bench.c) shares: the clock, send pacing, the
// payload, the common flags and the RESULT lines that run.sh and the peer scripts parse.
// Each client is one translation unit built by a single gcc command, hence static functions
// in a header rather than a library.
#ifndef SPOOL_BENCH_PEERS_PEER_COMMON_H
#define SPOOL_BENCH_PEERS_PEER_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---- clock and pacing -------------------------------------------------------------------------

// CLOCK_MONOTONIC: rates and latencies must not jump with NTP adjustments of the wall clock.
static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_until_ns(int64_t t) {
  int64_t d = t - now_ns();
  if (d <= 0) return;
  struct timespec ts = {d / 1000000000LL, d % 1000000000LL};
  nanosleep(&ts, NULL);
}

// Naps in 100 us steps and spins through the last 200 us, so that a send is not late by a
// timer's wakeup slack (at 10k msgs/s sends are only 100 us apart).
static inline void spin_until_s(double due) {
  double t;
  while ((t = now_s()) < due) {
    if (due - t > 200e-6) {
      struct timespec ts = {0, 100000};
      nanosleep(&ts, NULL);
    }
  }
}

// ---- flags ------------------------------------------------------------------------------------

// The flags every client takes (README.md, "C clients"). Each client sets its own defaults and
// checks its own limits: they depend on the broker.
struct peer_args {
  const char *host, *workload;
  int port, size, window, consumers;
  long count;
  double rate, duration_s;
};

#define PEER_USAGE_COMMON \
  "  [--size B] [--count N] [--window W] [--consumers C] [--rate R] [--duration-s S]\n"

static const char* peer_prog = "peer_bench";  // prefixes every diagnostic
static const char* peer_usage_text = "";

static inline _Noreturn void peer_usage(void) {
  fputs(peer_usage_text, stderr);
  exit(2);
}

// Fills `a` from "--flag value" pairs. A flag that is not common goes to `extra_flag` (may be
// NULL), which returns nonzero when it took it. Exits with status 2 on a flag nobody takes or a
// flag without its value: a silently ignored flag would make a run measure something else.
static inline void peer_parse_args(const char* prog, const char* usage, int argc, char** argv,
                                   struct peer_args* a,
                                   int (*extra_flag)(const char* flag, const char* value)) {
  peer_prog = prog;
  peer_usage_text = usage;
  for (int i = 1; i < argc; i += 2) {
    const char* k = argv[i];
    if (i + 1 >= argc) {
      fprintf(stderr, "%s: flag %s has no value\n", prog, k);
      peer_usage();
    }
    const char* v = argv[i + 1];
    if (!strcmp(k, "--host"))
      a->host = v;
    else if (!strcmp(k, "--port"))
      a->port = atoi(v);
    else if (!strcmp(k, "--workload"))
      a->workload = v;
    else if (!strcmp(k, "--size"))
      a->size = atoi(v);
    else if (!strcmp(k, "--count"))
      a->count = atol(v);
    else if (!strcmp(k, "--window"))
      a->window = atoi(v);
    else if (!strcmp(k, "--consumers"))
      a->consumers = atoi(v);
    else if (!strcmp(k, "--rate"))
      a->rate = atof(v);
    else if (!strcmp(k, "--duration-s"))
      a->duration_s = atof(v);
    else if (!extra_flag || !extra_flag(k, v)) {
      fprintf(stderr, "%s: unknown flag %s\n", prog, k);
      peer_usage();
    }
  }
}

// ---- payload ----------------------------------------------------------------------------------

// A message body of `size` bytes; the latency workloads overwrite its first 8 bytes with the
// scheduled send time.
static inline char* peer_payload(size_t size) {
  char* p = malloc(size);
  if (!p) {
    fprintf(stderr, "%s: out of memory\n", peer_prog);
    exit(1);
  }
  memset(p, 'x', size);
  return p;
}

// ---- results ----------------------------------------------------------------------------------

// The throughput line. A shortfall of `done` against `wanted` goes to stderr only: the peer
// scripts read nothing but the rate.
static inline void peer_print_rate(long done, long wanted, double seconds) {
  if (done < wanted)
    fprintf(stderr, "%s: time bound hit after %ld of %ld messages\n", peer_prog, done, wanted);
  printf("RESULT %.0f msgs/s\n", seconds > 0 ? (double)done / seconds : 0.0);
}

static inline int peer_cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

// The sample at fraction `q` of the sorted `v[0..n)`, at index floor(q * n) as in earlier runs,
// so that figures stay comparable with them.
static inline double peer_pct(const double* v, long n, double q) {
  long i = (long)(q * (double)n);
  return v[i >= n ? n - 1 : i];
}

// Counts each of the messages still missing from `ms[got..n)` at `waited_ms`, the time waited
// for it so far: dropping them would report a saturated peer's latency from the lucky few that
// arrived. Returns n.
static inline long peer_fill_missing(double* ms, long got, long n, long sent, double waited_ms) {
  fprintf(stderr,
          "%s: latency: sent %ld, received %ld of %ld scheduled; the figures are lower bounds\n",
          peer_prog, sent, got, n);
  while (got < n)
    ms[got++] = waited_ms;
  return n;
}

// Sorts `ms[0..n)` in place and prints "RESULT <p50> <p99> <p999> ms". Returns 1, with nothing
// on stdout, when there is no sample.
static inline int peer_print_latency(double* ms, long n) {
  if (n < 1) {
    fprintf(stderr, "%s: no latency samples\n", peer_prog);
    return 1;
  }
  qsort(ms, (size_t)n, sizeof *ms, peer_cmp_double);
  printf("RESULT %.3f %.3f %.3f ms\n", peer_pct(ms, n, 0.5), peer_pct(ms, n, 0.99),
         peer_pct(ms, n, 0.999));
  return 0;
}

#endif  // SPOOL_BENCH_PEERS_PEER_COMMON_H
