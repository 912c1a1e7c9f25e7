//! Model folders and files a stranger might send: each gets a message that names the file and
//! the limit at fault, never a panic, a hang or an unbounded read.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use patchbay_model::backend;
use patchbay_model::{
    Gpt2Config, Gpt2Tokenizer, MAX_ADDED_TOKEN_BYTES, MAX_PROMPT_BYTES, infer_config, load_dir, load_gpt2,
    load_gpt2_dir,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> (String, Vec<u8>) {
    let dir = model_dir(name);
    (
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
}

fn load_err(config: &str, bytes: &[u8], max_binding: Option<u64>) -> String {
    load_gpt2(config, bytes, &backend::cpu().device, max_binding)
        .unwrap_err()
        .to_string()
}

/// A fresh folder under the system's temp dir, removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "patchbay-hostile-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Folder(dir)
    }

    /// A copy of a fixture folder.
    fn copy_of(name: &str) -> Self {
        let folder = Folder::new();
        for entry in std::fs::read_dir(model_dir(name)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), folder.0.join(entry.file_name())).unwrap();
        }
        folder
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on another thread and fails the test if it has not returned within 20 s (a FIFO
/// opened for reading blocks until a writer comes).
fn within_time<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || send.send(f()));
    receive
        .recv_timeout(Duration::from_secs(20))
        .expect("did not return within 20 s")
}

fn dir_err(dir: &Path) -> String {
    let dir = dir.to_path_buf();
    within_time(move || {
        load_dir(&dir, &backend::cpu().device, None)
            .err()
            .expect("an error")
            .to_string()
    })
}

fn tokenizer_json() -> Value {
    serde_json::from_slice(&std::fs::read(model_dir("tiny").join("tokenizer.json")).unwrap()).unwrap()
}

fn tokenizer_err(json: &Value) -> String {
    tokenizer_bytes_err(json.to_string().as_bytes())
}

