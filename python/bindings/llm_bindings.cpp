// LLM model and context: the engine side of quanta.LLM. Evaluation releases
// the GIL; logits come back as fresh numpy arrays.
#include "bindings.h"
#include "backends/registry.h"
#include "base/error.h"
#include "engine/generator.h"
#include "models/llm.h"
#include "sample/sampler.h"
#include "text/tokenizer.h"

namespace quanta::bindings {
namespace {

using models::LlmContext;
using models::LlmModel;

py::dict config_dict(const models::LlmConfig& c) {
    py::dict d;
    d["arch"] = c.arch;
    d["n_vocab"] = c.n_vocab;
    d["n_ctx_train"] = c.n_ctx_train;
    d["n_embd"] = c.n_embd;
    d["n_layer"] = c.n_layer;
    d["n_head"] = c.n_head;
    d["n_head_kv"] = c.n_head_kv;
    d["head_dim_k"] = c.head_dim_k;
    d["head_dim_v"] = c.head_dim_v;
    d["n_ff"] = c.n_ff;
    d["n_rot"] = c.n_rot;
    d["norm_eps"] = c.norm_eps;
    d["attn_scale"] = c.attn_scale;
    d["rope_base"] = c.rope_base;
    d["rope_freq_scale"] = c.rope_freq_scale;
    d["sliding_window"] = c.sliding_window;
    d["swa_pattern"] = c.swa_pattern;
    d["rope_base_swa"] = c.rope_base_swa;
    return d;
}

// A token constraint written in Python: an object with allowed(words), which
// sets the bits of the tokens allowed next in a uint32 numpy array (zeroed,
// ceil(n_vocab / 32) words), and accept(token). The generator calls it from
// its step, which runs without the GIL, so each call takes the GIL.
class PyConstraint final : public engine::TokenConstraint {
public:
    explicit PyConstraint(py::object obj) : obj_(std::move(obj)) {}
    ~PyConstraint() override {
        py::gil_scoped_acquire gil;
        obj_ = py::none();
    }
    void allowed(uint32_t* words, int n_words) override {
        py::gil_scoped_acquire gil;
        // A view of the generator's mask, not a copy (the capsule owns nothing).
        py::array_t<uint32_t> view({(py::ssize_t)n_words}, {(py::ssize_t)sizeof(uint32_t)}, words,
                                   py::capsule(words, [](void*) {}));
        obj_.attr("allowed")(view);
    }
    void accept(int32_t token) override {
        py::gil_scoped_acquire gil;
        obj_.attr("accept")(token);
    }

private:
    py::object obj_;
};

py::list logprob_list(const std::vector<engine::TokenLogprob>& lps, size_t start) {
    py::list out;
    for (size_t i = start; i < lps.size(); ++i) {
        py::list top;
        for (const auto& [id, lp] : lps[i].top) top.append(py::make_tuple(id, lp));
        out.append(py::make_tuple(lps[i].token, lps[i].logprob, top));
    }
    return out;
}

std::vector<int32_t> token_ids(py::array_t<int64_t, py::array::c_style | py::array::forcecast> ids) {
    QUANTA_CHECK_ARG(ids.ndim() == 1, "token ids must be a 1-D sequence");
    std::vector<int32_t> out((size_t)ids.size());
    for (py::ssize_t i = 0; i < ids.size(); ++i) {
        const int64_t id = ids.at(i);
        QUANTA_CHECK_ARG(id >= INT32_MIN && id <= INT32_MAX, "token id " + std::to_string(id) + " is out of range");
        out[i] = (int32_t)id;
    }
    return out;
}

}  // namespace

void bind_llm(py::module_& m) {
    py::class_<LlmModel, std::shared_ptr<LlmModel>>(m, "LlmModel")
        .def(py::init([](std::shared_ptr<gguf::File> file, const std::string& device, int n_threads) {
                 BackendOptions options;
                 options.n_threads = n_threads;
                 return backends::load_on(device, options, [&](std::shared_ptr<Backend> b) {
                     return LlmModel::load_checked(file, std::move(b));
                 });
             }),
             py::arg("file"), py::arg("device") = "auto", py::arg("n_threads") = 0,
             py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("backend", [](const LlmModel& mdl) { return mdl.backend->name(); })
        .def_property_readonly("device", [](const LlmModel& mdl) { return mdl.backend->device(); })
        .def_property_readonly("device_note", [](const LlmModel& mdl) { return mdl.device_note; })
        .def_property_readonly("n_threads", [](const LlmModel& mdl) { return mdl.backend->n_threads(); })
        .def_property_readonly("config", [](const LlmModel& mdl) { return config_dict(mdl.config); });

    py::class_<LlmContext>(m, "LlmContext")
        .def(py::init([](std::shared_ptr<LlmModel> model, int n_ctx, int n_batch, int n_seq, const std::string& kv_type) {
                 models::ContextParams p;
                 p.n_ctx = n_ctx;
                 p.n_batch = n_batch;
                 p.n_seq = n_seq;
                 p.kv_type = type_from_name(kv_type);
                 return std::make_unique<LlmContext>(std::move(model), p);
             }),
             py::arg("model"), py::arg("n_ctx") = 4096, py::arg("n_batch") = 512, py::arg("n_seq") = 1,
             py::arg("kv_type") = "f16")
        .def_property_readonly("n_ctx", &LlmContext::n_ctx)
        .def_property_readonly("n_seq", &LlmContext::n_seq)
        .def_property_readonly("n_vocab", &LlmContext::n_vocab)
        .def_property_readonly("n_threads", &LlmContext::n_threads)
        .def_property_readonly("kv_bytes", &LlmContext::kv_bytes)
        .def_property_readonly("n_free", &LlmContext::n_free, "KV cells no sequence holds.")
        .def_property_readonly("graphs_built", &LlmContext::graphs_built)
        .def_property_readonly("tokens", [](const LlmContext& c) { return c.tokens(0); })
        .def("tokens_of", &LlmContext::tokens, py::arg("seq"), "The tokens sequence `seq` holds.")
        .def("truncate", [](LlmContext& c, int n, int seq) { c.truncate(seq, n); }, py::arg("n"), py::arg("seq") = 0)
        .def(
            "decode",
            [](LlmContext& ctx, const std::vector<int64_t>& tokens, const std::vector<int>& seqs,
               const std::vector<int>& positions, const std::vector<bool>& logits) {
                const size_t n = tokens.size();
                QUANTA_CHECK_ARG(seqs.size() == n && positions.size() == n && logits.size() == n,
                                 "decode: tokens, seqs, positions and logits must have one entry per token");
                std::vector<models::BatchToken> batch(n);
                py::ssize_t rows = 0;
                for (size_t i = 0; i < n; ++i) {
                    QUANTA_CHECK_ARG(tokens[i] >= INT32_MIN && tokens[i] <= INT32_MAX, "token id out of range");
                    batch[i] = {(int32_t)tokens[i], seqs[i], positions[i], (bool)logits[i]};
                    rows += logits[i] ? 1 : 0;
                }
                py::array_t<float> out({rows, (py::ssize_t)ctx.n_vocab()});
                float* dst = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    ctx.decode(batch, dst);
                }
                return out;
            },
            py::arg("tokens"), py::arg("seqs"), py::arg("positions"), py::arg("logits"),
            "Evaluates one batch of tokens of any sequences; the logits (rows in batch order) of those flagged.")
        .def(
            "eval",
            [](LlmContext& ctx, py::array_t<int64_t, py::array::c_style | py::array::forcecast> ids, bool all_logits,
               int seq) {
                const std::vector<int32_t> v = token_ids(ids);
                QUANTA_CHECK_ARG(!v.empty(), "eval: no tokens");
                const py::ssize_t rows = all_logits ? (py::ssize_t)v.size() : 1;
                py::array_t<float> out({rows, (py::ssize_t)ctx.n_vocab()});
                float* dst = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    ctx.eval(v.data(), (int)v.size(), all_logits, dst, seq);
                }
                return out;
            },
            py::arg("ids"), py::arg("all_logits") = false, py::arg("seq") = 0,
            "Appends tokens to the cached sequence; logits of the last token (1, n_vocab) or of all (n, n_vocab).")
        .def(
            "eval_prompt",
            [](LlmContext& ctx, py::array_t<int64_t, py::array::c_style | py::array::forcecast> ids, int seq) {
                const std::vector<int32_t> v = token_ids(ids);
                py::array_t<float> out((py::ssize_t)ctx.n_vocab());
                float* dst = out.mutable_data();
                {
                    py::gil_scoped_release release;
                    ctx.eval_prompt(v, dst, seq);
                }
                return out;
            },
            py::arg("ids"), py::arg("seq") = 0, "Reuses the longest cached prefix, evaluates the rest; the last token's logits.");


