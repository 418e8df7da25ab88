// The UNet's binding and forward pass (unet.h).
#include "models/unet.h"

#include "base/error.h"

namespace quanta::models {
namespace {

const std::string kPrefix = "model.diffusion_model.";
constexpr float kResEps = 1e-5f;  // the UNet's resnets and its output norm

bool has_entry(const Binder& b, const std::string& p) {
    return b.has(p + "0.in_layers.0.weight") || b.has(p + "0.op.weight");
}

class UNetBinder {
public:
    UNetBinder(const Binder& b, UNetWeights& w, const std::vector<int>& heads, int head_dim)
        : b_(b), w_(w), heads_(heads), head_dim_(head_dim) {}

    void bind() {
        w_.conv_in = bind_conv(b_, kPrefix + "input_blocks.0.0.", 0);
        w_.model_channels = w_.conv_in.c_out();
        w_.time_in = bind_linear(b_, kPrefix + "time_embed.0.", w_.model_channels, 0);
        emb_dim_ = w_.time_in.out();
        w_.time_out = bind_linear(b_, kPrefix + "time_embed.2.", emb_dim_, emb_dim_);

        int64_t c = w_.model_channels;
        std::vector<int64_t> skips{c};  // the channels each input entry hands to its output entry
        for (int i = 1; has_entry(b_, block("input_blocks", i)); ++i) {
            const std::string p = block("input_blocks", i);
            UNetEntry e;
            if (b_.has(p + "0.op.weight")) {
                e.push_back(conv_layer(UNetLayer::Kind::Down, bind_conv(b_, p + "0.op.", c, c)));
                ++level_;
            } else {
                e.push_back(res_layer(p + "0.", c));
                if (b_.has(p + "1.proj_in.weight")) e.push_back(transformer_layer(p + "1.", c));
            }
            skips.push_back(c);
            w_.input_blocks.push_back(std::move(e));
        }
        w_.n_downsamples = level_;

        const std::string m = kPrefix + "middle_block.";
        w_.middle_block.push_back(res_layer(m + "0.", c));
        w_.middle_block.push_back(transformer_layer(m + "1.", c));
        w_.middle_block.push_back(res_layer(m + "2.", c));

        for (int i = 0; has_entry(b_, block("output_blocks", i)); ++i) {
            const std::string p = block("output_blocks", i);
            if (skips.empty()) fail(ErrorKind::Model, label() + "output_blocks." + std::to_string(i) +
                                                          " has no input block to take its skip connection from");
            UNetEntry e;
            int64_t c_in = c + skips.back();
            e.push_back(res_layer(p + "0.", c_in));
            c = c_in;
            skips.pop_back();
            int j = 1;
            if (b_.has(p + "1.proj_in.weight")) e.push_back(transformer_layer(p + std::to_string(j++) + ".", c));
            const std::string up = p + std::to_string(j) + ".conv.";
            if (b_.has(up + "weight")) {
                e.push_back(conv_layer(UNetLayer::Kind::Up, bind_conv(b_, up, c, c)));
                --level_;
            }
            w_.output_blocks.push_back(std::move(e));
        }
        if (!skips.empty() || level_ != 0)
            fail(ErrorKind::Model, label() + "the output blocks do not mirror the input blocks (" +
                                       std::to_string(w_.input_blocks.size()) + " in, " +
                                       std::to_string(w_.output_blocks.size()) + " out)");
        w_.norm_out = bind_affine(b_, kPrefix + "out.0.", c);
        w_.conv_out = bind_conv(b_, kPrefix + "out.2.", c);
    }

private:
    std::string block(const char* list, int i) const { return kPrefix + list + "." + std::to_string(i) + "."; }
    std::string label() const { return b_.file().label() + ": UNet: "; }

    UNetLayer res_layer(const std::string& p, int64_t& c) {
        UNetLayer l{UNetLayer::Kind::Res, {}, {}, {}};
        l.res = bind_res_block(b_, p, kUnetResBlock, c, emb_dim_);
        c = l.res.c_out();
        return l;
    }

    UNetLayer transformer_layer(const std::string& p, int64_t c) {
        const bool listed = level_ < (int)heads_.size();
        if (!listed && head_dim_ <= 0)
            fail(ErrorKind::Model, label() + "no head count for level " + std::to_string(level_) + " (sd.unet.head_count has " +
                                       std::to_string(heads_.size()) + ")");
        const int n_head = listed ? heads_[level_] : (int)(c / head_dim_);
        if (w_.context_dim == 0) w_.context_dim = b_.dim(p + "transformer_blocks.0.attn2.to_k.weight", 0);
        UNetLayer l{UNetLayer::Kind::Transformer, {}, {}, {}};
        l.transformer = bind_spatial_transformer(b_, p, c, n_head, w_.context_dim);
        return l;
    }

    static UNetLayer conv_layer(UNetLayer::Kind kind, Conv conv) { return {kind, {}, {}, conv}; }

    const Binder& b_;
    UNetWeights& w_;
    const std::vector<int>& heads_;
    const int head_dim_;
    int64_t emb_dim_ = 0;
    int level_ = 0;
};

Tensor* run_entry(BlockBuilder& bb, const UNetEntry& e, Tensor* h, Tensor* emb, Tensor* context, int n_groups) {
    for (const UNetLayer& l : e) {
        switch (l.kind) {
            case UNetLayer::Kind::Res: h = bb.res_block(h, l.res, emb, n_groups, kResEps); break;
            case UNetLayer::Kind::Transformer: h = bb.spatial_transformer(h, context, l.transformer, n_groups); break;
            case UNetLayer::Kind::Down: h = bb.conv(h, l.conv, 2); break;
            case UNetLayer::Kind::Up: h = bb.conv(bb.g.upsample(h, 2), l.conv); break;
        }
    }
    return h;
}

}  // namespace

UNetWeights UNetWeights::bind(const Binder& b, const std::vector<int>& heads, int head_dim) {
    UNetWeights w;
    UNetBinder(b, w, heads, head_dim).bind();
    return w;
}

Tensor* build_unet(BlockBuilder& bb, const UNetWeights& w, int n_groups, Tensor* x, Tensor* t, Tensor* context) {
    Graph& g = bb.g;
    // The timestep's sinusoids through two linear layers; every resnet takes it after a SiLU.
    Tensor* emb = bb.linear(g.silu(bb.linear(g.timestep_embedding(t, (int)w.model_channels), w.time_in)), w.time_out);
    Tensor* emb_act = g.silu(emb);

    Tensor* h = bb.conv(x, w.conv_in);
    std::vector<Tensor*> skips{h};
    for (const UNetEntry& e : w.input_blocks) {
        h = run_entry(bb, e, h, emb_act, context, n_groups);
        skips.push_back(h);
    }
    h = run_entry(bb, w.middle_block, h, emb_act, context, n_groups);
    for (const UNetEntry& e : w.output_blocks) {
        h = run_entry(bb, e, g.concat(h, skips.back(), 2), emb_act, context, n_groups);
        skips.pop_back();
    }
    return bb.conv(g.silu(bb.group_norm(h, w.norm_out, n_groups, kResEps)), w.conv_out);
}

}  // namespace quanta::models
