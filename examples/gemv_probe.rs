//! GEMV timing probe: `cargo run --release --example gemv_probe -- TYPE[,TYPE..] [n] [k] [threads] [reps] [plain|packed|both]`.
//! Prints the median and best wall time of `matmul::matmul` (1 activation row) and the weight
//! bytes per second, and that as a fraction of the read-bandwidth peer
//! (`kquants::simd::stream::read_stream_best`: a plain read of the same weight buffer with the same
//! threads, best of its settings and 3 passes each). Defaults: every hot type, 16384 x 8192, 1 and
//! 2 threads (use more rows, e.g. 131072, on a machine whose L3 holds that weight), the plain
//! rows (`matmul::matmul`) and the weight prepared by `matmul::PackedWeight` (`matmul_packed`).

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
    let layouts: &[bool] = match args.get(5).map(|s| s.as_str()) {
        Some("plain") => &[false],
        Some("packed") => &[true],
        _ => &[false, true],
    };
    let x: Vec<f32> = (0..k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let mut out = vec![0f32; n];
    for &t in &types {
        // The weight in memory advised to use huge pages, as NumPy's large arrays and the
        // PackedWeight buffers are: the peer and both layouts then read the same kind of memory.
        let w = {
            let v = vd::weight_rows(t, k, n);
            let mut m = memmap2::MmapMut::map_anon(v.len()).expect("mmap");
            #[cfg(target_os = "linux")]
            m.advise(memmap2::Advice::HugePage).expect("madvise");
            m.copy_from_slice(&v);
            m
        };
        for &packed in layouts {
            let p = if packed { Some(matmul::PackedWeight::new(t, &w, n, k).expect("pack")) } else { None };
            let run = |th: usize, out: &mut [f32]| match &p {
                Some(p) => matmul::matmul_packed(p, &x, 1, out, Some(th)).expect("matmul"),
                None => matmul::matmul(t, &w, n, k, &x, 1, out, Some(th)).expect("matmul"),
            };
            let label = match &p {
                Some(p) if p.is_interleaved() => "interleaved",
                Some(_) => "packed(plain)",
                None => "rows",
            };
            for &th in &threads {
                run(th, &mut out);
                let mut ts: Vec<f64> = (0..reps)
                    .map(|_| {
                        let t0 = Instant::now();
                        run(th, &mut out);
                        t0.elapsed().as_secs_f64()
                    })
                    .collect();
                ts.sort_by(f64::total_cmp);
                let med = ts[ts.len() / 2];
                let gb = w.len() as f64 / 1e9;
                let (peer, s) = kquants::simd::stream::read_stream_best(&w, th, 3).expect("read_stream");
                let peer = peer / 1e9;
                println!(
                    "{:7} {:11} {n}x{k} threads={th} median {:8.1} us {:6.1} GB/s = {:5.1}% of peer {:5.1} GB/s ({} streams, ahead {})  best {:6.1} GB/s",
                    t.name(),
                    label,
                    med * 1e6,
                    gb / med,
                    100.0 * gb / med / peer,
                    peer,
                    s.streams,
                    s.ahead,
                    gb / ts[0]
                );
            }
        }
    }
}
