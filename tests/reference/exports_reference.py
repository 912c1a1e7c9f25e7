#!/usr/bin/env python3
"""Runs every script `patchbay export` writes, for a set of specs, and commits what ran and what
it printed: the reference for crates/patching/tests/exports.rs.

For each case and each library (tl3: TransformerLens 3.9, tl4: TransformerLens 4.x, nnsight run
locally) it asks the CLI for the script (`patchbay export --to LIB SPEC`), writes that text to
tests/fixtures/reference/exports/<case>.<lib>.py, runs that very file in the library's own
environment from the repository's root, and records the script's `grid`. exports.json holds each
case's spec, and per library the script's file name, its grid (shape and values, or null where the
script says the library has no sweep for the target) and the versions that ran it. The Rust test
checks that each script is what the exporter writes today and that each grid is Patchbay's within
1e-4.

Each nnsight script that may run on NDIF also runs with REMOTE = "local" (nnsight's dry run of the
remote path: the session serialized and run in this process); exports.json records how far that grid
is from the local one.

Gaussian-noise cases are run too, but their grids cannot be compared: the scripts draw their noise
from torch's generator, Patchbay from ChaCha8. The test checks only their text and shape.

The environments (tests/reference/requirements*.txt):
  --tl3-python      transformer_lens 3.9.0 (requirements.txt)
  --tl4-python      transformer_lens 4.3.0 (requirements-tl4.txt)
  --nnsight-python  nnsight 0.8.1 (requirements-nnsight.txt; one environment can serve both)

Usage (offline; the models are the committed fixtures):
  cargo build --release -p patchbay-cli
  python tests/reference/exports_reference.py --patchbay target/release/patchbay \\
      --tl3-python /work/venv-ref/bin/python --tl4-python /work/venv-tl4/bin/python \\
      --nnsight-python /work/venv-tl4/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "reference" / "exports"
TINY = {"local": "tests/fixtures/models/tiny"}
IOI_MODEL = {"local": "models/patchbay-ioi"}

IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to")
# The answers tests/reference/patching_reference.py picked for the fixture model (the tokens whose
# logit difference moves most between the clean and the corrupted run).
TINY_ANSWERS = (" transc", " Thief")
DATASET = [("Mary", "John"), ("Alice", "Bob"), ("Sarah", "Tom"), ("Anna", "David")]
TEMPLATE = "When {io} and {s} went to the store, {s2} gave a drink to"


def spec(target, kind="logit_diff", normalized=True, direction="denoising", prompts=None,
         corruption=None, model=TINY, normalize=None):
    metric = {"kind": kind, "normalized": normalized}
    if normalize:
        metric["normalize"] = normalize
    return {
        "version": 1,
        "model": model,
        "prompts": prompts or [{"clean": IOI[0], "corrupted": IOI[1], "answer": TINY_ANSWERS[0],
                                "counter_answer": TINY_ANSWERS[1]}],
        "corruption": corruption or {"method": "str"},
        "metric": metric,
        "direction": direction,
        "target": target,
    }


def dataset(answers_of):
    return [{"clean": TEMPLATE.format(io=io, s=s, s2=s), "corrupted": TEMPLATE.format(io=io, s=s, s2=io),
             **answers_of(io, s)} for io, s in DATASET]


def each(component):
    return {"component": component, "positions": "each"}


def all_pos(component):
    return {"component": component, "positions": "all"}


CASES = {
    "resid_pre.each.logit_diff": spec(each("resid_pre")),
    "resid_mid.each.kl": spec(each("resid_mid"), kind="kl"),
    "attn_out.each.prob": spec(each("attn_out"), kind="prob"),
    "mlp_out.each.logit_diff.raw": spec(each("mlp_out"), normalized=False),
    "z.all.logit_diff": spec(all_pos("z")),
    "z.each.logit_diff": spec(each("z")),
    "q.each.prob": spec(each("q"), kind="prob"),
    "k.all.logit_diff": spec(all_pos("k")),
    "v.all.kl": spec(all_pos("v"), kind="kl"),
    "pattern.all.logit_diff": spec(all_pos("pattern")),
    "pattern.each.prob": spec(each("pattern"), kind="prob"),
    "resid_post.each.logit_diff": spec(each("resid_post")),
    "block_every.each.logit_diff": spec(each("block_every")),
    "noising.z.all.logit_diff": spec(all_pos("z"), direction="noising"),
    "noising.resid_pre.each.kl": spec(each("resid_pre"), kind="kl", direction="noising"),
    "dataset4.resid_pre.each.per_prompt": spec(
        each("resid_pre"), normalize="per_prompt",
        prompts=dataset(lambda io, s: {"answer": TINY_ANSWERS[0], "counter_answer": TINY_ANSWERS[1]})),
    "ioi.dataset4.z.all.logit_diff": spec(
        all_pos("z"), model=IOI_MODEL,
        prompts=dataset(lambda io, s: {"answer": f" {io}", "counter_answer": f" {s}"})),
    "ioi.dataset4.resid_pre.each.prob_diff": spec(
        each("resid_pre"), kind="prob_diff", model=IOI_MODEL,
        prompts=dataset(lambda io, s: {"answer": f" {io}", "counter_answer": f" {s}",
                                       "answer_set": [f" {io}"], "counter_set": [f" {s}", " the"]})),
    "gn.resid_pre.each.logit_diff": spec(
        each("resid_pre"), corruption={"method": "gn", "positions": [1, 2], "samples": 2}),
}

LIBRARIES = ("tl3", "tl4", "nnsight")
PACKAGES = {"tl3": "transformer_lens", "tl4": "transformer_lens", "nnsight": "nnsight"}


def run_script(script, result):
    """In the library's environment: runs the script file as `python script` would and writes its
    grid and the versions that ran it. An nnsight script that may run remotely runs a second time
    with REMOTE = "local", nnsight's serverless dry run of NDIF's path (the session serialized,
    then run in this process), and the largest difference between the two grids is recorded."""
    import runpy
    from importlib.metadata import version

    grid = runpy.run_path(script, run_name="__main__")["grid"]
    out = {"grid": None if grid is None else {"shape": list(grid.shape),
                                              "values": [float(v) for v in grid.flatten()]},
           "versions": {p: version(p) for p in ("torch", "transformers", "transformer_lens", "nnsight")
                        if _installed(p)}}
    text = Path(script).read_text()
    if script.endswith(".nnsight.py") and grid is not None and "assert not REMOTE" not in text:
        namespace = {"__name__": "__main__"}
        exec(compile(text.replace("REMOTE = False", 'REMOTE = "local"', 1), script, "exec"), namespace)
        out["remote_local_max_abs_diff"] = float((namespace["grid"] - grid).abs().max())
    Path(result).write_text(json.dumps(out))


def _installed(package):
    from importlib.metadata import PackageNotFoundError, version
    try:
        version(package)
        return True
    except PackageNotFoundError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patchbay", default=str(ROOT / "target" / "release" / "patchbay"))
    ap.add_argument("--tl3-python", required=True)
    ap.add_argument("--tl4-python", required=True)
    ap.add_argument("--nnsight-python", required=True)
    ap.add_argument("--only", help="run only the cases whose name contains this")
    args = ap.parse_args()
    pythons = {"tl3": args.tl3_python, "tl4": args.tl4_python, "nnsight": args.nnsight_python}
    OUT.mkdir(parents=True, exist_ok=True)
    index = OUT / "exports.json"
    cases = {c["name"]: c for c in json.loads(index.read_text())["cases"]} if index.exists() else {}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory() as tmp:
        for name, case_spec in CASES.items():
            if args.only and args.only not in name:
                continue
            spec_file = Path(tmp) / "spec.json"
            spec_file.write_text(json.dumps(case_spec))
            entry = {"name": name, "spec": case_spec, "scripts": {}}
            for lib in LIBRARIES:
                script = subprocess.run([args.patchbay, "export", "--to", lib, str(spec_file)], cwd=ROOT,
                                        check=True, capture_output=True, text=True).stdout
                file = OUT / f"{name}.{lib}.py"
                file.write_text(script)
                result = Path(tmp) / "result.json"
                print(f"{name} {lib} ...", file=sys.stderr, flush=True)
                subprocess.run([pythons[lib], __file__, "--run", str(file.relative_to(ROOT)), str(result)],
                               cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
                entry["scripts"][lib] = {"script": file.name, **json.loads(result.read_text())}
            cases[name] = entry
    names = [n for n in CASES if n in cases]
    index.write_text(json.dumps({
        "generated_by": "tests/reference/exports_reference.py",
        "cases": [cases[n] for n in names],
    }, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:  # this file, run in a library's environment
        run_script(*sys.argv[2:4])
    else:
        main()
