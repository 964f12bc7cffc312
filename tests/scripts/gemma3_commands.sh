#!/usr/bin/env bash
# tests/scripts/gemma3_commands.sh BUILD_DIR MODEL FIXTURES: every command of the program on the real Gemma 3 270M
# file (ctest gemma3_commands), at tiny sizes, each checked for what it says it produces:
#   info (gemma3, 18x4 heads, the file's tensor types), generate (greedy, ids printed; --chat refused clearly: this
#   GGUF has no tokenizer.chat_template), score (per-token lines, finite perplexity), sweep in path, total and
#   attribution modes (one file each, 72 finite scores, top-K), train on the path sweep's top 3 for 2 steps, export
#   of its tau (the folded file keeps every tensor type, loads, generates), eval of vanilla and PEAR (the trained tau)
#   with --limit 1 on the test fixtures. Not here: rank-heads, which has no size options (the paper's four settings
#   in two modes: minutes on Gemma 3 on 2 threads); it is `sweep` over the same SettingRun.
# ~35 s on 2 threads.
# Sweep, train and eval files are read back with /usr/bin/python3 + h5py. Exit 77 (skipped) when the model is absent.
set -euo pipefail
BUILD="$(cd "${1:?usage: gemma3_commands.sh BUILD_DIR MODEL FIXTURES}" && pwd)"
MODEL="${2:?usage: gemma3_commands.sh BUILD_DIR MODEL FIXTURES}"
FIXTURES="${3:?usage: gemma3_commands.sh BUILD_DIR MODEL FIXTURES}"
HS="$BUILD/headsweep"
PY=/usr/bin/python3
[[ -f "$MODEL" ]] || { echo "gemma3_commands.sh: SKIPPED: $MODEL is missing (scripts/fetch_model.sh --gemma3)"; exit 77; }
W="$(mktemp -d /tmp/headsweep_gemma3_commands_XXXXXX)"
trap 'rm -rf "$W"' EXIT
fail() { echo "gemma3_commands.sh: FAILED: $*" >&2; exit 1; }
run() {  # run NAME ARGS...: the program, stdout to $W/NAME.out, stderr to $W/NAME.err; a failure shows both
    local name="$1"; shift
    local t0=$SECONDS
    "$HS" "$@" > "$W/$name.out" 2> "$W/$name.err" || fail "$name (exit $?): $*
$(cat "$W/$name.out" "$W/$name.err")"
    echo "ok: $name ($((SECONDS - t0)) s)"
}
T=(-t 2)

# info: the architecture, the heads and the mix of tensor types as the file has them
run info info "$MODEL"
grep -q '^architecture *gemma3$' "$W/info.out" || fail "info: $(cat "$W/info.out")"
grep -q '4 query, 1 key/value (group of 4), head dim 256: 72 heads' "$W/info.out" || fail "info heads: $(cat "$W/info.out")"
types=$(grep '^tensor types' "$W/info.out")
[[ "$types" == *"Q4_K x27"* && "$types" == *"Q6_K x9"* ]] || fail "info tensor types: $types"

# generate: greedy, 4 new tokens, ids printed
run generate generate -m "$MODEL" -p "The capital of France is" -n 4 --ids "${T[@]}"
[[ -s "$W/generate.out" ]] || fail "generate printed nothing"
grep -Eq '^[0-9]+( [0-9]+){0,3} ?$' "$W/generate.out" || fail "generate --ids: no line of 1 to 4 ids: $(cat "$W/generate.out")"
grep -q 'generated [1-4] tokens' "$W/generate.err" || fail "generate: $(cat "$W/generate.err")"
# --chat needs tokenizer.chat_template, which this GGUF (the base model's) does not carry: one clear error
if "$HS" generate -m "$MODEL" --chat -p "Hi" -n 2 > "$W/chat.out" 2> "$W/chat.err"; then fail "--chat without a template ran"; fi
grep -q "$MODEL: the model has no chat template (tokenizer.chat_template)" "$W/chat.err" || fail "chat: $(cat "$W/chat.err")"

# score: one line per scored token, finite mean log-probability and perplexity
run score score -m "$MODEL" --text "The quick brown fox jumps over the lazy dog." --per-token "${T[@]}"
summary=$(grep '^tokens ' "$W/score.out") || fail "score: no summary: $(cat "$W/score.out")"
read -r _ ntok _ nscored _ _ meanlp _ ppl <<< "$summary"
[[ "$nscored" -eq $((ntok - 1)) ]] || fail "score: $summary"
[[ "$(grep -c $'^[0-9]*\t' "$W/score.out")" -eq "$nscored" ]] || fail "score: not one line per token"
$PY -c "import math,sys; lp,p=float(sys.argv[1]),float(sys.argv[2]); assert lp<0 and math.isclose(p, math.exp(-lp), rel_tol=1e-4), (lp,p)" \
    "$meanlp" "$ppl" || fail "score: $summary"

# sweep: path, total and attribution modes in one job, one file each
run sweep sweep --model "$MODEL" --mode path --mode total --mode attribution --settings 4x6 -k 3 \
    -o "$W/{model}-{mode}.h5" -q "${T[@]}"
