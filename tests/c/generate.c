/* Text generation from C: load a model, make a context, and stream the
 * greedy continuation of a prompt piece by piece, the way an app embedding
 * quanta would. tests/test_c_api.py builds it with
 *   cc -std=c11 -Wall -Wextra -Werror -I$(quanta include) generate.c -L$(quanta lib) -lquanta
 * and checks its output against quanta.LLM.generate(PROMPT, max_tokens=N, temperature=0).
 * Usage: generate MODEL PROMPT N
 * The text goes to stdout as it is generated; an error is one line on stderr and exit code 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <quanta.h>

static int fail(const char* what, quanta_status status) {
    fprintf(stderr, "generate: %s: %s: %s\n", what, quanta_status_name(status), quanta_last_error());
    return 1;
}

/* Each piece is whole UTF-8 characters; flushing shows it at once. */
static int print_piece(const char* piece, size_t length, void* user_data) {
    (void)user_data;
    if (fwrite(piece, 1, length, stdout) != length || fflush(stdout) != 0) return 1; /* stdout closed: stop */
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT N\n", argv[0]);
        return 2;
    }
    char* end = NULL;
    errno = 0;
    const long n = strtol(argv[3], &end, 10);
    if (errno != 0 || end == argv[3] || *end != '\0' || n < INT32_MIN || n > INT32_MAX) {
        fprintf(stderr, "generate: N must be a 32-bit integer, not '%s'\n", argv[3]);
        return 1;
    }

    quanta_model* model = NULL;
    quanta_status status = quanta_model_load(argv[1], 0, &model); /* 0: a thread per core */
    if (status != QUANTA_OK) return fail("loading the model", status);
    quanta_context* ctx = NULL;
    status = quanta_context_create(model, NULL, &ctx); /* the defaults: n_ctx 4096, n_batch 512, one sequence */
    quanta_model_free(model);                          /* the context keeps what it needs */
    if (status != QUANTA_OK) return fail("creating a context", status);

    quanta_generate_params params = quanta_generate_params_default();
    params.sampling.temperature = 0.0f; /* greedy */
    params.max_tokens = (int32_t)n;     /* a negative N is the library's to refuse */
    quanta_generate_result result;
    status = quanta_generate(ctx, argv[2], strlen(argv[2]), &params, print_piece, NULL, &result);
    quanta_context_free(ctx);
    if (status != QUANTA_OK) return fail("generating", status);
    if (result.finish == QUANTA_FINISH_CALLBACK) {
        fprintf(stderr, "generate: cannot write to stdout\n");
        return 1;
    }
    return 0;
}
