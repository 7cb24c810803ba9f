//! [`CudaTrainer`]: NeuMF training and scoring on one GPU. Parameters, gradients and Adam moments
//! are single device buffers in the flat [`Layout`]; each step generates its samples on the device
//! from (epoch, positions), runs the MLP with cuBLAS and the fused kernels of `kernels/ncf.cu`, and
//! reads back only the loss and two flags.

use crate::kernels::{self, Act};
use crate::libs::{self, Lib};
use crate::{CudaError, DeviceInfo};
use cudarc::cublas::{result as blas_result, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg,
};
use cudarc::nccl::ReduceOp;
use ncf_core::checkpoint::OptimizerState;
use ncf_core::model::{Layout, Model, ModelConfig};
use ncf_core::rng::{stream, Permutation, Rng};
use ncf_core::sampler::{NegativeMode, UserItems};
use ncf_core::train::{Optimizer, Precision, StepStats, TrainConfig, Trainer};
use std::sync::Arc;

/// FP16 dynamic loss scaling, as torch.cuda.amp.GradScaler's defaults.
pub const SCALE_INIT: f32 = 65536.0;
pub const SCALE_GROWTH_INTERVAL: u32 = 2000;

/// Largest input width of the final layer (`NCF_FINAL_MAX` in ncf.cu).
const FINAL_MAX: usize = 512;
/// Threads per block of the row kernels; a row of an MLP layer must fit one block (16 units each).
const ROW_BLOCK: u32 = 256;

/// Dropout threshold t = round(p * 256) clamped to 0..=255 and the scale 256 / (256 - t) of kept
/// units: ncf_core's definition, which the kernels copy.
pub fn dropout_threshold(p: f32) -> (u32, f32) {
    let t = ncf_core::cpu::dropout_threshold(p);
    (t, ncf_core::cpu::dropout_scale(t))
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
    blas: CudaBlas,
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
];

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

    fn profile_start(&self) -> Result<Option<std::time::Instant>, CudaError> {
        if self.profile.is_none() {
            return Ok(None);
        }
        self.sync("profiling")?;
        Ok(Some(std::time::Instant::now()))
    }

    fn profile_end(&self, name: &str, t0: Option<std::time::Instant>) -> Result<(), CudaError> {
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

    /// C (f32, column-major m×n) = op(A) op(B) + beta C with A, B of the activation type; FP32
    /// and TF32 by sgemm (the handle's math mode decides TF32), FP16/BF16 by gemmEx, FP32 accumulate.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        what: &str,
        ta: bool,
        tb: bool,
        (m, n, k): (usize, usize, usize),
        a: u64,
        lda: usize,
        b: u64,
        ldb: usize,
        c: u64,
        ldc: usize,
        beta: f32,
    ) -> Result<(), CudaError> {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        let op = |t| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        let alpha = 1.0f32;
        let h = *self.blas.handle();
        let dims = format!(
            "{what}: m={m} n={n} k={k} lda={lda} ldb={ldb} ldc={ldc} {}",
            self.act.name()
        );
        let t0 = self.profile_start()?;
        let res = unsafe {
            match self.act {
                Act::F32 => blas_result::sgemm(
                    h,
                    op(ta),
                    op(tb),
                    m as i32,
                    n as i32,
                    k as i32,
                    &alpha,
                    a as *const f32,
                    lda as i32,
                    b as *const f32,
                    ldb as i32,
                    &beta,
                    c as *mut f32,
                    ldc as i32,
                ),
                Act::F16 | Act::Bf16 => {
                    let t = if self.act == Act::F16 {
                        blas_sys::cudaDataType::CUDA_R_16F
                    } else {
                        blas_sys::cudaDataType::CUDA_R_16BF
                    };
                    blas_result::gemm_ex(
                        h,
                        op(ta),
                        op(tb),
                        m as i32,
                        n as i32,
                        k as i32,
                        &alpha as *const f32 as *const _,
                        a as *const _,
                        t,
                        lda as i32,
                        b as *const _,
                        t,
                        ldb as i32,
                        &beta as *const f32 as *const _,
                        c as *mut _,
                        blas_sys::cudaDataType::CUDA_R_32F,
                        ldc as i32,
                        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                    )
                }
            }
        };
        res.map_err(|e| CudaError::call(format!("cuBLAS gemm ({dims})"), e))?;
        if self.sync_each {
            self.sync(&dims)?;
        }
        // Profile by GEMM role ("forward mlp.0" -> "gemm forward").
        let role = what.split(" mlp").next().unwrap_or(what);
        self.profile_end(&format!("gemm {role}"), t0)
    }
}

/// Raw device address of a buffer (valid while the buffer lives; one stream, no event tracking).
pub fn dptr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _sync) = s.device_ptr(stream);
    p
}

