//! A read-bandwidth probe: the peer against which a DRAM-bound GEMV is judged.
//!
//! [`read_stream`] reads every byte of a buffer once with `threads` threads, split the way a GEMV
//! splits its weight (each thread a contiguous range), doing nothing with the data but a cheap
//! integer add that keeps the loads alive. Each thread's range is cut into `streams` equal parts
//! read side by side (several hardware-prefetcher streams), with a software prefetch `ahead`
//! bytes in front of each. With AVX-512 it loads whole 64-byte lines into zmm registers; without
//! it, 8-byte words. The best of a few settings ([`read_stream_best`]) is what the machine gives
//! a read-only loop: a GEMV can at most match it.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::parallel::for_each_task;

/// Settings of one [`read_stream`] pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// Parts each thread's range is cut into, read side by side (at least 1).
    pub streams: usize,
    /// Software prefetch distance in bytes in front of each stream (0: none).
    pub ahead: usize,
}

/// The settings [`read_stream_best`] tries. On the 2-vCPU Sapphire Rapids box this was tuned on
/// (1 GiB, 2 threads) one stream per thread read 25-26 GB/s, 2 streams 27-30, 4 to 16 streams
/// 30-31.5; a prefetch 1-2 KiB ahead added up to 2 GB/s, 4-8 KiB nothing.
pub const STREAM_SETTINGS: [StreamSettings; 6] = [
    StreamSettings { streams: 1, ahead: 1024 },
    StreamSettings { streams: 2, ahead: 2048 },
    StreamSettings { streams: 4, ahead: 0 },
    StreamSettings { streams: 4, ahead: 2048 },
    StreamSettings { streams: 16, ahead: 0 },
    StreamSettings { streams: 16, ahead: 1024 },
];

/// Read all of `buf` once with `threads` threads (see the module docs) and return a checksum of
/// the bytes (the wrapping sum of its 64-bit words plus the tail bytes; its value only keeps the
/// reads from being optimized away, and does not depend on the settings or thread count).
pub fn read_stream(buf: &[u8], threads: usize, s: StreamSettings) -> Result<u64> {
    if threads == 0 || s.streams == 0 {
        return Err(Error::value("threads and streams must be at least 1"));
    }
    // Contiguous per-thread ranges of whole 64-byte lines; the last thread takes the tail.
    let lines = buf.len() / 64;
    let per = lines.div_ceil(threads);
    let sums: Vec<std::sync::atomic::AtomicU64> = (0..threads).map(|_| Default::default()).collect();
    for_each_task(Some(threads), threads, |t| {
        let a = (t * per).min(lines) * 64;
        let b = if t + 1 == threads { buf.len() } else { ((t + 1) * per).min(lines) * 64 };
        sums[t].store(read_range(&buf[a..b], s), std::sync::atomic::Ordering::Relaxed);
    })?;
    Ok(sums.iter().fold(0u64, |acc, v| acc.wrapping_add(v.load(std::sync::atomic::Ordering::Relaxed))))
}

/// [`read_stream`] with every [`STREAM_SETTINGS`] entry, `reps` timed passes each (after one
/// untimed pass over the buffer): the best pass's bytes per second and its settings.
pub fn read_stream_best(buf: &[u8], threads: usize, reps: usize) -> Result<(f64, StreamSettings)> {
    read_stream(buf, threads, STREAM_SETTINGS[0])?;
    let mut best = (0f64, STREAM_SETTINGS[0]);
    for s in STREAM_SETTINGS {
        for _ in 0..reps.max(1) {
            let t0 = Instant::now();
            std::hint::black_box(read_stream(std::hint::black_box(buf), threads, s)?);
            let bps = buf.len() as f64 / t0.elapsed().as_secs_f64();
            if bps > best.0 {
                best = (bps, s);
            }
        }
    }
    Ok(best)
}

/// The checksum of one thread's range `r` (whole lines, then a tail shorter than a line).
fn read_range(r: &[u8], s: StreamSettings) -> u64 {
    let lines = r.len() / 64;
    let body = &r[..lines * 64];
    let sum = lines_sum(body, s);
    r[lines * 64..].iter().fold(sum, |a, &b| a.wrapping_add(b as u64))
}

