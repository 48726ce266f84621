/* RabbitMQ (AMQP 0-9-1) client for the side-by-side peer benchmark (bench/peers).
 *
 * Build: gcc -O2 -Wall -Wextra -o rabbitmq_bench rabbitmq_bench.c \
 *            $(pkg-config --cflags --libs librabbitmq) -lpthread
 *
 * The queue "bench" is deleted and declared durable at the start of each run,
 * as a quorum, classic or stream queue (--queue-type). Messages are published
 * persistent (delivery_mode 2) to the default exchange on a channel in confirm
 * mode; a message counts once its basic.ack (confirm) arrived. --queue-type
 * transient declares a classic queue that is not durable and publishes
 * transient messages (delivery_mode 1): confirmed without touching the disk,
 * gone when the node restarts.
 *
 *   produce  keep at most `window` messages unconfirmed (1 = one at a time).
 *   consume  queue receive+ack: basic.qos prefetch `window`, basic.consume,
 *            basic.ack for each delivery.
 *   stream   as consume, on a stream queue (x-queue-type stream) read from
 *            x-stream-offset "first"; the acks only grant credit there.
 *   cycle    as consume, with `consumers` threads (one connection each).
 *   latency  publisher at a fixed `rate` (confirms, window 1000) and a
 *            consumer in the same process; latency = delivery time - scheduled
 *            send time, so a stalled publisher is not hidden.
 * stream/consume/cycle fill the queue first (not timed) with `count` messages.
 *
 * Output: exactly one line on stdout, "RESULT <value> msgs/s", or for latency
 * "RESULT <p50> <p99> <p999> ms". Diagnostics go to stderr.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "peer_common.h"

#define QUEUE "bench"
#define MAX_COUNT 20000000L
#define MAX_CONSUMERS 64

static struct peer_args A = {.host = "127.0.0.1", .workload = "produce", .port = 5672,
                             .size = 256, .window = 1, .consumers = 4, .count = 10000,
                             .rate = 10000, .duration_s = 10.0};
static const char *queue_type = "quorum";

static int queue_type_flag(const char *flag, const char *value)
{
    if (strcmp(flag, "--queue-type"))
        return 0;
    queue_type = value;
    return 1;
}

static void parse_args(int argc, char **argv)
{
    peer_parse_args("rabbitmq_bench",
                    "usage: rabbitmq_bench --host H --port N "
                    "--workload produce|stream|consume|cycle|latency\n"
                    "  [--queue-type quorum|classic|stream|transient]\n" PEER_USAGE_COMMON,
                    argc, argv, &A, queue_type_flag);
    if (A.size < 16 || A.size > 1 << 20 || A.count < 1 || A.count > MAX_COUNT || A.window < 1 ||
        A.consumers < 1 || A.consumers > MAX_CONSUMERS || A.rate < 1 || A.duration_s <= 0 ||
        (strcmp(queue_type, "quorum") && strcmp(queue_type, "classic") &&
         strcmp(queue_type, "stream") && strcmp(queue_type, "transient")))
        peer_usage();
}

/* Returns 0 when the last RPC succeeded, otherwise prints why and returns 1. */
static int rpc_failed(amqp_connection_state_t c, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return 0;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        fprintf(stderr, "rabbitmq_bench: %s: %s\n", what, amqp_error_string2(r.library_error));
    else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_t *m = r.reply.decoded;
        fprintf(stderr, "rabbitmq_bench: %s: channel closed: %d %.*s\n", what, m->reply_code,
                (int)m->reply_text.len, (char *)m->reply_text.bytes);
    } else
        fprintf(stderr, "rabbitmq_bench: %s: server error (method 0x%08x)\n", what, r.reply.id);
    return 1;
}

static amqp_connection_state_t open_conn(void)
{
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(c);
    struct timeval tv = {10, 0};
    if (!sock || amqp_socket_open_noblock(sock, A.host, A.port, &tv) != AMQP_STATUS_OK) {
        fprintf(stderr, "rabbitmq_bench: cannot connect to %s:%d\n", A.host, A.port);
        amqp_destroy_connection(c);
        return NULL;
    }
    amqp_rpc_reply_t r = amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        fprintf(stderr, "rabbitmq_bench: login failed\n");
        amqp_destroy_connection(c);
        return NULL;
    }
    amqp_channel_open(c, 1);
    if (rpc_failed(c, "channel.open")) {
        amqp_destroy_connection(c);
        return NULL;
    }
    return c;
}

