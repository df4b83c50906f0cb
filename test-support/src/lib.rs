//! Local servers that answer the way third parties document their APIs, shared by the
//! worker's connector tests and the end-to-end tests. Only external IO is faked here: never
//! code of our own.

pub mod azure;
pub mod host;
