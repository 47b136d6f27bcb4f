//! vec_dot per type per ISA: 16 rows of 4096 values (L2-resident, the shape of llama.cpp's
//! own-loop figures in `../shared/anchors/llamacpp.md` §4a). Throughput is in values, so
//! ns per 256 values = 256e9 / (values/s). `benches/kernels_vs_llamacpp.py` prints the table.
//!
//! Timed in **thread CPU time** (`CLOCK_THREAD_CPUTIME_ID`), not wall time: the 2-core machine
//! is shared, and a single-thread kernel's cost is its CPU time. (Cache sharing with other
//! processes can still slow it; llama.cpp's figures were taken on a quiet box.)

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use kquants::simd::{available_isas, dot_row_bytes, kernels_for};
use kquants::QuantType;

/// CPU time consumed by the calling thread.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a Linux constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Types to bench (those with kernels).
pub const TYPES: &[QuantType] = &[
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2_K,
    QuantType::Q3_K,
    QuantType::Q4_K,
    QuantType::Q5_K,
    QuantType::Q6_K,
    QuantType::IQ4_NL,
    QuantType::IQ4_XS,
    QuantType::IQ2_XXS,
    QuantType::IQ3_XXS,
    QuantType::IQ2_XS,
    QuantType::IQ2_S,
    QuantType::IQ3_S,
    QuantType::TQ2_0,
    QuantType::TQ1_0,
    QuantType::IQ1_S,
    QuantType::IQ1_M,
    QuantType::MXFP4,
    QuantType::NVFP4,
    QuantType::Q1_0,
    QuantType::Q2_0,
    QuantType::F16,
    QuantType::BF16,
];

/// Random-looking but valid rows: bytes from an LCG, f16 scale fields set to small normals.
pub fn weight_rows(t: QuantType, n: usize, rows: usize) -> Vec<u8> {
    let (wrow, _) = dot_row_bytes(t, n).unwrap();
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut v: Vec<u8> = (0..wrow * rows)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as u8
        })
        .collect();
    let f16s: &[usize] = match t {
        QuantType::Q2_K => &[80, 82],
        QuantType::Q3_K => &[108],
        QuantType::Q6_K => &[208],
        QuantType::TQ1_0 => &[52],
        QuantType::TQ2_0 => &[64],
        // No f16 field at offset 0 (IQ1_M's scale is spread over its scale words; MXFP4 and
        // NVFP4 have 8-bit scales, all finite).
        QuantType::IQ1_M | QuantType::MXFP4 | QuantType::NVFP4 => &[],
        QuantType::BF16 => {
            for b in v.chunks_exact_mut(2) {
                b.copy_from_slice(&half::bf16::from_f32(0.01).to_le_bytes());
            }
            return v;
        }
        QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q4_K | QuantType::Q5_K => &[0, 2],
        _ => &[0],
    };
    for b in v.chunks_exact_mut(t.type_size()) {
        for &o in f16s {
            b[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
        if t == QuantType::MXFP4 {
            b[0] = 127; // E8M0 exponent 2^0: no subnormal or infinite products
        }
    }
    v
}

/// llama.cpp's own `vec_dot` kernels as a peer measured in the same run, from a llama.cpp build
/// the user provides: `KQUANTS_GGML_LIB=<dir>` holding `libggml-base.so` and `libggml-cpu.so`
/// (e.g. `build/bin` of a CMake build). This project neither ships nor builds ggml; without the
/// variable the peer is skipped and `benches/kernels_vs_llamacpp.py` falls back to the anchors'
/// figures.
mod ggml_peer {
    use std::ffi::{c_char, c_int, c_void, CString};

    pub type VecDot = unsafe extern "C" fn(c_int, *mut f32, usize, *const c_void, usize, *const c_void, usize, c_int);
    pub type FromFloat = unsafe extern "C" fn(*const f32, *mut c_void, i64);

    /// ggml's `struct ggml_type_traits_cpu` (ggml-cpu.h at the pinned commit).
    #[repr(C)]
    struct TraitsCpu {
        from_float: Option<FromFloat>,
        vec_dot: Option<VecDot>,
        vec_dot_type: c_int,
        nrows: i64,
    }

    pub struct Ggml {
        traits: unsafe extern "C" fn(c_int) -> *const TraitsCpu,
    }

    fn open(path: &str) -> Option<*mut c_void> {
        let c = CString::new(path).ok()?;
        // SAFETY: a NUL-terminated path; RTLD_GLOBAL so libggml-cpu finds libggml-base's symbols.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        (!h.is_null()).then_some(h)
    }

    fn sym(h: *mut c_void, name: &str) -> Option<*mut c_void> {
        let c = CString::new(name).ok()?;
        // SAFETY: `h` is a live handle from dlopen; the name is NUL-terminated.
        let p = unsafe { libc::dlsym(h, c.as_ptr() as *const c_char) };
        (!p.is_null()).then_some(p)
    }

    impl Ggml {
        /// The library from `KQUANTS_GGML_LIB`, or `None` (with a note on stderr if it was set
        /// but could not be loaded).
        pub fn load() -> Option<Ggml> {
            let dir = std::env::var("KQUANTS_GGML_LIB").ok()?;
            let loaded = (|| {
                open(&format!("{dir}/libggml-base.so"))?;
                let cpu = open(&format!("{dir}/libggml-cpu.so"))?;
                let init = sym(cpu, "ggml_cpu_init")?;
                let traits = sym(cpu, "ggml_get_type_traits_cpu")?;
                // SAFETY: the symbols have these C signatures in ggml-cpu.h.
                unsafe {
                    let init: unsafe extern "C" fn() = std::mem::transmute(init);
                    init();
                    Some(Ggml { traits: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int) -> *const TraitsCpu>(traits) })
                }
            })();
            if loaded.is_none() {
                eprintln!("KQUANTS_GGML_LIB={dir}: cannot load libggml-base.so / libggml-cpu.so; no ggml peer");
            }
            loaded
        }

        /// `(vec_dot, from_float of its activation type)` for ggml type id `t`.
        pub fn kernels(&self, t: u32) -> Option<(VecDot, FromFloat)> {
            // SAFETY: ggml returns a pointer into its static traits table for any valid type id.
            unsafe {
                let tr = (self.traits)(t as c_int).as_ref()?;
                let act = (self.traits)(tr.vec_dot_type).as_ref()?;
                Some((tr.vec_dot?, act.from_float?))
            }
        }
    }
}

