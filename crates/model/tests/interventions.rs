//! The engine patching drives: interventions over a batch of variants, forward passes that start
//! at a layer from a residual stream and reuse cached keys and values for a prefix, and logits at
//! the last position only. Each is checked against the plain forward pass it must equal.

mod common;

use common::*;
use patchbay_model::backend;
use patchbay_model::burn::prelude::*;
use patchbay_model::{
    Activation, ActivationCache, EditOp, Entry, Gpt2, Gpt2Tokenizer, HookPoint, Hooks, Intervention,
    LogitsAt, ModelError, Prefix, Selection, load_gpt2_dir,
};

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";

fn setup() -> (Gpt2, Vec<u32>, Vec<u32>) {
    let cpu = backend::cpu();
    let dir = model_dir("tiny");
    let model = load_gpt2_dir(&dir, &cpu.device, None).unwrap();
    let tok = Gpt2Tokenizer::from_dir(&dir).unwrap();
    (
        model,
        tok.encode(CLEAN, true).unwrap(),
        tok.encode(CORRUPT, true).unwrap(),
    )
}

fn last_logits(t: Tensor<3>) -> Vec<Vec<f32>> {
    let [batch, len, vocab] = t.dims();
    let v: Vec<f32> = t
        .narrow(1, len - 1, 1)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    v.chunks(vocab).map(<[f32]>::to_vec).collect::<Vec<_>>()[..batch].to_vec()
}

fn run_cached(model: &Gpt2, tokens: &[u32]) -> (ActivationCache, Vec<f32>) {
    let mut cache = ActivationCache::new(HookPoint::all(model.config.n_layer));
    let logits = model
        .forward(
            &[tokens.to_vec()],
            &mut Hooks::none().with_cache(&mut cache),
            LogitsAt::All,
        )
        .unwrap();
    (cache, last_logits(logits).remove(0))
}

#[test]
fn last_position_logits_equal_the_last_row_of_all() {
    let (model, clean, _) = setup();
    let all = last_logits(
        model
            .forward(&[clean.clone()], &mut Hooks::none(), LogitsAt::All)
            .unwrap(),
    );
    let last = model
        .forward(&[clean], &mut Hooks::none(), LogitsAt::Last)
        .unwrap();
    assert_eq!(last.dims()[1], 1);
    let err = max_abs_diff(&all[0], &last_logits(last)[0]);
    assert!(err <= 1e-5, "{err:e}");
}

#[test]
fn a_cache_records_only_what_was_asked() {
    let (model, clean, _) = setup();
    let mut cache = ActivationCache::new([HookPoint::Z(1), HookPoint::ResidPre(2)]);
    model
        .forward(
            &[clean],
            &mut Hooks::none().with_cache(&mut cache),
            LogitsAt::Last,
        )
        .unwrap();
    assert_eq!(cache.hooks().count(), 2);
    assert_eq!(cache.get(HookPoint::Z(1)).unwrap().dims(), vec![1, 15, 4, 4]);
    let err = cache.get(HookPoint::Q(0)).unwrap_err();
    assert!(err.to_string().contains("blocks.0.attn.hook_q"), "{err}");
}

/// Starting at any layer from the cached residual stream, with or without a cached prefix of
/// keys and values, reproduces the full forward pass.
#[test]
fn forward_from_a_layer_with_a_prefix_equals_the_full_pass() {
    let (model, clean, _) = setup();
    let (cache, full) = run_cached(&model, &clean);
    let n_layer = model.config.n_layer;
    for layer in 0..n_layer {
        for prefix_len in [0, 1, 7, 14] {
            let resid = cache.stream(HookPoint::ResidPre(layer)).unwrap();
            let resid = resid.narrow(1, prefix_len, clean.len() - prefix_len);
            let prefix = Prefix {
                len: prefix_len,
                kv: (0..n_layer)
                    .map(|l| {
                        let k = cache.per_head(HookPoint::K(l)).unwrap();
                        let v = cache.per_head(HookPoint::V(l)).unwrap();
                        (l >= layer && prefix_len > 0)
                            .then(|| (k.narrow(1, 0, prefix_len), v.narrow(1, 0, prefix_len)))
                    })
                    .collect(),
            };
            let prefix = (prefix_len > 0).then_some(&prefix);
            let logits = model
                .forward_from(layer, resid, prefix, &mut Hooks::none(), LogitsAt::Last)
                .unwrap();
            let err = max_abs_diff(&last_logits(logits)[0], &full);
            assert!(err <= 1e-5, "layer {layer} prefix {prefix_len}: {err:e}");
        }
    }
}

