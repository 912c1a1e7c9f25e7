//! An nnsight script that reproduces an experiment on the Hugging Face model itself, here or,
//! with `REMOTE = True`, on NDIF's hosted copy of a Hub model: the experiment for models no
//! single machine holds. Everything runs in one `session` (one NDIF job): a trace of the clean
//! and of the corrupted run captures the activations, then each layer's patches run as one
//! trace with one `invoke` per grid cell. The grid is TransformerLens's, axis for axis. Attention
//! patterns are patched inside transformers' eager attention through nnsight's `.source`, which
//! NDIF's deployments need not run: those scripts, and Gaussian noise (whose scale reads `W_E`
//! here), refuse `REMOTE = True`.

use super::python::{self, Py, py_str};
use crate::{Choice, Component, Corruption, ExperimentSpec, ModelSource};

/// How a component is read and written on Hugging Face's GPT-2 (`model.transformer.h[layer]`
/// is `block`): the activation captured from the source run, the statement that patches it at
/// the cell's index `at`, and TransformerLens's name for it.
struct Site {
    name: &'static str,
    hook: &'static str,
    capture: &'static str,
    patch: &'static [&'static str],
    /// Which third of `attn.c_attn`'s output holds it (q, k, v), for per-head columns.
    part: usize,
}

fn site(component: Component) -> Option<Site> {
    use Component::*;
    let site = |name, hook, capture, patch, part| Site {
        name,
        hook,
        capture,
        patch,
        part,
    };
    Some(match component {
        ResidPre => site(
            "resid_pre",
            "hook_resid_pre: the block's input",
            "block.input",
            &["block.input{at} = src{at}"],
            0,
        ),
        // resid_mid is attn_out + resid_pre inside the block, no module's input or output:
        // setting attn_out to clean resid_mid - resid_pre makes it the clean value.
        ResidMid => site(
            "resid_mid",
            "hook_resid_mid: ln_2's input",
            "block.ln_2.input",
            &[
                "resid_pre = block.input",
                "block.attn.output[0]{at} = src{at} - resid_pre{at}",
            ],
            0,
        ),
        ResidPost => site(
            "resid_post",
            "hook_resid_post: the block's output",
            "block.output",
            &["block.output{at} = src{at}"],
            0,
        ),
        AttnOut => site(
            "attn_out",
            "hook_attn_out",
            "block.attn.output[0]",
            &["block.attn.output[0]{at} = src{at}"],
            0,
        ),
        MlpOut => site(
            "mlp_out",
            "hook_mlp_out",
            "block.mlp.output",
            &["block.mlp.output{at} = src{at}"],
            0,
        ),
        Z => site(
            "z",
            "attn.hook_z: c_proj's input, heads side by side",
            "block.attn.c_proj.input",
            &["block.attn.c_proj.input{at} = src{at}"],
            0,
        ),
        Q | K | V => {
            let (name, hook, part) = match component {
                Q => ("q", "attn.hook_q: the first third of c_attn's output", 0),
                K => ("k", "attn.hook_k: the second third of c_attn's output", 1),
                _ => ("v", "attn.hook_v: the last third of c_attn's output", 2),
            };
            site(
                name,
                hook,
                "block.attn.c_attn.output",
                &["block.attn.c_attn.output{at} = src{at}"],
                part,
            )
        }
        // The attention pattern is no module's output: nnsight's `.source` reaches the
        // softmax inside transformers' eager attention (GPT2Attention's call of it, then
        // eager_attention_forward's softmax).
        Pattern => site(
            "pattern",
            "attn.hook_pattern: the softmax in eager attention",
            "block.attn.source.attention_interface_1.source.nn_functional_softmax_0.output",
            &["block.attn.source.attention_interface_1.source.nn_functional_softmax_0.output{at} = src{at}"],
            0,
        ),
        BlockEvery | Path => return None,
    })
}

/// The sites a target sweeps, in the order of the grid's first axis for `block_every`.
fn sites(component: Component) -> Option<Vec<Site>> {
    match component {
        Component::BlockEvery => Some(
            [Component::ResidPre, Component::AttnOut, Component::MlpOut]
                .into_iter()
                .filter_map(site)
                .collect(),
        ),
        other => site(other).map(|s| vec![s]),
    }
}

