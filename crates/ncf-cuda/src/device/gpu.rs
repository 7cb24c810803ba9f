//! [`Gpu`]: a CUDA device through cudarc: a context and one stream (no per-buffer event
//! tracking: raw addresses), the kernels of one activation type compiled by NVRTC, and cuBLAS
//! (FP32/TF32 by sgemm, FP16/BF16 by gemmEx with FP32 accumulation).

use super::{Common, Device, GemmCall, KArg, Marker, Profile, RawBuf, StreamHandle};
use crate::kdef::KernelDef;
use crate::kernels::{self, Act};
use crate::libs::{self, Lib};
use crate::nccl::ffi::RawStream;
use crate::CudaError;
use cudarc::cublas::{result as blas_result, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    result as drv, sys::CUevent_flags, CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice,
    CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use ncf_core::train::Precision;
use std::sync::Arc;

/// Bytes of cuBLAS's workspace (cublasSetWorkspace): its own allocation, so that a GEMM inside a
/// stream capture allocates nothing (NVIDIA recommends 32 MiB on Hopper).
const CUBLAS_WORKSPACE: usize = 32 << 20;

/// One GPU with the kernels of one activation type loaded.
pub struct Gpu {
    common: Common,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    _workspace: CudaSlice<u8>,
    _module: Arc<CudaModule>,
    funcs: Vec<(&'static str, CudaFunction)>,
    /// The CUDA graphs captured ([`Device::end_capture`]), by number.
    graphs: std::cell::RefCell<Vec<cudarc::driver::CudaGraph>>,
}

impl Gpu {
    /// Open device `ordinal`, compile (or load from cache) the kernels for its architecture.
    pub fn new(ordinal: usize, precision: Precision) -> Result<Gpu, CudaError> {
        let info = crate::probe(ordinal)?;
        libs::require(&[Lib::Driver, Lib::Nvrtc, Lib::Cublas])?;
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| CudaError::call(format!("CudaContext::new({ordinal})"), e))?;
        // One stream, raw pointers: cudarc's per-buffer event tracking is not needed. A stream of
        // its own (non-blocking), not the legacy default stream, which cannot be captured.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| CudaError::call("creating the stream", e))?;
        let act = super::act_of(precision);
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
        for def in crate::kdef::ALL {
            let f = module
                .load_function(def.name)
                .map_err(|e| CudaError::call(format!("loading kernel {}", def.name), e))?;
            funcs.push((def.name, f));
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
        let workspace = stream
            .alloc_zeros::<u8>(CUBLAS_WORKSPACE)
            .map_err(|e| CudaError::call("allocating cuBLAS's workspace", e))?;
        let ws_ptr = {
            let (p, _sync) = workspace.device_ptr(&stream);
            p
        };
        // SAFETY: the workspace outlives the handle's use (both are the Gpu's; the handle is
        // dropped first, fields drop in declaration order).
        unsafe {
            blas_sys::cublasSetWorkspace_v2(
                *blas.handle(),
                ws_ptr as *mut std::ffi::c_void,
                CUBLAS_WORKSPACE,
            )
        }
        .result()
        .map_err(|e| CudaError::call("cublasSetWorkspace", e))?;
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .unwrap_or(80)
            .max(1) as u32;
        Ok(Gpu {
            common: Common {
                info,
                act,
                precision,
                sm_count,
                profile: Profile::from_env(),
            },
            ctx,
            stream,
            blas,
            _workspace: workspace,
            _module: module,
            funcs,
            graphs: Default::default(),
        })
    }

    fn func(&self, name: &str) -> Result<&CudaFunction, CudaError> {
        self.funcs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f)
            .ok_or_else(|| CudaError::Invalid(format!("kernel {name} not loaded")))
    }

    fn cu(&self) -> cudarc::driver::sys::CUstream {
        self.stream.cu_stream()
    }

    fn bind(&self) -> Result<(), CudaError> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| CudaError::call("binding the CUDA context", e))
    }
}

