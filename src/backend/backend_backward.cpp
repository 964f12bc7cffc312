// Default implementations of the backward ops of Backend: they refuse, naming the op and the device, so that a
// backend without them (CUDA, until it implements them) fails with a clear message instead of computing nonsense.
#include "backend/backend.hpp"
#include "util/error.hpp"

namespace hs {

namespace {
[[noreturn]] void missing(const Backend& be, const char* op) {
    fail(op, " is not implemented on the ", device_name(be.device()), " backend (backward ops: CPU only so far)");
}
}  // namespace

void Backend::matmul_dx(const float*, const Matrix&, float*, int64_t, bool) { missing(*this, "matmul_dx"); }
void Backend::rmsnorm_backward(const float*, const float*, const float*, float*, int64_t, int64_t, float, bool) {
    missing(*this, "rmsnorm_backward");
}
void Backend::rope_backward(float*, int64_t, int64_t, int64_t, int32_t, int32_t, float) {
    missing(*this, "rope_backward");
}
void Backend::attention_backward(const AttentionArgs&, const float*, float*, float*, float*) {
    missing(*this, "attention_backward");
}
void Backend::gated_activation_backward(const float*, const float*, const float*, float*, float*, int64_t,
                                        Activation) {
    missing(*this, "gated_activation_backward");
}
void Backend::softmax_cross_entropy(float*, const int32_t*, int64_t, int64_t, double, double*, uint8_t*) {
    missing(*this, "softmax_cross_entropy");
}
void Backend::head_dots(const float*, const float*, int64_t, int64_t, int32_t, int32_t, double*) {
    missing(*this, "head_dots");
}

}  // namespace hs
