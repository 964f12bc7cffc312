// engine/rows.hpp (internal): copy chosen positions of a batch of activations to the host.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.hpp"

namespace hs {

// out (host) [B, positions, width] <- x (backend memory) [B*T, width] at the given t. One strided device copy per
// position and one download (not one transfer per row: on a GPU each is a synchronising round trip).
void download_rows(Backend& be, const float* x, int64_t width, int64_t B, int64_t T, const std::vector<int32_t>& pos,
                   std::vector<float>& out);

}  // namespace hs
