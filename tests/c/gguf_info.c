/* Embedding quanta from C: open a GGUF, read metadata, list tensors and
 * dequantize one. Built by tests/test_c_api.py with
 *   cc -std=c11 -Wall -Werror -I$(quanta include) gguf_info.c -L$(quanta lib) -lquanta
 * Usage: gguf_info FILE [TENSOR]
 * Prints "key value" lines that the test compares with gguf-py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <quanta.h>

static int fail(const char* what, quanta_status status) {
    fprintf(stderr, "%s: %s: %s\n", what, quanta_status_name(status), quanta_last_error());
    return 1;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [TENSOR]\n", argv[0]);
        return 2;
    }
    printf("version %s\n", quanta_version());
    printf("cpu_level %s\n", quanta_cpu_level());

    /* Errors come back as codes with a message, never as a crash. */
    quanta_gguf* missing = NULL;
    quanta_status status = quanta_gguf_open("/nonexistent/model.gguf", &missing);
    if (status != QUANTA_ERR_IO || missing != NULL) return fail("opening a missing file", status);
    printf("missing_file_error %s\n", quanta_status_name(status));

    quanta_gguf* file = NULL;
    status = quanta_gguf_open(argv[1], &file);
    if (status != QUANTA_OK) return fail(argv[1], status);

    const char* arch = NULL;
    status = quanta_gguf_get_string(file, "general.architecture", &arch);
    printf("architecture %s\n", status == QUANTA_OK ? arch : "(none)");
    printf("gguf_version %u\n", quanta_gguf_version(file));
    printf("n_metadata %lld\n", (long long)quanta_gguf_n_metadata(file));
    printf("n_tensors %lld\n", (long long)quanta_gguf_n_tensors(file));

    int64_t wrong = 0;
    status = quanta_gguf_get_int(file, "no.such.key", &wrong);
    if (status != QUANTA_ERR_INVALID_ARGUMENT) return fail("reading a missing key", status);

    int64_t index = argc > 2 ? quanta_gguf_find_tensor(file, argv[2]) : 0;
    if (index < 0) {
        fprintf(stderr, "no tensor %s\n", argv[2]);
        quanta_gguf_close(file);
        return 1;
    }
    quanta_tensor_info info;
    status = quanta_gguf_tensor_info(file, index, &info);
    if (status != QUANTA_OK) return fail("tensor info", status);
    int64_t n = 1;
    for (int d = 0; d < info.n_dims; ++d) n *= info.ne[d];
    printf("tensor %s %s %lld", info.name, info.type_name, (long long)info.ne[0]);
    for (int d = 1; d < info.n_dims; ++d) printf("x%lld", (long long)info.ne[d]);
    printf("\n");

    float* values = malloc((size_t)n * sizeof *values);
    if (!values) return 1;
    status = quanta_gguf_tensor_to_f32(file, index, values, (uint64_t)n);
    if (status != QUANTA_OK) return fail("dequantize", status);
    double sum = 0.0, sum_abs = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        sum += values[i];
        sum_abs += fabs(values[i]);
    }
    printf("sum %.17g\nsum_abs %.17g\nfirst %.9g\n", sum, sum_abs, values[0]);
    free(values);
    quanta_gguf_close(file);
    return 0;
}
