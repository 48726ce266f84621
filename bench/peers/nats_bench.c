/* NATS JetStream client for the side-by-side peer benchmark (bench/peers).
 *
 * Build: gcc -O2 -Wall -Wextra -o nats_bench nats_bench.c \
 *            $(pkg-config --cflags --libs libnats) -lpthread
 *
 * Workloads (file storage, stream "BENCH", subject "bench.q"):
 *   produce  js_Publish per message (window 1) or js_PublishAsync with
 *            PublishAsync.MaxPending = window, ended by js_PublishAsyncComplete.
 *   stream   stream read: pull consumer with AckNone, natsSubscription_Fetch
 *            in batches of `window`.
 *   consume  queue receive+ack: work-queue stream, pull consumer with explicit
 *            acks, Fetch in batches of `window`, natsMsg_Ack for each message.
 *   cycle    as consume, with `consumers` threads (one connection each) bound
 *            to the same durable pull consumer.
 *   latency  publisher at a fixed `rate` (js_PublishAsync) and a push consumer
 *            in the same process; latency = delivery time - scheduled send
 *            time, so a stalled publisher is not hidden.
 * stream/consume/cycle fill the stream first (not timed) with `count` messages.
 *
 * Output: exactly one line on stdout, "RESULT <value> msgs/s", or for latency
 * "RESULT <p50> <p99> <p999> ms". Diagnostics go to stderr.
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_common.h"

#define STREAM "BENCH"
#define SUBJECT "bench.q"
#define DURABLE "work"
#define MAX_COUNT 20000000L
#define MAX_CONSUMERS 64

static struct peer_args A = {.host = "127.0.0.1", .workload = "produce", .port = 4222,
                             .size = 256, .window = 1, .consumers = 4, .count = 10000,
                             .rate = 10000, .duration_s = 10.0};

static int fail(const char *what, natsStatus s)
{
    fprintf(stderr, "nats_bench: %s: %s (%s)\n", what, natsStatus_GetText(s),
            nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    return 1;
}

static void parse_args(int argc, char **argv)
{
    peer_parse_args("nats_bench",
                    "usage: nats_bench --host H --port N "
                    "--workload produce|stream|consume|cycle|latency\n" PEER_USAGE_COMMON,
                    argc, argv, &A, NULL);
    if (A.size < 16 || A.size > 1 << 20 || A.count < 1 || A.count > MAX_COUNT || A.window < 1 ||
        A.consumers < 1 || A.consumers > MAX_CONSUMERS || A.rate < 1 || A.duration_s <= 0)
        peer_usage();
}

static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure);

static natsStatus connect(natsConnection **nc, jsCtx **js, int max_pending)
{
    char url[256];
    snprintf(url, sizeof url, "nats://%s:%d", A.host, A.port);
    natsStatus s = natsConnection_ConnectTo(nc, url);
    if (s != NATS_OK)
        return s;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    jo.PublishAsync.MaxPending = max_pending;
    jo.PublishAsync.StallWait = 10000;
    jo.PublishAsync.ErrHandler = on_pub_error;
    return natsConnection_JetStream(js, *nc, &jo);
}

/* Deletes and recreates the stream so each run starts empty. */
static natsStatus fresh_stream(jsCtx *js, jsRetentionPolicy retention)
{
    js_DeleteStream(js, STREAM, NULL, NULL);
    const char *subjects[] = {SUBJECT};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = retention;
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, js, &cfg, NULL, NULL);
    jsStreamInfo_Destroy(si);
    return s;
}

static atomic_long pub_errors;

static void on_pub_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)closure;
    if (atomic_fetch_add(&pub_errors, 1) < 5)
        fprintf(stderr, "nats_bench: publish error: %s\n", pae->ErrText ? pae->ErrText : "?");
}

/* Publishes `n` messages, keeping at most `window` unacknowledged; returns how
 * many were acknowledged before `deadline`, or -1 on error. */
