//! The model the page ships, `models/patchbay-ioi` (trained in this repo by `patchbay train`),
//! has a real IOI circuit, and its `metrics.json` says what these tests measure:
//!
//! - held-out accuracy (seeds training never draws): IOI at least 95%;
//! - activation patching (z of each head, all positions, STR on S2, normalized logit
//!   difference, 20 prompts) localizes the effect to a few heads, which patched together
//!   restore most of the logit difference;
//! - other methods find the same heads: their attention carries IO's identity from IO to S2
//!   (the first-layer head, attending from S2) and from S2 to the final position (the later
//!   ones), path patching routes the first head's effect through the later heads' values at S2,
//!   and ablating the localized heads destroys the task while ablating every other head does
//!   not.
//!
//! Each test measures independently of `patchbay train`'s own code, through the library API.

use std::collections::BTreeSet;
use std::path::PathBuf;

use patchbay_model::burn::prelude::*;
use patchbay_model::{
    Activation, ActivationCache, EditOp, Gpt2, Gpt2Tokenizer, HookPoint, Hooks, Intervention, LogitsAt,
    Selection, backend, load_gpt2_dir,
};
use patchbay_patching::tasks::greater_than::{greater_than, gt_years};
use patchbay_patching::tasks::ioi::{IoiCorruption, IoiOptions, IoiPrompt, ioi, ioi_prompts};
use patchbay_patching::{ExperimentSpec, PromptPair, Results, RunOptions, run_experiment};
use serde_json::{Value, json};

const LOCALIZED_EFFECT: f64 = 0.2;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/patchbay-ioi")
}

fn load() -> (Gpt2, Gpt2Tokenizer, Value) {
    let dir = dir();
    let model = load_gpt2_dir(&dir, &backend::cpu().device, None).unwrap();
    let tokenizer = Gpt2Tokenizer::from_dir(&dir).unwrap();
    let metrics = serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    (model, tokenizer, metrics)
}

fn close(measured: f64, recorded: &Value, tol: f64, what: &str) {
    let recorded = recorded
        .as_f64()
        .unwrap_or_else(|| panic!("metrics.json has no {what}"));
    assert!(
        (measured - recorded).abs() <= tol,
        "{what}: measured {measured}, metrics.json says {recorded}"
    );
}

fn last_logits(model: &Gpt2, tokens: &[Vec<u32>], interventions: &[Intervention]) -> Vec<Vec<f32>> {
    let logits = model
        .forward(
            tokens,
            &mut Hooks::none().with_interventions(interventions),
            LogitsAt::Last,
        )
        .unwrap();
    let vocab = logits.dims()[2];
    let values: Vec<f32> = logits.into_data().try_into_vec_as::<f32>().unwrap();
    values.chunks(vocab).map(<[f32]>::to_vec).collect()
}

