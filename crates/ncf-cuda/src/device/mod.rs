//! The one device interface every CUDA piece runs on ([`Device`]), and its two implementations:
//! [`Gpu`] (a CUDA device through cudarc: NVRTC-compiled kernels, cuBLAS, one stream) and
//! [`HostDevice`] (host memory, the same kernel sources compiled for the CPU, a GEMM that first
//! checks each call as cuBLAS would). Nothing above this module knows which one it has: buffers
//! are [`Buf`]s, kernels are launched from their typed definitions ([`crate::kdef`]), GEMMs are
//! [`GemmCall`]s, and NCCL gets the stream through [`StreamHandle`].

pub mod gemm;
pub mod gpu;
pub mod host;
mod host_kernels;

pub use gemm::GemmCall;
pub use gpu::Gpu;
pub use host::HostDevice;

use crate::kdef::{Kernel, KernelDef};
use crate::kernels::Act;
use crate::nccl::ffi::RawStream;
use crate::{CudaError, DeviceInfo};
use ncf_core::train::Precision;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

/// Dropout threshold t = round(p * 256) clamped to 0..=255 and the scale 256 / (256 - t) of kept
/// units: ncf_core's definition, which the kernels copy.
pub fn dropout_threshold(p: f32) -> (u32, f32) {
    let t = ncf_core::model::dropout::dropout_threshold(p);
    (t, ncf_core::model::dropout::dropout_scale(t))
}

/// The activation type of a precision.
pub fn act_of(p: Precision) -> Act {
    match p {
        Precision::Fp32 | Precision::Tf32 => Act::F32,
        Precision::Fp16 => Act::F16,
        Precision::Bf16 => Act::Bf16,
    }
}

/// A kernel argument as it crosses to the device (pointers travel as u64 addresses).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KArg {
    U32(u32),
    U64(u64),
    I32(i32),
    F32(f32),
}

impl KArg {
    /// Its PTX signature class ([`crate::kdef::Ty::class`]).
    pub fn class(&self) -> char {
        match self {
            KArg::U64(_) => 'q',
            KArg::U32(_) | KArg::I32(_) => 'u',
            KArg::F32(_) => 'f',
        }
    }

    /// The bits as the host kernel library reads them (one u64 slot per argument).
    pub fn bits(&self) -> u64 {
        match *self {
            KArg::U32(x) => x as u64,
            KArg::U64(x) => x,
            KArg::I32(x) => x as u32 as u64,
            KArg::F32(x) => x.to_bits() as u64,
        }
    }
}

impl From<u32> for KArg {
    fn from(x: u32) -> Self {
        KArg::U32(x)
    }
}
impl From<u64> for KArg {
    fn from(x: u64) -> Self {
        KArg::U64(x)
    }
}
impl From<i32> for KArg {
    fn from(x: i32) -> Self {
        KArg::I32(x)
    }
}
impl From<f32> for KArg {
    fn from(x: f32) -> Self {
        KArg::F32(x)
    }
}

/// The element type `act_t` of the kernels (float, half or bfloat16 by the precision).
#[derive(Clone, Copy, Debug)]
pub struct ActElem;

/// A device address of elements of `T` (0: null).
pub struct Ptr<T> {
    addr: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Ptr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ptr<T> {}
impl<T> std::fmt::Debug for Ptr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.addr)
    }
}

impl<T> Ptr<T> {
    pub fn new(addr: u64) -> Self {
        Ptr {
            addr,
            _t: PhantomData,
        }
    }
    pub fn null() -> Self {
        Ptr::new(0)
    }
    pub fn addr(&self) -> u64 {
        self.addr
    }
    /// `bytes` further on, as a pointer to `U`.
    pub fn byte_add<U>(&self, bytes: usize) -> Ptr<U> {
        Ptr::new(self.addr + bytes as u64)
    }
}

/// Plain element types that cross between host and device as bytes.
pub trait Pod: Copy + Default + Send + 'static {}
impl Pod for u8 {}
impl Pod for u32 {}
impl Pod for u64 {}
impl Pod for i32 {}
impl Pod for f32 {}
impl Pod for f64 {}

fn as_bytes<T: Pod>(s: &[T]) -> &[u8] {
    // SAFETY: Pod types are plain numbers without padding; the slice covers its bytes exactly.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), std::mem::size_of_val(s)) }
}

fn as_bytes_mut<T: Pod>(s: &mut [T]) -> &mut [u8] {
    // SAFETY: as above; every bit pattern is a valid value of these types.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), std::mem::size_of_val(s)) }
}

/// A device allocation of `bytes` at `addr`; freed when dropped (its owner is the device's).
pub struct RawBuf {
    pub addr: u64,
    pub bytes: usize,
    _owner: Box<dyn std::any::Any>,
}

impl RawBuf {
    pub fn new(addr: u64, bytes: usize, owner: Box<dyn std::any::Any>) -> Self {
        RawBuf {
            addr,
            bytes,
            _owner: owner,
        }
    }
}

