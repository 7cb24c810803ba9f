//! ncf-core: everything the ncf tools share, so that they cannot disagree.
//!
//! One dataset format ([`dataset`]), one RNG ([`rng`]) and sampler ([`sampler`]), one metrics
//! module ([`metrics`]), one model layout ([`model`]). The binaries in `ncf-cli` are thin shells.

pub mod checkpoint;
pub mod cpu;
pub mod dataset;
pub mod dist;
pub mod error;
pub mod ingest;
pub mod io;
pub mod metrics;
pub mod model;
pub mod modelfile;
pub mod prep;
pub mod rng;
pub mod sampler;
pub mod synth;
pub mod train;

pub use error::{Error, Result};
