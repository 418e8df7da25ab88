// Streaming GGUF v3 writer. Metadata and tensor descriptions are declared
// first; then tensor data is streamed in declaration order, one tensor at a
// time, so a converter never holds the whole model in memory. Output goes to
// a temporary file beside the target, renamed into place by finish(): an
// interrupted write never leaves a partial file under the target's name.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gguf/value.h"
#include "quant/types.h"

namespace quanta::gguf {

class Writer {
public:
    explicit Writer(std::string path, size_t alignment = 32);
    ~Writer();  // discards the temporary file unless finish() succeeded
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    // Adds a key; a key may be set once.
    void set(const std::string& key, Value value);
    // Declares a tensor; `ne` is in ggml order (row length first), 1..4 dims.
    void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne);
    // Streams the bytes of the next declared tensor. May be called several
    // times per tensor; the tensor is complete when its byte size is reached.
    void write_tensor_data(const void* data, size_t nbytes);
    // Streams the whole of tensor `name`, which must be the next one and exactly its size.
    void write_tensor(const std::string& name, const void* data, size_t nbytes);
    // Checks every tensor was written in full, then renames into place.
    void finish();
    // Abandons the output now: closes and deletes the temporary file (as the
    // destructor would), for callers whose lifetime the runtime controls.
    void discard();

    size_t n_tensors() const { return tensors_.size(); }
    // Name and byte size of the tensor whose data is expected next.
    const std::string& next_tensor_name() const;

private:
    struct Pending {
        std::string name;
        DType type;
        std::vector<int64_t> ne;
        size_t nbytes;
        uint64_t offset;
    };

    void write_header();
    void start_data();
    void skip_empty_tensors();
    void write_bytes(const void* data, size_t n);
    void pad_to_alignment();

    std::string path_, tmp_path_;
    size_t alignment_;
    std::FILE* out_ = nullptr;
    bool header_written_ = false, finished_ = false;
    uint64_t written_ = 0;  // bytes written to the file so far
    std::vector<KeyValue> kv_;
    std::unordered_set<std::string> keys_;
    std::unordered_map<std::string, size_t> index_;  // tensor name -> declaration order
    std::vector<Pending> tensors_;
    uint64_t data_size_ = 0;
    size_t current_ = 0;       // index of the tensor being streamed
    size_t current_done_ = 0;  // bytes of it written so far
};

}  // namespace quanta::gguf
