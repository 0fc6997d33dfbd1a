//! Choosing the next token from a row of logits: greedy, or sampling at a temperature with
//! optional top-k, top-p (nucleus, Holtzman et al., "The Curious Case of Neural Text
//! Degeneration", ICLR 2020) and min-p (Nguyen et al., "Turning Up the Heat: Min-p Sampling",
//! 2024) filtering, in HF's order: temperature, then top-k, then top-p, then min-p.
//!
//! A sampler owns its random stream, a [`CounterRng`] whose state is two integers, so a rollout
//! worker can be checkpointed and resumed mid-run and draw the very same tokens (the sampler is
//! serde-serializable).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rng::CounterRng;

/// Why a sampling configuration was refused.
#[derive(Debug, Error, PartialEq)]
pub enum SamplingError {
    /// A knob out of its range.
    #[error("sampling `{knob}` = {value}: {reason}")]
    Invalid {
        /// `temperature`, `top_k` or `top_p`.
        knob: &'static str,
        /// The value.
        value: String,
        /// The valid range.
        reason: &'static str,
    },
}

/// What the user asks for; [`SamplingConfig::build`] validates it into a [`Sampler`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    /// 0 means greedy (argmax); otherwise logits are divided by it before the softmax.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (`None`: all).
    pub top_p: Option<f64>,
    /// Keep the tokens whose probability is at least `min_p` times the most likely one's
    /// (`None`: all; HF's `MinPLogitsWarper`).
    #[serde(default)]
    pub min_p: Option<f64>,
    /// Seed of the sampler's random stream.
    pub seed: u64,
}

impl SamplingConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            min_p: None,
            seed: 0,
        }
    }

    /// Sampling at `temperature` with the given seed and no filtering.
    pub fn with_temperature(temperature: f64, seed: u64) -> Self {
        Self {
            temperature,
            top_k: None,
            top_p: None,
            min_p: None,
            seed,
        }
    }

    /// Sets top-k.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = Some(k);
        self
    }

    /// Sets top-p.
    pub fn top_p(mut self, p: f64) -> Self {
        self.top_p = Some(p);
        self
    }

    /// Sets min-p.
    pub fn min_p(mut self, p: f64) -> Self {
        self.min_p = Some(p);
        self
    }

    /// Validates and builds the sampler. Greedy decoding with top-k or top-p set is refused: the
    /// filters would have no effect.
    pub fn build(&self) -> Result<Sampler, SamplingError> {
        let invalid = |knob, value: String, reason| SamplingError::Invalid {
            knob,
            value,
            reason,
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(invalid(
                "temperature",
                self.temperature.to_string(),
                "must be finite and >= 0 (0 = greedy)",
            ));
        }
        if self.top_k == Some(0) {
            return Err(invalid(
                "top_k",
                "0".into(),
                "must be >= 1 (omit it to keep all tokens)",
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(invalid("top_p", p.to_string(), "must be in (0, 1]"));
        }
        if let Some(p) = self.min_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(invalid(
                "min_p",
                p.to_string(),
                "must be in (0, 1] (omit it to keep all tokens)",
            ));
        }
        if self.temperature == 0.0 {
            if let Some(k) = self.top_k {
                return Err(invalid(
                    "top_k",
                    k.to_string(),
                    "has no effect with temperature 0 (greedy); unset it or use a temperature > 0",
                ));
            }
            if let Some(p) = self.top_p {
                return Err(invalid(
                    "top_p",
                    p.to_string(),
                    "has no effect with temperature 0 (greedy); unset it or use a temperature > 0",
                ));
            }
            if let Some(p) = self.min_p {
                return Err(invalid(
                    "min_p",
                    p.to_string(),
                    "has no effect with temperature 0 (greedy); unset it or use a temperature > 0",
                ));
            }
            return Ok(Sampler::Greedy);
        }
        Ok(Sampler::Random(RandomSampler {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            rng: CounterRng::new(self.seed),
        }))
    }
}

/// A drawn token and its log-probability under the distribution it was drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// The token id.
    pub token: usize,
    /// `ln q(token)` with `q` the sampler's distribution: the temperature-scaled, top-k/top-p
    /// filtered and renormalized softmax for [`RandomSampler`]; 0 for greedy decoding (all the
    /// mass on the argmax).
    pub log_prob: f64,
}

/// Picks a token id from a row of logits.
pub trait Sample {
    /// The chosen token and its log-probability under the sampling distribution.
    fn draw(&mut self, logits: &[f32]) -> Draw;

