//! The device wrapper every CUDA piece runs on: [`Gpu`] (context, stream, cuBLAS handle and the
//! loaded kernels of one activation type), typed kernel arguments checked against each kernel's
//! signature ([`KERNELS`], [`KArg`]), buffers, transfers and the per-launch profile.

use crate::kernels::{self, Act};
use crate::libs::{self, Lib};
use crate::{CudaError, DeviceInfo};
use cudarc::cublas::{sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg,
};
use ncf_core::train::Precision;
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

/// A kernel argument (device pointers travel as u64).
#[derive(Clone, Copy, Debug)]
pub(crate) enum KArg {
    U32(u32),
    U64(u64),
    I32(i32),
    F32(f32),
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

/// The loaded kernels of one activation type, plus stream, cuBLAS and launch helpers.
pub struct Gpu {
    pub info: DeviceInfo,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub act: Act,
    pub precision: Precision,
    pub(crate) blas: CudaBlas,
    _module: Arc<CudaModule>,
    funcs: Vec<(&'static str, CudaFunction)>,
    pub sm_count: u32,
    /// Synchronise after every launch and name the failing kernel (`NCF_CUDA_SYNC=1`, --verbose).
    pub sync_each: bool,
    /// When set, every launch and GEMM is synchronised and its wall time (s) added here by name.
    pub profile: Option<std::cell::RefCell<Vec<(String, f64)>>>,
}

/// Every kernel with its parameter classes ('q' u64 or pointer, 'u' u32 or int, 'f' float): each
/// launch is checked against this, and this against the compiled PTX (tests/cuda.rs).
pub const KERNELS: &[(&str, &str)] = &[
    ("ncf_philox_blocks", "uuuuuuuq"),
    ("ncf_permute", "quuuuuquq"),
    ("ncf_make_batch", "uuuuuqqqqqquuuuuquqqqqq"),
    ("ncf_gather", "qquuqqq"),
    ("ncf_scatter", "qquuqqq"),
    ("ncf_bias_relu_dropout_fwd", "qqqquuuuuuuf"),
    ("ncf_bias_relu_dropout_bwd", "qqqqquuuuuuuf"),
    ("ncf_final", "qqquuqqquqqufqqqqqqq"),
    ("ncf_cast", "qqq"),
    ("ncf_check_finite", "qqq"),
    ("ncf_adam", "qqqqqffffffffqu"),
    ("ncf_mark", "quq"),
    ("ncf_slots", "quqqq"),
    ("ncf_keys", "quqqq"),
    ("ncf_scan", "qu"),
    ("ncf_radix_hist", "quuq"),
    ("ncf_radix_scatter", "qquuqqq"),
    ("ncf_segments", "quqq"),
    ("ncf_gather_rows", "qquuqq"),
    ("ncf_factored_z", "qquuqqq"),
    ("ncf_segment_sum", "quqqquq"),
    ("ncf_scatter_rows", "qquqq"),
];

/// How the host launches each kernel: threads per block, and the most dynamic shared memory
/// (bytes) it passes. [`Gpu::launch`] refuses any other launch, and CI checks every kernel's
/// resources as `ptxas` reports them against this table ([`crate::ptxas`], tests/cuda.rs).
pub const GEOMETRY: &[(&str, u32, u32)] = &[
    ("ncf_philox_blocks", 256, 0),
    ("ncf_permute", 256, 0),
    ("ncf_make_batch", 256, 0),
    ("ncf_gather", 256, 0),
    ("ncf_scatter", 256, 0),
    ("ncf_bias_relu_dropout_fwd", 256, 0),
    // One float of bias gradient per unit: layers up to 16 units × 256 threads wide.
    ("ncf_bias_relu_dropout_bwd", 256, 4 * 16 * 256),
    ("ncf_final", 256, 0),
    ("ncf_cast", 256, 0),
    ("ncf_check_finite", 256, 0),
    ("ncf_adam", 256, 0),
    ("ncf_mark", 256, 0),
    // One block scans a whole array (the distinct ids, the radix histograms).
    ("ncf_slots", 1024, 0),
    ("ncf_keys", 256, 0),
    ("ncf_scan", 1024, 0),
    ("ncf_radix_hist", 256, 0),
    ("ncf_radix_scatter", 256, 0),
    ("ncf_segments", 256, 0),
    ("ncf_gather_rows", 256, 0),
    ("ncf_factored_z", 256, 0),
    ("ncf_segment_sum", 256, 0),
    ("ncf_scatter_rows", 256, 0),
];

/// `Err` unless `(block, smem)` is how [`GEOMETRY`] says `name` is launched.
pub fn check_geometry(name: &str, block: u32, smem: u32) -> Result<(), CudaError> {
    match GEOMETRY.iter().find(|(n, _, _)| *n == name) {
        Some(&(_, b, max)) if b == block && smem <= max => Ok(()),
        Some(&(_, b, max)) => Err(CudaError::Invalid(format!(
            "kernel {name}: launched with {block} threads and {smem} bytes of shared memory; \
             its geometry is {b} threads and at most {max} bytes"
        ))),
        None => Err(CudaError::Invalid(format!(
            "kernel {name} has no launch geometry"
        ))),
    }
}

impl Gpu {
    /// Open device `ordinal`, compile (or load from cache) the kernels for its architecture.
    pub fn new(ordinal: usize, precision: Precision) -> Result<Gpu, CudaError> {
        let info = crate::probe(ordinal)?;
        libs::require(&[Lib::Driver, Lib::Nvrtc, Lib::Cublas])?;
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| CudaError::call(format!("CudaContext::new({ordinal})"), e))?;
        // One stream, raw pointers: cudarc's per-buffer event tracking is not needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let act = act_of(precision);
        let arch = info.arch();
        let ptx = kernels::compile_cached("ncf.cu", &arch, act)?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| {
                CudaError::call(
                    format!("loading the PTX of ncf.cu ({arch}, {})", act.name()),
                    e,
                )
            })?;
        let mut funcs = vec![];
        for &(k, _) in KERNELS {
            let f = module
                .load_function(k)
                .map_err(|e| CudaError::call(format!("loading kernel {k}"), e))?;
            funcs.push((k, f));
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| CudaError::call("cublasCreate", e))?;
        let mode = if precision == Precision::Tf32 {
            blas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        unsafe { blas_sys::cublasSetMathMode(*blas.handle(), mode) }
            .result()
            .map_err(|e| CudaError::call(format!("cublasSetMathMode({mode:?})"), e))?;
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .unwrap_or(80)
            .max(1) as u32;
        let sync_each = std::env::var("NCF_CUDA_SYNC").is_ok_and(|v| v == "1");
        Ok(Gpu {
            info,
            ctx,
            stream,
            act,
            precision,
            blas,
            _module: module,
            funcs,
            sm_count,
            sync_each,
            profile: None,
        })
    }

