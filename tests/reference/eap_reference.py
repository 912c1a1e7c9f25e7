#!/usr/bin/env python3
"""Reference edge attribution patching (EAP), EAP-IG and exact edge-level circuit runs for
crates/patching/src/circuit, from TransformerLens 4.3.0 (tests/reference/requirements-eap.txt).

Writes tests/fixtures/reference/eap.json for crates/patching/tests/circuit.rs.

- EAP is TransformerLens 4.x's own: `attribution_patch(model, clean, corrupt, metric,
  EdgeAttributionConfig(granularity="edge"))` from transformer_lens.tools.analysis
  .attribution_patching, on a `TransformerBridge` booted from the checkpoint's folder. Its
  graph has the same nodes and edges as Patchbay's at every position separately
  (`Node(kind, position, layer, head)`, writer and reader at one position), and its embedding
  writer is `hook_embed` (positions are the same in both runs, so its delta is Patchbay's
  input writer's). Patchbay's edge is TransformerLens's summed over positions; this script
  writes that sum, averaged over the prompt pairs as `attribution_patch` averages a batch.
- EAP-IG is `NotImplementedError` in TransformerLens 4.3.0 (`ig_steps > 1`), so it is written
  here with PyTorch autograd through the same Bridge and hooks: the token embedding
  (`hook_embed`) of the corrupted run replaced by `corrupt + (k/m)(clean − corrupt)` for
  k = 0 … m − 1, the gradient at every reader (`hook_q_input`, `hook_k_input`, `hook_v_input`,
  `hook_mlp_in`, the last `hook_resid_post`) averaged over the m points, times the writers'
  clean-minus-corrupt delta (`hook_embed`, `attn.hook_result`, `hook_mlp_out`). With m = 1 this
  is EAP, which the script asserts against `attribution_patch`.
- EAP with AtP*'s QK fix (Kramár et al. 2024) for the edges into heads' queries and keys is
  not in TransformerLens either, so it is written here on the same Bridge with the model's own
  forward pass: for an edge u -> a_l.h_j<q> (or <k>) and a position p, the corrupted run is run
  again with the writer's clean-minus-corrupt delta at p added to that head's
  `attn.hook_q_input` (`hook_k_input`) at p alone, the layer's `attn.hook_pattern` is read, and
  the score is (pattern − corrupted pattern) · ∂M/∂pattern at the corrupted run, summed over p
  (every writer and position one row of a batch). The script checks it against
  `attribution_patch`: with the delta scaled by ±ε its central difference over 2ε is EAP.
- Exact circuits are TransformerLens 4.x's `faithfulness(...)` (every edge outside the circuit
  fed its writer's corrupted contribution, at every position), for the top k edges of the EAP
  ranking: the circuit's metric per prompt.

Usage: python tests/reference/eap_reference.py    (about a minute on a CPU)
"""

import json
import os
from importlib.metadata import version
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformer_lens import TransformerBridge
from transformer_lens.tools.analysis import attribution_patching as ap

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tests/fixtures/models/tiny"
OUT = ROOT / "tests/fixtures/reference/eap.json"

# The 4-prompt IOI dataset of patching_reference.py: one template, names swapped in.
DATASET = [("Mary", "John"), ("Alice", "Bob"), ("Sarah", "Tom"), ("Anna", "David")]
TEMPLATE = "When {io} and {s} went to the store, {s2} gave a drink to"
IG_STEPS = 5
CIRCUIT_SIZES = [5, 20, 100]
# The QK fix's check against EAP: the central difference of the score with the delta scaled.
EPSILON = 1e-2


def writer_name(node):
    if node.kind == "embed":
        return "input"
    if node.kind == "attn_head_out":
        return f"a{node.layer}.h{node.head}"
    return f"m{node.layer}"


def reader_name(node):
    kind = node.kind
    if kind in ("q_input", "k_input", "v_input"):
        return f"a{node.layer}.h{node.head}<{kind[0]}>"
    if kind == "mlp_in":
        return f"m{node.layer}"
    return "logits"


def edge_name(writer, reader):
    return f"{writer_name(writer)}->{reader_name(reader)}"


def summed(edge_scores):
    """TransformerLens's per-position edge scores summed over positions, by Patchbay's name."""
    out = {}
    for (w, r), v in edge_scores.items():
        name = edge_name(w, r)
        out[name] = out.get(name, 0.0) + float(v)
    return out