    /// The chosen token.
    fn sample(&mut self, logits: &[f32]) -> usize {
        self.draw(logits).token
    }
}

/// The samplers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Sampler {
    /// The most likely token (the first one on ties, as `torch.argmax`).
    Greedy,
    /// A draw from the temperature-scaled, top-k/top-p filtered distribution.
    Random(RandomSampler),
}

/// Sampling at a temperature with optional top-k and top-p, from its own random stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomSampler {
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
    #[serde(default)]
    min_p: Option<f64>,
    rng: CounterRng,
}

impl Sample for Sampler {
    fn draw(&mut self, logits: &[f32]) -> Draw {
        match self {
            Sampler::Greedy => Draw {
                token: argmax(logits),
                log_prob: 0.0,
            },
            Sampler::Random(s) => s.draw(logits),
        }
    }
}

impl Sampler {
    /// The random stream's state (None for greedy), for checkpoints and logs.
    pub fn rng(&self) -> Option<&CounterRng> {
        match self {
            Sampler::Greedy => None,
            Sampler::Random(s) => Some(&s.rng),
        }
    }
}

/// Index of the largest value; the first on ties; NaN never wins.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

/// `log_softmax(logits)[token]` in f64: the log-probability of `token` at temperature 1.
pub fn log_prob(logits: &[f32], token: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits[token] as f64 - max - sum.ln()
}

/// Decreasing logit, then increasing token id; NaN last: the order top-k and top-p rank tokens in.
fn rank(logits: &[f32], a: usize, b: usize) -> std::cmp::Ordering {
    logits[b]
        .partial_cmp(&logits[a])
        .unwrap_or_else(|| logits[a].is_nan().cmp(&logits[b].is_nan()))
        .then(a.cmp(&b))
}

/// Puts the `m` best-ranked of `tokens` first, sorted (a partial sort: vocabularies are large).
fn sort_best(tokens: &mut [usize], m: usize, logits: &[f32]) {
    if m < tokens.len() {
        tokens.select_nth_unstable_by(m - 1, |&a, &b| rank(logits, a, b));
    }
    tokens[..m].sort_unstable_by(|&a, &b| rank(logits, a, b));
}

/// How many of the first tokens of a nucleus search are examined at once.
const NUCLEUS_CHUNK: usize = 64;

