//! A TransformerLens script that reproduces an experiment, for users who need bigger models or
//! more prompts than a browser holds. It uses `get_act_patch_*` where TransformerLens has one and
//! a plain hook loop otherwise.

use crate::{Choice, Component, Corruption, Direction, ExperimentSpec, MetricKind, ModelSource, PromptPair};

fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

fn py_list<T: ToString>(v: &[T]) -> String {
    format!("[{}]", v.iter().map(T::to_string).collect::<Vec<_>>().join(", "))
}

/// The TransformerLens sweep for a target, when one exists.
fn tl_function(component: Component, positions: &Choice, heads: &Choice) -> Option<&'static str> {
    use Component::*;
    let each_head = *heads == Choice::Each;
    Some(match (component, positions) {
        (ResidPre, Choice::Each) => "get_act_patch_resid_pre",
        (ResidMid, Choice::Each) => "get_act_patch_resid_mid",
        (AttnOut, Choice::Each) => "get_act_patch_attn_out",
        (MlpOut, Choice::Each) => "get_act_patch_mlp_out",
        (BlockEvery, Choice::Each) => "get_act_patch_block_every",
        (Z, Choice::All) if each_head => "get_act_patch_attn_head_out_all_pos",
        (Z, Choice::Each) if each_head => "get_act_patch_attn_head_out_by_pos",
        (Q, Choice::All) if each_head => "get_act_patch_attn_head_q_all_pos",
        (Q, Choice::Each) if each_head => "get_act_patch_attn_head_q_by_pos",
        (K, Choice::All) if each_head => "get_act_patch_attn_head_k_all_pos",
        (K, Choice::Each) if each_head => "get_act_patch_attn_head_k_by_pos",
        (V, Choice::All) if each_head => "get_act_patch_attn_head_v_all_pos",
        (V, Choice::Each) if each_head => "get_act_patch_attn_head_v_by_pos",
        (Pattern, Choice::All) if each_head => "get_act_patch_attn_head_pattern_all_pos",
        (Pattern, Choice::Each) if each_head => "get_act_patch_attn_head_pattern_by_pos",
        _ => return None,
    })
}