/// The keys and values of a cached run's first `offset` positions, at every layer.
fn cached_prefix(cache: &ActivationCache, n_layer: usize, offset: usize) -> Prefix {
    Prefix {
        len: offset,
        kv: (0..n_layer)
            .map(|l| {
                let cut = |hook| cache.per_head(hook).unwrap().narrow(1, 0, offset);
                Some((cut(HookPoint::K(l)), cut(HookPoint::V(l))))
            })
            .collect(),
    }
}

/// Head 1 at two positions after the prefix.
fn z_selection() -> Selection {
    Selection {
        positions: Some(vec![10, 11]),
        heads: Some(vec![1]),
    }
}

/// A pass whose rows enter at different layers (with a shared prefix, and interventions built
/// for the rows each hook sees) equals each row's own pass from its layer; entries out of order
/// or past the last layer are errors, not panics.
#[test]
fn rows_entering_at_their_layers_equal_a_pass_from_each() {
    let (model, clean, corrupt) = setup();
    let (clean_cache, _) = run_cached(&model, &clean);
    let (corrupt_cache, _) = run_cached(&model, &corrupt);
    let n_layer = model.config.n_layer;
    assert!(n_layer >= 3, "the test needs three layers");
    let offset = 7;
    let len = corrupt.len();
    let prefix = cached_prefix(&corrupt_cache, n_layer, offset);
    let resid = |l: usize, rows: usize| {
        corrupt_cache
            .stream(HookPoint::ResidPre(l))
            .unwrap()
            .narrow(1, offset, len - offset)
            .repeat_dim(0, rows)
    };
    // Rows: 0 enters at layer 0, 1 and 2 at layer 1, 3 at layer 2.
    let entered = [0, 1, 1, 2];
    let resid_edit = |rows: &[usize]| -> Vec<Option<Selection>> {
        (0..entered.len())
            .filter(|&r| entered[r] <= 2)
            .map(|r| rows.contains(&r).then(|| Selection::positions(vec![10])))
            .collect()
    };
    let z_edit = |rows: &[usize]| -> Vec<Option<Selection>> {
        (0..entered.len())
            .filter(|&r| entered[r] <= 1)
            .map(|r| rows.contains(&r).then(z_selection))
            .collect()
    };
    let replace = |hook: HookPoint, selections: &[Option<Selection>]| {
        Intervention::new(
            hook,
            EditOp::Replace,
            clean_cache.get(hook).unwrap().clone(),
            selections,
        )
        .unwrap()
    };
    let (resid_rows, z_rows) = ([2, 3], [0, 1]);
    let stacked = [
        replace(HookPoint::ResidPre(2), &resid_edit(&resid_rows)),
        replace(HookPoint::Z(1), &z_edit(&z_rows)),
    ];
    let logits = model
        .forward_stacked(
            vec![
                (Entry::resid_pre(0), resid(0, 1)),
                (Entry::resid_pre(1), resid(1, 2)),
                (Entry::resid_pre(2), resid(2, 1)),
            ],
            Some(&prefix),
            &mut Hooks::none().with_interventions(&stacked),
            LogitsAt::Last,
        )
        .unwrap();
    let stacked = last_logits(logits);
    assert_eq!(stacked.len(), entered.len());
    for (row, &layer) in entered.iter().enumerate() {
        // The same edits for this row alone: a one-row pass from its layer.
        let mut alone: Vec<Intervention> = Vec::new();
        if resid_rows.contains(&row) {
            alone.push(replace(
                HookPoint::ResidPre(2),
                &[Some(Selection::positions(vec![10]))],
            ));
        }
        if z_rows.contains(&row) {
            alone.push(replace(HookPoint::Z(1), &[Some(z_selection())]));
        }
        let one = model
            .forward_from(
                layer,
                resid(layer, 1),
                Some(&prefix),
                &mut Hooks::none().with_interventions(&alone),
                LogitsAt::Last,
            )
            .unwrap();
        let err = max_abs_diff(&stacked[row], &last_logits(one)[0]);
        assert!(err <= 1e-5, "row {row} (enters at layer {layer}): {err:e}");
    }
    // The edits changed something: the rows that entered at layer 1 differ.
    assert!(max_abs_diff(&stacked[1], &stacked[2]) > 1e-3);

    for entries in [
        vec![
            (Entry::resid_pre(1), resid(1, 1)),
            (Entry::resid_pre(0), resid(0, 1)),
        ],
        vec![
            (Entry::resid_mid(1), resid(1, 1)),
            (Entry::resid_pre(1), resid(1, 1)),
        ],
        vec![
            (Entry::resid_pre(1), resid(1, 1)),
            (Entry::resid_pre(1), resid(1, 1)),
        ],
        vec![
            (Entry::resid_pre(0), resid(0, 1)),
            (Entry::resid_pre(n_layer), resid(0, 1)),
        ],
        vec![
            (Entry::resid_pre(0), resid(0, 1)),
            (Entry::resid_pre(1), resid(1, 1).narrow(1, 1, len - offset - 1)),
        ],
        vec![],
    ] {
        let result = model.forward_stacked(entries, Some(&prefix), &mut Hooks::none(), LogitsAt::Last);
        assert!(result.is_err());
    }
}