fn top(row: &[f32]) -> u32 {
    (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32
}

struct Encoded {
    tokens: Vec<u32>,
    io: u32,
    s: u32,
}

fn encode(tokenizer: &Gpt2Tokenizer, pairs: &[PromptPair]) -> Vec<Encoded> {
    pairs
        .iter()
        .map(|p| Encoded {
            tokens: tokenizer.encode(&p.clean, true).unwrap(),
            io: tokenizer.single_token(&p.answer).unwrap(),
            s: tokenizer
                .single_token(p.counter_answer.as_deref().unwrap())
                .unwrap(),
        })
        .collect()
}

/// Top-1 accuracy, batching prompts of equal length together.
fn accuracy(model: &Gpt2, prompts: &[Encoded]) -> f64 {
    let mut lengths: Vec<usize> = prompts.iter().map(|p| p.tokens.len()).collect();
    lengths.sort();
    lengths.dedup();
    let mut correct = 0;
    for len in lengths {
        let group: Vec<&Encoded> = prompts.iter().filter(|p| p.tokens.len() == len).collect();
        let tokens: Vec<Vec<u32>> = group.iter().map(|p| p.tokens.clone()).collect();
        for (row, p) in last_logits(model, &tokens, &[]).iter().zip(&group) {
            correct += (top(row) == p.io) as usize;
        }
    }
    correct as f64 / prompts.len() as f64
}

#[test]
fn held_out_ioi_accuracy_is_at_least_95_percent() {
    let (model, tokenizer, metrics) = load();
    // Seed 1: training draws only seeds with the top bit set.
    let pairs = ioi(&tokenizer, 600, 1, IoiCorruption::S2).unwrap();
    let acc = accuracy(&model, &encode(&tokenizer, &pairs));
    assert!(acc >= 0.95, "held-out IOI accuracy {acc}");
    close(acc, &metrics["held_out"]["ioi"]["accuracy"], 1e-4, "IOI accuracy");
    assert_eq!(metrics["held_out"]["ioi"]["seed"], 1);

    // Greater-than: the top token is a year (of those the generator uses) after the start year.
    let years = gt_years(&tokenizer).unwrap();
    let gt = greater_than(&tokenizer, 300, 1).unwrap();
    let mut correct = 0;
    for chunk in gt.chunks(100) {
        let tokens: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| tokenizer.encode(&p.clean, true).unwrap())
            .collect();
        for (row, pair) in last_logits(&model, &tokens, &[]).iter().zip(chunk) {
            let yy: u32 = pair.clean[pair.clean.find("year 17").unwrap() + 7..][..2]
                .parse()
                .unwrap();
            let text = tokenizer.decode(&[top(row)]).unwrap();
            let after = text.len() == 2 && text.parse::<u32>().is_ok_and(|y| y > yy && years.contains(&y));
            correct += after as usize;
        }
    }
    close(
        correct as f64 / gt.len() as f64,
        &metrics["held_out"]["greater_than"]["accuracy"],
        1e-4,
        "greater-than accuracy",
    );
}

/// The patching dataset: 20 prompts of the first template, S2 corrupted, seed 2.
fn circuit_prompts(tokenizer: &Gpt2Tokenizer, n: usize, seed: u64) -> Vec<IoiPrompt> {
    let options = IoiOptions::new(IoiCorruption::S2).with_template(0);
    ioi_prompts(tokenizer, n, seed, &options).unwrap()
}

fn patch_heads(model: &Gpt2, tokenizer: &Gpt2Tokenizer, prompts: &[IoiPrompt]) -> Results {
    let spec = ExperimentSpec::from_json(
        &json!({
            "version": 1, "model": {"embedded": "patchbay-ioi"}, "prepend_bos": true,
            "prompts": prompts.iter().map(|p| &p.pair).collect::<Vec<_>>(),
            "corruption": {"method": "str"},
            "metric": {"kind": "logit_diff", "normalized": true},
            "direction": "denoising",
            "target": {"component": "z", "positions": "all"},
        })
        .to_string(),
    )
    .unwrap();
    pollster::block_on(run_experiment(
        model,
        tokenizer,
        &spec,
        &RunOptions::default(),
        &mut |_: &patchbay_patching::Progress| true,
    ))
    .unwrap()
}

fn localized(results: &Results) -> Vec<(usize, usize)> {
    let n_head = results.grid.shape[1];
    (0..results.grid.values.len())
        .filter(|&i| results.grid.values[i] >= LOCALIZED_EFFECT)
        .map(|i| (i / n_head, i % n_head))
        .collect()
}

