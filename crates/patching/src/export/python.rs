//! What every exported Python script shares, whatever library runs it: string and list
//! literals, the spec's prompts and answers, the corruption (a corrupted prompt or Gaussian
//! noise), the metric and its normalization, and the words for a model a library cannot load
//! by name. Each library's script defines `tokens(texts)`, `token(text)`, `d_vocab`, `d_model`
//! and `W_E` before these lines run, and `clean_last` / `corrupted_last` (last-position logits)
//! before the metric's.

use crate::spec::Normalize;
use crate::{Corruption, Direction, ExperimentSpec, MetricKind, ModelSource, PromptPair};

/// A Python script being written, line by line, at an indentation.
#[derive(Default)]
pub(crate) struct Py {
    text: String,
    indent: usize,
}

impl Py {
    pub fn line(&mut self, s: &str) {
        if !s.is_empty() {
            self.text.push_str(&" ".repeat(self.indent));
        }
        self.text.push_str(s);
        self.text.push('\n');
    }

    /// Lines written inside `f` are indented four more spaces.
    pub fn block(&mut self, f: impl FnOnce(&mut Py)) {
        self.indent += 4;
        f(self);
        self.indent -= 4;
    }

    pub fn finish(self) -> String {
        self.text
    }
}

pub(crate) fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