/// Rows that enter after a block's attention, at `hook_resid_mid`, with that attention's output
/// already edited, equal a pass from the block's `hook_resid_pre` that makes the edit at
/// `hook_z`; they join rows that ran the attention, the final block's included (which computes
/// its last position only).
#[test]
fn rows_entering_after_attention_equal_a_pass_that_edits_it() {
    let (model, clean, corrupt) = setup();
    let (clean_cache, _) = run_cached(&model, &clean);
    let (corrupt_cache, corrupt_logits) = run_cached(&model, &corrupt);
    let n_layer = model.config.n_layer;
    assert!(n_layer >= 3, "the test needs three layers");
    let offset = 7;
    let len = corrupt.len();
    let prefix = cached_prefix(&corrupt_cache, n_layer, offset);
    let after = |hook: HookPoint| {
        corrupt_cache
            .stream(hook)
            .unwrap()
            .narrow(1, offset, len - offset)
    };
    let z_patch = Intervention::new(
        HookPoint::Z(1),
        EditOp::Replace,
        clean_cache.get(HookPoint::Z(1)).unwrap().clone(),
        &[Some(z_selection())],
    )
    .unwrap();
    let z = corrupt_cache
        .per_head(HookPoint::Z(1))
        .unwrap()
        .narrow(1, offset, len - offset);
    let z = z_patch
        .apply(Activation::PerHead(z), offset)
        .unwrap()
        .per_head(HookPoint::Z(1))
        .unwrap();
    let edited_mid = after(HookPoint::ResidPre(1)) + model.blocks[1].attn.project(z);
    let last = n_layer - 1;
    let logits = model
        .forward_stacked(
            vec![
                (Entry::resid_pre(0), after(HookPoint::ResidPre(0))),
                (Entry::resid_mid(1), edited_mid),
                (Entry::resid_mid(last), after(HookPoint::ResidMid(last))),
            ],
            Some(&prefix),
            &mut Hooks::none(),
            LogitsAt::Last,
        )
        .unwrap();
    let stacked = last_logits(logits);
    assert_eq!(stacked.len(), 3);
    let patched = model
        .forward_from(
            1,
            after(HookPoint::ResidPre(1)),
            Some(&prefix),
            &mut Hooks::none().with_interventions(std::slice::from_ref(&z_patch)),
            LogitsAt::Last,
        )
        .unwrap();
    let patched = last_logits(patched).remove(0);
    for (row, want) in [(0, &corrupt_logits), (1, &patched), (2, &corrupt_logits)] {
        let err = max_abs_diff(&stacked[row], want);
        assert!(err <= 1e-5, "row {row}: {err:e}");
    }
    // The edit changed something.
    assert!(max_abs_diff(&patched, &corrupt_logits) > 1e-3);
}

