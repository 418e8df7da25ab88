#include "gguf/reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.h"

namespace quanta::gguf {
namespace {

constexpr int kMaxArrayNesting = 8;
constexpr size_t kMaxTensorNameBytes = 1024;
// A count is only known to fit in the bytes left, and an item in memory is up
// to ten times its smallest encoding (a Value is 120 bytes, an empty nested
// array 12), once per nesting level: reserving a claimed count in full would
// let a 64 MiB file ask for 5 GiB. Past this many items vectors grow as usual.
constexpr uint64_t kMaxReserve = 1 << 16;

template <typename Vector>
void reserve_claimed(Vector& v, uint64_t count) {
    v.reserve((size_t)std::min(count, kMaxReserve));
}

// Strict UTF-8 as Python decodes it: no overlong forms, surrogates or code
// points past U+10FFFF. Keys and tensor names become str in Python, so one
// that is not UTF-8 must fail here as a FormatError, not later as a decode error.
bool is_utf8(const std::string& s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const unsigned c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;  // overlong
            if (c == 0xED) hi = 0x9F;  // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;  // overlong
            if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
        } else {
            return false;  // a continuation byte, or a lead byte of an overlong or too large form
        }
        if (len > n - i || p[i + 1] < lo || p[i + 1] > hi) return false;
        for (size_t k = 2; k < len; ++k)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
        i += len;
    }
    return true;
}

// A bounds-checked little-endian cursor over the file's bytes.
class Cursor {
public:
    Cursor(const std::string& label, const uint8_t* data, size_t size) : label_(label), data_(data), size_(size) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }

    [[noreturn]] void error(const std::string& what, size_t at) const {
        fail(ErrorKind::Format, label_ + ": " + what + " (at byte " + std::to_string(at) + ")");
    }

    void need(size_t n, const char* what) const {
        if (n > remaining())
            error(std::string("file truncated while reading ") + what + ": needs " + std::to_string(n) +
                      " bytes, " + std::to_string(remaining()) + " left",
                  pos_);
    }

    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    const uint8_t* take(size_t n, const char* what) {
        need(n, what);
        const uint8_t* p = data_ + pos_;
        pos_ += n;
        return p;
    }

    std::string read_string(const char* what) {
        const size_t at = pos_;
        const uint64_t len = read<uint64_t>(what);
        if (len > remaining())
            error(std::string(what) + " length " + std::to_string(len) + " exceeds the " +
                      std::to_string(remaining()) + " bytes left in the file",
                  at);
        const uint8_t* p = take((size_t)len, what);
        return std::string(reinterpret_cast<const char*>(p), (size_t)len);
    }

    // Checks that `count` items of at least `min_item_bytes` each can fit in
    // what is left, so no loop or allocation trusts an absurd count.
    void check_count(uint64_t count, size_t min_item_bytes, const std::string& what, size_t at) const {
        if (count > remaining() / min_item_bytes)
            error(what + " " + std::to_string(count) + " cannot fit in the " + std::to_string(remaining()) +
                      " bytes left in the file",
                  at);
    }

private:
    const std::string& label_;
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

Value read_value(Cursor& c, ValueType type, const std::string& key, int depth);

Value read_array(Cursor& c, const std::string& key, int depth) {
    const size_t at = c.pos();
    if (depth >= kMaxArrayNesting) c.error("key '" + key + "': arrays nested too deeply", at);
    const uint32_t elem_id = c.read<uint32_t>("array element type");
    if (!value_type_name(elem_id))
        c.error("key '" + key + "': unknown array element type " + std::to_string(elem_id), at);
    const ValueType elem = static_cast<ValueType>(elem_id);
    const size_t count_at = c.pos();
    const uint64_t count = c.read<uint64_t>("array length");

    Value v;
    v.type = ValueType::Array;
    v.elem = elem;
    v.count = count;
    if (elem == ValueType::String) {
        c.check_count(count, 8, "key '" + key + "': string array length", count_at);
        reserve_claimed(v.strings, count);
        for (uint64_t i = 0; i < count; ++i) v.strings.push_back(c.read_string("array string"));
    } else if (elem == ValueType::Array) {
        c.check_count(count, 12, "key '" + key + "': nested array length", count_at);
        reserve_claimed(v.arrays, count);
        for (uint64_t i = 0; i < count; ++i) v.arrays.push_back(read_array(c, key, depth + 1));
    } else {
        const size_t elem_size = value_type_size(elem);
        c.check_count(count, elem_size, "key '" + key + "': array length", count_at);
        const uint8_t* p = c.take((size_t)count * elem_size, "array data");
        v.raw.assign(p, p + (size_t)count * elem_size);
    }
    return v;
}