static long publish_n(jsCtx *js, char *buf, long n, int window, int64_t deadline)
{
    long i;
    if (window == 1) {
        for (i = 0; i < n && now_ns() < deadline; i++) {
            jsPubAck *pa = NULL;
            natsStatus s = js_Publish(&pa, js, SUBJECT, buf, A.size, NULL, NULL);
            jsPubAck_Destroy(pa);
            if (s != NATS_OK)
                return fail("js_Publish", s), -1;
        }
        return i;
    }
    for (i = 0; i < n && now_ns() < deadline; i++) {
        natsStatus s = js_PublishAsync(js, SUBJECT, buf, A.size, NULL);
        if (s != NATS_OK)
            return fail("js_PublishAsync", s), -1;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 30000;
    natsStatus s = js_PublishAsyncComplete(js, &po);
    if (s != NATS_OK)
        return fail("js_PublishAsyncComplete", s), -1;
    return atomic_load(&pub_errors) ? -1 : i;
}

/* ---- consumers -------------------------------------------------------- */

struct worker {
    pthread_t thread;
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    int ack;
    long done;
    int failed;
};

static atomic_long consumed;
static atomic_llong end_ns; /* when the last of `count` messages was acked */
static int64_t deadline_ns;

static natsStatus pull_subscribe(struct worker *w)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM;
    so.Consumer = DURABLE; /* bind to the consumer created by add_consumer */
    return js_PullSubscribe(&w->sub, w->js, SUBJECT, DURABLE, NULL, &so, NULL);
}

static natsStatus add_consumer(jsCtx *js, int ack)
{
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = DURABLE;
    cc.AckPolicy = ack ? js_AckExplicit : js_AckNone;
    cc.MaxAckPending = 1000000;
    cc.AckWait = 60LL * 1000000000LL;
    jsConsumerInfo *ci = NULL;
    natsStatus s = js_AddConsumer(&ci, js, STREAM, &cc, NULL, NULL);
    jsConsumerInfo_Destroy(ci);
    return s;
}

static void *pull_loop(void *arg)
{
    struct worker *w = arg;
    while (atomic_load(&consumed) < A.count && now_ns() < deadline_ns) {
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, w->sub, A.window, 200, NULL);
        if (s == NATS_TIMEOUT || s == NATS_NOT_FOUND)
            continue;
        if (s != NATS_OK) {
            fail("natsSubscription_Fetch", s);
            w->failed = 1;
            break;
        }
        for (int i = 0; i < list.Count; i++) {
            if (w->ack && (s = natsMsg_Ack(list.Msgs[i], NULL)) != NATS_OK) {
                fail("natsMsg_Ack", s);
                w->failed = 1;
            }
        }
        w->done += list.Count;
        long before = atomic_fetch_add(&consumed, list.Count);
        if (before < A.count && before + list.Count >= A.count)
            atomic_store(&end_ns, now_ns());
        natsMsgList_Destroy(&list);
    }
    /* acks are fire-and-forget: a flush (PING/PONG) proves the server has them */
    natsStatus s = natsConnection_FlushTimeout(w->nc, 10000);
    if (s != NATS_OK) {
        fail("flush", s);
        w->failed = 1;
    }
    return NULL;
}

static int run_consumers(jsCtx *js, char *buf, int ack, int nworkers)
{
    natsStatus s = fresh_stream(js, ack ? js_WorkQueuePolicy : js_LimitsPolicy);
    if (s != NATS_OK)
        return fail("create stream", s);
    int64_t fill_deadline = now_ns() + (int64_t)(A.duration_s * 4e9) + 30000000000LL;
    if (publish_n(js, buf, A.count, 1000, fill_deadline) != A.count)
        return fprintf(stderr, "nats_bench: could not fill the stream\n"), 1;
    if ((s = add_consumer(js, ack)) != NATS_OK)
        return fail("js_AddConsumer", s);

    struct worker w[MAX_CONSUMERS];
    memset(w, 0, sizeof w);
    int rc = 0;
    for (int i = 0; i < nworkers; i++) {
        w[i].ack = ack;
        if ((s = connect(&w[i].nc, &w[i].js, 1)) != NATS_OK || (s = pull_subscribe(&w[i])) != NATS_OK)
            return fail("consumer connect/subscribe", s);
    }
    int64_t t0 = now_ns();
    deadline_ns = t0 + (int64_t)(A.duration_s * 1e9);
    for (int i = 0; i < nworkers; i++)
        pthread_create(&w[i].thread, NULL, pull_loop, &w[i]);
    for (int i = 0; i < nworkers; i++)
        pthread_join(w[i].thread, NULL);
    int64_t t1 = atomic_load(&end_ns) ? atomic_load(&end_ns) : now_ns();
    long done = 0;
    for (int i = 0; i < nworkers; i++) {
        done += w[i].done;
        rc |= w[i].failed;
        natsSubscription_Destroy(w[i].sub);
        jsCtx_Destroy(w[i].js);
        natsConnection_Destroy(w[i].nc);
    }
    if (rc || done == 0)
        return fprintf(stderr, "nats_bench: consume failed (%ld messages)\n", done), 1;
    peer_print_rate(done, A.count, (double)(t1 - t0) / 1e9);
    return 0;
}

