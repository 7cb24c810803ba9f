//! Which backend runs behind `--device`: the one place the tools turn a device into a boxed
//! [`Trainer`] or [`Scorer`]. The family builds its trainer ([`FamilySpec`]); this module hands
//! it the CPU or ncf-cuda's backend ([`Cuda`], ncf-core's [`DeviceBackend`]); `--device auto`
//! falls back to the CPU with a note.

use anyhow::{bail, Result};
use ncf_core::data::dataset::Dataset;
use ncf_core::dist::Group;
use ncf_core::family::{Backend, DeviceBackend, FamilySpec};
use ncf_core::model::Model;
use ncf_core::neumf_cpu::{CpuScorer, FirstLayer};
use ncf_core::sampling::sampler::UserItems;
use ncf_core::train::{
    default_threads, Device, Precision, Reductions, Scorer, StepKernels, TrainConfig, Trainer,
};
use ncf_cuda::device::Which;

/// A device with `auto` settled: the CPU, or a device of the CUDA backend (a GPU by ordinal,
/// or the host device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    Cpu,
    Cuda(Which),
}

/// Settle `device` for `tool`: `auto` is CUDA when a GPU is usable, else the CPU with a note on
/// stderr naming `work` ("training", "scoring"). `cpu_only` is why the work cannot run on a GPU
/// (then `auto` means the CPU and `cuda` is refused with it). The GPU is `gpu`, else
/// `local_rank` modulo the GPUs visible.
pub fn choose(
    tool: &str,
    work: &str,
    device: Device,
    gpu: Option<usize>,
    local_rank: usize,
    cpu_only: Option<String>,
) -> Result<Chosen> {
    let cuda = match (device, cpu_only) {
        (Device::Cpu, _) | (Device::Auto, Some(_)) => false,
        (Device::Cuda | Device::CudaHost, Some(why)) => bail!("{why}"),
        (Device::CudaHost, None) => return Ok(Chosen::Cuda(Which::Host)),
        (Device::Cuda, None) => true,
        (Device::Auto, None) => match ncf_cuda::available() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("{tool}: note: {e}; {work} on the CPU");
                false
            }
        },
    };
    if !cuda {
        return Ok(Chosen::Cpu);
    }
    let ordinal = match gpu {
        Some(g) => g,
        None => local_rank % ncf_cuda::available()?.device_count.max(1),
    };
    ncf_cuda::probe(ordinal)?;
    Ok(Chosen::Cuda(Which::Gpu(ordinal)))
}

/// The precision a run on `chosen` computes in when none was asked for: TF32 on GPUs that have
/// it (compute capability 8.0+), as NVIDIA's NCF does, else FP32.
pub fn default_precision(chosen: Chosen) -> Result<Precision> {
    Ok(match chosen {
        Chosen::Cuda(Which::Gpu(ordinal)) if ncf_cuda::probe(ordinal)?.capability.0 >= 8 => {
            Precision::Tf32
        }
        _ => Precision::Fp32,
    })
}

/// `--threads N`: at least 1 and no more than the cores this process may run on (more threads
/// than cores only wait for each other at every step: 30× slower measured with 1000 on 2 cores),
/// unless `NCF_OVERSUBSCRIBE=1` asks for it as `mpirun --oversubscribe` does for ranks (the
/// reference runs that 3 oversubscribed ranks are compared with on 2 cores, tests/dist.rs).
pub fn check_threads(threads: Option<usize>) -> Result<()> {
    let cores = default_threads();
    let over = std::env::var("NCF_OVERSUBSCRIBE").is_ok_and(|v| v == "1");
    match threads {
        Some(0) => bail!("--threads 0: give at least 1 (default: all {cores} cores)"),
        Some(t) if t > cores && !over => bail!(
            "--threads {t}: this machine lets ncf run {cores} at once; give at most {cores} (more \
             threads than cores only wait for each other at every step; NCF_OVERSUBSCRIBE=1 \
             allows it)"
        ),
        _ => Ok(()),
    }
}

