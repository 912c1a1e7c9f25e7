//! `patchbay train`: trains a small GPT-2 (GPT-2's architecture and tokenizer, a narrow residual
//! stream) on synthetic tasks with burn's autodiff on the CPU, writes it as a Hub checkpoint
//! (F16), and measures it (see [`crate::report`]) into `metrics.json`.
//!
//! The tasks come from `patchbay_patching::generate`: IOI (two thirds of each step) and
//! greater-than; induction on repeated random words can be added (`--induction-groups`), but a
//! model this small does not learn it in this budget, and it changes the IOI circuit that forms.
//! Every sequence starts with `<|endoftext|>`, as the patching experiments prepend it, and the
//! loss is next-token cross-entropy at the answer position only (the last one): the other
//! positions of these prompts are random names and words with little to learn, and the
//! unembedding of 50,257 tokens is most of the cost. Each step is a few groups of equal-length
//! sequences (one IOI template, ...), each its own forward pass; AdamW with GPT-2's usual
//! settings (ε 1e-8, β₂ 0.95, weight decay 0.1), warm-up and cosine decay.
//!
//! Training is reproducible: the initialisation, the data and the order of every floating-point
//! reduction depend only on `--seed` (the thread pool has a fixed size, `--threads`; the result is
//! the same for one thread or two). Training data seeds all have their top bit set; held-out sets
//! use small seeds, so they never overlap.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use clap::Args;
use patchbay_model::{Gpt2, Gpt2Config, Gpt2Tokenizer, Hooks, LogitsAt, SaveDtype, load_gpt2_dir};
use patchbay_patching::PromptPair;
use patchbay_patching::tasks::greater_than::greater_than;
use patchbay_patching::tasks::induction::{induction_from, word_tokens};
use patchbay_patching::tasks::ioi::{IOI_TEMPLATES, IoiCorruption, IoiOptions, ioi_prompts};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use crate::files::{self, Exit};
use crate::report;

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// Folder to write config.json, model.safetensors, tokenizer.json and metrics.json into.
    #[arg(long)]
    pub out: PathBuf,
    /// Seeds the initialisation and the training data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// GPT-2's tokenizer.json, copied into the output folder.
    #[arg(long, default_value = "tests/fixtures/models/tiny/tokenizer.json")]
    pub tokenizer: PathBuf,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Sequences per group: a step has `--ioi-groups` IOI groups (each one template),
    /// `--gt-groups` greater-than groups and `--induction-groups` induction groups.
    #[arg(long, default_value_t = 32)]
    pub group: usize,
    #[arg(long, default_value_t = 2)]
    pub ioi_groups: usize,
    #[arg(long, default_value_t = 1)]
    pub gt_groups: usize,
    #[arg(long, default_value_t = 0)]
    pub induction_groups: usize,
    /// Peak learning rate (linear warm-up, cosine decay to a tenth).
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f32,
    /// AdamW's β₂.
    #[arg(long, default_value_t = 0.95)]
    pub beta_2: f32,
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    #[arg(long, default_value_t = 2)]
    pub heads: usize,
    #[arg(long, default_value_t = 64)]
    pub d_model: usize,
    /// Context length of the model (learned positions).
    #[arg(long, default_value_t = 64)]
    pub n_positions: usize,
    /// Worker threads of the CPU backend (a fixed pool: one thread or two give the same weights).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Measure the model already in `--out` again (after changing the measurements) without
    /// training: rewrites the measured fields of its metrics.json.
    #[arg(long)]
    pub measure_only: bool,
    /// Stops after the first K steps of the `--steps` schedule and prints the settings and the
    /// loss curve so far as JSON on stdout, writing nothing: checks that a recipe follows the
    /// committed run (its metrics.json `loss_curve`) without the whole run.
    #[arg(long, value_name = "K")]
    pub stop_after: Option<usize>,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Steps per point of the loss curve: each point is the mean loss of every group over them.
const CURVE_EVERY: usize = 50;

/// A batch of equal-length sequences and the token each should predict next.
struct Group {
    tokens: Vec<Vec<u32>>,
    targets: Vec<u32>,
}

/// The tasks a step trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Ioi,
    Induction,
    GreaterThan,
}

impl Task {
    /// The task's name in metrics.json.
    fn name(self) -> &'static str {
        match self {
            Task::Ioi => "ioi",
            Task::Induction => "induction",
            Task::GreaterThan => "greater_than",
        }
    }
}

/// Encodes pairs' clean prompts (with `<|endoftext|>` first) and answers.
pub fn encode(tokenizer: &Gpt2Tokenizer, pairs: &[PromptPair]) -> Result<(Vec<Vec<u32>>, Vec<u32>), String> {
    let mut tokens = Vec::with_capacity(pairs.len());
    let mut targets = Vec::with_capacity(pairs.len());
    for pair in pairs {
        tokens.push(tokenizer.encode(&pair.clean, true).map_err(|e| e.to_string())?);
        targets.push(tokenizer.single_token(&pair.answer).map_err(|e| e.to_string())?);
    }
    Ok((tokens, targets))
}

