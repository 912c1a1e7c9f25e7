//! Reading a model folder a stranger may have sent: regular files only, each read bounded.
//!
//! A FIFO would block the reader forever and a link to `/dev/zero` would never end, so a path's
//! metadata is checked before it is opened, and every read stops at a limit the caller names.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use safetensors::tensor::Metadata;

use crate::ModelError;
use crate::loader::{header_length, parse_header};

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a non-regular file is, for the message that refuses it.
fn kind(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Opens `path` (following links) if it is a regular file, with its size.
fn open_regular(path: &Path) -> Result<(File, u64), ModelError> {
    let refuse = |file_type| ModelError::NotAFile {
        path: path.display().to_string(),
        kind: kind(file_type),
    };
    let metadata = std::fs::metadata(path).map_err(io_error(path))?;
    if !metadata.is_file() {
        return Err(refuse(metadata.file_type()));
    }
    let file = File::open(path).map_err(io_error(path))?;
    // The path may have been swapped between the check and the open.
    let metadata = file.metadata().map_err(io_error(path))?;
    if !metadata.is_file() {
        return Err(refuse(metadata.file_type()));
    }
    Ok((file, metadata.len()))
}

/// Reads exactly `len` more bytes of `file` into `into`. With `last`, these must be the file's
/// last bytes: it fails if the file holds more (it grew since its size was read).
fn read_exact_len(
    file: &mut File,
    path: &Path,
    len: u64,
    last: bool,
    into: &mut Vec<u8>,
) -> Result<(), ModelError> {
    let start = into.len() as u64;
    file.take(len + u64::from(last))
        .read_to_end(into)
        .map_err(io_error(path))?;
    let read = into.len() as u64 - start;
    if read != len {
        return Err(ModelError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(format!(
                "the file changed while it was read ({read} bytes where its size said {len})"
            )),
        });
    }
    Ok(())
}

/// The bytes of the regular file `path`, refused if larger than `limit` (named `limit_name`).
pub(crate) fn read_bounded(
    path: &Path,
    limit: usize,
    limit_name: &'static str,
) -> Result<Vec<u8>, ModelError> {
    let (mut file, len) = open_regular(path)?;
    if len > limit as u64 {
        return Err(ModelError::TooLarge {
            path: path.display().to_string(),
            size: len,
            limit,
            limit_name,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    read_exact_len(&mut file, path, len, true, &mut bytes)?;
    Ok(bytes)
}

/// The safetensors file `path`, open, with the length of its header and its tensors. The
/// header is read and checked (its length bounded, its tensors against the file's size, and
/// `check` on them); the tensor data stays in the file, for [`read_range`] to read one tensor
/// at a time, so that a load never holds a second copy of the whole checkpoint.
pub(crate) fn open_safetensors(
    path: &Path,
    check: impl FnOnce(&Metadata) -> Result<(), ModelError>,
) -> Result<(File, usize, Metadata), ModelError> {
    let (mut file, len) = open_regular(path)?;
    let mut bytes = Vec::new();
    read_exact_len(&mut file, path, len.min(8), len < 8, &mut bytes)?;
    let n = header_length(&bytes, len)?;
    read_exact_len(&mut file, path, n as u64, false, &mut bytes)?;
    let metadata = parse_header(&bytes, len)?;
    check(&metadata)?;
    Ok((file, n, metadata))
}

/// Bytes `start..end` of `file` (at `path`), which must still hold them.
pub(crate) fn read_range(file: &mut File, path: &Path, start: u64, end: u64) -> Result<Vec<u8>, ModelError> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(start)).map_err(io_error(path))?;
    let mut bytes = Vec::with_capacity((end - start) as usize);
    read_exact_len(file, path, end - start, false, &mut bytes)?;
    Ok(bytes)
}
