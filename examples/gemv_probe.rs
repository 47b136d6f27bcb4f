//! GEMV timing probe: `cargo run --release --example gemv_probe -- TYPE[,TYPE..] [n] [k] [threads] [reps]`.
//! Prints the median and best wall time of `matmul::matmul` (1 activation row) and the weight
//! bytes per second. Defaults: every hot type, 16384 x 8192 (bigger than L3), 1 and 2 threads.

use std::time::Instant;

use kquants::matmul;
use kquants::QuantType;

#[path = "../benches/vec_dot.rs"]
#[allow(dead_code)]
mod vd;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let types: Vec<QuantType> = args
        .first()
        .map_or("Q4_0,Q4_K,Q8_0,IQ4_XS", |s| s.as_str())
        .split(',')
        .map(|s| QuantType::from_name(s).expect("type name"))
        .collect();
    let num = |i: usize, d: usize| args.get(i).map_or(d, |s| s.parse().expect("number"));
    let (n, k) = (num(1, 16384), num(2, 8192));
    let threads: Vec<usize> = match args.get(3) {
        Some(s) => s.split(',').map(|v| v.parse().expect("threads")).collect(),
        None => vec![1, 2],
    };
    let reps = num(4, 15);
    let x: Vec<f32> = (0..k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let mut out = vec![0f32; n];
    for &t in &types {
        let w = vd::weight_rows(t, k, n);
        for &th in &threads {
            matmul::matmul(t, &w, n, k, &x, 1, &mut out, Some(th)).expect("matmul");
            let mut ts: Vec<f64> = (0..reps)
                .map(|_| {
                    let t0 = Instant::now();
                    matmul::matmul(t, &w, n, k, &x, 1, &mut out, Some(th)).expect("matmul");
                    t0.elapsed().as_secs_f64()
                })
                .collect();
            ts.sort_by(f64::total_cmp);
            let med = ts[ts.len() / 2];
            let gb = w.len() as f64 / 1e9;
            println!(
                "{:7} {n}x{k} threads={th} median {:8.1} us {:6.1} GB/s  best {:8.1} us {:6.1} GB/s",
                t.name(),
                med * 1e6,
                gb / med,
                ts[0] * 1e6,
                gb / ts[0]
            );
        }
    }
}
