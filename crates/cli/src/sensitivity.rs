//! `patchbay sensitivity SPEC.json`: the spec's dataset under every combination of corruption,
//! metric, direction and seed; prints or writes the cases, their Jaccard and rank-correlation
//! matrices, Table 1 (heads detected per known class) and, with several seeds, how stable each
//! setting's detected set is across them (stability.csv).

use std::path::PathBuf;

use clap::Args;
use patchbay_model::load_dir;
use patchbay_patching::analysis::sensitivity::{Choices, CorruptionChoice, Sensitivity, sensitivity};
use patchbay_patching::spec::dataset::IoiNames;
use patchbay_patching::{Direction, MetricKind};

use crate::BackendChoice;
use crate::files::{Exit, OutDir, print, read_spec};
use crate::run::{known_circuit, model_dir};

#[derive(Args)]
pub struct SensitivityArgs {
    /// The base experiment (usually with a generated `dataset`).
    spec: PathBuf,
    /// Corruptions: str, gn, and for generated IOI datasets str:s2, str:s1_io, str:abc, gn:s2, ...
    #[arg(long, value_delimiter = ',', default_value = "str,gn")]
    corruptions: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "logit_diff,prob,kl")]
    metrics: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "denoising,noising")]
    directions: Vec<String>,
    /// Seeds of the noise and of the generated dataset (default: the spec's).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Noise samples for GN.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Folder for sensitivity.json and CSVs.
    #[arg(long, required_unless_present = "json")]
    out: Option<PathBuf>,
}

fn corruption(text: &str) -> Result<CorruptionChoice, String> {
    let (method, names) = text.split_once(':').map_or((text, None), |(m, n)| (m, Some(n)));
    let names = names
        .map(|n| match n {
            "s2" => Ok(IoiNames::S2),
            "s1_io" => Ok(IoiNames::S1Io),
            "abc" => Ok(IoiNames::Abc),
            other => Err(format!("`{other}` is not s2, s1_io or abc")),
        })
        .transpose()?;
    match method {
        "str" => Ok(CorruptionChoice::Str(names)),
        "gn" => Ok(CorruptionChoice::Gn(names)),
        other => Err(format!("`{other}` is not a corruption: use str or gn")),
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("`{text}` is not a {what}"))
}

/// The file that lists what a run wrote into its folder.
const MANIFEST: &str = "sensitivity.json";

pub fn run(args: SensitivityArgs) -> Result<(), Exit> {
    let spec = read_spec(&args.spec)?;
    let default_seed = spec.dataset.as_ref().map_or(spec.seed, |d| d.seed);
    let choices = Choices {
        corruptions: args
            .corruptions
            .iter()
            .map(|c| corruption(c))
            .collect::<Result<_, _>>()?,
        metrics: args
            .metrics
            .iter()
            .map(|m| parse::<MetricKind>("metric", m))
            .collect::<Result<_, _>>()?,
        directions: args
            .directions
            .iter()
            .map(|d| parse::<Direction>("direction", d))
            .collect::<Result<_, _>>()?,
        seeds: if args.seeds.is_empty() {
            vec![default_seed]
        } else {
            args.seeds.clone()
        },
        samples: args.samples,
    };
    choices.check().map_err(|e| e.to_string())?;
    let dir = model_dir(&spec, &args.spec, args.model)?;
    let out = match (&args.out, args.json) {
        (Some(out), false) => Some(OutDir::open(out, MANIFEST)?),
        _ => None,
    };
    let backend = args.backend.create()?;
    let (model, tokenizer) =
        load_dir(&dir, &backend.device, backend.max_binding_bytes).map_err(|e| e.to_string())?;
    let circuit = known_circuit(&dir, &model.config)?;
    let mut report = crate::progress::on_stderr(args.json, "");
    let result = pollster::block_on(sensitivity(
        &model,
        &tokenizer,
        &spec,
        &choices,
        circuit.as_ref().map(|c| c.classes.as_slice()),
        &crate::run_options(&backend),
        &mut report,
    ))
    .map_err(|e| e.to_string())?;
    let Some(mut out) = out else {
        return print(&serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?);
    };
    eprintln!();
    write(&mut out, &result)?;
    out.finish(
        MANIFEST,
        serde_json::to_value(&result).map_err(|e| e.to_string())?,
    )?;
    eprintln!(
        "wrote {}",
        args.out.as_deref().unwrap_or(std::path::Path::new(".")).display()
    );
    Ok(())
}

fn write(out: &mut OutDir, result: &Sensitivity) -> Result<(), String> {
    let labels: Vec<String> = result.cases.iter().map(|c| format!("\"{}\"", c.label)).collect();
    let matrix = |rows: Vec<Vec<String>>| {
        let mut csv = format!("case,{}\n", labels.join(","));
        for (label, row) in labels.iter().zip(rows) {
            csv.push_str(&format!("{label},{}\n", row.join(",")));
        }
        csv
    };
    out.write(
        "jaccard.csv",
        matrix(
            result
                .jaccard
                .iter()
                .map(|r| r.iter().map(|v| format!("{v:.4}")).collect())
                .collect(),
        ),
    )?;
    out.write(
        "spearman.csv",
        matrix(
            result
                .spearman
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|v| v.map_or(String::new(), |v| format!("{v:.4}")))
                        .collect()
                })
                .collect(),
        ),
    )?;
    if !result.stability.is_empty() {
        let mut csv = "setting,seeds,jaccard_mean,jaccard_min,components\n".to_string();
        for s in &result.stability {
            let seeds: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
            // Each component as its axis labels joined by dots ("1.0" for head 1.0), with the
            // fraction of seeds that detect it.
            let components: Vec<String> = s
                .components
                .iter()
                .map(|f| format!("{} ({:.2})", f.name(&result.axes), f.fraction))
                .collect();
            csv.push_str(&format!(
                "\"{}\",\"{}\",{:.4},{:.4},\"{}\"\n",
                s.setting,
                seeds.join(" "),
                s.jaccard_mean,
                s.jaccard_min,
                components.join(" ").replace('"', "\"\"")
            ));
        }
        out.write("stability.csv", csv)?;
    }
    if let Some(table) = &result.table {
        let mut csv = format!("class,heads,{}\n", labels.join(","));
        let heads = |h: &[[usize; 2]]| {
            h.iter()
                .map(|[l, h]| format!("{l}.{h}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for row in table {
            let cells: Vec<String> = row.detected.iter().map(|d| format!("\"{}\"", heads(d))).collect();
            csv.push_str(&format!(
                "\"{}\",\"{}\",{}\n",
                row.class,
                heads(&row.heads),
                cells.join(",")
            ));
        }
        out.write("table1.csv", csv)?;
    }
    Ok(())
}