pub(crate) fn py_list<T: ToString>(v: &[T]) -> String {
    format!("[{}]", v.iter().map(T::to_string).collect::<Vec<_>>().join(", "))
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn strings(spec: &ExperimentSpec, pick: impl Fn(&PromptPair) -> &str) -> String {
    py_list(&spec.prompts.iter().map(|p| py_str(pick(p))).collect::<Vec<_>>())
}

/// The first lines: what the script is for, and the spec it reproduces.
pub(crate) fn header(py: &mut Py, library: &str, install: &str, spec: &ExperimentSpec) {
    py.line(&format!(
        "# Reproduces a Patchbay experiment with {library} ({install})."
    ));
    py.line(&format!("# Spec: {}", spec.to_json()));
}

/// Where a model that the library cannot load by name came from, as the script's comment
/// lines say it ("This experiment ran on …"; the page shows these words).
fn model_origin(source: &ModelSource) -> String {
    match source {
        ModelSource::Hub(id) => format!("the Hub model {id}"),
        ModelSource::Url(url) => format!("the model at {url}"),
        ModelSource::Local(file) if file.ends_with(".safetensors") => format!("the local file {file}"),
        ModelSource::Local(dir) => format!("the local folder {dir}"),
        ModelSource::Embedded(name) => {
            format!("{name}, the model that ships with Patchbay (models/{name} in its repository)")
        }
    }
}

/// `MODEL_DIR = …` for a model loaded from a Hub-layout folder: the spec's own folder when it
/// names one, else a path for the user to fill in.
pub(crate) fn model_dir(py: &mut Py, source: &ModelSource, library: &str) {
    py.line(&format!("# This experiment ran on {}.", model_origin(source)));
    // The CLI's local model is a folder; the page's is a .safetensors file, which needs one.
    let folder = match source {
        ModelSource::Local(dir) if !dir.ends_with(".safetensors") => Some(dir),
        _ => None,
    };
    if let Some(dir) = folder {
        py.line(&format!(
            "# {library} loads it from its Hub-layout folder (config.json, model.safetensors,"
        ));
        py.line("# tokenizer.json) at MODEL_DIR, relative to where the script runs.");
        py.line(&format!("MODEL_DIR = {}", py_str(dir)));
    } else {
        py.line(&format!(
            "# {library} cannot load it by name: put its Hub-layout folder (config.json,"
        ));
        py.line("# model.safetensors, tokenizer.json) at MODEL_DIR and it is loaded from there.");
        py.line("MODEL_DIR = \"path/to/model\"");
    }
}

/// The prompts, the answers and the corrupted run's input: `clean`, `answer`, `counter`
/// (`R` and `R_counter` for probability difference), `corrupted` and `noise` (`None` for a
/// corrupted prompt; for Gaussian noise, the values added to `W_E`'s output at `positions`
/// of each row of `corrupted`).
pub(crate) fn prompts(py: &mut Py, spec: &ExperimentSpec) {
    py.line(&format!("prepend_bos = {}", py_bool(spec.prepend_bos)));
    py.line(&format!("clean = tokens({})", strings(spec, |p| &p.clean)));
    py.line(&format!(
        "answer = torch.tensor([token(a) for a in {}])",
        strings(spec, |p| &p.answer)
    ));
    py.line(&format!(
        "counter = torch.tensor([token(a) for a in {}])",
        strings(spec, |p| p.counter_answer.as_deref().unwrap_or(&p.answer))
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
        py.line("# R and R' per prompt (probability difference sums each set's probabilities).");
        py.line("def mask(sets):");
        py.line("    out = torch.zeros(len(sets), d_vocab)");
        py.line("    for i, s in enumerate(sets):");
        py.line("        out[i, [token(t) for t in s]] = 1");
        py.line("    return out");
        py.line(&format!("R = mask({answer_sets})"));
        py.line(&format!("R_counter = mask({counter_sets})"));
    }
    let corrupted = strings(spec, |p| p.corrupted.as_deref().unwrap_or(""));
    match &spec.corruption {
        Corruption::Str => {
            py.line(&format!("corrupted = tokens({corrupted})"));
            py.line("noise = None");
        }
        Corruption::Gn(gn) => {
            py.line(
                "# Gaussian noise on the token embeddings (ROME). Patchbay draws it from ChaCha8; torch's",
            );
            py.line("# generator gives other samples, so expect the same picture, not the same digits.");
            if gn.positions.is_empty() {
                // No positions in the spec: the tokens the STR pair changes.
                py.line(
                    "# The noised positions: where the first pair's corrupted prompt differs (STR's tokens).",
                );
                py.line(&format!("str_corrupted = tokens({corrupted})"));
                py.line("positions = (clean[0] != str_corrupted[0]).nonzero().flatten().tolist()");
            } else {
                py.line(&format!("positions = {}", py_list(&gn.positions)));
            }
            py.line(&format!("samples = {}", gn.samples));
            py.line("key = clean[:, positions].flatten()");
            py.line(&format!("nu = {} * W_E[key].std()", gn.scale));
            py.line(&format!("g = torch.Generator().manual_seed({})", spec.seed));
            py.line("corrupted = clean.repeat(samples, 1)");
            py.line("noise = torch.randn(corrupted.shape[0], len(positions), d_model, generator=g) * nu");
        }
    }
}

/// `m(last)`, the metric of last-position logits per row (higher is closer to the clean run),
/// its clean and corrupted values per prompt, and `effect(last)`: the patched run's metric less
/// the base run's, normalized as the spec asks and averaged over prompts, the value of each
/// grid cell.
pub(crate) fn metric(py: &mut Py, spec: &ExperimentSpec) {
    py.line(&format!(
        "def m(last):  # {} (higher is closer to the clean run)",
        spec.metric.kind.label()
    ));
    py.block(|py| {
        py.line("reps = last.shape[0] // answer.shape[0]");
        py.line("rows = torch.arange(last.shape[0])");
        match spec.metric.kind {
            MetricKind::LogitDiff => {
                py.line("return last[rows, answer.repeat(reps)] - last[rows, counter.repeat(reps)]")
            }
            MetricKind::Prob => py.line("return last.softmax(-1)[rows, answer.repeat(reps)]"),
            MetricKind::ProbDiff => {
                py.line("return (last.softmax(-1) * (R - R_counter).repeat(reps, 1)).sum(-1)")
            }
            MetricKind::Kl => {
                py.line("lp = last.log_softmax(-1)");
                py.line("cl = clean_last.log_softmax(-1).repeat(reps, 1)");
                py.line("return -(cl.exp() * (cl - lp)).sum(-1)");
            }
        }
    });
    py.line("def per_prompt(values):  # one value per prompt, averaged over noise samples");
    py.line("    return values.view(-1, answer.shape[0]).mean(0)");
    py.line("");
    py.line("m_clean = per_prompt(m(clean_last))");
    py.line("m_corrupted = per_prompt(m(corrupted_last))");
    let base = match spec.direction {
        Direction::Denoising => "m_corrupted",
        Direction::Noising => "m_clean",
    };
    let (how, value) = match (spec.metric.normalized, spec.metric.normalize) {
        (false, _) => ("", "d.mean()".to_string()),
        (true, Normalize::RatioOfMeans) => (
            ", normalized by the ratio of means",
            "d.mean() / (m_clean - m_corrupted).mean()".to_string(),
        ),
        (true, Normalize::PerPrompt) => (
            ", normalized per prompt",
            "(d / (m_clean - m_corrupted)).mean()".to_string(),
        ),
    };
    py.line(&format!("def effect(last):  # {:?}, effect{how}", spec.direction));
    py.line(&format!("    d = per_prompt(m(last)) - {base}"));
    py.line(&format!("    return {value}"));
}

/// Whether the patched runs are the corrupted ones (denoising) rather than the clean ones.
pub(crate) fn patches_corrupted(spec: &ExperimentSpec) -> bool {
    spec.direction == Direction::Denoising
}
