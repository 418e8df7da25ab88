// The base layer: typed errors shared by every layer. Each layer checks its inputs and throws
// quanta::Error with a kind; the Python bindings map kinds to exception classes
// and the C API maps them to status codes, so the kind is the contract.
#pragma once

#include <stdexcept>
#include <string>

namespace quanta {

enum class ErrorKind {
    InvalidArgument,  // caller passed something wrong (Python ValueError)
    Io,               // the OS refused: missing file, permissions, disk full
    Format,           // a file's bytes are malformed (quanta.FormatError)
    Model,            // a well-formed file does not describe a model we can run
    Unsupported,      // valid but not implemented here (type, CPU level, device)
    OutOfMemory,
    ContextOverflow,  // more tokens than the context holds (quanta.ContextOverflowError)
    Internal,         // a bug in quanta
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const { return kind_; }

private:
    ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

// Checks a precondition on caller input; `message` is only built on failure.
#define QUANTA_CHECK_ARG(cond, message)                                         \
    do {                                                                        \
        if (!(cond)) ::quanta::fail(::quanta::ErrorKind::InvalidArgument, (message)); \
    } while (0)

}  // namespace quanta