for mode in path total attribution; do
    grep -q "^sweep gemma-3-270m-q4_k_m $mode: 72 heads (18x4), 72 scored in .* complete -> $W/gemma-3-270m-q4_k_m-$mode.h5; top-3: " \
        "$W/sweep.out" || fail "sweep $mode: $(cat "$W/sweep.out")"
    $PY - "$W/gemma-3-270m-q4_k_m-$mode.h5" "$mode" <<'EOF' || fail "sweep file of $mode"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["architecture"] == "gemma3" and f.attrs["mode"] == sys.argv[2], dict(f.attrs)
assert f["raw"].shape == (1, 18, 4) and np.isfinite(f["raw"][()]).all() and f["done"][()].all()
assert sorted(f["ranking"][()].tolist()) == list(range(72))
assert f["top_k/layer"].shape == (3,) and (f["top_k/head"][()] < 4).all()
# format 2: the inputs and per-sample values, whose means are the stored scores bit for bit
assert f.attrs["format_version"] == 2 and f["inputs/tokens"].shape == (1, 4, 12) and f["pi_tilde"].shape == (1, 18, 4, 4)
t = f["pi_tilde"][()].astype(np.float64)
assert (np.cumsum(t, axis=-1)[..., -1] / 4 == f["pi_ablated"][()]).all()
assert np.isfinite(f["stats/mean_ratio_lo"][()]).all() and f["top_k/frequency"].shape == (3,)
EOF
done

# compare: path against attribution (allowed with --allow-modes, refused without, naming both files)
run compare compare "$W/gemma-3-270m-q4_k_m-path.h5" "$W/gemma-3-270m-q4_k_m-attribution.h5" --allow-modes --json
$PY - "$W/compare.out" <<'EOF' || fail "compare --json: $(cat "$W/compare.out")"
import sys, json
r = json.loads(open(sys.argv[1]).read())
assert r["n_layer"] == 18 and r["n_head"] == 4 and r["top_k"] == 3 and len(r["pairs"]) == 1, r
p = r["pairs"][0]
assert -1 <= p["spearman"] <= 1 and 0 <= p["jaccard"] <= 1 and p["changes"][0]["se"] is not None
EOF
"$HS" compare "$W/gemma-3-270m-q4_k_m-path.h5" "$W/gemma-3-270m-q4_k_m-attribution.h5" > /dev/null 2> "$W/cmp.err" \
    && fail "compare of two modes without --allow-modes succeeded"
grep -q "gemma-3-270m-q4_k_m-attribution.h5 cannot be compared: mode differs" "$W/cmp.err" \
    || fail "compare refusal: $(cat "$W/cmp.err")"
echo "ok: compare refuses two modes: $(cat "$W/cmp.err")"

# train: the path sweep's top 3 heads, 2 steps of a tiny batch
run train train -m "$MODEL" --sweep "$W/gemma-3-270m-q4_k_m-path.h5" --top-k 3 --n 6 --batch 2 --steps 2 \
    --eval-batch 2 -o "$W/train.h5" "${T[@]}"
$PY - "$W/train.h5" "$W/gemma-3-270m-q4_k_m-path.h5" <<'EOF' || fail "train file"
import sys, h5py, numpy as np
t, s = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
assert (t["heads/layer"][()] == s["top_k/layer"][()]).all() and (t["heads/head"][()] == s["top_k/head"][()]).all()
assert t["tau"].shape == (3,) and np.isfinite(t["tau"][()]).all()
assert t["log/loss"].shape == (2,) and np.isfinite(t["log/loss"][()]).all()
assert t.attrs["step"] == 2
EOF

# export: tau folded into W_O; the new file keeps every tensor's type, loads and generates
run export export -m "$MODEL" --train "$W/train.h5" -o "$W/folded.gguf"
grep -q "attn_output tensors folded (Q4_K, " "$W/export.out" || fail "export: $(cat "$W/export.out")"
run info_folded info "$W/folded.gguf"
[[ "$(grep '^tensor types' "$W/info_folded.out")" == "$types" ]] || fail "export changed tensor types: $(grep '^tensor types' "$W/info_folded.out")"
run generate_folded generate -m "$W/folded.gguf" -p "The capital of France is" -n 4 "${T[@]}"

# eval: vanilla and PEAR with the trained tau, one item per task and gold position, on the test fixtures
run eval eval --model "$MODEL" --tasks mdqa-3docs,nq-closedbook,mmlu --methods vanilla,pear --pear-train "$W/train.h5" \
    --data-dir "$FIXTURES/eval_data" --limit 1 --max-new-tokens 4 --mmlu-per-subject 1 -o "$W/eval.h5" "${T[@]}"
grep -q "^eval: 10 answers computed, 0 already in $W/eval.h5" "$W/eval.out" || fail "eval: $(cat "$W/eval.out")"
$PY - "$W/eval.h5" <<'EOF' || fail "eval file"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
r = {k: [x.decode() if isinstance(x, bytes) else x for x in f["records/" + k][()]] for k in ("task", "method")}
assert sorted(set(r["method"])) == ["pear", "vanilla"], r
# mdqa-3docs at 3 gold positions, nq-closedbook and mmlu: 5 answers per method
assert sorted(r["task"]) == sorted(["mdqa-3docs"] * 6 + ["nq-closedbook"] * 2 + ["mmlu"] * 2), r
assert (f["records/prompt_tokens"][()] > 0).all()
assert len(f["summary/task"]) == 10
EOF
echo "gemma3_commands.sh: all checks passed"
