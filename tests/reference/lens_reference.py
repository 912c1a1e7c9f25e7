"""Reference logit lens and direct logit attribution from TransformerLens 3.9.0, for
crates/patching/src/lens and crates/patching/tests/lens.rs.

TransformerLens is loaded with the LayerNorms folded (`fold_ln=True`, its default for
`from_pretrained`; centring off, so that logits are the model's own), which is what
`logit_attrs` assumes: the final LayerNorm's gain is folded into W_U and its bias into b_U.

For each run (clean, corrupted) of each case, averaged over the batch (prompts, or GN's noise
samples):
  lens      `cache.accumulated_resid(layer=None, incl_mid=False, apply_ln=True)` (ln_final
            recomputed on each accumulated stream) through `W_U` and `b_U`, for r and r', at
            every position: [streams, pos]; the labels are accumulated_resid's.
  dla       `cache.logit_attrs(cache.get_full_resid_decomposition(layer=-1,
            expand_neurons=False, pos_slice=-1), tokens=r, incorrect_tokens=r', pos_slice=-1)`:
            the final LayerNorm's scale frozen, with its labels (L{l}H{h}, {l}_mlp_out, embed,
            pos_embed, bias), then `ln_final_bias` = b_U[r] - b_U[r'] (the folded LayerNorm
            bias), so that the terms sum to the logit difference, which this script asserts.
  logit_diff  the model's own logit(r) - logit(r') at the last position.
"""

import torch

from patching_reference import DATASET, EOT, IOI_CLEAN, IOI_CORRUPT, TEMPLATE, spec

TOL = 1e-4


def reading(tl, tokens, r, rp, noise=None, positions=None):
    """One run's lens, DLA terms and logit difference, averaged over its rows."""
    if noise is not None:

        def hook(embed, hook):
            embed = embed.clone()
            embed[:, positions] += noise
            return embed

        tl.add_hook("hook_embed", hook)
    logits, cache = tl.run_with_cache(tokens)
    tl.reset_hooks()
    rows = torch.arange(tokens.shape[0])
    logit_diff = logits[rows, -1, r] - logits[rows, -1, rp]

    resid, streams = cache.accumulated_resid(layer=None, incl_mid=False, apply_ln=True, return_labels=True)
    lens = lambda ids: torch.einsum("sbtd,db->sbt", resid, tl.W_U[:, ids]) + tl.b_U[ids][None, :, None]
    lens_r, lens_rp = lens(r), lens(rp)
    # The last stream through the unembedding is the model's own logits.
    assert (lens_r[-1, :, -1] - lens_rp[-1, :, -1] - logit_diff).abs().max() < TOL

    stack, labels = cache.get_full_resid_decomposition(
        layer=-1, expand_neurons=False, pos_slice=-1, return_labels=True
    )
    attrs = cache.logit_attrs(stack, tokens=r, incorrect_tokens=rp, pos_slice=-1)  # [terms, rows]
    attrs = torch.cat([attrs, (tl.b_U[r] - tl.b_U[rp])[None]])
    labels = labels + ["ln_final_bias"]
    gap = (attrs.sum(0) - logit_diff).abs().max().item()
    assert gap < TOL, f"the direct terms miss the logit difference by {gap}"
    return streams, labels, {
        "lens_answer": lens_r.mean(1).tolist(),
        "lens_counter": lens_rp.mean(1).tolist(),
        "dla": attrs.mean(1).tolist(),
        "logit_diff": logit_diff.mean().item(),
    }


def case(tl, tok, name, model, prompts, corruption=None, noise=None, positions=None):
    enc = lambda text: [EOT] + tok(text)["input_ids"]
    ids = lambda word: torch.tensor([tok(w)["input_ids"][0] for w in word])
    r = ids([p["answer"] for p in prompts])
    rp = ids([p["counter_answer"] for p in prompts])
    clean = torch.tensor([enc(p["clean"]) for p in prompts])
    streams, labels, clean_run = reading(tl, clean, r, rp)
    if noise is None:
        corrupt = torch.tensor([enc(p["corrupted"]) for p in prompts])
        _, _, corrupt_run = reading(tl, corrupt, r, rp)
    else:
        n = noise.shape[0]
        _, _, corrupt_run = reading(tl, clean.repeat(n, 1), r.repeat(n), rp.repeat(n), noise, positions)
    entry = {
        "name": name,
        "model": model,
        "spec": spec(prompts, {"component": "resid_pre", "positions": "each"}, corruption=corruption,
                     model={"local": "tests/fixtures/models/tiny"} if model == "tiny" else {"embedded": model}),
        "streams": streams,
        "dla_labels": labels,
        "clean": clean_run,
        "corrupted": corrupt_run,
    }
    if noise is not None:
        entry["noise"] = noise.flatten().tolist()
        entry["noise_shape"] = list(noise.shape)
    print(f"{model} {name}: clean logit diff {clean_run['logit_diff']:.3f}, corrupted {corrupt_run['logit_diff']:.3f}")
    return entry


def ioi(io, s, s2):
    return TEMPLATE.format(io=io, s=s, s2=s2)


def build(tl, tok, model):
    """The lens cases of one model (TransformerLens with the LayerNorms folded)."""
    pair = {"clean": IOI_CLEAN, "corrupted": IOI_CORRUPT, "answer": " Mary", "counter_answer": " John"}
    dataset = [
        {"clean": ioi(io, s, s), "corrupted": ioi(io, s, io), "answer": f" {io}", "counter_answer": f" {s}"}
        for io, s in DATASET
    ]
    cases = [case(tl, tok, "ioi", model, [pair]), case(tl, tok, "dataset4", model, dataset)]
    if model == "tiny":
        # Gaussian noise on the names' token embeddings, 3 samples, exported for replay.
        positions = [2, 4, 10]
        clean_ids = [EOT] + tok(IOI_CLEAN)["input_ids"]
        sigma = tl.W_E[[clean_ids[p] for p in positions]].std().item()
        g = torch.Generator().manual_seed(7)
        noise = torch.randn(3, len(positions), tl.cfg.d_model, generator=g) * (3 * sigma)
        gn = {"method": "gn", "positions": positions, "scale": 3.0, "samples": 3}
        prompts = [{"clean": IOI_CLEAN, "answer": " Mary", "counter_answer": " John"}]
        cases.append(case(tl, tok, "gn", model, prompts, gn, noise, positions))
    return cases
