//! Training: what a run computes ([`config`]), the interfaces a backend implements
//! ([`backend`]), the loop every backend runs under ([`run`]), exact resume ([`checkpoint`]) and
//! its report lines, written ([`report`]) and read back ([`log`]).

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod log;
pub mod report;
pub mod run;

pub use backend::{default_threads, Device, Reductions, Scorer, StepKernels, StepStats, Trainer};
pub use config::{
    check_config, BatchSize, Moments, Optimizer, Precision, Preset, Recipe, Shape, TrainConfig,
};
pub use log::LogLine;
pub use report::{LogFile, ReportSink, Reports};
pub use run::{
    check_model_kept, epoch_len, evaluate_sharded, run, EpochReport, RunOptions, Summary,
};