fn recorded_heads(metrics: &Value) -> Vec<(usize, usize)> {
    metrics["circuit"]["localized_heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_u64().unwrap() as usize, h[1].as_u64().unwrap() as usize))
        .collect()
}

/// Mean normalized logit difference when `heads` are patched together (z, every position) from
/// each clean run into its corrupted run.
fn joint_restoration(
    model: &Gpt2,
    prompts: &[Encoded],
    corrupted: &[Vec<u32>],
    heads: &[(usize, usize)],
) -> f64 {
    let layers: BTreeSet<usize> = heads.iter().map(|h| h.0).collect();
    let clean: Vec<Vec<u32>> = prompts.iter().map(|p| p.tokens.clone()).collect();
    let mut cache = ActivationCache::new(layers.iter().map(|&l| HookPoint::Z(l)));
    let clean_rows = last_logits_cached(model, &clean, &mut cache);
    let corrupted_rows = last_logits(model, corrupted, &[]);
    let interventions: Vec<Intervention> = layers
        .iter()
        .map(|&l| {
            let selected = heads.iter().filter(|h| h.0 == l).map(|h| h.1).collect();
            Intervention::new(
                HookPoint::Z(l),
                EditOp::Replace,
                Activation::PerHead(cache.per_head(HookPoint::Z(l)).unwrap()),
                &vec![Some(Selection::heads(selected)); prompts.len()],
            )
            .unwrap()
        })
        .collect();
    let patched_rows = last_logits(model, corrupted, &interventions);
    let ld = |rows: &[Vec<f32>]| -> f64 {
        rows.iter()
            .zip(prompts)
            .map(|(r, p)| (r[p.io as usize] - r[p.s as usize]) as f64)
            .sum::<f64>()
            / prompts.len() as f64
    };
    let (cl, co, pt) = (ld(&clean_rows), ld(&corrupted_rows), ld(&patched_rows));
    (pt - co) / (cl - co)
}

fn last_logits_cached(model: &Gpt2, tokens: &[Vec<u32>], cache: &mut ActivationCache) -> Vec<Vec<f32>> {
    let logits = model
        .forward(tokens, &mut Hooks::none().with_cache(cache), LogitsAt::Last)
        .unwrap();
    let vocab = logits.dims()[2];
    let values: Vec<f32> = logits.into_data().try_into_vec_as::<f32>().unwrap();
    values.chunks(vocab).map(<[f32]>::to_vec).collect()
}

#[test]
fn patching_localizes_the_effect_to_a_few_heads() {
    let (model, tokenizer, metrics) = load();
    let prompts = circuit_prompts(&tokenizer, 20, 2);
    let results = patch_heads(&model, &tokenizer, &prompts);
    let heads = localized(&results);
    assert_eq!(heads, recorded_heads(&metrics), "metrics.json's localized heads");
    let n_heads = results.grid.values.len();
    assert!(
        !heads.is_empty() && heads.len() * 2 <= n_heads,
        "{heads:?} of {n_heads}"
    );
    let recorded: Vec<f64> = metrics["circuit"]["grid"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    for (m, r) in results.grid.values.iter().zip(&recorded) {
        assert!((m - r).abs() < 1e-3, "grid: measured {m}, metrics.json {r}");
    }
    // The localized heads carry the effect: each other head restores less than the weakest of
    // them, and patched together they restore most of the logit difference.
    let weakest = heads
        .iter()
        .map(|h| results.grid.values[h.0 * results.grid.shape[1] + h.1])
        .fold(f64::INFINITY, f64::min);
    let strongest_other = (0..n_heads)
        .filter(|i| !heads.contains(&(i / results.grid.shape[1], i % results.grid.shape[1])))
        .map(|i| results.grid.values[i])
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(strongest_other < weakest, "{strongest_other} vs {weakest}");
    let encoded = encode(
        &tokenizer,
        &prompts.iter().map(|p| p.pair.clone()).collect::<Vec<_>>(),
    );
    let corrupted: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            tokenizer
                .encode(p.pair.corrupted.as_deref().unwrap(), true)
                .unwrap()
        })
        .collect();
    let joint = joint_restoration(&model, &encoded, &corrupted, &heads);
    assert!(joint >= 0.8, "the localized heads together restore only {joint}");
    eprintln!("localized {heads:?}; together they restore {joint:.3} of the logit difference");
}

/// Mean attention of `head` in `layer` from query position `from(prompt)` to `to(prompt)`.
fn attention(
    model: &Gpt2,
    prompts: &[Encoded],
    layer: usize,
    head: usize,
    from: impl Fn(&Encoded) -> usize,
    to: impl Fn(&Encoded) -> usize,
) -> f64 {
    let tokens: Vec<Vec<u32>> = prompts.iter().map(|p| p.tokens.clone()).collect();
    let mut cache = ActivationCache::new([HookPoint::Pattern(layer)]);
    last_logits_cached(model, &tokens, &mut cache);
    let pattern = cache.per_head(HookPoint::Pattern(layer)).unwrap(); // [batch, head, query, key]
    let [_, n_head, len, _] = pattern.dims();
    let values: Vec<f32> = pattern.into_data().try_into_vec_as::<f32>().unwrap();
    prompts
        .iter()
        .enumerate()
        .map(|(b, p)| values[((b * n_head + head) * len + from(p)) * len + to(p)] as f64)
        .sum::<f64>()
        / prompts.len() as f64
}

