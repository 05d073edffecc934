#!/usr/bin/env python3
"""CPU training throughput of a small GPT in PyTorch, as a reference point for skillvec's model.

Stand-alone, run by hand (not by CI). It builds the same GPT as skillvec's in-library model
(token + learned position embedding, pre-LayerNorm blocks with fused-qkv causal attention and a
tanh-GELU MLP, final LayerNorm, logits tied to the token embedding), and times full training
steps on random tokens: forward, mean cross-entropy over all B*T positions, backward, gradient
clipping to global norm 1.0, and an AdamW step. It reports tokens/s = steps * B * T / seconds and
ms per step, as the median over --repeats timed loops (each of --steps steps, after --warmup
untimed steps). Numbers are only meaningful on an otherwise idle machine.

Default configuration (must stay identical to skillvec's defaults):
    vocab 512, context 64, width 96, 3 layers, 4 heads (head dim 24), MLP hidden 4 * 96 = 384,
    LayerNorm eps 1e-5, AdamW lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.1 on 2-D
    weights (including both embeddings) and 0 on biases and LayerNorm parameters;
    391,008 parameters (~0.39M).

Usage:
    python benchmarks/torch_train_throughput.py                      # 2 threads, B=16, T=64
    python benchmarks/torch_train_throughput.py --threads 1 --json
    python benchmarks/torch_train_throughput.py --sdpa               # fused attention kernel
    python benchmarks/torch_train_throughput.py --compile            # torch.compile, if it works

Installing a CPU-only torch (preferred; no CUDA wheels):
    python -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu

If download.pytorch.org is not reachable, the default PyPI wheel works without pulling the
multi-GB CUDA dependency set, provided a CUDA 13 toolkit is on the loader path (it was at
/usr/local/cuda-13.0/lib on the machine this was written on): install torch with --no-deps,
its pure-Python deps, and only the four NVIDIA libraries the toolkit lacks (or has too old),
whose versions must match torch's METADATA (these are for torch 2.15.0):
    /tmp/torchvenv/bin/pip install --no-deps torch==2.15.0
    /tmp/torchvenv/bin/pip install filelock typing-extensions sympy networkx jinja2 fsspec \\
        mpmath MarkupSafe numpy
    /tmp/torchvenv/bin/pip install --no-deps nvidia-cufile "nvidia-cusparselt-cu13==0.8.1" \\
        "nvidia-nvshmem-cu13==3.7.2" "nvidia-nccl-cu13==2.30.7"
(Without them `import torch` fails with "libcufile.so.0: cannot open shared object file", and
with the toolkit's older NCCL with "undefined symbol: ncclCommResume".) The CPU path is the
same in either build (MKL + oneDNN, OpenMP), so the CUDA build is fine for these timings.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Embedding(nn.Module):
    """Parameter names embed.tokens.weight [V, d] and embed.positions.weight [T, d]."""

    def __init__(self, vocab: int, context: int, width: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        return self.tokens(idx) + self.positions(pos)


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, context: int, use_sdpa: bool):
        super().__init__()
        if width % heads != 0:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = width // heads
        self.use_sdpa = use_sdpa
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.proj = nn.Linear(width, width, bias=True)
        mask = torch.tril(torch.ones(context, context, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, context, context), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)  # each [B, T, d]
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = k.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
            att = att.masked_fill(~self.mask[:, :, :t, :t], float("-inf"))
            att = F.softmax(att, dim=-1)
            y = att @ v  # [B, H, T, hd]
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc = nn.Linear(width, hidden, bias=True)
        self.proj = nn.Linear(hidden, width, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, context: int, use_sdpa: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = CausalSelfAttention(width, heads, context, use_sdpa)
        self.ln2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = MLP(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int,
                 hidden: int, use_sdpa: bool):
        super().__init__()
        self.embed = Embedding(vocab, context, width)
        self.blocks = nn.ModuleList(
            [Block(width, heads, hidden, context, use_sdpa) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width, eps=1e-5)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        # GPT-2 style; irrelevant to throughput but keeps the loss sane.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = x @ self.embed.tokens.weight.t()  # tied output projection, no bias
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=64, help="block size = sequence length")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--width", type=int, default=96, help="d_model")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp-mult", type=int, default=4, help="MLP hidden = mlp_mult * width")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per repeat")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before the first repeat")
    ap.add_argument("--repeats", type=int, default=3, help="timed loops; the median is reported")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0, help="max global grad norm")
    ap.add_argument("--sdpa", action="store_true",
                    help="use F.scaled_dot_product_attention(is_causal=True)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model (falls back to eager if it fails)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    model = GPT(args.vocab, args.context, args.width, args.layers, args.heads,
                args.mlp_mult * args.width, args.sdpa)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, args.lr, args.weight_decay)

    gen = torch.Generator().manual_seed(0)
    # Random tokens; targets are the next token of a length T+1 sequence.
    data = torch.randint(0, args.vocab, (args.batch, args.context + 1), generator=gen)
    idx, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    forward = model
    compiled = False
    compile_error = None
    if args.compile:
        try:
            forward = torch.compile(model)
            compiled = True
        except Exception as e:  # noqa: BLE001
            compile_error = f"{type(e).__name__}: {e}"

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = forward(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        return loss.item()

    first_loss = None
    try:
        for _ in range(max(args.warmup, 1 if compiled else 0)):
            loss = step()
            first_loss = loss if first_loss is None else first_loss
    except Exception as e:  # noqa: BLE001  (compilation happens on the first call)
        if not compiled:
            raise
        compile_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        forward, compiled = model, False
        for _ in range(args.warmup):
            loss = step()
            first_loss = loss if first_loss is None else first_loss
    if compile_error and not args.json:
        print(f"torch.compile failed, running eager: {compile_error}", file=sys.stderr)

    tokens = args.steps * args.batch * args.context
    repeats = []
    last_loss = first_loss
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            last_loss = step()  # .item() syncs; a no-op cost on CPU
        dt = time.perf_counter() - t0
        repeats.append({"seconds": dt, "tokens_per_s": tokens / dt,
                        "ms_per_step": 1000.0 * dt / args.steps})

    med_s = statistics.median(r["seconds"] for r in repeats)
    result = {
        "framework": "pytorch",
        "torch": torch.__version__,
        "threads": args.threads,
        "batch": args.batch,
        "context": args.context,
        "vocab": args.vocab,
        "width": args.width,
        "layers": args.layers,
        "heads": args.heads,
        "mlp_hidden": args.mlp_mult * args.width,
        "params": params,
        "attention": "sdpa" if args.sdpa else "explicit",
        "compiled": compiled,
        "steps": args.steps,
        "warmup": args.warmup,
        "tokens_per_s": tokens / med_s,
        "ms_per_step": 1000.0 * med_s / args.steps,
        "repeats": repeats,
        "loss_first": first_loss,
        "loss_last": last_loss,
    }
    if compile_error:
        result["compile_error"] = compile_error

    if args.json:
        print(json.dumps(result))
    else:
        print(f"torch {torch.__version__}, threads {args.threads} (interop 1), "
              f"attention {result['attention']}, compiled {compiled}")
        print(f"model: vocab {args.vocab}, context {args.context}, width {args.width}, "
              f"layers {args.layers}, heads {args.heads}, mlp {result['mlp_hidden']}; "
              f"params {params:,} ({params / 1e6:.2f}M)")
        print(f"batch {args.batch} x context {args.context} = {args.batch * args.context} "
              f"tokens/step; {args.warmup} warmup, {args.repeats} x {args.steps} timed steps")
        for i, r in enumerate(repeats):
            print(f"  repeat {i}: {r['tokens_per_s']:10.0f} tokens/s  {r['ms_per_step']:7.2f} ms/step")
        loss_note = f" (loss {first_loss:.4f} -> {last_loss:.4f})" if first_loss is not None else ""
        print(f"median: {result['tokens_per_s']:.0f} tokens/s, "
              f"{result['ms_per_step']:.2f} ms/step{loss_note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
