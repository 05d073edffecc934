#!/usr/bin/env python3
"""End-to-end tests of `skillvec merge RECIPE.yaml`, through the real binary.

    merge_cli.py --skillvec PATH/TO/skillvec [--memory] [--keep] [--workdir DIR]

Writes small Llama-shaped bf16 checkpoints with examples/skillvec/make_toy_checkpoints.py
(base, sft_S, rl_S, sft_T; 3 layers, hidden 64), writes recipes for them, runs `skillvec merge`
and checks what it writes with the reference `safetensors` reader and numpy. One line per case:
"PASS <case>" or "FAIL <case>: <why>".

  1. past through a recipe == `skillvec past`, every tensor's bytes (lambda 1 and 0.5, single
     file and 3 shards).
  2. every merge method runs: the output validates (`skillvec inspect`), has the point operand's
     tensors, shapes and dtypes, its non-float tensors unchanged and its side files, and
     __metadata__ names the method and holds the recipe. Values against a float64 numpy oracle
     from the bf16 inputs, within 1 ulp of the output dtype (task_arithmetic, linear, slerp,
     expression, ties, dare_linear with the documented counter-based mask), and invariants
     (density 1 == task_arithmetic, same seed same output, another seed another output).
  3. exclude passes tensors through bit-exactly; out_dtype float32; a lambda gradient gives
     per-layer results that follow the oracle.
  4. --dry-run prints the resolved plan, writes nothing, is fast, and its values match a
     gradient interpolated by hand.
  5. errors: exit 1 (2 for a missing --out), `skillvec: error: ...` on stderr, nothing written,
     inputs unchanged; the same recipe errors with --dry-run.
  6. (--memory, not in the default run) peak RSS of `merge` (ties, dare_ties, task_arithmetic)
     vs `past` on ~1 GB of generated bf16 checkpoints with 64 MiB tensors, against the bound of
     benchmarks/merge_memory (512 MiB + 2x the largest tensor).

Exit status: 0 all passed, 1 a case failed, 77 numpy or safetensors is missing (skip), unless
SKILLVEC_REQUIRE_INTEROP=1, in which case a missing module is a failure.
"""

import argparse
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback


def _missing(what, err):
    if os.environ.get("SKILLVEC_REQUIRE_INTEROP") == "1":
        print(f"merge_cli: FAIL: {what} cannot be imported ({err}) and SKILLVEC_REQUIRE_INTEROP=1")
        sys.exit(1)
    print(f"merge_cli: skipped: {what} cannot be imported ({err}); pip install safetensors==0.4.5 numpy==2.1.3")
    sys.exit(77)


try:
    import numpy as np
except ImportError as e:  # pragma: no cover
    _missing("numpy", e)
try:
    from safetensors import deserialize
except ImportError as e:  # pragma: no cover
    _missing("safetensors", e)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOY = os.path.join(ROOT, "examples", "skillvec", "make_toy_checkpoints.py")
MERGE_MEMORY = os.path.join(ROOT, "benchmarks", "merge_memory")
LAYERS = 3
FLOAT = ("BF16", "F16", "F32", "F64")
SIDE_FILES = ("config.json", "tokenizer.json")
MIB = 1 << 20


class Fail(Exception):
    pass


def check(ok, what):
    if not ok:
        raise Fail(what)


# ----------------------------------------------------------------------------------------------
# Reading checkpoints
# ----------------------------------------------------------------------------------------------

def header_of(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def files_of(ckpt):
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return sorted(set(json.load(f)["weight_map"].values()))
    return ["model.safetensors"]


def load(ckpt):
    """{name: (DTYPE, shape, bytes)} with the reference reader, and the first file's __metadata__."""
    out, meta = {}, None
    for fname in files_of(ckpt):
        path = os.path.join(ckpt, fname)
        with open(path, "rb") as f:
            raw = f.read()
        for name, t in deserialize(raw):
            out[name] = (DT_NAMES[t["dtype"]], list(t["shape"]), bytes(t["data"]))
        if meta is None:
            meta = header_of(path).get("__metadata__", {})
    return out, meta


DT_NAMES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "float64": "F64", "int64": "I64",
            "BF16": "BF16", "F16": "F16", "F32": "F32", "F64": "F64", "I64": "I64"}


def values(t):
    """f64 values of a float tensor (dtype, shape, bytes)."""
    dt, shape, raw = t
    if dt == "BF16":
        x = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    elif dt == "F16":
        x = np.frombuffer(raw, "<f2")
    elif dt == "F32":
        x = np.frombuffer(raw, "<f4")
    elif dt == "F64":
        x = np.frombuffer(raw, "<f8")
    else:
        raise ValueError(dt)
    return x.astype(np.float64).reshape(shape)


def f32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


MANT = {"BF16": 8, "F16": 11, "F32": 24, "F64": 53}
MIN_EXP = {"BF16": -126, "F16": -14, "F32": -126, "F64": -1022}


def ulp(x, dt):
    _, e = np.frexp(np.abs(x))
    return np.ldexp(1.0, np.maximum(e - 1, MIN_EXP[dt]) - (MANT[dt] - 1))


