//! Whole-model quantization, as llama-quantize does it, streaming one tensor at a time.
//!
//! The input is memory-mapped; each tensor is dequantized to f32 in slabs of rows, quantized to
//! the type [`crate::mix::plan`] chose, and streamed into a [`GgufWriter`], which writes a
//! temporary file next to the output and renames it into place only when everything succeeded.
//! Peak memory is one slab of f32 rows plus its quantized form, whatever the model size.
//!
//! The output matches llama-quantize's for the same input, mix and importance matrix: same
//! tensor order, types, metadata (input keys in order, then `general.quantization_version`,
//! `general.file_type` and the `quantize.imatrix.*` provenance keys) and tensor bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufWriter, Value};
use crate::imatrix::Imatrix;
use crate::mix::{plan, Choice, FileType, MixOptions, ModelInfo, TensorDesc};
use crate::quant::{self, Path as QPath};
use crate::types::QuantType;

/// `general.quantization_version` (ggml's `GGML_QNT_VERSION`).
pub const QUANTIZATION_VERSION: u32 = 2;

/// Largest f32 slab dequantized at once (bytes), bounding peak memory for huge tensors.
const SLAB_BYTES: usize = 256 << 20;

/// An importance matrix prepared for quantization (loaded, filtered, normalized).
#[derive(Clone, Debug, Default)]
pub struct ImatrixInput {
    /// The file name recorded in `quantize.imatrix.file` (as given by the user).
    pub file: String,
    /// Calibration dataset names.
    pub datasets: Vec<String>,
    /// Chunks the statistics came from (`quantize.imatrix.chunks_count`, written when > 0).
    pub chunk_count: u32,
    /// Per-column weights by tensor name.
    pub weights: BTreeMap<String, Vec<f32>>,
}

impl ImatrixInput {
    /// Load a GGUF or legacy imatrix file and keep the entries llama-quantize would keep:
    /// `exclude` removes entries whose name contains any of the substrings, then `include` keeps
    /// only those containing one of its substrings (llama-quantize's `--exclude-weights` /
    /// `--include-weights`).
    pub fn load(path: impl AsRef<Path>, include: &[String], exclude: &[String]) -> Result<ImatrixInput> {
        let path = path.as_ref();
        let m = Imatrix::load(path)?;
        if !m.is_legacy && (m.datasets.is_empty() && m.chunk_count == 0 && m.chunk_size == 0) {
            return Err(Error::value(format!("{}: imatrix metadata (imatrix.datasets/chunk_count/chunk_size) is missing", path.display())));
        }
        let mut weights = m.weights();
        if !exclude.is_empty() {
            weights.retain(|name, _| !exclude.iter().any(|p| name.contains(p.as_str())));
        }
        if !include.is_empty() {
            weights.retain(|name, _| include.iter().any(|p| name.contains(p.as_str())));
        }
        Ok(ImatrixInput { file: path.to_string_lossy().into_owned(), datasets: m.datasets, chunk_count: m.chunk_count, weights })
    }
}

/// Options of [`quantize_model`] (llama-quantize's command line).
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    /// The mix and its type overrides.
    pub mix: MixOptions,
    /// Importance matrix, if any (an empty one counts as none, as in llama-quantize).
    pub imatrix: Option<ImatrixInput>,
    /// Allow requantizing tensors that are already quantized.
    pub allow_requantize: bool,
    /// Only plan and report sizes; write nothing.
    pub dry_run: bool,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
}

impl QuantizeOptions {
    /// Options for a mix with llama-quantize's defaults.
    pub fn new(ftype: FileType) -> QuantizeOptions {
        QuantizeOptions { mix: MixOptions::new(ftype), imatrix: None, allow_requantize: false, dry_run: false, threads: None }
    }
}

/// What happened to one tensor.
#[derive(Clone, Debug)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Shape in NumPy order.
    pub shape: Vec<usize>,
    /// Input type.
    pub from: QuantType,
    /// Output type.
    pub to: QuantType,
    /// Input bytes.
    pub bytes_in: usize,
    /// Output bytes.
    pub bytes_out: usize,
    /// Whether an importance matrix entry was used.
    pub used_imatrix: bool,
}