static void close_conn(amqp_connection_state_t c)
{
    if (!c)
        return;
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

static int fresh_queue(amqp_connection_state_t c)
{
    amqp_queue_delete(c, 1, amqp_cstring_bytes(QUEUE), 0, 0);
    if (rpc_failed(c, "queue.delete"))
        return 1;
    amqp_table_entry_t e;
    e.key = amqp_cstring_bytes("x-queue-type");
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    const int transient = !strcmp(queue_type, "transient");
    e.value.value.bytes = amqp_cstring_bytes(transient ? "classic" : queue_type);
    amqp_table_t args = {1, &e};
    amqp_queue_declare(c, 1, amqp_cstring_bytes(QUEUE), 0, !transient, 0, 0, args);
    return rpc_failed(c, "queue.declare");
}

/* ---- publishing with confirms ------------------------------------------ */

struct publisher {
    amqp_connection_state_t c;
    unsigned char *acked; /* acked[tag], tags 1..capacity */
    long capacity, published, confirmed, low;
};

static int pub_init(struct publisher *p, amqp_connection_state_t c, long capacity)
{
    memset(p, 0, sizeof *p);
    p->c = c;
    p->capacity = capacity;
    p->low = 1;
    p->acked = calloc((size_t)capacity + 2, 1);
    if (!p->acked)
        return 1;
    amqp_confirm_select(c, 1);
    return rpc_failed(c, "confirm.select");
}

static void pub_mark(struct publisher *p, long tag)
{
    if (tag >= 1 && tag <= p->published && !p->acked[tag]) {
        p->acked[tag] = 1;
        p->confirmed++;
    }
}

/* Reads confirms until at most `outstanding` messages are unconfirmed. */
static int pub_wait(struct publisher *p, long outstanding, int64_t deadline)
{
    while (p->published - p->confirmed > outstanding) {
        if (now_ns() > deadline) {
            fprintf(stderr, "rabbitmq_bench: timed out waiting for confirms\n");
            return 1;
        }
        amqp_frame_t f;
        struct timeval tv = {1, 0};
        int rc = amqp_simple_wait_frame_noblock(p->c, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            continue;
        if (rc != AMQP_STATUS_OK) {
            fprintf(stderr, "rabbitmq_bench: waiting for confirms: %s\n", amqp_error_string2(rc));
            return 1;
        }
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = f.payload.method.decoded;
            long tag = (long)ack->delivery_tag;
            if (ack->multiple)
                for (long t = p->low; t <= tag && t <= p->published; t++)
                    pub_mark(p, t);
            else
                pub_mark(p, tag);
            while (p->low <= p->published && p->acked[p->low])
                p->low++;
        } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            fprintf(stderr, "rabbitmq_bench: publish nacked by the broker\n");
            return 1;
        } else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                   f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
            fprintf(stderr, "rabbitmq_bench: broker closed the channel\n");
            return 1;
        }
    }
    return 0;
}

static int pub_one(struct publisher *p, const char *buf)
{
    if (p->published >= p->capacity)
        return 1;
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.delivery_mode = strcmp(queue_type, "transient") ? 2 : 1; /* persistent, transient */
    amqp_bytes_t body = {(size_t)A.size, (void *)buf};
    int rc = amqp_basic_publish(p->c, 1, amqp_empty_bytes, amqp_cstring_bytes(QUEUE), 0, 0, &props, body);
    if (rc != AMQP_STATUS_OK) {
        fprintf(stderr, "rabbitmq_bench: basic.publish: %s\n", amqp_error_string2(rc));
        return 1;
    }
    p->published++;
    return 0;
}

/* Publishes up to `n` messages before `deadline` with at most `window`
 * unconfirmed; returns how many were confirmed, or -1 on error. */
