//! Operator authentication.

pub mod oidc;
