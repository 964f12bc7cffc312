// Folding tau into W_O, in memory and into a new GGUF file.
#include "pear/fold.hpp"

#include <cstring>
#include <set>

#include "gguf/gguf.hpp"
#include "util/error.hpp"

namespace hs::pear {

std::vector<float> head_scale_of(const ModelConfig& c, const std::vector<HeadRef>& heads,
                                 const std::vector<float>& tau) {
    check(heads.size() == tau.size(), "fold: ", heads.size(), " heads but ", tau.size(), " tau values");
    std::vector<float> s(size_t(c.n_layer) * c.n_head, 1.0f);
    for (size_t i = 0; i < heads.size(); ++i) {
        check(heads[i].layer >= 0 && heads[i].layer < c.n_layer && heads[i].head >= 0 && heads[i].head < c.n_head,
              "fold: head ", heads[i].layer, ":", heads[i].head, " does not exist");
        s[size_t(heads[i].layer) * c.n_head + heads[i].head] = tau[i];
    }
    return s;
}

namespace {

// Multiplies columns col0 .. col0 + n of every row of wo by s, in wo's own storage type. GGML blocks are scaled
// through their scale fields (scale_block: no re-quantisation) when whole blocks cover the columns; otherwise the
// matrix is first converted to fp32 (in memory only; `headsweep export` writes files with its own rules).
void scale_columns_of(ModelWeights& w, Matrix& wo, int64_t col0, int64_t n, float s) {
    if (wo.type == WeightType::GGML) {
        const int64_t bs = ggml_block_size(wo.block_type);
        if (col0 % bs != 0 || n % bs != 0) make_matrix_f32(w, wo);
    }
    for (int64_t r = 0; r < wo.rows; ++r) {
        switch (wo.type) {
            case WeightType::F32: {
                float* p = wo.data + r * wo.cols + col0;
                for (int64_t j = 0; j < n; ++j) p[j] *= s;
                break;
            }
            case WeightType::BF16:
            case WeightType::F16: {
                uint16_t* p = static_cast<uint16_t*>(wo.data16) + r * wo.cols + col0;
                const bool bf = wo.type == WeightType::BF16;
                for (int64_t j = 0; j < n; ++j)
                    p[j] = bf ? fp32_to_bf16(bf16_to_fp32(p[j]) * s) : fp32_to_fp16(fp16_to_fp32(p[j]) * s);
                break;
            }
            case WeightType::GGML: {
                const int64_t bs = ggml_block_size(wo.block_type), bb = ggml_block_bytes(wo.block_type);
                uint8_t* row = static_cast<uint8_t*>(wo.blocks) + uint64_t(r) * wo.row_bytes;
                for (int64_t b = col0 / bs; b < (col0 + n) / bs; ++b) scale_block(wo.block_type, row + b * bb, s);
                break;
            }
        }
    }
}

}  // namespace

void fold_head_scale(const ModelConfig& c, ModelWeights& w, const std::vector<float>& hs) {
    check(int64_t(hs.size()) == int64_t(c.n_layer) * c.n_head, "fold: head scale must have n_layer*n_head entries");
    for (int32_t l = 0; l < c.n_layer; ++l) {
        Matrix& wo = w.layers[l].wo;  // [d_model][q_dim]
        for (int32_t h = 0; h < c.n_head; ++h) {
            const float s = hs[size_t(l) * c.n_head + h];
            if (s != 1.0f) scale_columns_of(w, wo, int64_t(h) * c.d_head, c.d_head, s);
        }
    }
}

ExportReport export_folded_gguf(const std::string& src, const std::string& dst, const std::vector<HeadRef>& heads,
                                const std::vector<float>& tau) {
    check(src != dst, "export: the output must be a new file");
    check(!is_hf_folder(src), "export: ", src, " is a Hugging Face folder; export folds heads into a copy of a GGUF "
          "file only (convert the folder with llama.cpp's convert_hf_to_gguf.py first)");
    GgufFile f = GgufFile::open(src);
    const std::string arch = f.get_string("general.architecture");
    const int64_t n_layer = f.get_int(arch + ".block_count"), n_head = f.get_int(arch + ".attention.head_count");
    const int64_t d_model = f.get_int(arch + ".embedding_length");
    const int64_t d_head = f.get_int(arch + ".attention.key_length", d_model / n_head);
    check(heads.size() == tau.size(), "export: ", heads.size(), " heads but ", tau.size(), " tau values");
    std::vector<float> scale(size_t(n_layer * n_head), 1.0f);
    for (size_t i = 0; i < heads.size(); ++i) {
        check(heads[i].layer >= 0 && heads[i].layer < n_layer && heads[i].head >= 0 && heads[i].head < n_head,
              "export: head ", heads[i].layer, ":", heads[i].head, " does not exist in ", src);
        scale[size_t(heads[i].layer * n_head + heads[i].head)] = tau[i];
    }

    GgufWriter w;
    for (const auto& [k, v] : f.metadata())
        if (k != "headsweep.pear.heads" && k != "headsweep.pear.tau") w.add(k, v);
    w.add("headsweep.pear.heads", GgufWriter::string(heads_string(heads)));
    w.add("headsweep.pear.tau", GgufWriter::f32_array(tau));

    ExportReport rep;
    for (const GgufTensorInfo& t : f.tensors()) {
        int64_t layer = -1;
        {
            int l = -1, nchars = 0;
            if (std::sscanf(t.name.c_str(), "blk.%d.attn_output.weight%n", &l, &nchars) == 1 &&
                size_t(nchars) == t.name.size())
                layer = l;
        }
        bool touched = false;
        if (layer >= 0 && layer < n_layer)
            for (int64_t h = 0; h < n_head; ++h) touched |= scale[size_t(layer * n_head + h)] != 1.0f;
        if (!touched) {
            w.add_tensor(t.name, t.dims, t.type, std::vector<uint8_t>(t.data, t.data + t.nbytes));
            ++rep.copied_tensors;
            continue;
        }
        check(t.dims.size() == 2 && t.dims[0] == n_head * d_head, src, ": ", t.name, " has an unexpected shape");
        const int64_t cols = t.dims[0], rows = t.dims[1], bs = ggml_block_size(t.type);
        const float* sc = scale.data() + layer * n_head;
        rep.touched.push_back(t.name);
        if (d_head % bs == 0) {
            // Every block lies within one head: blocks of scaled heads get their scale fields multiplied (the
            // quants stay), blocks of other heads keep their bytes, and the tensor keeps its type.
            std::vector<uint8_t> out(t.data, t.data + t.nbytes);
            const uint64_t row_bytes = ggml_row_bytes(t.type, cols), bb = uint64_t(ggml_block_bytes(t.type));
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t b = 0; b < cols / bs; ++b) {
                    const float s = sc[(b * bs) / d_head];
                    if (s == 1.0f) continue;
                    scale_block(t.type, out.data() + r * row_bytes + uint64_t(b) * bb, s);
                    ++rep.rescaled_blocks;
                }
            rep.type = ggml_type_name(t.type);
            w.add_tensor(t.name, t.dims, t.type, std::move(out));
        } else {
            std::vector<float> vals(size_t(rows * cols));
            const uint64_t row_bytes = ggml_row_bytes(t.type, cols);
            for (int64_t r = 0; r < rows; ++r) {
                dequantize_row(t.type, t.data + r * row_bytes, vals.data() + r * cols, cols);
                for (int64_t c = 0; c < cols; ++c) vals[size_t(r * cols + c)] *= sc[c / d_head];
            }
            std::vector<uint8_t> bytes(vals.size() * sizeof(float));
            std::memcpy(bytes.data(), vals.data(), bytes.size());
            rep.type = "F32";
            w.add_tensor(t.name, t.dims, GgmlType::F32, std::move(bytes));
        }
    }
    w.write(dst);
    return rep;
}

}  // namespace hs::pear
