/* The C API's threading rules, exercised with pthreads: quanta_cancel from
 * another thread (while a generate streams, and while it evaluates a long
 * prompt), a callback that stops generation, the busy check on overlapping
 * calls, and two contexts of one model generating on two threads at once.
 * tests/test_c_api.py builds it like generate.c (plus -pthread), runs
 *   threads MODEL
 * and checks the "key value" lines it prints (texts as hex, so any byte survives). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <quanta.h>

static quanta_model* model;

static void die(const char* what, quanta_status status) {
    fprintf(stderr, "threads: %s: %s: %s\n", what, quanta_status_name(status), quanta_last_error());
    exit(1);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static quanta_context* new_context(int32_t n_batch) {
    quanta_context_params cp = quanta_context_params_default();
    cp.n_ctx = 2048;
    cp.n_batch = n_batch;
    quanta_context* ctx = NULL;
    quanta_status status = quanta_context_create(model, &cp, &ctx);
    if (status != QUANTA_OK) die("context", status);
    return ctx;
}

static quanta_generate_params greedy(int32_t max_tokens) {
    quanta_generate_params p = quanta_generate_params_default();
    p.sampling.temperature = 0.0f;
    p.max_tokens = max_tokens;
    return p;
}

static void print_hex(const char* key, const char* text, size_t n) {
    printf("%s ", key);
    for (size_t i = 0; i < n; ++i) printf("%02x", (unsigned char)text[i]);
    printf("%s\n", n ? "" : "-");
}

static int count_pieces(const char* piece, size_t length, void* user_data) {
    (void)piece, (void)length;
    ++*(int*)user_data;
    return 0;
}

/* ---- cancel from another thread while pieces stream ------------------------- */

/* The first piece hands over to the canceller and waits until it has called
 * quanta_cancel, so the generate is certainly running when cancel comes. */
struct handshake {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int stage; /* 0 start, 1 first piece seen, 2 cancel called */
    int pieces;
    quanta_context* ctx;
};

static int piece_then_wait(const char* piece, size_t length, void* user_data) {
    (void)piece, (void)length;
    struct handshake* h = user_data;
    pthread_mutex_lock(&h->mutex);
    if (++h->pieces == 1) {
        h->stage = 1;
        pthread_cond_broadcast(&h->cond);
        while (h->stage != 2) pthread_cond_wait(&h->cond, &h->mutex);
    }
    pthread_mutex_unlock(&h->mutex);
    return 0;
}

static void* canceller(void* arg) {
    struct handshake* h = arg;
    pthread_mutex_lock(&h->mutex);
    while (h->stage != 1) pthread_cond_wait(&h->cond, &h->mutex);
    quanta_status status = quanta_cancel(h->ctx);
    if (status != QUANTA_OK) die("cancel", status);
    h->stage = 2;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->mutex);
    return NULL;
}

static void cancel_while_streaming(void) {
    struct handshake h = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, new_context(512)};
    pthread_t t;
    pthread_create(&t, NULL, canceller, &h);
    const char* prompt = "Count from 1 to 100, one number per line:";
    quanta_generate_params p = greedy(200);
    quanta_generate_result r;
    quanta_status status = quanta_generate(h.ctx, prompt, strlen(prompt), &p, piece_then_wait, &h, &r);
    pthread_join(t, NULL);
    printf("stream_cancel_status %d\nstream_cancel_finish %d\nstream_cancel_pieces %d\nstream_cancel_generated %d\n",
           (int)status, (int)r.finish, h.pieces, (int)r.n_generated_tokens);
    printf("stream_cancel_error %s\n", quanta_last_error());

    /* A cancel with nothing running does nothing: the next generate runs to its end. */
    status = quanta_cancel(h.ctx);
    if (status != QUANTA_OK) die("idle cancel", status);
    int pieces = 0;
    p = greedy(5);
    status = quanta_generate(h.ctx, prompt, strlen(prompt), &p, count_pieces, &pieces, &r);
    printf("after_idle_cancel_status %d\nafter_idle_cancel_finish %d\nafter_idle_cancel_generated %d\n", (int)status,
           (int)r.finish, (int)r.n_generated_tokens);
    quanta_context_free(h.ctx);
}

/* ---- cancel during a long prompt ------------------------------------------------ */

struct delayed {
    quanta_context* ctx;
    double delay_ms;
    double cancelled_at;
};

static void* cancel_later(void* arg) {
    struct delayed* d = arg;
    struct timespec ts = {(time_t)(d->delay_ms / 1e3), (long)((d->delay_ms - (time_t)(d->delay_ms / 1e3) * 1e3) * 1e6)};
    nanosleep(&ts, NULL);
    d->cancelled_at = now_ms();
    quanta_cancel(d->ctx);
    return NULL;
}