/// Summary of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Per tensor, in output order.
    pub tensors: Vec<TensorReport>,
    /// Number of weights in the model.
    pub n_elements: usize,
    /// Whether the run needs an importance matrix it was not given (dry runs report it).
    pub needs_imatrix: bool,
}

impl Report {
    /// Total input bytes of tensor data.
    pub fn bytes_in(&self) -> usize {
        self.tensors.iter().map(|t| t.bytes_in).sum()
    }
    /// Total output bytes of tensor data.
    pub fn bytes_out(&self) -> usize {
        self.tensors.iter().map(|t| t.bytes_out).sum()
    }
}

/// Progress of a run, sent after every tensor.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// Tensors done (1-based index of the one just finished).
    pub done: usize,
    /// Number of tensors.
    pub total: usize,
    /// The tensor just finished.
    pub tensor: &'a TensorReport,
    /// Input bytes processed so far.
    pub bytes_done: usize,
    /// Input bytes in all.
    pub bytes_total: usize,
}

/// The model facts the mix rules need, from GGUF metadata.
pub fn model_info(f: &GgufFile) -> Result<ModelInfo> {
    let md = f.metadata();
    let arch = md
        .get_str("general.architecture")
        .ok_or_else(|| Error::value("general.architecture is missing: not a model file"))?
        .to_string();
    let first_u32 = |key: &str| -> Option<u32> {
        match md.get(key)? {
            Value::Array(a) => a.get(0).and_then(|v| v.as_u64()).map(|v| v as u32),
            v => v.as_u64().map(|v| v as u32),
        }
    };
    let n_layer = first_u32(&format!("{arch}.block_count")).ok_or_else(|| Error::value(format!("{arch}.block_count is missing")))?;
    let n_head = first_u32(&format!("{arch}.attention.head_count")).unwrap_or(0);
    let n_head_kv = first_u32(&format!("{arch}.attention.head_count_kv")).unwrap_or(n_head);
    let n_expert = first_u32(&format!("{arch}.expert_count")).unwrap_or(0);
    Ok(ModelInfo { arch, n_layer, n_head, n_head_kv, n_expert })
}

fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Plan a run: the type of every tensor and whether an importance matrix is missing.
pub fn plan_model(f: &GgufFile, opts: &QuantizeOptions) -> Result<(Vec<Choice>, bool)> {
    let info = model_info(f)?;
    let descs: Vec<TensorDesc> = f
        .tensors()
        .iter()
        .map(|t| TensorDesc { name: t.name.clone(), dims: t.dims.iter().map(|&d| d as u64).collect(), ty: t.ty })
        .collect();
    let mut mix = opts.mix.clone();
    mix.has_imatrix = opts.imatrix.as_ref().is_some_and(|m| !m.weights.is_empty());
    let choices = plan(&info, &descs, &mix)?;
    let needs = !mix.has_imatrix && choices.iter().any(|c| c.allows_quantization && c.requires_imatrix);
    Ok((choices, needs))
}

