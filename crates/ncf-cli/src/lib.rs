//! The library of the five ncf tools: the command-line flag groups they share ([`args`]) and
//! the choice of backend behind `--device` ([`backend`]). Each tool's `main` in `bin/` parses
//! its flags and calls into `ncf-core` through these; `ncf-tool` runs it and maps errors to
//! exit codes; `ncf-train`'s flags and run are [`train`].

pub mod args;
pub mod backend;
pub mod prep;
pub mod train;
