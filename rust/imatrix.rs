//! Importance-matrix files: llama.cpp's GGUF imatrix format and its legacy `.dat` format.
//!
//! An importance matrix holds, per weight tensor, the sums of the squared activations that met
//! each column during a calibration run, and how many tokens were summed. Quantizers weight
//! their error by the means. This module is the one reader and writer of both layouts; the
//! forward-pass collection that fills an [`Imatrix`] lives in `crate::model::imatrix`.
//!
//! * GGUF (llama.cpp's default since mid-2025): tensors `<weight>.in_sum2` (F32, sums of squared
//!   activations, one row per expert) and `<weight>.counts` (F32, tokens seen, one per expert),
//!   with metadata `general.type = "imatrix"`, `imatrix.datasets` (string array),
//!   `imatrix.chunk_count`, `imatrix.chunk_size`; tensors sorted by name.
//! * Legacy `.dat`: `i32 n_entries`, then per entry `i32 name_len, name bytes, i32 ncall, i32 nval,
//!   f32 values[nval]` (values already divided by the token count, multiplied by `ncall`), then
//!   optionally `i32 chunk_count, i32 dataset_len, dataset bytes`.
//!
//! [`Imatrix::weights`] turns either into the per-column weights llama-quantize passes to the
//! quantizers, with its exact float arithmetic (`sums / count` in f32), so that quantizing with
//! the same file gives the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::types::QuantType;

/// One tensor's accumulated statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Sums of squared activations per column (`n_expert * n_cols` values; legacy files: the
    /// stored values, mean·ncall).
    pub sums: Vec<f32>,
    /// Token counts, one per expert (legacy files: the single call count).
    pub counts: Vec<i64>,
}

