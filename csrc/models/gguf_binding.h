// Reading a model out of a GGUF file: metadata keys with defaults and ranges,
// and weights bound by name with their shapes and types checked. Every model
// (the LLMs, the Stable Diffusion parts) binds through these, so a missing
// key or a misshapen tensor is reported the same way, naming the file and
// the key or tensor, before any graph is built.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/reader.h"

namespace quanta::models {

using Weight = const gguf::TensorInfo*;  // null: an optional tensor the file does not have

// Metadata keys under `prefix` ("llama.", "sd.").
class MetadataReader {
public:
    MetadataReader(const gguf::File& file, std::string prefix) : file_(file), prefix_(std::move(prefix)) {}

    const gguf::Value* find(const std::string& key) const { return file_.find(prefix_ + key); }
    int64_t integer(const std::string& key, int64_t fallback, bool required, int64_t min = 1,
                    int64_t max = 1 << 24) const;
    // A positive finite number.
    float real(const std::string& key, float fallback) const;
    std::string text(const std::string& key, const std::string& fallback) const;
    // A numeric array (empty when absent); each element must be finite.
    std::vector<double> numbers(const std::string& key) const;

private:
    [[noreturn]] void bad(const std::string& key, const std::string& why) const;
    const gguf::File& file_;
    std::string prefix_;
};

class Binder {
public:
    explicit Binder(const gguf::File& file) : file_(file) {}

    // `ne` in ggml order (row length first); a 0 entry accepts any size.
    // 1-D tensors (norms, biases) must be f32; others any type quanta computes with.
    Weight get(const std::string& name, std::vector<int64_t> ne, bool required = true) const;
    bool has(const std::string& name) const { return file_.find_tensor(name) != nullptr; }
    // Size `d` of a tensor that must exist.
    int64_t dim(const std::string& name, int d) const;
    const gguf::File& file() const { return file_; }

private:
    const gguf::File& file_;
};

std::string dims_string(const int64_t* ne, int n);

}  // namespace quanta::models