Value read_value(Cursor& c, ValueType type, const std::string& key, int depth) {
    if (type == ValueType::String) return Value::make_string(c.read_string("string value"));
    if (type == ValueType::Array) return read_array(c, key, depth);
    const size_t n = value_type_size(type);
    Value v;
    v.type = type;
    const uint8_t* p = c.take(n, "scalar value");
    v.raw.assign(p, p + n);
    return v;
}

// ne[0] * ... * ne[n-1] without overflow, counting a dimension of 0 as 1;
// false if that exceeds INT64_MAX. An empty tensor's other dimensions still
// size its rows (a 0 x 2^62 f32 tensor has 2^64-byte rows), so they must be
// representable too.
bool checked_extent(const int64_t* ne, int n, int64_t* out) {
    int64_t prod = 1;
    for (int i = 0; i < n; ++i) {
        const int64_t d = ne[i] == 0 ? 1 : ne[i];
        if (prod > INT64_MAX / d) return false;
        prod *= d;
    }
    *out = prod;
    return true;
}

}  // namespace

std::shared_ptr<File> File::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(ErrorKind::Io, path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        fail(ErrorKind::Io, path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(ErrorKind::Io, path + ": not a regular file");
    }
    std::shared_ptr<File> f(new File());
    f->label_ = path;
    f->size_ = (size_t)st.st_size;
    if (f->size_ > 0) {
        void* m = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
        const int err = errno;
        ::close(fd);
        if (m == MAP_FAILED) fail(ErrorKind::Io, path + ": cannot map: " + std::strerror(err));
        f->mapping_ = m;
        f->bytes_ = static_cast<const uint8_t*>(m);
    } else {
        ::close(fd);
    }
    f->parse();
    return f;
}

std::shared_ptr<File> File::from_bytes(const void* data, size_t size, const std::string& label) {
    std::shared_ptr<File> f(new File());
    f->label_ = label;
    f->owned_.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
    f->bytes_ = f->owned_.data();
    f->size_ = size;
    f->parse();
    return f;
}

void File::drop_pages(const uint8_t* begin, size_t bytes) const {
    if (!mapping_ || bytes == 0) return;
    static const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (uintptr_t)begin / page * page, hi = ((uintptr_t)begin + bytes + page - 1) / page * page;
    // Advice only: where the kernel declines, the pages simply stay.
    madvise((void*)lo, hi - lo, MADV_DONTNEED);
}

File::~File() {
    if (mapping_) munmap(mapping_, size_);
}

