//! Single-thread codec timing per ISA level (ns per 256 values), a quick check beside
//! `cargo bench --bench codecs`, in thread CPU time (Linux):
//! `cargo run --release --example isa_timing -- Q4_0 Q8_0`.
use kquants::quant::{self, Path};
use kquants::simd::{available_isas};
use kquants::QuantType;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rows, cols) = (16usize, 4096usize);
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let x: Vec<f32> = (0..rows * cols)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.05
        })
        .collect();
    let types: Vec<QuantType> = if args.is_empty() {
        QuantType::ALL.iter().copied().filter(|&t| quant::is_supported(t)).collect()
    } else {
        args.iter().filter_map(|a| QuantType::from_name(a)).collect()
    };
    let per256 = |ns: f64| ns * 256.0 / (rows * cols) as f64;
    // Per-thread CPU time: the machine is shared, and wall time counts other jobs' slices.
    let cpu_ns = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid timespec to write; the clock id is a Linux constant.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
    };
    let best = |f: &mut dyn FnMut()| {
        let mut b = f64::MAX;
        for _ in 0..7 {
            let t0 = Instant::now();
            let c0 = cpu_ns();
            let mut n = 0;
            while t0.elapsed().as_millis() < 30 {
                f();
                n += 1;
            }
            b = b.min((cpu_ns() - c0) / n as f64);
        }
        b
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| for t in types {
        let rb = t.row_bytes(cols).unwrap();
        let mut q = vec![0u8; rows * rb];
        let mut y = vec![0f32; rows * cols];
        let mut line = format!("{:8}", t.name());
        for isa in available_isas() {
            // Types that need an importance matrix get a unit one.
            let w = vec![1.0f32; cols];
            let w = t.requires_imatrix().then_some(w.as_slice());
            let tq = best(&mut || quant::quantize_into_isa(isa, t, &x, cols, w, Path::Chunk, &mut q, None).unwrap());
            let td = best(&mut || quant::dequantize_into_isa(isa, t, &q, &mut y, None).unwrap());
            line += &format!("  {isa}: q {:8.1} dq {:6.1}", per256(tq), per256(td));
        }
        println!("{line}");
    });
}