def close(out_t, oracle, what, ulps=1.0, extra=0.0):
    """The output tensor is within `ulps` ulp of the float64 oracle (ulp of the output dtype), plus
    `extra` (an absolute tolerance, per element or scalar)."""
    got = values(out_t)
    check(got.shape == oracle.shape, f"{what}: shape {got.shape} vs oracle {oracle.shape}")
    tol = ulps * np.maximum(ulp(got, out_t[0]), ulp(oracle, out_t[0])) + extra
    bad = np.abs(got - oracle) > tol
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise Fail(f"{what}: {int(bad.sum())} of {bad.size} elements off by more than {ulps} ulp, first at "
                   f"{i}: got {got.ravel()[i]!r}, oracle {oracle.ravel()[i]!r}")


def tree_digest(d):
    """sha256 over every file under d (names, sizes, contents): 'inputs unchanged'."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(d)):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(os.path.relpath(p, d).encode() + b"\0")
            with open(p, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Running skillvec
# ----------------------------------------------------------------------------------------------

class Env:
    def __init__(self, exe, work):
        self.exe, self.work = exe, work
        self.toy = os.path.join(work, "toy")
        self.models = {}

    def run(self, *args, expect=0, cwd=None):
        t0 = time.perf_counter()
        r = subprocess.run([self.exe] + [str(a) for a in args], capture_output=True, text=True, cwd=cwd)
        r.seconds = time.perf_counter() - t0
        if expect is not None and r.returncode != expect:
            raise Fail(f"skillvec {' '.join(map(str, args))}: exit {r.returncode}, wanted {expect}\n"
                       f"stdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-2000:]}")
        return r

    def model(self, name, toy=None):
        """The tensors of a toy checkpoint, cached."""
        d = os.path.join(toy or self.toy, name)
        if d not in self.models:
            self.models[d] = load(d)[0]
        return self.models[d]

    def recipe(self, name, text):
        path = os.path.join(self.work, "recipes", name + ".yaml")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def merge(self, name, text, *extra, expect=0):
        """Writes the recipe, runs `skillvec merge` into out/NAME; returns (output dir, result)."""
        path = self.recipe(name, text)
        out = os.path.join(self.work, "out", name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        r = self.run("merge", path, "--out", out, "--quiet", "--force", *extra, expect=expect)
        return out, r


def toy_paths(toy):
    return {k: os.path.join(toy, k) for k in ("base", "sft_S", "rl_S", "sft_T")}


# ----------------------------------------------------------------------------------------------
# Common checks of a merged checkpoint
# ----------------------------------------------------------------------------------------------

def validate_output(env, out, point_dir, method, recipe_path, out_dtype=None):
    """inspect passes; the point operand's tensors, shapes and dtypes; non-float tensors unchanged;
    side files copied; __metadata__ names the method and holds the recipe. Returns the tensors."""
    r = env.run("inspect", out)
    check("valid" in r.stdout.splitlines()[0], f"inspect {out}: {r.stdout.splitlines()[0]}")
    got, meta = load(out)
    ref, _ = load(point_dir)
    check(sorted(got) == sorted(ref), f"{out}: tensor names differ from {point_dir}: "
                                      f"{sorted(set(got) ^ set(ref))[:5]}")
    for n, (dt, shape, raw) in ref.items():
        gdt, gshape, graw = got[n]
        check(gshape == shape, f"{out}: {n} has shape {gshape}, the input {shape}")
        if dt in FLOAT:
            want = out_dtype or dt
            check(gdt == want, f"{out}: {n} is {gdt}, expected {want}")
        else:
            check((gdt, graw) == (dt, raw), f"{out}: non-float {n} changed ({dt} -> {gdt})")
    for f in SIDE_FILES:
        p = os.path.join(out, f)
        check(os.path.exists(p), f"{out}: {f} not copied")
        with open(p, "rb") as a, open(os.path.join(point_dir, f), "rb") as b:
            check(a.read() == b.read(), f"{out}: {f} differs from the point operand's ({point_dir})")
    check(meta.get("skillvec_method") == method, f"{out}: skillvec_method = {meta.get('skillvec_method')!r}")
    with open(recipe_path) as f:
        check(meta.get("skillvec_recipe_file") == f.read(), f"{out}: skillvec_recipe_file is not the recipe")
    check(meta.get("format") == "pt", f"{out}: format = {meta.get('format')!r}")
    return got


def floats(tensors):
    return [n for n, t in tensors.items() if t[0] in FLOAT]


def same_bytes(a, b, what, names=None):
    for n in names or sorted(a):
        if a[n] != b[n]:
            raise Fail(f"{what}: tensor {n} differs ({a[n][0]} vs {b[n][0]})")


def differ(a, b, what):
    check(any(a[n] != b[n] for n in floats(a)), what)


# ----------------------------------------------------------------------------------------------
# Oracles (float64, from the bf16 inputs)
# ----------------------------------------------------------------------------------------------

def layer_of(name):
    m = re.search(r"\.layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def gradient_at(points, name, layers=LAYERS):
    """docs/recipes.md: points spread over the layers, layer l of L at l/(L-1); embeddings take
    the first value, other tensors outside the layers the last."""
    lay = layer_of(name)
    if lay is None:
        return points[0] if any(k in name for k in ("embed", "wte", "wpe")) else points[-1]
    if len(points) == 1:
        return points[0]
    x = (lay / (layers - 1)) * (len(points) - 1)
    i = min(int(np.floor(x)), len(points) - 2)
    return points[i] + (points[i + 1] - points[i]) * (x - i)


def tau(env, model, name):
    """A task vector as the library computes it: model - base in f32 (exact bf16 inputs)."""
    return f32(values(env.model(model)[name]) - values(env.model("base")[name]))


def slerp_oracle(a, b, t):
    na, nb, dot = np.sqrt((a * a).sum()), np.sqrt((b * b).sum()), (a * b).sum()
    an = na if na > 1e-8 else 1.0
    bn = nb if nb > 1e-8 else 1.0
    c = dot / (an * bn)
    if abs(c) > 0.9995:
        return (1 - t) * a + t * b
    th = np.arccos(c)
    return np.sin((1 - t) * th) / np.sin(th) * a + np.sin(t * th) / np.sin(th) * b


M64 = (1 << 64) - 1


def _mix(z):
    """SplitMix64 finalizer on python ints or uint64 arrays (docs/recipes_methods.md, dare)."""
    if isinstance(z, int):
        z = (z + 0x9E3779B97F4A7C15) & M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dare_keep(seed, k, name, n, density):
    h = 0xcbf29ce484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001b3) & M64
    key = _mix(_mix(_mix(seed) ^ k) ^ h)
    u = (_mix(np.uint64(key) ^ np.arange(n, dtype=np.uint64)) >> np.uint64(40)).astype(np.float64) * 2.0 ** -24
    return u < density


def magnitude_keep(t, density):
    """ties' magnitude selection: k = floor(density n), keep |t| >= the k-th largest (ties kept)."""
    n = t.size
    if density >= 1:
        return np.ones(t.shape, bool)
    k = int(np.floor(density * n))
    if density <= 0 or n == 0:
        return np.zeros(t.shape, bool)
    k = max(1, k)
    a = np.abs(t).ravel()
    thr = np.partition(a, n - k)[n - k]
    return np.abs(t) >= thr


