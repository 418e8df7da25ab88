// GGUF v2/v3 reader. The file is memory-mapped and tensor data is used in
// place (zero-copy). Every count, length, type and offset is checked against
// the file size before it is used, so a corrupt file yields a FormatError
// naming the field and its byte position, never a crash or a huge allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "gguf/value.h"
#include "quant/types.h"

namespace quanta::gguf {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr size_t kDefaultAlignment = 32;
constexpr int kMaxDims = 4;

struct TensorInfo {
    std::string name;
    DType type = DType::F32;
    int n_dims = 0;
    int64_t ne[kMaxDims] = {1, 1, 1, 1};  // ggml order: ne[0] is the row length
    uint64_t offset = 0;                   // relative to the data section
    size_t nbytes = 0;
    const uint8_t* data = nullptr;         // points into the mapping

    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
};

class File {
public:
    // Maps `path` read-only. Throws Io if it cannot be opened, Format if malformed.
    static std::shared_ptr<File> open(const std::string& path);
    // Parses a copy of `size` bytes; `label` names it in error messages.
    static std::shared_ptr<File> from_bytes(const void* data, size_t size, const std::string& label);

    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    const std::string& label() const { return label_; }
    uint32_t version() const { return version_; }
    size_t alignment() const { return alignment_; }
    size_t data_offset() const { return data_offset_; }
    size_t size() const { return size_; }

    // The tensor data section (every TensorInfo::offset is relative to it);
    // empty when the file has no tensors.
    const uint8_t* tensor_data() const { return bytes_ + data_offset_; }
    size_t tensor_data_size() const { return tensors_.empty() ? 0 : size_ - data_offset_; }

    // Lets the kernel drop the mapped pages of tensor bytes [begin, begin + bytes)
    // (rounded out to whole pages) from this process's memory; touching them
    // again reads them back from the page cache or the file. The bytes never
    // change. A no-op for from_bytes copies.
    void drop_pages(const uint8_t* begin, size_t bytes) const;

    const std::vector<KeyValue>& metadata() const { return kv_; }
    const Value* find(const std::string& key) const;
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(const std::string& name) const;

    // Convenience lookups that throw Model errors naming the key when absent or mistyped.
    std::string get_string(const std::string& key) const;
    int64_t get_int(const std::string& key) const;

private:
    File() = default;
    void parse();

    std::string label_;
    const uint8_t* bytes_ = nullptr;
    size_t size_ = 0;
    void* mapping_ = nullptr;       // mmap'ed region (open) or null
    std::vector<uint8_t> owned_;    // copied bytes (from_bytes)

    uint32_t version_ = 0;
    size_t alignment_ = kDefaultAlignment;
    size_t data_offset_ = 0;
    std::vector<KeyValue> kv_;
    std::unordered_map<std::string, size_t> kv_index_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace quanta::gguf
