//! The plumbing every fused CPU kernel shares: a tensor of Burn's NdArray backend as a row-major
//! f32 array read and written in place ([`HostArray`]), and one autodiff node per fused operation
//! ([`apply`]): its forward runs the kernel on the inputs' arrays, its backward hands the output
//! gradient to the kernel's backward and registers one gradient per input.

#![allow(deprecated)] // NdArray: deprecated upstream, still the CPU backend of aqn-core.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::{DType, Device, GradientCheckpointingStrategy, Tensor};
use ndarray::{ArcArray, IxDyn};

/// A row-major (standard layout) f32 array: the storage of an NdArray tensor, shared, or a new
/// one. Cloning shares the storage.
#[derive(Clone, Debug)]
pub struct HostArray {
    array: ArcArray<f32, IxDyn>,
}

impl HostArray {
    /// A new array of `shape` holding `values` (row-major).
    ///
    /// # Panics
    /// If the lengths disagree.
    pub fn new(values: Vec<f32>, shape: &[usize]) -> Self {
        Self {
            array: ArcArray::from_shape_vec(IxDyn(shape), values).expect("values fill the shape"),
        }
    }

    /// The array of an NdArray f32 tensor: its own storage when it is row-major already,
    /// otherwise a row-major copy.
    ///
    /// # Panics
    /// If the tensor is not f32.
    pub fn from_primitive(p: NdArrayTensor) -> Self {
        let NdArrayTensor::F32(storage) = p else {
            panic!("the fused CPU kernels take f32 tensors");
        };
        let array = storage.into_shared();
        let array = if array.is_standard_layout() {
            array
        } else {
            array.as_standard_layout().into_owned().into_shared()
        };
        Self { array }
    }

    /// The NdArray tensor holding this array (no copy).
    pub fn into_primitive(self) -> NdArrayTensor {
        NdArrayTensor::from(self.array)
    }

    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        self.array
            .as_slice()
            .expect("a HostArray is always in standard layout")
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }
}

/// A fused operation with `N` inputs and one output, on host arrays.
pub trait HostOp<const N: usize>: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// What the backward needs from the forward.
    type State: Clone + Send + std::fmt::Debug + 'static;

    /// The output, and when `track` the state of the backward.
    fn forward(&self, inputs: [&HostArray; N], track: bool) -> (HostArray, Option<Self::State>);

    /// The gradient of each input from the output gradient `dy` (`None`: the input needs none;
    /// `needs[i]` says which inputs are tracked).
    fn backward(
        &self,
        state: Self::State,
        dy: HostArray,
        needs: [bool; N],
    ) -> [Option<HostArray>; N];
}

/// A tensor input of a fused operation, of any rank.
pub enum Input {
    /// Rank 1.
    R1(Tensor<1>),
    /// Rank 2.
    R2(Tensor<2>),
    /// Rank 3.
    R3(Tensor<3>),
    /// Rank 4.
    R4(Tensor<4>),
}

macro_rules! input_from {
    ($($d:literal => $v:ident),*) => {
        $(impl From<Tensor<$d>> for Input {
            fn from(t: Tensor<$d>) -> Self {
                Input::$v(t)
            }
        })*
    };
}
input_from!(1 => R1, 2 => R2, 3 => R3, 4 => R4);

macro_rules! each_input {
    ($self:expr, $t:ident => $e:expr) => {
        match $self {
            Input::R1($t) => $e,
            Input::R2($t) => $e,
            Input::R3($t) => $e,
            Input::R4($t) => $e,
        }
    };
}

impl Input {
    fn device(&self) -> Device {
        each_input!(self, t => t.device())
    }

    fn dtype(&self) -> DType {
        each_input!(self, t => t.dtype())
    }

    fn is_autodiff(&self) -> bool {
        each_input!(self, t => t.is_autodiff())
    }

    fn autodiff(self) -> Self {
        match self {
            Input::R1(t) => Input::R1(t.autodiff()),
            Input::R2(t) => Input::R2(t.autodiff()),
            Input::R3(t) => Input::R3(t.autodiff()),
            Input::R4(t) => Input::R4(t.autodiff()),
        }
    }

    fn strategy(&self) -> Option<GradientCheckpointingStrategy> {
        each_input!(self, t => t.gradient_checkpointing_strategy())
    }
}