/// The checksum of whole lines, with zmm loads where AVX-512 is available.
fn lines_sum(body: &[u8], s: StreamSettings) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::Isa::Avx512.is_available() {
        // SAFETY: AVX-512 F checked just above; `body` is whole 64-byte lines.
        return unsafe { x86::lines_avx512(body, s) };
    }
    words(body, s)
}

/// Portable reader: the streams of `body` (whole lines) advanced one line each per step, summing
/// 64-bit words.
fn words(body: &[u8], s: StreamSettings) -> u64 {
    let lines = body.len() / 64;
    let per = lines / s.streams;
    let mut sum = 0u64;
    let word = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().unwrap_or([0; 8]));
    for l in 0..per {
        for st in 0..s.streams {
            let o = (st * per + l) * 64;
            if s.ahead > 0 {
                crate::simd::prefetch(body.as_ptr().wrapping_add(o + s.ahead), 1);
            }
            for w in 0..8 {
                sum = sum.wrapping_add(word(o + 8 * w));
            }
        }
    }
    for o in (s.streams * per * 64..body.len()).step_by(8) {
        sum = sum.wrapping_add(word(o));
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::StreamSettings;

    /// Lines read per stream and step (four zmm loads into four independent accumulators).
    const STEP: usize = 4;

    /// [`super::words`] with zmm loads: each step reads [`STEP`] lines of every stream, with a
    /// prefetch `ahead` bytes further per line.
    ///
    /// # Safety
    /// AVX-512 F available; `body.len()` a multiple of 64.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lines_avx512(body: &[u8], s: StreamSettings) -> u64 {
        let lines = body.len() / 64;
        let per = lines / s.streams / STEP * STEP;
        let p = body.as_ptr();
        let mut acc = [_mm512_setzero_si512(); STEP];
        let mut l = 0;
        while l < per {
            for st in 0..s.streams {
                let o = (st * per + l) * 64;
                for (u, a) in acc.iter_mut().enumerate() {
                    if s.ahead > 0 {
                        crate::simd::prefetch(p.wrapping_add(o + 64 * u + s.ahead), 1);
                    }
                    // SAFETY: line `st * per + l + u` < `streams * per` <= `lines` is inside `body`.
                    let v = unsafe { _mm512_loadu_si512(p.add(o + 64 * u) as *const __m512i) };
                    *a = _mm512_add_epi64(*a, v);
                }
            }
            l += STEP;
        }
        // Lines left after the streams' equal parts.
        for o in (s.streams * per * 64..body.len()).step_by(64) {
            // SAFETY: `o + 64 <= body.len()` (whole lines).
            acc[0] = _mm512_add_epi64(acc[0], unsafe { _mm512_loadu_si512(p.add(o) as *const __m512i) });
        }
        let t = _mm512_add_epi64(_mm512_add_epi64(acc[0], acc[1]), _mm512_add_epi64(acc[2], acc[3]));
        _mm512_reduce_add_epi64(t) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_the_wrapping_sum_of_words_whatever_the_settings() {
        // 64-bit words then a 13-byte tail: the word sum plus the tail bytes.
        let n = 64 * 1000 + 13;
        let buf: Vec<u8> = (0..n).map(|i| (i * 131 % 251) as u8).collect();
        let body = n / 64 * 64;
        let mut want = 0u64;
        for c in buf[..body].chunks_exact(8) {
            want = want.wrapping_add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        want = buf[body..].iter().fold(want, |a, &b| a.wrapping_add(b as u64));
        for threads in [1, 2, 3] {
            for s in STREAM_SETTINGS {
                assert_eq!(read_stream(&buf, threads, s).unwrap(), want, "{threads} threads, {s:?}");
                assert_eq!(read_range(&buf, s), want, "{s:?}");
                assert_eq!(words(&buf[..body], s), want - buf[body..].iter().map(|&b| b as u64).sum::<u64>(), "{s:?}");
            }
        }
        assert!(read_stream(&buf, 0, STREAM_SETTINGS[0]).is_err());
    }
}