/// Per-batch device buffers, sized for `cap` samples.
pub struct Batch {
    pub cap: usize,
    pub users: CudaSlice<u32>,
    pub items: CudaSlice<u32>,
    /// Labels when training, logits when scoring.
    pub labels: CudaSlice<f32>,
    pub sample: CudaSlice<u32>,
    /// MLP input [cap, layers[0]] of the activation type.
    pub x0: CudaSlice<u8>,
    /// Output of each MLP layer [cap, layers[k+1]].
    pub acts: Vec<CudaSlice<u8>>,
    /// FP32 pre-activations (forward) and activation gradients (backward) [cap, max width].
    pub scratch: CudaSlice<f32>,
    /// Pre-activation gradients of the activation type [cap, max layer width].
    pub dz: CudaSlice<u8>,
}

impl Batch {
    pub fn new(gpu: &Gpu, cfg: &ModelConfig, cap: usize) -> Result<Batch, CudaError> {
        let ab = gpu.act.bytes();
        let mlp = cfg.kind.has_mlp();
        let widths: &[usize] = if mlp { &cfg.layers } else { &[] };
        let max_w = widths.iter().copied().max().unwrap_or(1);
        let max_out = widths.iter().skip(1).copied().max().unwrap_or(1);
        let mut acts = vec![];
        for (k, w) in widths.iter().skip(1).enumerate() {
            acts.push(gpu.alloc::<u8>(
                cap * w * ab,
                &format!("activations of mlp.{k} [{cap} x {w}]"),
            )?);
        }
        Ok(Batch {
            cap,
            users: gpu.alloc(cap, "batch users")?,
            items: gpu.alloc(cap, "batch items")?,
            labels: gpu.alloc(cap, "batch labels")?,
            sample: gpu.alloc(cap, "batch sample indices")?,
            x0: gpu.alloc(if mlp { cap * cfg.layers[0] * ab } else { 1 }, "MLP input")?,
            acts,
            scratch: gpu.alloc(if mlp { cap * max_w } else { 1 }, "FP32 scratch")?,
            dz: gpu.alloc(
                if mlp { cap * max_out * ab } else { 1 },
                "pre-activation gradients",
            )?,
        })
    }
}

/// NeuMF on one GPU: the [`Trainer`] of the CUDA backend.
pub struct CudaTrainer {
    /// The other ranks of a data-parallel run (NCCL); None on one GPU without `--nccl`. First,
    /// so it is dropped first: its drop aborts the communicator, ending collectives that a dead
    /// peer would leave spinning, before the GPU's handles are destroyed (which synchronise).
    ranks: Option<crate::nccl::Ranks>,
    pub gpu: Gpu,
    pub cfg: TrainConfig,
    pub model_cfg: ModelConfig,
    pub layout: Layout,
    pub params: CudaSlice<f32>,
    pub grads: CudaSlice<f32>,
    pub m: CudaSlice<f32>,
    pub v: CudaSlice<f32>,
    /// Low-precision copy of the MLP weights (FP16/BF16), covering `mlp_region` of the layout.
    pub wlow: CudaSlice<u8>,
    pub mlp_region: std::ops::Range<usize>,
    pub batch: Batch,
    pub users: CudaSlice<u32>,
    pub items: CudaSlice<u32>,
    pub offsets: CudaSlice<u64>,
    pub pos_items: CudaSlice<u32>,
    pub loss_sum: CudaSlice<f64>,
    pub found_inf: CudaSlice<i32>,
    pub sample_err: CudaSlice<u64>,
    pub n_pos: u64,
    pub rng: Rng,
    pub adam_steps: u64,
    pub loss_scale: f32,
    pub clean_steps: u32,
    perm: Option<(u32, Permutation)>,
}

