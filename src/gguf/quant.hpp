// gguf/quant.hpp: ggml tensor types and their block layouts, kept in one place.
//
// dequantize_row turns n elements (a multiple of the type's block size) of a tensor's bytes into floats.
// quantize_row does the reverse for the types we write (F32, F16, BF16, Q8_0, Q4_0, Q4_1); the K-quants and Q5_x are
// read-only here. Layouts follow ggml's block structs (see docs/file-formats.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace hs {

enum class GgmlType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
    Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
};

// Known type id -> type; std::nullopt for ids we do not implement (callers report them by number and name).
std::optional<GgmlType> ggml_type_from_id(uint32_t id);
const char* ggml_type_name(GgmlType t);
// Name of any ggml id, including ones we do not implement ("IQ2_XXS", "unknown(77)").
std::string_view ggml_type_name_of_id(uint32_t id);

int64_t ggml_block_size(GgmlType t);   // elements per block
int64_t ggml_block_bytes(GgmlType t);  // bytes per block
// Bytes of a row of n elements; n must be a multiple of the block size.
uint64_t ggml_row_bytes(GgmlType t, int64_t n);

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);    // round to nearest even
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);    // round to nearest even

// dst[0..n) = decode(src). n % ggml_block_size(t) == 0.
void dequantize_row(GgmlType t, const void* src, float* dst, int64_t n);
// Encode n floats into blocks of type t; returns false for types that have no encoder here.
bool quantize_row(GgmlType t, const float* src, void* dst, int64_t n);
bool ggml_type_can_encode(GgmlType t);

// Multiplies every value of one block (ggml_block_size(t) elements) by s in place, for every type: float types
// element by element; quantised types through their fp16 scale fields only (d, and the min/dmin where the type has
// one; the quants stay), so the result equals s * decode(block) up to the fp16 rounding of the new scales, with no
// re-quantisation. This is how a PEAR head scale is folded into a K-quant file without changing its type.
void scale_block(GgmlType t, void* block, float s);

}  // namespace hs
