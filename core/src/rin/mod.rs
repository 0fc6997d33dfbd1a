//! SRDD reports and RIN (Resilient-Improving Noise) policies, docs/spec.md section 5.
//!
//! An SRDD report ([`SrddReport`](crate::srdd::SrddReport), the exact JSON schema of the original scanner) gives one error
//! per decoder layer; a [`RinConfig`] (a [`RinPolicy`], an optional clip, and the SRDD metric to
//! read) turns it into one noise multiplier `m_l` per layer for a given step; the noise std of
//! layer l is `sigma(step) * m_l` ([`RinConfig::effective_sigmas`]). Pure, serde-serializable,
//! built for wasm32 too. Refused inputs (empty error vector, negative/NaN errors, layer indices
//! out of range, clip min > max, negative multipliers, unknown names) are [`RinError`]s that name
//! the value.

pub mod config;
pub mod error;
pub mod layers;
pub mod policy;
pub mod presets;
pub mod targeted;
pub mod tiered;
pub mod zones;

pub use config::{MultiplierClip, RinConfig};
pub use error::RinError;
pub use layers::LayerSet;
pub use policy::{RinPolicy, RinPolicyKind};
pub use presets::RinPreset;
pub use targeted::TargetedPolicy;
pub use tiered::TieredPolicy;
pub use zones::{Zone, ZonePhase, ZonesPolicy};

/// Refuses an empty vector and errors that are negative or not finite.
pub(crate) fn check_errors(errors: &[f64]) -> Result<(), RinError> {
    if errors.is_empty() {
        return Err(RinError::EmptyErrors);
    }
    match errors
        .iter()
        .enumerate()
        .find(|(_, e)| !(e.is_finite() && **e >= 0.0))
    {
        Some((layer, &value)) => Err(RinError::BadError { layer, value }),
        None => Ok(()),
    }
}

/// Refuses step 0, steps past T and T = 0.
pub(crate) fn check_step(step: u64, total_steps: u64) -> Result<(), RinError> {
    if step == 0 || step > total_steps {
        Err(RinError::StepOutOfRange { step, total_steps })
    } else {
        Ok(())
    }
}

/// Refuses a configured multiplier that is negative or not finite.
pub(crate) fn check_multiplier(name: &'static str, value: f64) -> Result<(), RinError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(RinError::BadParameter {
            name,
            value: value.to_string(),
            expected: "multipliers must be finite and >= 0".into(),
        })
    }
}

