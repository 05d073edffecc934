#!/usr/bin/env python3
"""Interoperability test: the `skillvec` command against the reference `safetensors` package and numpy.

    interop.py --skillvec PATH/TO/skillvec [--large] [--keep] [--workdir DIR]

Checkpoints are written with the reference writer (`safetensors.serialize_file`, Hugging Face
layouts: sharded with model.safetensors.index.json, a single model.safetensors, a bare file),
processed with `skillvec`, read back with the reference reader (`safe_open` and `deserialize`) and
compared with numpy. One line per case: "PASS <case>" or "FAIL <case>: <why>".

Exit status: 0 all passed, 1 a case failed, 77 numpy or safetensors is missing (skip), unless
SKILLVEC_REQUIRE_INTEROP=1, in which case a missing module is a failure (exit 1).

What the library promises, and so what is tested (docs/concepts.md, "Numerics"; kernels.hpp;
nodes.hpp; dtype.hpp):
  * Inputs are widened to f32 exactly. rl - sft is one f32 subtraction (IEEE, round to nearest
    even). `t + lambda*v` is an *explicit* fused multiply-add, fma(lambda, rl - sft, t), rounded
    once, "the same way in the SIMD body, the scalar tail and the scalar fallback", independent of
    -ffp-contract. Conversions to bf16/f16 round to nearest even, overflow to Inf, and keep a NaN a
    NaN (quieted, with its sign and upper payload, as x86 F16C does).
  * So every output bit is determined, and every value check here is BIT-EXACT: the oracle is an
    exactly rounded fma emulated in numpy (float64 product, which is exact for two f32 operands,
    plus a round-to-odd float64 sum, then one rounding to f32: 53 >= 24 + 2 bits makes that
    double rounding innocuous), followed by an independent bf16 round-to-nearest-even and numpy's
    f32 -> f16 cast (also RNE). For lambda = 1 and 0.5 the product is exact anyway, so plain
    numpy f32 `t + lambda*(rl - sft)` gives the same bits; lambda = 0.3 is tested as well because
    there an FMA and a separate multiply-add differ, and the library promises the FMA where the
    target has one. A build for a target without FMA (the sanitizer build targets baseline x86-64)
    rounds twice, as a*b + c; `skillvec --version` says which ("fma: yes|no") and the oracle
    follows it.
  * Exception: a NaN's payload after arithmetic is the hardware's business (IEEE 754 only
    recommends propagation). On x86-64 NaN outputs are checked bit for bit (quiet(source), which
    is what SSE/AVX do); elsewhere only "NaN, same sign, quiet". A NaN *made* by the arithmetic
    (Inf - Inf) is only checked to be a NaN (x86 makes it negative, Arm positive).
  * The docs' "past with rl == sft leaves the target bit-exact" holds for the data that the identity
    case uses (finite, no -0.0). IEEE arithmetic cannot keep it for -0.0 (-0 + +0 = +0), a
    signalling NaN (quieted), or an Inf in rl == sft (Inf - Inf = NaN); the special-values case
    checks those against IEEE and reports how many elements they change.
  * Reductions (analyze): docs promise squared norms within 16u relatively (u = 2^-24, so norms
    within ~5e-7) and the cosine within ~1e-6 absolutely. Tolerances: norms rel 1e-6, cosine abs
    1e-6, sparsities exact (they are integer counts divided by numel in both).
"""

import argparse
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET


def _missing(what, err):
    if os.environ.get("SKILLVEC_REQUIRE_INTEROP") == "1":
        print(f"interop: FAIL: {what} cannot be imported ({err}) and SKILLVEC_REQUIRE_INTEROP=1")
        print("interop: install them with: pip install safetensors==0.4.5 numpy==2.1.3")
        sys.exit(1)
    print(f"interop: skipped: {what} cannot be imported ({err}); pip install safetensors==0.4.5 numpy==2.1.3")
    sys.exit(77)


try:
    import numpy as np
except ImportError as e:  # pragma: no cover
    _missing("numpy", e)
try:
    import safetensors
    from safetensors import deserialize, safe_open, serialize_file
except ImportError as e:  # pragma: no cover
    _missing("safetensors", e)

X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

# safetensors dtype name -> (serialize_file's name, bytes per element, numpy dtype of the raw bits)
DTYPES = {
    "BF16": ("bfloat16", 2, "<u2"),
    "F16": ("float16", 2, "<u2"),
    "F32": ("float32", 4, "<u4"),
    "I64": ("int64", 8, "<i8"),
    "BOOL": ("bool", 1, "u1"),
    "U8": ("uint8", 1, "u1"),
    "F64": ("float64", 8, "<u8"),
}
MODEL_DTYPES = ("BF16", "F16", "F32")  # the test models come in these
FLOAT = MODEL_DTYPES + ("F64",)       # arithmetic dtypes (F64 only as an output here)
SIDE_FILES = {
    "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
                               "num_hidden_layers": 3, "vocab_size": 600, "torch_dtype": "bfloat16"}, indent=2) + "\n",
    # Non-ASCII and no trailing newline: a byte-exact copy, not a re-encoding.
    "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {"Ġthe": 0, "▁über": 1, "日本": 2}}},
                                 ensure_ascii=False),
    "generation_config.json": '{\n  "bos_token_id": 1,\n  "eos_token_id": 2,\n  "do_sample": true,\n  "temperature": 0.6\n}\n',
}


