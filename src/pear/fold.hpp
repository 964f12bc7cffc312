// pear/fold.hpp: deployment with zero overhead -- fold the learned tau into W_O (docs/methods.md §1.4).
//
// tau_h multiplies head h's output z_h before the output projection, and z . W_O^T is linear in z, so scaling the
// column block h*d_head..(h+1)*d_head of W_O by tau_h gives the same logits as runtime scaling. A bias of the output
// projection (none in llama/qwen2) would not be scaled.
#pragma once

#include <string>
#include <vector>

#include "model/model.hpp"
#include "pear/train.hpp"

namespace hs::pear {

// [n_layer * n_head] runtime head scale with tau at the given heads, 1 elsewhere.
std::vector<float> head_scale_of(const ModelConfig& c, const std::vector<HeadRef>& heads, const std::vector<float>& tau);

// In place on host weights: W_O[:, h-block] *= head_scale[l*H + h].
void fold_head_scale(const ModelConfig& c, ModelWeights& w, const std::vector<float>& head_scale);

struct ExportReport {
    std::vector<std::string> touched;  // attn_output tensors rewritten
    std::string type;                  // the type they were written in (their own, or F32)
    int64_t rescaled_blocks = 0;       // blocks of scaled heads whose scale fields were multiplied by tau
    int64_t copied_tensors = 0;        // tensors copied byte for byte
};

// Writes a new GGUF: every metadata key and tensor of `src` unchanged (tensor bytes copied verbatim, so llama's
// Q/K stay in the file's own permuted order), except blk.<l>.attn_output.weight of layers with a selected head.
// Those keep their type (every type we read, K-quants included) when its blocks do not straddle two heads: in the
// blocks of scaled heads only the fp16 scale fields are multiplied by tau (scale_block: exact up to the fp16
// rounding of the new scale, no re-quantisation); blocks of other heads keep their bytes. Otherwise the tensor is
// written as F32.
// Adds metadata headsweep.pear.heads ("l:h,...") and headsweep.pear.tau (f32 array).
ExportReport export_folded_gguf(const std::string& src, const std::string& dst, const std::vector<HeadRef>& heads,
                                const std::vector<float>& tau);

}  // namespace hs::pear
