//! GPT-2 medium and XL shapes as `patchbay init` writes them: the folder loads through the Hub
//! loader (driven by its config.json) with the family's shape, and one forward gives the same
//! logits as the seeded model that was never written, within 1e-5.
//!
//! XL's float32 checkpoint is 6.2 GB: `patchbay init` writes it one tensor at a time and the
//! loader reads it one tensor at a time, so each process holds the model (6.2 GB) and one
//! tensor. The reference logits are computed and the reference model dropped before the load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use patchbay_model::{GPT2_FAMILY, Gpt2, Hooks, LogitsAt, backend, load_dir};

const SEED: u64 = 11;
const PROMPT: &str = "When Mary and John went to the store";

/// A folder under the system's temp dir, removed when dropped (a failed test leaves no 6 GB file).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn logits(model: &Gpt2, ids: &[u32]) -> Vec<f32> {
    model
        .forward(&[ids.to_vec()], &mut Hooks::none(), LogitsAt::All)
        .unwrap()
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap()
}

fn init(name: &str, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_patchbay"))
        .args(["init", "--shape", name, "--seed", &SEED.to_string(), "--out"])
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "patchbay init --shape {name}");
}

/// One check at a time: XL's alone holds 6.2 GB.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn check(name: &str) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let shape = GPT2_FAMILY.iter().find(|m| m.name == name).unwrap();
    let device = backend::cpu().device;
    let dir = TempDir(std::env::temp_dir().join(format!("patchbay-family-{name}-{}", std::process::id())));
    let started = Instant::now();
    init(name, &dir.0);
    let written = std::fs::metadata(dir.0.join("model.safetensors")).unwrap().len();
    let init_s = started.elapsed().as_secs_f64();

    let (model, tokenizer) = load_dir(&dir.0, &device, None).unwrap();
    let config = &model.config;
    assert_eq!(
        (config.n_layer, config.n_head, config.n_embd, config.vocab_size),
        (shape.n_layer, shape.n_head, shape.n_embd, 50257),
        "{name}'s config.json"
    );
    assert_eq!(written, 8 + header_len(&dir.0) + 4 * config.parameters());
    let ids = tokenizer.encode(PROMPT, false).unwrap();
    assert_eq!(ids.len(), 8);
    let loaded = logits(&model, &ids);
    drop(model);
    let load_s = started.elapsed().as_secs_f64() - init_s;

    let expected = logits(&shape.config().init(&device, SEED), &ids);
    assert_eq!(loaded.len(), ids.len() * 50257);
    assert!(
        loaded.iter().all(|x| x.is_finite()),
        "{name}: a logit is not finite"
    );
    let worst = loaded
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "{name}: {written} bytes written in {init_s:.1} s, loaded and run in {load_s:.1} s; max |loaded - in memory| = {worst:e}"
    );
    assert!(
        worst <= 1e-5,
        "{name}: the loaded model's logits differ by {worst}"
    );
}

/// The length of the folder's safetensors header.
fn header_len(dir: &Path) -> u64 {
    use std::io::Read;
    let mut length = [0u8; 8];
    std::fs::File::open(dir.join("model.safetensors"))
        .unwrap()
        .read_exact(&mut length)
        .unwrap();
    u64::from_le_bytes(length)
}

#[test]
fn gpt2_medium_shape_loads_and_runs_as_init_wrote_it() {
    check("gpt2-medium");
}

#[test]
fn gpt2_xl_shape_loads_and_runs_as_init_wrote_it() {
    check("gpt2-xl");
}
