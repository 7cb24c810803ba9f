//! One module per tool (xsv's shape): its flags (`Args`, whose doc comment is its `--help`), its
//! `run(args)` and the unit tests of its logic. Each binary in `bin/` is `main_with(name, run)`.

pub mod eval;
pub mod negsample;
pub mod prep;
pub mod topk;
pub mod train;