/* ---- latency ---------------------------------------------------------- */

static double *lat_ms;
static atomic_long lat_n;

static void on_latency_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    int64_t sent;
    if (natsMsg_GetDataLength(msg) >= (int)sizeof sent) {
        memcpy(&sent, natsMsg_GetData(msg), sizeof sent);
        long i = atomic_fetch_add(&lat_n, 1);
        if (i < A.count)
            lat_ms[i] = (double)(now_ns() - sent) / 1e6;
    }
    natsMsg_Ack(msg, NULL);
    natsMsg_Destroy(msg);
}

static int run_latency(jsCtx *js, char *buf)
{
    natsStatus s = fresh_stream(js, js_LimitsPolicy);
    if (s != NATS_OK)
        return fail("create stream", s);
    long n = (long)(A.rate * A.duration_s);
    if (n > A.count)
        n = A.count;
    if (n < 1)
        n = 1;
    A.count = n;
    lat_ms = calloc((size_t)n, sizeof *lat_ms);
    if (!lat_ms)
        return fprintf(stderr, "nats_bench: out of memory\n"), 1;

    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.ManualAck = true;
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = 100000;
    natsSubscription *sub = NULL;
    if ((s = js_Subscribe(&sub, js, SUBJECT, on_latency_msg, NULL, NULL, &so, NULL)) != NATS_OK)
        return fail("js_Subscribe", s);

    int64_t t0 = now_ns() + 10000000LL, period = (int64_t)(1e9 / A.rate);
    for (long i = 0; i < n; i++) {
        int64_t due = t0 + i * period;
        sleep_until_ns(due);
        memcpy(buf, &due, sizeof due);
        if ((s = js_PublishAsync(js, SUBJECT, buf, A.size, NULL)) != NATS_OK)
            return fail("js_PublishAsync", s);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 30000;
    if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK)
        return fail("js_PublishAsyncComplete", s);
    for (int64_t end = now_ns() + 30000000000LL; atomic_load(&lat_n) < n && now_ns() < end;)
        nats_Sleep(5);
    /* A callback still running could write lat_ms while it is sorted: wait for them all. */
    if (natsSubscription_Drain(sub) == NATS_OK)
        natsSubscription_WaitForDrainCompletion(sub, 10000);
    else
        natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    long got = atomic_load(&lat_n);
    if (got > n)
        got = n;
    if (got < n) /* every message was published: the missing ones waited at least until now */
        got = peer_fill_missing(lat_ms, got, n, n,
                                (double)(now_ns() - (t0 + (n - 1) * period)) / 1e6);
    return peer_print_latency(lat_ms, got);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    char *buf = peer_payload((size_t)A.size);

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int max_pending = A.window > 1 ? A.window : 1000;
    natsStatus s = connect(&nc, &js, max_pending);
    if (s != NATS_OK)
        return fail("connect", s);

    int rc;
    if (!strcmp(A.workload, "produce")) {
        if ((s = fresh_stream(js, js_LimitsPolicy)) != NATS_OK)
            return fail("create stream", s);
        int64_t t0 = now_ns();
        long done = publish_n(js, buf, A.count, A.window, t0 + (int64_t)(A.duration_s * 1e9));
        int64_t t1 = now_ns();
        rc = done > 0 ? (peer_print_rate(done, A.count, (double)(t1 - t0) / 1e9), 0) : 1;
    } else if (!strcmp(A.workload, "stream")) {
        rc = run_consumers(js, buf, 0, 1);
    } else if (!strcmp(A.workload, "consume")) {
        rc = run_consumers(js, buf, 1, 1);
    } else if (!strcmp(A.workload, "cycle")) {
        rc = run_consumers(js, buf, 1, A.consumers);
    } else if (!strcmp(A.workload, "latency")) {
        rc = run_latency(js, buf);
    } else {
        peer_usage();
    }
    js_DeleteStream(js, STREAM, NULL, NULL);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    free(buf);
    free(lat_ms);
    nats_Close();
    return rc;
}
