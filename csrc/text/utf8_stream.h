// Streams detokenized bytes out as valid UTF-8, holding back a character that
// is split across tokens (a multi-token emoji) until its last byte arrives.
#pragma once

#include <string>
#include <string_view>

#include "text/unicode.h"

namespace quanta::text {

class Utf8Stream {
public:
    // The longest complete UTF-8 text so far; bytes that can never become valid
    // are U+FFFD already, an incomplete trailing character waits for the next push.
    std::string push(std::string_view bytes) {
        pending_.append(bytes);
        std::string out;
        pending_.erase(0, utf8_append_lossy(out, pending_, false));
        return out;
    }

    // Whatever is left, with an unfinished character as U+FFFD; the stream starts over.
    std::string finish() {
        std::string out;
        utf8_append_lossy(out, pending_, true);
        pending_.clear();
        return out;
    }

private:
    std::string pending_;
};

}  // namespace quanta::text