class Fail(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Numerics: the oracle
# ----------------------------------------------------------------------------------------------

def bits_of(dt, raw):
    return np.frombuffer(raw, dtype=DTYPES[dt][2])


def widen(dt, raw):
    """Storage bytes -> f32 values (exact for every non-NaN value; NaN payloads handled apart)."""
    if dt == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if dt == "BF16":
        return (bits_of(dt, raw).astype(np.uint32) << 16).view(np.float32)
    if dt == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if dt == "F64":  # docs: f64 storage is rounded to f32 on load
        return np.frombuffer(raw, dtype="<f8").astype(np.float32)
    raise ValueError(dt)


def quiet_f32_bits(dt, raw):
    """f32 bits of each element widened and quieted (only meaningful where it is a NaN)."""
    b = bits_of(dt, raw).astype(np.uint32)
    if dt == "F32":
        return b | 0x00400000
    if dt == "BF16":
        return (b << 16) | 0x00400000
    # F16: sign, all-ones exponent, the 10-bit payload at the top of the f32 mantissa.
    return ((b & 0x8000) << 16) | 0x7F800000 | ((b & 0x3FF) << 13) | 0x00400000


def f32_to_bf16_bits(x):
    """f32 -> bf16 bits, round to nearest even, overflow to Inf, NaN quieted with its sign and upper
    payload. Written independently of the library's add-a-bias trick: it takes the two bf16
    neighbours of each value and picks the nearer in float64 arithmetic (exact here), ties to the
    even one."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    sign = u & 0x80000000
    mag = u & 0x7FFFFFFF
    lo = mag & 0xFFFF0000  # truncation toward zero: the neighbour below in magnitude
    hi = lo + 0x10000      # the neighbour above (0x7F800000 = Inf past the largest finite bf16)
    v = mag.view(np.float32).astype(np.float64)
    v_lo = lo.view(np.float32).astype(np.float64)
    with np.errstate(all="ignore"):
        v_hi = np.where(hi == 0x7F800000, 2.0 ** 128, hi.astype(np.uint32).view(np.float32).astype(np.float64))
        d_lo, d_hi = v - v_lo, v_hi - v
    even_lo = ((lo >> 16) & 1) == 0
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & ~even_lo)
    r = np.where(pick_hi, hi, lo)
    r = np.where(mag == lo, lo, r)  # exact (Inf included)
    out = ((sign | r) >> 16).astype(np.uint16)
    nan = mag > 0x7F800000
    out[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return out


def f32_to_f16_bits(x):
    """f32 -> f16 bits via numpy's cast (round to nearest even, subnormals, overflow to Inf); NaN as
    x86 F16C: quieted, sign and the upper 10 payload bits kept."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    with np.errstate(all="ignore"):
        out = x.astype(np.float16).view(np.uint16).copy()
    u = x.view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    out[nan] = (((u[nan] >> 16) & 0x8000) | 0x7E00 | ((u[nan] >> 13) & 0x3FF)).astype(np.uint16)
    return out


def narrow(dt, x):
    """f32 values -> storage bytes of dt."""
    if dt == "F32":
        return np.ascontiguousarray(x, dtype=np.float32).astype("<f4").tobytes()
    if dt == "BF16":
        return f32_to_bf16_bits(x).astype("<u2").tobytes()
    if dt == "F16":
        return f32_to_f16_bits(x).astype("<u2").tobytes()
    if dt == "F64":  # exact widening
        return np.ascontiguousarray(x, dtype=np.float32).astype("<f8").tobytes()
    raise ValueError(dt)


def fma32(a, b, c):
    """Correctly rounded f32 fma(a, b, c) for a scalar a and f32 arrays b, c (IEEE signed zeros,
    Inf and NaN as the hardware's f32 arithmetic; NaN payloads are fixed up by the caller).

    a*b is exact in float64 (two 24-bit significands). The float64 sum p + c is made
    round-to-odd from its exact TwoSum error, and a round-to-odd result with >= p+2 bits rounds to
    p bits exactly as the exact value would (53 >= 24 + 2), so the final cast is the one rounding."""
    with np.errstate(all="ignore"):
        p = np.float64(np.float32(a)) * b.astype(np.float64)
        c64 = c.astype(np.float64)
        s = p + c64
        bb = s - p
        err = (p - (s - bb)) + (c64 - bb)
        odd = (s.view(np.uint64) & 1) == 1
        fix = np.isfinite(s) & (err != 0) & ~odd
        s[fix] = np.nextafter(s[fix], np.where(err[fix] > 0, np.inf, -np.inf))
        return s.astype(np.float32)


# Whether the skillvec under test computes t + lambda*v with a hardware FMA (one rounding) or as
# a*b + c (two), as `skillvec --version` says: the library uses an FMA where the target it was
# compiled for has one (docs/concepts.md), and a baseline x86-64 build (the sanitizer build) has none.
HARDWARE_FMA = True


def muladd32(a, b, c):
    """t + lambda*v as the build under test computes it: fma32, or two f32 roundings."""
    if HARDWARE_FMA:
        return fma32(a, b, c)
    with np.errstate(all="ignore"):
        return (np.float32(a) * b.astype(np.float32)).astype(np.float32) + c.astype(np.float32)


def fix_nans(res, sources):
    """Sets the bits of NaN results that propagate a NaN operand: quiet(source), as x86 SSE/AVX do
    (with several NaN operands of one payload, that payload). Returns (res, mask of propagated
    NaNs, mask of other NaNs: made by the arithmetic, or a choice between different NaN operands,
    where only "a NaN" is promised). `sources` is a list of (f32 values, quiet f32 bits)."""
    res = res.copy()
    ub = res.view(np.uint32)
    first = np.zeros(res.shape, np.uint32)
    seen = np.zeros(res.shape, bool)
    conflict = np.zeros(res.shape, bool)
    for v, qb in sources:
        m = np.isnan(v)
        conflict |= m & seen & (qb != first)
        first = np.where(m & ~seen, qb, first)
        seen |= m
    prop = seen & ~conflict
    ub[prop] = first[prop]
    made = np.isnan(res) & ~prop
    return res, prop, made


def expected_past(t_dt, t_raw, rl_dt, rl_raw, sft_dt, sft_raw, lam, out_dt):
    """Bytes of fma(lam, rl - sft, t) rounded to out_dt, plus the masks of NaN outputs."""
    t, r, s = widen(t_dt, t_raw), widen(rl_dt, rl_raw), widen(sft_dt, sft_raw)
    with np.errstate(all="ignore"):
        d = (r - s).astype(np.float32)
    # A NaN in rl or sft reaches the output through d; one in t directly.
    d_q = np.where(np.isnan(r), quiet_f32_bits(rl_dt, rl_raw), quiet_f32_bits(sft_dt, sft_raw)).astype(np.uint32)
    res = muladd32(lam, d, t)
    res, prop, made = fix_nans(res, [(t, quiet_f32_bits(t_dt, t_raw)), (r, d_q), (s, d_q)])
    return narrow(out_dt, res), prop, made


def expected_diff(rl_dt, rl_raw, sft_dt, sft_raw, out_dt):
    r, s = widen(rl_dt, rl_raw), widen(sft_dt, sft_raw)
    with np.errstate(all="ignore"):
        d = (r - s).astype(np.float32)
    d, _, _ = fix_nans(d, [(r, quiet_f32_bits(rl_dt, rl_raw)), (s, quiet_f32_bits(sft_dt, sft_raw))])
    return narrow(out_dt, d)


def compare_float(name, dt, got, exp, prop=None, made=None, limit=3):
    """Bit-exact comparison of two byte strings of dtype dt; returns a list of problems. NaNs
    propagated from an operand: bit-exact on x86, else NaN with the same sign and quiet bit. NaNs
    made by the arithmetic: NaN only."""
    if len(got) != len(exp):
        return [f"{name}: {len(got)} bytes, expected {len(exp)}"]
    g, e = bits_of(dt, got), bits_of(dt, exp)
    bad = g != e
    if made is not None and made.any():
        gv = widen(dt, got)
        bad &= ~(made & np.isnan(gv))
    if not X86 and prop is not None and prop.any():
        width = DTYPES[dt][1] * 8
        sign, qbit = 1 << (width - 1), {"BF16": 0x40, "F16": 0x200, "F32": 0x400000, "F64": 1 << 51}[dt]
        gv = widen(dt, got)
        ok = prop & np.isnan(gv) & ((g & sign) == (e & sign)) & ((g & qbit) != 0)
        bad &= ~ok
    if not bad.any():
        return []
    idx = np.flatnonzero(bad)
    gv, ev = widen(dt, got), widen(dt, exp)
    hexw = DTYPES[dt][1] * 2
    ex = ", ".join(f"[{i}] got {gv[i]!r} (0x{int(g[i]):0{hexw}x}) expected {ev[i]!r} (0x{int(e[i]):0{hexw}x})"
                   for i in idx[:limit])
    return [f"{name} ({dt}): {idx.size} of {g.size} elements differ: {ex}"]


# ----------------------------------------------------------------------------------------------
# Checkpoints: written and read with the reference package
# ----------------------------------------------------------------------------------------------

def layout_spec():
    """(name, kind, shape): kind 'w' weight, 'n' norm, or a non-float dtype."""
    spec = [("model.embed_tokens.weight", "w", (600, 512))]  # 307,200 elements: threaded, multi-chunk
    for i in range(3):
        p = f"model.layers.{i}."
        spec += [(p + "self_attn.q_proj.weight", "w", (64, 64)), (p + "self_attn.k_proj.weight", "w", (32, 64)),
                 (p + "self_attn.v_proj.weight", "w", (32, 64)), (p + "self_attn.o_proj.weight", "w", (64, 64)),
                 (p + "mlp.gate_proj.weight", "w", (96, 64)), (p + "mlp.up_proj.weight", "w", (96, 64)),
                 (p + "mlp.down_proj.weight", "w", (64, 96)),
                 (p + "input_layernorm.weight", "n", (64,)), (p + "post_attention_layernorm.weight", "n", (64,))]
    spec += [
        ("model.layers.0.self_attn.q_proj.bias", "w", (7,)),
        ("model.layers.0.mlp.odd_vector", "w", (1031,)),       # not a multiple of any SIMD width
        ("model.layers.1.self_attn.scale", "n", ()),            # rank 0
        ("model.layers.1.mlp.empty", "w", (0,)),                # no elements
        ("model.layers.2.mlp.gate", "n", (1,)),
        ("model.layers.2.mlp.cube", "w", (3, 5, 7)),
        ("model.norm.weight", "n", (64,)),
        ("lm_head.weight", "w", (601, 64)),                     # 38,464: two uneven thread chunks
        ("model.position_ids", "I64", (1, 128)),
        ("model.layers.0.self_attn.causal_mask", "BOOL", (16, 16)),
        ("model.layers.2.mlp.int_empty", "I64", (0,)),
        ("model.token_type_ids", "U8", (37,)),
    ]
    return spec


FROZEN = "model.layers.2.post_attention_layernorm.weight"  # rl == sft here: a zero delta


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def make_models(dt, seed):
    """(sft, rl, target) as dicts name -> (dtype, shape, bytes), the float tensors of dtype dt.
    No -0.0 and no NaN in the data (so the identity check can be bit-exact)."""
    rng = np.random.default_rng(seed)
    sft, rl, tgt = {}, {}, {}

    def store(x):
        raw = narrow(dt, x)
        b = bits_of(dt, raw).copy()
        negzero = {"BF16": 0x8000, "F16": 0x8000, "F32": 0x80000000}[dt]
        b[b == negzero] = 0  # -0.0 (a value that underflowed) -> +0.0
        return b.tobytes()

    for name, kind, shape in layout_spec():
        n = numel(shape)
        if kind in ("w", "n"):
            base = rng.standard_normal(n).astype(np.float32) * np.float32(0.02)
            if kind == "n":
                base = base + np.float32(1.0)
            delta = rng.standard_normal(n).astype(np.float32) * np.float32(0.002)
            other = rng.standard_normal(n).astype(np.float32) * np.float32(0.003)
            s_raw = store(base)
            s = widen(dt, s_raw)
            r_raw = s_raw if name == FROZEN else store(s + delta)
            t_raw = store(s + np.float32(0.5) * delta + other)
            sft[name], rl[name], tgt[name] = (dt, shape, s_raw), (dt, shape, r_raw), (dt, shape, t_raw)
        else:
            npdt = DTYPES[kind][2]
            if kind == "BOOL":
                a = lambda: (rng.random(n) < 0.5).astype("u1")
            elif kind == "U8":
                a = lambda: rng.integers(0, 256, n).astype("u1")
            else:
                a = lambda: rng.integers(-(2 ** 40), 2 ** 40, n).astype(npdt)
            # rl and sft agree with each other but not with the target: passthrough must be the target's.
            common = a().tobytes()
            sft[name], rl[name], tgt[name] = (kind, shape, common), (kind, shape, common), (kind, shape, a().tobytes())
    return sft, rl, tgt


def serialize(tensors, path, names=None):
    names = list(tensors) if names is None else names
    d = {n: {"dtype": DTYPES[tensors[n][0]][0], "shape": list(tensors[n][1]), "data": tensors[n][2]} for n in names}
    serialize_file(d, str(path), metadata={"format": "pt"})


def write_checkpoint(tensors, path, layout, shards=1, side_files=False):
    """layout: 'file' (path is a .safetensors file), 'single' (dir/model.safetensors) or 'sharded'
    (dir/model-0000k-of-0000N.safetensors + model.safetensors.index.json, as transformers writes)."""
    if layout == "file":
        serialize(tensors, path)
        return path
    os.makedirs(path)
    if layout == "single":
        serialize(tensors, os.path.join(path, "model.safetensors"))
    else:
        names = list(tensors)
        total = sum(len(tensors[n][2]) for n in names)
        groups, acc, limit = [[]], 0, total / shards  # greedy in order, like save_pretrained
        for n in names:
            if groups[-1] and acc + len(tensors[n][2]) > limit and len(groups) < shards:
                groups.append([])
                acc = 0
            groups[-1].append(n)
            acc += len(tensors[n][2])
        k = len(groups)
        weight_map = {}
        for i, g in enumerate(groups):
            fname = f"model-{i + 1:05d}-of-{k:05d}.safetensors"
            serialize(tensors, os.path.join(path, fname), g)
            weight_map.update({n: fname for n in g})
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            params = sum(numel(tensors[n][1]) for n in names)  # recent transformers also write this
            json.dump({"metadata": {"total_parameters": params, "total_size": total},
                       "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    if side_files:
        for fname, text in SIDE_FILES.items():
            with open(os.path.join(path, fname), "wb") as f:
                f.write(text.encode("utf-8"))
    return path


def read_file(path):
    """Reads one .safetensors file with the reference reader. Returns (tensors, metadata).
    Both entry points must accept it: deserialize (all dtypes, raw bytes) and safe_open with numpy
    (every dtype numpy has; for BF16, which numpy lacks, its dtype and shape)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    if (8 + n) % 8:
        raise Fail(f"{path}: header of {n} bytes: data does not start 8-byte aligned (8 + N = {8 + n})")
    header = json.loads(blob[8:8 + n])
    tensors = {name: (info["dtype"], tuple(info["shape"]), bytes(info["data"])) for name, info in deserialize(blob)}
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if sorted(f.keys()) != sorted(tensors):
            raise Fail(f"{path}: safe_open and deserialize list different tensors")
        for k in f.keys():
            dt, shape, raw = tensors[k]
            if dt == "BF16":
                sl = f.get_slice(k)
                if sl.get_dtype() != "BF16" or tuple(sl.get_shape()) != shape:
                    raise Fail(f"{path}: safe_open sees {k} as {sl.get_dtype()} {sl.get_shape()}")
            else:
                a = f.get_tensor(k)
                if a.tobytes() != raw or tuple(a.shape) != shape:
                    raise Fail(f"{path}: safe_open and deserialize disagree on {k}")
    if meta != header.get("__metadata__", {}):
        raise Fail(f"{path}: metadata mismatch between safe_open and the header")
    return tensors, meta


def read_checkpoint(path):
    """A checkpoint (file, dir with model.safetensors, or dir with an index) -> (tensors, [metadata],
    [files]). An index must list every tensor of its shards, exactly once, and nothing else."""
    if os.path.isfile(path):
        t, m = read_file(path)
        return t, [m], [path]
    idx = os.path.join(path, "model.safetensors.index.json")
    if not os.path.exists(idx):
        t, m = read_file(os.path.join(path, "model.safetensors"))
        return t, [m], [os.path.join(path, "model.safetensors")]
    with open(idx) as f:
        pairs = json.load(f, object_pairs_hook=lambda p: p)
    top = dict(pairs)
    wm_pairs = top["weight_map"]
    keys = [k for k, _ in wm_pairs]
    if len(keys) != len(set(keys)):
        raise Fail(f"{idx}: a tensor is listed twice in weight_map")
    wm = dict(wm_pairs)
    tensors, metas, files = {}, [], []
    for fname in sorted(set(wm.values())):
        t, m = read_file(os.path.join(path, fname))
        listed = {k for k, v in wm.items() if v == fname}
        if set(t) != listed:
            raise Fail(f"{path}/{fname}: holds {sorted(set(t) ^ listed)[:3]}... which the index places elsewhere")
        tensors.update(t)
        metas.append(m)
        files.append(os.path.join(path, fname))
    total = dict(top["metadata"])["total_size"]
    if total != sum(len(v[2]) for v in tensors.values()):
        raise Fail(f"{idx}: metadata.total_size {total} != {sum(len(v[2]) for v in tensors.values())} tensor bytes")
    return tensors, metas, files


# ----------------------------------------------------------------------------------------------
# The test run
# ----------------------------------------------------------------------------------------------

class Run:
    def __init__(self, exe, work):
        self.exe, self.work = exe, work
        self.outputs = []  # every checkpoint skillvec wrote, for `inspect`
        self.target_of = {}  # model output -> the target tensors it was made from
        self.models = {}   # dtype -> (sft, rl, tgt) dicts
        self.paths = {}    # (dtype, role) -> path

    def p(self, *parts):
        return os.path.join(self.work, *parts)

    def sv(self, *args, rc=0, env=None):
        cmd = [self.exe, *[str(a) for a in args]]
        e = dict(os.environ)
        if env:
            e.update(env)
        r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120)
        if r.returncode != rc:
            raise Fail(f"`{' '.join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))}` exited {r.returncode}"
                       f" (expected {rc}): {r.stderr.strip()[:600]}")
        return r

    def write(self, sub, *args, out=None, outs=(), env=None, target=None):
        """Runs a writing subcommand and records its outputs (and, for a model output, the target
        whose non-float tensors it must carry)."""
        r = self.sv(sub, *args, "--quiet", env=env)
        for o in ([out] if out else []) + list(outs):
            self.outputs.append(o)
            if target is not None:
                self.target_of[o] = target
        return r

    def setup(self):
        # Layouts differ by role and dtype, so every reader path meets every role.
        layouts = {
            "BF16": {"target": ("sharded", 3), "rl": ("sharded", 2), "sft": ("single", 1)},
            "F16": {"target": ("single", 1), "rl": ("file", 1), "sft": ("sharded", 3)},
            "F32": {"target": ("sharded", 2), "rl": ("single", 1), "sft": ("file", 1)},
        }
        for i, dt in enumerate(MODEL_DTYPES):
            sft, rl, tgt = make_models(dt, 1000 + i)
            self.models[dt] = (sft, rl, tgt)
            for role, tensors in (("sft", sft), ("rl", rl), ("target", tgt)):
                layout, k = layouts[dt][role]
                path = self.p(f"{dt}-{role}" + (".safetensors" if layout == "file" else ""))
                self.paths[(dt, role)] = write_checkpoint(tensors, path, layout, k, side_files=(role == "target"))
            # The target as a bare file too, and a separate identical copy of sft in another layout.
            self.paths[(dt, "target-file")] = write_checkpoint(tgt, self.p(f"{dt}-target-file.safetensors"), "file")
            other = "file" if layouts[dt]["sft"][0] != "file" else "sharded"
            self.paths[(dt, "sft-copy")] = write_checkpoint(sft, self.p(f"{dt}-sft-copy") + (".safetensors" if other == "file" else ""),
                                                            other, 2)
        # A second bf16 target (another seed), for the multi-target run.
        _, _, tgt2 = make_models("BF16", 2000)
        self.models["BF16-t2"] = tgt2
        self.paths[("BF16", "target2")] = write_checkpoint(tgt2, self.p("BF16-target2"), "single", side_files=True)
        # Check the reference writer's files read back with the reference reader (sanity of the harness).
        for key, path in self.paths.items():
            t, _, _ = read_checkpoint(path)
            if set(t) != {n for n, _, _ in layout_spec()}:
                raise Fail(f"harness: {path} does not hold the layout")


def check_like_target(tensors, target, problems, what, float_dtype=None):
    """Same names, shapes and dtypes as the target (float tensors in float_dtype when given);
    non-float tensors byte-identical to the target's."""
    if set(tensors) != set(target):
        problems.append(f"{what}: tensors {sorted(set(tensors) ^ set(target))[:4]} differ from the target's")
        return
    for n, (dt, shape, raw) in target.items():
        gdt, gshape, graw = tensors[n]
        want = float_dtype if (float_dtype and dt in FLOAT) else dt
        if gdt != want or gshape != shape:
            problems.append(f"{what}: {n} is {gdt} {list(gshape)}, expected {want} {list(shape)}")
        elif dt not in FLOAT and graw != raw:
            problems.append(f"{what}: non-float {n} not byte-identical to the target's")


def check_past_values(tensors, t, rl, sft, lam, problems, what, out_dtype=None):
    for n, (dt, shape, traw) in t.items():
        if dt not in FLOAT or n not in tensors:
            continue
        odt = out_dtype or dt
        exp, prop, made = expected_past(dt, traw, rl[n][0], rl[n][2], sft[n][0], sft[n][2], lam, odt)
        problems += compare_float(f"{what}: {n}", odt, tensors[n][2], exp, prop, made)


def case_past(run, pr):
    """past for bf16, f16, f32 and lambda 1, 0.5 (and 0.3, where an FMA differs from a*b + c)."""
    runs = 0
    for dt in MODEL_DTYPES:
        sft, rl, tgt = run.models[dt]
        for lam in ("1", "0.5", "0.3"):
            out = run.p(f"past-{dt}-{lam}")
            run.write("past", "--rl", run.paths[(dt, "rl")], "--sft", run.paths[(dt, "sft")], "--target",
                      run.paths[(dt, "target")], "--out", out, "--lambda", lam, out=out, target=tgt)
            got, metas, _ = read_checkpoint(out)
            check_like_target(got, tgt, pr, f"past {dt} lambda={lam}")
            check_past_values(got, tgt, rl, sft, np.float32(lam), pr, f"past {dt} lambda={lam}")
            runs += 1
        # A bare-file target, written to a bare file.
        out = run.p(f"past-{dt}-file.safetensors")
        run.write("past", "--rl", run.paths[(dt, "rl")], "--sft", run.paths[(dt, "sft")], "--target",
                  run.paths[(dt, "target-file")], "--out", out, "--lambda", "0.5", out=out, target=tgt)
        got, _, _ = read_checkpoint(out)
        check_like_target(got, tgt, pr, f"past {dt} file->file")
        check_past_values(got, tgt, rl, sft, np.float32(0.5), pr, f"past {dt} file->file")
        runs += 1
    return f"{runs} runs, bit-exact"


def case_dtype(run, pr):
    """--dtype: f32 output of a bf16/f16 model (no rounding), bf16/f16 output of an f32 model."""
    combos = [("BF16", "f32", "F32"), ("F16", "f32", "F32"), ("F32", "bf16", "BF16"), ("F32", "f16", "F16"),
              ("BF16", "f16", "F16"), ("F16", "bf16", "BF16"), ("BF16", "f64", "F64")]
    for dt, flag, odt in combos:
        sft, rl, tgt = run.models[dt]
        out = run.p(f"dtype-{dt}-{flag}")
        run.write("past", "--rl", run.paths[(dt, "rl")], "--sft", run.paths[(dt, "sft")], "--target",
                  run.paths[(dt, "target")], "--out", out, "--lambda", "0.3", "--dtype", flag, out=out, target=tgt)
        got, _, _ = read_checkpoint(out)
        check_like_target(got, tgt, pr, f"past {dt} --dtype {flag}", float_dtype=odt)
        check_past_values(got, tgt, rl, sft, np.float32(0.3), pr, f"past {dt} --dtype {flag}", out_dtype=odt)
    # Mixed float dtypes (an f16 target, a bf16 rl, an f32 sft): a binding error that writes nothing,
    # unless --allow-mixed-dtypes, which computes in f32 (the tiled kernel) and keeps the target's dtype.
    tgt = run.models["F16"][2]
    rl, sft = run.models["BF16"][1], run.models["F32"][0]
    out = run.p("mixed-refused")
    r = run.sv("past", "--rl", run.paths[("BF16", "rl")], "--sft", run.paths[("F32", "sft")], "--target",
               run.paths[("F16", "target")], "--out", out, "--quiet", rc=1)
    if os.path.exists(out) or "dtype" not in r.stderr.lower():
        pr.append(f"mixed dtypes without --allow-mixed-dtypes: output left behind or unclear error {r.stderr[:200]!r}")
    for flag, odt in (("keep", "F16"), ("bf16", "BF16")):
        out = run.p(f"mixed-{flag}")
        run.write("past", "--rl", run.paths[("BF16", "rl")], "--sft", run.paths[("F32", "sft")], "--target",
                  run.paths[("F16", "target")], "--out", out, "--lambda", "0.3", "--allow-mixed-dtypes", "--dtype", flag,
                  out=out, target=tgt)
        got, _, _ = read_checkpoint(out)
        check_like_target(got, tgt, pr, f"mixed --dtype {flag}", float_dtype=odt)
        check_past_values(got, tgt, rl, sft, np.float32(0.3), pr, f"mixed --dtype {flag}", out_dtype=odt)
    return f"{len(combos)} conversions and 2 mixed-dtype runs bit-exact; mixed refused without the flag"


def check_vector(got, rl, sft, odt, pr, what):
    floats = {n for n, v in rl.items() if v[0] in FLOAT}
    if set(got) != floats:
        pr.append(f"{what}: holds {sorted(set(got) ^ floats)[:4]}: expected exactly the float tensors (non-float ones skipped)")
        return
    for n in floats:
        dt, shape, raw = got[n]
        if dt != odt or shape != rl[n][1]:
            pr.append(f"{what}: {n} is {dt} {list(shape)}, expected {odt} {list(rl[n][1])}")
            continue
        pr += compare_float(f"{what}: {n}", odt, raw, expected_diff(rl[n][0], rl[n][2], sft[n][0], sft[n][2], odt))


def case_extract(run, pr):
    """extract: f32 rl - sft, exact, to a directory and to one .safetensors file (and --dtype bf16)."""
    for dt in MODEL_DTYPES:
        sft, rl, _ = run.models[dt]
        for out in (run.p(f"vec-{dt}"), run.p(f"vec-{dt}.safetensors")):
            run.write("extract", "--rl", run.paths[(dt, "rl")], "--sft", run.paths[(dt, "sft")], "--out", out, out=out)
            if out.endswith(".safetensors") != os.path.isfile(out):
                pr.append(f"extract --out {out}: a {'file' if os.path.isfile(out) else 'directory'} was written")
            got, _, _ = read_checkpoint(out)
            check_vector(got, rl, sft, "F32", pr, f"extract {dt} -> {os.path.basename(out)}")
    sft, rl, _ = run.models["F32"]
    out = run.p("vec-F32-as-bf16")
    run.write("extract", "--rl", run.paths[("F32", "rl")], "--sft", run.paths[("F32", "sft")], "--out", out, "--dtype", "bf16", out=out)
    got, _, _ = read_checkpoint(out)
    check_vector(got, rl, sft, "BF16", pr, "extract F32 --dtype bf16")
    return "f32 vectors exact (dir and file), bf16 vector RNE"


def tensors_equal(a, b, pr, what):
    if set(a) != set(b):
        pr.append(f"{what}: different tensors {sorted(set(a) ^ set(b))[:4]}")
        return
    bad = [n for n in a if a[n] != b[n]]
    if bad:
        pr.append(f"{what}: {len(bad)} tensors differ, e.g. {bad[:3]}")


def case_inject(run, pr):
    """inject(target, extract(rl, sft), lambda) == past(target, rl, sft, lambda), bit for bit."""
    n = 0
    for dt in MODEL_DTYPES:
        for lam in ("1", "0.5", "0.3", "-1.75"):
            vec = run.p(f"vec-{dt}")
            if not os.path.exists(vec):
                run.write("extract", "--rl", run.paths[(dt, "rl")], "--sft", run.paths[(dt, "sft")], "--out", vec, out=vec)
            inj = run.p(f"inject-{dt}-{lam}")
            run.write("inject", "--target", run.paths[(dt, "target")], "--vector", vec, "--out", inj, "--lambda", lam, out=inj, target=run.models[dt][2])
            past = run.p(f"past-{dt}-{lam}")
            if not os.path.exists(past):
                run.write("past", "--rl", run.paths[(dt, "rl")], "--sft", run.paths[(dt, "sft")], "--target",
                          run.paths[(dt, "target")], "--out", past, "--lambda", lam, out=past, target=run.models[dt][2])
            a, _, _ = read_checkpoint(inj)
            b, _, _ = read_checkpoint(past)
            tensors_equal(a, b, pr, f"inject vs past {dt} lambda={lam}")
            sft, rl, tgt = run.models[dt]
            check_past_values(a, tgt, rl, sft, np.float32(lam), pr, f"inject {dt} lambda={lam}")
            n += 1
    # A bf16 vector into an f32 target: the tiled kernel. Expected fma(lambda, widen(v), t).
    vec = run.p("vec-F32-as-bf16")
    if not os.path.exists(vec):
        run.write("extract", "--rl", run.paths[("F32", "rl")], "--sft", run.paths[("F32", "sft")], "--out", vec,
                  "--dtype", "bf16", out=vec)
    v, _, _ = read_checkpoint(vec)
    _, _, tgt = run.models["F32"]
    out = run.p("inject-F32-bf16vec")
    run.write("inject", "--target", run.paths[("F32", "target")], "--vector", vec, "--out", out, "--lambda", "0.3",
              out=out, target=tgt)
    got, _, _ = read_checkpoint(out)
    check_like_target(got, tgt, pr, "inject bf16 vector into f32")
    zero = {k: (x[0], x[1], bytes(len(x[2]))) for k, x in v.items()}  # v - (+0) = v exactly
    check_past_values(got, tgt, v, zero, np.float32(0.3), pr, "inject bf16 vector into f32")
    return f"{n} pairs bit-identical (bf16/f16 inject takes the mixed f32-vector kernel); bf16 vector into f32 exact"


def case_identity(run, pr):
    """past with rl == sft (one path twice, and two separate identical copies) reproduces the
    target bit for bit."""
    n = 0
    for dt in MODEL_DTYPES:
        _, _, tgt = run.models[dt]
        for label, rl_path in (("same path", run.paths[(dt, "sft")]), ("identical copy", run.paths[(dt, "sft-copy")])):
            for lam in ("1", "0.3"):
                out = run.p(f"identity-{dt}-{n}")
                run.write("past", "--rl", rl_path, "--sft", run.paths[(dt, "sft")], "--target", run.paths[(dt, "target")],
                          "--out", out, "--lambda", lam, out=out, target=tgt)
                got, _, _ = read_checkpoint(out)
                tensors_equal(got, tgt, pr, f"identity {dt} ({label}, lambda={lam})")
                n += 1
    return f"{n} runs reproduce the target's bytes"


def list_files(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


def case_multi(run, pr):
    """--target T1 --target T2 --out O1 --out O2 --save-vector V == two separate runs + extract."""
    rl, sft = run.paths[("BF16", "rl")], run.paths[("BF16", "sft")]
    t1, t2 = run.paths[("BF16", "target")], run.paths[("BF16", "target2")]
    o1, o2, v = run.p("multi-o1"), run.p("multi-o2"), run.p("multi-vec")
    run.write("past", "--rl", rl, "--sft", sft, "--target", t1, "--target", t2, "--out", o1, "--out", o2,
              "--lambda", "0.3", "--save-vector", v, outs=(o1, o2, v))
    run.target_of[o1], run.target_of[o2] = run.models["BF16"][2], run.models["BF16-t2"]
    s1, s2, e = run.p("single-o1"), run.p("single-o2"), run.p("single-vec")
    run.write("past", "--rl", rl, "--sft", sft, "--target", t1, "--out", s1, "--lambda", "0.3", out=s1, target=run.models["BF16"][2])
    run.write("past", "--rl", rl, "--sft", sft, "--target", t2, "--out", s2, "--lambda", "0.3", out=s2, target=run.models["BF16-t2"])
    run.write("extract", "--rl", rl, "--sft", sft, "--out", e, out=e)
    for a, b in ((o1, s1), (o2, s2)):
        fa, fb = list_files(a), list_files(b)
        if fa != fb:
            pr.append(f"{os.path.basename(a)} vs {os.path.basename(b)}: files differ: "
                      f"{sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))}")
    sftm, rlm, _ = run.models["BF16"]
    got, _, _ = read_checkpoint(o2)
    check_like_target(got, run.models["BF16-t2"], pr, "multi: second target")
    check_past_values(got, run.models["BF16-t2"], rlm, sftm, np.float32(0.3), pr, "multi: second target")
    a, am, _ = read_checkpoint(v)
    b, bm, _ = read_checkpoint(e)
    tensors_equal(a, b, pr, "--save-vector vs extract")
    note = "" if am == bm else " (metadata differs: " + str({k for k in set(am[0]) | set(bm[0]) if am[0].get(k) != bm[0].get(k)}) + ")"
    # Threads: the split of a tensor across threads must not change a bit.
    t = run.p("threads-ref")
    run.write("past", "--rl", rl, "--sft", sft, "--target", t1, "--out", t, "--lambda", "0.3", "--threads", "1", out=t, target=run.models["BF16"][2])
    t5 = run.p("threads-5")
    run.write("past", "--rl", rl, "--sft", sft, "--target", t1, "--out", t5, "--lambda", "0.3", env={"SKILLVEC_NUM_THREADS": "5"}, out=t5,
              target=run.models["BF16"][2])
    for x in (t, t5):
        fa, fb = list_files(x), list_files(s1)
        if fa != fb:
            pr.append(f"{os.path.basename(x)} differs from the default-threads run")
    return "outputs byte-identical to separate runs; --save-vector == extract; --threads 1 / 5 threads identical" + note


def case_sharded(run, pr):
    """--max-shard-size 200KB: model-0000k-of-0000N shards, a complete index, 8-byte aligned headers."""
    dt = "F32"
    sft, rl, tgt = run.models[dt]
    out = run.p("sharded-out")
    limit = 200_000
    run.write("past", "--rl", run.paths[(dt, "rl")], "--sft", run.paths[(dt, "sft")], "--target", run.paths[(dt, "target")],
              "--out", out, "--lambda", "0.5", "--max-shard-size", "200KB", out=out, target=tgt)
    shards = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    m = [re.fullmatch(r"model-(\d{5})-of-(\d{5})\.safetensors", f) for f in shards]
    if not shards or not all(m):
        pr.append(f"shard names {shards}")
        return ""
    nums = [int(x.group(1)) for x in m]
    totals = {int(x.group(2)) for x in m}
    if totals != {len(shards)} or nums != list(range(1, len(shards) + 1)) or len(shards) < 3:
        pr.append(f"shards {shards}: expected model-00001..N-of-N with N = {len(shards)} >= 3")
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        pairs = json.load(f, object_pairs_hook=lambda p: p)
    wm_pairs = dict(pairs)["weight_map"]
    names = [k for k, _ in wm_pairs]
    if sorted(names) != sorted(tgt) or len(names) != len(set(names)):
        pr.append("weight_map does not cover every tensor exactly once")
    if set(v for _, v in wm_pairs) != set(shards):
        pr.append("weight_map names files other than the shards present")
    got, _, _ = read_checkpoint(out)  # checks total_size, shard contents vs index, header alignment
    total = sum(len(v[2]) for v in got.values())
    idx_total = dict(dict(pairs)["metadata"])["total_size"]
    if idx_total != total or total != sum(len(v[2]) for v in tgt.values()):
        pr.append(f"total_size {idx_total}, tensor bytes {total}")
    for f in shards:
        t, _ = read_file(os.path.join(out, f))
        data = sum(len(v[2]) for v in t.values())
        if data > limit and len(t) > 1:
            pr.append(f"{f}: {data} bytes in {len(t)} tensors exceeds --max-shard-size 200KB")
        with open(os.path.join(out, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
        if os.path.getsize(os.path.join(out, f)) != 8 + n + data:
            pr.append(f"{f}: file length != 8 + header + data")
    check_like_target(got, tgt, pr, "sharded")
    check_past_values(got, tgt, rl, sft, np.float32(0.5), pr, "sharded")
    single, _, _ = read_checkpoint(run.p("past-F32-0.5")) if os.path.exists(run.p("past-F32-0.5")) else (got, 0, 0)
    tensors_equal(got, single, pr, "sharded vs unsharded output")
    return f"{len(shards)} shards, index complete, total_size {total}"


def case_passthrough(run, pr):
    """int64 / bool / uint8 tensors byte-identical to the target's in every past/inject output."""
    n = 0
    for out, tgt in run.target_of.items():
        got, _, _ = read_checkpoint(out)
        for name, (ndt, shape, raw) in tgt.items():
            if ndt in FLOAT:
                continue
            if name not in got or got[name] != (ndt, shape, raw):
                pr.append(f"{os.path.basename(out)}: {name} ({ndt}) not byte-identical to the target's")
            n += 1
    if n == 0:
        pr.append("no outputs to check")
    return f"{n} non-float tensors in {len(run.target_of)} outputs byte-identical"


def case_side_files(run, pr):
    """config/tokenizer/generation_config copied byte for byte; __metadata__ records the recipe."""
    checked = 0
    for dt in MODEL_DTYPES:
        for lam in ("1", "0.5", "0.3"):
            out = run.p(f"past-{dt}-{lam}")
            if not os.path.isdir(out):
                pr.append(f"{out} missing")
                continue
            files = set(os.listdir(out))
            want = set(SIDE_FILES) | {"model.safetensors"}  # 5GB default: one shard, and no (stale) index
            if files != want:
                pr.append(f"{os.path.basename(out)}: files {sorted(files)}, expected {sorted(want)}")
            for fname, text in SIDE_FILES.items():
                p = os.path.join(out, fname)
                if not os.path.exists(p) or open(p, "rb").read() != text.encode("utf-8"):
                    pr.append(f"{os.path.basename(out)}/{fname} not copied byte-identically")
            _, metas, _ = read_checkpoint(out)
            m = metas[0]
            ins = json.loads(m.get("skillvec_inputs", "{}"))
            want_in = {"target": run.paths[(dt, "target")], "rl": run.paths[(dt, "rl")], "sft": run.paths[(dt, "sft")]}
            if ins != want_in:
                pr.append(f"{os.path.basename(out)}: skillvec_inputs {ins}, expected {want_in}")
            if "skillvec_lambda" not in m or np.float32(float(m["skillvec_lambda"])) != np.float32(lam):
                pr.append(f"{os.path.basename(out)}: skillvec_lambda {m.get('skillvec_lambda')!r}, expected {lam}")
            rec = m.get("skillvec_recipe", "")
            if not all(w in rec for w in ("target", "rl", "sft")) or (lam != "1" and lam not in rec):
                pr.append(f"{os.path.basename(out)}: skillvec_recipe {rec!r}")
            if not m.get("skillvec_version") or m.get("format") != "pt":
                pr.append(f"{os.path.basename(out)}: metadata {m}")
            checked += 1
    # Every shard of a sharded output carries the same metadata.
    if os.path.isdir(run.p("sharded-out")):
        _, metas, _ = read_checkpoint(run.p("sharded-out"))
        if any(x != metas[0] for x in metas) or "skillvec_recipe" not in metas[0]:
            pr.append("sharded-out: shards carry different or no provenance metadata")
    # inject copies the target's files too, and records the vector.
    inj = run.p("inject-BF16-0.5")
    if os.path.isdir(inj):
        for fname, text in SIDE_FILES.items():
            if open(os.path.join(inj, fname), "rb").read() != text.encode("utf-8"):
                pr.append(f"inject output: {fname} not copied")
        _, metas, _ = read_checkpoint(inj)
        if json.loads(metas[0].get("skillvec_inputs", "{}")).get("vector") != run.p("vec-BF16"):
            pr.append(f"inject output: skillvec_inputs {metas[0].get('skillvec_inputs')}")
    return f"{checked} outputs: side files identical, provenance present"


def layer_of(name):
    m = re.search(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)(?:\.|$)", name)
    return int(m.group(1)) if m else None


def module_of(name):
    m = re.search(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.\d+\.(.*)$", name)
    rest = m.group(1) if m else name
    for suf in (".weight", ".bias"):
        if rest.endswith(suf) and len(rest) > len(suf):
            return rest[: -len(suf)]
    return rest


def stats(a, b, tol):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return {"dot": float(np.dot(a64, b64)), "ssa": float(np.dot(a64, a64)), "ssb": float(np.dot(b64, b64)),
            "sa": int(np.count_nonzero(np.abs(a) <= tol)), "sb": int(np.count_nonzero(np.abs(b) <= tol)), "n": a.size}


def derived(s):
    nan = float("nan")
    cos = nan if s["ssa"] == 0 or s["ssb"] == 0 else s["dot"] / (np.sqrt(s["ssa"]) * np.sqrt(s["ssb"]))
    return {"numel": s["n"], "cosine": cos, "norm_a": float(np.sqrt(s["ssa"])), "norm_b": float(np.sqrt(s["ssb"])),
            "sparsity_a": s["sa"] / s["n"] if s["n"] else nan, "sparsity_b": s["sb"] / s["n"] if s["n"] else nan}


def compare_record(got, exp, pr, what):
    for k in ("numel", "cosine", "norm_a", "norm_b", "sparsity_a", "sparsity_b"):
        if k not in got:
            pr.append(f"{what}: no field {k}")
            continue
        g, e = got[k], exp[k]
        if isinstance(e, float) and np.isnan(e):
            if g is not None:
                pr.append(f"{what}: {k} = {g}, expected null (undefined)")
            continue
        if g is None:
            pr.append(f"{what}: {k} = null, expected {e}")
            continue
        if k == "cosine":
            ok = abs(g - e) <= 1e-6                       # docs: within about 1e-6 absolutely
        elif k.startswith("norm"):
            ok = abs(g - e) <= 1e-6 * abs(e)              # docs: squared norms within 16u relatively
        else:
            ok = g == e                                   # integer counts / numel: exact
        if not ok:
            pr.append(f"{what}: {k} = {g!r}, numpy (float64) {e!r}")


def case_analyze(run, pr):
    """analyze --json / --svg against numpy float64."""
    res = []
    for dt, tol in (("F32", "0"), ("BF16", "0.001")):
        sft, rl, tgt = run.models[dt]
        js, svg = run.p(f"analyze-{dt}.json"), run.p(f"analyze-{dt}.svg")
        # a = rl - sft (the skill vector), b = target - sft.
        run.sv("analyze", "--a-minus", run.paths[(dt, "sft")], "--a", run.paths[(dt, "rl")], "--b-minus", run.paths[(dt, "sft")],
               "--b", run.paths[(dt, "target")], "--json", js, "--svg", svg, "--tol", tol, "--quiet")
        with open(js) as f:
            j = json.load(f)
        tolf = np.float32(float(tol))
        per, layers = {}, {}
        for name, dtn, _ in layout_spec():
            if dtn not in ("w", "n"):
                continue
            with np.errstate(all="ignore"):
                a = (widen(dt, rl[name][2]) - widen(dt, sft[name][2])).astype(np.float32)
                b = (widen(dt, tgt[name][2]) - widen(dt, sft[name][2])).astype(np.float32)
            s = stats(a, b, tolf)
            per[name] = s
            L = layers.setdefault(layer_of(name), {"dot": 0.0, "ssa": 0.0, "ssb": 0.0, "sa": 0, "sb": 0, "n": 0, "tensors": 0})
            for k in ("dot", "ssa", "ssb", "sa", "sb", "n"):
                L[k] += s[k]
            L["tensors"] += 1
        glob = {k: sum(L[k] for L in layers.values()) for k in ("dot", "ssa", "ssb", "sa", "sb", "n")}
        recs = j.get("tensors", [])
        if sorted(r.get("name") for r in recs) != sorted(per):
            pr.append(f"analyze {dt}: tensor records {len(recs)} != {len(per)} float tensors")
        for r in recs:
            for k in ("name", "layer", "cosine", "norm_a", "norm_b", "sparsity_a", "sparsity_b"):
                if k not in r:
                    pr.append(f"analyze {dt}: record {r.get('name')} has no field {k}")
            n = r.get("name")
            if n not in per:
                pr.append(f"analyze {dt}: unexpected record {n}")
                continue
            if r.get("layer") != layer_of(n) or r.get("module") != module_of(n):
                pr.append(f"analyze {dt}: {n}: layer {r.get('layer')} module {r.get('module')!r}, expected {layer_of(n)} {module_of(n)!r}")
            compare_record(r, derived(per[n]), pr, f"analyze {dt}: {n}")
        lrecs = j.get("layers", [])
        order = sorted(k for k in layers if k is not None) + ([None] if None in layers else [])
        if [r.get("layer") for r in lrecs] != order:
            pr.append(f"analyze {dt}: layer records {[r.get('layer') for r in lrecs]}, expected {order}")
        for r in lrecs:
            L = layers.get(r.get("layer"))
            if L is None:
                continue
            if r.get("tensors") != L["tensors"]:
                pr.append(f"analyze {dt}: layer {r.get('layer')}: {r.get('tensors')} tensors, expected {L['tensors']}")
            compare_record(r, derived(L), pr, f"analyze {dt}: layer {r.get('layer')}")
        compare_record(j.get("global", {}), derived(glob), pr, f"analyze {dt}: global")
        # Internal consistency: layers add up to the global record.
        if sum(r.get("numel", 0) for r in lrecs) != j.get("global", {}).get("numel"):
            pr.append(f"analyze {dt}: layer numels do not add up to the global one")
        ssa = sum((r.get("norm_a") or 0.0) ** 2 for r in lrecs)
        if abs(ssa - (j.get("global", {}).get("norm_a") or 0.0) ** 2) > 1e-6 * ssa:
            pr.append(f"analyze {dt}: layer norms do not add up to the global norm")
        skipped = sorted(n for n, k, _ in layout_spec() if k not in ("w", "n"))
        if sorted(j.get("skipped", [])) != skipped:
            pr.append(f"analyze {dt}: skipped {j.get('skipped')}, expected {skipped}")
        fz = next((r for r in recs if r.get("name") == FROZEN), {})
        if fz.get("cosine", 0) is not None or fz.get("sparsity_a") != 1:
            pr.append(f"analyze {dt}: frozen tensor {FROZEN}: {fz}")
        try:
            root = ET.parse(svg).getroot()
            if not root.tag.endswith("svg") or len(list(root.iter())) < 5:
                pr.append(f"analyze {dt}: {svg}: root <{root.tag}> with {len(list(root.iter()))} elements")
        except ET.ParseError as e:
            pr.append(f"analyze {dt}: {svg} is not well-formed XML: {e}")
        res.append(f"{dt}: {len(recs)} tensors, {len(lrecs)} layers, global cos {j.get('global', {}).get('cosine'):.6f}")
    return "; ".join(res)


def case_special(run, pr):
    """NaN, Inf, -0, overflow and subnormals in target/rl/sft: IEEE f32 arithmetic, then RNE with
    overflow to Inf and NaN quieted with sign and payload (docs/concepts.md, Numerics)."""
    rng = np.random.default_rng(7)
    n_runs = 0
    notes = []
    for dt in MODEL_DTYPES:
        sft, rl, tgt = (dict(m) for m in run.models[dt])
        bdt = np.dtype(DTYPES[dt][2])
        enc = lambda x: bits_of(dt, narrow(dt, np.array(x, np.float32)))[0]
        # Bit patterns per dtype.
        if dt == "BF16":
            qnan, qnan_neg, snan, big, nbig, sub = 0x7FC5, 0xFFE1, 0x7F81, 0x7F7F, 0xFF7F, 0x0003
        elif dt == "F16":
            qnan, qnan_neg, snan, big, nbig, sub = 0x7E05, 0xFE21, 0x7C01, 0x7BFF, 0xFBFF, 0x0003
        else:
            qnan, qnan_neg, snan, big, nbig, sub = 0x7FC00005, 0xFFE00021, 0x7F800001, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000003
        inf, ninf = enc(np.inf), enc(-np.inf)
        negz, one, half = enc(-0.0), enc(1.0), enc(0.5)
        # (target, rl, sft) bit patterns; None keeps the random value. Each has at most one NaN operand.
        patterns = [
            (qnan, None, None), (qnan_neg, None, None), (snan, None, None), (None, qnan, None), (None, None, qnan_neg),
            (None, snan, None), (inf, None, None), (ninf, None, None), (None, inf, None), (None, None, inf),
            (None, inf, inf), (inf, ninf, None), (ninf, inf, None),            # Inf - Inf: a made NaN
            (negz, one, one), (negz, negz, 0), (negz, 0, negz), (0, negz, 0),   # signed zeros
            (big, big, 0), (big, None, None), (nbig, None, nbig), (nbig, 0, big),  # overflow on output
            (sub, sub, 0), (sub, 0, sub), (sub, None, None), (one, sub, 0), (half, enc(2.0 ** -126 if dt != "F16" else 2.0 ** -14), 0),
        ]
        if dt == "BF16":
            patterns.append((big, 0x7B00, 0))  # 0x7F7F0000 + 2^119: an exact tie with Inf at lambda 1 -> Inf (even)
        if dt == "F16":
            patterns.append((0x7BFF, 0x5000, 0))  # 65504 + 32 = 65536: past the f16 range -> Inf
        for j, name in enumerate(("model.embed_tokens.weight", "model.layers.0.mlp.odd_vector", "model.layers.2.mlp.cube",
                                  "lm_head.weight", "model.layers.1.self_attn.scale", "model.layers.2.mlp.gate")):
            arrs = [bits_of(dt, m[name][2]).copy() for m in (tgt, rl, sft)]
            size = arrs[0].size
            k = min(size, len(patterns) * (4 if size > 1000 else 1))
            pos = rng.choice(size, k, replace=False)
            for i, p in enumerate(pos):
                pat = patterns[i % len(patterns)] if size > 1 else patterns[(3 * j + i) % len(patterns)]
                for a, v in zip(arrs, pat):
                    if v is not None:
                        a[p] = v
            for m, a in zip((tgt, rl, sft), arrs):
                m[name] = (dt, m[name][1], a.astype(bdt).tobytes())
        paths = {}
        for role, m in (("target", tgt), ("rl", rl), ("sft", sft)):
            paths[role] = write_checkpoint(m, run.p(f"special-{dt}-{role}"), "single")
        for lam in ("1", "0.5", "0.3", "-2"):
            out = run.p(f"special-{dt}-out-{lam}")
            run.write("past", "--rl", paths["rl"], "--sft", paths["sft"], "--target", paths["target"], "--out", out,
                      "--lambda", lam, out=out, target=tgt)
            got, _, _ = read_checkpoint(out)
            check_like_target(got, tgt, pr, f"special {dt} lambda={lam}")
            check_past_values(got, tgt, rl, sft, np.float32(lam), pr, f"special {dt} lambda={lam}")
            n_runs += 1
            if dt in ("BF16", "F16"):  # a NaN output is a quiet NaN
                for name, (odt, _, raw) in got.items():
                    if odt in ("BF16", "F16"):
                        b = bits_of(odt, raw)
                        nan = np.isnan(widen(odt, raw))
                        if (b[nan] & (0x40 if odt == "BF16" else 0x200) == 0).any():
                            pr.append(f"special {dt} lambda={lam}: {name}: a signalling NaN in the output")
        # rl == sft on a target with -0, NaN and Inf: IEEE says -0 + 0 = +0, and an sNaN comes out quiet.
        out = run.p(f"special-{dt}-identity")
        run.write("past", "--rl", paths["target"], "--sft", paths["target"], "--target", paths["target"], "--out", out, out=out, target=tgt)
        got, _, _ = read_checkpoint(out)
        check_past_values(got, tgt, tgt, tgt, np.float32(1), pr, f"special {dt} rl==sft")
        changed = sum(int((bits_of(dt, got[n][2]) != bits_of(dt, tgt[n][2])).sum()) for n in tgt if tgt[n][0] in FLOAT)
        notes.append(f"{dt}: rl==sft==target changes {changed} non-finite/-0 elements")
        n_runs += 1
    return f"{n_runs} runs bit-exact vs IEEE oracle ({'NaN payloads bit-exact' if X86 else 'NaN sign/quiet only'}); " + "; ".join(notes)


def case_inspect(run, pr):
    """skillvec inspect reads back everything skillvec wrote (and every reference-written input)."""
    paths = list(dict.fromkeys(run.outputs + list(run.paths.values())))
    for p in paths:
        try:
            r = run.sv("inspect", p)
        except Fail as e:
            pr.append(str(e))
            continue
        first = r.stdout.splitlines()[0] if r.stdout else ""
        t, _, _ = read_checkpoint(p)
        if f"valid, {len(t)} tensors" not in first:
            pr.append(f"inspect {os.path.basename(p)}: {first!r}, expected {len(t)} tensors")
    return f"{len(paths)} checkpoints valid"


def case_large(run, pr):
    """A tensor of 2^24 + 1031 elements: past evaluates it in 2^24-element chunks (evaluate.hpp,
    chunk_elements), releasing inputs chunk by chunk; the output offset of the second chunk must
    use the output's element size (tested with a bf16 model written as f32). analyze reduces it in
    the same chunks."""
    n = (1 << 24) + 1031
    step = 1 << 20
    big = "model.layers.0.mlp.huge.weight"
    rng = np.random.default_rng(13)
    models = {"sft": {}, "rl": {}, "target": {}}
    raws = {k: bytearray(2 * n) for k in models}
    for i in range(0, n, step):
        m = min(step, n - i)
        s_ = f32_to_bf16_bits(rng.standard_normal(m, dtype=np.float32) * np.float32(0.02))
        sv = (s_.astype(np.uint32) << 16).view(np.float32)
        r_ = f32_to_bf16_bits(sv + rng.standard_normal(m, dtype=np.float32) * np.float32(0.002))
        t_ = f32_to_bf16_bits(sv + rng.standard_normal(m, dtype=np.float32) * np.float32(0.003))
        for k, b in (("sft", s_), ("rl", r_), ("target", t_)):
            raws[k][2 * i: 2 * (i + m)] = b.astype("<u2").tobytes()
    paths = {}
    for k in models:
        models[k][big] = ("BF16", (n,), bytes(raws[k]))
        models[k]["model.position_ids"] = ("I64", (1, 8), np.arange(8, dtype="<i8").tobytes())
        paths[k] = write_checkpoint(models[k], run.p(f"large-{k}"), "single")
    del raws
    for flag, odt in (("keep", "BF16"), ("f32", "F32")):
        out = run.p(f"large-out-{flag}")
        run.write("past", "--rl", paths["rl"], "--sft", paths["sft"], "--target", paths["target"], "--out", out,
                  "--lambda", "0.3", "--dtype", flag, out=out, target=models["target"])
        got, _, _ = read_checkpoint(out)
        check_like_target(got, models["target"], pr, f"large --dtype {flag}", float_dtype=odt)
        g = got[big][2]
        ow = DTYPES[odt][1]
        bad = 0
        for i in range(0, n, step):
            m = min(step, n - i)
            sl = lambda raw: raw[2 * i: 2 * (i + m)]
            exp, prop, made = expected_past("BF16", sl(models["target"][big][2]), "BF16", sl(models["rl"][big][2]),
                                            "BF16", sl(models["sft"][big][2]), np.float32(0.3), odt)
            p = compare_float(f"large --dtype {flag}: {big}[{i}:{i + m}]", odt, g[ow * i: ow * (i + m)], exp, prop, made)
            pr += p
            bad += len(p)
            if bad > 3:
                break
        del got, g
    js = run.p("large-analyze.json")
    run.sv("analyze", "--a-minus", paths["sft"], "--a", paths["rl"], "--b-minus", paths["sft"], "--b", paths["target"],
           "--json", js, "--quiet")
    acc = {"dot": 0.0, "ssa": 0.0, "ssb": 0.0, "sa": 0, "sb": 0, "n": 0}
    for i in range(0, n, step):
        m = min(step, n - i)
        w = {k: widen("BF16", models[k][big][2][2 * i: 2 * (i + m)]) for k in models}
        st = stats((w["rl"] - w["sft"]).astype(np.float32), (w["target"] - w["sft"]).astype(np.float32), np.float32(0))
        for k in acc:
            acc[k] += st[k]
    with open(js) as f:
        j = json.load(f)
    rec = next((r for r in j.get("tensors", []) if r.get("name") == big), {})
    compare_record(rec, derived(acc), pr, f"large analyze {big}")
    compare_record(j.get("global", {}), derived(acc), pr, "large analyze global")
    return f"{n} elements (2 chunks): bf16 and f32 outputs bit-exact, analyze within tolerance (cos {rec.get('cosine')})"


# In the order they run. `inspect` runs last, over the outputs of every case before it.
CASES = [
    ("past: lambda 1/0.5/0.3 x bf16/f16/f32 vs numpy", case_past),
    ("past --dtype conversions", case_dtype),
    ("extract: f32 (dir and file) == rl - sft", case_extract),
    ("inject(extract) == past", case_inject),
    ("identity: rl == sft reproduces the target", case_identity),
    ("multiple targets, --save-vector, threads", case_multi),
    ("sharded output (--max-shard-size 200KB)", case_sharded),
    ("non-float passthrough", case_passthrough),
    ("side files and __metadata__", case_side_files),
    ("analyze --json/--svg vs numpy", case_analyze),
    ("NaN/Inf/-0/overflow/subnormal semantics", case_special),
]
LARGE_CASE = ("2^24+1031-element tensor: chunked evaluation", case_large)  # with --large
LAST_CASE = ("inspect reads every output", case_inspect)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skillvec", required=True, help="path to the skillvec executable")
    ap.add_argument("--workdir", help="where to write (default: a temporary directory, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--large", action="store_true", help="also run the 2^24-element case (about 200 MB of files)")
    args = ap.parse_args()
    exe = os.path.abspath(args.skillvec)
    if not os.access(exe, os.X_OK):
        print(f"interop: FAIL: {exe} is not an executable (build the skillvec_cli target)")
        return 1
    t0 = time.time()
    global HARDWARE_FMA
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    m = re.search(r"fma: (yes|no)", version)
    if not m:
        print(f"interop: FAIL: `skillvec --version` does not say whether it uses an FMA: {version!r}")
        return 1
    HARDWARE_FMA = m.group(1) == "yes"
    print(f"interop: numpy {np.__version__}, safetensors {safetensors.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}; {version} at {exe}; oracle: {'fma' if HARDWARE_FMA else 'a*b + c'}")
    # A space, XML metacharacters and non-ASCII in every path: they reach the SVG caption and the
    # JSON of __metadata__, which must escape them.
    work = args.workdir or tempfile.mkdtemp(prefix="skillvec-interop-", suffix=" a&b <ü>")
    os.makedirs(work, exist_ok=True)
    run = Run(exe, work)
    failed = 0
    try:
        try:
            run.setup()
        except Exception as e:  # noqa: BLE001
            print(f"FAIL setup: {e}")
            traceback.print_exc()
            return 1
        order = CASES + ([LARGE_CASE] if args.large else []) + [LAST_CASE]
        for i, (title, fn) in enumerate(order, 1):
            pr = []
            t1 = time.time()
            try:
                detail = fn(run, pr)
            except Fail as e:
                pr.append(str(e))
                detail = ""
            except Exception as e:  # noqa: BLE001
                pr.append(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
                detail = ""
            dt = time.time() - t1
            if pr:
                failed += 1
                print(f"FAIL {i:2d} {title}: {len(pr)} problem(s) [{dt:.1f}s]")
                for p in pr[:12]:
                    print(f"       {p}")
                if len(pr) > 12:
                    print(f"       ... and {len(pr) - 12} more")
            else:
                print(f"PASS {i:2d} {title}: {detail} [{dt:.1f}s]")
            sys.stdout.flush()
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print(f"interop: files kept in {work}")
    print(f"interop: {len(order) - failed}/{len(order)} cases passed in {time.time() - t0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