/// A batch of variants, each patching a different (hook, position, head) from the clean run
/// into the corrupted one, equals running each variant alone; and a variant with no selection
/// equals the unpatched corrupted run.
#[test]
fn batched_variants_equal_one_forward_each() {
    let (model, clean, corrupt) = setup();
    let (clean_cache, _) = run_cached(&model, &clean);
    let (_, corrupt_logits) = run_cached(&model, &corrupt);
    let cases: Vec<(HookPoint, Vec<Option<Selection>>)> = vec![
        (
            HookPoint::ResidPre(1),
            vec![
                Some(Selection::positions(vec![10])),
                None,
                Some(Selection::positions(vec![3, 10, 14])),
            ],
        ),
        (
            HookPoint::Z(2),
            vec![
                Some(Selection::heads(vec![1])),
                Some(Selection {
                    positions: Some(vec![12]),
                    heads: Some(vec![0, 3]),
                }),
                Some(Selection::all()),
            ],
        ),
        (
            HookPoint::Pattern(0),
            vec![
                Some(Selection {
                    positions: Some(vec![14]),
                    heads: Some(vec![2]),
                }),
                None,
                Some(Selection::all()),
            ],
        ),
        (
            HookPoint::MlpPost(1),
            vec![Some(Selection::positions(vec![11])), None, None],
        ),
        (
            HookPoint::V(0),
            vec![Some(Selection::heads(vec![0, 1])), Some(Selection::all()), None],
        ),
    ];
    for (hook, selections) in cases {
        let values = clean_cache.get(hook).unwrap().clone();
        let batch = selections.len();
        let intervention = Intervention::new(hook, EditOp::Replace, values.clone(), &selections).unwrap();
        let batched = last_logits(
            model
                .forward(
                    &vec![corrupt.clone(); batch],
                    &mut Hooks::none().with_interventions(&[intervention]),
                    LogitsAt::Last,
                )
                .unwrap(),
        );
        for (i, selection) in selections.iter().enumerate() {
            let alone = match selection {
                None => corrupt_logits.clone(),
                Some(s) => {
                    let one =
                        Intervention::new(hook, EditOp::Replace, values.clone(), &[Some(s.clone())]).unwrap();
                    last_logits(
                        model
                            .forward(
                                &[corrupt.clone()],
                                &mut Hooks::none().with_interventions(&[one]),
                                LogitsAt::Last,
                            )
                            .unwrap(),
                    )
                    .remove(0)
                }
            };
            let err = max_abs_diff(&batched[i], &alone);
            assert!(err <= 1e-5, "{hook} variant {i}: {err:e}");
        }
    }
}