#[allow(dead_code)]
fn bench(c: &mut Criterion) {
    let (n, rows) = (4096usize, 16usize);
    let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let mut g = c.benchmark_group("vec_dot");
    g.throughput(Throughput::Elements((n * rows) as u64));
    g.measurement_time(Duration::from_millis(600)).warm_up_time(Duration::from_millis(200)).sample_size(20);
    for isa in available_isas() {
        let Some(k) = kernels_for(isa) else { continue };
        for &t in TYPES {
            // Only levels that have their own kernel for the type.
            if k.vec_dot_isa(t) != Some(isa) {
                continue;
            }
            let at = t.dot_type().unwrap();
            let w = weight_rows(t, n, rows);
            let a = if k.has_quantize_act(at) {
                let mut a = vec![0u8; at.row_bytes(n).unwrap()];
                k.quantize_act(at, &x, &mut a).unwrap();
                a
            } else {
                // Float types dot with themselves.
                kquants::quant::quantize(at, &x, n, None, None).unwrap()
            };
            let wrow = t.row_bytes(n).unwrap();
            g.bench_with_input(BenchmarkId::new(t.name(), isa.name()), &w, |b, w| {
                b.iter_custom(|iters| {
                    let t0 = thread_cpu_time();
                    for _ in 0..iters {
                        let mut s = 0f32;
                        for r in w.chunks_exact(wrow) {
                            s += k.vec_dot(t, n, r, &a).unwrap();
                        }
                        black_box(s);
                    }
                    thread_cpu_time() - t0
                })
            });
        }
    }
    if let Some(ggml) = ggml_peer::Ggml::load() {
        for &t in TYPES {
            let Some((dot, from_float)) = ggml.kernels(t.id()) else { continue };
            let w = weight_rows(t, n, rows);
            let at = t.dot_type().unwrap();
            let mut a = vec![0u8; at.row_bytes(n).unwrap()];
            // SAFETY: `x` has n floats and `a` the bytes of one activation row of n values.
            unsafe { from_float(x.as_ptr(), a.as_mut_ptr().cast(), n as i64) };
            let wrow = t.row_bytes(n).unwrap();
            g.bench_with_input(BenchmarkId::new(t.name(), "ggml"), &w, |b, w| {
                b.iter_custom(|iters| {
                    let t0 = thread_cpu_time();
                    for _ in 0..iters {
                        let mut s = 0f32;
                        for r in w.chunks_exact(wrow) {
                            let mut o = 0f32;
                            // SAFETY: one weight row and one activation row of n values each, as
                            // ggml's vec_dot reads them (nrc = 1, strides unused).
                            unsafe { dot(n as i32, &mut o, 0, r.as_ptr().cast(), 0, a.as_ptr().cast(), 0, 1) };
                            s += o;
                        }
                        black_box(s);
                    }
                    thread_cpu_time() - t0
                })
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("quantize_act");
    g.throughput(Throughput::Elements(n as u64));
    g.measurement_time(Duration::from_millis(400)).warm_up_time(Duration::from_millis(100)).sample_size(20);
    for isa in available_isas() {
        let Some(k) = kernels_for(isa) else { continue };
        for at in [QuantType::Q8_0, QuantType::Q8_1, QuantType::Q8_K] {
            if k.quantize_act_isa(at) != Some(isa) {
                continue;
            }
            let mut a = vec![0u8; at.row_bytes(n).unwrap()];
            g.bench_function(BenchmarkId::new(at.name(), isa.name()), |b| {
                b.iter_custom(|iters| {
                    let t0 = thread_cpu_time();
                    for _ in 0..iters {
                        k.quantize_act(at, black_box(&x), &mut a).unwrap();
                    }
                    thread_cpu_time() - t0
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
