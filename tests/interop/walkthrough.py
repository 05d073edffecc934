#!/usr/bin/env python3
"""The walk-through in docs/cli.md, run for real: the toy checkpoints of
examples/skillvec/make_toy_checkpoints.py through inspect, past, extract, inject and analyze, with
the properties the text claims checked (so the page cannot drift from what the command does).

    walkthrough.py --skillvec PATH/TO/skillvec

Exit status 0, 1 on a failed check, 77 when numpy or safetensors is missing (a failure instead
under SKILLVEC_REQUIRE_INTEROP=1).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    from safetensors import deserialize
    import numpy  # noqa: F401 (make_toy_checkpoints.py needs it)
except ImportError as err:
    print(f"walkthrough: numpy or safetensors cannot be imported ({err})")
    sys.exit(1 if os.environ.get("SKILLVEC_REQUIRE_INTEROP") == "1" else 77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
failures = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(exe, *args, expect=0):
    r = subprocess.run([exe, *args], capture_output=True, text=True)
    ok = r.returncode == expect
    check(ok, f"skillvec {' '.join(args)} exits {expect}" + ("" if ok else f" (got {r.returncode}: {r.stderr.strip()[:300]})"))
    return r


def tensors(path):
    out = {}
    files = [path] if path.endswith(".safetensors") else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
    for f in files:
        with open(f, "rb") as fh:
            out.update(dict(deserialize(fh.read())))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skillvec", required=True)
    exe = os.path.abspath(ap.parse_args().skillvec)
    with tempfile.TemporaryDirectory(prefix="skillvec-walkthrough-") as d:
        os.chdir(d)
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "skillvec", "make_toy_checkpoints.py"), "toy",
                        "--shards", "2"], check=True)
        r = run(exe, "inspect", "toy/sft_T")
        check("toy/sft_T: valid, 40 tensors, 7.45 MB in 2 files" in r.stdout, "inspect summarises the toy checkpoint")
        names = [line.split()[0] for line in r.stdout.splitlines()[7:] if line.strip()]
        check(names.index("model.layers.3.mlp.up_proj.weight") < names.index("model.norm.weight"), "inspect lists in natural order")

        r = run(exe, "past", "--rl", "toy/rl_S", "--sft", "toy/sft_S", "--target", "toy/sft_T", "--out", "past_T")
        check(sorted(os.listdir("past_T")) == ["config.json", "model.safetensors", "tokenizer.json"], "past writes one file and the side files")
        run(exe, "past", "--rl", "toy/rl_S", "--sft", "toy/sft_S", "--target", "toy/sft_T", "--target", "toy/base",
            "--out", "past_T_half", "--out", "base_plus_half", "--lambda", "0.5", "--save-vector", "v_S.safetensors")
        run(exe, "extract", "--rl", "toy/rl_S", "--sft", "toy/sft_S", "--out", "v_S")
        run(exe, "inject", "--target", "toy/sft_T", "--vector", "v_S", "--out", "past_T_from_v")
        a, b = tensors("past_T"), tensors("past_T_from_v")
        check(a.keys() == b.keys() and all(a[k]["data"] == b[k]["data"] for k in a), "inject with extract's vector == past, byte for byte")
        v1, v2 = tensors("v_S.safetensors"), tensors("v_S")
        check(v1.keys() == v2.keys() and all(v1[k]["data"] == v2[k]["data"] for k in v1), "--save-vector == extract")
        run(exe, "past", "--rl", "toy/rl_S", "--sft", "toy/sft_S", "--target", "toy/sft_T", "--out", "past_T_f32", "--dtype", "f32",
            "--max-shard-size", "5MB")
        shards = sorted(f for f in os.listdir("past_T_f32") if f.endswith(".safetensors"))
        check(shards == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)], "--max-shard-size 5MB gives 3 shards")
        check(all(t["dtype"] == "F32" for n, t in tensors("past_T_f32").items() if "position_ids" not in n), "--dtype f32")

        r = run(exe, "analyze", "--a-minus", "toy/base", "--a", "toy/sft_S", "--b-minus", "toy/sft_S", "--b", "toy/rl_S",
                "--json", "orth.json", "--svg", "orth.svg")
        j = json.load(open("orth.json"))
        check(len(j["tensors"]) == 39 and j["skipped"] == ["model.rotary_emb.position_ids"], "analyze: 39 records, the int skipped")
        check(abs(j["global"]["cosine"]) < 0.01, "independent deltas are nearly orthogonal")
        check(0.6 < j["global"]["sparsity_b"] < 0.8, "the RL delta's sparsity is about 70%")
        check(open("orth.svg").read().startswith("<svg"), "analyze writes the SVG")

        r = run(exe, "past", "--rl", "toy/rl_S", "--sft", "toy/sft_S", "--target", "toy/sft_T", "--out", "past_T", expect=1)
        check("past_T: already exists; pass --force to replace it" in r.stderr, "an existing output is refused")
    print(f"walkthrough: {len(failures)} failed" if failures else "walkthrough: all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