fn positions(p: &Encoded) -> (usize, usize, usize) {
    let io = p.tokens.iter().position(|&t| t == p.io).unwrap();
    let s: Vec<usize> = (0..p.tokens.len()).filter(|&i| p.tokens[i] == p.s).collect();
    (io, s[0], s[1])
}

#[test]
fn the_localized_heads_carry_io_from_io_through_s2_to_the_end() {
    let (model, tokenizer, metrics) = load();
    let heads = recorded_heads(&metrics);
    let prompts = circuit_prompts(&tokenizer, 20, 2);
    let encoded = encode(
        &tokenizer,
        &prompts.iter().map(|p| p.pair.clone()).collect::<Vec<_>>(),
    );
    let first = heads.iter().map(|h| h.0).min().unwrap();
    let attn = &metrics["circuit"]["attention"];
    let mut writers = Vec::new();
    let mut movers = Vec::new();
    for &(l, h) in &heads {
        let s2_to_io = attention(&model, &encoded, l, h, |p| positions(p).2, |p| positions(p).0);
        let end_to_s2 = attention(&model, &encoded, l, h, |p| p.tokens.len() - 1, |p| positions(p).2);
        let end_to_io = attention(&model, &encoded, l, h, |p| p.tokens.len() - 1, |p| positions(p).0);
        close(s2_to_io, &attn["s2_to_io"][l][h], 1e-3, "attention S2 -> IO");
        close(end_to_s2, &attn["end_to_s2"][l][h], 1e-3, "attention END -> S2");
        close(end_to_io, &attn["end_to_io"][l][h], 1e-3, "attention END -> IO");
        eprintln!("head {l}.{h}: S2->IO {s2_to_io:.3}, END->S2 {end_to_s2:.3}, END->IO {end_to_io:.3}");
        // Every localized head is on the path IO -> S2 -> END.
        if l == first {
            assert!(
                s2_to_io >= 0.5,
                "head {l}.{h} attends from S2 to IO only {s2_to_io}"
            );
            writers.push((l, h));
        } else {
            assert!(
                end_to_s2 >= 0.5,
                "head {l}.{h} attends from END to S2 only {end_to_s2}"
            );
            movers.push((l, h));
        }
    }
    assert!(
        !writers.is_empty() && !movers.is_empty(),
        "{writers:?} {movers:?}"
    );

    // Path patching: the first-layer heads act through the later heads' values at S2, not
    // through their queries at END.
    let composition = &metrics["circuit"]["composition"];
    for &(l, h) in &writers {
        let v = composition["v_at_s2"][l][h].as_f64().unwrap();
        let q = composition["q_at_end"][l][h].as_f64().unwrap();
        assert!(
            v >= 0.5 && q.abs() < 0.1,
            "head {l}.{h}: through values {v}, queries {q}"
        );
    }
    let receivers: Vec<[usize; 2]> = movers.iter().map(|h| [h.0, h.1]).collect();
    assert_eq!(composition["receivers"], json!(receivers));
    let s2 = positions(&encoded[0]).2;
    let spec = ExperimentSpec::from_json(
        &json!({
            "version": 1, "model": {"embedded": "patchbay-ioi"}, "prepend_bos": true,
            "prompts": prompts.iter().map(|p| &p.pair).collect::<Vec<_>>(),
            "corruption": {"method": "str"},
            "metric": {"kind": "logit_diff", "normalized": true},
            "target": {"component": "path", "receivers": {"heads": receivers, "input": "v", "positions": [s2]}},
        })
        .to_string(),
    )
    .unwrap();
    let path = pollster::block_on(run_experiment(
        &model,
        &tokenizer,
        &spec,
        &RunOptions::default(),
        &mut |_: &patchbay_patching::Progress| true,
    ))
    .unwrap();
    let n_head = model.config.n_head;
    for &(l, h) in &writers {
        close(
            path.grid.values[l * n_head + h],
            &composition["v_at_s2"][l][h],
            1e-3,
            "path patching into the movers' values",
        );
    }
}

