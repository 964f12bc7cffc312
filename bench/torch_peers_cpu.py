"""CPU versions of the PyTorch + HF peer baselines in shared/bench/ (torch_sweep.py, torch_path_sweep.py): the same
work, written as a careful PyTorch user would (forward hooks on o_proj), on a random-init model of a real shape,
fp32 on the CPU. As in the originals, only some layers are timed and the full sweep is extrapolated (each head
costs one full forward, whatever its layer). Prints one JSON line per run.

Usage: python bench/torch_peers_cpu.py path|total [--shape smollm2-135m|gemma3-270m] [--layers 1] [--threads 2]
       [--B 16 --n 64]  (total mode batch and half length)"""
import argparse, json, time
import torch
import transformers

# (transformers model class, config class, config) per shape; the config is the real model's.
SHAPES = {
    "smollm2-135m": ("LlamaForCausalLM", "LlamaConfig", dict(
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576, intermediate_size=1536,
        vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0)),
    # Gemma 3 270M: 1 KV head of 256 dims (head_dim != hidden / heads), 512-token sliding windows on 5 of every 6
    # layers, GELU-tanh, q/k norms and post-norms; transformers builds all of that from the config.
    "gemma3-270m": ("Gemma3ForCausalLM", "Gemma3TextConfig", dict(
        num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, head_dim=256, hidden_size=640,
        intermediate_size=2048, vocab_size=262144, sliding_window=512, query_pre_attn_scalar=256,
        tie_word_embeddings=True)),
}
PATH_SETTINGS = [(20, 50), (40, 25), (80, 15), (100, 10)]


def build(shape):
    model_class, config_class, c = SHAPES[shape]
    torch.manual_seed(0)
    cfg = getattr(transformers, config_class)(**c, max_position_embeddings=8192, attn_implementation="sdpa")
    c = dict(c, head_dim=c.get("head_dim", c["hidden_size"] // c["num_attention_heads"]))
    return getattr(transformers, model_class)(cfg).float().eval(), c


def path_sweep(shape, layers):
    model, c = build(shape)
    L, H = c["num_hidden_layers"], c["num_attention_heads"]
    hd = c["head_dim"]
    torch.manual_seed(10024)
    total = 0.0
    with torch.inference_mode():
        for N, n in PATH_SETTINGS:
            X = torch.randint(0, c["vocab_size"], (N, n))
            T = torch.cat([X, X], 1)
            p, t = 2 * n - 2, X[:, n - 1]
            clean = {}
            hooks = [model.model.layers[l].self_attn.o_proj.register_forward_pre_hook(
                lambda m, a, l=l: clean.__setitem__(l, a[0].clone())) for l in range(L)]
            t0 = time.perf_counter()
            model(T, logits_to_keep=2)
            clean_s = time.perf_counter() - t0
            [h.remove() for h in hooks]
            t0 = time.perf_counter()
            for l in range(layers):
                for h in range(H):
                    def freeze(m, a, li):
                        x = clean[li]
                        if li == l:
                            x = x.clone()
                            x[:, p, h * hd:(h + 1) * hd] = x[:, p, h * hd:(h + 1) * hd].mean(0, keepdim=True)
                        return (x,)
                    hk = [model.model.layers[li].self_attn.o_proj.register_forward_pre_hook(
                        lambda m, a, li=li: freeze(m, a, li)) for li in range(L)]
                    lg = model(T, logits_to_keep=2).logits[:, 0, :].float()
                    [x.remove() for x in hk]
                    (lg.gather(1, t[:, None]).squeeze(1) - lg.mean(1)).mean().item()
            total += clean_s + (time.perf_counter() - t0) * L / layers
    return dict(engine="torch", mode="path", shape=shape, settings=PATH_SETTINGS, layers_timed=layers,
                full_sweep_secs_est=round(total, 2))


def total_sweep(shape, layers, B, n):
    model, c = build(shape)
    L, H = c["num_hidden_layers"], c["num_attention_heads"]
    hd = c["head_dim"]
    torch.manual_seed(0)
    half = torch.randint(100, c["vocab_size"], (B, n))
    ids = torch.cat([half, half], dim=1)
    with torch.inference_mode():
        model(ids, logits_to_keep=1)
        t0 = time.perf_counter()
        for l in range(layers):
            for h in range(H):
                def pre(mod, args, h=h):
                    x = args[0].clone()
                    x[..., h * hd:(h + 1) * hd] = x[..., h * hd:(h + 1) * hd].mean(dim=1, keepdim=True)
                    return (x,)
                hk = model.model.layers[l].self_attn.o_proj.register_forward_pre_hook(pre)
                lg = model(ids, logits_to_keep=1).logits[:, -1, :].float()
                hk.remove()
                lg.gather(1, half[:, :1]).mean().item()
        dt = time.perf_counter() - t0
    return dict(engine="torch", mode="total", shape=shape, B=B, n=n, layers_timed=layers,
                full_sweep_secs_est=round(dt * L / layers, 2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["path", "total"])
    ap.add_argument("--shape", default="smollm2-135m")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--n", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    r = path_sweep(a.shape, a.layers) if a.mode == "path" else total_sweep(a.shape, a.layers, a.B, a.n)
    r["torch"] = torch.__version__
    print(json.dumps(r), flush=True)
