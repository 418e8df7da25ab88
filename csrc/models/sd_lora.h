// LoRA merged into a Stable Diffusion file's weights at load. Each patched
// weight is dequantized, gets the sum of its patches' scale * up @ down added,
// and is quantized back to its own type into a buffer of its own; the graphs
// then read the merged copy in place of the file's tensor (BlockBuilder's
// moved weights), so a step costs what it costs without LoRA. Merging won over
// extra low-rank matmuls in the graph on time per step at the same image error
// (bench/README.md, "LoRA"). Reading LoRA files and mapping their names to the
// file's is Python's job (python/quanta/lora.py); this side checks sizes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "gguf/reader.h"
#include "models/sd_blocks.h"

namespace quanta::models {

// One low-rank update of one weight: W += scale * up @ down, with W seen as
// [out][row] (out = its last dimension: a linear's outputs, a convolution's
// output channels; row = the elements per output, a kernel's Cin * KH * KW in
// PyTorch's order, which is the file's).
struct LoraPatch {
    std::string target;       // the file's tensor
    std::string source;       // the LoRA file's module, for messages
    int64_t rank = 0;
    std::vector<float> down;  // [rank][row]
    std::vector<float> up;    // [out][rank]
    float scale = 1.0f;       // the user's weight times alpha / rank
};

// The merged copies, one address in `memory` per weight they replace.
struct MergedWeights {
    std::unique_ptr<Buffer> memory;
    MovedWeights addresses;
};

// Patches naming tensors the file lacks, sizes that do not fit the target, or
// a target whose type quanta cannot quantize are errors naming the module.
MergedWeights merge_loras(const gguf::File& file, Backend& backend, const std::vector<LoraPatch>& patches);

}  // namespace quanta::models