def eap_ig(model, clean, corrupt, metric, steps):
    """EAP-IG of one pair, summed over positions: (clean − corrupt) writer delta times the
    reader gradient averaged over `steps` points from the corrupted input toward the clean."""
    n_layers = model.cfg.n_layers
    names = ap._edge_hook_names(n_layers)
    writers = ap._writer_hook_names(n_layers)
    with ap._edge_hook_flags(model):
        clean_w = ap.capture_writer_outputs(model, clean, names_filter=writers)
        corrupt_w = ap.capture_writer_outputs(model, corrupt, names_filter=writers)
        clean_embed, corrupt_embed = clean_w["hook_embed"], corrupt_w["hook_embed"]
        grads = {}
        for k in range(steps):
            alpha = k / steps

            def interpolate(embed, hook, alpha=alpha):
                return (corrupt_embed + alpha * (clean_embed - corrupt_embed)).detach().requires_grad_(True)

            with model.hooks(fwd_hooks=[("hook_embed", interpolate)]):
                cache = ap.cache_activation_and_gradient(model, corrupt, metric, names_filter=names)
            for name, g in cache.gradients.items():
                if g is not None:
                    grads[name] = grads.get(name, 0) + g / steps
        edges = ap.enumerate_edges(model, cache)
    scores = {}
    for w, r in edges:
        delta = clean_w[ap._writer_hook_name(w)] - corrupt_w[ap._writer_hook_name(w)]
        d = delta[0, r.position, w.head] if w.kind == "attn_head_out" else delta[0, r.position]
        g = grads[r.hook_name]
        g = g[0, r.position, r.head] if r.kind in ("q_input", "k_input", "v_input") else g[0, r.position]
        value = d @ g
        name = edge_name(w, r)
        scores[name] = scores.get(name, 0.0) + float(value)
    return scores


def writer_deltas(model, clean_w, corrupt_w):
    """Every writer's clean-minus-corrupt output in Patchbay's order (input, then per layer its
    heads and its MLP), `[writers, pos, d_model]`, with their names."""
    names = ["input"]
    deltas = [(clean_w["hook_embed"] - corrupt_w["hook_embed"])[0]]
    for layer in range(model.cfg.n_layers):
        result = f"blocks.{layer}.attn.hook_result"
        for h in range(model.cfg.n_heads):
            names.append(f"a{layer}.h{h}")
            deltas.append((clean_w[result] - corrupt_w[result])[0, :, h])
        mlp = f"blocks.{layer}.hook_mlp_out"
        names.append(f"m{layer}")
        deltas.append((clean_w[mlp] - corrupt_w[mlp])[0])
    return names, torch.stack(deltas)


