//! Streaming GGUF v3 writer.
//!
//! Declare metadata and every tensor's name, shape and type first; then stream each tensor's
//! data in declaration order (in as many chunks as you like), so only one chunk need be in memory
//! at a time and a model larger than RAM can be written. The header (metadata and tensor infos)
//! goes out before the first data byte; each tensor's data is padded to the alignment.
//!
//! Everything is written to an anonymous file in the target's directory
//! ([`crate::atomic_file::AtomicFile`]) that [`GgufWriter::finish`] names as the target. Dropping the
//! writer before `finish`, an error, or a killed process leaves nothing behind (on Linux; elsewhere
//! at most a hidden `.NAME.*.tmp` file), never a partial file under the target name. Because the target is replaced by a rename, never rewritten in
//! place, a file that is open (even memory-mapped) as an input keeps its old contents for as long
//! as it stays open, even when it is also the target.
//!
//! ```no_run
//! use kquants::gguf::{GgufWriter, Value};
//! use kquants::QuantType;
//! let mut w = GgufWriter::create("out.gguf")?;
//! w.add_metadata("general.architecture", Value::from("llama"))?;
//! w.add_tensor_info("w", &[4, 2], QuantType::F32)?; // ne order: 2 rows of 4
//! w.write_tensor_data(bytemuck::cast_slice(&[0f32; 8]))?;
//! w.finish()?;
//! # Ok::<(), kquants::Error>(())
//! ```

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::atomic_file::AtomicFile;