impl CudaTrainer {
    /// Upload `model` and the train positives to device `ordinal`. `positives` is needed for exact
    /// negatives. The batch buffers are sized for `cfg.batch_size` samples.
    pub fn new(
        ordinal: usize,
        model: Model,
        cfg: &TrainConfig,
        train_users: &[u32],
        train_items: &[u32],
        positives: Option<&UserItems>,
    ) -> Result<Self, CudaError> {
        let mc = model.config.clone();
        mc.validate()
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        if model.params.len() != model.layout.total || model.layout != mc.layout() {
            return Err(CudaError::Invalid(format!(
                "model has {} parameters, its configuration's layout needs {}",
                model.params.len(),
                mc.layout().total
            )));
        }
        if train_users.len() != train_items.len() || train_users.is_empty() {
            return Err(CudaError::Invalid(format!(
                "train positives: {} users and {} items (need the same, at least one)",
                train_users.len(),
                train_items.len()
            )));
        }
        if let Some((k, _)) = train_users
            .iter()
            .enumerate()
            .find(|(_, &u)| u >= mc.n_users)
        {
            return Err(CudaError::Invalid(format!(
                "train row {k}: user {} >= n_users {}",
                train_users[k], mc.n_users
            )));
        }
        if let Some((k, _)) = train_items
            .iter()
            .enumerate()
            .find(|(_, &i)| i >= mc.n_items)
        {
            return Err(CudaError::Invalid(format!(
                "train row {k}: item {} >= n_items {}",
                train_items[k], mc.n_items
            )));
        }
        if cfg.negative_mode == NegativeMode::Exact && positives.is_none() {
            return Err(CudaError::Invalid(
                "exact negatives need the users' positives".into(),
            ));
        }
        if mc.final_in() > FINAL_MAX {
            return Err(CudaError::Invalid(format!(
                "the final layer has {} inputs; the CUDA backend supports at most {FINAL_MAX}",
                mc.final_in()
            )));
        }
        if mc.kind.has_mlp()
            && mc
                .layers
                .iter()
                .any(|&w| w.div_ceil(16) > ROW_BLOCK as usize)
        {
            return Err(CudaError::Invalid(format!(
                "MLP layers wider than {} are not supported",
                ROW_BLOCK * 16
            )));
        }
        if cfg.batch_size == 0 || cfg.batch_size > (1 << 30) {
            return Err(CudaError::Invalid(format!(
                "batch size {} out of 1..=2^30",
                cfg.batch_size
            )));
        }
        let per_epoch = train_users.len() as u64 * (1 + cfg.negatives as u64);
        if per_epoch >= 1 << 32 {
            return Err(CudaError::Invalid(format!(
                "an epoch must have fewer than 2^32 samples, not {per_epoch}"
            )));
        }
        let gpu = Gpu::new(ordinal, cfg.precision)?;
        let layout = model.layout.clone();
        let p = layout.total;
        let params = gpu.upload(&model.params, "parameters")?;
        let grads = gpu.alloc::<f32>(p, "gradients")?;
        let m = gpu.alloc::<f32>(p, "Adam m")?;
        let v = gpu.alloc::<f32>(p, "Adam v")?;
        let mlp_region = if mc.kind.has_mlp() {
            let first = layout.range("mlp.0.weight").start;
            let last = layout.range(&format!("mlp.{}.bias", mc.n_linear() - 1)).end;
            first..last
        } else {
            0..0
        };
        let wlow = gpu.alloc::<u8>(
            if gpu.act == Act::F32 {
                1
            } else {
                mlp_region.len() * gpu.act.bytes()
            },
            "low-precision MLP weights",
        )?;
        let cap = cfg.batch_size as usize;
        let batch = Batch::new(&gpu, &mc, cap)?;
        let users = gpu.upload(train_users, "train users")?;
        let items = gpu.upload(train_items, "train items")?;
        let (offsets, pos_items) = match positives {
            Some(ui) => (
                gpu.upload(&ui.offsets, "positive offsets")?,
                gpu.upload(&ui.items, "positive items")?,
            ),
            None => (
                gpu.alloc::<u64>(1, "positive offsets")?,
                gpu.alloc::<u32>(1, "positive items")?,
            ),
        };
        if let Some(ui) = positives {
            if ui.n_users() < mc.n_users as usize {
                return Err(CudaError::Invalid(format!(
                    "positives cover {} users, the model has {}",
                    ui.n_users(),
                    mc.n_users
                )));
            }
        }
        let loss_sum = gpu.alloc::<f64>(1, "loss")?;
        let found_inf = gpu.alloc::<i32>(1, "inf flag")?;
        let sample_err = gpu.alloc::<u64>(1, "sampler flag")?;
        gpu.sync("uploading the model and data")?;
        Ok(CudaTrainer {
            gpu,
            cfg: cfg.clone(),
            model_cfg: mc,
            layout,
            params,
            grads,
            m,
            v,
            wlow,
            mlp_region,
            batch,
            users,
            items,
            offsets,
            pos_items,
            loss_sum,
            found_inf,
            sample_err,
            n_pos: train_users.len() as u64,
            rng: Rng::new(cfg.seed),
            adam_steps: 0,
            loss_scale: if cfg.precision == Precision::Fp16 {
                SCALE_INIT
            } else {
                1.0
            },
            clean_steps: 0,
            perm: None,
            ranks: None,
        })
    }

    /// Train data-parallel with the ranks of `group` through NCCL (also with a group of one:
    /// the NCCL path forced). Rank 0's parameters are broadcast to every rank.
    pub fn with_ranks(mut self, group: ncf_core::dist::Group) -> Result<Self, CudaError> {
        let ranks = crate::nccl::Ranks::new(group, self.gpu.stream.clone())?;
        self.ranks = Some(ranks);
        let sent = match &self.ranks {
            Some(r) => r
                .broadcast(&mut self.params, "the initial parameters")
                .and_then(|_| r.wait(&self.gpu.stream, "broadcasting the initial parameters")),
            None => Ok(()),
        };
        if let Err(e) = sent {
            return Err(self.abort_ranks(e));
        }
        Ok(self)
    }

