//! The collective operations of data-parallel training: what the workers of one run exchange.
//!
//! A data-parallel run has `world_size` workers (ranks `0..world_size`), each with the whole model.
//! The trainer shards the rollouts and the micro-batches of every mini-batch across them, and the
//! workers then agree through these operations on everything that decides the next step: the
//! gathered samples (so dynamic sampling sees the same batch everywhere), the summed gradients
//! (so every worker applies the same optimizer step), the summed loss metrics and the evaluation
//! counts. Rank 0 writes the run folder; the others write nothing.
//!
//! [`SingleProcess`] is the one-worker case (every operation is the identity). The engine for
//! several workers lives in the binary (aqn-native's `mpi` feature: Open MPI through rsmpi), so
//! this crate has no transport of its own.

use std::collections::HashSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::run::dir::StepMetrics;

/// The operations every worker calls in the same order (a collective call that one worker skips
/// blocks the others, as in MPI).
pub trait Collective {
    /// This worker's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// The number of workers.
    fn world_size(&self) -> usize;
    /// Sums `values` element-wise over the workers, in place. Every worker receives the same bits
    /// (the sum is formed once and broadcast), so their parameters never drift apart.
    fn sum_f32(&self, values: &mut [f32]);
    /// [`Self::sum_f32`] for f64.
    fn sum_f64(&self, values: &mut [f64]);
    /// Every worker's `bytes`, in rank order (lengths may differ).
    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>>;
}

/// One worker: nothing to exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn sum_f32(&self, _: &mut [f32]) {}

    fn sum_f64(&self, _: &mut [f64]) {}

    fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        vec![bytes.to_vec()]
    }
}

/// The items of `0..len` that worker `rank` of `world` takes: a contiguous block, the first
/// `len % world` workers one more than the others (so the blocks in rank order are `0..len`).
pub fn shard(len: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let world = world.max(1);
    let (base, extra) = (len / world, len % world);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Gathers `items` (serialized as JSON) from every worker; the result is every worker's items in
/// rank order.
pub fn all_gather_json<T>(c: &dyn Collective, items: &T) -> Vec<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = serde_json::to_vec(items).expect("serializable");
    c.all_gather(&bytes)
        .iter()
        .map(|b| serde_json::from_slice(b).expect("a worker's items deserialize"))
        .collect()
}

/// Sums the gradients of `module`'s trainable parameters over the workers: every worker returns
/// the same gradients, those of the union of their micro-batches. A parameter none of the
/// workers has a gradient for stays without one (as in one process: the optimizer skips it).
pub fn sum_gradients<M: Module>(
    c: &dyn Collective,
    module: &M,
    grads: GradientsParams,
) -> GradientsParams {
    if c.world_size() == 1 {
        return grads;
    }
    // Flatten: per trainable parameter (module order, each once) a presence flag, then values.
    struct Flatten<'a> {
        grads: &'a GradientsParams,
        seen: HashSet<ParamId>,
        flat: Vec<f32>,
    }
    impl ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !param.is_require_grad() || !self.seen.insert(param.id) {
                return;
            }
            let n = param.shape().num_elements();
            match self.grads.get::<D>(param.id) {
                Some(g) => {
                    self.flat.push(1.0);
                    let values = g
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec::<f32>()
                        .expect("f32 gradient");
                    self.flat.extend_from_slice(&values);
                }
                None => {
                    self.flat.push(0.0);
                    self.flat.extend(std::iter::repeat_n(0.0, n));
                }
            }
        }
    }
    let mut flatten = Flatten {
        grads: &grads,
        seen: HashSet::new(),
        flat: Vec::new(),
    };
    module.visit(&mut flatten);
    let mut flat = flatten.flat;
    c.sum_f32(&mut flat);
    // Unflatten in the same order.
    struct Unflatten {
        grads: GradientsParams,
        seen: HashSet<ParamId>,
        flat: Vec<f32>,
        at: usize,
    }
    impl ModuleVisitor for Unflatten {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !param.is_require_grad() || !self.seen.insert(param.id) {
                return;
            }
            let shape = param.shape();
            let n = shape.num_elements();
            let present = self.flat[self.at] > 0.0;
            let values = &self.flat[self.at + 1..self.at + 1 + n];
            self.at += 1 + n;
            let _ = self.grads.remove::<D>(param.id);
            if present {
                let device = param.device().without_autodiff();
                let g = Tensor::<D>::from_data(TensorData::new(values.to_vec(), shape), &device);
                self.grads.register::<D>(param.id, g);
            }
        }
    }
    let mut unflatten = Unflatten {
        grads,
        seen: HashSet::new(),
        flat,
        at: 0,
    };
    module.visit(&mut unflatten);
    unflatten.grads
}

/// Sums the metrics of the workers key by key (a key some workers lack counts 0 there); every
/// worker returns the same map.
pub fn sum_metrics(c: &dyn Collective, metrics: &StepMetrics) -> StepMetrics {
    if c.world_size() == 1 {
        return metrics.clone();
    }
    let mut total = StepMetrics::new();
    for part in all_gather_json(c, metrics) {
        for (k, v) in part {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_range_in_rank_order() {
        for len in 0..20 {
            for world in 1..6 {
                let blocks: Vec<_> = (0..world).map(|r| shard(len, r, world)).collect();
                let flat: Vec<usize> = blocks.iter().cloned().flatten().collect();
                assert_eq!(flat, (0..len).collect::<Vec<_>>(), "{len} over {world}");
                let sizes: Vec<usize> = blocks.iter().map(|b| b.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn a_single_process_gathers_itself() {
        let c = SingleProcess;
        assert_eq!(all_gather_json(&c, &vec![1u32, 2]), vec![vec![1, 2]]);
        let mut v = [1.5f32];
        c.sum_f32(&mut v);
        assert_eq!(v, [1.5]);
    }
}