/// A Python script for TransformerLens 3.9 (`pip install transformer_lens==3.9.0`).
pub fn transformer_lens_script(spec: &ExperimentSpec) -> String {
    let mut py = String::new();
    let mut line = |s: &str| {
        py.push_str(s);
        py.push('\n');
    };
    line(
        "# Reproduces a Patchbay experiment with TransformerLens 3.9.0 (pip install transformer_lens==3.9.0).",
    );
    line(&format!("# Spec: {}", spec.to_json()));
    line("import torch");
    line("import transformer_lens.patching as patching");
    line("from transformer_lens import HookedTransformer");
    line("");
    line("torch.set_grad_enabled(False)");
    load_model(&mut line, &spec.model);
    line(&format!(
        "prepend_bos = {}",
        if spec.prepend_bos { "True" } else { "False" }
    ));
    line(&format!(
        "clean = model.to_tokens({}, prepend_bos=prepend_bos)",
        py_list(&spec.prompts.iter().map(|p| py_str(&p.clean)).collect::<Vec<_>>())
    ));
    let answers: Vec<String> = spec.prompts.iter().map(|p| py_str(&p.answer)).collect();
    line(&format!(
        "answer = torch.tensor([model.to_single_token(a) for a in {}])",
        py_list(&answers)
    ));
    let counters: Vec<String> = spec
        .prompts
        .iter()
        .map(|p| py_str(p.counter_answer.as_deref().unwrap_or(&p.answer)))
        .collect();
    line(&format!(
        "counter = torch.tensor([model.to_single_token(a) for a in {}])",
        py_list(&counters)
    ));
    if spec.metric.kind == MetricKind::ProbDiff {
        let sets = |pick: &dyn Fn(&PromptPair) -> Vec<String>| {
            let lists: Vec<String> = spec.prompts.iter().map(|p| py_list(&pick(p))).collect();
            py_list(&lists)
        };
        let or_single = |set: &[String], single: &str| match set {
            [] => vec![py_str(single)],
            set => set.iter().map(|t| py_str(t)).collect(),
        };
        let answer_sets = sets(&|p| or_single(&p.answer_set, &p.answer));
        let counter_sets =
            sets(&|p| or_single(&p.counter_set, p.counter_answer.as_deref().unwrap_or_default()));
        line("# R and R' per prompt (probability difference sums each set's probabilities).");
        line("def mask(sets):");
        line("    out = torch.zeros(len(sets), model.cfg.d_vocab)");
        line("    for i, s in enumerate(sets):");
        line("        out[i, [model.to_single_token(t) for t in s]] = 1");
        line("    return out");
        line(&format!("R = mask({answer_sets})"));
        line(&format!("R_counter = mask({counter_sets})"));
    }
    match &spec.corruption {
        Corruption::Str => {
            let corrupted: Vec<String> = spec
                .prompts
                .iter()
                .map(|p| py_str(p.corrupted.as_deref().unwrap_or("")))
                .collect();
            line(&format!(
                "corrupted = model.to_tokens({}, prepend_bos=prepend_bos)",
                py_list(&corrupted)
            ));
            line("noise_hooks = []");
        }
        Corruption::Gn(gn) => {
            line("# Gaussian noise on the token embeddings (ROME). Patchbay draws it from ChaCha8; torch's");
            line("# generator gives other samples, so expect the same picture, not the same digits.");
            if gn.positions.is_empty() {
                // No positions in the spec: the tokens the STR pair changes.
                let corrupted: Vec<String> = spec
                    .prompts
                    .iter()
                    .map(|p| py_str(p.corrupted.as_deref().unwrap_or("")))
                    .collect();
                line(
                    "# The noised positions: where the first pair's corrupted prompt differs (STR's tokens).",
                );
                line(&format!(
                    "str_corrupted = model.to_tokens({}, prepend_bos=prepend_bos)",
                    py_list(&corrupted)
                ));
                line("positions = (clean[0] != str_corrupted[0]).nonzero().flatten().tolist()");
            } else {
                line(&format!("positions = {}", py_list(&gn.positions)));
            }
            line(&format!("samples = {}", gn.samples));
            line("key = clean[:, positions].flatten()");
            line(&format!("nu = {} * model.W_E[key].std()", gn.scale));
            line(&format!("g = torch.Generator().manual_seed({})", spec.seed));
            line("noise = torch.randn(samples, len(positions), model.cfg.d_model, generator=g) * nu");
            line("def add_noise(embed, hook):");
            line("    embed = embed.clone()");
            line("    embed[:, positions] += noise");
            line("    return embed");
            line("corrupted = clean.repeat(samples, 1)");
            line("noise_hooks = [(\"hook_embed\", add_noise)]");
        }
    }
    line("");
    line("def last_logits(tokens, hooks=()):");
    line("    return model.run_with_hooks(tokens, fwd_hooks=list(hooks))[:, -1]");
    line("");
    line("clean_logits, clean_cache = model.run_with_cache(clean)");
    line("clean_logprobs = clean_logits[:, -1].log_softmax(-1)");
    line("with model.hooks(fwd_hooks=noise_hooks):");
    line("    corrupted_logits, corrupted_cache = model.run_with_cache(corrupted)");
    line("");
    let metric = match spec.metric.kind {
        MetricKind::LogitDiff => {
            "    return last[rows, answer.repeat(reps)] - last[rows, counter.repeat(reps)]"
        }
        MetricKind::Prob => "    return last.softmax(-1)[rows, answer.repeat(reps)]",
        MetricKind::ProbDiff => "    return (last.softmax(-1) * (R - R_counter).repeat(reps, 1)).sum(-1)",
        MetricKind::Kl => {
            "    lp = last.log_softmax(-1)\n    cl = clean_logprobs.repeat(reps, 1)\n    return -(cl.exp() * (cl - lp)).sum(-1)"
        }
    };
    line(&format!(
        "def m(last):  # {} (higher is closer to the clean run)",
        spec.metric.kind.label()
    ));
    line("    reps = last.shape[0] // answer.shape[0]");
    line("    rows = torch.arange(last.shape[0])");
    line(metric);
    line("");
    line("m_clean = m(clean_logits[:, -1]).mean()");
    line("m_corrupted = m(corrupted_logits[:, -1]).mean()");
    let (base, tokens, cache) = match spec.direction {
        Direction::Denoising => ("m_corrupted", "corrupted", "clean_cache"),
        Direction::Noising => ("m_clean", "clean", "corrupted_cache"),
    };
    let normalize = if spec.metric.normalized {
        " / (m_clean - m_corrupted)"
    } else {
        ""
    };
    line(&format!(
        "def metric(logits):  # {:?}, effect{}",
        spec.direction,
        if spec.metric.normalized {
            ", normalized"
        } else {
            ""
        }
    ));
    line(&format!(
        "    return (m(logits[:, -1]).mean() - {base}){normalize}"
    ));
    line("");
    let target = &spec.target;
    match tl_function(target.component, &target.positions, &target.heads) {
        Some(f) if spec.window.is_none() => {
            line(&format!(
                "with model.hooks(fwd_hooks=noise_hooks if {tokens} is corrupted else []):"
            ));
            line(&format!(
                "    grid = patching.{f}(model, {tokens}, {cache}, metric)"
            ));
        }
        _ => {
            line("# TransformerLens has no built-in sweep for this target (a window, a joint selection or");
            line(
                "# path patching); see Patchbay's results.json for the grid, and the hooks above to build it.",
            );
            line("grid = None");
        }
    }
    line("print(grid)");
    py
}