/// Replacing the whole residual stream at a layer with the clean one gives the clean logits;
/// adding zeros changes nothing.
#[test]
fn replacing_a_complete_cut_restores_the_clean_run() {
    let (model, clean, corrupt) = setup();
    let (clean_cache, clean_logits) = run_cached(&model, &clean);
    let (_, corrupt_logits) = run_cached(&model, &corrupt);
    assert!(
        max_abs_diff(&clean_logits, &corrupt_logits) > 0.1,
        "prompts must differ"
    );
    let values = clean_cache.get(HookPoint::ResidPre(2)).unwrap().clone();
    let zeros = Activation::Stream(Tensor::zeros([1, 15, 16], &backend::cpu().device));
    let edits = [
        Intervention::new(
            HookPoint::ResidPre(2),
            EditOp::Replace,
            values,
            &[Some(Selection::all()), None],
        )
        .unwrap(),
        Intervention::new(
            HookPoint::ResidMid(0),
            EditOp::Add,
            zeros,
            &vec![Some(Selection::all()); 2],
        )
        .unwrap(),
    ];
    let out = last_logits(
        model
            .forward(
                &vec![corrupt; 2],
                &mut Hooks::none().with_interventions(&edits),
                LogitsAt::Last,
            )
            .unwrap(),
    );
    assert!(max_abs_diff(&out[0], &clean_logits) <= 1e-5);
    assert!(max_abs_diff(&out[1], &corrupt_logits) <= 1e-6);
}

#[test]
fn bad_interventions_and_inputs_are_clear_errors() {
    let (model, clean, _) = setup();
    let (cache, _) = run_cached(&model, &clean);
    let resid = cache.get(HookPoint::ResidPre(0)).unwrap().clone();
    let z = cache.get(HookPoint::Z(0)).unwrap().clone();
    let msg = |e: ModelError| e.to_string();

    let e = Intervention::new(
        HookPoint::ResidPre(0),
        EditOp::Replace,
        resid.clone(),
        &[Some(Selection::heads(vec![0]))],
    );
    assert!(msg(e.unwrap_err()).contains("no head axis"));
    let e = Intervention::new(
        HookPoint::Z(0),
        EditOp::Replace,
        z.clone(),
        &[Some(Selection::heads(vec![4]))],
    );
    assert!(msg(e.unwrap_err()).contains("head 4 is out of range"));
    let e = Intervention::new(
        HookPoint::ResidPre(0),
        EditOp::Replace,
        resid.clone(),
        &[Some(Selection::positions(vec![15]))],
    );
    assert!(msg(e.unwrap_err()).contains("position 15 is out of range"));
    let e = Intervention::new(HookPoint::Z(0), EditOp::Replace, resid.clone(), &[None]);
    assert!(msg(e.unwrap_err()).contains("rank 3, expected 4"));

    // Built for two variants, run on one.
    let two = Intervention::new(HookPoint::ResidPre(1), EditOp::Replace, resid, &[None, None]).unwrap();
    let e = model.forward(
        &[clean.clone()],
        &mut Hooks::none().with_interventions(&[two]),
        LogitsAt::Last,
    );
    assert!(msg(e.unwrap_err()).contains("built for 2 variants"));

    assert!(matches!(
        model.forward(&[vec![]], &mut Hooks::none(), LogitsAt::Last),
        Err(ModelError::EmptyPrompt)
    ));
    let long = vec![clean[0]; 33];
    assert!(
        msg(model
            .forward(&[long], &mut Hooks::none(), LogitsAt::Last)
            .unwrap_err())
        .contains("33 tokens but the model's context holds 32")
    );
    let e = model.forward(&[vec![1, 2], vec![1]], &mut Hooks::none(), LogitsAt::Last);
    assert!(matches!(e, Err(ModelError::RaggedBatch(_))));
    let e = model.forward(&[vec![60000]], &mut Hooks::none(), LogitsAt::Last);
    assert!(msg(e.unwrap_err()).contains("token id 60000"));
    let resid = cache.stream(HookPoint::ResidPre(0)).unwrap();
    let e = model.forward_from(3, resid, None, &mut Hooks::none(), LogitsAt::Last);
    assert!(msg(e.unwrap_err()).contains("layer 3 is out of range: the model has 3 layers"));
}
