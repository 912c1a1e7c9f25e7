//! TransformerLens scripts that reproduce an experiment, for users who need bigger models or
//! more prompts than a browser holds: one for TransformerLens 3.9 (`HookedTransformer`) and one
//! for 4.x (`TransformerBridge`, which replaced it). Both run the same `get_act_patch_*` sweep of
//! `transformer_lens.patching` where TransformerLens has one for the target; only loading the
//! model differs.

use super::python::{self, Py, py_str};
use crate::{Choice, Component, ExperimentSpec, ModelSource};

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
    let mut py = Py::default();
    python::header(
        &mut py,
        "TransformerLens 3.9.0",
        "pip install transformer_lens==3.9.0",
        spec,
    );
    py.line("import torch");
    py.line("import transformer_lens.patching as patching");
    py.line("from transformer_lens import HookedTransformer");
    py.line("");
    py.line("torch.set_grad_enabled(False)");
    load_hooked_transformer(&mut py, &spec.model);
    body(&mut py, spec);
    py.finish()
}

/// A Python script for TransformerLens 4.x (`pip install transformer_lens==4.3.0`), whose
/// `TransformerBridge` runs the Hugging Face model itself: any Hub id or Hub-layout folder
/// loads, and without `enable_compatibility_mode()` every hook holds the plain activation.
pub fn transformer_lens4_script(spec: &ExperimentSpec) -> String {
    let mut py = Py::default();
    python::header(
        &mut py,
        "TransformerLens 4.3.0",
        "pip install transformer_lens==4.3.0",
        spec,
    );
    py.line("import torch");
    py.line("import transformer_lens.patching as patching");
    py.line("from transformer_lens import TransformerBridge");
    py.line("");
    py.line("torch.set_grad_enabled(False)");
    match &spec.model {
        ModelSource::Hub(id) => py.line(&format!(
            "model = TransformerBridge.boot_transformers({})",
            py_str(id)
        )),
        other => {
            python::model_dir(&mut py, other, "TransformerLens");
            py.line("model = TransformerBridge.boot_transformers(MODEL_DIR)");
        }
    }
    body(&mut py, spec);
    py.finish()
}

/// Everything after loading the model, the same in 3.9 and 4.x.
fn body(py: &mut Py, spec: &ExperimentSpec) {
    py.line("def tokens(texts):");
    py.line("    return model.to_tokens(texts, prepend_bos=prepend_bos)");
    py.line("token = model.to_single_token");
    py.line("d_vocab, d_model, W_E = model.cfg.d_vocab, model.cfg.d_model, model.W_E");
    python::prompts(py, spec);
    py.line("def add_noise(embed, hook):");
    py.line("    embed = embed.clone()");
    py.line("    embed[:, positions] += noise");
    py.line("    return embed");
    py.line("noise_hooks = [] if noise is None else [(\"hook_embed\", add_noise)]");
    py.line("");
    py.line("clean_logits, clean_cache = model.run_with_cache(clean)");
    py.line("with model.hooks(fwd_hooks=noise_hooks):");
    py.line("    corrupted_logits, corrupted_cache = model.run_with_cache(corrupted)");
    py.line("clean_last, corrupted_last = clean_logits[:, -1], corrupted_logits[:, -1]");
    py.line("");
    python::metric(py, spec);
    py.line("def metric(logits):");
    py.line("    return effect(logits[:, -1])");
    py.line("");
    let (tokens, cache) = if python::patches_corrupted(spec) {
        ("corrupted", "clean_cache")
    } else {
        ("clean", "corrupted_cache")
    };
    let target = &spec.target;
    match tl_function(target.component, &target.positions, &target.heads) {
        Some(f) if spec.window.is_none() => {
            let hooks = if python::patches_corrupted(spec) {
                "noise_hooks"
            } else {
                "[]"
            };
            py.line(&format!("with model.hooks(fwd_hooks={hooks}):"));
            py.line(&format!(
                "    grid = patching.{f}(model, {tokens}, {cache}, metric)"
            ));
        }
        _ => {
            py.line(
                "# TransformerLens has no built-in sweep for this target (a window, a joint selection or",
            );
            py.line(
                "# path patching); see Patchbay's results.json for the grid, and the hooks above to build it.",
            );
            py.line("grid = None");
        }
    }
    py.line("print(grid)");
}

/// The lines that load the spec's model into a `HookedTransformer`: by name for the OpenAI GPT-2
/// checkpoints TransformerLens 3.9 knows, else from a Hub-layout folder, without any weight
/// processing so that every hook holds the plain activation.
fn load_hooked_transformer(py: &mut Py, source: &ModelSource) {
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
        py.line(&format!(
            "model = HookedTransformer.from_pretrained({}, fold_ln=False, center_writing_weights=False, center_unembed=False)",
            py_str(name)
        ));
        return;
    }
    python::model_dir(py, source, "TransformerLens 3.9");
    py.line("from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast");
    py.line("from transformer_lens import HookedTransformerConfig");
    py.line("from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights");
    py.line(
        "hf = GPT2LMHeadModel.from_pretrained(MODEL_DIR, local_files_only=True, attn_implementation=\"eager\")",
    );
    py.line("c = hf.config");
    py.line("cfg = HookedTransformerConfig(d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head,");
    py.line(
        "    d_mlp=c.n_inner or 4 * c.n_embd, n_layers=c.n_layer, n_ctx=c.n_positions, eps=c.layer_norm_epsilon,",
    );
    py.line(
        "    d_vocab=c.vocab_size, act_fn=\"gelu_new\", normalization_type=\"LN\", positional_embedding_type=\"standard\",",
    );
    py.line("    original_architecture=\"GPT2LMHeadModel\", default_prepend_bos=True)");
    py.line("tokenizer = PreTrainedTokenizerFast(tokenizer_file=f\"{MODEL_DIR}/tokenizer.json\")");
    py.line("model = HookedTransformer(cfg, tokenizer)");
    py.line("model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False,");
    py.line("    center_writing_weights=False, center_unembed=False, fold_value_biases=False)");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ExperimentSpec {
        serde_json::from_str(
            r#"{"version": 1, "model": {"hub": "openai-community/gpt2"}, "prompts": [{"clean": "a \"b\" c",
            "corrupted": "a d c", "answer": " x", "counter_answer": " y"}], "corruption": {"method": "str"},
            "metric": {"kind": "logit_diff"}, "target": {"component": "z", "positions": "all"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_script_names_the_matching_transformer_lens_sweep() {
        let spec = spec();
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

    #[test]
    fn the_4x_script_boots_a_bridge_from_any_hub_id_or_the_spec_s_folder() {
        let mut spec = spec();
        spec.model = ModelSource::Hub("someone/gpt2-finetuned".into());
        let py = transformer_lens4_script(&spec);
        assert!(py.contains("TransformerBridge.boot_transformers(\"someone/gpt2-finetuned\")"));
        assert!(!py.contains("HookedTransformer") && !py.contains("MODEL_DIR"));
        assert!(py.contains("patching.get_act_patch_attn_head_out_all_pos("));
        spec.model = ModelSource::Local("models/mine".into());
        let py = transformer_lens4_script(&spec);
        assert!(py.contains("MODEL_DIR = \"models/mine\""));
        assert!(py.contains("boot_transformers(MODEL_DIR)"));
        // The page's local model is a file: the user puts it in a folder.
        spec.model = ModelSource::Local("mine.safetensors".into());
        let py = transformer_lens4_script(&spec);
        assert!(py.contains("ran on the local file mine.safetensors"));
        assert!(py.contains("MODEL_DIR = \"path/to/model\""));
    }
}