    using engine::Generator;
    py::class_<Generator>(m, "Generator",
                          "The C++ generation loop: requests decode together on one context, one batch per step.")
        .def(py::init<models::LlmContext&, const text::Tokenizer&>(), py::arg("context"), py::arg("tokenizer"),
             py::keep_alive<1, 2>(), py::keep_alive<1, 3>())
        .def("add",
             [](Generator& g, const std::vector<int64_t>& prompt, int max_tokens, float temperature, int top_k,
                float top_p, float min_p, float repeat_penalty, float presence_penalty, float frequency_penalty,
                int penalty_last_n, uint64_t seed, std::vector<std::string> stop, bool context_shift,
                std::map<int64_t, float> logit_bias, int top_logprobs, py::object constraint) {
                 engine::GenerateParams p;
                 p.sampling = {temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty,
                               penalty_last_n, seed, {}};
                 for (const auto& [t, bias] : logit_bias) {
                     QUANTA_CHECK_ARG(t >= INT32_MIN && t <= INT32_MAX, "logit_bias: token id " + std::to_string(t) + " is out of range");
                     p.sampling.logit_bias.push_back({(int32_t)t, bias});
                 }
                 p.max_tokens = max_tokens;
                 p.stop = std::move(stop);
                 p.context_shift = context_shift;
                 p.top_logprobs = top_logprobs;
                 if (!constraint.is_none()) p.constraint = std::make_shared<PyConstraint>(std::move(constraint));
                 std::vector<int32_t> ids;
                 for (int64_t t : prompt) {
                     QUANTA_CHECK_ARG(t >= INT32_MIN && t <= INT32_MAX, "token id " + std::to_string(t) + " is out of range");
                     ids.push_back((int32_t)t);
                 }
                 return g.add(std::move(ids), p);
             },
             py::arg("prompt"), py::arg("max_tokens"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"),
             py::arg("min_p"), py::arg("repeat_penalty"), py::arg("presence_penalty"), py::arg("frequency_penalty"),
             py::arg("penalty_last_n"), py::arg("seed"), py::arg("stop"), py::arg("context_shift"),
             py::arg("logit_bias") = std::map<int64_t, float>{}, py::arg("top_logprobs") = -1,
             py::arg("constraint") = py::none(),
             "Queues a request; returns its id. top_logprobs >= 0 records log-probabilities; constraint is an "
             "object with allowed(words) and accept(token) (see PyConstraint).")
        .def("step", &Generator::step, py::call_guard<py::gil_scoped_release>(),
             "One step of every request; False when none is left.")
        .def("take", [](Generator& g, int id) {
            const std::string s = g.take(id);
            return py::str(s.data(), s.size());
        }, py::arg("id"), "Text generated since the last take (always whole UTF-8 characters).")
        .def("finish", [](const Generator& g, int id) { return std::string(engine::finish_name(g.finish(id))); },
             py::arg("id"), "'running', 'stop', 'length' or 'cancelled'.")
        .def("tokens", [](const Generator& g, int id, size_t start) {
            const std::vector<int32_t>& t = g.tokens(id);
            return std::vector<int32_t>(t.begin() + (ptrdiff_t)std::min(start, t.size()), t.end());
        }, py::arg("id"), py::arg("start") = 0, "Generated token ids from `start` on.")
        .def("logprobs", [](const Generator& g, int id, size_t start) { return logprob_list(g.logprobs(id), start); },
             py::arg("id"), py::arg("start") = 0,
             "(token, logprob, [(token, logprob), ...]) for each generated token from `start` on.")
        .def("cached_tokens", &Generator::cached_tokens, py::arg("id"),
             "Prompt tokens the request found cached and did not evaluate.")
        .def("release", &Generator::release, py::arg("id"), "Forgets a finished request.")
        .def_property_readonly("n_running", &Generator::n_running)
        .def_property_readonly("n_waiting", &Generator::n_waiting)
        .def("cancel", &Generator::cancel, py::arg("id"));

    using sample::Sampler;
    using sample::SamplerParams;
    auto logits_arg = [](const py::array_t<float, py::array::c_style | py::array::forcecast>& logits) {
        QUANTA_CHECK_ARG(logits.ndim() == 1 || (logits.ndim() == 2 && logits.shape(0) == 1),
                         "sample: logits must be one row of n_vocab values");
        return std::make_pair(logits.data(), (int)logits.size());
    };
    py::class_<Sampler>(m, "Sampler")
        .def(py::init([](float temperature, int top_k, float top_p, float min_p, float repeat_penalty,
                         float presence_penalty, float frequency_penalty, int penalty_last_n, uint64_t seed) {
                 SamplerParams p;
                 p.temperature = temperature;
                 p.top_k = top_k;
                 p.top_p = top_p;
                 p.min_p = min_p;
                 p.repeat_penalty = repeat_penalty;
                 p.presence_penalty = presence_penalty;
                 p.frequency_penalty = frequency_penalty;
                 p.penalty_last_n = penalty_last_n;
                 p.seed = seed;
                 return std::make_unique<Sampler>(p);
             }),
             py::arg("temperature") = 0.8f, py::arg("top_k") = 40, py::arg("top_p") = 0.95f, py::arg("min_p") = 0.05f,
             py::arg("repeat_penalty") = 1.0f, py::arg("presence_penalty") = 0.0f,
             py::arg("frequency_penalty") = 0.0f, py::arg("penalty_last_n") = 64, py::arg("seed") = 0)
        .def("sample", [=](Sampler& s, py::array_t<float, py::array::c_style | py::array::forcecast> logits) {
            const auto [data, n] = logits_arg(logits);
            return s.sample(data, n);
        }, py::arg("logits"))
        .def("distribution", [=](Sampler& s, py::array_t<float, py::array::c_style | py::array::forcecast> logits) {
            const auto [data, n] = logits_arg(logits);
            const auto& d = s.distribution(data, n);
            py::array_t<int32_t> ids((py::ssize_t)d.size());
            py::array_t<double> probs((py::ssize_t)d.size());
            for (size_t i = 0; i < d.size(); ++i) {
                ids.mutable_at(i) = d[i].id;
                probs.mutable_at(i) = d[i].p;
            }
            return py::make_tuple(ids, probs);
        }, py::arg("logits"), "The tokens the chain keeps and their probabilities.")
        .def("accept", &Sampler::accept, py::arg("token"))
        .def("reset", &Sampler::reset);
}

}  // namespace quanta::bindings
