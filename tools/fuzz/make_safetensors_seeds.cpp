// tools/fuzz/make_safetensors_seeds.cpp: writes small valid safetensors files (every dtype, metadata, empty, scalar
// and zero-size tensors) as the safetensors fuzzer's seed corpus. Usage: make_safetensors_seeds <dir>
#include <cstdio>
#include <string>
#include <vector>

#include "safetensors/safetensors.hpp"

using namespace hs;

static std::vector<uint8_t> pattern(size_t n) {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 37 + 11);
    return b;
}

int main(int argc, char** argv) {
    if (argc != 2) { std::fprintf(stderr, "usage: make_safetensors_seeds <dir>\n"); return 2; }
    const std::string dir = argv[1];
    {   // one tensor of every dtype, with metadata
        SafetensorsWriter w;
        w.metadata["format"] = "pt";
        const SafetensorsDtype all[] = {SafetensorsDtype::BOOL, SafetensorsDtype::U8,     SafetensorsDtype::I8,
                                        SafetensorsDtype::F8_E5M2, SafetensorsDtype::F8_E4M3, SafetensorsDtype::I16,
                                        SafetensorsDtype::U16,  SafetensorsDtype::F16,    SafetensorsDtype::BF16,
                                        SafetensorsDtype::I32,  SafetensorsDtype::U32,    SafetensorsDtype::F32,
                                        SafetensorsDtype::F64,  SafetensorsDtype::I64,    SafetensorsDtype::U64};
        for (SafetensorsDtype t : all)
            w.add(std::string("t.") + safetensors_dtype_name(t), t, {2, 3}, pattern(6 * safetensors_dtype_size(t)));
        w.write(dir + "/all_dtypes.safetensors");
    }
    {   // a small model-like file: matrices and vectors in F32/BF16
        SafetensorsWriter w;
        w.add("model.embed_tokens.weight", SafetensorsDtype::BF16, {8, 4}, pattern(64));
        w.add("model.layers.0.self_attn.q_proj.weight", SafetensorsDtype::F32, {4, 4}, pattern(64));
        w.add("model.norm.weight", SafetensorsDtype::F32, {4}, pattern(16));
        w.write(dir + "/tiny_model.safetensors");
    }
    {   // empty, a scalar, a zero-size tensor
        SafetensorsWriter e;
        e.write(dir + "/empty.safetensors");
        SafetensorsWriter w;
        w.add("scalar", SafetensorsDtype::F32, {}, pattern(4));
        w.add("nothing", SafetensorsDtype::F16, {0, 5}, {});
        w.write(dir + "/scalar_and_empty.safetensors");
    }
    return 0;
}