def ties_oracle(taus, weights, densities, lam=1.0, normalize=True):
    d = [w * np.where(magnitude_keep(t, den), t, 0.0) for t, w, den in zip(taus, weights, densities)]
    total = sum(d)
    elected = np.where(total >= 0, 1.0, -1.0)
    agree = [np.sign(x) == elected for x in d]
    mixed = sum(np.where(a, x, 0.0) for a, x in zip(agree, d))
    if normalize:
        div = sum(np.where(a, w, 0.0) for a, w in zip(agree, weights))
        mixed = mixed / np.where(div == 0, 1.0, div)
    return lam * mixed


# ----------------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------------

def past_recipe(p, lam, extra=""):
    return (f"merge_method: past\ntarget: {p['sft_T']}\nrl: {p['rl_S']}\nsft: {p['sft_S']}\n"
            f"parameters:\n  lambda: {lam}\n{extra}")


def case_past_equals_cli(env):
    """1. merge_method: past == skillvec past, byte for byte, single file and 3 shards."""
    for toy in (env.toy, env.toy3):
        p = toy_paths(toy)
        for lam in ("1", "0.5"):
            tag = f"past_{os.path.basename(toy)}_{lam}"
            out, _ = env.merge(tag, past_recipe(p, lam))
            ref = os.path.join(env.work, "out", tag + "_cli")
            env.run("past", "--rl", p["rl_S"], "--sft", p["sft_S"], "--target", p["sft_T"], "--out", ref,
                    "--lambda", lam, "--quiet", "--force")
            a, b = load(out)[0], load(ref)[0]
            check(sorted(a) == sorted(b), f"{tag}: tensor names differ")
            same_bytes(a, b, f"{tag}: merge vs past")
            if lam == "0.5":  # not vacuous: lambda changes the output
                differ(a, env.model("sft_T", toy), f"{tag}: output equals the target")
    # Relative model paths resolve against the recipe's directory, not the working directory.
    rel = os.path.join(env.toy, "relative.yaml")
    with open(rel, "w") as f:
        f.write("merge_method: past\ntarget: ./sft_T\nrl: rl_S\nsft: {model: ./sft_S}\nparameters: {lambda: 0.5}\n")
    out = os.path.join(env.work, "out", "relative")
    env.run("merge", rel, "--out", out, "--quiet", cwd="/")
    same_bytes(load(out)[0], load(os.path.join(env.work, "out", f"past_{os.path.basename(env.toy)}_0.5_cli"))[0],
               "recipe with relative paths vs skillvec past")
    inputs = json.loads(load(out)[1]["skillvec_inputs"])
    p = toy_paths(env.toy)
    check({k: os.path.normpath(v) for k, v in inputs.items()} == {"target": p["sft_T"], "rl": p["rl_S"], "sft": p["sft_S"]},
          f"skillvec_inputs = {inputs}")