/// Quantize the GGUF model at `input` into `output`. `progress` is called after each tensor;
/// returning an error from it aborts the run (the output is then left untouched).
pub fn quantize_model(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
    progress: &mut dyn FnMut(&Progress<'_>) -> Result<()>,
) -> Result<Report> {
    if !opts.dry_run && (input == output || same_file(input, output)) {
        return Err(Error::value(format!(
            "output {} is the input file: quantizing in place is refused (write to another path)",
            output.display()
        )));
    }
    let f = GgufFile::open(input)?;
    let (choices, needs_imatrix) = plan_model(&f, opts)?;
    let imatrix = opts.imatrix.as_ref().filter(|m| !m.weights.is_empty());
    let missing = choices.iter().find(|c| c.allows_quantization && c.requires_imatrix);
    if let (true, false, Some(c)) = (needs_imatrix, opts.dry_run, missing) {
        let (name, ty) = (&f.tensors()[c.index].name, c.target);
        return Err(Error::value(format!(
            "this quantization requires an importance matrix (imatrix=...): tensor {name} would be {ty}"
        )));
    }
    // Refuse requantization up front rather than halfway through.
    if !opts.allow_requantize {
        for c in &choices {
            let t = &f.tensors()[c.index];
            if c.target != t.ty && t.ty.is_quantized() {
                return Err(Error::value(format!(
                    "{} is already quantized ({}); requantizing loses quality, pass allow_requantize to do it anyway",
                    t.name, t.ty
                )));
            }
        }
    }
    for c in choices.iter().filter(|_| !opts.dry_run) {
        let t = &f.tensors()[c.index];
        if c.target != t.ty && !quant::is_supported(c.target) {
            return Err(Error::Unsupported { ty: c.target, op: "quantization (not implemented yet)" });
        }
        if c.target != t.ty && !quant::is_supported(t.ty) {
            return Err(Error::Unsupported { ty: t.ty, op: "dequantization" });
        }
    }

    let bytes_total: usize = choices.iter().map(|c| f.tensors()[c.index].nbytes).sum();
    let mut report = Report {
        n_elements: f.tensors().iter().map(|t| t.n_elements()).sum(),
        needs_imatrix,
        ..Default::default()
    };

    let mut writer = if opts.dry_run {
        None
    } else {
        let mut w = GgufWriter::with_alignment(output, f.alignment())?;
        write_metadata(&mut w, &f, opts, imatrix)?;
        for c in &choices {
            let t = &f.tensors()[c.index];
            w.add_tensor_info(&t.name, &t.dims, c.target)?;
        }
        Some(w)
    };

    let mut bytes_done = 0usize;
    for (i, c) in choices.iter().enumerate() {
        let t = &f.tensors()[c.index];
        let n_per_row = t.dims[0];
        let rows = t.n_rows();
        let out_bytes = c
            .target
            .row_bytes(n_per_row)
            .and_then(|rb| rb.checked_mul(rows))
            .ok_or_else(|| Error::value(format!("{}: rows of {n_per_row} do not fit {}", t.name, c.target)))?;
        let mut used_imatrix = false;
        if let Some(w) = writer.as_mut() {
            let src = f.tensor_data(t);
            if c.target == t.ty {
                w.write_tensor_data(src)?;
            } else {
                let weights = imatrix_for(imatrix, t, c)?;
                used_imatrix = weights.is_some();
                quantize_tensor(w, t.ty, src, c.target, n_per_row, t.dims.get(1).copied().unwrap_or(1), weights, opts.threads)?;
            }
        }
        bytes_done += t.nbytes;
        let tensor = TensorReport {
            name: t.name.clone(),
            shape: t.shape(),
            from: t.ty,
            to: c.target,
            bytes_in: t.nbytes,
            bytes_out: out_bytes,
            used_imatrix,
        };
        progress(&Progress { done: i + 1, total: choices.len(), tensor: &tensor, bytes_done, bytes_total })?;
        report.tensors.push(tensor);
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(report)
}

/// Input metadata in order, then the keys llama-quantize sets (each `gguf_set_val_*` removes the
/// key and appends it).
fn write_metadata(w: &mut GgufWriter, f: &GgufFile, opts: &QuantizeOptions, imatrix: Option<&ImatrixInput>) -> Result<()> {
    let mut set: Vec<(String, Value)> = Vec::new();
    set.push(("general.quantization_version".into(), Value::U32(QUANTIZATION_VERSION)));
    let ftype = if opts.mix.only_copy {
        f.metadata().get_u32("general.file_type").unwrap_or(0)
    } else {
        opts.mix.ftype.id()
    };
    set.push(("general.file_type".into(), Value::U32(ftype)));
    if let Some(m) = imatrix {
        set.push(("quantize.imatrix.file".into(), Value::from(truncate_127(&m.file))));
        if let Some(d) = m.datasets.first() {
            set.push(("quantize.imatrix.dataset".into(), Value::from(truncate_127(d))));
        }
        set.push(("quantize.imatrix.entries_count".into(), Value::U32(m.weights.len() as u32)));
        if m.chunk_count > 0 {
            set.push(("quantize.imatrix.chunks_count".into(), Value::U32(m.chunk_count)));
        }
    }
    const SPLIT_KEYS: [&str; 3] = ["split.no", "split.count", "split.tensors.count"];
    for (k, v) in f.metadata().iter() {
        if SPLIT_KEYS.contains(&k) || set.iter().any(|(s, _)| s == k) {
            continue;
        }
        w.add_metadata(k, v.clone())?;
    }
    for (k, v) in set {
        w.add_metadata(&k, v)?;
    }
    Ok(())
}

/// llama-quantize copies override strings into a 128-byte buffer.
fn truncate_127(s: &str) -> &str {
    let mut end = s.len().min(127);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The imatrix rows for a tensor (one per expert), or `None`. A size mismatch is an error except
/// for token_embd, as in llama-quantize.
fn imatrix_for<'a>(m: Option<&'a ImatrixInput>, t: &crate::gguf::TensorInfo, _c: &Choice) -> Result<Option<&'a [f32]>> {
    let Some(m) = m else { return Ok(None) };
    let Some(w) = m.weights.get(&t.name) else { return Ok(None) };
    let n_expert = t.dims.get(2).copied().unwrap_or(1);
    if w.len() != t.dims[0] * n_expert {
        if t.name == "token_embd.weight" || t.name == "per_layer_token_embd.weight" {
            return Ok(None);
        }
        return Err(Error::value(format!(
            "imatrix has {} values for {} but the tensor needs {}",
            w.len(),
            t.name,
            t.dims[0] * n_expert
        )));
    }
    Ok(Some(w.as_slice()))
}

/// Dequantize `src` in slabs of rows, quantize each slab and stream it out. Expert tensors use
/// their expert's imatrix row.
#[allow(clippy::too_many_arguments)]
fn quantize_tensor(
    w: &mut GgufWriter,
    from: QuantType,
    src: &[u8],
    to: QuantType,
    n_per_row: usize,
    rows_per_expert: usize,
    imatrix: Option<&[f32]>,
    threads: Option<usize>,
) -> Result<()> {
    let src_row = from.row_bytes(n_per_row).ok_or_else(|| Error::value("input row is not whole blocks"))?;
    let dst_row = to.row_bytes(n_per_row).ok_or_else(|| Error::value("output row is not whole blocks"))?;
    let rows = src.len() / src_row;
    let slab_rows = (SLAB_BYTES / (n_per_row * 4)).clamp(1, rows.max(1));
    let mut f32_buf: Vec<f32> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut r = 0;
    while r < rows {
        // A slab never crosses an expert boundary, so it uses one imatrix row.
        let expert = r / rows_per_expert.max(1);
        let end_of_expert = (expert + 1) * rows_per_expert.max(1);
        let n = slab_rows.min(rows - r).min(end_of_expert - r);
        let s = &src[r * src_row..(r + n) * src_row];
        f32_buf.resize(n * n_per_row, 0.0);
        quant::dequantize_into(from, s, &mut f32_buf, threads)?;
        out.resize(n * dst_row, 0);
        let w_row = imatrix.map(|m| &m[expert * n_per_row..(expert + 1) * n_per_row]);
        quant::quantize_into(to, &f32_buf, n_per_row, w_row, QPath::Chunk, &mut out, threads)?;
        w.write_tensor_data(&out)?;
        r += n;
    }
    Ok(())
}

/// Output path suggestion: `<stem>-<MIX>.gguf` beside the input.
pub fn default_output(input: &Path, ftype: FileType) -> PathBuf {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    input.with_file_name(format!("{stem}-{}.gguf", ftype.name()))
}
