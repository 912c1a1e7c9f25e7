//! Seeded mutation fuzzing on stable Rust (no nightly, so no cargo-fuzz), shared by the
//! workspace's fuzz tests. Enabled by the `fuzz` feature; only tests turn it on.
//!
//! The convention `scripts/fuzz.sh` relies on (its header says the same):
//! - a fuzz test lives in an integration-test file named `tests/fuzz_*.rs`, and each fuzz test
//!   function in it is named `fuzz_*`;
//! - it drives one [`Fuzz`], which reads its budget and seed from the environment, so that plain
//!   `cargo test --release` (CI) runs it for [`DEFAULT_SECONDS`] and `scripts/fuzz.sh` for longer.
//!
//! Environment:
//! - `PATCHBAY_FUZZ_SECONDS`: seconds each fuzz test runs (default [`DEFAULT_SECONDS`]);
//! - `PATCHBAY_FUZZ_SEED`: the base seed (default 0, so CI is reproducible);
//! - `PATCHBAY_FUZZ_CASE`: run only this case number, to reproduce a failure.
//!
//! Each case draws from its own ChaCha8 stream, seeded from the base seed, the test's name and
//! the case number, so a failure reproduces from the three numbers its message prints.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rand::rngs::ChaCha8Rng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

/// Seconds each fuzz test runs when `PATCHBAY_FUZZ_SECONDS` is not set: the workspace's fuzz
/// tests together stay under half a minute of a `cargo test --release` on two cores.
pub const DEFAULT_SECONDS: f64 = 4.0;

/// One fuzz test's budget and seed.
pub struct Fuzz {
    name: &'static str,
    seed: u64,
    budget: Duration,
    only: Option<u64>,
}

/// One case: its random stream and a note of what was done to the input.
pub struct Case {
    pub rng: ChaCha8Rng,
    notes: Vec<String>,
}

impl Case {
    /// Records a step of building this case's input, for the failure message.
    pub fn note(&mut self, note: impl Into<String>) {
        let mut note = note.into();
        if note.len() > 160 {
            let cut = (0..=160).rev().find(|&i| note.is_char_boundary(i)).unwrap_or(0);
            note.truncate(cut);
            note.push('…');
        }
        self.notes.push(note);
    }

    /// A uniform index below `n` (which must be positive).
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

/// SplitMix64: spreads a seed over 64 bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Fuzz {
    /// A fuzz test named `name` (its function name), with the budget and seed of the
    /// environment.
    pub fn new(name: &'static str) -> Self {
        let seconds: f64 = env("PATCHBAY_FUZZ_SECONDS").unwrap_or(DEFAULT_SECONDS);
        Fuzz {
            name,
            seed: env("PATCHBAY_FUZZ_SEED").unwrap_or(0),
            budget: Duration::from_secs_f64(seconds.max(0.0)),
            only: env("PATCHBAY_FUZZ_CASE"),
        }
    }

    /// Runs cases until the budget is spent (at least one). `body` builds an input from the
    /// case's stream, feeds it to the code under test and returns `Err` for a wrong outcome;
    /// a panic or an `Err` fails the test with the seed, the case and its notes. Returns the
    /// number of cases run.
    pub fn run(&self, mut body: impl FnMut(&mut Case) -> Result<(), String>) -> u64 {
        let start = Instant::now();
        let name_hash = self.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let mut cases = 0;
        let numbers: Box<dyn Iterator<Item = u64>> = match self.only {
            Some(case) => Box::new(std::iter::once(case)),
            None => Box::new(0..),
        };
        for number in numbers {
            let mut case = Case {
                rng: ChaCha8Rng::seed_from_u64(mix(self.seed ^ mix(name_hash ^ mix(number)))),
                notes: Vec::new(),
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| body(&mut case))).unwrap_or_else(|payload| {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(format!("panicked: {message}"))
            });
            if let Err(failure) = outcome {
                panic!(
                    "{name} case {number} failed: {failure}\n  input: {notes}\n  reproduce: PATCHBAY_FUZZ_SEED={seed} PATCHBAY_FUZZ_CASE={number} cargo test --release {name}",
                    name = self.name,
                    notes = case.notes.join("; "),
                    seed = self.seed,
                );
            }
            cases += 1;
            if start.elapsed() >= self.budget {
                break;
            }
        }
        eprintln!(
            "{}: {cases} cases in {:.1} s (PATCHBAY_FUZZ_SEED={})",
            self.name,
            start.elapsed().as_secs_f64(),
            self.seed
        );
        cases
    }
}