    fn pp(&self, name: &str) -> u64 {
        dptr(&self.params, &self.gpu.stream) + 4 * self.layout.range(name).start as u64
    }
    fn gp(&self, name: &str) -> u64 {
        dptr(&self.grads, &self.gpu.stream) + 4 * self.layout.range(name).start as u64
    }
    /// Weight of mlp.k as a GEMM operand: the FP32 master or its low-precision copy.
    fn wp(&self, k: usize) -> u64 {
        let name = format!("mlp.{k}.weight");
        if self.gpu.act == Act::F32 {
            self.pp(&name)
        } else {
            let rel = self.layout.range(&name).start - self.mlp_region.start;
            dptr(&self.wlow, &self.gpu.stream) + (rel * self.gpu.act.bytes()) as u64
        }
    }

    pub fn samples_per_epoch(&self) -> u64 {
        self.n_pos * (1 + self.cfg.negatives as u64)
    }

    fn permutation(&mut self, epoch: u32) -> Permutation {
        match self.perm {
            Some((e, p)) if e == epoch => p,
            _ => {
                let p = Permutation::new(
                    &self.rng,
                    stream::SHUFFLE,
                    epoch,
                    0,
                    self.samples_per_epoch(),
                );
                self.perm = Some((epoch, p));
                p
            }
        }
    }

