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
    struct LayerTape {
        DeviceBuffer x_in, q, k, v, z, x_mid, gate, up;
    };
    std::vector<LayerTape> tape;
    // scratch: forward (xn, act, zs) and backward (dx, dmid, dxn, dq, dk, dv, dz, dff1, dff2), output head
    DeviceBuffer x, xn, act, zs, q, k, v, z, gate, up;
    DeviceBuffer dx, dmid, dxn, dq, dk, dv, dz, dff1, dff2;
    DeviceBuffer x_out, hidden, logits, dhidden, dxrows;
};

}  // namespace hs
