#!/usr/bin/env python3
"""End-to-end malformed-input corpus for the `skillvec` command.

Builds, in a fresh temporary directory, malformed safetensors files and checkpoints, mismatched
models, existing outputs, a size-limited "disk" and interrupted runs, then runs the real binary on
each and checks that it fails the way the command promises:

  1. exit status exactly 1 (2 only for argument errors; a signal is a failure, except where the
     case sends one that cannot be caught or arrives before there is anything to clean up);
  2. stderr's first line starts with "skillvec: error:" and names the file at fault (and the
     tensor, where one is at fault) and the reason;
  3. nothing is left behind: no --out path, no hidden *.skillvec-tmp* directory, no other new
     entry beside the output (after SIGKILL, hidden .<out>.skillvec-tmp-* directories are allowed);
  4. the inputs (and outputs that existed before) are byte-identical afterwards.

Groups: files (every rule of the format, single files and sharded checkpoints), models (valid
files that disagree: shape, dtype, missing and extra tensors), outputs (existing, repeated and
unusable output paths, argument errors), runtime (a full disk via RLIMIT_FSIZE, SIGINT/SIGTERM/
SIGKILL mid-run, commands stuck before they write). Python 3 standard library only. Usage:

  malformed.py --binary path/to/skillvec [--group files|models|outputs|runtime|all] [--keep] [-k SUBSTR]

Prints one line per case: PASS or FAIL, the case's name and the actual first line of stderr, then
what was wrong. XFAIL marks a case that fails because of a known bug (described under it; not
counted as a failure), XPASS one whose known bug seems fixed. Exit status 0 when nothing failed.
"""

import argparse
import array
import hashlib
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

U64_MAX = 2**64 - 1
ERROR_PREFIX = "skillvec: error:"

# --------------------------------------------------------------------------------------------------
# Building safetensors files


