"""Reference patching grids from TransformerLens 3.9.0 for Patchbay's patching core.

Each case carries the Patchbay experiment spec it corresponds to (the JSON the CLI and share
links use), so the Rust tests run exactly that spec and compare grids within 1e-4. Grids come
from TransformerLens's own get_act_patch_* functions wherever one exists; windows, path patching
and attribution, which TransformerLens has no function for, are written here with its hooks.

Metric conventions (shared with crates/patching/src/metric.rs). For one run, with r the answer,
r' the counter-answer and P_cl the clean run's next-token distribution:
  raw value   prob: P(r)      logit_diff: logit(r) - logit(r')      kl: KL(P_cl || P)
  M           prob: P(r)      logit_diff: logit(r) - logit(r')      kl: -KL(P_cl || P)
  prob_diff (raw and M): P(R) - P(R'), the summed probabilities of two answer sets (Hanna et
              al.'s greater-than metric; R = {r} and R' = {r'} without sets)
  effect      M_patched - M_base, where the base run is the corrupted run when denoising and
              the clean run when noising; averaged over noise samples and prompts
  normalized  effect / (M_clean - M_corrupted)
"""

import torch
import transformer_lens.patching as tlp

EOT = 50256

IOI_CLEAN = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPT = "When Mary and John went to the store, Mary gave a drink to"

# A 4-prompt dataset from one template: IO and S names swapped in at the same positions.
DATASET = [
    ("Mary", "John"),
    ("Alice", "Bob"),
    ("Sarah", "Tom"),
    ("Anna", "David"),
]
TEMPLATE = "When {io} and {s} went to the store, {s2} gave a drink to"

TL_SWEEPS = {
    ("resid_pre", "each"): tlp.get_act_patch_resid_pre,
    ("resid_mid", "each"): tlp.get_act_patch_resid_mid,
    ("attn_out", "each"): tlp.get_act_patch_attn_out,
    ("mlp_out", "each"): tlp.get_act_patch_mlp_out,
    ("z", "all"): tlp.get_act_patch_attn_head_out_all_pos,
    ("z", "each"): tlp.get_act_patch_attn_head_out_by_pos,
    ("q", "all"): tlp.get_act_patch_attn_head_q_all_pos,
    ("q", "each"): tlp.get_act_patch_attn_head_q_by_pos,
    ("k", "all"): tlp.get_act_patch_attn_head_k_all_pos,
    ("k", "each"): tlp.get_act_patch_attn_head_k_by_pos,
    ("v", "all"): tlp.get_act_patch_attn_head_v_all_pos,
    ("v", "each"): tlp.get_act_patch_attn_head_v_by_pos,
    ("pattern", "all"): tlp.get_act_patch_attn_head_pattern_all_pos,
    ("pattern", "each"): tlp.get_act_patch_attn_head_pattern_by_pos,
    ("block_every", "each"): tlp.get_act_patch_block_every,
}


def raw_values(kind, last, r, rp, clean_lp, sets):
    """Per-row raw metric of last-position logits [B, V]; r, rp [B]; clean_lp [B, V]; sets: the
    0/1 masks of R and R' [B, V]."""
    lp = last.log_softmax(-1)
    rows = torch.arange(last.shape[0])
    if kind == "prob":
        return lp[rows, r].exp()
    if kind == "prob_diff":
        R, Rp = sets
        return (lp.exp() * R).sum(-1) - (lp.exp() * Rp).sum(-1)
    if kind == "logit_diff":
        return last[rows, r] - last[rows, rp]
    return (clean_lp.exp() * (clean_lp - lp)).sum(-1)


def to_m(kind, raw):
    return -raw if kind == "kl" else raw