/// A device buffer of `len` elements of `T` ([`ActElem`]: of the activation type).
pub struct Buf<T> {
    raw: RawBuf,
    len: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Buf<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn bytes(&self) -> usize {
        self.raw.bytes
    }
    pub fn ptr(&self) -> Ptr<T> {
        Ptr::new(self.raw.addr)
    }
    pub fn addr(&self) -> u64 {
        self.raw.addr
    }
}

impl<T: Pod> Buf<T> {
    /// The address of element `i`.
    pub fn at(&self, i: usize) -> Ptr<T> {
        Ptr::new(self.raw.addr + (i * std::mem::size_of::<T>()) as u64)
    }
}

/// The stream NCCL enqueues on, as the NCCL code needs it: the raw handle, making its context
/// current on another thread, and a marker to poll for the work queued so far.
pub trait StreamHandle: Send + Sync {
    fn raw(&self) -> RawStream;
    fn bind(&self) -> Result<(), CudaError>;
    fn marker(&self, what: &str) -> Result<Box<dyn Marker>, CudaError>;
}

/// The work queued on a stream up to a point.
pub trait Marker {
    fn is_complete(&self) -> Result<bool, CudaError>;
}

/// Per-launch timings by name (set `on` to profile: every launch and GEMM is synchronised),
/// whether to synchronise after every launch (`NCF_CUDA_SYNC=1`), and how many blocking
/// device-to-host reads the device has done (each waits for all queued work).
#[derive(Default)]
pub struct Profile {
    pub on: RefCell<Option<Vec<(String, f64)>>>,
    pub sync_each: std::cell::Cell<bool>,
    pub reads: std::cell::Cell<u64>,
}

impl Profile {
    pub fn from_env() -> Profile {
        let p = Profile::default();
        p.sync_each
            .set(std::env::var("NCF_CUDA_SYNC").is_ok_and(|v| v == "1"));
        p
    }
    pub fn enabled(&self) -> bool {
        self.on.borrow().is_some()
    }
    /// Count one blocking device-to-host read.
    pub fn count_read(&self) {
        self.reads.set(self.reads.get() + 1);
    }
    fn add(&self, name: &str, dt: f64) {
        if let Some(v) = self.on.borrow_mut().as_mut() {
            match v.iter_mut().find(|(n, _)| n == name) {
                Some(e) => e.1 += dt,
                None => v.push((name.to_string(), dt)),
            }
        }
    }
}

/// What every device has: what it is, the precision it computes in, its multiprocessors (grid
/// sizes are multiples of them) and its per-launch profile.
pub struct Common {
    pub info: DeviceInfo,
    pub act: Act,
    pub precision: Precision,
    pub sm_count: u32,
    pub profile: Profile,
}

/// A device the CUDA backend runs on: memory, kernel launches, GEMMs, synchronisation.
pub trait Device {
    /// "NVIDIA H200 (sm_90)", "host device (…)".
    fn describe(&self) -> String;
    fn common(&self) -> &Common;
    fn info(&self) -> &DeviceInfo {
        &self.common().info
    }
    fn act(&self) -> Act {
        self.common().act
    }
    fn precision(&self) -> Precision {
        self.common().precision
    }
    fn sm_count(&self) -> u32 {
        self.common().sm_count
    }
    fn profile(&self) -> &Profile {
        &self.common().profile
    }
    /// `bytes` of zeroed device memory.
    fn alloc_raw(&self, bytes: usize, what: &str) -> Result<RawBuf, CudaError>;
    fn upload_raw(&self, dst: u64, src: &[u8], what: &str) -> Result<(), CudaError>;
    /// Waits for the work queued before it.
    fn download_raw(&self, src: u64, out: &mut [u8], what: &str) -> Result<(), CudaError>;
    fn zero_raw(&self, dst: u64, bytes: usize, what: &str) -> Result<(), CudaError>;
    fn copy_raw(&self, src: u64, dst: u64, bytes: usize, what: &str) -> Result<(), CudaError>;
    /// Launch `def` with `args` (checked against it by the caller, [`DeviceExt::launch`]);
    /// `extents` are the elements each pointer argument may touch.
    fn launch_raw(
        &self,
        def: &'static KernelDef,
        grid: u32,
        smem: u32,
        args: &[KArg],
        extents: &[Option<u64>],
        sizes: &str,
    ) -> Result<(), CudaError>;
    fn gemm(&self, call: &GemmCall) -> Result<(), CudaError>;
    fn sync(&self, what: &str) -> Result<(), CudaError>;
    fn stream(&self) -> Arc<dyn StreamHandle>;
    /// Record, instead of running, the work queued from now on (kernel launches, GEMMs, zeroing
    /// and copies on the device) until [`Device::end_capture`], as CUDA stream capture does: a
    /// blocking read (a download, a synchronisation) or an upload from host memory inside a
    /// capture is an error. Per-step values must then come from device memory, uploaded before
    /// each [`Device::replay`].
    fn begin_capture(&self, what: &str) -> Result<(), CudaError>;
    /// End the capture: the recorded work as a graph to replay (its number on this device).
    fn end_capture(&self, what: &str) -> Result<usize, CudaError>;
    /// Queue graph `graph`'s work again, in order, after the work queued before it.
    fn replay(&self, graph: usize, what: &str) -> Result<(), CudaError>;
}