/// Held-out accuracy and mean IO logit on 200 prompts of the patching template with `heads`
/// replaced at `hook_z` by their mean over the prompts (or by zero).
fn ablate(model: &Gpt2, prompts: &[Encoded], heads: &[(usize, usize)], zero: bool) -> (f64, f64) {
    let tokens: Vec<Vec<u32>> = prompts.iter().map(|p| p.tokens.clone()).collect();
    let layers: BTreeSet<usize> = heads.iter().map(|h| h.0).collect();
    let mut cache = ActivationCache::new(layers.iter().map(|&l| HookPoint::Z(l)));
    last_logits_cached(model, &tokens, &mut cache);
    let interventions: Vec<Intervention> = layers
        .iter()
        .map(|&l| {
            let z = cache.per_head(HookPoint::Z(l)).unwrap();
            let values = if zero {
                Tensor::zeros([1, z.dims()[1], z.dims()[2], z.dims()[3]], &z.device())
            } else {
                z.mean_dim(0)
            };
            let selected = heads.iter().filter(|h| h.0 == l).map(|h| h.1).collect();
            Intervention::new(
                HookPoint::Z(l),
                EditOp::Replace,
                Activation::PerHead(values),
                &vec![Some(Selection::heads(selected)); prompts.len()],
            )
            .unwrap()
        })
        .collect();
    let rows = last_logits(model, &tokens, &interventions);
    let n = prompts.len() as f64;
    let acc = rows.iter().zip(prompts).filter(|(r, p)| top(r) == p.io).count() as f64 / n;
    let io = rows
        .iter()
        .zip(prompts)
        .map(|(r, p)| r[p.io as usize] as f64)
        .sum::<f64>()
        / n;
    (acc, io)
}

#[test]
fn ablating_the_localized_heads_destroys_the_task_and_ablating_the_others_does_not() {
    let (model, tokenizer, metrics) = load();
    let heads = recorded_heads(&metrics);
    let prompts = circuit_prompts(&tokenizer, 200, 1);
    let encoded = encode(
        &tokenizer,
        &prompts.iter().map(|p| p.pair.clone()).collect::<Vec<_>>(),
    );
    let others: Vec<(usize, usize)> = (0..model.config.n_layer)
        .flat_map(|l| (0..model.config.n_head).map(move |h| (l, h)))
        .filter(|h| !heads.contains(h))
        .collect();
    let ablation = &metrics["circuit"]["ablation"];
    let (base, base_io) = ablate(&model, &encoded, &[], false);
    let (mean, mean_io) = ablate(&model, &encoded, &heads, false);
    let (zero, _) = ablate(&model, &encoded, &heads, true);
    let (control, _) = ablate(&model, &encoded, &others, false);
    eprintln!(
        "accuracy {base}; localized heads mean-ablated {mean}, zero-ablated {zero}; the {} others mean-ablated {control}",
        others.len()
    );
    assert!(base >= 0.95, "{base}");
    assert!(
        mean <= 0.5 && zero <= 0.5,
        "mean-ablated {mean}, zero-ablated {zero}"
    );
    assert!(control >= 0.9, "ablating the other heads leaves {control}");
    // The circuit writes IO: without it, IO's logit falls most of the way.
    assert!(mean_io < base_io / 2.0, "IO logit {base_io} -> {mean_io}");
    close(base, &ablation["none"]["accuracy"], 1e-4, "accuracy");
    close(
        mean,
        &ablation["localized_mean"]["accuracy"],
        1e-4,
        "mean-ablated accuracy",
    );
    close(
        zero,
        &ablation["localized_zero"]["accuracy"],
        1e-4,
        "zero-ablated accuracy",
    );
    close(
        control,
        &ablation["others_mean"]["accuracy"],
        1e-4,
        "control accuracy",
    );
}

#[test]
fn the_shipped_files_are_a_small_hub_checkpoint() {
    let dir = dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "circuits.json",
            "config.json",
            "metrics.json",
            "model.safetensors",
            "tokenizer.json"
        ]
    );
    let size = |name: &str| std::fs::metadata(dir.join(name)).unwrap().len();
    let shipped = size("config.json") + size("model.safetensors") + size("tokenizer.json");
    assert!(shipped <= 10_000_000, "{shipped} bytes");
    // F16 weights, GPT-2's keys, GPT-2's tokenizer.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(
        file.tensors()
            .iter()
            .all(|(_, t)| t.dtype() == safetensors::Dtype::F16)
    );
    assert!(file.names().contains(&"h.0.attn.c_attn.weight"));
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/tiny/tokenizer.json");
    assert_eq!(
        std::fs::read(dir.join("tokenizer.json")).unwrap(),
        std::fs::read(fixture).unwrap()
    );
}