/// The trainer of `family` on `chosen` for `model`, `data`'s training rows and `cfg`, built by
/// the family; joined to the other ranks through `group` (over NCCL on CUDA). `threads` is for
/// the CPU (default: all cores).
/// `cuda` picks the CUDA trainer's paths (docs/CUDA.md).
#[allow(clippy::too_many_arguments)]
pub fn trainer(
    family: &dyn FamilySpec,
    model: Model,
    cfg: &TrainConfig,
    data: &Dataset,
    chosen: Chosen,
    threads: Option<usize>,
    group: Option<Group>,
    cuda: CudaOptions,
) -> Result<Box<dyn Trainer>> {
    let device;
    let backend = match chosen {
        Chosen::Cpu if cuda.reductions.is_some() => {
            bail!(
                "--cuda-reductions is for --device cuda (the CPU backend sums in a fixed order \
                 for a given --threads)"
            )
        }
        Chosen::Cpu if cuda.step.is_some() => {
            bail!("--cuda-step is for --device cuda (the CPU backend has its own kernels)")
        }
        Chosen::Cpu => Backend::Cpu {
            threads: threads.unwrap_or_else(default_threads).max(1),
            first_layer: cuda.first_layer,
        },
        Chosen::Cuda(which) => {
            device = Cuda {
                which,
                first_layer: cuda.first_layer.unwrap_or(FirstLayer::PerSample),
                reductions: cuda.reductions.unwrap_or_default(),
                step: cuda.step.unwrap_or(default_step(which)),
            };
            Backend::Device(&device)
        }
    };
    Ok(family.trainer(model, cfg, data, backend, group)?)
}

/// ncf-cuda's backend on one device, as the families build their trainers on it.
struct Cuda {
    which: Which,
    first_layer: FirstLayer,
    reductions: Reductions,
    step: StepKernels,
}

/// The step's kernels by default: fused on the host device (where CI checks them), split on a
/// GPU until a device round has confirmed the fused step there (docs/CUDA.md).
fn default_step(which: Which) -> StepKernels {
    match which {
        Which::Host => StepKernels::Fused,
        Which::Gpu(_) => StepKernels::Split,
    }
}

impl DeviceBackend for Cuda {
    fn neumf_trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        positives: Option<&UserItems>,
        group: Option<Group>,
    ) -> ncf_core::Result<Box<dyn Trainer>> {
        let t = ncf_cuda::CudaTrainer::new(
            ncf_cuda::device::open(self.which, cfg.precision)?,
            &model,
            cfg,
            &data.train_users.rows(),
            &data.train_items,
            positives,
        )?
        .with_first_layer(self.first_layer)?
        .with_reductions(self.reductions)?
        .with_step(self.step)?;
        Ok(match group {
            Some(g) => Box::new(t.with_ranks(g)?),
            None => Box::new(t),
        })
    }
}

/// The trainer's paths (`--first-layer`, for the CPU too; `--cuda-reductions`); None: the
/// default.
#[derive(Clone, Copy, Debug, Default)]
pub struct CudaOptions {
    /// Per sample by default: the factored kernels wait for a device run to confirm them.
    pub first_layer: Option<FirstLayer>,
    /// Deterministic by default.
    pub reductions: Option<Reductions>,
    /// Fused on the host device, split on a GPU by default ([`default_step`]).
    pub step: Option<StepKernels>,
}

/// A scorer of `model` on `chosen` (FP32 on a GPU: the CPU's scores up to rounding).
pub fn scorer(model: &Model, chosen: Chosen) -> Result<Box<dyn Scorer + '_>> {
    Ok(match chosen {
        Chosen::Cpu => Box::new(CpuScorer::new(model)),
        Chosen::Cuda(which) => Box::new(ncf_cuda::CudaScorer::new(
            ncf_cuda::device::open(which, Precision::Fp32)?,
            model,
        )?),
    })
}
