#!/usr/bin/env python3
"""Writes four small Llama-shaped bf16 checkpoints to try the skillvec command on (docs/cli.md).

  base   theta0
  sft_S  theta0 + an "SFT" delta              (dense)
  rl_S   sft_S  + an "RL" delta               (small, 70% of entries zero, independent of SFT)
  sft_T  theta0 + another "SFT" delta

Each is a Hugging Face-style directory: model.safetensors (or shards with an index, --shards),
config.json and tokenizer.json, plus an int64 buffer. Needs numpy and the safetensors package.

  python3 examples/skillvec/make_toy_checkpoints.py OUT_DIR [--layers 4] [--hidden 256] [--seed 0]
"""
import argparse
import json
import os

import numpy as np
from safetensors import serialize_file


def to_bf16_bytes(x):
    """f32 -> bf16 bytes, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16).tobytes()


def shapes(layers, hidden, vocab):
    inter = hidden * 11 // 4
    t = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = (hidden,)
        for m in "qkvo":
            t[p + f"self_attn.{m}_proj.weight"] = (hidden, hidden)
        t[p + "post_attention_layernorm.weight"] = (hidden,)
        t[p + "mlp.gate_proj.weight"] = (inter, hidden)
        t[p + "mlp.up_proj.weight"] = (inter, hidden)
        t[p + "mlp.down_proj.weight"] = (hidden, inter)
    t["model.norm.weight"] = (hidden,)
    t["lm_head.weight"] = (vocab, hidden)
    return t


def save(directory, tensors, shards, note):
    os.makedirs(directory, exist_ok=True)
    entries = {n: {"dtype": "bfloat16", "shape": list(a.shape), "data": to_bf16_bytes(a)} for n, a in tensors.items()}
    entries["model.rotary_emb.position_ids"] = {"dtype": "int64", "shape": [1, 64],
                                                "data": np.arange(64, dtype=np.int64).tobytes()}
    names = list(entries)
    parts = [names[k::shards] for k in range(shards)] if shards > 1 else [names]
    weight_map, total = {}, 0
    for k, part in enumerate(parts):
        fname = "model.safetensors" if shards == 1 else f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        serialize_file({n: entries[n] for n in part}, os.path.join(directory, fname), metadata={"format": "pt", "note": note})
        for n in part:
            weight_map[n] = fname
            total += len(entries[n]["data"])
    if shards > 1:
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "torch_dtype": "bfloat16", "note": note}, f, indent=2)
    with open(os.path.join(directory, "tokenizer.json"), "w") as f:
        json.dump({"version": "1.0", "model": {"type": "WordLevel", "vocab": {"<unk>": 0}}}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    spec = shapes(a.layers, a.hidden, a.vocab)

    def noise(scale, sparsity=0.0):
        out = {}
        for n, s in spec.items():
            x = rng.standard_normal(s, dtype=np.float32) * scale
            if sparsity:
                x[rng.random(s) < sparsity] = 0
            out[n] = x
        return out

    base = {n: (np.ones(s, np.float32) if "norm" in n else 0.02 * rng.standard_normal(s, dtype=np.float32))
            for n, s in spec.items()}
    d_sft_s, d_rl, d_sft_t = noise(0.004), noise(0.001, 0.7), noise(0.004)
    sft_s = {n: base[n] + d_sft_s[n] for n in spec}
    save(os.path.join(a.out, "base"), base, a.shards, "theta0")
    save(os.path.join(a.out, "sft_S"), sft_s, a.shards, "theta0 + SFT on S")
    save(os.path.join(a.out, "rl_S"), {n: sft_s[n] + d_rl[n] for n in spec}, a.shards, "sft_S + GRPO on S")
    save(os.path.join(a.out, "sft_T"), {n: base[n] + d_sft_t[n] for n in spec}, a.shards, "theta0 + SFT on T")


if __name__ == "__main__":
    main()