/// The conversion of an [`Input`] into the primitive of one concrete backend (Burn's dispatch
/// converts only to the backends it names).
macro_rules! into_primitive_fn {
    ($name:ident, $b:ty) => {
        impl Input {
            fn $name(self) -> FloatTensor<$b> {
                each_input!(self, t => t.try_into_primitive::<$b>().expect("a tensor of the CPU backend"))
            }
        }
    };
}
into_primitive_fn!(into_ndarray, NdArray);
into_primitive_fn!(into_autodiff_plain, Autodiff<NdArray, NoCheckpointing>);
into_primitive_fn!(into_autodiff_balanced, Autodiff<NdArray, BalancedCheckpointing>);

/// Whether the fused kernels can run on tensors of `device` with `dtype`: f32 on the NdArray
/// CPU backend (with or without autodiff). Elsewhere the callers take their composed path.
pub fn fused_cpu_available(device: &Device, dtype: DType) -> bool {
    dtype == DType::F32 && is_host_device(device)
}

/// Whether `device` (with or without autodiff) keeps tensors in host memory: Burn's NdArray
/// backend, the CPU backend of aqn-core.
pub fn is_host_device(device: &Device) -> bool {
    #[allow(deprecated)] // NdArray: deprecated upstream, still the CPU backend of aqn-core.
    let host = matches!(
        device.clone().without_autodiff().as_dispatch(),
        burn::backend::DispatchDevice::NdArray(_)
    );
    host
}

/// Whether every input can take the fused kernels (see [`fused_cpu_available`]).
pub fn inputs_available(inputs: &[&Input]) -> bool {
    inputs
        .iter()
        .all(|i| fused_cpu_available(&i.device(), i.dtype()))
}

/// Runs `op` on `inputs` (all on one NdArray device), as one autodiff node when the device
/// tracks gradients.
pub fn apply<const N: usize, const DO: usize, Op: HostOp<N>>(
    op: Op,
    inputs: [Input; N],
) -> Tensor<DO> {
    let Some(first) = inputs.iter().position(Input::is_autodiff) else {
        let hosts = inputs.map(|i| HostArray::from_primitive(i.into_ndarray()));
        let (out, _) = op.forward(hosts.each_ref(), false);
        return Tensor::from_primitive::<NdArray>(out.into_primitive());
    };
    let strategy = inputs[first].strategy();
    // Inputs without autodiff (a frozen weight of a `valid()` module) join as constants.
    let inputs = inputs.map(Input::autodiff);
    match strategy {
        Some(GradientCheckpointingStrategy::Balanced) => tracked_balanced(op, inputs),
        _ => tracked_plain(op, inputs),
    }
}

/// The tracked forward for one checkpointing strategy.
macro_rules! tracked_fn {
    ($name:ident, $c:ty, $into:ident) => {
        fn $name<const N: usize, const DO: usize, Op: HostOp<N>>(
            op: Op,
            inputs: [Input; N],
        ) -> Tensor<DO> {
            let ads = inputs.map(|i| i.$into());
            let nodes = ads.each_ref().map(|a| a.node());
            let hosts = ads
                .each_ref()
                .map(|a| HostArray::from_primitive(a.primitive().clone()));
            let node = match (HostNode { op: op.clone() })
                .prepare::<$c>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (out, state) = op.forward(hosts.each_ref(), true);
                    prep.finish(
                        state.expect("a tracked forward returns its state"),
                        out.into_primitive(),
                    )
                }
                OpsKind::UnTracked(prep) => {
                    let (out, _) = op.forward(hosts.each_ref(), false);
                    prep.finish(out.into_primitive())
                }
            };
            Tensor::from_primitive::<Autodiff<NdArray, $c>>(node)
        }
    };
}
tracked_fn!(tracked_plain, NoCheckpointing, into_autodiff_plain);
tracked_fn!(
    tracked_balanced,
    BalancedCheckpointing,
    into_autodiff_balanced
);

/// The autodiff node of a fused operation.
#[derive(Debug)]
struct HostNode<Op> {
    op: Op,
}