    /// Generate the samples at `positions` of `epoch` into the batch buffers (device only).
    pub fn make_batch(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<usize, CudaError> {
        let total = self.samples_per_epoch();
        let n = positions.end.saturating_sub(positions.start);
        if n == 0 || positions.end > total || n as usize > self.batch.cap {
            return Err(CudaError::Invalid(format!(
                "positions {}..{} of an epoch of {total} samples (batch capacity {})",
                positions.start, positions.end, self.batch.cap
            )));
        }
        let perm = self.permutation(epoch);
        let keys = perm.keys();
        let s = &self.gpu.stream;
        let seed = self.rng.seed();
        let args: Vec<KArg> = vec![
            (seed as u32).into(),
            ((seed >> 32) as u32).into(),
            epoch.into(),
            self.model_cfg.n_items.into(),
            ((self.cfg.negative_mode == NegativeMode::Exact) as i32).into(),
            self.n_pos.into(),
            dptr(&self.users, s).into(),
            dptr(&self.items, s).into(),
            dptr(&self.offsets, s).into(),
            dptr(&self.pos_items, s).into(),
            total.into(),
            perm.half_bits().into(),
            keys[0].into(),
            keys[1].into(),
            keys[2].into(),
            keys[3].into(),
            positions.start.into(),
            (n as u32).into(),
            dptr(&self.batch.users, s).into(),
            dptr(&self.batch.items, s).into(),
            dptr(&self.batch.labels, s).into(),
            dptr(&self.batch.sample, s).into(),
            dptr(&self.sample_err, s).into(),
        ];
        let sizes = format!(
            "epoch {epoch}, positions {}..{}",
            positions.start, positions.end
        );
        self.gpu.launch(
            "ncf_make_batch",
            self.gpu.grid_for(n),
            256,
            0,
            &args,
            &sizes,
        )?;
        Ok(n as usize)
    }

    /// Forward pass of the MLP tower on the first `n` batch rows (users/items already there).
    /// `dropout` = Some(epoch) in training, None when scoring.
    pub fn mlp_forward(&mut self, n: usize, dropout: Option<u32>) -> Result<(), CudaError> {
        let mc = self.model_cfg.clone();
        if !mc.kind.has_mlp() {
            return Ok(());
        }
        let s = self.gpu.stream.clone();
        if self.gpu.act != Act::F32 {
            let len = self.mlp_region.len() as u64;
            let src = dptr(&self.params, &s) + 4 * self.mlp_region.start as u64;
            let args = [src.into(), dptr(&self.wlow, &s).into(), len.into()];
            self.gpu.launch(
                "ncf_cast",
                self.gpu.grid_for(len),
                256,
                0,
                &args,
                &format!("{len} MLP weights"),
            )?;
        }
        let e = mc.mlp_embed();
        let args = [
            dptr(&self.batch.users, &s).into(),
            dptr(&self.batch.items, &s).into(),
            (n as u32).into(),
            (e as u32).into(),
            self.pp("mlp_user_embed.weight").into(),
            self.pp("mlp_item_embed.weight").into(),
            dptr(&self.batch.x0, &s).into(),
        ];
        let tot = (n * 2 * e) as u64;
        self.gpu.launch(
            "ncf_gather",
            self.gpu.grid_for(tot),
            256,
            0,
            &args,
            &format!("batch {n}, embed {e}"),
        )?;
        let (thr, scale) = match dropout {
            Some(_) => dropout_threshold(mc.dropout),
            None => (0, 1.0),
        };
        let seed = self.rng.seed();
        for k in 0..mc.n_linear() {
            let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
            let x = if k == 0 {
                dptr(&self.batch.x0, &s)
            } else {
                dptr(&self.batch.acts[k - 1], &s)
            };
            let z = dptr(&self.batch.scratch, &s);
            self.gpu.gemm(
                &format!("forward mlp.{k}"),
                true,
                false,
                (fout, n, fin),
                self.wp(k),
                fin,
                x,
                fin,
                z,
                fout,
                0.0,
            )?;
            let args = [
                z.into(),
                self.pp(&format!("mlp.{k}.bias")).into(),
                dptr(&self.batch.acts[k], &s).into(),
                dptr(&self.batch.sample, &s).into(),
                (n as u32).into(),
                (fout as u32).into(),
                (k as u32).into(),
                dropout.unwrap_or(0).into(),
                (seed as u32).into(),
                ((seed >> 32) as u32).into(),
                thr.into(),
                scale.into(),
            ];
            self.row_launch(
                "ncf_bias_relu_dropout_fwd",
                n,
                fout,
                0,
                &args,
                &format!("mlp.{k}: batch {n}, width {fout}"),
            )?;
        }
        Ok(())
    }

    fn row_launch(
        &self,
        name: &str,
        n: usize,
        width: usize,
        smem: u32,
        args: &[KArg],
        sizes: &str,
    ) -> Result<(), CudaError> {
        let groups = width.div_ceil(16).max(1);
        let rows_per_block = (ROW_BLOCK as usize / groups).max(1);
        // 12 blocks per SM: whole waves at 2, 3, 4 or 6 resident blocks (the kernels' register
        // bounds), so grid-stride loops end together.
        let grid =
            (n.div_ceil(rows_per_block) as u64).clamp(1, self.gpu.sm_count as u64 * 12) as u32;
        self.gpu.launch(name, grid, ROW_BLOCK, smem, args, sizes)
    }

    /// The final-layer kernel: logits into `batch.labels` when scoring (`train` = false), else loss
    /// and gradients (dx_last into the scratch buffer) with the gradient scale `gscale`.
    pub fn final_layer(&mut self, n: usize, train: bool, gscale: f32) -> Result<(), CudaError> {
        let mc = &self.model_cfg;
        let s = &self.gpu.stream;
        let f = mc.gmf_factors();
        let lout = mc.mlp_out();
        let (mfu, mfi, gmfu, gmfi) = if f > 0 {
            (
                self.pp("mf_user_embed.weight"),
                self.pp("mf_item_embed.weight"),
                self.gp("mf_user_embed.weight"),
                self.gp("mf_item_embed.weight"),
            )
        } else {
            (0, 0, 0, 0)
        };
        let x_last = if lout > 0 {
            dptr(self.batch.acts.last().expect("mlp has layers"), s)
        } else {
            0
        };
        let args = [
            dptr(&self.batch.users, s).into(),
            dptr(&self.batch.items, s).into(),
            dptr(&self.batch.labels, s).into(),
            (n as u32).into(),
            (f as u32).into(),
            mfu.into(),
            mfi.into(),
            x_last.into(),
            (lout as u32).into(),
            self.pp("final.weight").into(),
            self.pp("final.bias").into(),
            (train as i32).into(),
            gscale.into(),
            dptr(&self.batch.labels, s).into(),
            dptr(&self.loss_sum, s).into(),
            gmfu.into(),
            gmfi.into(),
            self.gp("final.weight").into(),
            self.gp("final.bias").into(),
            dptr(&self.batch.scratch, s).into(),
        ];
        let grid = (n.div_ceil(8) as u64).clamp(1, self.gpu.sm_count as u64 * 16) as u32;
        self.gpu.launch(
            "ncf_final",
            grid,
            256,
            0,
            &args,
            &format!("batch {n}, gmf {f}, mlp out {lout}, train {train}"),
        )
    }

    /// Backward pass of the MLP tower from dx_last (in scratch) to the embedding gradients.
    pub fn mlp_backward(&mut self, n: usize, epoch: u32) -> Result<(), CudaError> {
        let mc = self.model_cfg.clone();
        if !mc.kind.has_mlp() {
            return Ok(());
        }
        let s = self.gpu.stream.clone();
        let (thr, scale) = dropout_threshold(mc.dropout);
        let seed = self.rng.seed();
        let scratch = dptr(&self.batch.scratch, &s);
        let dz = dptr(&self.batch.dz, &s);
        for k in (0..mc.n_linear()).rev() {
            let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
            let args = [
                scratch.into(),
                dptr(&self.batch.acts[k], &s).into(),
                dz.into(),
                self.gp(&format!("mlp.{k}.bias")).into(),
                dptr(&self.batch.sample, &s).into(),
                (n as u32).into(),
                (fout as u32).into(),
                (k as u32).into(),
                epoch.into(),
                (seed as u32).into(),
                ((seed >> 32) as u32).into(),
                thr.into(),
                scale.into(),
            ];
            self.row_launch(
                "ncf_bias_relu_dropout_bwd",
                n,
                fout,
                (fout * 4) as u32,
                &args,
                &format!("mlp.{k}: batch {n}, width {fout}"),
            )?;
            let x = if k == 0 {
                dptr(&self.batch.x0, &s)
            } else {
                dptr(&self.batch.acts[k - 1], &s)
            };
            let gw = self.gp(&format!("mlp.{k}.weight"));
            self.gpu.gemm(
                &format!("weight gradient mlp.{k}"),
                false,
                true,
                (fin, fout, n),
                x,
                fin,
                dz,
                fout,
                gw,
                fin,
                0.0,
            )?;
            self.gpu.gemm(
                &format!("input gradient mlp.{k}"),
                false,
                false,
                (fin, n, fout),
                self.wp(k),
                fin,
                dz,
                fout,
                scratch,
                fin,
                0.0,
            )?;
        }
        let e = mc.mlp_embed();
        let args = [
            dptr(&self.batch.users, &s).into(),
            dptr(&self.batch.items, &s).into(),
            (n as u32).into(),
            (e as u32).into(),
            scratch.into(),
            self.gp("mlp_user_embed.weight").into(),
            self.gp("mlp_item_embed.weight").into(),
        ];
        let tot = (n * 2 * e) as u64;
        self.gpu.launch(
            "ncf_scatter",
            self.gpu.grid_for(tot),
            256,
            0,
            &args,
            &format!("batch {n}, embed {e}"),
        )
    }

    /// One optimiser step over the whole flat vector (zeroes the gradients).
    pub fn optimizer_step(
        &mut self,
        t: u64,
        inv_scale: f32,
        check_inf: bool,
    ) -> Result<(), CudaError> {
        let s = &self.gpu.stream;
        let c = &self.cfg;
        let bc1 = 1.0 - (c.beta1 as f64).powi(t as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(t as i32);
        let step_size = (c.lr as f64 / bc1) as f32;
        let n = self.layout.total as u64;
        let args = [
            dptr(&self.params, s).into(),
            dptr(&self.grads, s).into(),
            dptr(&self.m, s).into(),
            dptr(&self.v, s).into(),
            n.into(),
            c.lr.into(),
            c.beta1.into(),
            c.beta2.into(),
            c.eps.into(),
            c.l2.into(),
            step_size.into(),
            (bc2.sqrt() as f32).into(),
            inv_scale.into(),
            if check_inf {
                dptr(&self.found_inf, s)
            } else {
                0u64
            }
            .into(),
            ((c.optimizer == Optimizer::Sgd) as i32).into(),
        ];
        self.gpu.launch(
            "ncf_adam",
            self.gpu.grid_for(n),
            256,
            0,
            &args,
            &format!("{n} parameters, step {t}"),
        )
    }

    /// With NCCL ranks: wait for the queued step (collectives included) with the group's
    /// deadline instead of blocking in the driver; past it, abort ([`Self::abort_ranks`]).
    fn wait_for_ranks(&mut self, what: &str) -> Result<(), CudaError> {
        let Some(r) = &self.ranks else {
            return Ok(());
        };
        match r.wait(&self.gpu.stream, what) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.abort_ranks(e)),
        }
    }

