//! How a step's samples are cut for the update: mini-batches of `ppo_mini_batch_size * n`
//! responses (one optimizer step each), each cut into micro-batches of `ppo_micro_batch_size`
//! responses (one forward/backward pass each; the whole mini-batch when it is 0). The same cut
//! serves the old and reference log-prob passes.
//!
//! In a data-parallel run the micro-batches of a mini-batch go round-robin over the workers, and
//! a mini-batch given in one piece is cut into one micro-batch per worker (the same update: the
//! loss is normalized by the whole mini-batch).

use std::ops::Range;

use super::config::TrainConfig;

/// The `[mini][micro]` index ranges into a step's samples, and which worker owns each
/// micro-batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MiniBatches {
    ranges: Vec<Vec<Range<usize>>>,
    rank: usize,
    world: usize,
}

impl MiniBatches {
    /// Cuts `total` samples into mini-batches of `mini_rows` and micro-batches of `micro` rows
    /// (for worker `rank` of `world`; `micro >= mini_rows` with several workers: one piece per
    /// worker). `mini_rows` and `micro` are at least 1.
    pub fn new(total: usize, mini_rows: usize, micro: usize, rank: usize, world: usize) -> Self {
        let micro = if micro >= mini_rows && world > 1 {
            mini_rows.div_ceil(world)
        } else {
            micro
        };
        let ranges = (0..total.div_ceil(mini_rows))
            .map(|mb| {
                let (start, end) = (mb * mini_rows, ((mb + 1) * mini_rows).min(total));
                (start..end)
                    .step_by(micro)
                    .map(|a| a..(a + micro).min(end))
                    .collect()
            })
            .collect();
        Self {
            ranges,
            rank,
            world,
        }
    }

    /// The cut of a step of `total` samples under `config` (`batch.mini() * rollout.n` rows per
    /// mini-batch, `batch.micro(n)` per micro-batch).
    pub fn of(config: &TrainConfig, total: usize, rank: usize, world: usize) -> Self {
        let n = config.rollout.n;
        Self::new(
            total,
            config.batch.mini() * n,
            config.batch.micro(n),
            rank,
            world,
        )
    }

    /// Mini-batches.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The micro-batches of mini-batch `mb`.
    pub fn micro(&self, mb: usize) -> &[Range<usize>] {
        &self.ranges[mb]
    }

    /// Every mini-batch's micro-batches, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[Range<usize>]> {
        self.ranges.iter().map(Vec::as_slice)
    }

    /// Whether this worker computes micro-batch `u` of a mini-batch.
    pub fn owns(&self, u: usize) -> bool {
        u % self.world == self.rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(m: &MiniBatches) -> Vec<Vec<Range<usize>>> {
        m.iter().map(<[_]>::to_vec).collect()
    }

    #[test]
    fn mini_batches_are_cut_into_micro_batches_with_a_short_last_piece() {
        let m = MiniBatches::new(32, 16, 6, 0, 1);
        assert_eq!(m.len(), 2);
        assert_eq!(
            ranges(&m),
            vec![vec![0..6, 6..12, 12..16], vec![16..22, 22..28, 28..32]]
        );
        assert!((0..3).all(|u| m.owns(u)), "one worker owns everything");
        // A partial last mini-batch, and micro = mini: one piece each.
        let m = MiniBatches::new(20, 16, 16, 0, 1);
        assert_eq!(ranges(&m), vec![vec![0..16], vec![16..20]]);
        assert_eq!(MiniBatches::new(0, 16, 16, 0, 1).len(), 0);
    }

    #[test]
    fn several_workers_share_a_mini_batch_round_robin() {
        // A mini-batch in one piece becomes one micro-batch per worker.
        let m = MiniBatches::new(16, 16, 16, 1, 3);
        assert_eq!(ranges(&m), vec![vec![0..6, 6..12, 12..16]]);
        assert_eq!(
            (0..3).map(|u| m.owns(u)).collect::<Vec<_>>(),
            vec![false, true, false]
        );
        // Explicit micro-batches are kept and dealt round-robin.
        let m = MiniBatches::new(16, 16, 4, 0, 2);
        assert_eq!(m.micro(0), &[0..4, 4..8, 8..12, 12..16]);
        assert_eq!(
            (0..4).map(|u| m.owns(u)).collect::<Vec<_>>(),
            vec![true, false, true, false]
        );
    }
}