/// An importance matrix, read from a file or collected from forward passes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    /// Entries by weight tensor name (`blk.0.attn_q.weight`).
    pub entries: BTreeMap<String, Entry>,
    /// Calibration dataset names.
    pub datasets: Vec<String>,
    /// Number of chunks the statistics were gathered over.
    pub chunk_count: u32,
    /// Tokens per chunk (0 when unknown, always for legacy files).
    pub chunk_size: u32,
    /// Whether this came from a legacy `.dat` file (counts are call counts, sums are scaled means).
    pub is_legacy: bool,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::value(format!("{}: not a valid imatrix file: {what}", path.display()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

impl Imatrix {
    /// Load a GGUF or legacy `.dat` imatrix (told apart by the GGUF magic, as llama.cpp does).
    pub fn load(path: impl AsRef<Path>) -> Result<Imatrix> {
        let path = path.as_ref();
        let head = {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            let mut b = [0u8; 4];
            let n = f.read(&mut b).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            b[..n].to_vec()
        };
        if head == b"GGUF" {
            Self::from_gguf(path, &GgufFile::open(path)?)
        } else {
            let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            Self::from_dat_bytes(path, &bytes)
        }
    }

    /// Read llama.cpp's GGUF imatrix layout from an opened file (`path` names it in errors).
    pub fn from_gguf(path: &Path, f: &GgufFile) -> Result<Imatrix> {
        let md = f.metadata();
        let mut m = Imatrix {
            datasets: md.get_str_array("imatrix.datasets").unwrap_or_default().into_iter().map(String::from).collect(),
            chunk_count: md.get_u32("imatrix.chunk_count").unwrap_or(0),
            chunk_size: md.get_u32("imatrix.chunk_size").unwrap_or(0),
            ..Default::default()
        };
        let mut sums: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
        let mut counts: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
        for t in f.tensors() {
            let (base, is_sum) = if let Some(b) = t.name.strip_suffix(".in_sum2") {
                (b, true)
            } else if let Some(b) = t.name.strip_suffix(".counts") {
                (b, false)
            } else {
                continue;
            };
            if t.ty != QuantType::F32 {
                return Err(bad(path, format!("{} must be F32, is {}", t.name, t.ty)));
            }
            let vals = f32s(f.tensor_data(t));
            if is_sum {
                sums.insert(base, vals);
            } else {
                counts.insert(base, vals);
            }
        }
        if sums.is_empty() {
            return Err(bad(path, "no *.in_sum2 tensors"));
        }
        for (name, s) in sums {
            let c = counts.remove(name).ok_or_else(|| bad(path, format!("{name}.in_sum2 has no matching .counts")))?;
            if c.is_empty() || s.len() % c.len() != 0 {
                return Err(bad(path, format!("{name}: {} sums do not split into {} experts", s.len(), c.len())));
            }
            if let Some(v) = c.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(bad(path, format!("{name}.counts holds {v}")));
            }
            // llama.cpp rounds the stored float counts to integers (lround); they are finite and
            // non-negative here, and `as` saturates above i64::MAX.
            let counts = c.iter().map(|v| v.round() as i64).collect();
            m.entries.insert(name.to_string(), Entry { sums: s, counts });
        }
        if let Some(name) = counts.keys().next() {
            return Err(bad(path, format!("{name}.counts has no matching .in_sum2")));
        }
        Ok(m)
    }

    /// Parse the legacy `.dat` layout (`path` names the file in errors).
    pub fn from_dat_bytes(path: &Path, b: &[u8]) -> Result<Imatrix> {
        let mut pos = 0usize;
        let i32_at = |pos: &mut usize, what: &str| -> Result<i32> {
            let v = b
                .get(*pos..pos.saturating_add(4))
                .map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or_else(|| bad(path, format!("truncated at byte {} reading {what}", *pos)))?;
            *pos += 4;
            Ok(v)
        };
        let n = i32_at(&mut pos, "the entry count")?;
        if n < 1 {
            return Err(bad(path, format!("{n} entries (and no GGUF magic)")));
        }
        let mut m = Imatrix { is_legacy: true, ..Default::default() };
        for i in 0..n {
            let len = i32_at(&mut pos, "a name length")?;
            let len = usize::try_from(len).map_err(|_| bad(path, format!("entry {i}: negative name length")))?;
            let name = b
                .get(pos..pos.saturating_add(len))
                .ok_or_else(|| bad(path, format!("entry {i}: name runs past the end")))?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| bad(path, format!("entry {i}: name is not UTF-8")))?;
            pos += len;
            let ncall = i32_at(&mut pos, "a call count")?;
            let nval = i32_at(&mut pos, "a value count")?;
            let nval = usize::try_from(nval)
                .ok()
                .filter(|&v| v >= 1)
                .ok_or_else(|| bad(path, format!("entry {name}: bad value count {nval}")))?;
            let bytes = b
                .get(pos..pos.saturating_add(nval.saturating_mul(4)))
                .ok_or_else(|| bad(path, format!("entry {name}: values run past the end")))?;
            pos += nval * 4;
            m.entries.insert(name, Entry { sums: f32s(bytes), counts: vec![ncall as i64] });
        }
        if pos < b.len() {
            if let Ok(chunks) = i32_at(&mut pos, "the chunk count") {
                m.chunk_count = chunks.max(0) as u32;
                if let Ok(len) = i32_at(&mut pos, "the dataset name length") {
                    if let Some(d) = usize::try_from(len).ok().filter(|&l| l > 0).and_then(|l| b.get(pos..pos.saturating_add(l))) {
                        m.datasets.push(String::from_utf8_lossy(d).into_owned());
                    }
                }
            }
        }
        Ok(m)
    }

    /// Per-column importance weights for every entry, as llama-quantize computes them: GGUF
    /// files divide each expert's sums by its count (`1.0` where the count is 0); legacy files
    /// divide by the call count.
    pub fn weights(&self) -> BTreeMap<String, Vec<f32>> {
        self.entries
            .iter()
            .map(|(name, e)| {
                let w = if self.is_legacy {
                    let ncall = e.counts.first().copied().unwrap_or(0);
                    if ncall > 0 {
                        e.sums.iter().map(|s| s / ncall as f32).collect()
                    } else {
                        e.sums.clone()
                    }
                } else {
                    let ne0 = e.sums.len() / e.counts.len().max(1);
                    let mut w = vec![0f32; e.sums.len()];
                    for (j, &c) in e.counts.iter().enumerate() {
                        let c = c as f32;
                        for i in 0..ne0 {
                            w[j * ne0 + i] = if c > 0.0 { e.sums[j * ne0 + i] / c } else { 1.0 };
                        }
                    }
                    w
                };
                (name.clone(), w)
            })
            .collect()
    }

    /// Per weight: the mean squared activation per column (each expert's sums over its count,
    /// a count of 0 taken as 1; legacy files: values over the call count).
    pub fn means(&self) -> BTreeMap<String, Vec<f32>> {
        self.entries
            .iter()
            .map(|(name, e)| {
                let ne0 = e.sums.len() / e.counts.len().max(1);
                let mut w = Vec::with_capacity(e.sums.len());
                for (j, &c) in e.counts.iter().enumerate() {
                    let c = c.max(1) as f32;
                    w.extend(e.sums.iter().skip(j * ne0).take(ne0).map(|s| s / c));
                }
                (name.clone(), w)
            })
            .collect()
    }

    /// Write to `path`: legacy `.dat` when the name ends in `.dat`, else llama.cpp's GGUF layout.
    pub fn write(&self, path: &Path) -> Result<()> {
        if path.extension().is_some_and(|e| e == "dat") {
            self.write_dat(path)
        } else {
            self.write_gguf(path)
        }
    }

    /// Write llama.cpp's GGUF imatrix layout (tensors sorted by name, raw sums and counts).
    pub fn write_gguf(&self, path: &Path) -> Result<()> {
        use crate::gguf::{Array, GgufWriter, Value};
        for (name, e) in &self.entries {
            if e.counts.is_empty() || e.sums.len() % e.counts.len() != 0 {
                return Err(Error::value(format!("imatrix entry {name}: {} sums do not split into {} experts", e.sums.len(), e.counts.len())));
            }
        }
        let mut w = GgufWriter::create(path)?;
        w.add_metadata("general.type", Value::String("imatrix".into()))?;
        w.add_metadata("imatrix.datasets", Value::Array(Array::from_strs(&self.datasets)))?;
        w.add_metadata("imatrix.chunk_count", Value::U32(self.chunk_count))?;
        w.add_metadata("imatrix.chunk_size", Value::U32(self.chunk_size))?;
        // BTreeMap order is byte order of the names, as llama.cpp's std::sort of std::string.
        for (name, e) in &self.entries {
            // ggml drops trailing unit dimensions: one expert gives 1-D tensors.
            let ne0 = e.sums.len() / e.counts.len();
            let shape: Vec<usize> = if e.counts.len() == 1 { vec![ne0] } else { vec![ne0, e.counts.len()] };
            w.add_tensor_info(&format!("{name}.in_sum2"), &shape, QuantType::F32)?;
            w.add_tensor_info(&format!("{name}.counts"), &[e.counts.len()], QuantType::F32)?;
        }
        for e in self.entries.values() {
            let bytes: Vec<u8> = e.sums.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_tensor_data(&bytes)?;
            let counts: Vec<u8> = e.counts.iter().flat_map(|&c| (c as f32).to_le_bytes()).collect();
            w.write_tensor_data(&counts)?;
        }
        w.finish()
    }

    /// Write the legacy `.dat` format (what `llama-imatrix --output-format dat` writes). Entries
    /// with more than one expert cannot be stored in it.
    pub fn write_dat(&self, path: &Path) -> Result<()> {
        let i32_of = |v: usize, what: &str| i32::try_from(v).map_err(|_| Error::value(format!("imatrix {what} {v} does not fit the .dat format")));
        let mut out = Vec::new();
        out.extend_from_slice(&i32_of(self.entries.len(), "entry count")?.to_le_bytes());
        let cs = u64::from(self.chunk_size.max(1));
        for (name, e) in &self.entries {
            let &[count] = e.counts.as_slice() else {
                return Err(Error::value(format!("imatrix entry {name} has {} expert counts; the .dat format holds one", e.counts.len())));
            };
            out.extend_from_slice(&i32_of(name.len(), "name length")?.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            // Legacy call counts are kept; collected token counts become whole chunks, rounded up.
            let ncall = if self.is_legacy { count } else { (count.max(0) as u64).div_ceil(cs) as i64 }.max(1);
            let ncall = i32::try_from(ncall).map_err(|_| Error::value(format!("imatrix entry {name}: call count {ncall} does not fit the .dat format")))?;
            out.extend_from_slice(&ncall.to_le_bytes());
            out.extend_from_slice(&i32_of(e.sums.len(), "value count")?.to_le_bytes());
            for &s in &e.sums {
                let v = if self.is_legacy {
                    s
                } else {
                    let (v, c) = if count == 0 { (1.0, 1.0) } else { (s, count as f32) };
                    (v / c) * ncall as f32
                };
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.chunk_count as i32).to_le_bytes());
        let ds = self.datasets.last().map(String::as_str).unwrap_or("");
        out.extend_from_slice(&i32_of(ds.len(), "dataset name length")?.to_le_bytes());
        out.extend_from_slice(ds.as_bytes());
        let mut f = std::fs::File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        f.write_all(&out).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Imatrix {
        let mut m = Imatrix { datasets: vec!["d.txt".into()], chunk_count: 3, chunk_size: 32, ..Default::default() };
        m.entries.insert("blk.0.b.weight".into(), Entry { sums: vec![1.0, 2.5, 0.0, 9.0], counts: vec![96] });
        m.entries.insert("blk.0.a.weight".into(), Entry { sums: vec![3.0, 0.5], counts: vec![40] });
        m
    }

    fn dat(entries: &[(&[u8], i32, i32, &[f32])]) -> Vec<u8> {
        let mut b = (entries.len() as i32).to_le_bytes().to_vec();
        for (name, ncall, nval, vals) in entries {
            b.extend((name.len() as i32).to_le_bytes());
            b.extend(*name);
            b.extend(ncall.to_le_bytes());
            b.extend(nval.to_le_bytes());
            b.extend(vals.iter().flat_map(|v| v.to_le_bytes()));
        }
        b
    }

    fn err_of(r: Result<Imatrix>) -> String {
        r.expect_err("hostile input must be rejected").to_string()
    }

    #[test]
    fn gguf_round_trip_keeps_everything() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("im.gguf");
        let m = sample();
        m.write(&p).unwrap();
        assert_eq!(Imatrix::load(&p).unwrap(), m);
        // Two experts survive too.
        let mut moe = m.clone();
        moe.entries.insert("blk.1.ffn_up_exps.weight".into(), Entry { sums: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], counts: vec![2, 0] });
        moe.write_gguf(&p).unwrap();
        let back = Imatrix::load(&p).unwrap();
        assert_eq!(back, moe);
        assert_eq!(back.weights()["blk.1.ffn_up_exps.weight"], vec![0.5, 1.0, 1.5, 1.0, 1.0, 1.0]);
        assert_eq!(back.means()["blk.1.ffn_up_exps.weight"], vec![0.5, 1.0, 1.5, 4.0, 5.0, 6.0]);
        assert!(moe.write_dat(&d.path().join("x.dat")).unwrap_err().to_string().contains("2 expert counts"));
    }

    #[test]
    fn dat_round_trip_keeps_means_and_weights() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("im.dat");
        let m = sample();
        m.write(&p).unwrap();
        let back = Imatrix::load(&p).unwrap();
        assert!(back.is_legacy);
        assert_eq!((back.chunk_count, back.chunk_size, back.datasets.clone()), (3, 0, vec!["d.txt".to_string()]));
        // ncall = ceil(count / chunk_size): 96/32 = 3, 40/32 -> 2.
        assert_eq!(back.entries["blk.0.b.weight"].counts, vec![3]);
        assert_eq!(back.entries["blk.0.a.weight"].counts, vec![2]);
        for (k, v) in m.means() {
            let got = &back.means()[&k];
            for (a, b) in got.iter().zip(&v) {
                assert!((a - b).abs() <= 1e-6 * b.abs(), "{k}: {a} vs {b}");
            }
            assert_eq!(back.weights()[&k], *got);
        }
        // A legacy matrix writes its values back unchanged.
        let p2 = d.path().join("again.dat");
        back.write_dat(&p2).unwrap();
        assert_eq!(std::fs::read(&p2).unwrap(), std::fs::read(&p).unwrap());
    }

    #[test]
    fn weights_follow_llama_quantize_arithmetic() {
        let mut m = Imatrix::default();
        m.entries.insert("w".into(), Entry { sums: vec![1.0, 2.0, 7.0, 8.0], counts: vec![3, 0] });
        assert_eq!(m.weights()["w"], vec![1.0f32 / 3.0, 2.0f32 / 3.0, 1.0, 1.0]);
        m.is_legacy = true;
        m.entries.insert("w".into(), Entry { sums: vec![6.0, 1.0], counts: vec![4] });
        m.entries.insert("z".into(), Entry { sums: vec![6.0, 1.0], counts: vec![0] });
        assert_eq!(m.weights()["w"], vec![1.5, 0.25]);
        assert_eq!(m.weights()["z"], vec![6.0, 1.0]);
    }

    #[test]
    fn hostile_dat_files_are_errors() {
        let p = Path::new("x.dat");
        let ok = dat(&[(b"w", 1, 2, &[1.0, 2.0])]);
        assert!(Imatrix::from_dat_bytes(p, &ok).is_ok());
        for cut in 0..ok.len() {
            let e = err_of(Imatrix::from_dat_bytes(p, &ok[..cut]));
            assert!(e.contains("x.dat: not a valid imatrix file"), "{e}");
        }
        assert!(err_of(Imatrix::from_dat_bytes(p, &0i32.to_le_bytes())).contains("0 entries"));
        assert!(err_of(Imatrix::from_dat_bytes(p, &dat(&[(b"w", 1, -1, &[])]))).contains("bad value count -1"));
        assert!(err_of(Imatrix::from_dat_bytes(p, &dat(&[(b"w", 1, 0, &[])]))).contains("bad value count 0"));
        assert!(err_of(Imatrix::from_dat_bytes(p, &dat(&[(b"\xff", 1, 1, &[1.0])]))).contains("not UTF-8"));
        assert!(err_of(Imatrix::from_dat_bytes(p, &dat(&[(b"w", 1, i32::MAX, &[1.0])]))).contains("values run past the end"));
        let mut neg = 1i32.to_le_bytes().to_vec();
        neg.extend((-5i32).to_le_bytes());
        assert!(err_of(Imatrix::from_dat_bytes(p, &neg)).contains("negative name length"));
        let mut long = 1i32.to_le_bytes().to_vec();
        long.extend(i32::MAX.to_le_bytes());
        assert!(err_of(Imatrix::from_dat_bytes(p, &long)).contains("name runs past the end"));
    }

    #[test]
    fn hostile_gguf_files_are_errors() {
        use crate::gguf::GgufWriter;
        let d = tempfile::tempdir().unwrap();
        let write = |tensors: &[(&str, usize, QuantType)]| -> String {
            let p = d.path().join("bad.gguf");
            let mut w = GgufWriter::create(&p).unwrap();
            for (name, n, ty) in tensors {
                w.add_tensor_info(name, &[*n], *ty).unwrap();
            }
            for (_, n, ty) in tensors {
                let bytes = if *ty == QuantType::F32 { [1.0f32, f32::NAN].repeat(*n)[..*n].iter().flat_map(|v| v.to_le_bytes()).collect() } else { vec![0u8; n * 2] };
                w.write_tensor_data(&bytes).unwrap();
            }
            w.finish().unwrap();
            err_of(Imatrix::load(&p))
        };
        assert!(write(&[("x.weight", 4, QuantType::F32)]).contains("no *.in_sum2 tensors"));
        assert!(write(&[("a.in_sum2", 4, QuantType::F32)]).contains("a.in_sum2 has no matching .counts"));
        assert!(write(&[("a.in_sum2", 4, QuantType::F32), ("a.counts", 1, QuantType::F32), ("b.counts", 1, QuantType::F32)])
            .contains("b.counts has no matching .in_sum2"));
        assert!(write(&[("a.in_sum2", 4, QuantType::F16), ("a.counts", 1, QuantType::F32)]).contains("a.in_sum2 must be F32"));
        assert!(write(&[("a.in_sum2", 5, QuantType::F32), ("a.counts", 2, QuantType::F32)]).contains("5 sums do not split into 2 experts"));
        // The second count is NaN.
        assert!(write(&[("a.in_sum2", 4, QuantType::F32), ("a.counts", 2, QuantType::F32)]).contains("a.counts holds NaN"));
        let e = err_of(Imatrix::load(d.path().join("missing.gguf")));
        assert!(e.contains("missing.gguf"), "{e}");
    }
}
