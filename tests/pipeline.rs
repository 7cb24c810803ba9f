//! Integration tests (pipeline): being written.