/// The typed operations every device has, in terms of [`Device`]'s.
pub trait DeviceExt: Device {
    fn alloc<T: Pod>(&self, n: usize, what: &str) -> Result<Buf<T>, CudaError> {
        let bytes = n.max(1) * std::mem::size_of::<T>();
        let raw = self.alloc_raw(bytes, what)?;
        Ok(Buf {
            raw,
            len: n,
            _t: PhantomData,
        })
    }

    /// `n` elements of the activation type.
    fn alloc_act(&self, n: usize, what: &str) -> Result<Buf<ActElem>, CudaError> {
        let raw = self.alloc_raw(n.max(1) * self.act().bytes(), what)?;
        Ok(Buf {
            raw,
            len: n,
            _t: PhantomData,
        })
    }

    fn upload<T: Pod>(&self, data: &[T], what: &str) -> Result<Buf<T>, CudaError> {
        let b = self.alloc::<T>(data.len(), what)?;
        self.upload_raw(b.addr(), as_bytes(data), what)?;
        Ok(b)
    }

    fn upload_into<T: Pod>(&self, data: &[T], dst: &Buf<T>, what: &str) -> Result<(), CudaError> {
        if data.len() > dst.len() {
            return Err(CudaError::Invalid(format!(
                "uploading {what}: {} elements into a buffer of {}",
                data.len(),
                dst.len()
            )));
        }
        self.upload_raw(dst.addr(), as_bytes(data), what)
    }

    fn download<T: Pod>(&self, src: &Buf<T>, n: usize, what: &str) -> Result<Vec<T>, CudaError> {
        if n > src.len() {
            return Err(CudaError::Invalid(format!(
                "downloading {what}: {n} elements of a buffer of {}",
                src.len()
            )));
        }
        let mut out = vec![T::default(); n];
        self.download_raw(src.addr(), as_bytes_mut(&mut out), what)?;
        Ok(out)
    }

    /// The first `n` elements of an activation buffer as bytes.
    fn download_act(&self, src: &Buf<ActElem>, n: usize, what: &str) -> Result<Vec<u8>, CudaError> {
        let mut out = vec![0u8; n * self.act().bytes()];
        self.download_raw(src.addr(), &mut out, what)?;
        Ok(out)
    }

    fn zero<T>(&self, b: &Buf<T>, what: &str) -> Result<(), CudaError> {
        self.zero_raw(b.addr(), b.bytes(), what)
    }

    fn copy<T>(&self, src: &Buf<T>, dst: &Buf<T>, what: &str) -> Result<(), CudaError> {
        let bytes = src.bytes().min(dst.bytes());
        self.copy_raw(src.addr(), dst.addr(), bytes, what)
    }

    /// Blocks for `n` independent elements of 256 threads, capped at 32 per SM (grid-stride).
    fn grid_for(&self, n: u64) -> u32 {
        n.div_ceil(256).clamp(1, self.sm_count() as u64 * 32) as u32
    }

    /// Launch kernel `k` on `grid` blocks of its geometry's threads with `smem` bytes of dynamic
    /// shared memory; `sizes` describes the call for messages ("batch 1024, width 64").
    fn launch<K: Kernel>(&self, k: &K, grid: u32, smem: u32, sizes: &str) -> Result<(), CudaError> {
        let def = K::DEF;
        if smem > def.max_smem {
            return Err(CudaError::Invalid(format!(
                "kernel {} ({sizes}): {smem} bytes of shared memory asked for, its geometry \
                 allows {}",
                def.name, def.max_smem
            )));
        }
        let args = k.args();
        self.launch_raw(def, grid, smem, &args, &k.extents(grid), sizes)
    }

    /// Time `f` under `name` when profiling (synchronised before and after).
    fn timed<R>(
        &self,
        name: &str,
        f: impl FnOnce() -> Result<R, CudaError>,
    ) -> Result<R, CudaError> {
        if !self.profile().enabled() {
            let r = f()?;
            if self.profile().sync_each.get() {
                self.sync(name)?;
            }
            return Ok(r);
        }
        self.sync("profiling")?;
        let t0 = std::time::Instant::now();
        let r = f()?;
        self.sync(name)?;
        self.profile().add(name, t0.elapsed().as_secs_f64());
        Ok(r)
    }
}

impl<D: Device + ?Sized> DeviceExt for D {}

/// Which device the CUDA backend runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// A GPU by ordinal.
    Gpu(usize),
    /// The host device (CPU memory, the kernels compiled for the CPU).
    Host,
}

/// Open `which` for `precision`.
pub fn open(which: Which, precision: Precision) -> Result<Box<dyn Device>, CudaError> {
    Ok(match which {
        Which::Gpu(ordinal) => Box::new(Gpu::new(ordinal, precision)?),
        Which::Host => Box::new(HostDevice::new(precision)?),
    })
}