/// The owner of a [`RawBuf`] on the GPU: the allocation itself.
struct GpuAlloc(#[allow(dead_code)] CudaSlice<u8>);

impl Device for Gpu {
    fn describe(&self) -> String {
        let info = &self.common.info;
        format!("{} ({})", info.name, info.arch())
    }

    fn common(&self) -> &Common {
        &self.common
    }

    fn alloc_raw(&self, bytes: usize, what: &str) -> Result<RawBuf, CudaError> {
        let s = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(|e| CudaError::call(format!("allocating {what} ({bytes} bytes)"), e))?;
        let addr = {
            let (p, _sync) = s.device_ptr(&self.stream);
            p
        };
        Ok(RawBuf::new(addr, bytes, Box::new(GpuAlloc(s))))
    }

    fn upload_raw(&self, dst: u64, src: &[u8], what: &str) -> Result<(), CudaError> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` is an allocation of this context at least `src.len()` long (the typed
        // helpers check lengths); pageable host memory is consumed before the call returns.
        unsafe { drv::memcpy_htod_async(dst, src, self.cu()) }
            .map_err(|e| CudaError::call(format!("uploading {what} ({} bytes)", src.len()), e))
    }

    fn download_raw(&self, src: u64, out: &mut [u8], what: &str) -> Result<(), CudaError> {
        if out.is_empty() {
            return Ok(());
        }
        self.bind()?;
        self.common.profile.count_read();
        let n = out.len();
        // SAFETY: as upload_raw; the stream is synchronised before `out` is read.
        unsafe { drv::memcpy_dtoh_async(out, src, self.cu()) }
            .map_err(|e| CudaError::call(format!("downloading {what} ({n} bytes)"), e))?;
        self.sync(&format!("downloading {what}"))
    }

    fn zero_raw(&self, dst: u64, bytes: usize, what: &str) -> Result<(), CudaError> {
        self.bind()?;
        // SAFETY: `dst` is an allocation of at least `bytes`.
        unsafe { drv::memset_d8_async(dst, 0, bytes, self.cu()) }
            .map_err(|e| CudaError::call(format!("zeroing {what}"), e))
    }

    fn copy_raw(&self, src: u64, dst: u64, bytes: usize, what: &str) -> Result<(), CudaError> {
        self.bind()?;
        // SAFETY: both are allocations of at least `bytes`.
        unsafe { drv::memcpy_dtod_async(dst, src, bytes, self.cu()) }
            .map_err(|e| CudaError::call(format!("copying {what}"), e))
    }

    fn launch_raw(
        &self,
        def: &'static KernelDef,
        grid: u32,
        smem: u32,
        args: &[KArg],
        _extents: &[Option<u64>],
        sizes: &str,
    ) -> Result<(), CudaError> {
        let f = self.func(def.name)?;
        let block = def.block;
        let what = || format!("kernel {} ({sizes}; grid {grid}, block {block})", def.name);
        let launch = || {
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
            // SAFETY: the arguments follow the kernel's definition (checked by the caller).
            unsafe { b.launch(cfg) }.map_err(|e| CudaError::call(what(), e))?;
            Ok(())
        };
        use super::DeviceExt;
        self.timed(def.name, launch)
    }

    fn gemm(&self, g: &GemmCall) -> Result<(), CudaError> {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        let op = |t| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        let alpha = 1.0f32;
        let h = *self.blas.handle();
        let dims = g.describe(self.common.act);
        let run = || {
            // SAFETY: the operands are allocations spanning what the call touches (the trainer
            // sizes them; the host device checks the same calls in CI).
            let res = unsafe {
                match self.common.act {
                    Act::F32 => blas_result::sgemm(
                        h,
                        op(g.ta),
                        op(g.tb),
                        g.m as i32,
                        g.n as i32,
                        g.k as i32,
                        &alpha,
                        g.a as *const f32,
                        g.lda as i32,
                        g.b as *const f32,
                        g.ldb as i32,
                        &g.beta,
                        g.c as *mut f32,
                        g.ldc as i32,
                    ),
                    Act::F16 | Act::Bf16 => {
                        let t = if self.common.act == Act::F16 {
                            blas_sys::cudaDataType::CUDA_R_16F
                        } else {
                            blas_sys::cudaDataType::CUDA_R_16BF
                        };
                        blas_result::gemm_ex(
                            h,
                            op(g.ta),
                            op(g.tb),
                            g.m as i32,
                            g.n as i32,
                            g.k as i32,
                            &alpha as *const f32 as *const _,
                            g.a as *const _,
                            t,
                            g.lda as i32,
                            g.b as *const _,
                            t,
                            g.ldb as i32,
                            &g.beta as *const f32 as *const _,
                            g.c as *mut _,
                            blas_sys::cudaDataType::CUDA_R_32F,
                            g.ldc as i32,
                            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                        )
                    }
                }
            };
            res.map_err(|e| CudaError::call(format!("cuBLAS gemm ({dims})"), e))
        };
        // Profiled by GEMM role ("forward mlp.0" -> "gemm forward").
        let role = g.what.split(" mlp").next().unwrap_or(g.what);
        use super::DeviceExt;
        self.timed(&format!("gemm {role}"), run)
    }

    fn sync(&self, what: &str) -> Result<(), CudaError> {
        self.stream
            .synchronize()
            .map_err(|e| CudaError::call(format!("synchronize after {what}"), e))
    }

    fn stream(&self) -> Arc<dyn StreamHandle> {
        Arc::new(GpuStream(self.stream.clone()))
    }

    fn begin_capture(&self, what: &str) -> Result<(), CudaError> {
        use cudarc::driver::sys::CUstreamCaptureMode;
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| CudaError::call(format!("beginning the capture of {what}"), e))
    }

    fn end_capture(&self, what: &str) -> Result<usize, CudaError> {
        let flags = cudarc::driver::sys::CUgraphInstantiate_flags(0);
        let graph = self
            .stream
            .end_capture(flags)
            .map_err(|e| CudaError::call(format!("ending the capture of {what}"), e))?
            .ok_or_else(|| CudaError::Invalid(format!("the capture of {what} recorded nothing")))?;
        let mut graphs = self.graphs.borrow_mut();
        graphs.push(graph);
        Ok(graphs.len() - 1)
    }

    fn replay(&self, graph: usize, what: &str) -> Result<(), CudaError> {
        let graphs = self.graphs.borrow();
        let g = graphs.get(graph).ok_or_else(|| {
            CudaError::Invalid(format!("replaying graph {graph} ({what}): no such graph"))
        })?;
        g.launch()
            .map_err(|e| CudaError::call(format!("replaying graph {graph} ({what})"), e))
    }
}

/// The GPU's stream for NCCL.
struct GpuStream(Arc<CudaStream>);

impl StreamHandle for GpuStream {
    fn raw(&self) -> RawStream {
        self.0.cu_stream() as RawStream
    }
    fn bind(&self) -> Result<(), CudaError> {
        self.0
            .context()
            .bind_to_thread()
            .map_err(|e| CudaError::call("binding the CUDA context for NCCL", e))
    }
    fn marker(&self, what: &str) -> Result<Box<dyn Marker>, CudaError> {
        let e = self
            .0
            .record_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING))
            .map_err(|e| CudaError::call(format!("recording an event after {what}"), e))?;
        Ok(Box::new(GpuMarker(e)))
    }
}

struct GpuMarker(CudaEvent);

impl Marker for GpuMarker {
    fn is_complete(&self) -> Result<bool, CudaError> {
        self.0
            .try_is_complete()
            .map_err(|e| CudaError::call("querying an event", e))
    }
}
