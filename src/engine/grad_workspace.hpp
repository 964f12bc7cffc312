// engine/grad_workspace.hpp (internal): device memory of Engine::loss_gradients -- the tape and the scratch of the
// backward sweep, grown on demand and reused across calls.
#pragma once

#include <vector>

#include "engine/engine.hpp"

namespace hs {

struct Engine::GradWorkspace {
    // What the backward of layer l needs, recorded by the training forward (layers >= from_layer):
    //   x_in [rows, d] residual entering the block      q [rows, q_dim] after bias and RoPE
    //   k, v [rows, kv_dim] after bias (k after RoPE)   z [rows, q_dim] head outputs before tau
    //   x_mid [rows, d] residual after the attention add   gate, up [rows, d_ff] MLP pre-activations
    // and, for the architecture's extra norms (what their backward reads: the norm's input):
    //   q_raw [rows, q_dim], k_raw [rows, kv_dim]  q/k before their per-head norm (qk_norm)
    //   attn_o, ffn_o [rows, d]                    attention and MLP outputs before their post-norm (post_norms)
    struct LayerTape {
        DeviceBuffer x_in, q, k, v, z, x_mid, gate, up;
        DeviceBuffer q_raw, k_raw, attn_o, ffn_o;
    };
    std::vector<LayerTape> tape;
    // scratch: forward (xn, act, zs, out) and backward (dx, dmid, dxn, dq, dk, dv, dz, dff1, dff2; dout: gradient
    // of a post-norm's input; dq_raw, dk_raw: of the q/k norms' inputs), output head
    DeviceBuffer x, xn, act, zs, out, q, k, v, z, gate, up;
    DeviceBuffer dx, dmid, dxn, dq, dk, dv, dz, dff1, dff2, dout, dq_raw, dk_raw;
    DeviceBuffer x_out, hidden, logits, dhidden, dxrows;
};

}  // namespace hs
