//! Azure plumbing shared by the Azure backends: credentials, token cache, ARM and Graph calls.

pub(crate) mod compute;
pub(crate) mod graph;
pub(crate) mod jit;
pub(crate) mod network;

use super::http;

/// Where Azure is and how to authenticate. Credentials never leave the worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {}

/// The Azure client of one worker.
#[derive(Debug)]
pub(crate) struct Client {}

impl Client {
    /// Builds the client from the worker's settings.
    pub(crate) fn new(settings: &Settings, http: &http::Connector) -> Result<Client, crate::Error> {
        let _ = (settings, http);
        Ok(Client {})
    }
}