/// The lines that load the spec's model into a `HookedTransformer`: by name for the OpenAI GPT-2
/// checkpoints TransformerLens knows, else from a Hub-layout folder, without any weight
/// processing so that every hook holds the plain activation.
fn load_model(line: &mut impl FnMut(&str), source: &ModelSource) {
    let known = match source {
        ModelSource::Hub(id) => {
            let name = id.trim_start_matches("openai-community/");
            ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"]
                .contains(&name)
                .then_some(name)
        }
        _ => None,
    };
    if let Some(name) = known {
        line(&format!(
            "model = HookedTransformer.from_pretrained({}, fold_ln=False, center_writing_weights=False, center_unembed=False)",
            py_str(name)
        ));
        return;
    }
    let what = match source {
        ModelSource::Hub(id) => format!("the Hub model {id}, which TransformerLens has no name for"),
        ModelSource::Url(url) => format!("the model at {url}"),
        ModelSource::Local(file) => format!("the local file {file}"),
        ModelSource::Embedded(name) => {
            format!("{name}, the model that ships with Patchbay (models/{name} in its repository)")
        }
    };
    line(&format!("# This experiment ran on {what}."));
    line("# TransformerLens cannot load it by name: put its Hub-layout folder (config.json,");
    line("# model.safetensors, tokenizer.json) at MODEL_DIR and it is loaded from there.");
    line("MODEL_DIR = \"path/to/model\"");
    line("from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast");
    line("from transformer_lens import HookedTransformerConfig");
    line("from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights");
    line(
        "hf = GPT2LMHeadModel.from_pretrained(MODEL_DIR, local_files_only=True, attn_implementation=\"eager\")",
    );
    line("c = hf.config");
    line("cfg = HookedTransformerConfig(d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head,");
    line(
        "    d_mlp=c.n_inner or 4 * c.n_embd, n_layers=c.n_layer, n_ctx=c.n_positions, eps=c.layer_norm_epsilon,",
    );
    line(
        "    d_vocab=c.vocab_size, act_fn=\"gelu_new\", normalization_type=\"LN\", positional_embedding_type=\"standard\",",
    );
    line("    original_architecture=\"GPT2LMHeadModel\", default_prepend_bos=True)");
    line("tokenizer = PreTrainedTokenizerFast(tokenizer_file=f\"{MODEL_DIR}/tokenizer.json\")");
    line("model = HookedTransformer(cfg, tokenizer)");
    line("model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False,");
    line("    center_writing_weights=False, center_unembed=False, fold_value_biases=False)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_the_matching_transformer_lens_sweep() {
        let spec: ExperimentSpec = serde_json::from_str(
            r#"{"version": 1, "model": {"hub": "openai-community/gpt2"}, "prompts": [{"clean": "a \"b\" c",
            "corrupted": "a d c", "answer": " x", "counter_answer": " y"}], "corruption": {"method": "str"},
            "metric": {"kind": "logit_diff"}, "target": {"component": "z", "positions": "all"}}"#,
        )
        .unwrap();
        let py = transformer_lens_script(&spec);
        assert!(
            py.contains(
                "patching.get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, metric)"
            )
        );
        assert!(py.contains("HookedTransformer.from_pretrained(\"gpt2\""));
        // A model TransformerLens cannot name is loaded from its folder, and the script says so.
        let mut local = spec.clone();
        local.model = ModelSource::Embedded("patchbay-ioi".into());
        let py = transformer_lens_script(&local);
        assert!(py.contains("cannot load it by name") && py.contains("MODEL_DIR"));
        assert!(!py.contains("from_pretrained(\"gpt2\""));
        // Prompts are Python string literals, quotes escaped.
        assert!(py.contains(r#"["a \"b\" c"]"#));
    }
}
