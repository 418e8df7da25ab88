// Tokenizer bindings: quanta._core.Tokenizer over a GGUF file, ClipTokenizer
// over a diffusion model's, and the Utf8Stream that streams detokenized bytes as text.
#include "bindings.h"
#include "base/error.h"
#include "gguf/reader.h"
#include "text/clip_bpe.h"
#include "text/tokenizer.h"
#include "text/utf8_stream.h"

namespace quanta::bindings {
namespace {

using text::ClipTokenizer;
using text::Tokenizer;
using text::Utf8Stream;

// str is encoded strictly (a lone surrogate raises UnicodeEncodeError, a
// ValueError); bytes pass through and are validated by encode.
std::string text_argument(const py::handle& text) {
    if (py::isinstance<py::str>(text)) {
        // Not py::cast, which turns the UnicodeEncodeError into a RuntimeError.
        Py_ssize_t size = 0;
        const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
        if (!data) throw py::error_already_set();
        return std::string(data, (size_t)size);
    }
    if (py::isinstance<py::bytes>(text)) return py::cast<std::string>(text);
    throw py::type_error("encode takes str or bytes, not " + std::string(py::str(py::type::handle_of(text))));
}

int32_t token_id(const Tokenizer& t, int64_t id) {
    QUANTA_CHECK_ARG(id >= 0 && id < t.n_vocab(),
                     "token id " + std::to_string(id) + " is outside the " + std::to_string(t.n_vocab()) + "-token vocabulary");
    return (int32_t)id;
}

py::object optional_id(int32_t id) { return id < 0 ? py::object(py::none()) : py::object(py::int_(id)); }

// GGUF token texts are bytes; str when valid UTF-8.
py::object text_or_bytes(const std::string& s) {
    PyObject* u = PyUnicode_DecodeUTF8(s.data(), (Py_ssize_t)s.size(), "strict");
    if (u) return py::reinterpret_steal<py::object>(u);
    PyErr_Clear();
    return py::bytes(s);
}

}  // namespace

void bind_text(py::module_& m) {
    py::class_<Tokenizer>(m, "Tokenizer",
                          "A GGUF model's tokenizer (tokenizer.ggml.* metadata), token-for-token equal to Hugging Face's.")
        .def(py::init([](std::shared_ptr<gguf::File> file) {
                 py::gil_scoped_release release;
                 return Tokenizer::from_gguf(*file);
             }),
             py::arg("file"))
        .def(py::init([](const py::object& path) {
                 const std::string p = py::str(py::module_::import("os").attr("fspath")(path));
                 py::gil_scoped_release release;
                 return Tokenizer::from_gguf(*gguf::File::open(p));
             }),
             py::arg("path"))
        .def("encode",
             [](const Tokenizer& t, const py::handle& text, bool add_bos, bool special) {
                 const std::string s = text_argument(text);
                 py::gil_scoped_release release;
                 return t.encode(s, add_bos, special);
             },
             py::arg("text"), py::arg("add_bos") = true, py::arg("special") = true,
             "Token ids of `text` (str, or bytes that must be valid UTF-8). add_bos: the model's BOS first when "
             "the model adds one (see add_bos). special: control tokens written in the text become their ids.")
        .def("decode",
             [](const Tokenizer& t, const std::vector<int64_t>& ids, bool skip_special) {
                 std::vector<int32_t> checked;
                 checked.reserve(ids.size());
                 for (int64_t id : ids) checked.push_back(token_id(t, id));
                 py::gil_scoped_release release;
                 return t.decode(checked, skip_special);
             },
             py::arg("ids"), py::arg("skip_special") = false,
             "The text of `ids`; invalid UTF-8 becomes U+FFFD. skip_special leaves out control tokens.")
        .def("token_bytes", [](const Tokenizer& t, int64_t id) { return py::bytes(t.token_bytes(token_id(t, id))); },
             py::arg("id"), "The raw bytes one token stands for (part of a character, for byte tokens).")
        .def("token_text", [](const Tokenizer& t, int64_t id) { return text_or_bytes(t.token_text(token_id(t, id))); },
             py::arg("id"), "The token as the vocabulary spells it.")
        .def("is_end_of_generation", [](const Tokenizer& t, int64_t id) { return t.is_end_of_generation(token_id(t, id)); },
             py::arg("id"))
        .def("is_control", [](const Tokenizer& t, int64_t id) { return t.is_control(token_id(t, id)); }, py::arg("id"))
        .def_property_readonly("n_vocab", &Tokenizer::n_vocab)
        .def_property_readonly("bos", [](const Tokenizer& t) { return optional_id(t.bos()); })
        .def_property_readonly("eos", [](const Tokenizer& t) { return optional_id(t.eos()); })
        .def_property_readonly("add_bos", &Tokenizer::add_bos, "Whether the model puts BOS first (tokenizer.ggml.add_bos_token).");

    py::class_<ClipTokenizer>(m, "ClipTokenizer",
                              "A Stable Diffusion file's CLIP tokenizer (tokenizer.ggml.model \"clip\"), id-for-id equal "
                              "to transformers' CLIPTokenizer as diffusers loads it.")
        .def(py::init([](std::shared_ptr<gguf::File> file) {
                 py::gil_scoped_release release;
                 return ClipTokenizer::from_gguf(*file);
             }),
             py::arg("file"))
        .def(py::init([](const py::object& path) {
                 const std::string p = py::str(py::module_::import("os").attr("fspath")(path));
                 py::gil_scoped_release release;
                 return ClipTokenizer::from_gguf(*gguf::File::open(p));
             }),
             py::arg("path"))
        .def("encode",
             [](const ClipTokenizer& t, const py::handle& text, int32_t max_length, bool pad) {
                 const std::string s = text_argument(text);
                 py::gil_scoped_release release;
                 return t.encode(s, max_length, pad);
             },
             py::arg("text"), py::arg("max_length") = ClipTokenizer::kContextLength, py::arg("pad") = true,
             "BOS, the ids of `text` (str, or bytes that must be valid UTF-8) cut to max_length - 2, EOS; with pad, "
             "the pad id up to max_length.")
        .def_property_readonly("n_vocab", &ClipTokenizer::n_vocab)
        .def_property_readonly("bos", &ClipTokenizer::bos)
        .def_property_readonly("eos", &ClipTokenizer::eos)
        .def_property_readonly("pad", &ClipTokenizer::pad);

    py::class_<Utf8Stream>(m, "Utf8Stream",
                           "Turns a stream of token bytes into text, holding back characters split across tokens.")
        .def(py::init<>())
        .def("push", [](Utf8Stream& s, const py::bytes& b) { return s.push(std::string_view(b)); }, py::arg("data"))
        .def("finish", &Utf8Stream::finish);
}

}  // namespace quanta::bindings