def method_recipes(p):
    base, S, T, R = p["base"], p["sft_S"], p["sft_T"], p["rl_S"]
    two = (f"base_model: {base}\nmodels:\n  - model: {S}\n    parameters: {{weight: 1.0, density: 0.5}}\n"
           f"  - model: {T}\n    parameters: {{weight: 0.5, density: 0.5}}\n")
    return {
        # method: (recipe, point operand)
        "past": (past_recipe(p, 1.0), T),
        "orthogonal_past": (f"merge_method: orthogonal_past\ntarget: {T}\nrl: {R}\nsft: {S}\nbase: {base}\n"
                            "parameters: {lambda: 1.0}\n", T),
        "task_arithmetic": (f"merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n"
                            f"  - model: {S}\n    parameters: {{weight: 0.6}}\n"
                            f"  - model: {T}\n    parameters: {{weight: 0.4}}\nparameters: {{lambda: 0.8}}\n", base),
        "linear": (f"merge_method: linear\nmodels:\n  - model: {S}\n    parameters: {{weight: 2.0}}\n"
                   f"  - model: {T}\n    parameters: {{weight: 1.0}}\nparameters: {{normalize: true}}\n", S),
        "ties": ("merge_method: ties\n" + two + "parameters: {lambda: 1.0}\n", base),
        "dare_linear": (f"merge_method: dare_linear\nbase_model: {base}\nmodels:\n"
                        f"  - model: {S}\n    parameters: {{weight: 1.0, density: 0.5}}\n"
                        f"  - model: {T}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
                        "parameters: {seed: 7}\n", base),
        "dare_ties": ("merge_method: dare_ties\n" + two + "parameters: {seed: 7}\n", base),
        "breadcrumbs": ("merge_method: breadcrumbs\n" + two.replace("density: 0.5}", "density: 0.8, gamma: 0.05}"), base),
        "breadcrumbs_ties": ("merge_method: breadcrumbs_ties\n" + two.replace("density: 0.5}", "density: 0.8, gamma: 0.05}"),
                             base),
        "magnitude_prune": ("merge_method: magnitude_prune\n" + two, base),
        "slerp": (f"merge_method: slerp\nbase_model: {base}\nmodels:\n  - model: {R}\nparameters:\n  t: 0.3\n", base),
        "expression": (f"merge_method: expression\nmodels:\n  target: {T}\n  rl: {R}\n  sft: {{model: {S}}}\n"
                       "parameters:\n  lambda: [0.5, 1.0, 1.5]\nexpression: target + lambda * (rl - sft)\n", T),
    }


def case_every_method(env):
    """2. every method runs and writes a complete, valid checkpoint."""
    p = toy_paths(env.toy)
    env.outputs = {}
    for method, (text, point) in method_recipes(p).items():
        out, _ = env.merge("m_" + method, text)
        got = validate_output(env, out, point, method, env.recipe("m_" + method, text))
        # Every method moves something: no method silently copies its point operand.
        differ(got, env.model(os.path.basename(point)), f"{method}: output equals the point operand")
        env.outputs[method] = got


def case_oracles(env):
    """2. values of task_arithmetic, linear, slerp, expression, ties and dare_linear against numpy."""
    o = env.outputs
    for n in floats(o["task_arithmetic"]):
        b = values(env.model("base")[n])
        close(o["task_arithmetic"][n], b + 0.8 * (0.6 * tau(env, "sft_S", n) + 0.4 * tau(env, "sft_T", n)),
              f"task_arithmetic {n}")
        close(o["linear"][n], (2 * values(env.model("sft_S")[n]) + values(env.model("sft_T")[n])) / 3, f"linear {n}")
        close(o["slerp"][n], slerp_oracle(b, values(env.model("rl_S")[n]), 0.3), f"slerp {n}")
        lam = gradient_at([0.5, 1.0, 1.5], n)
        t, rl, sft = (values(env.model(k)[n]) for k in ("sft_T", "rl_S", "sft_S"))
        close(o["expression"][n], t + lam * (rl - sft), f"expression {n} (lambda {lam})")
        taus = [tau(env, "sft_S", n), tau(env, "sft_T", n)]
        close(o["ties"][n], b + ties_oracle(taus, [1.0, 0.5], [0.5, 0.5]), f"ties {n}")
        size = taus[0].size
        dl = sum(w * np.where(dare_keep(7, k, n, size, 0.5).reshape(t.shape), tk / 0.5, 0.0)
                 for k, (w, tk) in enumerate(zip([1.0, 0.5], taus)))
        close(o["dare_linear"][n], b + dl, f"dare_linear {n}")


def case_invariants(env):
    """2. ties/dare/breadcrumbs/magnitude_prune invariants, bit for bit."""
    p = toy_paths(env.toy)
    base, S = p["base"], p["sft_S"]

    def one(method, params="", glob=""):
        text = f"merge_method: {method}\nbase_model: {base}\nmodels:\n  - model: {S}\n"
        if params:
            text += f"    parameters: {{{params}}}\n"
        if glob:
            text += f"parameters: {{{glob}}}\n"
        tag = re.sub(r"[^a-z0-9]+", "_", f"inv_{method}_{params}_{glob}".lower())
        return env.merge(tag, text)[0]

    ta = load(one("task_arithmetic"))[0]
    for method, params in (("ties", "density: 1.0"), ("dare_linear", "density: 1.0"), ("dare_ties", "density: 1.0"),
                           ("magnitude_prune", "density: 1.0"), ("breadcrumbs", "density: 1.0, gamma: 0.1")):
        same_bytes(load(one(method, params))[0], ta, f"{method} ({params}, one model) vs task_arithmetic")
    # One model with weight 1, density 1 and any λ: ties == task_arithmetic with that λ.
    same_bytes(load(one("ties", "density: 1.0", "lambda: 0.7"))[0], load(one("task_arithmetic", "", "lambda: 0.7"))[0],
               "ties (density 1, lambda 0.7) vs task_arithmetic (lambda 0.7)")
    # DARE draws: reproducible for a seed, different for another; density < 1 does something.
    a = load(one("dare_ties", "density: 0.5", "seed: 3"))[0]
    b = load(one("dare_ties", "density: 0.5", "seed: 3"))[0]
    c = load(one("dare_ties", "density: 0.5", "seed: 4"))[0]
    same_bytes(a, b, "dare_ties seed 3 twice")
    differ(a, c, "dare_ties with seeds 3 and 4 gave the same output")
    differ(a, ta, "dare_ties density 0.5 == task_arithmetic")
    # The same recipe with 1 thread and with 2 threads: bit-identical (docs promise it).
    text = method_recipes(p)["ties"][0]
    o1, _ = env.merge("ties_threads", text, "--threads", "1")
    r1 = load(o1)[0]
    o2, _ = env.merge("ties_threads", text, "--threads", "2")
    same_bytes(r1, load(o2)[0], "ties with --threads 1 vs --threads 2")
    # --max-shard-size shards the output; the tensors are the same.
    o3, _ = env.merge("ties_sharded", text, "--max-shard-size", "100KB")
    check(os.path.exists(os.path.join(o3, "model.safetensors.index.json")), "--max-shard-size 100KB wrote no index")
    check(len(files_of(o3)) > 2, f"--max-shard-size 100KB wrote {len(files_of(o3))} shards")
    env.run("inspect", o3)
    same_bytes(load(o3)[0], r1, "ties sharded vs single file")


