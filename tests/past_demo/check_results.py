#!/usr/bin/env python3
"""Checks that a past_demo run produced complete, sane outputs (not that PaST wins: CI must not
be tuned to the result). Usage: check_results.py OUT_DIR [SKILLVEC_BINARY]"""
import json
import math
import pathlib
import subprocess
import sys


def fail(msg):
    print(f"check_results: {msg}", file=sys.stderr)
    sys.exit(1)


def frac(x, what):
    if not isinstance(x, (int, float)) or not math.isfinite(x) or not 0.0 <= x <= 1.0:
        fail(f"{what} = {x!r} is not a fraction in [0, 1]")


def main():
    out = pathlib.Path(sys.argv[1])
    skillvec = sys.argv[2] if len(sys.argv) > 2 else None
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()

    names = {a["name"] for a in res["arms"]}
    for needed in ("theta0", "sft_only", "past", "random_vector", "target_grpo", "qa_sft_vector", "past_iterative_k3"):
        if needed not in names:
            fail(f"arm '{needed}' missing from results.json")
    lambdas = sorted(a["lambda"] for a in res["arms"] if a["name"] == "past")
    if lambdas != [0.5, 1.0, 1.5]:
        fail(f"PaST lambdas are {lambdas}, expected [0.5, 1.0, 1.5]")
    for a in res["arms"]:
        label = f"arm {a['name']} (lambda {a['lambda']})"
        frac(a["qa_em_mean"], label + " qa_em_mean")
        if not a["qa_em_sd"] >= 0:
            fail(label + " has a negative sd")
        if len(a["seeds"]) != res["seeds"]:
            fail(f"{label}: {len(a['seeds'])} per-seed values for {res['seeds']} seeds")
        for s in a["seeds"]:
            frac(s, label + " per-seed exact match")
        attrs = a["per_attribute"]
        if sorted(attrs) != sorted(res["world"]["attributes"]):
            fail(f"{label}: per_attribute keys {sorted(attrs)}")
        for k, v in attrs.items():
            frac(v["mean"], f"{label} {k}")
        # the overall mean is the mean of the (equal-sized) attribute means
        if abs(sum(v["mean"] for v in attrs.values()) / len(attrs) - a["qa_em_mean"]) > 1e-9:
            fail(f"{label}: per-attribute means do not average to the overall mean")
        if f"| {a['name']} |" not in report:
            fail(f"report.md has no table row for {a['name']}")

    if not res["orthogonality"]:
        fail("no orthogonality entries")
    for e in res["orthogonality"]:
        for k in ("cos_sft_rl", "cos_sft_sft"):
            if not -1.0 <= e[k] <= 1.0:
                fail(f"orthogonality layer {e['layer']}: {k} = {e[k]}")
        if not 0 < e["random_baseline"] < 1:
            fail(f"orthogonality layer {e['layer']}: random baseline {e['random_baseline']}")
    for e in res["razor_kl"]:
        if not (math.isfinite(e["kl_to_theta0_mean"]) and e["kl_to_theta0_mean"] >= -1e-9):
            fail(f"razor KL of {e['arm']} is {e['kl_to_theta0_mean']}")
        frac(e["p0_qa_em_mean"], f"razor {e['arm']} P0 exact match")
    theta0_kl = [e for e in res["razor_kl"] if e["arm"] == "theta0"]
    if not theta0_kl or abs(theta0_kl[0]["kl_to_theta0_mean"]) > 1e-9:
        fail("KL(theta0 || theta0) is not 0")
    if not res["wall_seconds"] > 0:
        fail("wall_seconds missing")
    for svg in ("orthogonality.svg", "orthogonality_control.svg"):
        text = (out / svg).read_text()
        if not text.startswith("<svg") and "<svg" not in text[:200]:
            fail(f"{svg} is not an SVG")

    seeds = sorted(out.glob("seed-*"))
    if len(seeds) != res["seeds"]:
        fail(f"{len(seeds)} seed directories for {res['seeds']} seeds")
    for d in seeds:
        for ck in ("theta0", "sft_S", "rl_S", "sft_T", "past_T", "rl_T", "qa_sft_S", "sft_S3_k3", "rl_S3_k3"):
            p = d / f"{ck}.safetensors"
            if not p.is_file():
                fail(f"missing checkpoint {p}")
            if skillvec:
                r = subprocess.run([skillvec, "inspect", str(p)], capture_output=True, text=True)
                if r.returncode != 0 or "valid" not in r.stdout:
                    fail(f"skillvec inspect {p}: {r.stdout}{r.stderr}")
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name or "skillvec-tmp" in p.name]
    if leftovers:
        fail(f"temporary files left behind: {leftovers}")
    print(f"check_results: {out} is complete ({len(res['arms'])} arms, {res['seeds']} seed(s))")


if __name__ == "__main__":
    main()