class Setting:
    """The clean and corrupted runs of one experiment and the metric functions TransformerLens
    calls on patched logits."""

    def __init__(self, tl, clean_tokens, answers, counters, corrupt_tokens=None, noise=None, positions=None,
                 sets=None):
        self.tl = tl
        self.clean_tokens = clean_tokens  # [P, T]
        self.r = torch.tensor(answers)
        self.rp = torch.tensor(counters)
        # R and R' per prompt (token-id lists), {r} and {r'} by default, as 0/1 masks [P, V].
        sets = sets or [([a], [c]) for a, c in zip(answers, counters)]
        self.R = torch.zeros(len(sets), tl.cfg.d_vocab)
        self.Rp = torch.zeros(len(sets), tl.cfg.d_vocab)
        for i, (R, Rp) in enumerate(sets):
            self.R[i, R] = 1
            self.Rp[i, Rp] = 1
        self.noise, self.positions = noise, positions
        with torch.no_grad():
            clean_logits, self.clean_cache = tl.run_with_cache(clean_tokens)
            self.clean_last = clean_logits[:, -1]
            self.clean_lp = self.clean_last.log_softmax(-1)
            if noise is None:
                self.corrupt_tokens = corrupt_tokens
                corrupt_logits, self.corrupt_cache = tl.run_with_cache(corrupt_tokens)
            else:
                # GN: one prompt, n noise samples as a batch.
                self.corrupt_tokens = clean_tokens.repeat(noise.shape[0], 1)
                self.add_noise()
                corrupt_logits, self.corrupt_cache = tl.run_with_cache(self.corrupt_tokens)
                tl.reset_hooks(including_permanent=True)
            self.corrupt_last = corrupt_logits[:, -1]

    def add_noise(self):
        noise, positions = self.noise, self.positions

        def hook(embed, hook):
            embed = embed.clone()
            embed[:, positions] += noise
            return embed

        self.tl.add_hook("hook_embed", hook, is_permanent=True)

    def rows(self, batch):
        """Per-row answers, clean distributions and answer sets for a patched batch."""
        reps = batch // self.r.shape[0]
        sets = (self.R.repeat(reps, 1), self.Rp.repeat(reps, 1))
        return self.r.repeat(reps), self.rp.repeat(reps), self.clean_lp.repeat(reps, 1), sets

    def baselines(self, kind):
        """Mean raw values and per-prompt M of the clean and corrupted runs."""
        clean_raw = raw_values(kind, self.clean_last, *self.rows(self.clean_last.shape[0]))
        corrupt_raw = raw_values(kind, self.corrupt_last, *self.rows(self.corrupt_last.shape[0]))
        n = self.r.shape[0]
        corrupt_m = to_m(kind, corrupt_raw).reshape(-1, n).mean(0)  # mean over noise samples
        return clean_raw, corrupt_raw, to_m(kind, clean_raw), corrupt_m

    def metric(self, kind, mode, direction, normalize="ratio_of_means"):
        """The function of patched logits that TransformerLens sweeps call. Normalized over a
        batch of prompts, it is the ratio of means of the TransformerLens demos and of Wang et
        al. (the batch-mean effect over the batch-mean M_clean - M_corrupted), or with
        `normalize="per_prompt"` the mean of each prompt's own normalized effect."""
        _, _, clean_m, corrupt_m = self.baselines(kind)
        base = corrupt_m if direction == "denoising" else clean_m
        denom = clean_m - corrupt_m

        def metric(logits):
            last = logits[:, -1]
            raw = raw_values(kind, last, *self.rows(last.shape[0]))
            if mode == "raw":
                return raw.mean()
            reps = last.shape[0] // self.r.shape[0]
            m = to_m(kind, raw)
            if normalize == "per_prompt":
                return ((m - base.repeat(reps)) / denom.repeat(reps)).mean()
            return (m.mean() - base.mean()) / denom.mean()

        return metric

    def spans(self, kind):
        """Each prompt's M_clean - M_corrupted."""
        _, _, clean_m, corrupt_m = self.baselines(kind)
        return clean_m - corrupt_m

    def sweep_inputs(self, direction):
        if direction == "denoising":
            return self.corrupt_tokens, self.clean_cache
        return self.clean_tokens, self.corrupt_cache