static long publish_n(struct publisher *p, const char *buf, long n, int window, int64_t deadline)
{
    for (long i = 0; i < n && now_ns() < deadline; i++)
        if (pub_wait(p, window - 1, deadline + 30000000000LL) || pub_one(p, buf))
            return -1;
    if (pub_wait(p, 0, deadline + 30000000000LL))
        return -1;
    return p->confirmed;
}

/* ---- consuming ---------------------------------------------------------- */

static atomic_long consumed;
static atomic_llong end_ns;
static int64_t deadline_ns;
static double *lat_ms;

struct worker {
    pthread_t thread;
    amqp_connection_state_t c;
    long limit; /* stop once `consumed` reaches it */
    int record_latency;
    long done;
    int failed;
};

static int start_consume(amqp_connection_state_t c)
{
    int prefetch = A.window > 65535 ? 65535 : A.window;
    amqp_basic_qos(c, 1, 0, (uint16_t)prefetch, 0);
    if (rpc_failed(c, "basic.qos"))
        return 1;
    amqp_table_entry_t e; /* a stream is read from its first message */
    e.key = amqp_cstring_bytes("x-stream-offset");
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes("first");
    amqp_table_t args = {1, &e};
    if (strcmp(queue_type, "stream"))
        args = amqp_empty_table;
    amqp_basic_consume(c, 1, amqp_cstring_bytes(QUEUE), amqp_empty_bytes, 0, 0, 0, args);
    return rpc_failed(c, "basic.consume");
}

static void *consume_loop(void *arg)
{
    struct worker *w = arg;
    while (atomic_load(&consumed) < w->limit && now_ns() < deadline_ns) {
        amqp_envelope_t env;
        struct timeval tv = {0, 200000};
        amqp_maybe_release_buffers(w->c);
        amqp_rpc_reply_t r = amqp_consume_message(w->c, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
            continue;
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            amqp_frame_t f; /* a method other than a delivery: only a close matters */
            if (amqp_simple_wait_frame(w->c, &f) != AMQP_STATUS_OK ||
                (f.frame_type == AMQP_FRAME_METHOD &&
                 (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                  f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD))) {
                fprintf(stderr, "rabbitmq_bench: consumer channel closed\n");
                w->failed = 1;
                break;
            }
            continue;
        }
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            fprintf(stderr, "rabbitmq_bench: consume failed\n");
            w->failed = 1;
            break;
        }
        if (w->record_latency && env.message.body.len >= sizeof(int64_t)) {
            int64_t sent;
            memcpy(&sent, env.message.body.bytes, sizeof sent);
            long i = atomic_load(&consumed);
            if (i < w->limit)
                lat_ms[i] = (double)(now_ns() - sent) / 1e6;
        }
        int rc = amqp_basic_ack(w->c, 1, env.delivery_tag, 0);
        amqp_destroy_envelope(&env);
        if (rc != AMQP_STATUS_OK) {
            fprintf(stderr, "rabbitmq_bench: basic.ack: %s\n", amqp_error_string2(rc));
            w->failed = 1;
            break;
        }
        w->done++;
        if (atomic_fetch_add(&consumed, 1) + 1 == w->limit)
            atomic_store(&end_ns, now_ns());
    }
    return NULL;
}

static int run_consumers(amqp_connection_state_t c, const char *buf, int nworkers)
{
    struct publisher p;
    if (fresh_queue(c) || pub_init(&p, c, A.count))
        return 1;
    int64_t fill_deadline = now_ns() + (int64_t)(A.duration_s * 4e9) + 30000000000LL;
    if (publish_n(&p, buf, A.count, 1000, fill_deadline) != A.count)
        return fprintf(stderr, "rabbitmq_bench: could not fill the queue\n"), 1;
    free(p.acked);

    struct worker w[MAX_CONSUMERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < nworkers; i++) {
        w[i].limit = A.count;
        if (!(w[i].c = open_conn()) || start_consume(w[i].c))
            return 1;
    }
    int64_t t0 = now_ns();
    deadline_ns = t0 + (int64_t)(A.duration_s * 1e9);
    for (int i = 0; i < nworkers; i++)
        pthread_create(&w[i].thread, NULL, consume_loop, &w[i]);
    for (int i = 0; i < nworkers; i++)
        pthread_join(w[i].thread, NULL);
    int64_t t1 = atomic_load(&end_ns) ? atomic_load(&end_ns) : now_ns();
    long done = 0;
    int failed = 0;
    for (int i = 0; i < nworkers; i++) {
        done += w[i].done;
        failed |= w[i].failed;
        close_conn(w[i].c); /* channel.close-ok arrives after the acks were handled */
    }
    if (failed || done == 0)
        return fprintf(stderr, "rabbitmq_bench: consume failed (%ld messages)\n", done), 1;
    peer_print_rate(done, A.count, (double)(t1 - t0) / 1e9);
    return 0;
}

