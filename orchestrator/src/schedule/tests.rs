//! Schedule tests.