void File::parse() {
    Cursor c(label_, bytes_, size_);
    if (size_ == 0) c.error("empty file, not a GGUF file", 0);
    if (size_ < 4 || std::memcmp(bytes_, "GGUF", 4) != 0) c.error("bad magic, not a GGUF file", 0);
    c.take(4, "magic");

    const size_t version_at = c.pos();
    version_ = c.read<uint32_t>("version");
    if (version_ == 1) c.error("GGUF version 1 is obsolete and not supported", version_at);
    if (version_ != 2 && version_ != 3)
        c.error("unsupported GGUF version " + std::to_string(version_) + " (expected 3)", version_at);

    const size_t counts_at = c.pos();
    const uint64_t n_tensors = c.read<uint64_t>("tensor count");
    const uint64_t n_kv = c.read<uint64_t>("metadata count");
    // Lower bounds on an entry's size: a key/value is at least an 8-byte key
    // length, one key byte, a 4-byte type and a 1-byte value; a tensor info is
    // at least 8 + 1 + 4 + 8 + 4 + 8 bytes.
    c.check_count(n_kv, 14, "metadata count", counts_at + 8);
    c.check_count(n_tensors, 33, "tensor count", counts_at);

    reserve_claimed(kv_, n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
        const size_t at = c.pos();
        std::string key = c.read_string("metadata key");
        if (key.empty()) c.error("metadata key #" + std::to_string(i) + " is empty", at);
        if (!is_utf8(key)) c.error("metadata key #" + std::to_string(i) + " is not valid UTF-8", at);
        if (kv_index_.count(key)) c.error("duplicate metadata key '" + key + "'", at);
        const size_t type_at = c.pos();
        const uint32_t type_id = c.read<uint32_t>("value type");
        if (!value_type_name(type_id))
            c.error("key '" + key + "': unknown value type " + std::to_string(type_id), type_at);
        Value v = read_value(c, static_cast<ValueType>(type_id), key, 0);
        kv_index_.emplace(key, kv_.size());
        kv_.push_back({std::move(key), std::move(v)});
    }

    if (const Value* a = find("general.alignment")) {
        if (a->type != ValueType::U32) c.error("general.alignment must be a u32", 0);
        const uint32_t al = (uint32_t)a->uint_at();
        if (al == 0 || (al & (al - 1)) != 0)
            c.error("general.alignment " + std::to_string(al) + " is not a power of two", 0);
        alignment_ = al;
    }

    reserve_claimed(tensors_, n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const size_t at = c.pos();
        TensorInfo t;
        t.name = c.read_string("tensor name");
        const std::string what = "tensor #" + std::to_string(i) + " '" + t.name + "'";
        if (t.name.empty() || t.name.size() > kMaxTensorNameBytes)
            c.error("tensor #" + std::to_string(i) + " has a name of " + std::to_string(t.name.size()) +
                        " bytes (1.." + std::to_string(kMaxTensorNameBytes) + " allowed)",
                    at);
        if (!is_utf8(t.name)) c.error("tensor #" + std::to_string(i) + " has a name that is not valid UTF-8", at);
        if (tensor_index_.count(t.name)) c.error("duplicate tensor name '" + t.name + "'", at);

        const size_t dims_at = c.pos();
        const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
        if (n_dims < 1 || n_dims > kMaxDims)
            c.error(what + ": " + std::to_string(n_dims) + " dimensions (1..4 allowed)", dims_at);
        t.n_dims = (int)n_dims;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const size_t dim_at = c.pos();
            const uint64_t ne = c.read<uint64_t>("tensor dimension");
            if (ne > (uint64_t)INT64_MAX) c.error(what + ": dimension " + std::to_string(d) + " is negative", dim_at);
            t.ne[d] = (int64_t)ne;
        }
        int64_t extent = 0;
        if (!checked_extent(t.ne, kMaxDims, &extent)) c.error(what + ": element count overflows", dims_at);
        const bool empty = t.ne[0] == 0 || t.ne[1] == 0 || t.ne[2] == 0 || t.ne[3] == 0;

        const size_t type_at = c.pos();
        const uint32_t type_id = c.read<uint32_t>("tensor type");
        const TypeInfo* info = type_info(type_id);
        if (!info) c.error(what + ": unknown ggml type id " + std::to_string(type_id), type_at);
        t.type = static_cast<DType>(type_id);
        if (t.ne[0] % info->block_size != 0)
            c.error(what + ": row length " + std::to_string(t.ne[0]) + " is not a multiple of " + info->name +
                        "'s block size " + std::to_string(info->block_size),
                    dims_at);
        const uint64_t extent_blocks = (uint64_t)extent / (uint64_t)info->block_size;
        if (extent_blocks > (uint64_t)INT64_MAX / info->block_bytes) c.error(what + ": byte size overflows", dims_at);
        t.nbytes = empty ? 0 : (size_t)extent_blocks * info->block_bytes;

        const size_t offset_at = c.pos();
        t.offset = c.read<uint64_t>("tensor offset");
        if (t.offset % alignment_ != 0)
            c.error(what + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                        std::to_string(alignment_),
                    offset_at);
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment.
    const size_t header_end = c.pos();
    const size_t padded = header_end + (alignment_ - header_end % alignment_) % alignment_;
    data_offset_ = padded;
    if (tensors_.empty()) return;
    if (padded > size_)
        c.error("file truncated before the tensor data section (needs " + std::to_string(padded) + " bytes, has " +
                    std::to_string(size_) + ")",
                header_end);
    const size_t data_size = size_ - padded;
    for (TensorInfo& t : tensors_) {
        if (t.offset > data_size || t.nbytes > data_size - t.offset)
            fail(ErrorKind::Format, label_ + ": tensor '" + t.name + "' data [offset " + std::to_string(t.offset) +
                                        ", " + std::to_string(t.nbytes) + " bytes] runs past the end of the " +
                                        std::to_string(data_size) + "-byte data section");
        t.data = bytes_ + padded + t.offset;
    }
}

const Value* File::find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string File::get_string(const std::string& key) const {
    const Value* v = find(key);
    if (!v) fail(ErrorKind::Model, label_ + ": missing metadata key '" + key + "'");
    if (v->type != ValueType::String) fail(ErrorKind::Model, label_ + ": metadata key '" + key + "' is not a string");
    return v->str;
}

int64_t File::get_int(const std::string& key) const {
    const Value* v = find(key);
    if (!v) fail(ErrorKind::Model, label_ + ": missing metadata key '" + key + "'");
    if (v->is_array() || !is_integer(v->type))
        fail(ErrorKind::Model, label_ + ": metadata key '" + key + "' is not an integer");
    return v->int_at();
}

}  // namespace quanta::gguf
