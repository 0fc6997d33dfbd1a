//! Data-parallel training over MPI (feature `mpi`): `train --workers N` on one machine, or the
//! workers of an `mpirun` job across machines.
//!
//! Burn 0.22.1 has no collective for its CPU or wgpu backends (its `distributed` operations run
//! on CUDA through NCCL only, and the `burn-collective` crate stopped at 0.21), so the workers
//! exchange their samples, gradients and counts through MPI (Open MPI, by rsmpi): the
//! established engine for CPU clusters, with its own launcher (`mpirun`) for several machines
//! and its own failure handling (a worker that dies makes `mpirun` stop the job and name the
//! rank). What the workers exchange is `aqn_core::train::collective`'s [`Collective`].
//!
//! - `aqn-native train --workers N ...` starts `mpirun -n N` on this machine (TCP over the
//!   loopback interface), each worker with `cores / N` threads, and waits for it.
//! - A process started by `mpirun` (found by the variables Open MPI, MPICH and PMIx set) is a
//!   worker: it joins the job with `MPI_Init`, takes its rank and the world size from MPI, and
//!   trains its shard; rank 0 prints progress and writes the run folder.

use anyhow::{Result, bail};
use aqn_core::train::{Collective, SingleProcess};

/// Environment variables that say this process was started by an MPI launcher (Open MPI,
/// MPICH/Hydra, PMIx).
const LAUNCHER_VARS: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"];

/// Whether this process is a worker of an MPI job.
pub fn in_mpi_job() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

/// How `train` runs.
pub enum Role {
    /// One process, no MPI.
    Single,
    /// Start `mpirun` with this many workers and wait for it.
    Launch(usize),
    /// A worker of an MPI job (rank, world size and the exchange).
    Worker(Box<dyn Collective>),
}

/// The role of this process for `--workers workers` (`None`: not given).
pub fn role(workers: Option<usize>) -> Result<Role> {
    match (workers, in_mpi_job()) {
        (Some(0), _) => bail!("--workers 0: a run needs at least one worker"),
        (Some(1) | None, false) => Ok(Role::Single),
        (Some(n), false) => {
            if cfg!(feature = "mpi") {
                Ok(Role::Launch(n))
            } else {
                bail!("{}", not_compiled())
            }
        }
        (w, true) => {
            let c = join()?;
            if let Some(n) = w
                && n != c.world_size()
            {
                bail!(
                    "--workers {n}, but this process is one of {} workers of an MPI job: drop --workers under mpirun (the job's size is the number of workers)",
                    c.world_size()
                );
            }
            Ok(if c.world_size() == 1 {
                Role::Single
            } else {
                Role::Worker(c)
            })
        }
    }
}

/// The error of a binary built without MPI.
fn not_compiled() -> String {
    "data-parallel training (--workers N > 1, or a process started by mpirun) needs aqn-native built with MPI: `cargo build --release -p aqn-native --features mpi` (Debian: `apt-get install libopenmpi-dev openmpi-bin libclang-dev`)".into()
}

/// The exchange of the single process (for commands that need one).
pub fn single() -> Box<dyn Collective> {
    Box::new(SingleProcess)
}

#[cfg(not(feature = "mpi"))]
fn join() -> Result<Box<dyn Collective>> {
    bail!("{}", not_compiled())
}

#[cfg(not(feature = "mpi"))]
pub fn launch(_: usize) -> Result<()> {
    bail!("{}", not_compiled())
}

/// Stops every worker of the job after this one failed (a no-op for a single process).
#[cfg(not(feature = "mpi"))]
pub fn abort_job(_: i32) {}

#[cfg(feature = "mpi")]
use with_mpi::join;
#[cfg(feature = "mpi")]
pub use with_mpi::{abort_job, launch};

#[cfg(feature = "mpi")]
mod with_mpi {
    use std::ffi::OsString;
    use std::process::Command;

    use anyhow::{Context, Result, bail};
    use aqn_core::train::Collective;
    use mpi::collective::SystemOperation;
    use mpi::datatype::PartitionMut;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;

    /// MPI's world communicator, with the MPI environment it lives in (dropping it finalizes
    /// MPI, which every worker does at the same point: after training).
    struct MpiCollective {
        world: SimpleCommunicator,
        _universe: Universe,
    }

    const ROOT: i32 = 0;