def tl_grid(setting, component, positions, kind, mode, direction, normalize="ratio_of_means"):
    tokens, cache = setting.sweep_inputs(direction)
    if setting.noise is not None:
        setting.add_noise()
    metric = setting.metric(kind, mode, direction, normalize)
    grid = TL_SWEEPS[(component, positions)](setting.tl, tokens, cache, metric)
    setting.tl.reset_hooks(including_permanent=True)
    return grid


def window_layers(layer, size, n_layer):
    """ROME's window: `size` adjacent layers centred on `layer`, clipped at the ends."""
    return range(max(0, layer - size // 2), min(n_layer, layer - (-size // 2)))


def window_grid(setting, component, size, kind, mode, direction):
    """Patch `component` at every layer of the window around each layer, one position at a
    time (ROME's causal tracing with a window)."""
    tl = setting.tl
    tokens, cache = setting.sweep_inputs(direction)
    metric = setting.metric(kind, mode, direction)
    n_layer, n_pos = tl.cfg.n_layers, tokens.shape[1]
    grid = torch.zeros(n_layer, n_pos)
    for layer in range(n_layer):
        for pos in range(n_pos):

            def hook(act, hook, pos=pos):
                act = act.clone()
                act[:, pos] = cache[hook.name][:, pos]
                return act

            hooks = [(f"blocks.{l}.hook_{component}", hook) for l in window_layers(layer, size, n_layer)]
            with torch.no_grad():
                grid[layer, pos] = metric(tl.run_with_hooks(tokens, fwd_hooks=hooks))
    return grid


def path_grid(setting, receivers, kind, mode, direction):
    """Path patching (Wang et al.): for each sender head, run the base prompt with every head's
    output frozen to the base run except the sender, which takes the source run's output (MLPs
    recompute). To the logits: measure that run. To receiver heads' inputs: cache the receivers'
    q/k/v there, then run the base prompt with only those patched in."""
    tl = setting.tl
    tokens, source = setting.sweep_inputs(direction)
    base = setting.corrupt_cache if direction == "denoising" else setting.clean_cache
    metric = setting.metric(kind, mode, direction)
    n_layer, n_head = tl.cfg.n_layers, tl.cfg.n_heads
    grid = torch.zeros(n_layer, n_head)
    for sl in range(n_layer):
        for sh in range(n_head):

            def freeze(z, hook, sl=sl, sh=sh):
                z = base[hook.name].clone()
                if hook.name == f"blocks.{sl}.attn.hook_z":
                    z[:, :, sh] = source[hook.name][:, :, sh]
                return z

            frozen = [(f"blocks.{l}.attn.hook_z", freeze) for l in range(n_layer)]
            with torch.no_grad():
                if receivers == "logits":
                    grid[sl, sh] = metric(tl.run_with_hooks(tokens, fwd_hooks=frozen))
                    continue
                inp = receivers["input"]
                names = sorted({f"blocks.{l}.attn.hook_{inp}" for l, _ in receivers["heads"]})
                store = {}

                def keep(act, hook):
                    store[hook.name] = act.clone()

                tl.run_with_hooks(tokens, fwd_hooks=frozen + [(n, keep) for n in names])

                def patch(act, hook):
                    act = act.clone()
                    for l, h in receivers["heads"]:
                        if hook.name == f"blocks.{l}.attn.hook_{inp}":
                            act[:, :, h] = store[hook.name][:, :, h]
                    return act

                grid[sl, sh] = metric(tl.run_with_hooks(tokens, fwd_hooks=[(n, patch) for n in names]))
    return grid


def attribution_grid(setting, component, positions, kind, direction):
    """Attribution patching: (source - base) activation times the gradient of the normalized
    effect metric at the base run, summed over the patched entries."""
    tl = setting.tl
    tokens, source = setting.sweep_inputs(direction)
    metric = setting.metric(kind, "normalized", direction)
    acts = {}

    def keep(act, hook):
        act.retain_grad()
        acts[hook.name] = act

    names = [f"blocks.{l}.hook_{component}" if component in ("resid_pre", "resid_mid", "attn_out", "mlp_out")
             else f"blocks.{l}.attn.hook_{component}" for l in range(tl.cfg.n_layers)]
    with torch.enable_grad():
        logits = tl.run_with_hooks(tokens, fwd_hooks=[(n, keep) for n in names])
        metric(logits).backward()
    rows = []
    for name in names:
        delta = (source[name] - acts[name].detach()) * acts[name].grad
        delta = delta.sum(0)  # over batch rows (noise samples)
        if component in ("resid_pre", "resid_mid", "attn_out", "mlp_out"):
            rows.append(delta.sum(-1))  # [pos]
        elif positions == "all":
            rows.append(delta.sum((0, 2)))  # z: [pos, head, d_head] -> [head]
        else:
            rows.append(delta.sum(-1))  # [pos, head]
    tl.zero_grad(set_to_none=True)
    return torch.stack(rows)


def pick_answers(tl, tok, clean_ids, corrupt_ids=None, noise=None, positions=None):
    """Answers that make this random model's metrics informative: r among the clean run's top
    tokens and r' among the corrupted run's, chosen so that the logit difference moves most
    between the two runs (IOI names have probabilities near 1e-6 here, which would make every
    probability grid pass any tolerance)."""
    with torch.no_grad():
        clean = tl(torch.tensor([clean_ids]))[0, -1]
        if noise is None:
            corrupt = tl(torch.tensor([corrupt_ids]))[0, -1]
        else:
            def hook(embed, hook):
                embed = embed.clone()
                embed[:, positions] += noise
                return embed
            corrupt = tl.run_with_hooks(torch.tensor([clean_ids] * noise.shape[0]), fwd_hooks=[("hook_embed", hook)])[:, -1].mean(0)
    single = lambda i: tok(tok.decode([i]))["input_ids"] == [i]
    top = lambda logits: [i for i in torch.topk(logits, 30).indices.tolist() if single(i)][:10]
    best = max(
        ((r, rp) for r in top(clean) for rp in top(corrupt) if r != rp),
        key=lambda a: abs((clean[a[0]] - clean[a[1]]) - (corrupt[a[0]] - corrupt[a[1]])).item(),
    )
    return tok.decode([best[0]]), tok.decode([best[1]])


def answers_with_span(tl, tok, clean_ids, corrupt_ids, span):
    """Answers r, r' among the runs' top tokens whose logit-difference span LD_clean - LD_corrupted
    is closest to `span`: prompts whose denominators differ by a chosen factor or in sign."""
    with torch.no_grad():
        clean = tl(torch.tensor([clean_ids]))[0, -1]
        corrupt = tl(torch.tensor([corrupt_ids]))[0, -1]
    single = lambda i: tok(tok.decode([i]))["input_ids"] == [i]
    top = lambda logits: [i for i in torch.topk(logits, 60).indices.tolist() if single(i)][:25]
    d = lambda a: ((clean[a[0]] - clean[a[1]]) - (corrupt[a[0]] - corrupt[a[1]])).item()
    best = min(((r, rp) for r in top(clean) for rp in top(corrupt) if r != rp), key=lambda a: abs(d(a) - span))
    return tok.decode([best[0]]), tok.decode([best[1]]), d(best)


def spec(prompts, target, metric_kind="logit_diff", normalized=True, direction="denoising",
         corruption=None, window=None, seed=0, model=None):
    return {
        "version": 1,
        "model": model or {"local": "tests/fixtures/models/tiny"},
        "prepend_bos": True,
        "prompts": prompts,
        "corruption": corruption or {"method": "str"},
        "metric": {"kind": metric_kind, "normalized": normalized},
        "direction": direction,
        "target": target,
        "window": window,
        "seed": seed,
    }


def pair(clean, corrupt, answer, counter):
    return {"clean": clean, "corrupted": corrupt, "answer": answer, "counter_answer": counter}


def build(tl, tok, out_tensors, n_layer):
    """Every reference case: returns the case list; grids go into out_tensors."""
    enc = lambda text: [EOT] + tok(text)["input_ids"]
    ids = lambda word: tok(word)["input_ids"][0]
    cases = []

    def add(name, case_spec, grids, **extra):
        entry = {"name": name, "spec": case_spec, "grids": {}}
        for label, grid in grids.items():
            key = f"{name}.{label}"
            out_tensors[key] = grid.detach().float().contiguous()
            entry["grids"][label] = key
        entry.update(extra)
        cases.append(entry)

    def baselines(setting, kind):
        clean_raw, corrupt_raw, clean_m, corrupt_m = setting.baselines(kind)
        return {"clean_metric": clean_raw.mean().item(), "corrupted_metric": corrupt_raw.mean().item()}

    r, rp = pick_answers(tl, tok, enc(IOI_CLEAN), enc(IOI_CORRUPT))
    ioi = Setting(tl, torch.tensor([enc(IOI_CLEAN)]), [ids(r)], [ids(rp)], torch.tensor([enc(IOI_CORRUPT)]))
    prompts = [pair(IOI_CLEAN, IOI_CORRUPT, r, rp)]

    # Every TransformerLens sweep, under each metric: normalized LD, and raw P(r), LD and KL.
    for (component, positions) in TL_SWEEPS:
        target = {"component": component, "positions": positions}
        for kind in ["logit_diff", "prob", "kl"]:
            grids = {"raw": tl_grid(ioi, component, positions, kind, "raw", "denoising")}
            if kind == "logit_diff":
                grids["normalized"] = tl_grid(ioi, component, positions, kind, "normalized", "denoising")
            add(f"str.{component}.{positions}.{kind}", spec(prompts, target, kind), grids, **baselines(ioi, kind))

    # Noising: corrupted activations into the clean run.
    for component, positions in [("resid_pre", "each"), ("z", "all"), ("mlp_out", "each")]:
        target = {"component": component, "positions": positions}
        for kind in ["logit_diff", "kl"]:
            grids = {
                "raw": tl_grid(ioi, component, positions, kind, "raw", "noising"),
                "normalized": tl_grid(ioi, component, positions, kind, "normalized", "noising"),
            }
            add(f"noising.{component}.{positions}.{kind}", spec(prompts, target, kind, direction="noising"), grids,
                **baselines(ioi, kind))

    # Gaussian noise on the names' token embeddings, 3 samples, noise exported for replay.
    positions = [2, 4, 10]
    wte = tl.W_E.detach()
    clean_ids = enc(IOI_CLEAN)
    sigma = wte[[clean_ids[p] for p in positions]].std().item()
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(3, len(positions), tl.cfg.d_model, generator=g) * (3 * sigma)
    out_tensors["gn.noise"] = noise.contiguous()
    r, rp = pick_answers(tl, tok, clean_ids, noise=noise, positions=positions)
    gn = Setting(tl, torch.tensor([clean_ids]), [ids(r)], [ids(rp)], noise=noise, positions=positions)
    corruption = {"method": "gn", "positions": positions, "scale": 3.0, "samples": 3}
    gn_prompts = [{"clean": IOI_CLEAN, "answer": r, "counter_answer": rp}]
    for component, pos_mode in [("resid_pre", "each"), ("z", "all"), ("mlp_out", "each")]:
        target = {"component": component, "positions": pos_mode}
        for kind in ["logit_diff", "prob", "kl"]:
            grids = {"raw": tl_grid(gn, component, pos_mode, kind, "raw", "denoising")}
            if kind == "logit_diff":
                grids["normalized"] = tl_grid(gn, component, pos_mode, kind, "normalized", "denoising")
            add(f"gn.{component}.{pos_mode}.{kind}", spec(gn_prompts, target, kind, corruption=corruption), grids,
                noise="gn.noise", sigma=sigma, **baselines(gn, kind))

    # A window of 3 MLP layers per position, with the single-layer grid it is compared with.
    for kind in ["logit_diff", "prob"]:
        target = {"component": "mlp_out", "positions": "each"}
        mode = "normalized" if kind == "logit_diff" else "raw"
        grids = {
            mode: window_grid(ioi, "mlp_out", 3, kind, mode, "denoising"),
            "single_layer": tl_grid(ioi, "mlp_out", "each", kind, mode, "denoising"),
        }
        add(f"window3.mlp_out.{kind}", spec(prompts, target, kind, window={"size": 3}), grids, **baselines(ioi, kind))

    # A 4-prompt dataset: per-prompt grids, and the mean of each prompt's normalized grid (the
    # `per_prompt` rule) from one batched TransformerLens run.
    dataset = []
    for io, s in DATASET:
        clean, corrupt = TEMPLATE.format(io=io, s=s, s2=s), TEMPLATE.format(io=io, s=s, s2=io)
        dataset.append(pair(clean, corrupt, *pick_answers(tl, tok, enc(clean), enc(corrupt))))
    tokens = lambda key: torch.tensor([enc(p[key]) for p in dataset])
    batched = Setting(tl, tokens("clean"), [ids(p["answer"]) for p in dataset],
                      [ids(p["counter_answer"]) for p in dataset], tokens("corrupted"))
    for component, pos_mode in [("resid_pre", "each"), ("z", "all")]:
        target = {"component": component, "positions": pos_mode}
        per_prompt = []
        for p in dataset:
            one = Setting(tl, torch.tensor([enc(p["clean"])]), [ids(p["answer"])], [ids(p["counter_answer"])],
                          torch.tensor([enc(p["corrupted"])]))
            per_prompt.append(tl_grid(one, component, pos_mode, "logit_diff", "normalized", "denoising"))
        grids = {
            "normalized": tl_grid(batched, component, pos_mode, "logit_diff", "normalized", "denoising",
                                  "per_prompt"),
            "per_prompt": torch.stack(per_prompt),
        }
        case_spec = spec(dataset, target)
        case_spec["metric"]["normalize"] = "per_prompt"
        add(f"dataset4.{component}.{pos_mode}", case_spec, grids)

    # The ratio of means, the default: the batch-mean effect over the batch-mean denominator, as
    # the TransformerLens demos compute it, on the same prompts, on prompts whose denominators
    # differ tenfold, and on prompts whose denominators have mixed signs. Per-prompt values are
    # each prompt's effect over the shared denominator (they average to the grid).
    def rom_cases(name, prompts):
        batch = Setting(tl, torch.tensor([enc(p["clean"]) for p in prompts]), [ids(p["answer"]) for p in prompts],
                        [ids(p["counter_answer"]) for p in prompts], torch.tensor([enc(p["corrupted"]) for p in prompts]))
        spans = batch.spans("logit_diff")
        for component, pos_mode in [("resid_pre", "each"), ("z", "all")]:
            target = {"component": component, "positions": pos_mode}
            per_prompt = []
            for i, p in enumerate(prompts):
                one = Setting(tl, torch.tensor([enc(p["clean"])]), [ids(p["answer"])], [ids(p["counter_answer"])],
                              torch.tensor([enc(p["corrupted"])]))
                _, _, _, corrupt_m = one.baselines("logit_diff")
                raw = tl_grid(one, component, pos_mode, "logit_diff", "raw", "denoising")
                per_prompt.append((raw - corrupt_m[0]) / spans.mean())
            grids = {
                "normalized": tl_grid(batch, component, pos_mode, "logit_diff", "normalized", "denoising"),
                "raw": tl_grid(batch, component, pos_mode, "logit_diff", "raw", "denoising"),
                "per_prompt": torch.stack(per_prompt),
            }
            add(f"{name}.{component}.{pos_mode}", spec(prompts, target), grids, spans=spans.tolist(),
                **baselines(batch, "logit_diff"))

    rom_cases("dataset4rom", dataset)
    for name, targets in [("spans10x", [0.9, 0.12, 1.5, 0.8]), ("mixedsigns", [0.9, -1.1, 1.8, 0.9])]:
        chosen, spans = [], []
        for (io, s), span in zip(DATASET, targets):
            clean, corrupt = TEMPLATE.format(io=io, s=s, s2=s), TEMPLATE.format(io=io, s=s, s2=io)
            r, rp, d = answers_with_span(tl, tok, enc(clean), enc(corrupt), span)
            chosen.append(pair(clean, corrupt, r, rp))
            spans.append(d)
        if name == "spans10x":
            assert max(spans) >= 10 * min(spans) > 0, spans
        else:
            assert min(spans) < 0 < max(spans) and sum(spans) > 0, spans
        rom_cases(name, chosen)

    # Path patching from every sender head, to the logits and to the last layer's queries.
    receivers = {"heads": [[n_layer - 1, 0], [n_layer - 1, 1]], "input": "q"}
    for name, recv in [("logits", "logits"), ("q", receivers)]:
        for direction in ["noising", "denoising"]:
            target = {"component": "path", "receivers": recv}
            grids = {"normalized": path_grid(ioi, recv, "logit_diff", "normalized", direction)}
            add(f"path.{name}.{direction}", spec(prompts, target, direction=direction), grids)

    # Attribution patching next to exact patching.
    for component, pos_mode in [("resid_pre", "each"), ("z", "all"), ("mlp_out", "each")]:
        target = {"component": component, "positions": pos_mode}
        s = spec(prompts, target)
        s["attribution"] = True
        grids = {
            "normalized": tl_grid(ioi, component, pos_mode, "logit_diff", "normalized", "denoising"),
            "attribution": attribution_grid(ioi, component, pos_mode, "logit_diff", "denoising"),
        }
        add(f"attribution.{component}.{pos_mode}", s, grids)

    return cases


# Greater-than (Hanna et al.) on the model the app ships, which learned it: R = the two-digit year
# tokens after YY, R' = those up to YY; the corrupted start year is 1701.
GREATER_THAN = [(" war", 32), (" siege", 58), (" voyage", 45), (" famine", 71)]


def build_greater_than(tl, tok, out_tensors, n_layer):
    """Probability-difference grids (P(R) - P(R')) on a 4-prompt greater-than dataset."""
    enc = lambda text: [EOT] + tok(text)["input_ids"]
    ids = lambda word: tok(word)["input_ids"][0]
    prompt = lambda noun, yy: f"The{noun} lasted from the year 17{yy:02} to the year 17"
    years = [f"{y:02}" for y in range(100) if len(tok(f"{y:02}")["input_ids"]) == 1]
    dataset = []
    for noun, yy in GREATER_THAN:
        dataset.append({
            "clean": prompt(noun, yy), "corrupted": prompt(noun, 1),
            "answer": f"{yy + 1:02}", "counter_answer": f"{yy - 1:02}",
            "answer_set": [y for y in years if int(y) > yy],
            "counter_set": [y for y in years if int(y) <= yy],
        })
    tokens = lambda key: torch.tensor([enc(p[key]) for p in dataset])
    setting = Setting(tl, tokens("clean"), [ids(p["answer"]) for p in dataset],
                      [ids(p["counter_answer"]) for p in dataset], tokens("corrupted"),
                      sets=[([ids(y) for y in p["answer_set"]], [ids(y) for y in p["counter_set"]]) for p in dataset])
    cases = []
    for component, pos_mode in [("resid_pre", "each"), ("z", "all"), ("mlp_out", "each")]:
        name = f"greater_than4.{component}.{pos_mode}.prob_diff"
        grids = {}
        for mode in ["raw", "normalized"]:  # normalized per prompt, then averaged
            grids[mode] = f"{name}.{mode}"
            out_tensors[grids[mode]] = tl_grid(setting, component, pos_mode, "prob_diff", mode,
                                               "denoising").float().contiguous()
        clean_raw, corrupt_raw, _, _ = setting.baselines("prob_diff")
        cases.append({
            "name": name,
            "spec": spec(dataset, {"component": component, "positions": pos_mode}, "prob_diff",
                         model={"embedded": "patchbay-ioi"}),
            "grids": grids,
            "clean_metric": clean_raw.mean().item(),
            "corrupted_metric": corrupt_raw.mean().item(),
        })
    return cases