static void cancel_during_prompt(void) {
    /* ~300 tokens in chunks of 16: a cancel only waits for the chunk being evaluated. */
    static char prompt[2048];
    prompt[0] = '\0';
    for (int i = 0; i < 75; ++i) strcat(prompt, "one two three four ");
    quanta_generate_params p = greedy(1);
    quanta_generate_result r;
    int pieces = 0;

    quanta_context* ctx = new_context(16);
    double t0 = now_ms();
    quanta_status status = quanta_generate(ctx, prompt, strlen(prompt), &p, count_pieces, &pieces, &r);
    const double full_ms = now_ms() - t0;
    if (status != QUANTA_OK) die("long prompt", status);
    printf("prompt_tokens %d\nprompt_full_ms %.1f\n", (int)r.n_prompt_tokens, full_ms);
    quanta_context_free(ctx);

    ctx = new_context(16);
    struct delayed d = {ctx, full_ms / 4, 0};
    pthread_t t;
    pieces = 0;
    pthread_create(&t, NULL, cancel_later, &d);
    status = quanta_generate(ctx, prompt, strlen(prompt), &p, count_pieces, &pieces, &r);
    const double returned_at = now_ms();
    pthread_join(t, NULL);
    printf("prompt_cancel_status %d\nprompt_cancel_finish %d\nprompt_cancel_pieces %d\nprompt_cancel_latency_ms %.1f\n",
           (int)status, (int)r.finish, pieces, returned_at - d.cancelled_at);
    printf("prompt_cancel_cached %d\n", (int)quanta_context_n_tokens(ctx, 0));
    quanta_context_free(ctx);
}

/* ---- the callback: stopping, and what it may call --------------------------------- */

struct inside {
    quanta_context* ctx;
    int pieces;
    quanta_status eval_status;
    char eval_error[256];
    quanta_status tokenize_status;
    size_t tokenize_count;
};

static int stop_after_three(const char* piece, size_t length, void* user_data) {
    struct inside* s = user_data;
    if (s->pieces++ == 0) {
        const int32_t token = 0;
        s->eval_status = quanta_eval(s->ctx, 0, &token, 1); /* overlaps the running generate */
        snprintf(s->eval_error, sizeof s->eval_error, "%s", quanta_last_error());
        int32_t ids[64];
        s->tokenize_status = quanta_tokenize(model, piece, length, 0, 0, ids, 64, &s->tokenize_count);
    }
    return s->pieces == 3;
}

static void callback_rules(void) {
    struct inside s = {new_context(512), 0, QUANTA_OK, "", QUANTA_OK, 0};
    const char* prompt = "Count from 1 to 100, one number per line:";
    quanta_generate_params p = greedy(100);
    quanta_generate_result r;
    quanta_status status = quanta_generate(s.ctx, prompt, strlen(prompt), &p, stop_after_three, &s, &r);
    printf("callback_stop_status %d\ncallback_stop_finish %d\ncallback_stop_pieces %d\n", (int)status, (int)r.finish,
           s.pieces);
    printf("busy_status %d\nbusy_error %s\n", (int)s.eval_status, s.eval_error);
    printf("tokenize_in_callback_status %d\ntokenize_in_callback_count %d\n", (int)s.tokenize_status,
           (int)s.tokenize_count);
    quanta_context_free(s.ctx);
}

/* ---- two contexts of one model on two threads ------------------------------------ */

struct job {
    const char* prompt;
    char text[4096];
    size_t length;
    quanta_status status;
};

static int append(const char* piece, size_t length, void* user_data) {
    struct job* j = user_data;
    if (j->length + length >= sizeof j->text) return 1;
    memcpy(j->text + j->length, piece, length);
    j->length += length;
    return 0;
}

static void* run_job(void* arg) {
    struct job* j = arg;
    quanta_context* ctx = new_context(512);
    quanta_generate_params p = greedy(24);
    j->status = quanta_generate(ctx, j->prompt, strlen(j->prompt), &p, append, j, NULL);
    quanta_context_free(ctx);
    return NULL;
}

static void two_contexts(void) {
    struct job jobs[2] = {{"def fib(n):", "", 0, QUANTA_OK}, {"The capital of France is", "", 0, QUANTA_OK}};
    pthread_t t[2];
    for (int i = 0; i < 2; ++i) pthread_create(&t[i], NULL, run_job, &jobs[i]);
    for (int i = 0; i < 2; ++i) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; ++i) {
        char key[32];
        printf("concurrent_%d_status %d\n", i, (int)jobs[i].status);
        snprintf(key, sizeof key, "concurrent_%d_text", i);
        print_hex(key, jobs[i].text, jobs[i].length);
    }
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    quanta_status status = quanta_model_load(argv[1], 0, &model);
    if (status != QUANTA_OK) die("loading the model", status);
    cancel_while_streaming();
    callback_rules();
    two_contexts();
    cancel_during_prompt();
    quanta_model_free(model);
    return 0;
}