    /// After an error with NCCL work possibly queued: drop the communicator (cudarc's drop is
    /// ncclCommAbort, which ends collectives a dead peer left spinning) so that nothing waits on
    /// the stream forever, and say so in the error. The abort runs on a helper thread and is
    /// given 10 s: NCCL's abort can itself hang (it joins its proxy threads); the process then
    /// exits with the error anyway.
    fn abort_ranks(&mut self, e: CudaError) -> CudaError {
        let Some(ranks) = self.ranks.take() else {
            return e;
        };
        struct Moved(crate::nccl::Ranks);
        // SAFETY: the communicator is moved, not shared: no other thread uses it afterwards, and
        // ncclCommAbort may be called from any thread.
        unsafe impl Send for Moved {}
        let moved = Moved(ranks);
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("nccl-abort".into())
            .spawn(move || {
                // The whole wrapper is moved in (a closure naming only `moved.0` would capture
                // the non-Send field alone).
                let moved = moved;
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(moved.0)));
                let _ = tx.send(ok.is_ok());
            });
        let how = match spawned.map(|_| rx.recv_timeout(std::time::Duration::from_secs(10))) {
            Ok(Ok(true)) => "the NCCL communicator was aborted",
            Ok(Ok(false)) => "aborting the NCCL communicator failed too",
            Ok(Err(_)) => "aborting the NCCL communicator did not finish within 10 s",
            Err(_) => "no thread could be started to abort the NCCL communicator",
        };
        CudaError::Invalid(format!("{e}; {how}"))
    }

    /// The step after the local forward/backward: all-reduce over the ranks (if any), FP16's
    /// finite check, the optimiser. With the debug modes that synchronise after every launch
    /// (NCF_CUDA_SYNC, profiling) the collectives are first waited for with the deadline, so
    /// those synchronisations cannot block on a collective a dead peer left spinning.
    fn reduce_and_update(&mut self, fp16: bool, scale: f32, t: u64) -> Result<(), CudaError> {
        if let Some(r) = &self.ranks {
            r.all_reduce(&mut self.grads, ReduceOp::Sum, "the gradients")?;
            r.all_reduce(&mut self.loss_sum, ReduceOp::Sum, "the loss")?;
            r.all_reduce(&mut self.sample_err, ReduceOp::Max, "the sampler flag")?;
            if self.gpu.sync_each || self.gpu.profile.is_some() {
                r.wait(&self.gpu.stream, "the step's all-reduces")?;
            }
        }
        if fp16 {
            let s = &self.gpu.stream;
            let len = self.layout.total as u64;
            let args = [
                dptr(&self.grads, s).into(),
                len.into(),
                dptr(&self.found_inf, s).into(),
            ];
            self.gpu.launch(
                "ncf_check_finite",
                self.gpu.grid_for(len),
                256,
                0,
                &args,
                &format!("{len} gradients"),
            )?;
        }
        self.optimizer_step(t, 1.0 / scale, fp16)
    }

    fn train_step(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<StepStats, CudaError> {
        let fp16 = self.cfg.precision == Precision::Fp16;
        {
            let g = &self.gpu;
            g.zero(&mut self.loss_sum, "loss")?;
            g.zero(&mut self.found_inf, "inf flag")?;
            g.zero(&mut self.sample_err, "sampler flag")?;
        }
        // Data-parallel: this rank's share of the global batch; gradients are scaled by the
        // global batch size and summed over the ranks below.
        let global = (positions.end - positions.start) as usize;
        let local = match &self.ranks {
            Some(r) => crate::nccl::local_positions(positions, r.rank(), r.world()),
            None => positions,
        };
        let scale = if fp16 { self.loss_scale } else { 1.0 };
        if local.end > local.start {
            let n = self.make_batch(epoch, local)?;
            self.mlp_forward(n, Some(epoch))?;
            self.final_layer(n, true, scale / global as f32)?;
            self.mlp_backward(n, epoch)?;
        }
        let n = global;
        let t = self.adam_steps + 1;
        // From the first collective on, an error may leave NCCL work queued: abort then.
        if let Err(e) = self.reduce_and_update(fp16, scale, t) {
            return Err(self.abort_ranks(e));
        }
        self.wait_for_ranks(&format!("epoch {epoch} step {t}"))?;
        let loss = self.gpu.download(&self.loss_sum, 1, "loss")?[0];
        let err = self.gpu.download(&self.sample_err, 1, "sampler flag")?[0];
        if err != 0 {
            return Err(CudaError::Invalid(format!(
                "sample {}: no negative found in {} draws (the user has nearly every item)",
                err - 1,
                ncf_core::sampler::MAX_ATTEMPTS
            )));
        }
        let skipped = fp16 && self.gpu.download(&self.found_inf, 1, "inf flag")?[0] != 0;
        if skipped {
            self.loss_scale *= 0.5;
            self.clean_steps = 0;
        } else {
            self.adam_steps = t;
            if fp16 {
                self.clean_steps += 1;
                if self.clean_steps == SCALE_GROWTH_INTERVAL {
                    self.loss_scale *= 2.0;
                    self.clean_steps = 0;
                }
            }
        }
        Ok(StepStats {
            loss: (loss / n as f64) as f32,
            skipped,
        })
    }

    fn score_chunks(
        &mut self,
        users: &[u32],
        items: &[u32],
        out: &mut [f32],
    ) -> Result<(), CudaError> {
        let mc = &self.model_cfg;
        if users.len() != items.len() || users.len() != out.len() {
            return Err(CudaError::Invalid(format!(
                "score: {} users, {} items, {} outputs (must be equal)",
                users.len(),
                items.len(),
                out.len()
            )));
        }
        if let Some(k) = users.iter().position(|&u| u >= mc.n_users) {
            return Err(CudaError::Invalid(format!(
                "score: user {} >= n_users {}",
                users[k], mc.n_users
            )));
        }
        if let Some(k) = items.iter().position(|&i| i >= mc.n_items) {
            return Err(CudaError::Invalid(format!(
                "score: item {} >= n_items {}",
                items[k], mc.n_items
            )));
        }
        let cap = self.batch.cap;
        let mut start = 0;
        while start < users.len() {
            let n = (users.len() - start).min(cap);
            let (u, i) = (&users[start..start + n], &items[start..start + n]);
            {
                let g = &self.gpu;
                g.upload_into(u, &mut self.batch.users, "score users")?;
                g.upload_into(i, &mut self.batch.items, "score items")?;
            }
            self.mlp_forward(n, None)?;
            self.final_layer(n, false, 0.0)?;
            let logits = self.gpu.download(&self.batch.labels, n, "scores")?;
            out[start..start + n].copy_from_slice(&logits);
            start += n;
        }
        Ok(())
    }

    /// The current parameters.
    pub fn params_host(&self) -> Result<Vec<f32>, CudaError> {
        self.gpu
            .download(&self.params, self.layout.total, "parameters")
    }

    /// The current gradient buffer (zero between steps).
    pub fn grads_host(&self) -> Result<Vec<f32>, CudaError> {
        self.gpu
            .download(&self.grads, self.layout.total, "gradients")
    }
}

