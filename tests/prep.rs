//! Integration tests (prep): being written.
