//! The GPU check of ncf, whole: `ncf-cuda-check` ([`cuda_check`]: kernel parity, golden runs,
//! bench, NCCL's version) and `ncf-devcheck` ([`cli`]: every verdict of scripts/device-check.sh,
//! [`judge`], and its results file). Each binary is a `main` over these modules.

pub mod cli;
#[cfg(feature = "cuda")]
pub mod cuda_check;
pub mod judge;
