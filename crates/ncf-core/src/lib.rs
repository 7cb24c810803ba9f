//! ncf-core: everything the ncf tools share, so that they cannot disagree.
//!
//! One dataset format ([`data`]), one RNG and sampler ([`sampling`]), one metrics module
//! ([`eval`]), one model layout and file ([`model`]), one training loop ([`train`]). The model
//! families ([`family`]) say what each `--model` takes and builds; [`neumf_cpu`] is the CPU
//! backend of NeuMF and its one reference. The binaries in `ncf-cli` are thin shells over these.

pub mod arrow;
pub mod data;
pub mod dist;
pub mod error;
pub mod eval;
pub mod family;
pub mod interrupt;
pub mod io;
pub mod memory;
pub mod model;
pub mod neumf_cpu;
pub mod sampling;
pub mod train;

pub use error::{Error, Result};
