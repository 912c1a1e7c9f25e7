#!/usr/bin/env python3
"""Edge attribution patching over a 20-prompt IOI dataset (S2 corrupted by STR, logit
difference) on the GPT-2-small-shaped checkpoint of `patchbay init --shape gpt2-small --seed 0`:
Patchbay's `patchbay circuit` (EAP,
and EAP-IG with 5 steps) against TransformerLens 4.x's `attribution_patch(...,
EdgeAttributionConfig(granularity="edge"))` on the same weights, prompts and thread count.
Patchbay's time is its attribution stage (`--timings`: the two runs, the gradient passes and
the scores of all 32,491 edges), without model loading or the exact checks, which are
reported beside it; TransformerLens's is the `attribution_patch` call. TransformerLens 4.x has
no EAP-IG (`ig_steps > 1` raises `NotImplementedError`), so its EAP-IG figure is an estimate,
its measured EAP time × 5 (one gradient pass per step; it would also need the path's inputs),
not a measurement. Checks that the EAP scores agree (TransformerLens's per-position edges
summed over positions). A benchmark, not a test: it asserts nothing.

TransformerLens's edge graph has every edge at every position (487,365 for 15 tokens) and
scores them in Python, one pair at a time, so its time is linear in the prompts: with
`--tl-prompts K` below n it runs the first K and its time for n is extrapolated (×n/K), said
in the table; the scores are then compared with Patchbay's on the same K prompts.

  bench/run.sh eap [--threads 2] [--n 20] [--tl-prompts K]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
sys.path.insert(0, str(ROOT / "bench"))

# `patchbay init --shape gpt2-small --seed 0`: the seeded GPT-2-small-shaped checkpoint.
CHECKPOINT = ROOT / "target" / "bench" / "gpt2-small-seed0"
PATCHBAY = str(ROOT / "target/release/patchbay")
IG_STEPS = 5


def patchbay_circuit(spec, prompts, circuit, threads):
    """`patchbay circuit` on `spec` with `prompts` and `circuit` as its circuit block: its
    results and timings."""
    spec = dict(spec, prompts=prompts, circuit=circuit)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [PATCHBAY, "circuit", f.name, "--json", "--quiet", "--timings"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout), json.loads(out.stderr.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--tl-prompts", type=int, help="prompts TransformerLens runs (default: all)")
    args = ap.parse_args()
    if not (CHECKPOINT / "model.safetensors").exists():
        subprocess.run([PATCHBAY, "init", "--shape", "gpt2-small", "--seed", "0", "--out", str(CHECKPOINT)], check=True)

    spec = {
        "version": 1,
        "model": {"local": str(CHECKPOINT)},
        "prompts": [],
        "dataset": {"task": "ioi", "n": args.n, "seed": 0, "names": "s2", "template": 0},
        "corruption": {"method": "str"},
        "metric": {"kind": "logit_diff", "normalized": False},
        "target": {"component": "z", "positions": "all"},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    prompts = json.loads(subprocess.run([PATCHBAY, "expand", f.name], check=True, capture_output=True, text=True).stdout)["prompts"]
    spec.pop("dataset")
    k = min(args.tl_prompts or len(prompts), len(prompts))
    # Exact checks of single edges would be extra patched runs: none but the curve's.
    _, eap_t = patchbay_circuit(spec, prompts, {"method": "eap", "checked": 0}, args.threads)
    _, ig_t = patchbay_circuit(spec, prompts, {"method": "eap_ig", "ig_steps": IG_STEPS, "checked": 0}, args.threads)
    eap, _ = patchbay_circuit(spec, prompts[:k], {"method": "eap", "checked": 0}, args.threads)

    from transformer_lens import TransformerBridge
    from transformer_lens.tools.analysis import attribution_patching as tap
    from tokenizers import Tokenizer
    from eap_reference import summed

    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(str(CHECKPOINT / "tokenizer.json"))
    ids = lambda text: [50256] + tok.encode(text).ids
    clean = torch.tensor([ids(p["clean"]) for p in prompts[:k]])
    corrupt = torch.tensor([ids(p["corrupted"]) for p in prompts[:k]])
    model = TransformerBridge.boot_transformers(str(CHECKPOINT))
    model.eval()
    tl_s = 0.0
    scores = {}
    for i, p in enumerate(prompts[:k]):
        # One pair a call, as attribution_patch takes one metric: the pair's own answers.
        r, rp = tok.encode(p["answer"]).ids[0], tok.encode(p["counter_answer"]).ids[0]

        def metric(logits, r=r, rp=rp):
            return logits[0, -1, r] - logits[0, -1, rp]

        start = time.perf_counter()
        result = tap.attribution_patch(
            model, clean[i : i + 1], corrupt[i : i + 1], metric, tap.EdgeAttributionConfig(granularity="edge")
        )
        tl_s += time.perf_counter() - start
        for name, v in summed(result.edge_scores).items():
            scores[name] = scores.get(name, 0.0) + v / k
    ours = {e["name"]: e["score"] for e in eap["edges"]}
    largest = max(abs(v) for v in scores.values())
    err = max(abs(ours[k] - v) for k, v in scores.items())

    tl_s *= len(prompts) / k
    measured = "" if k == len(prompts) else f", extrapolated from {k}"
    tl = f"TransformerLens {version('transformer_lens')}"
    print(f"\nGPT-2-small-shaped checkpoint (patchbay init, seed 0), {len(prompts)} IOI prompts ({clean.shape[1]} tokens), "
          f"{len(ours)} edges, {args.threads} threads, CPU")
    print(f"| method | {tl} s | Patchbay s (attribution) | speed-up | Patchbay exact checks s |")
    print("|---|---|---|---|---|")
    print(f"| EAP | {tl_s:.1f}{measured} | {eap_t['attribution_s']:.1f} | {tl_s / eap_t['attribution_s']:.1f}× | {eap_t['checks_s']:.1f} |")
    print(f"| EAP-IG, {IG_STEPS} steps | {IG_STEPS * tl_s:.1f} (EAP × {IG_STEPS}, estimated{measured}) | {ig_t['attribution_s']:.1f} | "
          f"{IG_STEPS * tl_s / ig_t['attribution_s']:.1f}× | {ig_t['checks_s']:.1f} |")
    print(f"EAP scores over {k} prompts: max abs difference {err:.1e} (largest |score| {largest:.3g}); "
          f"model loading: Patchbay {eap_t['load_s']:.1f} s")


if __name__ == "__main__":
    main()
