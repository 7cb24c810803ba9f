//! The parts of Apache Arrow ncf uses, under the paths of the `arrow` facade crate: arrays,
//! types and schemas, the IPC stream format. ncf depends on these crates directly rather than on
//! `arrow`, which would also compile its compute kernels (arrow-cast, -ord, -arith, -string,
//! -row and regex: about a quarter of the whole build) for one cast in Parquet ingest, which
//! `data::ingest::columns` does instead.

pub mod array {
    pub use arrow_array::cast::AsArray;
    pub use arrow_array::*;
}

pub mod datatypes {
    pub use arrow_array::types::*;
    pub use arrow_schema::*;
}

pub mod error {
    pub use arrow_schema::ArrowError;
}

pub use arrow_ipc as ipc;
