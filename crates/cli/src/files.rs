//! What the CLI reads and writes, safely: spec files read as bounded regular files; standard
//! output that ends quietly when its reader goes away (`patchbay run --json | head`); and
//! output folders checked for writability before a run starts, written file by file through a
//! temporary file and a rename (an interrupted run leaves the old file or the new one, never
//! half of one), and cleared of the files an earlier run wrote that this one does not.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use patchbay_patching::ExperimentSpec;
use patchbay_patching::spec::MAX_SPEC_BYTES;
use serde_json::Value;

/// How a command ends other than by success.
#[derive(Debug)]
pub enum Exit {
    /// A failure, said in one line on stderr (exit status 1).
    Error(String),
    /// Standard output was closed by its reader: a normal end (exit status 0, no message).
    Quiet,
}

impl From<String> for Exit {
    fn from(message: String) -> Self {
        Exit::Error(message)
    }
}

/// Writes `text` and a newline to standard output.
pub fn print(text: &str) -> Result<(), Exit> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(Exit::Quiet),
        Err(e) => Err(Exit::Error(format!("standard output: {e}"))),
    }
}

/// The text of a regular file of at most `limit` bytes.
pub fn read_text(path: &Path, limit: usize) -> Result<String, String> {
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{name}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{name} is not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() > limit {
        return Err(format!("{name} is larger than {limit} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 text"))
}

/// The experiment spec in `path`.
pub fn read_spec(path: &Path) -> Result<ExperimentSpec, String> {
    let text = read_text(path, MAX_SPEC_BYTES)?;
    ExperimentSpec::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// An output folder being written.
pub struct OutDir {
    dir: PathBuf,
    /// What the previous run's manifest listed.
    earlier: Vec<String>,
    written: Vec<String>,
}

impl OutDir {
    /// Creates `dir` if needed and checks that files can be written there, before any work;
    /// `manifest` is the file whose `files` field lists what a run wrote.
    pub fn open(dir: &Path, manifest: &str) -> Result<Self, String> {
        let fail = |e: std::io::Error| format!("{}: cannot write there ({e})", dir.display());
        std::fs::create_dir_all(dir).map_err(fail)?;
        let probe = dir.join(format!(".patchbay-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(fail)?;
        std::fs::remove_file(&probe).map_err(fail)?;
        let earlier = read_text(
            &dir.join(manifest),
            patchbay_patching::analysis::results::MAX_RESULTS_BYTES,
        )
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.get("files")?.clone()).ok())
        .unwrap_or_default();
        Ok(OutDir {
            dir: dir.to_path_buf(),
            earlier,
            written: Vec::new(),
        })
    }

    /// Writes `name` (a plain file name) through a temporary file and a rename.
    pub fn write(&mut self, name: &str, bytes: impl AsRef<[u8]>) -> Result<(), String> {
        let path = self.dir.join(name);
        let temp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&temp, bytes)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                format!("{}: {e}", path.display())
            })?;
        self.written.push(name.to_string());
        Ok(())
    }

    /// Writes the manifest, `document` with a `files` field listing every file this run wrote,
    /// last, and removes what the earlier run wrote that this one did not.
    pub fn finish(mut self, manifest: &str, mut document: Value) -> Result<(), String> {
        let mut files = self.written.clone();
        files.push(manifest.to_string());
        document["files"] = Value::from(files.clone());
        let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
        self.write(manifest, text)?;
        for stale in self.earlier.iter().filter(|f| !files.contains(f)) {
            // Only plain names an earlier run listed: never a path out of the folder.
            if Path::new(stale).file_name().is_some_and(|n| n == stale.as_str()) {
                match std::fs::remove_file(self.dir.join(stale)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("{}: {e}", self.dir.join(stale).display())),
                }
            }
        }
        Ok(())
    }
}
