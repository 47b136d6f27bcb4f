//! Codec throughput per supported type, single thread, in elements per second: quantize
//! (ggml_quantize_chunk path without and with an importance matrix, and the `_ref` path) and
//! dequantize. Generic over `quant::is_supported`, so new codecs are benched when they land.
//!
//! `cargo bench --bench codecs` (all) or `cargo bench --bench codecs -- Q4_K` (one type).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kquants::quant::{self, Path};
use kquants::QuantType;
use std::hint::black_box;
use std::time::Duration;

/// Rows × columns of the benched matrix: 16 rows of 4096 (a multiple of every block size).
const ROWS: usize = 16;
const COLS: usize = 4096;

/// Deterministic, roughly normal data (sum of uniforms from a xorshift), like weight rows.
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n).map(|_| 0.02 * ((next() + next() + next() + next()) - 2.0) * 1.7).collect()
}

fn bench_codecs(c: &mut Criterion) {
    // One worker: the rayon calls inside `quantize_into` run on this pool's single thread.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a 1-thread pool");
    let x = data(ROWS * COLS, 1);
    let imatrix: Vec<f32> = data(COLS, 2).iter().map(|v| v * v * 1e4 + 0.1).collect();

    for &t in QuantType::ALL.iter().filter(|&&t| quant::is_supported(t)) {
        let Some(row_bytes) = t.row_bytes(COLS) else { continue };
        let mut g = c.benchmark_group(format!("codecs/{t}"));
        g.throughput(Throughput::Elements((ROWS * COLS) as u64));
        g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
        let mut q = vec![0u8; ROWS * row_bytes];

        let mut paths: Vec<(&str, Option<&[f32]>, Path)> = Vec::new();
        if !t.requires_imatrix() {
            paths.push(("quantize", None, Path::Chunk));
            paths.push(("quantize_ref", None, Path::Ref));
        }
        if !t.is_activation_only() {
            paths.push(("quantize_imatrix", Some(&imatrix), Path::Chunk));
        }
        for (name, w, path) in paths {
            g.bench_function(BenchmarkId::new(name, COLS), |b| {
                pool.install(|| {
                    b.iter(|| quant::quantize_into(t, black_box(&x), COLS, w, path, &mut q, None).expect("quantize"))
                })
            });
        }
        let w = t.requires_imatrix().then_some(imatrix.as_slice());
        quant::quantize_into(t, &x, COLS, w, Path::Chunk, &mut q, None).expect("quantize");
        let mut y = vec![0f32; ROWS * COLS];
        g.bench_function(BenchmarkId::new("dequantize", COLS), |b| {
            pool.install(|| b.iter(|| quant::dequantize_into(t, black_box(&q), &mut y, None).expect("dequantize")))
        });
        g.finish();
    }
}

criterion_group!(benches, bench_codecs);
criterion_main!(benches);
