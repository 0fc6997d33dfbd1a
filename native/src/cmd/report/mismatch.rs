//! The report's `Rollout-Training Mismatch` section: per experiment and AQN sigma stage (the
//! steps that ran at one sigma), the mean and spread of the mismatch metrics the trainer logs
//! every step (`rollout_corr/*`, docs/spec.md section 9), pooled over the steps of every seed.

use std::collections::BTreeMap;

use aqn_core::run::log::MetricsLog;
use aqn_core::run::metric_keys::{
    AQN_SIGMA, CHI2_TOKEN, IS_RATIO_FRACTION_HIGH, IS_RATIO_FRACTION_LOW, LOG_PPL_ABS_DIFF,
    MISMATCH_K3_KL, MISMATCH_KL, PPL_RATIO, ROLLOUT_CORR_PREFIX, RS_MASKED_FRACTION,
};

/// The columns, in order (a column no step logged is left out).
const KEYS: &[&str] = &[
    MISMATCH_KL,
    MISMATCH_K3_KL,
    LOG_PPL_ABS_DIFF,
    PPL_RATIO,
    CHI2_TOKEN,
    IS_RATIO_FRACTION_HIGH,
    IS_RATIO_FRACTION_LOW,
    RS_MASKED_FRACTION,
];

/// The steps of one sigma (`None`: no AQN) and their values of each key.
#[derive(Debug, PartialEq)]
struct Stage {
    sigma: Option<f64>,
    steps: usize,
    values: BTreeMap<&'static str, Vec<f64>>,
}

/// The stages of `logs` (one per seed), in order of their first step; only steps that logged
/// the mismatch count.
fn stages(logs: &[&MetricsLog]) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for log in logs {
        let value = |key: &str, row: usize| log.series.get(key).and_then(|s| s[row]);
        for row in 0..log.steps.len() {
            if value(MISMATCH_KL, row).is_none() {
                continue;
            }
            let sigma = value(AQN_SIGMA, row);
            let i = match stages.iter().position(|s| s.sigma == sigma) {
                Some(i) => i,
                None => {
                    stages.push(Stage {
                        sigma,
                        steps: 0,
                        values: BTreeMap::new(),
                    });
                    stages.len() - 1
                }
            };
            let stage = &mut stages[i];
            stage.steps += 1;
            for key in KEYS {
                if let Some(v) = value(key, row) {
                    stage.values.entry(key).or_default().push(v);
                }
            }
        }
    }
    stages
}

fn cell(values: Option<&Vec<f64>>) -> String {
    match values {
        Some(v) if !v.is_empty() => format!("{:.2e} ± {:.1e}", super::mean(v), super::std_dev(v)),
        _ => "-".into(),
    }
}

/// The section for `experiments` (id, each seed's metrics log).
pub(super) fn section(out: &mut String, experiments: &[(&str, Vec<&MetricsLog>)]) {
    out.push_str("\n---\n\n## Rollout-Training Mismatch\n\n");
    out.push_str(
        "Per AQN sigma stage: the mismatch between the rollout policy (as it sampled: noise, \
         quantization, sampler) and the training policy, logged every step (`rollout_corr/*`, \
         docs/spec.md section 9); mean ± sample std over the stage's steps of every seed.\n",
    );
    let mut any = false;
    for (id, logs) in experiments {
        let stages = stages(logs);
        if stages.is_empty() {
            continue;
        }
        any = true;
        let keys: Vec<&str> = KEYS
            .iter()
            .copied()
            .filter(|k| stages.iter().any(|s| s.values.contains_key(k)))
            .collect();
        out.push_str(&format!(
            "\n### {id} ({} seeds)\n\n| sigma | steps |",
            logs.len()
        ));
        for k in &keys {
            out.push_str(&format!(
                " {} |",
                k.strip_prefix(ROLLOUT_CORR_PREFIX).unwrap_or(k)
            ));
        }
        out.push_str(&format!("\n|---|---|{}\n", "---|".repeat(keys.len())));
        for s in &stages {
            let sigma = s
                .sigma
                .map_or_else(|| "no AQN".into(), |x| format!("{x:.3e}"));
            out.push_str(&format!("| {sigma} | {} |", s.steps));
            for k in &keys {
                out.push_str(&format!(" {} |", cell(s.values.get(k))));
            }
            out.push('\n');
        }
    }
    if !any {
        out.push_str(
            "\nNo run logged it (runs made before aqn logged the mismatch have no `rollout_corr/kl`).\n",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aqn_core::run::log::parse_metrics;

    #[test]
    fn steps_are_grouped_by_sigma_over_seeds() {
        let a = parse_metrics(
            "{\"step\":0,\"val/accuracy\":0.1}\n\
             {\"step\":1,\"aqn/sigma\":0.01,\"rollout_corr/kl\":0.2,\"rollout_corr/k3_kl\":0.1}\n\
             {\"step\":2,\"aqn/sigma\":0.01,\"rollout_corr/kl\":0.4,\"rollout_corr/k3_kl\":0.3}\n\
             {\"step\":3,\"aqn/sigma\":0.001,\"rollout_corr/kl\":0.05,\"rollout_corr/k3_kl\":0.02}\n",
            "a",
        )
        .unwrap();
        let b = parse_metrics(
            "{\"step\":1,\"aqn/sigma\":0.01,\"rollout_corr/kl\":0.3,\"rollout_corr/k3_kl\":0.2}\n",
            "b",
        )
        .unwrap();
        let s = stages(&[&a, &b]);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].sigma, s[0].steps), (Some(0.01), 3));
        assert_eq!(s[0].values[MISMATCH_KL], vec![0.2, 0.4, 0.3]);
        assert_eq!((s[1].sigma, s[1].steps), (Some(0.001), 1));
        let mut out = String::new();
        section(&mut out, &[("e6b", vec![&a, &b])]);
        assert!(out.contains("### e6b (2 seeds)"), "{out}");
        assert!(out.contains("| sigma | steps | kl | k3_kl |"), "{out}");
        assert!(
            out.contains("| 1.000e-2 | 3 | 3.00e-1 ± 1.0e-1 | 2.00e-1 ± 1.0e-1 |"),
            "{out}"
        );
        let mut none = String::new();
        section(&mut none, &[("e5", vec![])]);
        assert!(none.contains("No run logged it"), "{none}");
    }
}
