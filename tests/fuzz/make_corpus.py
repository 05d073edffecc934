#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_safetensors_header into tests/fuzz/corpus/ (checked in).

Two kinds of seeds:
  *.safetensors  whole files (8-byte little-endian header length, JSON header, data buffer)
  *.json         bare headers starting with '{': the harness adds the length prefix and a data
                 buffer as long as the largest data_offsets end (its structure-aware mode)
Valid files first, then a few files that break one rule each. Rerun after editing; the
regression seeds (regress-*) are written too, so the directory is reproducible from this script.
"""
import json
import os
import struct
import sys

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus")

BITS = {"BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "I32": 32, "U32": 32, "I64": 64, "U64": 64,
        "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "C64": 64, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
        "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4}


def header(tensors, metadata=None, pad_to=1, order=None):
    """tensors: [(name, dtype, shape)] in data order -> (header text, data size)."""
    h, at = {}, 0
    if metadata is not None:
        h["__metadata__"] = metadata
    for name, dt, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        size = n * BITS[dt] // 8
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [at, at + size]}
        at += size
    if order:
        h = {k: h[k] for k in order}
    text = json.dumps(h, separators=(",", ":"), ensure_ascii=False).encode()
    while (8 + len(text)) % pad_to:
        text += b" "
    return text, at


def file(text, data, n=None):
    return struct.pack("<Q", len(text) if n is None else n) + text + bytes((i * 7 + 1) & 0xFF for i in range(data))


def main():
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    seeds = {}

    def add(name, blob):
        seeds[name] = blob

    # --- valid files ---------------------------------------------------------------------------
    t, d = header([])
    add("valid-empty-dict.safetensors", file(t, d))
    t, d = header([], pad_to=8)
    add("valid-empty-dict-padded.safetensors", file(t, d))
    t, d = header([("w", "F32", [2, 3])])
    add("valid-one-tensor.safetensors", file(t, d))
    t, d = header([("a", "BF16", []), ("b", "F32", [2]), ("e", "F16", [3, 0])], {"format": "pt"}, pad_to=8,
                  order=["__metadata__", "b", "a", "e"])
    add("valid-rank0-empty-metadata-padded.safetensors", file(t, d))
    t, d = header([(f"t.{dt.lower()}", dt, [2, 2]) for dt in BITS])
    add("valid-every-dtype.safetensors", file(t, d))
    t, d = header([("x", "F4", [3, 2]), ("y", "F6_E2M3", [4]), ("z", "BOOL", [1, 1, 1, 1, 1, 1, 1, 1])])
    add("valid-subbyte-rank8.safetensors", file(t, d))
    t, d = header([("z0", "F32", [0]), ("z1", "I64", [5, 0, 7]), ("s", "U8", [])])
    add("valid-empty-tensors.safetensors", file(t, d))
    t, d = header([("model.layers.0.w", "BF16", [4, 3]), ("caf\u00e9 \U0001F600", "I8", [3])],
                  {"format": "pt", "note": "\u00e9\n\t\"", "": ""})
    add("valid-unicode-names.safetensors", file(t, d))
    # --- invalid files, one rule each ----------------------------------------------------------
    add("bad-too-small.safetensors", b"\x02\x00\x00")
    add("bad-too-large.safetensors", file(b"{}", 0, n=100_000_001))
    add("bad-beyond-file.safetensors", file(b"{}", 0, n=64))
    add("bad-not-utf8.safetensors", file(b'{"w\xff":{}}', 0))
    add("bad-start.safetensors", file(b' {}', 0))
    add("bad-not-json.safetensors", file(b'{"w":[1,2', 0))
    t = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    add("bad-duplicate-key.safetensors", file(t, 8))
    add("bad-overlap.safetensors", file(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                        b'"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12))
    add("bad-overflow.safetensors", file(b'{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', 8))
    add("bad-misaligned.safetensors", file(b'{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', 2))
    t, d = header([("w", "F32", [2])])
    add("bad-trailing.safetensors", file(t, d + 1))
    # --- bare headers for the structure-aware mode ---------------------------------------------
    add("json-one-tensor.json", header([("w", "F32", [2])])[0])
    add("json-metadata-and-dtypes.json",
        header([("a", "F8_E4M3", [3]), ("b", "C64", [1]), ("c", "U16", [])], {"format": "pt"}, pad_to=8)[0])
    add("json-unsorted-offsets.json", header([("a", "U8", [1]), ("b", "U8", [2]), ("c", "U8", [0])],
                                             order=["c", "b", "a"])[0])
    # --- regressions: inputs that once crashed the harness ------------------------------------
    # A shape element nested 2000 arrays deep: the error message dump()ed it recursively and
    # overflowed the stack (about 100,000 levels with an 8 MiB stack; 1,000 under the harness's
    # 512 KiB limit with ASan).
    add("regress-deep-shape-element.json",
        b'{"w":{"dtype":"F32","shape":[' + b"[" * 2000 + b"]" * 2000 + b'],"data_offsets":[0,0]}}')
    # Control characters in a name went into what() as they were: NUL cut it short (the fuzzer's
    # find, minimized), a newline made it two lines.
    add("regress-nul-in-name.json", b'{"\\u0000":[]}')
    add("regress-newline-in-name.json", b'{"a\\nb":{"dtype":"F\\r32","shape":[],"data_offsets":[0,4]}}')

    # Every valid file's header again as a bare header, for the structure-aware mode.
    for name, blob in list(seeds.items()):
        if name.startswith("valid-"):
            n = struct.unpack("<Q", blob[:8])[0]
            seeds["json-" + name[len("valid-"):].replace(".safetensors", ".json")] = blob[8:8 + n]

    for name, blob in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(blob)
    print(f"{len(seeds)} seeds in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