impl Trainer for CudaTrainer {
    fn name(&self) -> String {
        let p = match self.cfg.precision {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        };
        format!(
            "cuda:{} {} ({}, {p})",
            self.gpu.info.ordinal,
            self.gpu.info.name,
            self.gpu.info.arch()
        )
    }

    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> ncf_core::Result<StepStats> {
        Ok(self.train_step(epoch, positions)?)
    }

    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> ncf_core::Result<()> {
        Ok(self.score_chunks(users, items, out)?)
    }

    fn model(&mut self) -> ncf_core::Result<Model> {
        let params = self.params_host()?;
        Ok(Model {
            config: self.model_cfg.clone(),
            layout: self.layout.clone(),
            params,
        })
    }

    fn save_state(&mut self) -> ncf_core::Result<OptimizerState> {
        let n = self.layout.total;
        Ok(OptimizerState {
            params: self.params_host()?,
            m: self.gpu.download(&self.m, n, "Adam first moments")?,
            v: self.gpu.download(&self.v, n, "Adam second moments")?,
            steps: self.adam_steps,
            loss_scale: self.loss_scale,
            clean_steps: self.clean_steps,
        })
    }

    fn load_state(&mut self, state: &OptimizerState) -> ncf_core::Result<()> {
        let n = self.layout.total;
        if [&state.params, &state.m, &state.v]
            .iter()
            .any(|x| x.len() != n)
        {
            return Err(ncf_core::Error::invalid(format!(
                "optimiser state has {} parameters, the model {n}",
                state.params.len()
            )));
        }
        self.gpu
            .upload_into(&state.params, &mut self.params, "parameters")?;
        self.gpu
            .upload_into(&state.m, &mut self.m, "Adam first moments")?;
        self.gpu
            .upload_into(&state.v, &mut self.v, "Adam second moments")?;
        self.adam_steps = state.steps;
        self.loss_scale = state.loss_scale;
        self.clean_steps = state.clean_steps;
        Ok(())
    }