/// Integers that break size arithmetic, as little-endian u64s.
const INTERESTING: [u64; 10] = [
    0,
    1,
    7,
    8,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

/// Applies one to four byte-level mutations to `input`: bit flips, interesting bytes and
/// 64-bit integers, insertions, deletions, truncation, duplication and splicing with another
/// input of `corpus`. Positions favour the first 4 KiB, where headers live.
pub fn mutate_bytes(case: &mut Case, input: &mut Vec<u8>, corpus: &[&[u8]]) {
    for _ in 0..1 + case.below(4) {
        let len = input.len();
        let at = |case: &mut Case, len: usize| {
            if len == 0 {
                0
            } else if case.chance(0.5) {
                case.below(len.min(4096))
            } else {
                case.below(len)
            }
        };
        match case.below(9) {
            0 if len > 0 => {
                let i = at(case, len);
                let bit = case.below(8);
                input[i] ^= 1 << bit;
                case.note(format!("flip bit {bit} of byte {i}"));
            }
            1 if len > 0 => {
                let i = at(case, len);
                let b = *[0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'[', b',', b'-']
                    .choose(&mut case.rng)
                    .expect("non-empty");
                input[i] = b;
                case.note(format!("byte {i} = {b:#04x}"));
            }
            2 => {
                let i = at(case, len + 1).min(len);
                let n = 1 + case.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| case.rng.random()).collect();
                input.splice(i..i, bytes);
                case.note(format!("insert {n} random bytes at {i}"));
            }
            3 if len > 0 => {
                let i = at(case, len);
                let n = 1 + case.below((len - i).min(64));
                input.drain(i..i + n);
                case.note(format!("delete {n} bytes at {i}"));
            }
            4 => {
                let n = case.below(len + 1);
                input.truncate(n);
                case.note(format!("truncate to {n} bytes"));
            }
            5 if len >= 8 => {
                let i = at(case, len - 7).min(len - 8);
                let value = *INTERESTING.choose(&mut case.rng).expect("non-empty");
                let value = if case.chance(0.3) {
                    value.wrapping_add(case.below(3) as u64).wrapping_sub(1)
                } else {
                    value
                };
                input[i..i + 8].copy_from_slice(&value.to_le_bytes());
                case.note(format!("u64 at {i} = {value}"));
            }
            6 if len > 0 => {
                let i = at(case, len);
                let n = 1 + case.below((len - i).min(256));
                let chunk = input[i..i + n].to_vec();
                let to = case.below(len + 1);
                input.splice(to..to, chunk);
                case.note(format!("copy {n} bytes from {i} to {to}"));
            }
            7 if !corpus.is_empty() => {
                let other = corpus[case.below(corpus.len())];
                let cut = case.below(len + 1);
                let from = case.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
                case.note(format!(
                    "splice: first {cut} bytes, then another input from {from}"
                ));
            }
            _ => {
                let n = 1 + case.below(8);
                input.extend((0..n).map(|_| case.rng.random::<u8>()));
                case.note(format!("append {n} random bytes"));
            }
        }
    }
}

/// JSON pointers of every node of `value`, the root included.
fn pointers(value: &Value, at: String, into: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), into);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{key}"), into);
            }
        }
        _ => {}
    }
    into.push(at);
}