fn tokenizer_bytes_err(bytes: &[u8]) -> String {
    match Gpt2Tokenizer::from_json(bytes) {
        Ok(_) => panic!("a tokenizer was built"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_zero_vocabulary_is_refused_before_any_arithmetic() {
    let (config, bytes) = fixture("tiny");
    let zero = config.replace("\"vocab_size\": 50257", "\"vocab_size\": 0");
    // A checkpoint that agrees: an embedding of zero rows (this panicked in `step_by`, and in
    // `clamp` with a binding limit).
    let bytes = rewrite_tensor(&bytes, "wte.weight", vec![0, 16], Some(Vec::new()));
    for binding in [None, Some(1 << 20)] {
        let err = load_err(&zero, &bytes, binding);
        assert_eq!(err, "config.json: vocab_size is 0; it must be at least 1");
    }
}

#[test]
fn absurd_sizes_are_refused_by_name_and_limit() {
    let (config, bytes) = fixture("tiny");
    let err = load_err(
        &config.replace("\"n_layer\": 3", "\"n_layer\": 100000"),
        &bytes,
        None,
    );
    assert_eq!(
        err,
        "config.json: n_layer is 100000, more than the limit of 96 (MAX_N_LAYER)"
    );
    // Within the limits, but more parameters than the file could hold.
    let wide_mlp = config.replace("\"n_embd\": 16,", "\"n_embd\": 16, \"n_inner\": 32768,");
    let err = load_err(&wide_mlp, &bytes, None);
    assert!(
        err.starts_with("config.json describes a GPT-2 of 4052192 parameters, more than model.safetensors can hold with its 3270272 bytes of tensor data"),
        "{err}"
    );
}

#[test]
fn infer_config_checks_ranks_before_indexing() {
    let (config, bytes) = random_checkpoint(1, 2, 128, 8, 5);
    assert!(infer_config(&bytes, bytes.len() as u64).is_ok(), "{config}");
    for (name, rank_one, expected) in [
        (
            "wte.weight",
            vec![50257 * 128],
            "`wte.weight` has shape [6432896], not a matrix",
        ),
        (
            "wpe.weight",
            vec![8 * 128],
            "`wpe.weight` has shape [1024], not a matrix",
        ),
        (
            "h.0.mlp.c_fc.weight",
            vec![128 * 512],
            "`h.0.mlp.c_fc.weight` has shape [65536], not a matrix",
        ),
    ] {
        let flat = rewrite_tensor(&bytes, name, rank_one, None);
        let err = infer_config(&flat, flat.len() as u64).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("config.json: cannot tell this checkpoint's shape without config.json: {expected}")
        );
    }
    let narrow_pos = rewrite_tensor(&bytes, "wpe.weight", vec![16, 64], None);
    let err = infer_config(&narrow_pos, narrow_pos.len() as u64)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`wte.weight` is 128 wide but `wpe.weight` is 64"),
        "{err}"
    );
}

/// The checkpoint with one tensor's shape relabelled, and its data replaced if `data` is given.
fn rewrite_tensor(bytes: &[u8], name: &str, shape: Vec<usize>, data: Option<Vec<u8>>) -> Vec<u8> {
    use safetensors::SafeTensors;
    use safetensors::tensor::TensorView;
    let file = SafeTensors::deserialize(bytes).unwrap();
    let tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = file
        .iter()
        .map(|(n, v)| {
            if n == name {
                let values = data.clone().unwrap_or_else(|| v.data().to_vec());
                (n.to_string(), v.dtype(), shape.clone(), values)
            } else {
                (n.to_string(), v.dtype(), v.shape().to_vec(), v.data().to_vec())
            }
        })
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn bytes_after_the_tensor_data_are_not_called_truncation() {
    let (config, mut bytes) = fixture("tiny");
    bytes.extend_from_slice(&[0; 7]);
    let err = load_err(&config, &bytes, None);
    assert!(
        err.starts_with("model.safetensors has 7 bytes after its tensor data"),
        "{err}"
    );
    let cut = &bytes[..bytes.len() - 1007];
    let err = load_err(&config, cut, None);
    assert!(err.starts_with("model.safetensors is truncated"), "{err}");
}

#[test]
fn a_header_length_past_the_limit_is_refused_without_reading_it() {
    let (config, mut bytes) = fixture("tiny");
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = load_err(&config, &bytes, None);
    assert!(
        err.contains("header length reads 18446744073709551615 bytes, more than the limit of 16777216 (MAX_SAFETENSORS_HEADER_BYTES)"),
        "{err}"
    );
    let len = bytes.len() as u64;
    bytes[..8].copy_from_slice(&len.to_le_bytes());
    let err = load_err(&config, &bytes, None);
    assert!(err.contains("the header is cut off"), "{err}");
    let err = load_err(&config, &bytes[..5], None);
    assert!(err.contains("the file has 5 bytes"), "{err}");
}

#[cfg(unix)]
#[test]
fn special_files_are_refused_before_they_are_opened() {
    let mkfifo = |path: &Path| {
        let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success());
    };

    let folder = Folder::copy_of("tiny");
    std::fs::remove_file(folder.path("model.safetensors")).unwrap();
    mkfifo(&folder.path("model.safetensors"));
    let err = dir_err(&folder.0);
    assert!(
        err.ends_with("model.safetensors is a FIFO (named pipe); a model folder must hold regular files (a link to one is fine)"),
        "{err}"
    );

    let folder = Folder::copy_of("tiny");
    std::fs::remove_file(folder.path("model.safetensors")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", folder.path("model.safetensors")).unwrap();
    let err = dir_err(&folder.0);
    assert!(err.ends_with("model.safetensors is a character device; a model folder must hold regular files (a link to one is fine)"), "{err}");

    let folder = Folder::copy_of("tiny");
    std::fs::remove_file(folder.path("config.json")).unwrap();
    std::fs::create_dir(folder.path("config.json")).unwrap();
    let err = dir_err(&folder.0);
    assert!(err.contains("config.json is a directory"), "{err}");

    let folder = Folder::copy_of("tiny");
    std::fs::remove_file(folder.path("tokenizer.json")).unwrap();
    mkfifo(&folder.path("tokenizer.json"));
    let err = dir_err(&folder.0);
    assert!(err.contains("tokenizer.json is a FIFO"), "{err}");
    let dir = folder.0.clone();
    let err = within_time(move || Gpt2Tokenizer::from_dir(&dir).err().unwrap().to_string());
    assert!(err.contains("tokenizer.json is a FIFO"), "{err}");
}

#[test]
fn files_past_their_limits_are_not_read() {
    let folder = Folder::copy_of("tiny");
    // Sparse files: their size is what is checked, before a byte is read.
    std::fs::File::options()
        .write(true)
        .open(folder.path("config.json"))
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let err = dir_err(&folder.0);
    assert!(
        err.ends_with("config.json has 2097152 bytes, more than the limit of 1048576 (MAX_CONFIG_BYTES)"),
        "{err}"
    );

    let folder = Folder::copy_of("tiny");
    std::fs::File::options()
        .write(true)
        .open(folder.path("tokenizer.json"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let err = dir_err(&folder.0);
    assert!(
        err.ends_with(
            "tokenizer.json has 67108864 bytes, more than the limit of 33554432 (MAX_TOKENIZER_FILE_BYTES)"
        ),
        "{err}"
    );

    // A header claiming far more data than the file holds: refused from the header alone.
    let folder = Folder::copy_of("tiny");
    let mut bytes = std::fs::read(folder.path("model.safetensors")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(folder.path("model.safetensors"), &bytes).unwrap();
    let err = dir_err(&folder.0);
    assert!(err.starts_with("model.safetensors is truncated"), "{err}");
    bytes = std::fs::read(model_dir("tiny").join("model.safetensors")).unwrap();
    bytes.extend_from_slice(b"trailing");
    std::fs::write(folder.path("model.safetensors"), &bytes).unwrap();
    let err = dir_err(&folder.0);
    assert!(
        err.starts_with("model.safetensors has 8 bytes after its tensor data"),
        "{err}"
    );
}

#[test]
fn a_folder_without_a_tokenizer_names_both_layouts() {
    let folder = Folder::copy_of("tiny");
    std::fs::remove_file(folder.path("tokenizer.json")).unwrap();
    let err = dir_err(&folder.0);
    assert_eq!(
        err,
        format!(
            "{} has neither tokenizer.json nor vocab.json + merges.txt; copy the model's tokenizer files into the folder",
            folder.0.display()
        )
    );
    // Half of the second layout is still neither.
    std::fs::copy(
        model_dir("tiny-prefixed").join("vocab.json"),
        folder.path("vocab.json"),
    )
    .unwrap();
    assert!(dir_err(&folder.0).contains("has neither tokenizer.json nor vocab.json + merges.txt"));
}

#[test]
fn a_tokenizer_larger_than_the_model_vocabulary_is_refused_where_they_meet() {
    let folder = Folder::new();
    let config = Gpt2Config::new(1, 2, 16, 8).with_vocab_size(1000);
    config
        .init(&backend::cpu().device, 1)
        .save_dir(&folder.0, patchbay_model::SaveDtype::F32)
        .unwrap();
    std::fs::copy(
        model_dir("tiny").join("tokenizer.json"),
        folder.path("tokenizer.json"),
    )
    .unwrap();
    // The model alone loads; paired with GPT-2's tokenizer it must not.
    assert!(load_gpt2_dir(&folder.0, &backend::cpu().device, None).is_ok());
    assert_eq!(
        dir_err(&folder.0),
        "the tokenizer has 50257 token ids but the model's vocabulary only 1000 rows (vocab_size in config.json); they are not from the same model"
    );
    let tokenizer = Gpt2Tokenizer::from_dir(&folder.0).unwrap();
    assert!(
        tokenizer
            .check_fits(&config.clone().with_vocab_size(50257))
            .is_ok()
    );
}

#[test]
fn hostile_tokenizer_files_get_messages_not_panics() {
    let full = tokenizer_json();
    let text = full.to_string();

    // Cut inside "decoder": the tokenizers crate panics in its decoder helper.
    let cut = text.find("\"decoder\"").unwrap() + 20;
    let err = tokenizer_bytes_err(&text.as_bytes()[..cut]);
    assert!(err.starts_with("tokenizer.json: EOF while parsing"), "{err}");

    // A continuing_subword_prefix longer than the merges' second parts.
    let mut prefixed = full.clone();
    prefixed["model"]["continuing_subword_prefix"] = json!("#".repeat(40));
    let err = tokenizer_err(&prefixed);
    assert!(
        err.starts_with("tokenizer.json: the merge [\"Ġ\",\"t\"] does not start its second part with the continuing_subword_prefix"),
        "{err}"
    );

    // A template naming a special token it does not define, and one naming sequence B.
    let mut template = full.clone();
    template["post_processor"]["single"] =
        json!([{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]);
    let err = tokenizer_err(&template);
    assert_eq!(
        err,
        "tokenizer.json: the post-processor's single template names the special token `[CLS]`, which its special_tokens do not define"
    );
    template["post_processor"]["single"] = json!([{"Sequence": {"id": "B", "type_id": 0}}]);
    let err = tokenizer_err(&template);
    assert!(err.contains("single template names a second sequence"), "{err}");
    let mut nested = full.clone();
    nested["post_processor"] = json!({"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}],
         "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1, 2], "tokens": ["<s>"]}}}]});
    let err = tokenizer_err(&nested);
    assert!(
        err.contains("special token `<s>` has a different number of ids and tokens"),
        "{err}"
    );

    // Truncation or padding would cut or pad prompts behind the user's back.
    let mut truncating = full.clone();
    truncating["truncation"] =
        json!({"max_length": 0, "stride": 5, "strategy": "LongestFirst", "direction": "Right"});
    assert!(tokenizer_err(&truncating).contains("`truncation` is set"));

    // Ids past the vocabulary limit.
    let mut far = full.clone();
    far["model"]["vocab"]["!"] = json!(4_000_000_000u64);
    let err = tokenizer_err(&far);
    assert!(
        err.contains("has id 4000000000, past the limit of 262144 (MAX_VOCAB_SIZE)"),
        "{err}"
    );

    // Not GPT-2's model at all.
    let mut wordpiece = full.clone();
    wordpiece["model"]["type"] = json!("WordPiece");
    assert!(tokenizer_err(&wordpiece).contains("the model is \"WordPiece\", not byte-level BPE"));
}

#[test]
fn added_tokens_are_bounded_before_the_quadratic_build() {
    let full = tokenizer_json();
    let added = |content: String, id: u64| json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false});
    // 37.5k characters took the tokenizers crate 49 s; refused before it sees them.
    let mut long = full.clone();
    long["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(added("a".repeat(37_500), 50257));
    let start = std::time::Instant::now();
    let err = tokenizer_err(&long);
    assert_eq!(
        err,
        "tokenizer.json: an added token is 37500 bytes long, more than the limit of 256 (MAX_ADDED_TOKEN_BYTES)"
    );
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());

    let mut many = full.clone();
    let tokens = many["added_tokens"].as_array_mut().unwrap();
    for i in 0..2000 {
        tokens.push(added(format!("<extra_{i}>"), 50257 + i));
    }
    let err = tokenizer_err(&many);
    assert!(
        err.contains("2001 added tokens, more than the limit of 1024 (MAX_ADDED_TOKENS)"),
        "{err}"
    );

    // At the limit, it loads.
    let mut at_limit = full;
    at_limit["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(added("b".repeat(MAX_ADDED_TOKEN_BYTES), 50257));
    let tokenizer = Gpt2Tokenizer::from_json(at_limit.to_string().as_bytes()).unwrap();
    assert_eq!(tokenizer.vocab_size(), 50258);
}

#[test]
fn prompts_are_bounded_before_tokenizing() {
    let tokenizer = Gpt2Tokenizer::from_dir(&model_dir("tiny")).unwrap();
    let long = "x".repeat(10 << 20);
    let err = tokenizer.encode(&long, true).unwrap_err().to_string();
    assert_eq!(
        err,
        "the prompt has 10485760 bytes, more than the limit of 65536 (MAX_PROMPT_BYTES)"
    );
    assert!(
        tokenizer
            .encode(&"x ".repeat(MAX_PROMPT_BYTES / 2), false)
            .is_ok()
    );
}