def case_exclude_dtype_gradient(env):
    """3. exclude passes through; out_dtype float32; a lambda gradient per layer."""
    p = toy_paths(env.toy)
    base = env.model("base")
    text = method_recipes(p)["task_arithmetic"][0] + "exclude: [embed_tokens, lm_head]\n"
    out, _ = env.merge("exclude", text)
    got = validate_output(env, out, p["base"], "task_arithmetic", env.recipe("exclude", text))
    same_bytes(got, base, "excluded tensors vs base", ["model.embed_tokens.weight", "lm_head.weight"])
    full = env.outputs["task_arithmetic"]
    same_bytes(got, full, "non-excluded tensors vs the merge without exclude",
               [n for n in floats(got) if "embed_tokens" not in n and "lm_head" not in n])

    text = method_recipes(p)["task_arithmetic"][0] + "out_dtype: float32\n"
    out, _ = env.merge("f32", text)
    got = validate_output(env, out, p["base"], "task_arithmetic", env.recipe("f32", text), out_dtype="F32")
    for n in floats(got):
        v = f32(0.8) * (f32(0.6) * tau(env, "sft_S", n) + f32(0.4) * tau(env, "sft_T", n))
        # f32 out: the vector is rounded to f32 once (half an f32 ulp of v), then base + v once
        # more (half an ulp of the output): where base + v cancels, the first rounding dominates.
        close(got[n], values(base[n]) + v, f"float32 task_arithmetic {n}", extra=ulp(v, "F32"))

    # lambda [0, 1] over 3 layers: 0, 0.5, 1; embeddings 0 (== the target), lm_head/norm 1.
    text = past_recipe(p, "[0.0, 1.0]")
    out, _ = env.merge("gradient", text)
    got = validate_output(env, out, p["sft_T"], "past", env.recipe("gradient", text))
    full = load(os.path.join(env.work, "out", f"past_{os.path.basename(env.toy)}_1"))[0]
    same_bytes(got, env.model("sft_T"), "lambda 0 at the embeddings", ["model.embed_tokens.weight"])
    same_bytes(got, full, "lambda 1 at lm_head, the last layer and the final norm",
               ["lm_head.weight", "model.norm.weight", f"model.layers.{LAYERS - 1}.mlp.up_proj.weight"])
    n1 = "model.layers.1.mlp.up_proj.weight"
    check(got[n1] != full[n1] and got[n1] != env.model("sft_T")[n1], "layer 1 (lambda 0.5) equals lambda 0 or 1")
    for n in floats(got):
        lam = gradient_at([0.0, 1.0], n)
        t, rl, sft = (values(env.model(k)[n]) for k in ("sft_T", "rl_S", "sft_S"))
        close(got[n], t + lam * f32(rl - sft), f"gradient {n} (lambda {lam})")


def parse_plan(stdout):
    """--dry-run's table: {tensor: (shape, dtype, action, {param: value})}."""
    lines = stdout.splitlines()
    head = [i for i, l in enumerate(lines) if l.startswith("tensor ")]
    check(head, f"no table header in the plan:\n{stdout[:1000]}")
    rows = {}
    for line in lines[head[0] + 1:]:
        if not line.strip():
            continue
        m = re.match(r"(\S+)\s+(\[[^\]]*\])\s+(\S+)\s+(merge|keep|copy|skip)\s*(.*)$", line)
        check(m, f"plan line not understood: {line!r}")
        params = dict(re.findall(r"(\w+)=(\[[^\]]*\]|\{[^}]*\}|\S+)", m.group(5)))
        rows[m.group(1)] = (m.group(2), m.group(3), m.group(4), params, m.group(5))
    return lines[:head[0]], rows