impl<const N: usize, Op: HostOp<N>> Backward<NdArray, N> for HostNode<Op> {
    type State = Op::State;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = HostArray::from_primitive(grads.consume::<NdArray>(&ops.node));
        let needs = ops.parents.each_ref().map(Option::is_some);
        let dxs = self.op.backward(ops.state, dy, needs);
        for (parent, dx) in ops.parents.into_iter().zip(dxs) {
            if let (Some(parent), Some(dx)) = (parent, dx) {
                grads.register::<NdArray>(parent.id, dx.into_primitive());
            }
        }
    }
}

/// Rows of work per parallel task: enough that a task amortizes its scheduling, few enough that
/// two cores share a batch evenly.
pub const ROWS_PER_TASK: usize = 32;

/// Values of work (elements touched) below which a kernel runs on the calling thread: handing a
/// task to the pool and waiting for it costs more than small work (decoding steps).
pub const PARALLEL_MIN_WORK: usize = 1 << 15;

/// Whether `work` values are worth spreading over Rayon's threads.
pub fn parallel(work: usize) -> bool {
    work >= PARALLEL_MIN_WORK && rayon::current_num_threads() > 1
}

/// `f(i)` for `i` in `0..n`, in parallel when [`parallel`]`(work)`, else in order on this
/// thread.
pub fn for_each_task(n: usize, work: usize, f: impl Fn(usize) + Sync + Send) {
    use rayon::prelude::*;
    if parallel(work) {
        (0..n).into_par_iter().for_each(f);
    } else {
        (0..n).for_each(f);
    }
}

/// A new vector of `len` values written by `f(chunk_index, chunk)` over its chunks of
/// `chunk_len` values (the last may be shorter; `MaybeUninit` slices: `f` writes every value
/// and reads only what it wrote), in parallel when [`parallel`]`(work)` (`work`: the values the
/// whole operation touches). The memory is first touched (its pages faulted in) by the threads
/// that compute it, while it is in their caches, instead of by one thread zeroing it
/// beforehand. The chunking (and so every result) does not depend on the threads.
///
/// # Safety
/// `f` must write every value of each chunk it is given.
pub unsafe fn fill_chunks(
    len: usize,
    chunk_len: usize,
    work: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let chunk_len = chunk_len.max(1);
    let out = Fresh::new(len);
    for_each_task(len.div_ceil(chunk_len), work, |i| {
        let start = i * chunk_len;
        // SAFETY: task `i` alone takes the chunk starting at `start`.
        f(i, unsafe { out.uninit(start, chunk_len.min(len - start)) });
    });
    // SAFETY: the chunks cover `0..len`, each written whole by `f` (the caller's contract).
    unsafe { out.finish() }
}

/// [`fill_chunks`] over `rows * width` values in chunks of [`ROWS_PER_TASK`] rows, with
/// `f(first_row, chunk)`.
///
/// # Safety
/// As [`fill_chunks`].
pub unsafe fn fill_rows(
    rows: usize,
    width: usize,
    work: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    // SAFETY: forwarded.
    unsafe {
        fill_chunks(rows * width, ROWS_PER_TASK * width, work, |i, c| {
            f(i * ROWS_PER_TASK, c)
        })
    }
}

/// The sum of the rows (`n` values each) of `partial`, added in row order: per-task partial
/// sums reduced the same way on any number of threads.
pub fn sum_rows(partial: &[f32], n: usize) -> Vec<f32> {
    let mut total = vec![0.0f32; n];
    for p in partial.chunks_exact(n.max(1)) {
        for (a, v) in total.iter_mut().zip(p) {
            *a += v;
        }
    }
    total
}

/// A vector being made by parallel tasks, each of which zeroes and fills its own disjoint part
/// ([`Fresh::chunk`]) or writes it through [`Fresh::ptr`]; [`Fresh::finish`] hands it over once
/// every value is written.
pub struct Fresh {
    values: Vec<f32>,
    /// `values.as_mut_ptr()`, taken once (writes go through it).
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the tasks touch disjoint parts (each user says which); the vector is not resized.
unsafe impl Sync for Fresh {}

impl Fresh {
    /// Room for `len` values, none written yet.
    pub fn new(len: usize) -> Self {
        let mut values = Vec::with_capacity(len);
        let ptr = values.as_mut_ptr();
        Self { values, ptr, len }
    }

