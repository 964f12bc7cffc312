#!/usr/bin/env python3
"""Generate tests/fixtures/quant/quant_fixtures.bin: reference decodings and encodings from gguf-py.

The reference is gguf-py's numpy code (gguf.quants.dequantize / quantize, gguf >= 0.19), which no one on this
project wrote. Usage (needs numpy and the gguf package):

    python tools/gen_quant_fixtures.py [output_path]

Fixture format (all little-endian):

    header:  char magic[4] = "HSQF" | u32 version = 1 | u32 n_records
    record:  u32 kind | u32 ggml_type_id | u32 n_elements | u32 n_bytes | payload
      kind 0 (decode): payload = u8 blocks[n_bytes] | f32 gguf_py_dequantized[n_elements]
      kind 1 (encode): payload = f32 input[n_elements] | u8 gguf_py_quantized[n_bytes]

Decode records hold random blocks: every payload byte is uniformly random (so every bit pattern of quants, high bits
and K-quant scale bytes is exercised) while the f16 super-scales d/m/dmin are random finite halves of sane magnitude
(2^-14 .. 2^4, either sign). F16 and BF16 records are random 16-bit patterns (including subnormals, inf and nan);
F32 records are random finite floats. Encode records hold random rows (Gaussian blocks of varied scale plus edge
blocks: all zero, constant, exact ties, one outlier).
"""
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20240611
OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/quant/quant_fixtures.bin"

# type -> (block elements, block bytes, byte offsets of f16 scale fields)
BLOCKS = {
    T.F32: (1, 4, []),
    T.F16: (1, 2, []),
    T.BF16: (1, 2, []),
    T.Q4_0: (32, 18, [0]),
    T.Q4_1: (32, 20, [0, 2]),
    T.Q5_0: (32, 22, [0]),
    T.Q5_1: (32, 24, [0, 2]),
    T.Q8_0: (32, 34, [0]),
    T.Q4_K: (256, 144, [0, 2]),
    T.Q5_K: (256, 176, [0, 2]),
    T.Q6_K: (256, 210, [208]),
}
N_ELEMENTS = 2048  # per decode record: 64 blocks of 32, 8 super-blocks of 256


def sane_halves(rng, n):
    mag = np.exp2(rng.uniform(-14.0, 4.0, n)).astype(np.float32)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    return (mag * sign).astype(np.float16)


def random_blocks(rng, qtype):
    qk, nbytes, scale_offsets = BLOCKS[qtype]
    n_blocks = N_ELEMENTS // qk
    if qtype == T.F32:
        vals = (rng.standard_normal(N_ELEMENTS) * np.exp2(rng.uniform(-20, 20, N_ELEMENTS))).astype(np.float32)
        return vals.view(np.uint8).copy()
    raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    for off in scale_offsets:
        raw[:, off:off + 2] = sane_halves(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def encode_input(rng, n_blocks=128):
    x = rng.standard_normal((n_blocks, 32)).astype(np.float32)
    x *= np.exp2(rng.uniform(-10, 6, (n_blocks, 1))).astype(np.float32)
    x[0] = 0.0                                                 # all zero: d = 0, id = 0
    x[1] = 1.25                                                # constant block
    x[2] = np.arange(32, dtype=np.float32) - 16.0              # exact ties at the rounding points
    x[3] = np.linspace(-1, 1, 32, dtype=np.float32)
    x[4] = 0.0
    x[4, 7] = -3.0                                             # single negative outlier
    x[5] = rng.standard_normal(32).astype(np.float32) + 100.0  # offset block (Q4_1's min matters)
    x[6] = (rng.integers(-8, 8, 32) * 0.5).astype(np.float32)  # many half-integers
    return x.reshape(-1)


def main():
    rng = np.random.default_rng(SEED)
    records = []
    for qtype in BLOCKS:
        raw = random_blocks(rng, qtype)
        deq = quants.dequantize(raw.reshape(1, -1), qtype).astype(np.float32).reshape(-1)
        assert deq.size == N_ELEMENTS, (qtype, deq.size)
        records.append(struct.pack("<IIII", 0, int(qtype), N_ELEMENTS, raw.size) + raw.tobytes() + deq.tobytes())
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1):
        x = encode_input(rng)
        q = quants.quantize(x.reshape(1, -1), qtype).reshape(-1)
        records.append(struct.pack("<IIII", 1, int(qtype), x.size, q.size) + x.tobytes() + q.tobytes())
    with open(OUT, "wb") as f:
        f.write(b"HSQF" + struct.pack("<II", 1, len(records)))
        for r in records:
            f.write(r)
    print(f"wrote {OUT}: {len(records)} records")


if __name__ == "__main__":
    main()