/// Applies one to four structure-aware mutations to a JSON document: numbers become 0, -1,
/// huge, fractional or off by one; strings become empty, long, odd Unicode or a word of
/// `dictionary`; arrays lose or gain a rank, an element or their order; objects lose a key or
/// gain one from `dictionary`; any node may become null, another type, or disappear.
pub fn mutate_json(case: &mut Case, value: &mut Value, dictionary: &[&str]) {
    for _ in 0..1 + case.below(4) {
        let mut all = Vec::new();
        pointers(value, String::new(), &mut all);
        let pointer = all[case.below(all.len())].clone();
        let word = |case: &mut Case| -> String {
            dictionary
                .choose(&mut case.rng)
                .map_or_else(|| "x".to_string(), |w| w.to_string())
        };
        let Some(node) = value.pointer_mut(&pointer) else {
            continue;
        };
        let replacement: Option<Value> = match (node.clone(), case.below(4)) {
            (Value::Number(n), 0 | 1) => {
                let choices = [
                    serde_json::json!(0),
                    serde_json::json!(-1),
                    serde_json::json!(u64::MAX),
                    serde_json::json!(i64::MIN),
                    serde_json::json!(1e300),
                    serde_json::json!(0.5),
                    serde_json::json!(n.as_u64().map_or(1, |v| v.wrapping_add(1))),
                    serde_json::json!(n.as_u64().map_or(0, |v| v.saturating_sub(1))),
                    serde_json::json!(n.as_u64().map_or(2, |v| v.saturating_mul(1000))),
                    serde_json::json!(1u64 << 32),
                ];
                Some(choices[case.below(choices.len())].clone())
            }
            (Value::String(s), 0 | 1) => Some(Value::String(match case.below(6) {
                0 => String::new(),
                1 => s.repeat(2 + case.below(300)),
                2 => format!("{s}\u{10FFFF}é\u{0}"),
                3 => s.chars().take(case.below(s.chars().count() + 1)).collect(),
                4 => "a".repeat(case.below(5000)),
                _ => word(case),
            })),
            (Value::Array(items), 0 | 1) => match case.below(5) {
                // One rank less.
                0 => items.first().cloned(),
                // One rank more.
                1 => Some(Value::Array(vec![Value::Array(items)])),
                2 => {
                    let mut items = items;
                    if !items.is_empty() {
                        let i = case.below(items.len());
                        let item = items[i].clone();
                        items.insert(i, item);
                    }
                    Some(Value::Array(items))
                }
                3 => {
                    let mut items = items;
                    if !items.is_empty() {
                        items.remove(case.below(items.len()));
                    }
                    Some(Value::Array(items))
                }
                _ => Some(Value::Array(items.into_iter().rev().collect())),
            },
            (Value::Object(mut map), 0 | 1) => {
                if !map.is_empty() && case.chance(0.5) {
                    let key = map.keys().nth(case.below(map.len())).cloned().expect("a key");
                    map.remove(&key);
                } else {
                    let key = word(case);
                    let item = match case.below(4) {
                        0 => Value::String(word(case)),
                        1 => serde_json::json!(case.below(100)),
                        2 => Value::Null,
                        _ => serde_json::json!([]),
                    };
                    map.insert(key, item);
                }
                Some(Value::Object(map))
            }
            (_, 2) => Some(match case.below(6) {
                0 => Value::Null,
                1 => Value::String(word(case)),
                2 => serde_json::json!(case.below(3) as i64 - 1),
                3 => serde_json::json!({}),
                4 => serde_json::json!([]),
                _ => Value::Bool(case.chance(0.5)),
            }),
            // Remove the node from its parent.
            _ => None,
        };
        match replacement {
            Some(new) => {
                case.note(format!("{pointer} = {new}"));
                *node = new;
            }
            None => {
                let Some((parent, last)) = pointer.rsplit_once('/') else {
                    continue;
                };
                case.note(format!("remove {pointer}"));
                match value.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = last.parse::<usize>()
                            && i < items.len()
                        {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A random string for a tokenizer: ASCII words, whitespace runs, multi-byte characters,
/// control characters, lone combining marks, pieces of `dictionary` (special tokens, say), or
/// random Unicode scalar values.
pub fn random_text(case: &mut Case, dictionary: &[&str]) -> String {
    let mut text = String::new();
    for _ in 0..case.below(12) {
        match case.below(7) {
            0 => text.push_str(["the", " Mary", " John", "When", "1234", " went"][case.below(6)]),
            1 => text.push_str(&" \t\n\r".repeat(1 + case.below(3))[..1 + case.below(4)]),
            2 => text.push_str(["é", "日本", "☕", "😀", "\u{301}", "\u{200d}", "ﬁ"][case.below(7)]),
            3 => text.push(char::from(case.below(32) as u8)),
            4 if !dictionary.is_empty() => text.push_str(dictionary[case.below(dictionary.len())]),
            5 => text.push_str(&"x".repeat(case.below(2000))),
            _ => {
                if let Some(c) = char::from_u32(case.rng.random_range(0..0x11_0000)) {
                    text.push(c);
                }
            }
        }
    }
    text
}
