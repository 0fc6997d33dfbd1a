//! The two phases of an RL step, and which of them a noise knob applies to.
//!
//! Every step of GRPO/DAPO first generates rollouts with the current policy (the *rollout* phase),
//! then computes log-probabilities and the update (the *training* phase). AQN (docs/spec.md section 4)
//! perturbs the rollout policy only by default, as QeRL does; hardware-error injection (section 6)
//! may apply to either or both.

use thiserror::Error;

use crate::named::named_enum;

/// A refused phase name.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PhaseError {
    /// A name that is not one of the enum's variants.
    #[error(transparent)]
    UnknownName(#[from] crate::named::UnknownName),
}

named_enum! {
    /// One phase of an optimizer step.
    Phase, "phase", PhaseError {
        /// Generating responses (inference only, no autodiff graph).
        Rollout => "rollout",
        /// Log-probabilities, loss and backward pass of the policy update.
        Training => "training" | "train",
    }
}

named_enum! {
    /// The phases a noise knob applies to.
    Phases, "phase selection", PhaseError {
        /// Rollouts only (AQN's default, as in QeRL).
        Rollout => "rollout",
        /// The training pass only.
        Training => "training" | "train",
        /// Both.
        Both => "both",
    }
}

impl Phases {
    /// Whether `phase` is selected.
    pub fn includes(self, phase: Phase) -> bool {
        matches!(
            (self, phase),
            (Phases::Both, _)
                | (Phases::Rollout, Phase::Rollout)
                | (Phases::Training, Phase::Training)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_and_names() {
        assert!(Phases::Both.includes(Phase::Rollout) && Phases::Both.includes(Phase::Training));
        assert!(Phases::Rollout.includes(Phase::Rollout));
        assert!(!Phases::Rollout.includes(Phase::Training));
        assert!(!Phases::Training.includes(Phase::Rollout));
        assert_eq!("Train".parse::<Phases>().unwrap(), Phases::Training);
        let err = "eval".parse::<Phases>().unwrap_err().to_string();
        assert!(
            err.contains("`eval`") && err.contains("rollout, training, both"),
            "{err}"
        );
        let json = serde_json::to_string(&Phase::Rollout).unwrap();
        assert_eq!(json, "\"rollout\"");
    }
}