/// Refuses a computed multiplier that is negative or not finite.
pub(crate) fn check_multipliers(policy: &'static str, m: &[f64]) -> Result<(), RinError> {
    match m
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        Some((layer, &value)) => Err(RinError::BadMultiplier {
            policy,
            layer,
            value,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up profile of 28 layers peaking at 14-17 (layer 15 highest, 26 lowest), shaped like
    /// the seed's Qwen2.5-1.5B MXFP4 scan; the mean is exactly 0.36.
    const ERRORS: [f64; 28] = [
        0.300, 0.320, 0.330, 0.330, 0.340, 0.350, 0.355, 0.360, 0.360, 0.365, 0.380, 0.390, 0.395,
        0.400, 0.420, 0.432, 0.425, 0.410, 0.395, 0.385, 0.365, 0.355, 0.345, 0.335, 0.330, 0.320,
        0.288, 0.300,
    ];
    const T: u64 = 58;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn run(spec: &str, step: u64) -> Vec<f64> {
        spec.parse::<RinConfig>()
            .unwrap()
            .multipliers(&ERRORS, step, T)
            .unwrap()
    }

    #[test]
    fn e9b_tiering() {
        let m = run("e9b", 1);
        for (l, v) in m.iter().enumerate() {
            let want = match l {
                14..=17 => 1.5,
                10..=13 | 18..=21 => 1.2,
                _ => 1.0,
            };
            assert_eq!(*v, want, "layer {l}");
        }
        // One neighbour on each side: 13 and 18.
        let m = run("tiered:neighbours=1", 1);
        assert_eq!(&m[12..20], &[1.0, 1.2, 1.5, 1.5, 1.5, 1.5, 1.2, 1.0]);
        // The band is the window with the largest error sum, not the top-4 layers by error.
        let t = TieredPolicy::default();
        assert_eq!(t.band_start(&ERRORS).unwrap(), 14);
        assert_eq!(
            TieredPolicy {
                band_width: 1,
                ..t.clone()
            }
            .band_start(&ERRORS)
            .unwrap(),
            15
        );
    }

    #[test]
    fn e13l_variable() {
        let m = run("e13l", 1);
        // err / 0.36
        assert!(close(m[15], 1.2), "{}", m[15]);
        assert!(close(m[26], 0.8));
        assert!(close(m[7], 1.0));
        assert!(close(m[0], 0.300 / 0.36));
        assert!(close(m.iter().sum::<f64>() / 28.0, 1.0));
        assert_eq!(run("e12", 1), m);
    }

    #[test]
    fn e13m_inverse() {
        let m = run("e13m", 1);
        // 2 - err / 0.36
        assert!(close(m[15], 0.8));
        assert!(close(m[26], 1.2));
        assert!(close(m[14], 2.0 - 0.42 / 0.36));
        let max = m.iter().copied().fold(0.0, f64::max);
        assert!(close(max, 1.2));
    }

    #[test]
    fn e13n_inverse_normalized() {
        let m = run("e13n", 1);
        // (2 - err/0.36) / 1.2: the lowest-error layer 26 sits at the ceiling 1.
        assert!(close(m[26], 1.0));
        assert!(close(m[15], 0.8 / 1.2));
        assert!(close(m[0], (2.0 - 0.3 / 0.36) / 1.2));
        assert!(m.iter().all(|&v| v <= 1.0 + 1e-15));
    }

    #[test]
    fn targeted_variants() {
        let m = run("e9a", 1);
        for (l, v) in m.iter().enumerate() {
            assert_eq!(*v, if (14..=17).contains(&l) { 1.0 } else { 0.0 });
        }
        assert_eq!(run("targeted:top-k=4", 1), m);
        assert_eq!(run("targeted:threshold=0.405", 1), m);
        let m = run("e13i-targeted", 1);
        assert_eq!(m.iter().sum::<f64>(), 10.0);
        assert!(m[10] == 1.0 && m[19] == 1.0 && m[9] == 0.0 && m[20] == 0.0);
    }

    #[test]
    fn zones_and_switching() {
        let m = run("e13i-high", 1);
        assert!(close(m[10], 1.6) && close(m[19], 1.6) && m[9] == 1.0 && m[20] == 1.0);
        assert!(close(run("e13i-low", 58)[15], 0.6));
        // Switch at half of T = 58: steps 1-29 first phase, 30-58 second.
        let spec = "zones:10-19=1.6:default=0.5:at=0.5:0-27=1:14-17=2";
        let early = run(spec, 29);
        assert!(close(early[12], 1.6) && early[0] == 0.5);
        let late = run(spec, 30);
        assert_eq!(late[0], 1.0);
        assert_eq!(late[15], 2.0);
        assert_eq!(late[12], 1.0);
    }

    #[test]
    fn clip_applies() {
        let m = run("e13l:clip=0.9..1.1", 1);
        assert_eq!(m[15], 1.1);
        assert_eq!(m[26], 0.9);
        assert!(close(m[7], 1.0));
    }

    #[test]
    fn compact_labels_round_trip() {
        for text in [
            "uniform",
            "variable",
            "inverse-normalized:clip=0.5..1",
            "targeted:layers=10-13,18-21",
            "targeted:top-k=3",
            "targeted:threshold=0.4:metric=deadzone_ratio",
            "tiered:band=4:neighbours=1:high=1.5:mid=1.2:base=1",
            "zones:10-19=1.6:default=0.5:at=0.5:14-17=2",
        ] {
            let c: RinConfig = text.parse().unwrap();
            assert_eq!(c.label(), text);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(
                serde_json::from_str::<RinConfig>(&json).unwrap(),
                c,
                "{json}"
            );
        }
    }

    #[test]
    fn every_refusal_names_the_value() {
        let cfg = |s: &str| s.parse::<RinConfig>();
        type Case<'a> = (Result<Vec<f64>, RinError>, &'a [&'a str]);
        let cases: Vec<Case> = vec![
            (run_err("variable", &[], 1), &["empty"]),
            (
                run_err("variable", &[0.1, f64::NAN], 1),
                &["layer 1", "NaN"],
            ),
            (run_err("variable", &[0.1, -0.2], 1), &["layer 1", "-0.2"]),
            (
                run_err("variable", &[0.0, 0.0], 1),
                &["variable", "mean error", "2 layers"],
            ),
            (
                run_err("targeted:layers=20-30", &ERRORS, 1),
                &["layer 30", "28 layers"],
            ),
            (run_err("zones:27-28=2", &ERRORS, 1), &["layer 28"]),
            (
                run_err("targeted:top-k=29", &ERRORS, 1),
                &["top_k = 29", "28"],
            ),
            (
                run_err("targeted:threshold=0.5", &ERRORS, 1),
                &["threshold 0.5", "0.432"],
            ),
            (run_err("tiered:band=29", &ERRORS, 1), &["band_width = 29"]),
            (
                run_err("inverse", &[0.1, 0.1, 0.1, 1.0], 1),
                &["inverse", "layer 3", "-1.07", "clip"],
            ),
            (run_err("variable", &ERRORS, 0), &["step 0", "T = 58"]),
            (run_err("variable", &ERRORS, 59), &["step 59"]),
            (
                cfg("variable:clip=1.5..0.5").map(|_| vec![]),
                &["clip min 1.5 > max 0.5"],
            ),
            (
                cfg("variable:clip=-1..1").map(|_| vec![]),
                &["clip min = -1"],
            ),
            (
                cfg("variable:clip=1").map(|_| vec![]),
                &["clip = 1", "MIN..MAX"],
            ),
            (
                cfg("cosine").map(|_| vec![]),
                &["`cosine`", "tiered", "e9b"],
            ),
            (
                cfg("tiered:bands=3").map(|_| vec![]),
                &["`bands=3`", "band=N"],
            ),
            (cfg("tiered:high=x").map(|_| vec![]), &["high = x"]),
            (cfg("tiered:band=0").map(|_| vec![]), &["band_width = 0"]),
            (cfg("tiered:high=-1").map(|_| vec![]), &["high = -1"]),
            (cfg("targeted").map(|_| vec![]), &["exactly one", "0 given"]),
            (
                cfg("targeted:layers=1:top-k=2").map(|_| vec![]),
                &["2 given"],
            ),
            (cfg("targeted:top-k=0").map(|_| vec![]), &["top_k = 0"]),
            (cfg("targeted:layers=9-3").map(|_| vec![]), &["`9-3`"]),
            (
                cfg("zones:1=1:at=0.5:1=2:at=0.25:1=3").map(|_| vec![]),
                &["from_fraction = 0.25"],
            ),
            (
                cfg("zones:1=1:at=0:1=2").map(|_| vec![]),
                &["from_fraction = 0", "increase"],
            ),
            (
                cfg("zones:1=1:at=1.5:1=2").map(|_| vec![]),
                &["from_fraction = 1.5"],
            ),
            (
                cfg("variable:metric=snr").map(|_| vec![]),
                &["`snr`", "sqnr_db"],
            ),
        ];
        for (i, (result, needles)) in cases.into_iter().enumerate() {
            let msg = result.expect_err(&format!("case {i} accepted")).to_string();
            for needle in needles {
                assert!(msg.contains(needle), "case {i}: `{msg}` lacks `{needle}`");
            }
        }
    }

    fn run_err(spec: &str, errors: &[f64], step: u64) -> Result<Vec<f64>, RinError> {
        spec.parse::<RinConfig>()?.multipliers(errors, step, T)
    }

    #[test]
    fn serde_is_strict() {
        let ok = r#"{"policy":{"kind":"tiered","band_width":2},"clip":{"min":0,"max":2}}"#;
        let c: RinConfig = serde_json::from_str(ok).unwrap();
        assert_eq!(
            c.label(),
            "tiered:band=2:neighbours=4:high=1.5:mid=1.2:base=1:clip=0..2"
        );
        for (bad, needle) in [
            (
                r#"{"policy":{"kind":"variable","x":1}}"#,
                "unknown field `x`",
            ),
            (r#"{"policy":{"kind":"tiered","bandwidth":2}}"#, "bandwidth"),
            (r#"{"policy":{"kind":"variable"},"clipp":{}}"#, "clipp"),
            (r#"{"policy":{"kind":"warp"}}"#, "warp"),
            (
                r#"{"policy":{"kind":"variable"},"clip":{"min":2,"max":1}}"#,
                "clip min 2 > max 1",
            ),
        ] {
            let err = serde_json::from_str::<RinConfig>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn effective_sigmas_multiply() {
        let s = crate::schedule::SigmaSchedule::geometric(0.05, 5e-4, 10, T).unwrap();
        let c: RinConfig = "e9b".parse().unwrap();
        let eff = c.effective_sigmas(&s, &ERRORS, 10).unwrap();
        let sigma = s.sigma(10).unwrap();
        assert!(sigma > 0.0);
        assert_eq!(eff[15], sigma * 1.5);
        assert_eq!(eff[0], sigma);
        assert!(
            c.effective_sigmas(&s, &ERRORS, 59)
                .unwrap_err()
                .to_string()
                .contains("step 59")
        );
    }
}