/// Draws training groups. Seeds of training data have their top bit set.
struct Data<'a> {
    tokenizer: &'a Gpt2Tokenizer,
    words: Vec<u32>,
    rng: ChaCha8Rng,
    group: usize,
}

impl Data<'_> {
    fn seed(&mut self) -> u64 {
        self.rng.random::<u64>() | (1 << 63)
    }

    fn group(&mut self, task: Task) -> Result<Group, String> {
        let seed = self.seed();
        let n = self.group;
        let pairs = match task {
            Task::Ioi => {
                let template = self.rng.random_range(0..IOI_TEMPLATES.len());
                let options = IoiOptions::new(IoiCorruption::S2).with_template(template);
                ioi_prompts(self.tokenizer, n, seed, &options)
                    .map(|p| p.into_iter().map(|p| p.pair).collect())
            }
            Task::Induction => {
                let len = self.rng.random_range(3..=10);
                induction_from(&self.words, self.tokenizer, n, seed, len)
            }
            Task::GreaterThan => greater_than(self.tokenizer, n, seed),
        }
        .map_err(|e| e.to_string())?;
        let (tokens, targets) = encode(self.tokenizer, &pairs)?;
        Ok(Group { tokens, targets })
    }
}

/// Mean next-token cross-entropy of a group at its last position.
fn group_loss(model: &Gpt2, group: &Group) -> Result<Tensor<1>, String> {
    let device = model.device();
    let logits = model
        .forward(&group.tokens, &mut Hooks::none(), LogitsAt::Last)
        .map_err(|e| e.to_string())?;
    let [batch, _, vocab] = logits.dims();
    let targets: Vec<i64> = group.targets.iter().map(|&t| t as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [batch]), &device);
    Ok(CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.reshape([batch, vocab]), targets))
}