def f32_bytes(values):
    a = array.array("f", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def bf16_bytes(values):
    """bf16 = the high half of each f32 (truncation is fine for test data)."""
    b = f32_bytes(values)
    return b"".join(b[i + 2:i + 4] for i in range(0, len(b), 4))


def f16_bytes(values):
    return b"".join(struct.pack("<e", v) for v in values)


def values(n, seed):
    return [((i * 37 + seed * 101) % 97) / 97.0 - 0.5 for i in range(n)]


def tensor(name, dtype, shape, seed=1):
    n = 1
    for d in shape:
        n *= d
    if dtype == "F32":
        data = f32_bytes(values(n, seed))
    elif dtype == "BF16":
        data = bf16_bytes(values(n, seed))
    elif dtype == "F16":
        data = f16_bytes(values(n, seed))
    elif dtype == "I64":
        data = b"".join(struct.pack("<q", (i * seed) % 1000) for i in range(n))
    else:
        raise ValueError(dtype)
    return (name, dtype, list(shape), data)


def pad_header(text):
    """Right-pads a header with spaces so that the data starts 8-byte aligned (as writers do)."""
    return text + b" " * ((8 - (8 + len(text)) % 8) % 8)


def st_bytes(tensors, metadata=None):
    """A valid safetensors file from (name, dtype, shape, data) tuples."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    at = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(data)]}
        at += len(data)
    text = pad_header(json.dumps(header, separators=(",", ":")).encode())
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def raw(header, data=0, n=None):
    """A file from a literal header (str or bytes) and `data` filler bytes (or the bytes given);
    the length prefix is the header's length unless `n` is given."""
    if isinstance(header, str):
        header = header.encode()
    if isinstance(data, int):
        data = bytes((i * 7 + 1) & 0xFF for i in range(data))
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def offsets_to_2_64():
    """A header whose tensors tile [0, 2^64 - 1): eight U8 tensors of 2^61 - 1 bytes (the most a
    tensor may have before its bit count overflows) and one of 7."""
    entries, at = [], 0
    for i, size in enumerate([2**61 - 1] * 8 + [7]):
        entries.append('"t%d":{"dtype":"U8","shape":[%d],"data_offsets":[%d,%d]}' % (i, size, at, at + size))
        at += size
    assert at == U64_MAX
    return "{" + ",".join(entries) + "}"


def base_tensors(seed, variant=None):
    """The small model every mismatch case starts from: F32, BF16 and a non-float tensor."""
    t = [
        tensor("model.embed_tokens.weight", "F32", [16, 8], seed),
        tensor("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 8], seed),
        tensor("model.layers.0.mlp.down_proj.weight", "F32", [8, 12], seed),
        tensor("model.layers.1.mlp.down_proj.weight", "BF16", [8, 12], seed),
        tensor("model.position_ids", "I64", [4], 1),
    ]
    return t


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def write_sharded(dirpath, shards, index):
    """shards: {file name: [tensors]}; index: a dict (dumped as JSON) or raw text."""
    os.makedirs(dirpath, exist_ok=True)
    for name, ts in shards.items():
        write(os.path.join(dirpath, name), st_bytes(ts))
    text = index if isinstance(index, str) else json.dumps(index, indent=2)
    write(os.path.join(dirpath, "model.safetensors.index.json"), text.encode())
    return dirpath


def index_for(shards, total_size=True):
    wm = {t[0]: name for name, ts in shards.items() for t in ts}
    idx = {"weight_map": wm}
    if total_size:
        idx["metadata"] = {"total_size": sum(len(t[3]) for ts in shards.values() for t in ts)}
    return idx


# --------------------------------------------------------------------------------------------------
# Checking


def tree_hashes(paths):
    """{path: sha256} of every regular file under the given files/directories."""
    out = {}
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    full = os.path.join(root, f)
                    out[full] = file_hash(full)
                for d in dirs:
                    out[os.path.join(root, d) + "/"] = "dir"
        elif os.path.isfile(p):
            out[p] = file_hash(p)
        elif os.path.exists(p):
            out[p] = "special"
    return out


def file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def listing(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else None


def preexec_fsize(limit):
    def f():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return f


class Runner:
    def __init__(self, binary, root, only):
        self.binary = binary
        self.root = root
        self.only = only
        self.results = []  # (name, ok)
        self.counter = 0

    def outdir(self, name):
        """A fresh, empty directory for a case's outputs: anything new in it is a leftover."""
        self.counter += 1
        d = os.path.join(self.root, "out", "%03d-%s" % (self.counter, slug(name)))
        os.makedirs(d)
        return d

    def selected(self, name):
        return not self.only or any(s.lower() in name.lower() for s in self.only)

    def report(self, name, problems, first, known_bug=None):
        """One line per case. A case marked with a known bug that fails is XFAIL (not counted as a
        failure); one that passes is XPASS (the bug is fixed: drop the marker)."""
        ok = not problems
        if known_bug:
            verdict = "XPASS" if ok else "XFAIL"
            ok = True
        else:
            verdict = "PASS" if ok else "FAIL"
        self.results.append((name, ok))
        line = "%s %s: %s" % (verdict, name, first if first is not None else "(no stderr)")
        if problems:
            line += "\n      " + "\n      ".join(problems)
        if known_bug:
            line += "\n      known bug: " + known_bug + ("" if verdict == "XFAIL" else " -- fixed? remove the known_bug marker")
        print(line, flush=True)

    def run(self, name, args, *, first_has=(), stderr_has=(), inputs=(), outs=(), code=1, preexec=None,
            timeout=60, watch=(), after=None, known_bug=None):
        """Runs the binary with `args` and checks status, message, leftovers and inputs.

        first_has: substrings the first stderr line must contain. stderr_has: anywhere in stderr.
        inputs: files/directories that must be unchanged. outs: output paths that must not exist
        afterwards (when code != 0), whose parent directories must hold nothing new; watch: more
        directories that must hold nothing new.
        after: an extra check, called with the CompletedProcess; returns a list of problems.
        known_bug: a description, if this case is expected to fail until a known bug is fixed."""
        if not self.selected(name):
            return None
        before_inputs = tree_hashes(inputs)
        parents = sorted({os.path.dirname(os.path.abspath(o)) for o in outs} | {os.path.abspath(w) for w in watch})
        before_parents = {p: listing(p) for p in parents}
        problems = []
        try:
            p = subprocess.run([self.binary] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=timeout, preexec_fn=preexec)
        except subprocess.TimeoutExpired:
            self.report(name, ["timed out after %g s (killed)" % timeout], None, known_bug)
            return None
        stderr = p.stderr.decode("utf-8", "replace")
        first = stderr.splitlines()[0] if stderr.strip() else None
        problems += check_status(p.returncode, code)
        if code != 0:
            problems += check_message(stderr, first, first_has, stderr_has)
        for o in outs if code != 0 else ():
            if os.path.lexists(o):
                problems.append("output %s exists after a failed run" % o)
        for par in parents:
            new = sorted(set(listing(par) or []) - set(before_parents[par] or []))
            if code == 0:
                new = [n for n in new if os.path.join(par, n) not in [os.path.abspath(o) for o in outs]]
            if new:
                problems.append("left behind in %s: %s" % (par, ", ".join(new)))
            if before_parents[par] is not None and listing(par) is None:
                problems.append("directory %s disappeared" % par)
        after_inputs = tree_hashes(inputs)
        if after_inputs != before_inputs:
            changed = sorted(k for k in set(before_inputs) | set(after_inputs) if before_inputs.get(k) != after_inputs.get(k))
            problems.append("inputs changed: " + ", ".join(changed))
        if after:
            problems += after(p)
        self.report(name, problems, first, known_bug)
        return p


def check_status(rc, want):
    if rc < 0:
        return ["killed by signal %d (%s)" % (-rc, signal.Signals(-rc).name)]
    if rc != want:
        return ["exit status %d, expected %d" % (rc, want)]
    return []


def check_message(stderr, first, first_has, stderr_has):
    problems = []
    if first is None:
        return ["nothing on stderr"]
    if not first.startswith(ERROR_PREFIX):
        problems.append("first line does not start with %r" % ERROR_PREFIX)
    for s in first_has:
        if s not in first:
            problems.append("first line lacks %r" % s)
    for s in stderr_has:
        if s not in stderr:
            problems.append("stderr lacks %r" % s)
    return problems


def slug(s):
    return "".join(c if c.isalnum() else "-" for c in s.lower()).strip("-")[:40]


# --------------------------------------------------------------------------------------------------
# The corpus


def good_models(r):
    """Valid rl, sft and target files sharing base_tensors (different values)."""
    d = os.path.join(r.root, "good")
    if not os.path.isdir(d):
        write(os.path.join(d, "rl.safetensors"), st_bytes(base_tensors(2), {"format": "pt"}))
        write(os.path.join(d, "sft.safetensors"), st_bytes(base_tensors(3), {"format": "pt"}))
        write(os.path.join(d, "target", "model.safetensors"), st_bytes(base_tensors(4), {"format": "pt"}))
        write(os.path.join(d, "target", "config.json"), b'{"model_type": "test"}\n')
    return (os.path.join(d, "rl.safetensors"), os.path.join(d, "sft.safetensors"), os.path.join(d, "target"))


def group_files(r):
    """File-level rules: every malformed file the reader must reject, through the real binary."""
    rl, sft, target = good_models(r)
    bad = os.path.join(r.root, "bad")
    ok_entry = '"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'
    valid = st_bytes([tensor("w", "F32", [2]), tensor("v", "BF16", [3])])
    W = "tensor 'w'"

    # name, file name, bytes, first-line fragments (besides the file name), how to run it
    cases = [
        ("empty file", "empty.safetensors", b"", ["header too small", "0 bytes"]),
        ("file shorter than 8 bytes", "five-bytes.safetensors", b"\x10\x00\x00\x00\x00", ["header too small", "5 bytes"]),
        ("truncated data", "truncated.safetensors", valid[:-3], ["file length mismatch", "(truncated)"]),
        ("header length above 100,000,000", "huge-header.safetensors", raw("{}", 0, 100_000_001),
         ["header too large", "100000001"]),
        ("header length near 2^64", "header-2-64.safetensors", raw("{}", 0, U64_MAX - 4), ["header too large"]),
        ("header length beyond the file", "header-beyond.safetensors", raw("{}", 0, 64),
         ["header beyond end of file", "8 + 64 header bytes"]),
        ("bad UTF-8 in the header", "bad-utf8.safetensors", raw(b'{"w\xff":{}}'), ["header not UTF-8"]),
        ("overlong UTF-8 in the header", "overlong-utf8.safetensors", raw(b'{"\xc0\xaf":{}}'), ["header not UTF-8"]),
        ("header not JSON", "not-json.safetensors", raw('{"w": [1, 2'), ["header not a JSON object"]),
        ("header JSON followed by garbage", "json-garbage.safetensors", raw('{"a":1} 2'), ["header not a JSON object"]),
        ("header not starting with {", "bad-start.safetensors", raw(' {}'), ["header does not start with '{'"]),
        ("duplicate key", "duplicate.safetensors", raw("{" + ok_entry + "," + ok_entry + "}", 8), ["duplicate key", "'w'"]),
        ("overlapping offsets", "overlap.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12),
         ["tensor 'b'", "data_offsets not contiguous", "(overlap)"]),
        ("gap between offsets", "gap.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}', 20),
         ["tensor 'b'", "data_offsets not contiguous", "(hole)"]),
        ("offsets not starting at 0", "not-at-0.safetensors", raw('{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12),
         [W, "data_offsets not contiguous", "begins at 4 where 0 was expected"]),
        ("offset end = 2^64-1", "end-2-64.safetensors",
         raw('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,%d]}}' % U64_MAX, 8),
         [W, "byte size mismatch", "data_offsets span %d" % U64_MAX]),
        ("offsets summing to 2^64-1", "sum-2-64.safetensors", raw(offsets_to_2_64(), 8), ["file length mismatch"]),
        ("offset = 2^64 (not a u64)", "offset-2-64.safetensors",
         raw('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,%d]}}' % 2**64, 8),
         [W, "bad tensor entry", "'data_offsets' must be two non-negative integers"]),
        ("end before begin", "reversed.safetensors", raw('{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', 8),
         [W, "data_offsets end before begin", "[8, 0)"]),
        ("shape/size mismatch", "size-mismatch.safetensors", raw('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8),
         [W, "byte size mismatch", "needs 12 bytes, data_offsets span 8"]),
        ("shape product overflow", "numel-overflow.safetensors",
         raw('{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', 8), [W, "size overflow", "element count"]),
        ("bit count overflow", "bits-overflow.safetensors",
         raw('{"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}', 8), [W, "size overflow", "bit count"]),
        ("sub-byte tensor of odd length", "f4-odd.safetensors", raw('{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', 2),
         [W, "not a whole number of bytes"]),
        ("unknown dtype", "unknown-dtype.safetensors", raw('{"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}', 8),
         [W, "unknown dtype", "'F31'"]),
        ("lower-case dtype", "lower-dtype.safetensors", raw('{"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}', 8),
         [W, "unknown dtype", "'f32'"]),
        ("missing dtype", "no-dtype.safetensors", raw('{"w":{"shape":[2],"data_offsets":[0,8]}}', 8),
         [W, "bad tensor entry", "'dtype'"]),
        ("negative dimension", "negative-dim.safetensors", raw('{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', 8),
         [W, "bad tensor entry", "not a non-negative integer"]),
        ("rank above 8", "rank-9.safetensors",
         raw('{"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]}}', 8), [W, "bad tensor entry", "rank 9"]),
        ("entry not an object", "entry-array.safetensors", raw('{"w":[1,2]}'), [W, "bad tensor entry"]),
        ("trailing bytes after the last tensor", "trailing.safetensors", valid + b"\x00", ["file length mismatch", "(trailing bytes)"]),
        ("__metadata__ with a non-string value", "metadata-int.safetensors",
         raw('{"__metadata__":{"format":"pt","a":1},' + ok_entry + "}", 8), ["bad __metadata__", "value of 'a' is not a string"]),
        ("__metadata__ not an object", "metadata-list.safetensors", raw('{"__metadata__":["pt"],' + ok_entry + "}", 8),
         ["bad __metadata__", "not an object"]),
    ]
    # Where the bad file goes: mostly --target, so that the run gets as far as it can; some as rl,
    # sft, or checked with inspect.
    roles = ["target", "rl", "target", "sft", "target", "target", "inspect", "target", "rl", "target", "target", "sft",
             "target", "target", "target", "target", "inspect", "target", "rl", "target", "inspect", "target", "target",
             "target", "sft", "target", "target", "target", "target", "target", "rl", "target"]
    assert len(roles) == len(cases)
    for (name, fname, data, frags), role in zip(cases, roles):
        path = write(os.path.join(bad, fname), data)
        run_bad_input(r, name + " (" + role + ")", path, frags, role, rl, sft, target)

    # Found by the fuzz work: deep nesting and control characters must not crash or break the line.
    nested = write(os.path.join(bad, "nested-shape.safetensors"),
                   raw('{"w":{"dtype":"F32","shape":[' + "[" * 100_000 + "]" * 100_000 + '],"data_offsets":[0,0]}}'))
    run_bad_input(r, "shape nested 100,000 arrays deep (target)", nested, [W, "bad tensor entry", "not a non-negative integer"],
                  "target", rl, sft, target)
    ctl = write(os.path.join(bad, "newline-name.safetensors"),
                raw(pad_header(b'{"a\\nb":{"dtype":"F\\r32","shape":[],"data_offsets":[0,4]}}'), 4))
    run_bad_input(r, "newline in a tensor name stays on one line (target)", ctl,
                  ["tensor 'a\\x0Ab'", "unknown dtype", "'F\\x0D32'"], "target", rl, sft, target)
    nul = write(os.path.join(bad, "nul-name.safetensors"), raw(pad_header(b'{"\\u0000":[]}')))
    run_bad_input(r, "NUL in a tensor name (inspect)", nul, ["tensor '\\x00'", "bad tensor entry"], "inspect", rl, sft, target)

    # The offsets above tile [0, 2^64 - 1): the file is far too short, but 8 + N + 2^64 - 1 wraps
    # around in a naive length check, whose message would then say "trailing bytes" with a wrong total.
    r.run("offsets summing to 2^64-1: the message says truncated", ["inspect", os.path.join(bad, "sum-2-64.safetensors")],
          first_has=["sum-2-64.safetensors", "file length mismatch", "(truncated)"])

    # A FIFO must be refused as not a regular file, not waited on forever.
    fifo = os.path.join(bad, "model.fifo")
    os.mkfifo(fifo)
    r.run("a FIFO as input is refused, not waited on (inspect)", ["inspect", fifo], first_has=["model.fifo", "not a regular file"],
          timeout=10)

    # Not a regular file; nonexistent paths; directories that hold no checkpoint.
    run_bad_input(r, "a character device as input (target)", "/dev/null", ["cannot read", "not a regular file"], "target",
                  rl, sft, target, check_unchanged=False)
    run_bad_input(r, "nonexistent input (rl)", os.path.join(bad, "no-such-model.safetensors"), ["no such file or directory"],
                  "rl", rl, sft, target)
    # Metadata and names are shown, not obeyed: a multi-line value continues indented under its key,
    # and a terminal escape sequence from a hostile file is printed as \x1b, never sent raw.
    shown = os.path.join(bad, "metadata-shown.safetensors")
    write(shown, st_bytes([tensor("w", "F32", [2]), tensor("x\x1b[1m\ny", "F32", [1])],
                          {"notes": "line one\nline two\n", "evil": "\x1b[2Jgone\x07"}))

    def metadata_shown(p):
        out = p.stdout.decode("utf-8", "replace")
        problems = []
        if "  metadata notes = line one\n" + " " * 19 + "line two\n" not in out:
            problems.append("multi-line metadata not indented under its key:\n" + out)
        if "metadata evil = \\x1b[2Jgone\\x07\n" not in out:
            problems.append("control characters not escaped:\n" + out)
        if "\nx\\x1b[1m\\x0ay " not in out:
            problems.append("a tensor name's control characters not escaped:\n" + out)
        if "\x1b" in out or "\x07" in out:
            problems.append("a raw control character reached stdout")
        return problems

    r.run("inspect shows metadata safely (indented lines, escaped control characters)", ["inspect", shown], code=0,
          inputs=[shown], after=metadata_shown)
    run_bad_input(r, "nonexistent input (inspect)", os.path.join(bad, "no-such-dir"), ["no such file or directory"],
                  "inspect", rl, sft, target)
    empty_dir = os.path.join(bad, "empty-dir")
    os.makedirs(empty_dir)
    run_bad_input(r, "directory without a checkpoint (target)", empty_dir, ["no checkpoint", "no .safetensors file"], "target",
                  rl, sft, target)
    two = os.path.join(bad, "two-files-no-index")
    write(os.path.join(two, "a.safetensors"), valid)
    write(os.path.join(two, "b.safetensors"), valid)
    run_bad_input(r, "two .safetensors files and no index (sft)", two, ["no checkpoint", "2 .safetensors files"], "sft",
                  rl, sft, target)

    # Sharded checkpoints: the index and the shards must agree both ways.
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    A = [tensor("model.layers.0.w", "F32", [4, 4], 5), tensor("model.layers.0.b", "F32", [4], 5)]
    B = [tensor("model.layers.1.w", "BF16", [4, 4], 6)]
    good = {s1: A, s2: B}
    IDX = "model.safetensors.index.json"

    def sharded(name, shards=good, index=None):
        return write_sharded(os.path.join(bad, "sharded-" + slug(name)), shards, index if index is not None else index_for(good))

    d = sharded("missing shard")
    os.remove(os.path.join(d, s2))
    run_bad_input(r, "sharded: missing shard (target)", d, [IDX, "tensor 'model.layers.1.w'", "missing shard",
                                                            "'%s' does not exist" % s2], "target", rl, sft, target)
    d = sharded("missing shard inspect")
    os.remove(os.path.join(d, s1))
    run_bad_input(r, "sharded: missing shard (inspect)", d, [IDX, "missing shard", s1], "inspect", rl, sft, target)
    idx = index_for(good)
    idx["weight_map"]["model.layers.1.ghost"] = s2
    d = sharded("index names a tensor not in the shards", index=idx)
    run_bad_input(r, "sharded: index names a tensor not in the shards (rl)", d,
                  [IDX, "tensor 'model.layers.1.ghost'", "index disagrees with shards", "listed in weight_map but not in '%s'" % s2],
                  "rl", rl, sft, target)
    idx = index_for(good)
    del idx["weight_map"]["model.layers.0.b"]
    idx["metadata"]["total_size"] -= 16
    d = sharded("shard tensor missing from the index", index=idx)
    run_bad_input(r, "sharded: shard tensor missing from the index (target)", d,
                  [s1, "tensor 'model.layers.0.b'", "index disagrees with shards", "not in the index's weight_map"],
                  "target", rl, sft, target)
    idx = index_for(good)
    idx["weight_map"]["model.layers.0.b"] = s2
    d = sharded("index places a tensor in the wrong shard", shards={s1: A, s2: B}, index=idx)
    run_bad_input(r, "sharded: tensor in the wrong shard (target)", d,
                  [s1, "tensor 'model.layers.0.b'", "the index places it in '%s'" % s2], "target", rl, sft, target)
    d = sharded("tensor stored in two shards", shards={s1: A, s2: B + [A[1]]})
    run_bad_input(r, "sharded: tensor stored in two shards (target)", d,
                  [s2, "tensor 'model.layers.0.b'", "also stored in another shard"], "target", rl, sft, target)
    d = sharded("index not JSON", index='{"weight_map": {"model.layers.0.w": ')
    run_bad_input(r, "sharded: index not JSON (target)", d, [IDX, "invalid index", "not JSON"], "target", rl, sft, target)
    d = sharded("index without weight_map", index='{"metadata": {}}')
    run_bad_input(r, "sharded: index without weight_map (sft)", d, [IDX, "invalid index", "no \"weight_map\" object"], "sft",
                  rl, sft, target)
    d = sharded("index duplicate key", index='{"weight_map": {"model.layers.0.w": "%s", "model.layers.0.w": "%s"}}' % (s1, s2))
    run_bad_input(r, "sharded: duplicate key in the index (target)", d, [IDX, "duplicate key", "'model.layers.0.w'"], "target",
                  rl, sft, target)
    idx = index_for(good)
    idx["metadata"]["total_size"] += 1
    d = sharded("index total_size wrong", index=idx)
    run_bad_input(r, "sharded: wrong metadata.total_size (inspect)", d, [IDX, "invalid index", "metadata.total_size is"],
                  "inspect", rl, sft, target)
    idx = index_for(good)
    idx["weight_map"]["model.layers.1.w"] = "../" + s2
    d = sharded("index escapes the directory", index=idx)
    run_bad_input(r, "sharded: shard path escaping the directory (target)", d,
                  [IDX, "tensor 'model.layers.1.w'", "is not a plain file name"], "target", rl, sft, target)
    d = sharded("truncated shard")
    with open(os.path.join(d, s2), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(d, s2)) - 2)
    run_bad_input(r, "sharded: truncated second shard (target)", d, [s2, "file length mismatch", "(truncated)"], "target",
                  rl, sft, target)

    # analyze with a bad input and --json/--svg: neither file may appear.
    out = r.outdir("analyze bad input")
    bad_b = os.path.join(bad, "bits-overflow.safetensors")
    r.run("analyze: bad --b with --json and --svg",
          ["analyze", "--a-minus", sft, "--a", rl, "--b-minus", sft, "--b", bad_b,
           "--json", os.path.join(out, "out.json"), "--svg", os.path.join(out, "out.svg")],
          first_has=["bits-overflow.safetensors", "size overflow"], inputs=[sft, rl, bad_b],
          outs=[os.path.join(out, "out.json"), os.path.join(out, "out.svg")])
    # inject with a malformed vector, extract with a malformed sft.
    out = r.outdir("inject bad vector")
    vec = os.path.join(bad, "duplicate.safetensors")
    r.run("inject: malformed --vector", ["inject", "--target", target, "--vector", vec, "--out", os.path.join(out, "merged")],
          first_has=["duplicate.safetensors", "duplicate key"], inputs=[target, vec], outs=[os.path.join(out, "merged")])
    out = r.outdir("extract bad sft")
    bsft = os.path.join(bad, "gap.safetensors")
    r.run("extract: malformed --sft", ["extract", "--rl", rl, "--sft", bsft, "--out", os.path.join(out, "vector.safetensors")],
          first_has=["gap.safetensors", "tensor 'b'", "(hole)"], inputs=[rl, bsft], outs=[os.path.join(out, "vector.safetensors")])


def run_bad_input(r, name, path, frags, role, rl, sft, target, check_unchanged=True):
    base = os.path.basename(path.rstrip("/"))
    inputs = [rl, sft, target] + ([path] if check_unchanged else [])
    if role == "inspect":
        r.run(name, ["inspect", path], first_has=[base] + frags, inputs=inputs)
        return
    out = os.path.join(r.outdir(name), "merged")
    paths = {"rl": rl, "sft": sft, "target": target}
    paths[role] = path
    r.run(name, ["past", "--rl", paths["rl"], "--sft", paths["sft"], "--target", paths["target"], "--out", out],
          first_has=[base] + frags, inputs=inputs, outs=[out])


def group_models(r):
    """Model-level mismatches: every file is valid, but they do not describe the same model.

    A binding error's first line is "checkpoints disagree (N problems): <the first problem>", the
    problem naming the tensor and the operands as "#k '--role path'"; the other problems follow."""
    rl, sft, target = good_models(r)
    d = os.path.join(r.root, "models")

    def model(name, seed, change=None):
        ts = base_tensors(seed)
        if change:
            ts = change(ts)
        return write(os.path.join(d, name + ".safetensors"), st_bytes(ts))

    def replace(name, new):
        return lambda ts: [new if t[0] == name else t for t in ts]

    def disagree(n):
        return "checkpoints disagree (%d problem%s): " % (n, "" if n == 1 else "s")

    def op(k, role, path):
        return "#%d '--%s %s'" % (k, role, path)

    DOWN0 = "model.layers.0.mlp.down_proj.weight"
    Q0 = "model.layers.0.self_attn.q_proj.weight"
    POS = "model.position_ids"
    T, RL, SFT = op(1, "target", target), op(2, "rl", rl), op(3, "sft", sft)

    def past_case(name, r_rl=rl, r_sft=sft, r_target=target, first_has=(), stderr_has=(), extra=(), code=1, after=None):
        out = os.path.join(r.outdir(name), "merged")
        ins = [r_rl, r_sft, r_target]
        r.run(name, ["past", "--rl", r_rl, "--sft", r_sft, "--target", r_target, "--out", out] + list(extra),
              first_has=first_has, stderr_has=stderr_has, inputs=ins, outs=[out], code=code, after=after)

    shape_sft = model("sft-shape", 3, replace(DOWN0, tensor(DOWN0, "F32", [12, 8], 3)))
    past_case("past: different shape in rl and sft", r_sft=shape_sft,
              first_has=[disagree(1) + "shape: '%s' is [8, 12] in %s but [12, 8] in %s" % (DOWN0, T, op(3, "sft", shape_sft))])
    shape_rl = model("rl-shape", 2, replace(DOWN0, tensor(DOWN0, "F32", [8, 6], 2)))
    past_case("past: different shape in rl (sft agrees with target)", r_rl=shape_rl,
              first_has=[disagree(1) + "shape: '%s' is [8, 12] in %s but [8, 6] in %s" % (DOWN0, T, op(2, "rl", shape_rl))])
    dtype_sft = model("sft-dtype", 3, replace(Q0, tensor(Q0, "F16", [8, 8], 3)))
    past_case("past: different float dtype in sft", r_sft=dtype_sft,
              first_has=[disagree(1) + "dtype: '%s' is BF16 in %s but F16 in %s" % (Q0, T, op(3, "sft", dtype_sft)),
                         "(pass --allow-mixed-dtypes to compute across float kinds)"])
    past_case("past: different float dtype with --allow-mixed-dtypes succeeds", r_sft=dtype_sft, extra=["--allow-mixed-dtypes"],
              code=0)
    int_rl = model("rl-int", 2, replace(DOWN0, (DOWN0, "I64", [8, 12], tensor(DOWN0, "F32", [8, 12], 2)[3] * 2)))
    past_case("past: int vs float dtype, even with --allow-mixed-dtypes", r_rl=int_rl, extra=["--allow-mixed-dtypes"],
              first_has=[disagree(1) + "dtype: '%s' is F32 in %s but I64 in %s" % (DOWN0, T, op(2, "rl", int_rl))])
    missing_rl = model("rl-missing", 2, lambda ts: [t for t in ts if t[0] != DOWN0])
    past_case("past: tensor missing from rl", r_rl=missing_rl,
              first_has=[disagree(1) + "missing: '%s' is in %s but not in %s" % (DOWN0, T, op(2, "rl", missing_rl))])
    missing_pos = model("sft-missing-int", 3, lambda ts: [t for t in ts if t[0] != POS])
    past_case("past: non-float tensor missing from sft", r_sft=missing_pos,
              first_has=[disagree(1) + "missing: '%s' is in %s but not in %s" % (POS, T, op(3, "sft", missing_pos))])
    extra_sft = model("sft-extra", 3, lambda ts: ts + [tensor("lm_head.weight", "F32", [8, 16], 3)])
    past_case("past: extra tensor in sft", r_sft=extra_sft,
              first_has=[disagree(1) + "extra: 'lm_head.weight' is in %s but not in %s" % (op(3, "sft", extra_sft), T)])
    target_missing = model("target-missing", 4, lambda ts: [t for t in ts if t[0] != Q0])
    T2 = op(1, "target", target_missing)
    past_case("past: tensor missing from target (extra in rl and sft)", r_target=target_missing,
              first_has=[disagree(2) + "extra: '%s' is in %s but not in %s" % (Q0, RL, T2)],
              stderr_has=["extra: '%s' is in %s but not in %s" % (Q0, SFT, T2)])
    several = model("sft-several", 3, lambda ts: [tensor(t[0], "F32", [1], 3) if t[0] == DOWN0 else t
                                                  for t in ts if t[0] != Q0] + [tensor("extra.bias", "F32", [3], 3)])
    past_case("past: several problems at once, all listed", r_sft=several,
              first_has=[disagree(3) + "missing: '%s'" % Q0, "several.safetensors"],
              stderr_has=["shape: '%s'" % DOWN0, "extra: 'extra.bias'"])
    many = model("sft-many-extra", 3, lambda ts: ts + [tensor("extra.%d" % i, "F32", [1], 3) for i in range(40)])
    past_case("past: 40 problems, the list cut at 30", r_sft=many, first_has=[disagree(40) + "extra: 'extra.0'", "many-extra"],
              stderr_has=["extra: 'extra.20'", "... and ", " more"],
              after=lambda p: [] if "'extra.39'" not in p.stderr.decode() else ["the 40th problem was listed"])

    # Several targets: the second does not match, so neither output may be written.
    bad_target = model("target2-shape", 5, replace(DOWN0, tensor(DOWN0, "F32", [8, 13], 5)))
    o = r.outdir("two targets second bad")
    out1, out2 = os.path.join(o, "merged-1"), os.path.join(o, "merged-2")
    r.run("past: two targets, the second mismatched, nothing written",
          ["past", "--rl", rl, "--sft", sft, "--target", target, "--target", bad_target, "--out", out1, "--out", out2],
          first_has=[disagree(2) + "shape: '%s' is [8, 13] in %s but [8, 12] in %s" % (DOWN0, op(1, "target", bad_target), RL)],
          inputs=[rl, sft, target, bad_target], outs=[out1, out2])
    o = r.outdir("save vector mismatch")
    out, vec = os.path.join(o, "merged"), os.path.join(o, "vector.safetensors")
    r.run("past --save-vector: rl/sft mismatch, neither output written",
          ["past", "--rl", missing_rl, "--sft", sft, "--target", target, "--out", out, "--save-vector", vec],
          first_has=[disagree(1) + "missing: '%s'" % DOWN0, "rl-missing.safetensors"], inputs=[missing_rl, sft, target],
          outs=[out, vec])

    # extract, inject, analyze.
    o = r.outdir("extract mismatch")
    out = os.path.join(o, "vector.safetensors")
    r.run("extract: shape mismatch", ["extract", "--rl", rl, "--sft", shape_sft, "--out", out],
          first_has=[disagree(1) + "shape: '%s' is [8, 12] in %s but [12, 8] in %s" % (DOWN0, op(1, "rl", rl), op(2, "sft", shape_sft))],
          inputs=[rl, shape_sft], outs=[out])
    vec_bad = write(os.path.join(d, "vector-shape.safetensors"),
                    st_bytes([tensor(t[0], "F32", [t[2][0] + 1] + t[2][1:], 7) for t in base_tensors(7) if t[1] != "I64"]))
    o = r.outdir("inject mismatch")
    out = os.path.join(o, "merged")
    r.run("inject: vector with other shapes", ["inject", "--target", target, "--vector", vec_bad, "--out", out],
          first_has=[disagree(4) + "shape: 'model.embed_tokens.weight' is [16, 8] in %s but [17, 8] in %s"
                     % (op(1, "target", target), op(2, "vector", vec_bad))], inputs=[target, vec_bad], outs=[out])
    o = r.outdir("analyze mismatch")
    js, svg = os.path.join(o, "analysis.json"), os.path.join(o, "heatmap.svg")
    r.run("analyze: b's shapes differ from a's, no --json/--svg written",
          ["analyze", "--a-minus", sft, "--a", rl, "--b-minus", target, "--b", shape_sft, "--json", js, "--svg", svg],
          first_has=[disagree(1) + "shape: '%s'" % DOWN0, "'--b %s'" % shape_sft], inputs=[sft, rl, target, shape_sft], outs=[js, svg])
    r.run("analyze: tensor missing from a-minus",
          ["analyze", "--a-minus", missing_rl, "--a", rl, "--b-minus", sft, "--b", target, "--json", js],
          first_has=[disagree(1) + "missing: '%s'" % DOWN0, "'--a-minus %s'" % missing_rl], inputs=[missing_rl, rl, sft, target],
          outs=[js])


def group_outputs(r):
    """Existing outputs, output paths that cannot be used, and argument errors."""
    rl, sft, target = good_models(r)

    # An existing output directory, without --force: an error, and the old output untouched.
    o = r.outdir("existing out")
    out = os.path.join(o, "merged")
    write(os.path.join(out, "model.safetensors"), b"old weights, not even safetensors")
    write(os.path.join(out, "config.json"), b'{"old": true}\n')
    r.run("past: existing --out without --force", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out],
          first_has=["merged", "already exists; pass --force"], inputs=[rl, sft, target, out], watch=[o])

    # ... and with --force: success, replaced, nothing else left.
    def replaced(p):
        problems = []
        if not os.path.isfile(os.path.join(out, "model.safetensors")):
            return ["no model.safetensors in the replaced output"]
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            if f.read(8) == b"old weig":
                problems.append("model.safetensors was not replaced")
        with open(os.path.join(out, "config.json"), "rb") as f:
            if b"old" in f.read():
                problems.append("config.json was not replaced by the target's")
        q = subprocess.run([r.binary, "inspect", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if q.returncode != 0:
            problems.append("inspect of the replaced output failed: " + q.stderr.decode(errors="replace").strip())
        return problems
    r.run("past: existing --out with --force replaces it", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out,
                                                            "--force", "--quiet"],
          code=0, inputs=[rl, sft, target], outs=[out], after=replaced)

    # A single-file output that exists.
    o = r.outdir("existing vector file")
    vec = write(os.path.join(o, "vector.safetensors"), b"precious")
    r.run("extract: existing single-file --out without --force", ["extract", "--rl", rl, "--sft", sft, "--out", vec],
          first_has=["vector.safetensors", "already exists"], inputs=[rl, sft, vec], watch=[o])

    # Two targets, the second output exists: the first must not be written either.
    o = r.outdir("second out exists")
    out1, out2 = os.path.join(o, "merged-1"), os.path.join(o, "merged-2")
    write(os.path.join(out2, "keep.txt"), b"keep me\n")
    r.run("past: second --out exists, first not written",
          ["past", "--rl", rl, "--sft", sft, "--target", target, "--target", target, "--out", out1, "--out", out2],
          first_has=["merged-2", "already exists"], inputs=[rl, sft, target, out2], outs=[out1], watch=[o])
    o = r.outdir("save vector exists")
    out, vec = os.path.join(o, "merged"), write(os.path.join(o, "vector.safetensors"), b"precious")
    r.run("past: --save-vector exists, --out not written",
          ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out, "--save-vector", vec],
          first_has=["vector.safetensors", "already exists"], inputs=[rl, sft, target, vec], outs=[out],
          watch=[o])
    # The output is one of the inputs.
    r.run("past: --out is the target itself (no --force)", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", target],
          first_has=[os.path.basename(target), "already exists"], inputs=[rl, sft, target], watch=[os.path.dirname(target)])

    # The same output twice.
    o = r.outdir("out twice")
    out = os.path.join(o, "merged")
    r.run("past: the same --out for two targets", ["past", "--rl", rl, "--sft", sft, "--target", target, "--target", target,
                                                   "--out", out, "--out", out + "/"],
          first_has=["merged", "given twice as an output"], inputs=[rl, sft, target], outs=[out])
    vec = os.path.join(o, "merged.safetensors")
    r.run("past: --save-vector equal to --out", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", vec,
                                                 "--save-vector", os.path.join(o, ".", "merged.safetensors")],
          first_has=["merged.safetensors", "given twice as an output"], inputs=[rl, sft, target], outs=[vec])

    # The same output under two spellings that only the file system knows are one (a symlinked
    # directory): the second writer must not silently replace what the first one wrote.
    real = os.path.join(o, "real")
    os.makedirs(real)
    os.symlink(real, os.path.join(o, "alias"))
    other = os.path.join(r.root, "models-other.safetensors")
    write(other, st_bytes(base_tensors(8)))
    r.run("past: two --out that are one directory through a symlink",
          ["past", "--rl", rl, "--sft", sft, "--target", target, "--target", other,
           "--out", os.path.join(real, "merged"), "--out", os.path.join(o, "alias", "merged")],
          first_has=["alias/merged", "given twice as an output"], inputs=[rl, sft, target, other],
          outs=[os.path.join(real, "merged")])

    # Unusable output paths.
    o = r.outdir("no parent")
    out = os.path.join(o, "no", "such", "dir", "merged")
    r.run("past: --out in a directory that does not exist", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out],
          first_has=["merged", "parent directory", "does not exist"], inputs=[rl, sft, target], outs=[out])
    o = r.outdir("parent is a file")
    write(os.path.join(o, "plainfile"), b"x")
    out = os.path.join(o, "plainfile", "merged")
    r.run("inject: --out under a regular file", ["inject", "--target", target, "--vector", rl, "--out", out],
          first_has=["merged", "does not exist"], inputs=[rl, target, os.path.join(o, "plainfile")], outs=[out])

    # Errors in the arguments' values (exit 1) and in the arguments themselves (exit 2).
    o = r.outdir("bad shard size")
    out = os.path.join(o, "merged")
    r.run("past: --max-shard-size not a size", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out,
                                                "--max-shard-size", "lots"],
          first_has=["--max-shard-size 'lots'"], inputs=[rl, sft, target], outs=[out])
    for lam in ("nan", "inf", "1e39"):  # 1e39 overflows the f32 it is applied in
        r.run(f"past: --lambda {lam}", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out, "--lambda", lam],
              first_has=["--lambda", "finite"], inputs=[rl, sft, target], outs=[out])
    r.run("past: --dtype i64", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out, "--dtype", "i64"],
          first_has=["--dtype 'i64'"], inputs=[rl, sft, target], outs=[out])
    r.run("past: two --target, one --out", ["past", "--rl", rl, "--sft", sft, "--target", target, "--target", target, "--out", out],
          first_has=["2 --target but 1 --out"], inputs=[rl, sft, target], outs=[out])
    r.run("past: unknown option (argument error, exit 2)", ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out,
                                                            "--lamda", "2"],
          code=2, first_has=["--lamda"], inputs=[rl, sft, target], outs=[out])
    r.run("past: missing --sft (argument error, exit 2)", ["past", "--rl", rl, "--target", target, "--out", out],
          code=2, first_has=["--sft"], inputs=[rl, target], outs=[out])