def qk_fixed(model, clean, corrupt, metric, scale=1.0):
    """AtP*'s QK fix for one pair: every edge into a head's query or key, summed over positions,
    scored as the exact change of that head's attention pattern when the edge alone takes its
    clean value at one position, times ∂M/∂pattern at the corrupted run. `scale` multiplies
    the delta (for the check against EAP)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    writers = ap._writer_hook_names(n_layers)
    patterns = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    scores = {}
    with ap._edge_hook_flags(model):
        clean_w = ap.capture_writer_outputs(model, clean, names_filter=writers)
        corrupt_w = ap.capture_writer_outputs(model, corrupt, names_filter=writers)
        cache = ap.cache_activation_and_gradient(model, corrupt, metric, names_filter=patterns)
        names, deltas = writer_deltas(model, clean_w, corrupt_w)
        n_pos = corrupt.shape[1]
        for layer in range(n_layers):
            upstream = 1 + layer * (n_heads + 1)
            # Row u · n_pos + p: writer u's delta at position p alone.
            rows = upstream * n_pos
            position = torch.arange(rows) % n_pos
            delta = scale * deltas[:upstream].reshape(rows, -1)
            base = cache.activations[patterns[layer]][0]
            grad = cache.gradients[patterns[layer]][0]
            for h in range(n_heads):
                for kind in ("q", "k"):

                    def add(x, hook, h=h):
                        x = x.clone()
                        x[torch.arange(rows), position, h] += delta
                        return x

                    seen = {}

                    def grab(pattern, hook):
                        seen["pattern"] = pattern.detach()

                    hooks = [(f"blocks.{layer}.attn.hook_{kind}_input", add), (patterns[layer], grab)]
                    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
                        model(corrupt.repeat(rows, 1))
                    change = seen["pattern"][:, h] - base[h]
                    per_writer = (change * grad[h]).sum((1, 2)).reshape(upstream, n_pos).sum(1)
                    for u in range(upstream):
                        scores[f"{names[u]}->a{layer}.h{h}<{kind}>"] = float(per_writer[u])
    return scores


def main():
    start = time.time()
    model = TransformerBridge.boot_transformers(str(ROOT / MODEL))
    model.eval()
    pairs = []
    for io, s in DATASET:
        clean = TEMPLATE.format(io=io, s=s, s2=s)
        corrupted = TEMPLATE.format(io=io, s=s, s2=io)
        pairs.append({"clean": clean, "corrupted": corrupted, "answer": f" {io}", "counter_answer": f" {s}"})
    eap, ig, eap1, qk, slope = {}, {}, {}, {}, {}
    clean_m, corrupted_m = [], []
    inputs = []
    timing = {}
    for p in pairs:
        clean = model.to_tokens(p["clean"], prepend_bos=True)
        corrupt = model.to_tokens(p["corrupted"], prepend_bos=True)
        r, rp = model.to_single_token(p["answer"]), model.to_single_token(p["counter_answer"])

        def metric(logits, r=r, rp=rp):
            return logits[0, -1, r] - logits[0, -1, rp]

        inputs.append((clean, corrupt, metric))
        with torch.no_grad():
            clean_m.append(float(metric(model(clean))))
            corrupted_m.append(float(metric(model(corrupt))))
        t = time.time()
        result = ap.attribution_patch(model, clean, corrupt, metric, ap.EdgeAttributionConfig(granularity="edge"))
        timing["eap"] = timing.get("eap", 0) + time.time() - t
        for name, v in summed(result.edge_scores).items():
            eap[name] = eap.get(name, 0.0) + v / len(pairs)
        t = time.time()
        for name, v in eap_ig(model, clean, corrupt, metric, IG_STEPS).items():
            ig[name] = ig.get(name, 0.0) + v / len(pairs)
        timing["eap_ig"] = timing.get("eap_ig", 0) + time.time() - t
        for name, v in eap_ig(model, clean, corrupt, metric, 1).items():
            eap1[name] = eap1.get(name, 0.0) + v / len(pairs)
        t = time.time()
        for name, v in qk_fixed(model, clean, corrupt, metric).items():
            qk[name] = qk.get(name, 0.0) + v / len(pairs)
        timing["eap_qk_fix"] = timing.get("eap_qk_fix", 0) + time.time() - t
        up = qk_fixed(model, clean, corrupt, metric, EPSILON)
        down = qk_fixed(model, clean, corrupt, metric, -EPSILON)
        for name in up:
            slope[name] = slope.get(name, 0.0) + (up[name] - down[name]) / (2 * EPSILON) / len(pairs)
    largest = max(abs(v) for v in eap.values())
    gap = max(abs(eap1[k] - eap[k]) for k in eap)
    assert gap < 1e-5 * largest, f"the hand-written EAP-IG at one step misses EAP by {gap}"
    gap = max(abs(slope[k] - eap[k]) for k in slope)
    assert gap < 1e-3 * largest, f"the QK fix's slope at zero misses EAP by {gap}"
    # Edges not into a query or key keep their EAP score.
    qk_fix = {k: qk.get(k, v) for k, v in eap.items()}
    moved = max(abs(qk_fix[k] - eap[k]) for k in qk)
    print(f"QK fix: {len(qk)} edges into queries and keys, slope at zero within {gap:.2e} of EAP, "
          f"largest change {moved:.4g}")

    # Exact circuits: the top k edges of TransformerLens's EAP, at every position.
    ranking = sorted(eap, key=lambda k: -abs(eap[k]))
    circuits = []
    for size in CIRCUIT_SIZES:
        kept = set(ranking[:size])
        m = []
        for clean, corrupt, metric in inputs:
            with ap._edge_hook_flags(model):
                cache = ap.cache_activation_and_gradient(
                    model, corrupt, metric, names_filter=ap._edge_hook_names(model.cfg.n_layers), compute_gradient=False
                )
                edges = ap.enumerate_edges(model, cache)
            circuit = [(w, r) for w, r in edges if edge_name(w, r) in kept]
            f = ap.faithfulness(model, clean, corrupt, metric, circuit)
            m.append(f.corrupt_metric + f.recovered * (f.full_metric - f.corrupt_metric))
        circuits.append({"edges": ranking[:size], "m": m})

    spec = {
        "version": 1,
        "model": {"local": MODEL},
        "prompts": pairs,
        "corruption": {"method": "str"},
        "metric": {"kind": "logit_diff"},
        "target": {"component": "z", "positions": "all", "heads": "each"},
        "circuit": {"method": "eap_ig", "ig_steps": IG_STEPS},
    }
    out = {
        "source": f"tests/reference/eap_reference.py, TransformerLens {version('transformer_lens')}, torch {torch.__version__}",
        "model": MODEL,
        "spec": spec,
        "clean_m": clean_m,
        "corrupted_m": corrupted_m,
        "eap": eap,
        "eap_ig": {"steps": IG_STEPS, "scores": ig},
        "eap_qk_fix": qk_fix,
        "circuits": circuits,
        "seconds": {k: round(v, 3) for k, v in timing.items()},
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT} ({len(eap)} edges, largest |EAP| {largest:.4g}) in {time.time() - start:.1f} s; {timing}")


if __name__ == "__main__":
    main()