    /// Values `start..start + n`, zeroed.
    ///
    /// # Safety
    /// The range must lie in `0..len` and no other live chunk or pointer write may overlap it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn chunk(&self, start: usize, n: usize) -> &mut [f32] {
        debug_assert!(start + n <= self.len);
        // SAFETY: inside the allocation (caller); zeroed before the slice exists.
        unsafe {
            let p = self.ptr().add(start);
            std::ptr::write_bytes(p, 0, n);
            std::slice::from_raw_parts_mut(p, n)
        }
    }

    /// Values `start..start + n`, not yet written.
    ///
    /// # Safety
    /// As [`Fresh::chunk`].
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn uninit(&self, start: usize, n: usize) -> &mut [MaybeUninit<f32>] {
        debug_assert!(start + n <= self.len);
        // SAFETY: inside the allocation (caller); MaybeUninit needs no initialization.
        unsafe { std::slice::from_raw_parts_mut(self.ptr().add(start).cast(), n) }
    }

    /// Values `start..start + n`, written already (through [`Fresh::ptr`]).
    ///
    /// # Safety
    /// As [`Fresh::chunk`], and every value of the range must have been written.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn written(&self, start: usize, n: usize) -> &mut [f32] {
        debug_assert!(start + n <= self.len);
        // SAFETY: inside the allocation and initialized (caller).
        unsafe { std::slice::from_raw_parts_mut(self.ptr().add(start), n) }
    }

    /// The first value's address, for writes through raw pointers (GEMM outputs).
    pub fn ptr(&self) -> *mut f32 {
        self.ptr
    }

    /// The vector.
    ///
    /// # Safety
    /// Every value in `0..len` must have been written.
    pub unsafe fn finish(mut self) -> Vec<f32> {
        // SAFETY: the caller wrote all `len` values; the capacity is `len`.
        unsafe { self.values.set_len(self.len) };
        self.values
    }
}

/// Writes `new` (`[batch, heads, s, d]`) at positions `at..at + s` of the cache buffer `buf`, in
/// place when `buf` is its storage's only owner: `buf` is `[batch, heads, d, capacity]` when
/// `transposed` (keys), else `[batch, heads, capacity, d]` (values). Both on the plain NdArray
/// device (no autodiff).
///
/// # Panics
/// If the shapes do not fit or a tensor is not a plain f32 NdArray tensor.
pub fn write_positions(buf: Tensor<4>, new: Tensor<4>, at: usize, transposed: bool) -> Tensor<4> {
    let [b, h, s, d] = new.dims();
    let dims = buf.dims();
    let cap = if transposed { dims[3] } else { dims[2] };
    assert!(
        dims[0] == b && dims[1] == h && at + s <= cap && dims[if transposed { 2 } else { 3 }] == d,
        "write_positions: {:?} into {dims:?} at {at}",
        new.dims()
    );
    let src = HostArray::from_primitive(new.into_ndarray_tensor());
    let NdArrayTensor::F32(storage) = buf.into_ndarray_tensor() else {
        panic!("write_positions takes f32 tensors");
    };
    let mut array = storage.into_shared().into_owned();
    if !array.is_standard_layout() {
        array = array.as_standard_layout().into_owned();
    }
    let dst = array.as_slice_mut().expect("standard layout");
    let values = src.values();
    for bh in 0..b * h {
        let (dst, src) = (
            &mut dst[bh * cap * d..][..cap * d],
            &values[bh * s * d..][..s * d],
        );
        for (i, row) in src.chunks_exact(d).enumerate() {
            if transposed {
                for (j, &x) in row.iter().enumerate() {
                    dst[j * cap + at + i] = x;
                }
            } else {
                dst[(at + i) * d..(at + i + 1) * d].copy_from_slice(row);
            }
        }
    }
    Tensor::from_primitive::<NdArray>(NdArrayTensor::from(array.into_shared()))
}

trait IntoNdArrayTensor {
    fn into_ndarray_tensor(self) -> NdArrayTensor;
}

impl IntoNdArrayTensor for Tensor<4> {
    fn into_ndarray_tensor(self) -> NdArrayTensor {
        self.try_into_primitive::<NdArray>()
            .expect("a plain tensor of the CPU backend")
    }
}
