#include "gguf/writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "gguf/reader.h"

namespace quanta::gguf {
namespace {

size_t align_up(size_t x, size_t a) { return x + (a - x % a) % a; }

std::string temp_path_for(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
    const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    return dir + "." + base + "." + std::to_string(getpid()) + ".partial";
}

// Serialises values into a byte buffer in GGUF encoding.
class Encoder {
public:
    std::vector<uint8_t> bytes;

    template <typename T>
    void put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        bytes.insert(bytes.end(), p, p + sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
    }
    void put_array_body(const Value& v) {
        put<uint32_t>(static_cast<uint32_t>(v.elem));
        put<uint64_t>(v.count);
        if (v.elem == ValueType::String) {
            for (const auto& s : v.strings) put_string(s);
        } else if (v.elem == ValueType::Array) {
            for (const auto& a : v.arrays) put_array_body(a);
        } else {
            bytes.insert(bytes.end(), v.raw.begin(), v.raw.end());
        }
    }
    void put_value(const Value& v) {
        if (v.type == ValueType::String) put_string(v.str);
        else if (v.type == ValueType::Array) put_array_body(v);
        else bytes.insert(bytes.end(), v.raw.begin(), v.raw.end());
    }
};

}  // namespace

Writer::Writer(std::string path, size_t alignment) : path_(std::move(path)), alignment_(alignment) {
    QUANTA_CHECK_ARG(alignment_ > 0 && (alignment_ & (alignment_ - 1)) == 0, "alignment must be a power of two");
    tmp_path_ = temp_path_for(path_);
    out_ = std::fopen(tmp_path_.c_str(), "wb");
    if (!out_) fail(ErrorKind::Io, path_ + ": cannot create " + tmp_path_ + ": " + std::strerror(errno));
    if (alignment_ != kDefaultAlignment) set("general.alignment", Value::make_u32((uint32_t)alignment_));
}

Writer::~Writer() { discard(); }

void Writer::discard() {
    if (out_) std::fclose(out_);
    out_ = nullptr;
    if (!finished_) std::remove(tmp_path_.c_str());
    finished_ = true;
}

void Writer::set(const std::string& key, Value value) {
    QUANTA_CHECK_ARG(!header_written_, "metadata must be set before tensor data is written");
    QUANTA_CHECK_ARG(!key.empty(), "metadata key must not be empty");
    QUANTA_CHECK_ARG(keys_.insert(key).second, "metadata key '" + key + "' is set twice");
    kv_.push_back({key, std::move(value)});
}

void Writer::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne) {
    QUANTA_CHECK_ARG(!header_written_, "tensors must be declared before tensor data is written");
    QUANTA_CHECK_ARG(!name.empty() && name.size() <= 1024, "tensor name must have 1..1024 bytes");
    QUANTA_CHECK_ARG(index_.emplace(name, tensors_.size()).second, "tensor '" + name + "' is declared twice");
    QUANTA_CHECK_ARG(!ne.empty() && ne.size() <= (size_t)kMaxDims, "tensor '" + name + "' must have 1..4 dimensions");
    int64_t rows = 1;
    for (size_t i = 0; i < ne.size(); ++i) {
        QUANTA_CHECK_ARG(ne[i] >= 0, "tensor '" + name + "' has a negative dimension");
        if (i > 0) rows *= ne[i];
    }
    const size_t nbytes = row_bytes(type, ne[0]) * (size_t)rows;
    tensors_.push_back({name, type, ne, nbytes, data_size_});
    data_size_ = align_up(data_size_ + nbytes, alignment_);
}

const std::string& Writer::next_tensor_name() const {
    QUANTA_CHECK_ARG(current_ < tensors_.size(), "all declared tensors have been written");
    return tensors_[current_].name;
}

void Writer::write_bytes(const void* data, size_t n) {
    if (n && std::fwrite(data, 1, n, out_) != n)
        fail(ErrorKind::Io, path_ + ": write failed: " + std::strerror(errno));
    written_ += n;
}