# --------------------------------------------------------------------------------------------------
# Runtime failures: a full disk, and interruptions


def small_checkpoint(r):
    """A valid small checkpoint: a few tensors of a few hundred KB, F32 and BF16."""
    d = os.path.join(r.root, "small")
    if not os.path.isdir(d):
        def ts(seed):
            return [tensor("model.layers.0.mlp.up_proj.weight", "F32", [256, 256], seed),
                    tensor("model.layers.0.mlp.down_proj.weight", "BF16", [256, 512], seed),
                    tensor("model.layers.1.mlp.up_proj.weight", "F32", [256, 256], seed),
                    tensor("model.norm.weight", "BF16", [256], seed)]
        write(os.path.join(d, "rl.safetensors"), st_bytes(ts(2)))
        write(os.path.join(d, "sft.safetensors"), st_bytes(ts(3)))
        write(os.path.join(d, "target", "model.safetensors"), st_bytes(ts(4)))
        write(os.path.join(d, "target", "config.json"), b'{"model_type": "test", "padding": "' + b"x" * 200_000 + b'"}\n')
    return os.path.join(d, "rl.safetensors"), os.path.join(d, "sft.safetensors"), os.path.join(d, "target")


def many_names_checkpoint(r):
    """Many tiny tensors with long names, and a 200 KB config.json: with small shards, the shards
    stay small (< 4 KB), the index is ~60 KB and config.json is the largest file."""
    d = os.path.join(r.root, "many")
    if not os.path.isdir(d):
        names = ["model.layers.%d.%s.weight" % (i, "very_long_module_name_" * 6) for i in range(300)]
        write(os.path.join(d, "model.safetensors"), st_bytes([tensor(n, "F32", [8], 1) for n in names]))
        write(os.path.join(d, "config.json"), b'{"model_type": "test", "padding": "' + b"x" * 200_000 + b'"}\n')
    return d


