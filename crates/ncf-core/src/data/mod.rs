//! Data in: rating files of every supported format ([`ingest`]) become the dataset directory
//! every tool reads ([`dataset`]) through [`prep`] (≥ 20 interactions, dense ids, latest held
//! out); [`synth`] generates datasets of any shape for benchmarks.

pub mod dataset;
pub mod ingest;
pub mod prep;
pub mod synth;