/// Learning rate at `step`: linear warm-up over the first 5%, then cosine decay to a tenth.
fn learning_rate(peak: f64, step: usize, steps: usize) -> f64 {
    let warmup = (steps / 20).max(1);
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

pub fn run(args: TrainArgs) -> Result<(), Exit> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .map_err(|e| format!("could not start {} threads: {e}", args.threads))?;
    let tokenizer_json =
        std::fs::read(&args.tokenizer).map_err(|e| format!("{}: {e}", args.tokenizer.display()))?;
    let tokenizer = Gpt2Tokenizer::from_json(&tokenizer_json).map_err(|e| e.to_string())?;
    let config = Gpt2Config::new(args.layers, args.heads, args.d_model, args.n_positions)
        .with_vocab_size(tokenizer.vocab_size());
    config.validate().map_err(|e| e.to_string())?;

    if args.measure_only {
        return Ok(measure_again(&args.out, &tokenizer)?);
    }
    if let Some(k) = args.stop_after {
        if k == 0 || k > args.steps {
            return Err(format!("--stop-after {k}: must be 1 to --steps ({})", args.steps).into());
        }
        let (_, curve) = train(&args, &config, &tokenizer, k)?;
        let mut out = settings(&args, &config);
        out["stopped_after"] = json!(k);
        out["loss_curve"] = curve;
        return files::print(&serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
    }
    let start = Instant::now();
    let (model, curve) = train(&args, &config, &tokenizer, args.steps)?;
    let train_s = start.elapsed().as_secs_f64();

    write_model(&args.out, &model, &tokenizer_json)?;
    // Measure what was written: the F16 checkpoint, loaded as any GPT-2 is.
    let cpu = patchbay_model::backend::cpu();
    let saved = load_gpt2_dir(&args.out, &cpu.device, None).map_err(|e| e.to_string())?;
    let report = report::measure(&saved, &tokenizer)?;
    let mut metrics = settings(&args, &config);
    metrics["train_seconds"] = json!((train_s * 10.0).round() / 10.0);
    metrics["loss_curve"] = curve;
    metrics["held_out"] = report.held_out;
    metrics["circuit"] = report.circuit;
    let path = args.out.join("metrics.json");
    let text = serde_json::to_string_pretty(&metrics).map_err(|e| e.to_string())? + "\n";
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    if !args.quiet {
        eprintln!("trained in {train_s:.1} s; wrote {}", args.out.display());
        eprintln!(
            "{}",
            serde_json::to_string(&metrics["held_out"]).unwrap_or_default()
        );
        eprintln!(
            "{}",
            serde_json::to_string(&metrics["circuit"]["localized_heads"]).unwrap_or_default()
        );
    }
    Ok(())
}

/// The training settings, as metrics.json records them.
fn settings(args: &TrainArgs, config: &Gpt2Config) -> serde_json::Value {
    json!({
        "seed": args.seed,
        "steps": args.steps,
        "sequences_per_step": {"ioi": args.group * args.ioi_groups, "greater_than": args.group * args.gt_groups,
            "induction": args.group * args.induction_groups},
        "learning_rate": args.lr,
        "weight_decay": decimal(args.weight_decay),
        "beta_2": decimal(args.beta_2),
        "threads": args.threads,
        "model": {
            "n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
            "n_positions": config.n_positions, "vocab_size": config.vocab_size,
        },
    })
}

/// An f32 setting as the decimal it was given as (0.95, not 0.949999988).
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

fn measure_again(out: &Path, tokenizer: &Gpt2Tokenizer) -> Result<(), String> {
    let path = out.join("metrics.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut metrics: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let cpu = patchbay_model::backend::cpu();
    let model = load_gpt2_dir(out, &cpu.device, None).map_err(|e| e.to_string())?;
    tokenizer.check_fits(&model.config).map_err(|e| e.to_string())?;
    let report = report::measure(&model, tokenizer)?;
    metrics["held_out"] = report.held_out;
    metrics["circuit"] = report.circuit;
    let text = serde_json::to_string_pretty(&metrics).map_err(|e| e.to_string())? + "\n";
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_model(out: &Path, model: &Gpt2, tokenizer_json: &[u8]) -> Result<(), String> {
    model.save_dir(out, SaveDtype::F16).map_err(|e| e.to_string())?;
    let path = out.join("tokenizer.json");
    std::fs::write(&path, tokenizer_json).map_err(|e| format!("{}: {e}", path.display()))
}

/// The training loop: AdamW on the summed group losses, on the CPU with autodiff, for the first
/// `run` steps of the `args.steps` schedule. Returns the model and the loss curve: every
/// [`CURVE_EVERY`] steps, each group's mean loss over them (`groups` names the groups' tasks).
fn train(
    args: &TrainArgs,
    config: &Gpt2Config,
    tokenizer: &Gpt2Tokenizer,
    run: usize,
) -> Result<(Gpt2, serde_json::Value), String> {
    let device = Device::flex().autodiff();
    let mut model = config.init(&device, args.seed);
    // PyTorch's epsilon and nanoGPT's β₂ for GPT-2 (burn's default epsilon, 1e-5, damps the
    // small gradients of embedding rows).
    let mut optimizer = AdamWConfig::new()
        .with_beta_2(args.beta_2)
        .with_epsilon(1e-8)
        .with_weight_decay(args.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init();
    let mut data = Data {
        tokenizer,
        words: if args.induction_groups > 0 {
            word_tokens(tokenizer)
        } else {
            Vec::new()
        },
        rng: ChaCha8Rng::seed_from_u64(args.seed),
        group: args.group,
    };
    let tasks: Vec<Task> = [
        (Task::Ioi, args.ioi_groups),
        (Task::GreaterThan, args.gt_groups),
        (Task::Induction, args.induction_groups),
    ]
    .into_iter()
    .flat_map(|(task, n)| vec![task; n])
    .collect();
    if tasks.is_empty() {
        return Err("no groups to train on".into());
    }
    let start = Instant::now();
    let mut running = Vec::new();
    let mut points = Vec::new();
    for step in 0..run {
        let groups = tasks
            .iter()
            .map(|&task| data.group(task))
            .collect::<Result<Vec<_>, _>>()?;
        let mut losses = Vec::with_capacity(groups.len());
        for group in &groups {
            losses.push(group_loss(&model, group)?);
        }
        let loss = Tensor::cat(losses, 0);
        let per_task: Vec<f32> = loss
            .to_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| format!("{e:?}"))?;
        let loss = loss.mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(learning_rate(args.lr, step, args.steps), model, grads);
        running.push(per_task);
        if (step + 1) % CURVE_EVERY == 0 {
            let n = running.len() as f32;
            let mean: Vec<f32> = (0..tasks.len())
                .map(|i| running.iter().map(|l| l[i]).sum::<f32>() / n)
                .collect();
            if !args.quiet {
                let text: Vec<String> = mean.iter().map(|m| format!("{m:.3}")).collect();
                eprintln!(
                    "step {:>5}/{}  loss {}  ({:.1} s)",
                    step + 1,
                    args.steps,
                    text.join(" "),
                    start.elapsed().as_secs_f64()
                );
            }
            points.push(json!({"step": step + 1, "loss": mean}));
            running.clear();
        }
    }
    let groups: Vec<&str> = tasks.iter().map(|t| t.name()).collect();
    Ok((model.valid(), json!({"groups": groups, "points": points})))
}
