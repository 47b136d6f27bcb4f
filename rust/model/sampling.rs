//! Choosing the next token from logits: greedy, or temperature + top-k + top-p with a seeded RNG.

use crate::error::{Error, Result};

/// Sampling settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Temperature; `0` means greedy (argmax).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (`0`: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (`1`: all).
    pub top_p: f32,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temperature: 0.0, top_k: 40, top_p: 0.95, seed: 0 }
    }
}

/// A sampler with its RNG state (SplitMix64: small, seedable, good enough for sampling).
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    state: u64,
}

/// Index of the largest logit (first one on ties), `None` for an empty slice.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

impl Sampler {
    /// Validate the settings and seed the RNG.
    pub fn new(cfg: SamplerConfig) -> Result<Sampler> {
        if !(cfg.temperature.is_finite() && cfg.temperature >= 0.0) {
            return Err(Error::value(format!("temperature must be a finite number >= 0, got {}", cfg.temperature)));
        }
        if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
            return Err(Error::value(format!("top_p must be in (0, 1], got {}", cfg.top_p)));
        }
        let state = cfg.seed;
        Ok(Sampler { cfg, state })
    }

    fn next_f64(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Pick a token id from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        let greedy = argmax(logits).ok_or_else(|| Error::value("no logits to sample from"))? as u32;
        if self.cfg.temperature == 0.0 {
            return Ok(greedy);
        }
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| (i as u32, v)).collect();
        if cand.is_empty() {
            return Ok(greedy);
        }
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.cfg.top_k > 0 {
            cand.truncate(self.cfg.top_k);
        }
        let max = cand[0].1;
        let t = self.cfg.temperature;
        let mut probs: Vec<f64> = cand.iter().map(|&(_, v)| (((v - max) / t) as f64).exp()).collect();
        let sum: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if self.cfg.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.cfg.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let s: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= s);
        }
        let r = self.next_f64();
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if r < acc {
                return Ok(cand[i].0);
            }
        }
        Ok(cand[probs.len() - 1].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_seeded() {
        let logits = [0.1f32, 2.0, 1.9, -1.0];
        let mut s = Sampler::new(SamplerConfig::default()).unwrap();
        assert_eq!(s.sample(&logits).unwrap(), 1);
        let cfg = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, seed: 7 };
        let a: Vec<u32> = { let mut s = Sampler::new(cfg.clone()).unwrap(); (0..50).map(|_| s.sample(&logits).unwrap()).collect() };
        let b: Vec<u32> = { let mut s = Sampler::new(cfg.clone()).unwrap(); (0..50).map(|_| s.sample(&logits).unwrap()).collect() };
        assert_eq!(a, b);
        assert!(a.contains(&1) && a.contains(&2), "both likely tokens drawn: {a:?}");
        // top_k = 1 is greedy whatever the temperature.
        let mut s = Sampler::new(SamplerConfig { temperature: 5.0, top_k: 1, top_p: 1.0, seed: 1 }).unwrap();
        assert!((0..20).all(|_| s.sample(&logits).unwrap() == 1));
        assert!(Sampler::new(SamplerConfig { temperature: -1.0, ..SamplerConfig::default() }).is_err());
    }
}
