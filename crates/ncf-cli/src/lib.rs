//! The library of the ncf command-line tools: one module per tool ([`cmd`]: its flags, its run,
//! its unit tests), the flag groups several tools share ([`args`]) and the choice of backend
//! behind `--device` ([`backend`]). Each binary in `bin/` is `ncf_tool::main_with(name, run)`:
//! `ncf-tool` parses, runs and maps errors to exit codes.

pub mod args;
pub mod backend;
pub mod cmd;
