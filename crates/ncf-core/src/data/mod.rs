//! Data in: rating files of every supported format ([`ingest`]) become the dataset directory
//! every tool reads ([`dataset`]) through [`prep`] (≥ 20 interactions, dense ids, latest held
//! out); [`synth`] generates datasets of any shape for benchmarks; [`ids`] looks up and shows the
//! raw ids people give the tools; [`csr`] is the one sparse-matrix type (rows of ids).

pub mod csr;
pub mod dataset;
pub mod expand;
pub mod ids;
pub mod ingest;
pub mod prep;
pub mod synth;