    impl MpiCollective {
        /// Sums `values` at rank 0 and broadcasts the result, so every rank gets its bits.
        fn sum<T: Equivalence + Copy + Default>(&self, values: &mut [T]) {
            let root = self.world.process_at_rank(ROOT);
            if self.world.rank() == ROOT {
                let mut sum = vec![T::default(); values.len()];
                root.reduce_into_root(&values[..], &mut sum[..], SystemOperation::sum());
                values.copy_from_slice(&sum);
            } else {
                root.reduce_into(&values[..], SystemOperation::sum());
            }
            root.broadcast_into(values);
        }
    }

    impl Collective for MpiCollective {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        fn world_size(&self) -> usize {
            self.world.size() as usize
        }

        fn sum_f32(&self, values: &mut [f32]) {
            self.sum(values);
        }

        fn sum_f64(&self, values: &mut [f64]) {
            self.sum(values);
        }

        fn all_gather(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
            let n = self.world.size() as usize;
            let len = bytes.len() as i32;
            let mut lens = vec![0i32; n];
            self.world.all_gather_into(&len, &mut lens[..]);
            let displs: Vec<i32> = lens
                .iter()
                .scan(0i32, |at, &l| {
                    let d = *at;
                    *at += l;
                    Some(d)
                })
                .collect();
            let mut all = vec![0u8; lens.iter().map(|&l| l as usize).sum()];
            {
                let mut partition = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
                self.world.all_gather_varcount_into(bytes, &mut partition);
            }
            lens.iter()
                .zip(&displs)
                .map(|(&l, &d)| all[d as usize..(d + l) as usize].to_vec())
                .collect()
        }
    }

    /// Joins the MPI job this process was started in.
    pub(super) fn join() -> Result<Box<dyn Collective>> {
        let Some(universe) = mpi::initialize() else {
            bail!("MPI was already initialized in this process");
        };
        let world = universe.world();
        Ok(Box::new(MpiCollective {
            world,
            _universe: universe,
        }))
    }

    /// Stops every worker of the job (`MPI_Abort`): the others may be waiting for this one in a
    /// collective, which would otherwise never return.
    pub fn abort_job(code: i32) {
        SimpleCommunicator::world().abort(code)
    }

    /// The arguments of this process without `--workers N` / `--workers=N`.
    fn worker_args() -> Vec<OsString> {
        let mut out = Vec::new();
        let mut args = std::env::args_os().skip(1);
        while let Some(a) = args.next() {
            let s = a.to_string_lossy();
            if s == "--workers" {
                args.next();
            } else if !s.starts_with("--workers=") {
                out.push(a);
            }
        }
        out
    }

    /// Runs this command as `workers` MPI workers on this machine: `mpirun -n workers` over
    /// TCP on the loopback interface, `cores / workers` threads each (unless
    /// `RAYON_NUM_THREADS` is set), and waits. A worker that fails or dies makes `mpirun` stop
    /// the others and name its rank; the error here says so.
    pub fn launch(workers: usize) -> Result<()> {
        let exe = std::env::current_exe().context("finding this program's path")?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .unwrap_or_else(|| (cores / workers).max(1).to_string());
        let mut cmd = Command::new("mpirun");
        cmd.args(["-n", &workers.to_string()])
            // More workers than cores is allowed (slow, but not refused).
            .arg("--oversubscribe")
            .args(["--bind-to", "none"])
            // One machine: TCP over the loopback interface (no shared-memory transport, which
            // containers often restrict), and no busy polling while a worker waits.
            .args(["--mca", "btl", "self,tcp"])
            .args(["--mca", "btl_tcp_if_include", "lo"])
            .args(["--mca", "oob_tcp_if_include", "lo"])
            .args(["--mca", "mpi_yield_when_idle", "1"])
            .args(["-x", &format!("RAYON_NUM_THREADS={threads}")])
            // The GEMMs split over Rayon's threads; matrixmultiply's own pool stays off.
            .args(["-x", "MATMUL_NUM_THREADS=1"])
            .arg(&exe)
            .args(worker_args())
            // Open MPI refuses to start as root without these (containers, CI).
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        eprintln!(
            "workers  {workers} MPI workers on this machine ({threads} threads each): {}",
            std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let status = cmd.status().map_err(|e| {
            anyhow::anyhow!(
                "starting mpirun: {e} (install Open MPI's launcher: `apt-get install openmpi-bin`)"
            )
        })?;
        if !status.success() {
            bail!(
                "the data-parallel run stopped: a worker failed or died, and mpirun stopped the others ({status}); the messages above name its rank"
            );
        }
        Ok(())
    }
}