def case_dry_run(env):
    """4. --dry-run: the plan, nothing written, fast, parameters as interpolated by hand."""
    p = toy_paths(env.toy)
    before = {k: tree_digest(v) for k, v in p.items()}
    pts = [0.2, 1.0, 0.4, 2.0]  # over 3 layers: 0.2, 0.7, 2.0; embeddings 0.2; lm_head 2.0
    dpts = [0.1, 0.9, 0.3, 0.6]  # over 3 layers: 0.1, 0.6, 0.6
    text = (f"merge_method: ties\nbase_model: {p['base']}\nmodels:\n"
            f"  - model: {p['sft_S']}\n    parameters:\n      density:\n        - filter: mlp\n          value: 0.3\n"
            f"        - value: {dpts}\n      weight: 1.0\n"
            f"  - model: {p['sft_T']}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
            f"parameters:\n  lambda: {pts}\nexclude: [lm_head]\n")
    path = env.recipe("dry", text)
    out = os.path.join(env.work, "out", "dry")
    os.makedirs(os.path.dirname(out), exist_ok=True)  # with --only, no earlier case made it
    r = env.run("merge", path, "--out", out, "--dry-run")
    check(not os.path.exists(out), "--dry-run created the output")
    check(not [f for f in os.listdir(os.path.dirname(out)) if "skillvec-tmp" in f], "--dry-run left a temporary directory")
    check(r.seconds < 5, f"--dry-run took {r.seconds:.2f} s")
    check(r.stderr == "", f"--dry-run wrote to stderr: {r.stderr!r}")
    head, rows = parse_plan(r.stdout)
    check(head[0] == f"recipe: {path}", f"plan's first line: {head[0]!r}")
    check("method: ties" in head, f"plan header: {head}")
    check(f"layers: {LAYERS}" in head, f"plan header: {head}")
    names = env.model("base")
    check(sorted(rows) == sorted(names), "the plan's tensors are not the base's")
    natural = sorted(rows, key=lambda n: [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", n)])
    check(list(rows) == natural, f"the plan's rows are not in natural order: {list(rows)}")
    for n, (dt, shape, _) in names.items():
        rshape, rdt, action, params, detail = rows[n]
        check(rshape == "[" + ", ".join(map(str, shape)) + "]", f"plan: {n} shape {rshape} vs {shape}")
        check(rdt == f"{dt}->{dt}", f"plan: {n} dtype {rdt}")
        if dt not in FLOAT:
            check(action == "copy", f"plan: non-float {n} is '{action}'")
        elif n == "lm_head.weight":
            check(action == "keep" and "lm_head" in detail, f"plan: {n}: {action} {detail}")
        else:
            check(action == "merge", f"plan: {n} is '{action}'")
            lam = gradient_at(pts, n)
            check(abs(float(params["lambda"]) - lam) < 1e-6, f"plan: {n} lambda={params['lambda']}, by hand {lam}")
            dens = [float(x) for x in params["density"].strip("[]").split(",")]
            want = [0.3 if "mlp" in n else gradient_at(dpts, n), 0.5]
            check(np.allclose(dens, want, atol=1e-6), f"plan: {n} density={params['density']}, by hand {want}")
            check([float(x) for x in params["weight"].strip("[]").split(",")] == [1.0, 0.5], f"plan: {n} weight")
    counts = re.search(r"tensors: (\d+) \((\d+) merged, (\d+) kept, (\d+) copied\)", "\n".join(head))
    check(counts and int(counts.group(3)) == 1 and int(counts.group(4)) == 1, f"plan counts: {head}")
    # Also with no --out at all.
    r2 = env.run("merge", path, "--dry-run")
    check(r2.stdout == r.stdout, "--dry-run without --out prints another plan")
    check({k: tree_digest(v) for k, v in p.items()} == before, "inputs changed")
    env.dry_run_excerpt = r.stdout


ERROR_CASES = [
    # (name, recipe text (format with paths), extra args, regex the first stderr line must match)
    ("yaml_syntax", "merge_method: past\ntarget: [{sft_T}\nrl: {rl_S}\nsft: {sft_S}\n", [],
     r"^skillvec: error: {recipe}:\d+:\d+: invalid YAML: "),
    ("unknown_method", "merge_method: tie\nbase_model: {base}\nmodels:\n  - model: {sft_S}\n", [],
     r"^skillvec: error: {recipe}:1:15: unknown merge_method 'tie'; did you mean 'ties'\?"),
    ("missing_model", "merge_method: past\ntarget: {sft_T}\nrl: {work}/nowhere/rl\nsft: {sft_S}\n", [],
     r"^skillvec: error: {recipe}:3:5: cannot open model 'rl': .*nowhere/rl: cannot read: no such file or directory$"),
    ("rules_without_default",
     "merge_method: ties\nbase_model: {base}\nmodels:\n  - model: {sft_S}\n    parameters:\n      density:\n"
     "        - filter: mlp\n          value: 0.5\n", [],
     r"^skillvec: error: {recipe}:\d+:\d+: parameter 'density' of model '.*sft_S' has no value for tensor "
     r"'(?!.*mlp).*': none of its filters matches it"),
    ("models_disagree", "merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n  - model: {broken}\n", [],
     r"^skillvec: error: checkpoints disagree \(1 problem\): .*model.norm.weight"),
    ("linear_not_normalized",
     "merge_method: linear\nmodels:\n  - model: {sft_S}\n    parameters: {{weight: 1.0}}\n"
     "  - model: {sft_T}\n    parameters: {{weight: 0.3}}\nparameters: {{normalize: false}}\n", [],
     r"^skillvec: error: {recipe}:1:15: linear: the weights sum to 1.3 for tensor '.*', so the result is not a model; "
     r"set normalize: true or make them sum to 1$"),
    ("point_plus_point", "merge_method: expression\nmodels:\n  a: {sft_S}\n  b: {sft_T}\nexpression: a + b\n", [],
     r"^skillvec: error: {recipe}:5:15: point \+ point is undefined: subtract them for a vector or use lerp$"),
    ("existing_out", "merge_method: past\ntarget: {sft_T}\nrl: {rl_S}\nsft: {sft_S}\n", ["existing"],
     r"^skillvec: error: .*/existing_out: already exists; pass --force to replace it$"),
    ("no_out", "merge_method: past\ntarget: {sft_T}\nrl: {rl_S}\nsft: {sft_S}\n", ["none"],
     r"^skillvec: error: merge: --out is required \(or --dry-run to only print the plan\) \(see skillvec --help\)$"),
]


def make_broken(env):
    """sft_S without model.norm.weight: a model that disagrees with the base."""
    src = os.path.join(env.toy, "sft_S")
    dst = os.path.join(env.work, "broken")
    if os.path.exists(dst):
        return dst
    shutil.copytree(src, dst)
    from safetensors import serialize_file
    t = {n: {"dtype": {"BF16": "bfloat16", "I64": "int64"}[dt], "shape": s, "data": raw}
         for n, (dt, s, raw) in env.model("sft_S").items() if n != "model.norm.weight"}
    serialize_file(t, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return dst


def case_errors(env):
    """5. exit 1, one `skillvec: error:` line, nothing written, inputs unchanged."""
    p = toy_paths(env.toy)
    fmt = dict(p, work=env.work, broken=make_broken(env))
    before = {k: tree_digest(v) for k, v in p.items()}
    env.error_lines = {}
    for name, text, extra, pattern in ERROR_CASES:
        path = env.recipe("err_" + name, text.format(**fmt))
        out = os.path.join(env.work, "errout", name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if extra == ["existing"]:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "keep.txt"), "w") as f:
                f.write("old")
            args = ["merge", path, "--out", out]
        elif extra == ["none"]:
            args = ["merge", path]
        else:
            args = ["merge", path, "--out", out]
        for dry in ((False, True) if extra == [] else (False,)):
            # A missing --out is a malformed command line (exit 2, as for the other commands).
            r = env.run(*(args + (["--dry-run"] if dry else [])), expect=2 if extra == ["none"] else 1)
            lines = r.stderr.splitlines()
            want = pattern.replace("{recipe}", re.escape(path))
            check(lines and re.search(want, lines[0]), f"{name}{' --dry-run' if dry else ''}: stderr {r.stderr!r}")
            if name != "models_disagree":  # that one lists every problem on further lines
                check(len(lines) == 1, f"{name}: {len(lines)} lines on stderr: {r.stderr!r}")
            check(r.stdout == "", f"{name}: stdout {r.stdout[:300]!r}")
            if extra == ["existing"]:
                check(os.listdir(out) == ["keep.txt"], f"{name}: the existing output was touched")
            else:
                check(not os.path.exists(out), f"{name}: {out} was written")
            check(not [f for f in os.listdir(os.path.dirname(out)) if "skillvec-tmp" in f],
                  f"{name}: a temporary directory was left")
            env.error_lines[name] = lines[0]
    check({k: tree_digest(v) for k, v in p.items()} == before, "inputs changed")
    # --force replaces the existing output with a complete checkpoint.
    existing = os.path.join(env.work, "errout", "existing_out")
    env.run("merge", env.recipe("err_existing_out", ERROR_CASES[7][1].format(**fmt)), "--out", existing, "--force",
            "--quiet")
    check(sorted(os.listdir(existing)) == ["config.json", "model.safetensors", "tokenizer.json"],
          f"--force: {sorted(os.listdir(existing))}")
    # A malformed command line: exit 2.
    r = env.run("merge", "--out", existing, expect=2)
    check(r.stderr.startswith("skillvec: error: "), f"no recipe argument: {r.stderr!r}")


# ----------------------------------------------------------------------------------------------
# 6. Memory
# ----------------------------------------------------------------------------------------------

# Runs argv[1:] as a grandchild and prints "status seconds maxrss_bytes". A child's ru_maxrss
# counts the RSS of the process it was forked from (Linux records the old mm's high-water mark
# at exec), so forking skillvec straight from this script, which holds the generated data, would
# report this script's size; this helper is small (about 10 MiB), and that is the floor.
RSS_HELPER = """import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, st, ru = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(st), time.perf_counter() - t, ru.ru_maxrss * 1024)
"""


def peak_rss(cmd):
    """(wall seconds, peak RSS bytes) of cmd, measured by RSS_HELPER."""
    r = subprocess.run([sys.executable, "-c", RSS_HELPER] + cmd, capture_output=True, text=True)
    status, secs, rss = r.stdout.split()
    if r.returncode != 0 or int(status) != 0:
        raise Fail(f"{' '.join(cmd)}: exit {status}: {r.stderr}")
    return float(secs), int(rss)


def case_memory(env, tensor_mib=64, count=4):
    loader = importlib.machinery.SourceFileLoader("merge_memory", MERGE_MEMORY)
    spec = importlib.util.spec_from_loader("merge_memory", loader)
    mm = importlib.util.module_from_spec(spec)
    loader.exec_module(mm)
    root = os.path.join(env.work, "big")
    elems = tensor_mib * MIB // 2
    rows = elems // 4096
    tensors = [(f"model.layers.{i}.mlp.up_proj.weight", [rows, 4096]) for i in range(count)]
    t0 = time.perf_counter()
    pool = mm.random_bf16_pool(64 * MIB, 1)
    dirs = {}
    for salt, name in enumerate(("base", "a", "b")):
        dirs[name] = os.path.join(root, name)
        if not os.path.exists(os.path.join(dirs[name], "config.json")):
            mm.write_checkpoint(dirs[name], tensors, pool, salt, 2 * tensor_mib * MIB + 1)
    del pool
    gen = time.perf_counter() - t0
    largest = 2 * elems
    bound = 512 * MIB + 2 * largest
    total = sum(os.path.getsize(os.path.join(d, f)) for d in dirs.values() for f in os.listdir(d))
    print(f"  memory: 3 checkpoints of {count} x {tensor_mib} MiB bf16 tensors ({total / MIB:.0f} MiB in all, "
          f"generated in {gen:.1f} s); bound 512 MiB + 2 x {largest // MIB} MiB = {bound // MIB} MiB", flush=True)
    out = os.path.join(root, "out")
    results = {}
    jobs = [("past", [env.exe, "past", "--rl", dirs["a"], "--sft", dirs["b"], "--target", dirs["base"], "--out", out,
                      "--quiet", "--force"])]
    two = (f"base_model: {dirs['base']}\nmodels:\n  - model: {dirs['a']}\n    parameters: {{density: 0.3}}\n"
           f"  - model: {dirs['b']}\n    parameters: {{density: 0.3}}\n")
    for method in ("ties", "dare_ties", "task_arithmetic"):
        text = f"merge_method: {method}\n" + (two.replace("{density: 0.3}", "{weight: 0.5}") if method == "task_arithmetic"
                                                else two)
        jobs.append((method, [env.exe, "merge", env.recipe("mem_" + method, text), "--out", out, "--quiet", "--force"]))
    jobs.append(("ties --dry-run", [env.exe, "merge", env.recipe("mem_ties", f"merge_method: ties\n" + two), "--dry-run"]))
    jobs.insert(0, ("(floor: /bin/true)", ["/bin/true"]))
    for what, cmd in jobs:
        os.sync()
        results[what] = peak_rss(cmd)
        shutil.rmtree(out, ignore_errors=True)
        print(f"  memory: {what:18s} peak RSS {results[what][1] / MIB:7.1f} MiB in {results[what][0]:6.2f} s", flush=True)
    for what, (_, rss) in results.items():
        check(rss <= bound, f"{what}: peak RSS {rss / MIB:.0f} MiB over the bound {bound // MIB} MiB")
    check(results["ties --dry-run"][1] < largest // 2, f"--dry-run's peak RSS {results['ties --dry-run'][1] / MIB:.0f} MiB: "
                                                  "it reads tensor data")
    env.memory = {k: {"seconds": v[0], "peak_rss_mib": v[1] / MIB} for k, v in results.items()}


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skillvec", required=True)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also run case 6 (~1 GB of checkpoints; about a minute)")
    ap.add_argument("--only", default=None, help="run only the cases whose name contains this")
    a = ap.parse_args()
    exe = os.path.abspath(a.skillvec)
    work = os.path.abspath(a.workdir) if a.workdir else tempfile.mkdtemp(prefix="skillvec-merge-cli-")
    os.makedirs(work, exist_ok=True)
    env = Env(exe, work)
    r = env.run("merge", "--help", expect=None)
    if r.returncode != 0 or "recipe" not in r.stdout:
        print(f"merge_cli: skipped: this skillvec has no merge command (built without yaml-cpp?): {r.stderr.strip()}")
        sys.exit(77)
    t0 = time.perf_counter()
    for toy, shards in ((env.toy, 1), (os.path.join(work, "toy3"), 3)):
        if not os.path.exists(os.path.join(toy, "sft_T")):
            subprocess.run([sys.executable, TOY, toy, "--layers", str(LAYERS), "--hidden", "64", "--vocab", "500",
                            "--shards", str(shards)], check=True)
    env.toy3 = os.path.join(work, "toy3")
    cases = [("past through a recipe == skillvec past (1 file, 3 shards; lambda 1, 0.5)", case_past_equals_cli),
             ("every method: valid output, tensors, dtypes, side files, metadata", case_every_method),
             ("values vs numpy oracle (task_arithmetic, linear, slerp, expression, ties, dare_linear)", case_oracles),
             ("invariants (density 1 == task_arithmetic, dare seeds, threads, shards)", case_invariants),
             ("exclude, out_dtype float32, lambda gradient", case_exclude_dtype_gradient),
             ("--dry-run", case_dry_run),
             ("errors", case_errors)]
    if a.memory:
        cases.append(("memory: peak RSS of merge vs past on ~1 GB", case_memory))
    failed = 0
    for name, fn in cases:
        if a.only and a.only not in name:
            continue
        t = time.perf_counter()
        try:
            fn(env)
            print(f"PASS {name} ({time.perf_counter() - t:.1f} s)", flush=True)
        except Fail as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {name}: unexpected exception\n{traceback.format_exc()}", flush=True)
    if a.keep or a.workdir:
        for k, v in getattr(env, "error_lines", {}).items():
            print(f"  {k}: {v}")
        if hasattr(env, "dry_run_excerpt"):
            print(env.dry_run_excerpt)
    print(f"merge_cli: {len(cases) - failed} of {len(cases)} passed in {time.perf_counter() - t0:.1f} s")
    if not a.keep and not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
