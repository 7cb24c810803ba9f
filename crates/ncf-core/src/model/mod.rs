//! The NeuMF model family's shape and parameters ([`layout`]), its dropout masks ([`dropout`])
//! and its file ([`file`], safetensors with PyTorch names).

pub mod dropout;
pub mod file;
pub mod layout;

pub use layout::{Layout, Model, ModelConfig, ModelKind, Side, TensorSpec, ALIGN};
