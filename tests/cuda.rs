//! Integration tests (cuda): being written.