use super::value::{encode_str, Value};
use super::{Metadata, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::error::{Error, Result};
use crate::types::QuantType;

/// Streaming GGUF v3 writer; see the module docs.
pub struct GgufWriter {
    target: PathBuf,
    alignment: usize,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
    next_offset: usize,
    tmp: Option<BufWriter<AtomicFile>>,
    header_written: bool,
    /// Index of the tensor whose data is being written, and bytes of it written so far.
    cur: usize,
    cur_written: usize,
    failed: bool,
}

fn align_up(n: usize, a: usize) -> Option<usize> {
    n.checked_add(a - 1).map(|x| x / a * a)
}

impl GgufWriter {
    /// Start writing `path` with the default alignment (32). The temporary file is created now,
    /// so a missing or read-only directory fails here.
    pub fn create(path: impl AsRef<Path>) -> Result<GgufWriter> {
        GgufWriter::with_alignment(path, DEFAULT_ALIGNMENT)
    }

    /// Start writing `path` with tensor data aligned to `alignment` bytes (a power of two). A
    /// non-default alignment is recorded as `general.alignment`.
    pub fn with_alignment(path: impl AsRef<Path>, alignment: usize) -> Result<GgufWriter> {
        let target = path.as_ref().to_path_buf();
        let mut w = GgufWriter {
            target,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Metadata::default(),
            tensors: Vec::new(),
            names: HashSet::new(),
            next_offset: 0,
            tmp: None,
            header_written: false,
            cur: 0,
            cur_written: 0,
            failed: false,
        };
        if alignment != DEFAULT_ALIGNMENT {
            let a = u32::try_from(alignment).map_err(|_| Error::value(format!("alignment {alignment} is too large")))?;
            w.add_metadata("general.alignment", Value::U32(a))?;
        }
        let tmp = AtomicFile::create(&w.target)?;
        w.tmp = Some(BufWriter::with_capacity(1 << 20, tmp));
        Ok(w)
    }

    /// The data alignment.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Tensors declared so far.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn before_header(&self, what: &str) -> Result<()> {
        if self.failed {
            return Err(Error::value("the GGUF writer failed earlier and cannot continue"));
        }
        if self.header_written {
            return Err(Error::value(format!("cannot {what} after tensor data has started")));
        }
        Ok(())
    }

    /// Add a metadata pair. Keys must be unique. `general.alignment` must be a power-of-two `u32`
    /// and can only be set before any tensor is declared.
    pub fn add_metadata(&mut self, key: &str, value: Value) -> Result<()> {
        self.before_header("add metadata")?;
        if self.metadata.get(key).is_some() && !(key == "general.alignment" && self.tensors.is_empty()) {
            return Err(Error::value(format!("duplicate metadata key {key:?}")));
        }
        if key == "general.alignment" {
            match value {
                Value::U32(a) if a != 0 && a.is_power_of_two() => {
                    if !self.tensors.is_empty() {
                        return Err(Error::value("general.alignment must be set before tensors are added"));
                    }
                    self.alignment = a as usize;
                }
                ref v => {
                    return Err(Error::value(format!(
                        "general.alignment must be a non-zero power of two of type u32, got {v:?}"
                    )))
                }
            }
        }
        self.metadata.set(key, value);
        Ok(())
    }

    /// Declare a tensor: `dims` in GGUF `ne[]` order (row length first). Returns its info
    /// (offset within the data section and size in bytes).
    pub fn add_tensor_info(&mut self, name: &str, dims: &[usize], ty: QuantType) -> Result<&TensorInfo> {
        self.before_header("declare a tensor")?;
        if self.names.contains(name) {
            return Err(Error::value(format!("duplicate tensor name {name:?}")));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(Error::value(format!("tensor {name:?} has {} dimensions, expected 1..={MAX_DIMS}", dims.len())));
        }
        if dims.contains(&0) {
            return Err(Error::value(format!("tensor {name:?} has a zero dimension: {dims:?}")));
        }
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n as u64 <= i64::MAX as u64);
        if n.is_none() {
            return Err(Error::value(format!("tensor {name:?} shape {dims:?} overflows")));
        }
        let nbytes = ty
            .row_bytes(dims[0])
            .ok_or_else(|| {
                Error::value(format!(
                    "tensor {name:?}: row length {} is not a multiple of the {ty} block size {}",
                    dims[0],
                    ty.block_size()
                ))
            })?
            .checked_mul(dims[1..].iter().product())
            .ok_or_else(|| Error::value(format!("tensor {name:?} shape {dims:?} overflows")))?;
        let offset = self.next_offset;
        self.next_offset = offset
            .checked_add(nbytes)
            .and_then(|e| align_up(e, self.alignment))
            .ok_or_else(|| Error::value("total tensor data size overflows"))?;
        self.names.insert(name.to_owned());
        self.tensors.push(TensorInfo { name: name.to_owned(), dims: dims.to_vec(), ty, offset, nbytes });
        // Just pushed.
        Ok(&self.tensors[self.tensors.len() - 1])
    }

    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(GGUF_MAGIC);
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in self.metadata.iter() {
            encode_str(k, &mut h);
            h.extend_from_slice(&v.value_type().id().to_le_bytes());
            v.encode(&mut h);
        }
        for t in &self.tensors {
            encode_str(&t.name, &mut h);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for &d in &t.dims {
                h.extend_from_slice(&(d as u64).to_le_bytes());
            }
            h.extend_from_slice(&t.ty.id().to_le_bytes());
            h.extend_from_slice(&(t.offset as u64).to_le_bytes());
        }
        let padded = align_up(h.len(), self.alignment).unwrap_or(h.len());
        h.resize(padded, 0);
        h
    }

    fn out(&mut self) -> Result<&mut BufWriter<AtomicFile>> {
        self.tmp.as_mut().ok_or_else(|| Error::value("the GGUF writer is already finished"))
    }

    fn io<T>(&mut self, r: std::io::Result<T>) -> Result<T> {
        r.map_err(|e| {
            self.failed = true;
            Error::io(format!("writing {}", self.target.display()), e)
        })
    }

    fn write_header(&mut self) -> Result<()> {
        if !self.header_written {
            let h = self.header();
            let r = self.out()?.write_all(&h);
            self.io(r)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Write the next bytes of tensor data: the data of the declared tensors, in declaration
    /// order. A chunk may complete a tensor or be part of one, but must not cross into the next.
    /// No tensor can be declared and no metadata added once data has started.
    pub fn write_tensor_data(&mut self, chunk: &[u8]) -> Result<()> {
        if self.failed {
            return Err(Error::value("the GGUF writer failed earlier and cannot continue"));
        }
        self.write_header()?;
        let Some(t) = self.tensors.get(self.cur) else {
            return Err(Error::value(format!("all {} declared tensors already have their data", self.tensors.len())));
        };
        let left = t.nbytes - self.cur_written;
        if chunk.len() > left {
            return Err(Error::value(format!(
                "tensor {:?} needs {left} more bytes of data ({} in all) but {} were given",
                t.name,
                t.nbytes,
                chunk.len()
            )));
        }
        let complete = chunk.len() == left;
        let pad = if complete { align_up(t.nbytes, self.alignment).unwrap_or(t.nbytes) - t.nbytes } else { 0 };
        let r = self.out()?.write_all(chunk);
        self.io(r)?;
        if complete {
            let zeros = [0u8; 64];
            let mut pad = pad;
            while pad > 0 {
                let n = pad.min(zeros.len());
                let r = self.out()?.write_all(&zeros[..n]);
                self.io(r)?;
                pad -= n;
            }
            self.cur += 1;
            self.cur_written = 0;
        } else {
            self.cur_written += chunk.len();
        }
        Ok(())
    }

    /// The tensor whose data `write_tensor_data` expects next, if any.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.tensors.get(self.cur)
    }

    /// Write the header if no data was written, check every tensor got all its data, flush, sync,
    /// and rename the temporary file onto the target.
    pub fn finish(mut self) -> Result<()> {
        if self.failed {
            return Err(Error::value("the GGUF writer failed earlier; nothing was written"));
        }
        self.write_header()?;
        if let Some(t) = self.tensors.get(self.cur) {
            return Err(Error::value(format!(
                "tensor {:?} is missing data ({} of {} bytes written; {} tensors declared); nothing was written",
                t.name,
                self.cur_written,
                t.nbytes,
                self.tensors.len()
            )));
        }
        let ctx = format!("writing {}", self.target.display());
        let w = self.tmp.take().ok_or_else(|| Error::value("the GGUF writer is already finished"))?;
        let tmp = w.into_inner().map_err(|e| Error::io(ctx.clone(), e.into_error()))?;
        tmp.commit()
    }
}

impl std::fmt::Debug for GgufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field("target", &self.target)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("next_tensor", &self.cur)
            .finish()
    }
}