/* ---- latency ------------------------------------------------------------ */

static int run_latency(amqp_connection_state_t c, char *buf)
{
    long n = (long)(A.rate * A.duration_s);
    n = n > A.count ? A.count : n < 1 ? 1 : n;
    struct publisher p;
    if (fresh_queue(c) || pub_init(&p, c, n))
        return 1;
    if (!(lat_ms = calloc((size_t)n, sizeof *lat_ms)))
        return 1;
    if (A.window < 1000)
        A.window = 1000; /* consumer prefetch */
    struct worker w;
    memset(&w, 0, sizeof w);
    w.limit = n;
    w.record_latency = 1;
    if (!(w.c = open_conn()) || start_consume(w.c))
        return 1;
    int64_t t0 = now_ns() + 10000000LL, period = (int64_t)(1e9 / A.rate);
    deadline_ns = t0 + (int64_t)(A.duration_s * 1e9) + 30000000000LL;
    pthread_create(&w.thread, NULL, consume_loop, &w);
    int failed = 0;
    long sent = 0;
    for (long i = 0; i < n && !failed; i++) {
        int64_t due = t0 + i * period;
        sleep_until_ns(due);
        memcpy(buf, &due, sizeof due);
        failed = pub_wait(&p, 999, deadline_ns) || pub_one(&p, buf);
        sent += !failed;
    }
    failed = failed || pub_wait(&p, 0, deadline_ns);
    pthread_join(w.thread, NULL);
    close_conn(w.c);
    free(p.acked);
    long got = w.done;
    if (failed || w.failed || got == 0)
        return fprintf(stderr, "rabbitmq_bench: latency run failed\n"), 1;
    if (got < n) /* the missing ones waited at least until now */
        got = peer_fill_missing(lat_ms, got, n, sent,
                                (double)(now_ns() - (t0 + (n - 1) * period)) / 1e6);
    return peer_print_latency(lat_ms, got);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    char *buf = peer_payload((size_t)A.size);
    amqp_connection_state_t c = open_conn();
    if (!c)
        return 1;

    int rc;
    if (!strcmp(A.workload, "produce")) {
        struct publisher p;
        if (fresh_queue(c) || pub_init(&p, c, A.count))
            return 1;
        int64_t t0 = now_ns();
        long done = publish_n(&p, buf, A.count, A.window, t0 + (int64_t)(A.duration_s * 1e9));
        int64_t t1 = now_ns();
        free(p.acked);
        rc = done > 0 ? (peer_print_rate(done, A.count, (double)(t1 - t0) / 1e9), 0) : 1;
    } else if (!strcmp(A.workload, "consume")) {
        rc = run_consumers(c, buf, 1);
    } else if (!strcmp(A.workload, "stream")) {
        queue_type = "stream";
        rc = run_consumers(c, buf, 1);
    } else if (!strcmp(A.workload, "cycle")) {
        rc = run_consumers(c, buf, A.consumers);
    } else if (!strcmp(A.workload, "latency")) {
        rc = run_latency(c, buf);
    } else {
        peer_usage();
    }
    if (rc == 0) {
        amqp_queue_delete(c, 1, amqp_cstring_bytes(QUEUE), 0, 0);
        rpc_failed(c, "queue.delete");
    }
    close_conn(c);
    free(buf);
    free(lat_ms);
    return rc;
}
