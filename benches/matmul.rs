//! Quantized matmul: GEMV (1 x k) and GEMM (64 x k) over a 4096 x 4096 weight, per type, at 1
//! and 2 threads (the selected ISA), from the GGUF rows and from a `matmul::PackedWeight`
//! (`.../packed` ids: interleaved for Q4_0, IQ4_XS, Q4_K, Q5_K on AVX-512). The DRAM-bound GEMV over a weight bigger than the L3 (e.g.
//! `--rows 131072` of 8192 values on a 480 MiB-L3 machine), as a fraction of a plain read of the
//! same buffer in the same run, is measured by `benches/kernels_vs_llamacpp.py` (and
//! `examples/gemv_probe.rs`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use kquants::matmul;
use kquants::QuantType;

#[path = "vec_dot.rs"]
#[allow(dead_code)]
mod vd;

fn bench(c: &mut Criterion) {
    let (n, k) = (4096usize, 4096usize);
    for &(name, m) in &[("gemv", 1usize), ("gemm64", 64usize)] {
        let mut g = c.benchmark_group(format!("matmul_{name}"));
        g.measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(300)).sample_size(10);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        for t in [QuantType::Q4_0, QuantType::Q8_0, QuantType::Q4_K, QuantType::Q6_K, QuantType::IQ4_XS] {
            let w = vd::weight_rows(t, k, n);
            g.throughput(Throughput::Bytes(w.len() as u64));
            let mut out = vec![0f32; m * n];
            let p = matmul::PackedWeight::new(t, &w, n, k).unwrap();
            for threads in [1usize, 2] {
                g.bench_function(BenchmarkId::new(t.name(), format!("t{threads}")), |b| {
                    b.iter(|| matmul::matmul(t, black_box(&w), n, k, &x, m, &mut out, Some(threads)).unwrap())
                });
                g.bench_function(BenchmarkId::new(t.name(), format!("t{threads}/packed")), |b| {
                    b.iter(|| matmul::matmul_packed(black_box(&p), &x, m, &mut out, Some(threads)).unwrap())
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
