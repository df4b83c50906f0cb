//! Tests of the Azure backends against the local Azure server of the end-to-end harness.