void Writer::pad_to_alignment() {
    static const uint8_t zeros[256] = {};
    size_t pad = align_up(written_, alignment_) - written_;
    while (pad > 0) {
        const size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        write_bytes(zeros, n);
        pad -= n;
    }
}

void Writer::write_header() {
    Encoder e;
    e.put<uint32_t>(kMagic);
    e.put<uint32_t>(3);
    e.put<uint64_t>(tensors_.size());
    e.put<uint64_t>(kv_.size());
    for (const auto& kv : kv_) {
        e.put_string(kv.key);
        e.put<uint32_t>(static_cast<uint32_t>(kv.value.type));
        e.put_value(kv.value);
    }
    for (const auto& t : tensors_) {
        e.put_string(t.name);
        e.put<uint32_t>((uint32_t)t.ne.size());
        for (int64_t d : t.ne) e.put<uint64_t>((uint64_t)d);
        e.put<uint32_t>(static_cast<uint32_t>(t.type));
        e.put<uint64_t>(t.offset);
    }
    write_bytes(e.bytes.data(), e.bytes.size());
    pad_to_alignment();
    header_written_ = true;
}

void Writer::start_data() {
    if (!header_written_) {
        write_header();
        skip_empty_tensors();
    }
}

// Empty tensors occupy no bytes, so the stream moves past them by itself.
void Writer::skip_empty_tensors() {
    while (current_ < tensors_.size() && tensors_[current_].nbytes == 0) ++current_;
}

void Writer::write_tensor_data(const void* data, size_t nbytes) {
    QUANTA_CHECK_ARG(!finished_, "writer is already finished");
    start_data();
    if (nbytes == 0) return;
    QUANTA_CHECK_ARG(current_ < tensors_.size(), "more tensor data than declared tensors");
    const Pending& t = tensors_[current_];
    QUANTA_CHECK_ARG(current_done_ + nbytes <= t.nbytes,
                     "tensor '" + t.name + "' expects " + std::to_string(t.nbytes) + " bytes, got " +
                         std::to_string(current_done_ + nbytes));
    write_bytes(data, nbytes);
    current_done_ += nbytes;
    if (current_done_ == t.nbytes) {
        pad_to_alignment();
        ++current_;
        current_done_ = 0;
        skip_empty_tensors();
    }
}

void Writer::write_tensor(const std::string& name, const void* data, size_t nbytes) {
    start_data();
    const auto it = index_.find(name);
    QUANTA_CHECK_ARG(it != index_.end(), "tensor '" + name + "' was never declared");
    const Pending& t = tensors_[it->second];
    QUANTA_CHECK_ARG(nbytes == t.nbytes, "tensor '" + name + "' expects " + std::to_string(t.nbytes) +
                                             " bytes, got " + std::to_string(nbytes));
    if (t.nbytes == 0) return;
    QUANTA_CHECK_ARG(it->second == current_ && current_done_ == 0,
                     "tensor '" + name + "' is written out of order (next is '" + next_tensor_name() + "')");
    write_tensor_data(data, nbytes);
}

void Writer::finish() {
    QUANTA_CHECK_ARG(!finished_, "writer is already finished");
    start_data();
    QUANTA_CHECK_ARG(current_ == tensors_.size(),
                     "tensor '" + (current_ < tensors_.size() ? tensors_[current_].name : std::string()) +
                         "' and those after it were declared but never written");
    if (std::fflush(out_) != 0 || fsync(fileno(out_)) != 0)
        fail(ErrorKind::Io, path_ + ": flush failed: " + std::strerror(errno));
    const int rc = std::fclose(out_);
    out_ = nullptr;
    if (rc != 0) fail(ErrorKind::Io, path_ + ": close failed: " + std::strerror(errno));
    if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
        fail(ErrorKind::Io, path_ + ": cannot rename " + tmp_path_ + " into place: " + std::strerror(errno));
    finished_ = true;
}

}  // namespace quanta::gguf