    fn rank_world(&self) -> (usize, usize) {
        self.ranks
            .as_ref()
            .map_or((0, 1), |r| (r.rank(), r.world()))
    }

    fn allreduce_f64(&mut self, x: &mut [f64]) -> ncf_core::Result<()> {
        match &mut self.ranks {
            Some(r) => r.group.allreduce_f64(x),
            None => Ok(()),
        }
    }
}

/// The `k` best (item, score) of one row of scores, best first; ties go to the smaller item id.
/// Items in `exclude` (sorted) are skipped.
pub fn top_k_of(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
    let mut cand: Vec<(u32, f32)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (i as u32, s))
        .filter(|(i, s)| !s.is_nan() && exclude.binary_search(i).is_err())
        .collect();
    let better = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if cand.len() > k && k > 0 {
        cand.select_nth_unstable_by(k - 1, better);
    }
    cand.truncate(k);
    cand.sort_by(better);
    cand
}

impl CudaTrainer {
    /// Top-`k` items of each user by score (all items scored on the GPU, dropout off), best
    /// first, skipping each user's items in `exclude` (e.g. its training positives).
    pub fn topk(
        &mut self,
        users: &[u32],
        k: usize,
        exclude: Option<&UserItems>,
    ) -> Result<Vec<Vec<(u32, f32)>>, CudaError> {
        let n_items = self.model_cfg.n_items as usize;
        let per_chunk = (self.batch.cap / n_items).max(1);
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(per_chunk) {
            let su: Vec<u32> = chunk
                .iter()
                .flat_map(|&u| std::iter::repeat_n(u, n_items))
                .collect();
            let si: Vec<u32> = chunk.iter().flat_map(|_| 0..n_items as u32).collect();
            let mut scores = vec![0f32; su.len()];
            self.score_chunks(&su, &si, &mut scores)?;
            for (r, &u) in chunk.iter().enumerate() {
                let ex = match exclude {
                    Some(ui) if (u as usize) < ui.n_users() => ui.of(u),
                    _ => &[],
                };
                out.push(top_k_of(&scores[r * n_items..(r + 1) * n_items], k, ex));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_breaks_ties_and_excludes() {
        let s = [0.5, 2.0, f32::NAN, 2.0, -1.0, 3.0];
        assert_eq!(top_k_of(&s, 3, &[]), vec![(5, 3.0), (1, 2.0), (3, 2.0)]);
        assert_eq!(top_k_of(&s, 2, &[5]), vec![(1, 2.0), (3, 2.0)]);
        assert_eq!(top_k_of(&s, 10, &[1, 3, 5]).len(), 2);
        assert!(top_k_of(&s, 0, &[]).is_empty());
    }

    #[test]
    fn dropout_threshold_is_ncf_cores() {
        assert_eq!(dropout_threshold(0.5), (128, 2.0));
        assert_eq!(dropout_threshold(0.0), (0, 1.0));
    }
}