def big_checkpoint(r):
    """~256 MB of f32 in 32 tensors: long enough to interrupt (rl = sft = target, to spare the disk)."""
    p = os.path.join(r.root, "big", "model.safetensors")
    if not os.path.exists(p):
        n = 2048 * 1024
        chunk = f32_bytes(values(1024, 1)) * (n // 1024)
        ts = [("model.layers.%d.mlp.up_proj.weight" % i, "F32", [2048, 1024], chunk) for i in range(32)]
        header = {}
        at = 0
        for name, dt, shape, data in ts:
            header[name] = {"dtype": dt, "shape": shape, "data_offsets": [at, at + len(data)]}
            at += len(data)
        text = pad_header(json.dumps(header).encode())
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for t in ts:
                f.write(t[3])
    return p


def group_runtime(r):
    rl, sft, target = small_checkpoint(r)
    small = 64 * 1024

    o = r.outdir("disk full")
    out = os.path.join(o, "merged")
    r.run("disk full: shard does not fit (RLIMIT_FSIZE 64 KiB)",
          ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out],
          first_has=["merged", "model.safetensors", "file too large"], inputs=[rl, sft, target], outs=[out],
          preexec=preexec_fsize(small))
    r.run("disk full: many shards, each too large",
          ["past", "--rl", rl, "--sft", sft, "--target", target, "--out", out, "--max-shard-size", "300KB"],
          first_has=["merged", "model-0000", "file too large"], inputs=[rl, sft, target], outs=[out],
          preexec=preexec_fsize(small))
    # Past the shards (preallocated), the writes that can still fail: the index and the copied files.
    many = many_names_checkpoint(r)
    r.run("disk full: the index does not fit (shards do)",
          ["past", "--rl", many, "--sft", many, "--target", many, "--out", out, "--max-shard-size", "2KB"],
          first_has=["merged", "model.safetensors.index.json", "file too large"], inputs=[many], outs=[out],
          preexec=preexec_fsize(16 * 1024))
    r.run("disk full: a copied side file (config.json) does not fit",
          ["past", "--rl", many, "--sft", many, "--target", many, "--out", out, "--max-shard-size", "2KB"],
          first_has=["merged/config.json", "cannot copy", "disk full?"], inputs=[many], outs=[out],
          preexec=preexec_fsize(100 * 1024))
    r.run("disk full: extract to one file",
          ["extract", "--rl", rl, "--sft", sft, "--out", os.path.join(o, "vector.safetensors")],
          first_has=["/vector.safetensors: cannot reserve", "file too large"], inputs=[rl, sft],
          outs=[os.path.join(o, "vector.safetensors")],
          after=lambda p: ["names vector.safetensors/vector.safetensors, a path that never exists"]
          if b"vector.safetensors/vector.safetensors" in p.stderr else [],
          preexec=preexec_fsize(small))
    js = os.path.join(o, "analysis.json")
    r.run("disk full: analyze --json",
          ["analyze", "--a-minus", sft, "--a", rl, "--b-minus", sft, "--b", rl, "--json", js],
          first_has=["analysis.json", "write failed"], inputs=[rl, sft], outs=[js], preexec=preexec_fsize(100))

    big = big_checkpoint(r)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        interrupt_case(r, big, sig)
    interrupt_case(r, big, signal.SIGINT, existing=True)
    interrupt_case(r, big, signal.SIGKILL, existing=True)
    intruder_case(r, big)

    # A command that is stuck before it writes anything (here: opening a FIFO, which blocks until
    # a writer appears) must still end on SIGTERM or Ctrl-C, leaving nothing behind.
    fifo = os.path.join(r.root, "stuck.fifo")
    os.mkfifo(fifo)
    o = r.outdir("stuck")
    stuck_case(r, "SIGTERM ends past stuck opening its --target", ["past", "--rl", rl, "--sft", sft, "--target", fifo,
                                                                  "--out", os.path.join(o, "merged")], signal.SIGTERM, o)
    stuck_case(r, "SIGINT ends inspect stuck opening its input", ["inspect", fifo], signal.SIGINT, o)
    stuck_case(r, "SIGINT ends analyze stuck opening --b", ["analyze", "--a-minus", sft, "--a", rl, "--b-minus", sft, "--b", fifo,
                                                           "--json", os.path.join(o, "a.json")], signal.SIGINT, o)