/// A Python script for nnsight 0.8 (`pip install nnsight==0.8.1`).
pub fn nnsight_script(spec: &ExperimentSpec) -> String {
    let mut py = Py::default();
    python::header(&mut py, "nnsight 0.8.1", "pip install nnsight==0.8.1", spec);
    py.line("import torch");
    py.line("import nnsight");
    py.line("from nnsight import TransformersModel");
    py.line("");
    py.line("torch.set_grad_enabled(False)");
    match &spec.model {
        ModelSource::Hub(id) => {
            py.line("# REMOTE = True runs the same experiment on NDIF's hosted copy of the model (see");
            py.line("# https://nnsight.net/status for the models it serves; first call");
            py.line("# nnsight.CONFIG.set_default_api_key(YOUR_KEY)). False runs it on this machine.");
            py.line("REMOTE = False");
            py.line(&format!(
                "model = TransformersModel({}, task=\"text-generation\", attn_implementation=\"eager\", dispatch=not REMOTE)",
                py_str(id)
            ));
        }
        other => {
            python::model_dir(&mut py, other, "nnsight");
            py.line("# NDIF hosts Hub models only: a model from a folder runs on this machine.");
            py.line("REMOTE = False");
            py.line("from transformers import PreTrainedTokenizerFast");
            py.line("tokenizer = PreTrainedTokenizerFast(tokenizer_file=f\"{MODEL_DIR}/tokenizer.json\")");
            py.line("# In float32, as Patchbay computes, whatever the checkpoint's dtype.");
            py.line("model = TransformersModel(MODEL_DIR, task=\"text-generation\", tokenizer=tokenizer,");
            py.line("    dtype=torch.float32, attn_implementation=\"eager\", dispatch=True)");
        }
    }
    py.line("tok = model.tokenizer");
    py.line("EOT = tok.convert_tokens_to_ids(\"<|endoftext|>\")");
    py.line("def tokens(texts):");
    py.line("    ids = [[EOT] * prepend_bos + tok(t)[\"input_ids\"] for t in texts]");
    py.line("    assert len({len(i) for i in ids}) == 1, \"the prompts must have one token length\"");
    py.line("    return torch.tensor(ids)");
    py.line("def token(text):");
    py.line("    ids = tok(text)[\"input_ids\"]");
    py.line("    assert len(ids) == 1, f\"{text!r} is not one token\"");
    py.line("    return ids[0]");
    py.line("c = model.config");
    py.line("n_layers, n_heads, d_vocab, d_model = c.n_layer, c.n_head, c.vocab_size, c.n_embd");
    py.line("d_head = d_model // n_heads");
    if spec.target.component == Component::Pattern {
        py.line("assert not REMOTE, \"patterns are patched inside eager attention, which NDIF may not run: run locally\"");
    }
    if matches!(spec.corruption, Corruption::Gn(_)) {
        py.line("assert not REMOTE, \"the noise's scale reads W_E here: run Gaussian noise locally\"");
        py.line("W_E = model.transformer.wte.weight");
    }
    python::prompts(&mut py, spec);
    py.line("n_pos = clean.shape[1]");
    py.line("");
    py.line("def corrupt():  # the corrupted run's noise on the token embeddings (hook_embed)");
    py.line("    if noise is not None:");
    py.line("        model.transformer.wte.output[:, positions] += noise");
    py.line("");

    let target = &spec.target;
    let sites = sites(target.component).filter(|_| {
        spec.window.is_none()
            && target.heads == Choice::Each
            && match target.positions {
                Choice::Each => true,
                Choice::All => target.component.has_heads(),
                Choice::These(_) => false,
            }
    });
    let Some(sites) = sites else {
        py.line(
            "# This script sweeps what TransformerLens's get_act_patch_* functions sweep; this target (a",
        );
        py.line("# window, a joint selection, attention patterns or path patching) is not among them. See");
        py.line("# Patchbay's results.json for the grid, and corrupt() above to build it.");
        py.line("grid = None");
        py.line("print(grid)");
        return py.finish();
    };
    let heads = target.component.has_heads();
    let each_pos = target.positions == Choice::Each;
    // The cell's index into an activation, and the grid's axes after (site,) layer.
    let pattern = target.component == Component::Pattern;
    let (at, cell, loops, axes): (&str, &str, &[&str], &str) = match (heads, each_pos) {
        (false, _) => ("[:, pos]", "pos", &["for pos in range(n_pos):"], "n_pos"),
        // TransformerLens's pattern axes: layer, head, destination position.
        (true, true) if pattern => (
            "[:, head, pos]",
            "head, pos",
            &["for head in range(n_heads):", "    for pos in range(n_pos):"],
            "n_heads, n_pos",
        ),
        (true, false) if pattern => ("[:, head]", "head", &["for head in range(n_heads):"], "n_heads"),
        (true, true) => (
            "[:, pos, heads(head)]",
            "pos, head",
            &["for pos in range(n_pos):", "    for head in range(n_heads):"],
            "n_pos, n_heads",
        ),
        (true, false) => (
            "[:, :, heads(head)]",
            "head",
            &["for head in range(n_heads):"],
            "n_heads",
        ),
    };
    if heads && !pattern {
        py.line(&format!(
            "def heads(head, part={}):  # a head's columns of z, or of q, k or v (part 0, 1, 2)",
            sites[0].part
        ));
        py.line("    start = part * d_model + head * d_head");
        py.line("    return slice(start, start + d_head)");
        py.line("");
    }
    py.line("def capture(name, layer):  # the activation `name` of the running trace");
    py.block(|py| {
        py.line("block = model.transformer.h[layer]");
        for s in &sites {
            py.line(&format!("if name == {}:  # {}", py_str(s.name), s.hook));
            py.line(&format!("    return {}", s.capture));
        }
    });
    py.line("");
    py.line(&format!(
        "def patch(name, layer, src, {cell}):  # src's values at the cell into the running trace"
    ));
    py.block(|py| {
        py.line("block = model.transformer.h[layer]");
        for s in &sites {
            py.line(&format!("if name == {}:", py_str(s.name)));
            for statement in s.patch {
                py.line(&format!("    {}", statement.replace("{at}", at)));
            }
        }
    });
    py.line("");
    let names: Vec<String> = sites.iter().map(|s| py_str(s.name)).collect();
    py.line(&format!("NAMES = {}", python::py_list(&names)));
    let (patched, source, noised) = if python::patches_corrupted(spec) {
        ("corrupted", "clean_acts", "corrupt()")
    } else {
        ("clean", "corrupted_acts", "pass  # the clean run, unchanged")
    };
    py.line("with model.session(remote=REMOTE):");
    py.block(|py| {
        py.line("# Each activation of both runs, in the order the forward pass reaches them.");
        py.line("with model.trace(clean):");
        py.line("    clean_acts = [[capture(n, layer) for n in NAMES] for layer in range(n_layers)]");
        py.line("    clean_last = model.lm_head.output[:, -1]");
        py.line("with model.trace(corrupted):");
        py.line("    corrupt()");
        py.line("    corrupted_acts = [[capture(n, layer) for n in NAMES] for layer in range(n_layers)]");
        py.line("    corrupted_last = model.lm_head.output[:, -1]");
        py.line("");
        python::metric(py, spec);
        py.line("");
        py.line(&format!("grid = torch.zeros(len(NAMES), n_layers, {axes})"));
        py.line("for k, name in enumerate(NAMES):");
        py.line("    for layer in range(n_layers):");
        py.line("        with model.trace() as tracer:  # one forward pass, one invoke per cell");
        py.block(|py| {
            py.block(|py| {
                py.block(|py| {
                    for l in loops {
                        py.line(l);
                    }
                    let inner = "    ".repeat(loops.len());
                    py.line(&format!("{inner}with tracer.invoke({patched}):"));
                    py.line(&format!("{inner}    {noised}"));
                    py.line(&format!(
                        "{inner}    patch(name, layer, {source}[layer][k], {cell})"
                    ));
                    py.line(&format!(
                        "{inner}    grid[k, layer, {cell}] = effect(model.lm_head.output[:, -1])"
                    ));
                });
            });
        });
        py.line(&format!(
            "grid = nnsight.save(grid{})",
            if sites.len() == 1 { "[0]" } else { "" }
        ));
    });
    py.line("print(grid)");
    py.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_model_can_run_on_ndif_and_a_folder_runs_here() {
        let mut spec: ExperimentSpec = serde_json::from_str(
            r#"{"version": 1, "model": {"hub": "openai-community/gpt2"}, "prompts": [{"clean": "a b c",
            "corrupted": "a d c", "answer": " x", "counter_answer": " y"}], "corruption": {"method": "str"},
            "metric": {"kind": "logit_diff"}, "target": {"component": "z", "positions": "each"}}"#,
        )
        .unwrap();
        let py = nnsight_script(&spec);
        assert!(py.contains("TransformersModel(\"openai-community/gpt2\""));
        assert!(py.contains("with model.session(remote=REMOTE):"));
        assert!(py.contains("with tracer.invoke(corrupted):"));
        assert!(py.contains("block.attn.c_proj.input[:, pos, heads(head)] = src[:, pos, heads(head)]"));
        spec.model = ModelSource::Local("models/mine".into());
        let py = nnsight_script(&spec);
        assert!(py.contains("MODEL_DIR = \"models/mine\"") && py.contains("REMOTE = False"));
        assert!(py.contains("NDIF hosts Hub models only"));
        // Attention patterns are reached through `.source`, locally.
        spec.target.component = Component::Pattern;
        let py = nnsight_script(&spec);
        assert!(py.contains("nn_functional_softmax_0.output[:, head, pos] = src[:, head, pos]"));
        assert!(py.contains("assert not REMOTE"));
        // Path patching has no get_act_patch_* sweep: the script says so.
        spec.target.component = Component::Path;
        assert!(nnsight_script(&spec).contains("grid = None"));
    }
}