    fn func(&self, name: &str) -> Result<&CudaFunction, CudaError> {
        self.funcs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f)
            .ok_or_else(|| CudaError::Invalid(format!("kernel {name} not loaded")))
    }

    /// Blocks for `n` independent elements of 256 threads, capped at 32 per SM (grid-stride loops).
    pub fn grid_for(&self, n: u64) -> u32 {
        n.div_ceil(256).clamp(1, self.sm_count as u64 * 32) as u32
    }

    pub(crate) fn launch(
        &self,
        name: &str,
        grid: u32,
        block: u32,
        smem: u32,
        args: &[KArg],
        sizes: &str,
    ) -> Result<(), CudaError> {
        let f = self.func(name)?;
        let sig: String = args
            .iter()
            .map(|a| match a {
                KArg::U64(_) => 'q',
                KArg::U32(_) | KArg::I32(_) => 'u',
                KArg::F32(_) => 'f',
            })
            .collect();
        let want = KERNELS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
        if want != Some(sig.as_str()) {
            return Err(CudaError::Invalid(format!(
                "kernel {name}: host arguments {sig} do not match its signature {want:?}"
            )));
        }
        check_geometry(name, block, smem)?;
        let t0 = self.profile_start()?;
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                KArg::U32(x) => b.arg(x),
                KArg::U64(x) => b.arg(x),
                KArg::I32(x) => b.arg(x),
                KArg::F32(x) => b.arg(x),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: smem,
        };
        let what = || format!("kernel {name} ({sizes}; grid {grid}, block {block})");
        unsafe { b.launch(cfg) }.map_err(|e| CudaError::call(what(), e))?;
        if self.sync_each {
            self.stream
                .synchronize()
                .map_err(|e| CudaError::call(what(), e))?;
        }
        self.profile_end(name, t0)
    }

    pub(crate) fn profile_start(&self) -> Result<Option<std::time::Instant>, CudaError> {
        if self.profile.is_none() {
            return Ok(None);
        }
        self.sync("profiling")?;
        Ok(Some(std::time::Instant::now()))
    }

    pub(crate) fn profile_end(
        &self,
        name: &str,
        t0: Option<std::time::Instant>,
    ) -> Result<(), CudaError> {
        if let (Some(t0), Some(p)) = (t0, &self.profile) {
            self.sync(name)?;
            let dt = t0.elapsed().as_secs_f64();
            let mut v = p.borrow_mut();
            match v.iter_mut().find(|(n, _)| n == name) {
                Some(e) => e.1 += dt,
                None => v.push((name.to_string(), dt)),
            }
        }
        Ok(())
    }

    pub fn sync(&self, what: &str) -> Result<(), CudaError> {
        self.stream
            .synchronize()
            .map_err(|e| CudaError::call(format!("synchronize after {what}"), e))
    }

    pub fn alloc<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        n: usize,
        what: &str,
    ) -> Result<CudaSlice<T>, CudaError> {
        self.stream.alloc_zeros::<T>(n.max(1)).map_err(|e| {
            CudaError::call(
                format!(
                    "allocating {what} ({n} x {} bytes)",
                    std::mem::size_of::<T>()
                ),
                e,
            )
        })
    }

    pub fn upload<T>(&self, data: &[T], what: &str) -> Result<CudaSlice<T>, CudaError>
    where
        T: DeviceRepr + Clone + Default + cudarc::driver::ValidAsZeroBits,
    {
        if data.is_empty() {
            return self.alloc::<T>(1, what);
        }
        self.stream
            .clone_htod(data)
            .map_err(|e| CudaError::call(format!("uploading {what} ({} elements)", data.len()), e))
    }

    pub fn upload_into<T: DeviceRepr>(
        &self,
        data: &[T],
        dst: &mut CudaSlice<T>,
        what: &str,
    ) -> Result<(), CudaError> {
        if data.is_empty() {
            return Ok(());
        }
        let mut view = dst.slice_mut(0..data.len());
        self.stream
            .memcpy_htod(data, &mut view)
            .map_err(|e| CudaError::call(format!("uploading {what}"), e))
    }

    pub fn download<T: DeviceRepr + Default + Clone>(
        &self,
        src: &CudaSlice<T>,
        n: usize,
        what: &str,
    ) -> Result<Vec<T>, CudaError> {
        let mut out = vec![T::default(); n];
        if n == 0 {
            return Ok(out);
        }
        self.stream
            .memcpy_dtoh(&src.slice(0..n), &mut out)
            .map_err(|e| CudaError::call(format!("downloading {what} ({n} elements)"), e))?;
        self.sync(&format!("downloading {what}"))?;
        Ok(out)
    }

    pub fn zero<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        s: &mut CudaSlice<T>,
        what: &str,
    ) -> Result<(), CudaError> {
        self.stream
            .memset_zeros(s)
            .map_err(|e| CudaError::call(format!("zeroing {what}"), e))
    }
}

/// Raw device address of a buffer (valid while the buffer lives; one stream, no event tracking).
pub fn dptr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = s.device_ptr(stream);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_has_a_geometry_and_launches_are_checked_against_it() {
        for (k, _) in KERNELS {
            assert!(GEOMETRY.iter().any(|(n, _, _)| n == k), "{k}");
        }
        assert_eq!(GEOMETRY.len(), KERNELS.len());
        assert!(check_geometry("ncf_adam", 256, 0).is_ok());
        assert!(check_geometry("ncf_adam", 128, 0).is_err());
        assert!(check_geometry("ncf_bias_relu_dropout_bwd", 256, 16_384).is_ok());
        assert!(check_geometry("ncf_bias_relu_dropout_bwd", 256, 16_388).is_err());
        assert!(check_geometry("ncf_nothing", 256, 0).is_err());
    }

    #[test]
    fn dropout_threshold_is_ncf_cores() {
        assert_eq!(dropout_threshold(0.5), (128, 2.0));
        assert_eq!(dropout_threshold(0.0), (0, 1.0));
    }
}
