//! Loading a checkpoint as its bytes arrive (`StreamLoader`, what the page does): in chunks of
//! any size, it gives the model `load_gpt2` gives from the whole file, bit for bit, and a
//! broken or cut-off stream is refused with the message the whole file gets.

mod common;

use common::*;
use patchbay_model::{
    Gpt2, Gpt2Config, Hooks, LogitsAt, ModelError, SaveDtype, StreamLoader, backend, load_gpt2,
};

fn fixture(name: &str) -> (String, Vec<u8>) {
    let dir = model_dir(name);
    (
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
}

/// Streams `bytes` in chunks of the sizes `sizes` gives, in turn, and finishes.
fn stream(
    config: &str,
    bytes: &[u8],
    file_len: Option<u64>,
    sizes: &[usize],
    binding: Option<u64>,
) -> Result<Gpt2, ModelError> {
    let mut loader = StreamLoader::new(Gpt2Config::from_json(config)?, file_len);
    let mut rest = bytes;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).min(rest.len()));
        loader.push(chunk)?;
        rest = tail;
    }
    assert_eq!(loader.received(), bytes.len() as u64);
    loader.finish(&backend::cpu().device, binding)
}

fn logits(model: &Gpt2) -> Vec<f32> {
    let tokens = vec![0, 5, 17, (model.config.vocab_size - 1) as u32];
    model
        .forward(&[tokens], &mut Hooks::none(), LogitsAt::All)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn any_chunking_gives_the_whole_files_model_bit_for_bit() {
    let device = backend::cpu().device;
    let half = Gpt2Config::new(2, 2, 16, 8).with_vocab_size(120);
    let generated = (
        half.to_hub_json(),
        half.init(&device, 5).to_safetensors(SaveDtype::F16).unwrap(),
    );
    for (name, (config, bytes)) in [
        ("tiny", fixture("tiny")),
        ("tiny-prefixed", fixture("tiny-prefixed")),
        ("f16", generated),
    ] {
        for (sizes, file_len, binding) in [
            (vec![bytes.len()], Some(bytes.len() as u64), None),
            (vec![1], None, None),
            (vec![3, 8, 65_536, 7], Some(bytes.len() as u64), Some(4096)),
            (vec![4096], None, Some(1 << 20)),
        ] {
            let whole = logits(&load_gpt2(&config, &bytes, &device, binding).unwrap());
            let model = stream(&config, &bytes, file_len, &sizes, binding).unwrap();
            let streamed = logits(&model);
            let diff = whole
                .iter()
                .zip(&streamed)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                streamed == whole,
                "{name} in chunks of {sizes:?}, binding {binding:?}: logits differ by up to {diff}"
            );
            if binding == Some(4096) {
                assert!(
                    model.wte.chunks.len() > 1,
                    "{name}: the embedding is split as load_gpt2 splits it"
                );
            }
        }
    }
}

#[test]
fn a_broken_stream_gets_the_whole_files_message() {
    let (config, bytes) = fixture("tiny");
    let len = Some(bytes.len() as u64);
    let whole = |b: &[u8]| {
        load_gpt2(&config, b, &backend::cpu().device, None)
            .unwrap_err()
            .to_string()
    };
    let streamed = |b: &[u8], file_len| {
        stream(&config, b, file_len, &[1000], None)
            .unwrap_err()
            .to_string()
    };

    // Cut off: told at the end when the size was not known, at the header when it was.
    let cut = &bytes[..bytes.len() - 1000];
    assert_eq!(streamed(cut, None), whole(cut));
    assert_eq!(streamed(cut, Some(cut.len() as u64)), whole(cut));
    // A download that stops early although its size was announced.
    let err = streamed(cut, len);
    assert!(err.contains("truncated") && err.contains("tensor `"), "{err}");

    // Bytes after the data.
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 10]);
    assert_eq!(streamed(&long, None), whole(&long));
    assert_eq!(streamed(&long, Some(long.len() as u64)), whole(&long));

    // Not a safetensors file at all, and a file that ends inside its header.
    let page = b"<!DOCTYPE html><html>404 Not Found</html>";
    assert_eq!(streamed(page, Some(page.len() as u64)), whole(page));
    let err = streamed(&bytes[..50], None);
    assert!(err.contains("inside its header"), "{err}");

    // The wrong model: shapes are checked before any tensor data is taken.
    let wide = config.replace("\"n_embd\": 16", "\"n_embd\": 32");
    let mut loader = StreamLoader::new(Gpt2Config::from_json(&wide).unwrap(), len);
    let n = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let err = loader.push(&bytes[..n]).unwrap_err().to_string();
    assert!(err.contains("`wte.weight` has shape [50257, 16]"), "{err}");
    // And the load is over.
    let err = loader.push(&bytes[n..]).unwrap_err().to_string();
    assert!(err.contains("already failed"), "{err}");
}
