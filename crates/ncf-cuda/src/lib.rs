//! ncf-cuda: the CUDA backend of ncf. Owns the CUDA libraries (loaded at run time through cudarc,
//! [`libs`]), the device interface and its two devices, a GPU and the host device that runs the
//! same kernels on the CPU in CI ([`device`]), the kernels of `kernels/` (sources and NVRTC,
//! [`kernels`]; one typed definition each, [`kdef`]), the model on a device ([`model`]),
//! [`CudaTrainer`] (the device twin of the CPU trainer; its step in [`step`]), [`CudaScorer`],
//! NCCL between ranks ([`nccl`]) and the parity checks of every kernel against the CPU
//! reference ([`check`]).
//!
//! Without a driver, GPU or NVRTC every entry point returns [`CudaError::Unavailable`]
//! ("CUDA unavailable: …") instead of panicking, so `--device auto` can fall back to the CPU.

pub mod check;
pub mod device;
pub mod factored;
pub mod first_layer;
pub mod fused;
pub mod kdef;
pub mod kernels;
pub mod libs;
pub mod model;
pub mod nccl;
pub mod ptxas;
pub mod reduce;
pub mod scorer;
pub mod step;
pub mod trainer;

pub use scorer::CudaScorer;
pub use trainer::CudaTrainer;

/// The one error type of ncf-cuda.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// No usable CUDA: a library is missing, no device, the driver is too old, ...
    #[error("CUDA unavailable: {0}")]
    Unavailable(String),
    /// NVRTC rejected a kernel source (or warned about it).
    #[error("CUDA kernel compile failed ({what}): {log}")]
    Compile { what: String, log: String },
    /// A driver or cuBLAS call failed: `what` says which call, kernel and sizes.
    #[error("CUDA error in {what}: {error}")]
    Call { what: String, error: String },
    /// The request does not fit the backend (sizes, model kind, ...).
    #[error("{0}")]
    Invalid(String),
}

impl CudaError {
    pub fn call(what: impl Into<String>, error: impl std::fmt::Debug) -> Self {
        CudaError::Call {
            what: what.into(),
            error: format!("{error:?}"),
        }
    }
}

impl From<CudaError> for ncf_core::Error {
    fn from(e: CudaError) -> Self {
        ncf_core::Error::invalid(e.to_string())
    }
}

/// What [`available`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor).
    pub capability: (i32, i32),
    pub total_mem: usize,
    pub device_count: usize,
    /// Driver API version, e.g. 13000.
    pub driver_version: i32,
}

impl DeviceInfo {
    /// `sm_90`-style architecture name for NVRTC.
    pub fn arch(&self) -> String {
        format!("sm_{}{}", self.capability.0, self.capability.1)
    }
}

/// Probe device 0: the CUDA driver library, NVRTC and cuBLAS are loadable, and a device exists.
pub fn available() -> Result<DeviceInfo, CudaError> {
    probe(0)
}

/// Probe device `ordinal` (see [`available`]).
pub fn probe(ordinal: usize) -> Result<DeviceInfo, CudaError> {
    libs::require(&[libs::Lib::Driver, libs::Lib::Nvrtc, libs::Lib::Cublas])?;
    use cudarc::driver::{result, sys};
    result::init().map_err(|e| CudaError::Unavailable(format!("cuInit failed: {e:?}")))?;
    let count = result::device::get_count()
        .map_err(|e| CudaError::Unavailable(format!("cuDeviceGetCount failed: {e:?}")))?;
    if count <= 0 {
        return Err(CudaError::Unavailable(
            "the driver reports no CUDA device".into(),
        ));
    }
    if ordinal >= count as usize {
        return Err(CudaError::Unavailable(format!(
            "device {ordinal} asked for, but only {count} CUDA device(s) exist"
        )));
    }
    let dev = result::device::get(ordinal as i32)
        .map_err(|e| CudaError::Unavailable(format!("cuDeviceGet({ordinal}): {e:?}")))?;
    let attr = |a| unsafe { result::device::get_attribute(dev, a) };
    let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        .map_err(|e| CudaError::Unavailable(format!("device {ordinal}: {e:?}")))?;
    let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
        .map_err(|e| CudaError::Unavailable(format!("device {ordinal}: {e:?}")))?;
    let name = result::device::get_name(dev).unwrap_or_else(|_| "unknown GPU".into());
    let total_mem = unsafe { result::device::total_mem(dev) }.unwrap_or(0);
    let mut driver_version = 0i32;
    unsafe { sys::cuDriverGetVersion(&mut driver_version) };
    if major < 7 {
        return Err(CudaError::Unavailable(format!(
            "{name} has compute capability {major}.{minor}; ncf needs 7.0 or newer"
        )));
    }
    Ok(DeviceInfo {
        ordinal,
        name,
        capability: (major, minor),
        total_mem,
        device_count: count as usize,
        driver_version,
    })
}