impl RandomSampler {
    /// The distribution a draw comes from: softmax of `logits / temperature` restricted to the
    /// top-k, then to the top-p nucleus, then to the tokens at least `min_p` times as likely as
    /// the most likely one, renormalized. Pairs `(token, probability)`; sorted by
    /// decreasing probability (ties: lower id first) when top-k or top-p is set, in token order
    /// otherwise.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(usize, f64)> {
        let mut tokens: Vec<usize> = (0..logits.len()).collect();
        if let Some(k) = self.top_k {
            let k = k.min(tokens.len());
            sort_best(&mut tokens, k, logits);
            tokens.truncate(k);
        }
        let inv_t = 1.0 / self.temperature;
        let max = tokens
            .iter()
            .map(|&i| logits[i])
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        let weights: Vec<f64> = tokens
            .iter()
            .map(|&i| ((logits[i] as f64 - max) * inv_t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut probs: Vec<(usize, f64)> = tokens
            .iter()
            .zip(weights)
            .map(|(&i, w)| (i, w / total))
            .collect();
        if let Some(p) = self.top_p {
            // Keep a token while the probability of the better-ranked tokens is below p: the
            // smallest set reaching p, never empty (HF's TopPLogitsWarper). Only as many tokens as
            // the nucleus needs are sorted.
            let prob: Vec<f64> = {
                let mut v = vec![0.0; logits.len()];
                for &(i, q) in &probs {
                    v[i] = q;
                }
                v
            };
            let mut m = NUCLEUS_CHUNK.min(tokens.len());
            let keep = loop {
                sort_best(&mut tokens, m, logits);
                let mut before = 0.0;
                let found = tokens[..m].iter().position(|&i| {
                    let stop = before >= p;
                    before += prob[i];
                    stop
                });
                match found {
                    Some(n) => break n,
                    None if m == tokens.len() => break m,
                    None => m = (m * 4).min(tokens.len()),
                }
            };
            // keep >= 1: the first token is kept since p > 0.
            let kept: f64 = tokens[..keep].iter().map(|&i| prob[i]).sum();
            probs = tokens[..keep]
                .iter()
                .map(|&i| (i, prob[i] / kept))
                .collect();
        }
        if let Some(m) = self.min_p {
            // HF's MinPLogitsWarper: drop `q < min_p * max q` (the most likely token stays).
            let threshold = m * probs.iter().map(|&(_, q)| q).fold(0.0, f64::max);
            probs.retain(|&(_, q)| q >= threshold);
            let kept: f64 = probs.iter().map(|&(_, q)| q).sum();
            for (_, q) in &mut probs {
                *q /= kept;
            }
        }
        probs
    }
}

impl Sample for RandomSampler {
    fn draw(&mut self, logits: &[f32]) -> Draw {
        let probs = self.distribution(logits);
        // Inverse CDF with one uniform draw in [0, 1).
        let u = self.rng.next_f64();
        let mut cum = 0.0;
        let &(token, q) = probs
            .iter()
            .find(|&&(_, q)| {
                cum += q;
                u < cum
            })
            .unwrap_or(&probs[probs.len() - 1]);
        Draw {
            token,
            log_prob: q.ln(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits of the distribution [0.4, 0.3, 0.2, 0.1] (token order 0..4).
    fn logits() -> Vec<f32> {
        [0.1f32, 0.4, 0.2, 0.3].iter().map(|p| p.ln()).collect()
    }

    fn dist(config: SamplingConfig) -> Vec<(usize, f64)> {
        match config.build().unwrap() {
            Sampler::Random(s) => s.distribution(&logits()),
            Sampler::Greedy => panic!("greedy"),
        }
    }

    /// Equal tokens and probabilities up to the f32 rounding of the logits.
    fn close(a: &[(usize, f64)], b: &[(usize, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && (x.1 - y.1).abs() < 1e-6)
    }

    #[test]
    fn top_k_and_top_p_on_a_hand_made_distribution() {
        let full = dist(SamplingConfig::with_temperature(1.0, 0));
        assert!(
            close(&full, &[(0, 0.1), (1, 0.4), (2, 0.2), (3, 0.3)]),
            "{full:?}"
        );
        let k2 = dist(SamplingConfig::with_temperature(1.0, 0).top_k(2));
        assert!(close(&k2, &[(1, 0.4 / 0.7), (3, 0.3 / 0.7)]), "{k2:?}");
        // 0.4 < 0.65, 0.4 + 0.3 >= 0.65: the nucleus is {1, 3}.
        let p = dist(SamplingConfig::with_temperature(1.0, 0).top_p(0.65));
        assert!(close(&p, &[(1, 0.4 / 0.7), (3, 0.3 / 0.7)]), "{p:?}");
        // Exactly reaching p stops: 0.4 + 0.3 = 0.7 reaches 0.7 -> {1, 3}.
        let p = dist(SamplingConfig::with_temperature(1.0, 0).top_p(0.7 - 1e-9));
        assert_eq!(p.len(), 2);
        // A tiny p keeps the best token only.
        let p = dist(SamplingConfig::with_temperature(1.0, 0).top_p(0.01));
        assert!(close(&p, &[(1, 1.0)]));
        // top-k first, then top-p on the renormalized top-k: {1: .571, 3: .429}, p = 0.5 -> {1}.
        let kp = dist(SamplingConfig::with_temperature(1.0, 0).top_k(2).top_p(0.5));
        assert!(close(&kp, &[(1, 1.0)]), "{kp:?}");
        // Temperature 2 flattens: probabilities proportional to sqrt(p).
        let t = dist(SamplingConfig::with_temperature(2.0, 0));
        let z: f64 = [0.4f64, 0.3, 0.2, 0.1].iter().map(|p| p.sqrt()).sum();
        assert!(t[1].0 == 1 && (t[1].1 - 0.4f64.sqrt() / z).abs() < 1e-7);
    }

    /// The plain reference of `distribution`: sort the whole vocabulary, cut, renormalize.
    fn reference(logits: &[f32], t: f64, k: Option<usize>, p: Option<f64>) -> Vec<(usize, f64)> {
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| rank(logits, a, b));
        order.truncate(k.unwrap_or(order.len()));
        let w: Vec<f64> = order
            .iter()
            .map(|&i| (logits[i] as f64 / t).exp())
            .collect();
        let z: f64 = w.iter().sum();
        let mut probs: Vec<(usize, f64)> =
            order.into_iter().zip(w).map(|(i, w)| (i, w / z)).collect();
        if let Some(p) = p {
            let mut cum = 0.0;
            let n = probs
                .iter()
                .take_while(|(_, q)| {
                    let keep = cum < p;
                    cum += q;
                    keep
                })
                .count();
            probs.truncate(n);
            let z: f64 = probs.iter().map(|(_, q)| q).sum();
            probs.iter_mut().for_each(|(_, q)| *q /= z);
        }
        probs
    }

    #[test]
    fn partial_sort_nucleus_matches_a_full_sort() {
        let logits: Vec<f32> = (0..5000)
            .map(|i| 3.0 * crate::rng::normal_f64(11, i) as f32)
            .collect();
        for (t, k, p) in [
            (1.0, None, Some(0.3)),
            (1.0, None, Some(0.999)),
            (0.6, Some(300), Some(0.9)),
            (1.7, Some(40), None),
            (1.0, None, Some(1.0)),
        ] {
            let mut c = SamplingConfig::with_temperature(t, 0);
            c.top_k = k;
            c.top_p = p;
            let got = match c.build().unwrap() {
                Sampler::Random(s) => s.distribution(&logits),
                Sampler::Greedy => unreachable!(),
            };
            let want = reference(&logits, t, k, p);
            assert_eq!(got.len(), want.len(), "{t} {k:?} {p:?}");
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    a.0 == b.0 && (a.1 - b.1).abs() < 1e-12,
                    "{t} {k:?} {p:?}: {a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn draws_follow_the_distribution_and_are_reproducible() {
        let mut s = SamplingConfig::with_temperature(1.0, 42)
            .top_k(3)
            .build()
            .unwrap();
        let n = 200_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&logits())] += 1;
        }
        assert_eq!(counts[0], 0, "top-k 3 excludes token 0");
        for (token, p) in [(1, 0.4 / 0.9), (3, 0.3 / 0.9), (2, 0.2 / 0.9)] {
            let f = counts[token] as f64 / n as f64;
            assert!((f - p).abs() < 0.005, "token {token}: {f} vs {p}");
        }
        // Same seed, same draws; a saved sampler resumes the same stream.
        let mut a = SamplingConfig::with_temperature(0.7, 9)
            .top_p(0.9)
            .build()
            .unwrap();
        let first: Vec<usize> = (0..50).map(|_| a.sample(&logits())).collect();
        let saved = serde_json::to_string(&a).unwrap();
        let next: Vec<usize> = (0..50).map(|_| a.sample(&logits())).collect();
        let mut b = SamplingConfig::with_temperature(0.7, 9)
            .top_p(0.9)
            .build()
            .unwrap();
        assert_eq!(
            (0..50).map(|_| b.sample(&logits())).collect::<Vec<_>>(),
            first
        );
        let mut resumed: Sampler = serde_json::from_str(&saved).unwrap();
        assert_eq!(
            (0..50)
                .map(|_| resumed.sample(&logits()))
                .collect::<Vec<_>>(),
            next
        );
        let mut c = SamplingConfig::with_temperature(0.7, 10)
            .top_p(0.9)
            .build()
            .unwrap();
        assert_ne!(
            (0..50).map(|_| c.sample(&logits())).collect::<Vec<_>>(),
            first
        );
    }

    #[test]
    fn greedy_and_log_prob() {
        let mut g = SamplingConfig::greedy().build().unwrap();
        assert_eq!(g.sample(&logits()), 1);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.0]), 1);
        assert!((log_prob(&logits(), 3) - 0.3f64.ln()).abs() < 1e-7);
    }

    #[test]
    fn a_draw_carries_the_log_prob_of_the_distribution_it_came_from() {
        // Temperature 1, no filter: the model's own log-probability.
        let mut s = SamplingConfig::with_temperature(1.0, 3).build().unwrap();
        for _ in 0..20 {
            let d = s.draw(&logits());
            assert!((d.log_prob - log_prob(&logits(), d.token)).abs() < 1e-12);
        }
        // Top-2 at temperature 1: tokens 1 and 3, renormalized to 0.4/0.7 and 0.3/0.7.
        let mut s = SamplingConfig::with_temperature(1.0, 4)
            .top_k(2)
            .build()
            .unwrap();
        for _ in 0..20 {
            let d = s.draw(&logits());
            let want = match d.token {
                1 => 4.0 / 7.0,
                3 => 3.0 / 7.0,
                t => panic!("token {t} is outside the top 2"),
            };
            assert!((d.log_prob - f64::ln(want)).abs() < 1e-7, "{d:?}");
        }
        // Temperature 0.5 squares and renormalizes the probabilities: 0.16 / 0.30 for token 1.
        let mut s = SamplingConfig::with_temperature(0.5, 5).build().unwrap();
        let d = (0..50)
            .map(|_| s.draw(&logits()))
            .find(|d| d.token == 1)
            .expect("token 1 drawn");
        assert!((d.log_prob - f64::ln(0.16 / 0.30)).abs() < 1e-6, "{d:?}");
        // Greedy puts all the mass on the argmax.
        let mut g = SamplingConfig::greedy().build().unwrap();
        assert_eq!(
            g.draw(&logits()),
            Draw {
                token: 1,
                log_prob: 0.0
            }
        );
    }

    /// Min-p against its formula on random logits: softmax at the temperature (after top-k), keep
    /// `p >= min_p * max p`, renormalize.
    #[test]
    fn min_p_keeps_the_tokens_near_the_most_likely_one() {
        // [0.4, 0.3, 0.2, 0.1] with min_p 0.6: the threshold 0.24 keeps 0.4 and 0.3.
        let d = dist(SamplingConfig::with_temperature(1.0, 0).min_p(0.6));
        let want = [(1, 4.0 / 7.0), (3, 3.0 / 7.0)];
        assert_eq!(d.len(), 2, "{d:?}");
        for ((t, q), (wt, wq)) in d.iter().zip(want) {
            // The logits are f32 logarithms of the probabilities: 1e-7.
            assert!(*t == wt && (q - wq).abs() < 1e-7, "{d:?}");
        }
        let mut rng = CounterRng::new(7);
        for case in 0..50 {
            let logits: Vec<f32> = (0..40)
                .map(|_| (rng.next_f64() * 8.0 - 4.0) as f32)
                .collect();
            let (t, m) = (0.5 + rng.next_f64(), 0.05 + 0.9 * rng.next_f64());
            let top_k = (case % 2 == 0).then_some(10);
            let mut config = SamplingConfig::with_temperature(t, 0).min_p(m);
            config.top_k = top_k;
            let Sampler::Random(s) = config.build().unwrap() else {
                panic!("random")
            };
            let mut got = s.distribution(&logits);
            got.sort_by_key(|&(i, _)| i);
            // The reference: HF's warpers in order on the full vocabulary.
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            let allowed: Vec<usize> = order[..top_k.unwrap_or(logits.len())].to_vec();
            let w: Vec<f64> = allowed
                .iter()
                .map(|&i| (f64::from(logits[i]) / t).exp())
                .collect();
            let z: f64 = w.iter().sum();
            let max = w.iter().copied().fold(0.0, f64::max) / z;
            let mut want: Vec<(usize, f64)> = allowed
                .iter()
                .zip(&w)
                .map(|(&i, &x)| (i, x / z))
                .filter(|&(_, p)| p >= m * max)
                .collect();
            let kept: f64 = want.iter().map(|x| x.1).sum();
            want.iter_mut().for_each(|x| x.1 /= kept);
            want.sort_by_key(|&(i, _)| i);
            assert_eq!(
                got.iter().map(|x| x.0).collect::<Vec<_>>(),
                want.iter().map(|x| x.0).collect::<Vec<_>>(),
                "case {case}"
            );
            for (a, b) in got.iter().zip(&want) {
                assert!((a.1 - b.1).abs() < 1e-12, "case {case}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn invalid_knobs_are_refused_with_their_names() {
        let e = |c: SamplingConfig| c.build().unwrap_err().to_string();
        assert!(e(SamplingConfig::with_temperature(-1.0, 0)).contains("`temperature` = -1"));
        assert!(e(SamplingConfig::with_temperature(1.0, 0).top_k(0)).contains("`top_k` = 0"));
        assert!(e(SamplingConfig::with_temperature(1.0, 0).top_p(1.5)).contains("`top_p` = 1.5"));
        assert!(e(SamplingConfig::with_temperature(1.0, 0).top_p(0.0)).contains("(0, 1]"));
        assert!(e(SamplingConfig::greedy().top_k(5)).contains("no effect"));
        assert!(e(SamplingConfig::with_temperature(1.0, 0).min_p(0.0)).contains("`min_p` = 0"));
        assert!(e(SamplingConfig::greedy().min_p(0.1)).contains("no effect"));
    }
}