def stuck_case(r, name, args, sig, outdir):
    if not r.selected(name):
        return
    proc = subprocess.Popen([r.binary] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    problems = []
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=5)
        if proc.returncode == 0:
            problems.append("exit status 0")
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        problems.append("%s ignored: still running 5 s later (killed)" % sig.name)
    if os.listdir(outdir):
        problems.append("left behind: " + ", ".join(sorted(os.listdir(outdir))))
    stderr = err.decode("utf-8", "replace")
    first = stderr.splitlines()[0] if stderr.strip() else "(exit %s)" % describe_status(proc.returncode)
    r.report(name, problems, first)


def describe_status(rc):
    return "signal %s" % signal.Signals(-rc).name if rc < 0 else str(rc)


def wait_for_tmp(proc, parent, name, limit=30.0):
    """Waits until the writer's temporary directory appears (the run is under way) or the process ends."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if any(e.startswith("." + name + ".skillvec-tmp") for e in os.listdir(parent)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def intruder_case(r, big):
    """Another process creates the output while `past` runs (no --force): finishing must not move
    it aside and replace it; the run must fail and leave the intruder as it was."""
    name = "an output created by someone else mid-run is not replaced without --force"
    if not r.selected(name):
        return
    o = r.outdir(name)
    out = os.path.join(o, "merged")
    problems, first = [], None
    for targets in (1, 3, 8):
        outs = [out + "-%d" % i for i in range(targets)]
        args = ["past", "--rl", big, "--sft", big, "--threads", "1"]
        for x in outs:
            args += ["--target", big, "--out", x]
        proc = subprocess.Popen([r.binary] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        intruded = False
        if wait_for_tmp(proc, o, "merged-0") and proc.poll() is None:
            try:
                os.makedirs(outs[0])  # fails if the run already finished it
                write(os.path.join(outs[0], "theirs.txt"), b"someone else's checkpoint\n")
                intruded = True
            except FileExistsError:
                pass
        _, err = proc.communicate(timeout=60)
        stderr = err.decode("utf-8", "replace")
        first = stderr.splitlines()[0] if stderr.strip() else "(exit %s)" % describe_status(proc.returncode)
        if intruded:
            break
        for e in os.listdir(o):
            shutil.rmtree(os.path.join(o, e), ignore_errors=True)
    else:
        problems.append("every run finished before the intruder could create its output")
    if intruded:
        problems += check_status(proc.returncode, 1)
        if proc.returncode == 1:
            problems += check_message(stderr, first, ["merged-0", "already exists"], [])
        theirs = os.path.join(outs[0], "theirs.txt")
        if not os.path.isfile(theirs) or open(theirs, "rb").read() != b"someone else's checkpoint\n":
            problems.append("the intruder's merged-0 was replaced")
        left = sorted(e for e in os.listdir(o) if e != "merged-0")
        if left:
            problems.append("left behind: " + ", ".join(left))
    r.report(name, problems, first)


def interrupt_case(r, big, sig, existing=False):
    """Signals a `past` run once its temporary outputs exist (and 0.3 s more). SIGINT and SIGTERM
    must unwind: exit 1, "interrupted", no temporary directory. SIGKILL cannot: only hidden
    .<name>.skillvec-tmp-* may remain. With `existing`, the outputs exist and --force is given:
    an interrupted run must leave them exactly as they were."""
    name = "interrupted by %s mid-run%s" % (sig.name, " (--force over existing outputs)" if existing else "")
    if not r.selected(name):
        return
    o = r.outdir(name)
    out = os.path.join(o, "merged")
    problems = []
    first = None
    # Several targets (all the same file) make the run long enough to interrupt on a fast machine;
    # if it still finishes first, try again with more.
    for targets in (3, 8):
        outs = [out + "-%d" % i for i in range(targets)]
        if existing:
            for x in outs:
                write(os.path.join(x, "model.safetensors"), st_bytes([tensor("old", "F32", [4], 9)]))
        before = tree_hashes([big, o])
        before_list = sorted(os.listdir(o))
        args = ["past", "--rl", big, "--sft", big, "--threads", "1"] + (["--force"] if existing else [])
        for x in outs:
            args += ["--target", big, "--out", x]
        proc = subprocess.Popen([r.binary] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait_for_tmp(proc, o, "merged-0"):
            time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            problems.append("did not stop within 60 s of %s" % sig.name)
        stderr = err.decode("utf-8", "replace")
        first = stderr.splitlines()[0] if stderr.strip() else "(exit %s)" % describe_status(proc.returncode)
        if proc.returncode == 0:
            for e in os.listdir(o):
                shutil.rmtree(os.path.join(o, e), ignore_errors=True)
            continue  # finished before the signal: run a longer one
        break
    else:
        problems.append("every run finished before it could be interrupted")
    rc = proc.returncode
    if sig == signal.SIGKILL:
        if rc != -signal.SIGKILL:
            problems.append("exit %s, expected signal SIGKILL" % describe_status(rc))
        hidden = 0
        for e in sorted(set(os.listdir(o)) - set(before_list)):
            if e.startswith(".merged-") and ".skillvec-tmp-" in e:
                shutil.rmtree(os.path.join(o, e))  # acceptable after SIGKILL: hidden, never taken for a checkpoint
                hidden += 1
            else:
                problems.append("left behind after SIGKILL: %s" % e)
        first += "; %d hidden .merged-N.skillvec-tmp-* left (allowed)" % hidden
    else:
        if rc < 0:
            problems.append("died of signal %s instead of unwinding" % signal.Signals(-rc).name)
        elif rc != 1:
            problems.append("exit status %d, expected 1" % rc)
        else:
            problems += check_message(stderr, first.replace("(exit 1)", ""), ["interrupted"], [])
        new = sorted(set(os.listdir(o)) - set(before_list))
        if new:
            problems.append("left behind: " + ", ".join(new))
    after = tree_hashes([big, o])
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        problems.append("changed: " + ", ".join(changed))
    r.report(name, problems, first)


# --------------------------------------------------------------------------------------------------

GROUPS = {"files": group_files, "models": group_models, "outputs": group_outputs, "runtime": group_runtime}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="the skillvec executable")
    ap.add_argument("--group", default="all", choices=sorted(GROUPS) + ["all"])
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-k", dest="only", action="append", default=[], help="only cases whose name contains this")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    if not os.access(binary, os.X_OK):
        print("FAIL setup: %s is not executable" % binary)
        return 1
    root = tempfile.mkdtemp(prefix="skillvec-cli-")
    r = Runner(binary, root, a.only)
    t0 = time.monotonic()
    try:
        for g in (sorted(GROUPS) if a.group == "all" else [a.group]):
            GROUPS[g](r)
    finally:
        if a.keep:
            print("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    failed = [n for n, ok in r.results if not ok]
    print("%d cases, %d passed, %d failed in %.1f s" % (len(r.results), len(r.results) - len(failed), len(failed),
                                                       time.monotonic() - t0))
    if not r.results:
        print("FAIL: no case ran")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
