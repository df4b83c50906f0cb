//! The gRPC edge: the worker and operator services. Each handler translates its wire request
//! into a request of the [door](crate::door), hands it to [`Node::handle`](crate::door::Node),
//! and translates the reply back; bounds on wire input are checked while translating. Door
//! errors map to `tonic::Status` in [`status`] only.

mod access;
mod lifecycle;
mod operator;
mod worker;

pub use operator::OperatorApi;
pub use worker::WorkerApi;

use prost::Message;
use riposte_proto::v1 as pb;
use riposte_scheduler::state::RunId;
use tonic::Status;

use crate::convert;
use crate::door;
use crate::engine;

/// Longest name accepted (a worker id, a schedule, an operator).
const NAME_BYTES_MAX: usize = 128;

/// The one map from a refusal to its gRPC status.
pub(crate) fn status(error: door::Error) -> Status {
    match error {
        door::Error::Engine(e) => match e {
            engine::Error::InvalidArgument(m) => Status::invalid_argument(m),
            engine::Error::PlaybookInvalid(diagnostics) => invalid_document(diagnostics),
            engine::Error::NotFound(m) => Status::not_found(m),
            engine::Error::FailedPrecondition(m) => Status::failed_precondition(m),
            engine::Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            engine::Error::PermissionDenied(m) => Status::permission_denied(m),
            engine::Error::Store(e) => {
                tracing::error!(error = %e, "store.error");
                match e.is_transient() {
                    // The disk failed a write (full, most likely): the store is opened again
                    // once it can be; retry.
                    true => Status::unavailable(e.to_string()),
                    false => Status::internal(e.to_string()),
                }
            }
        },
        door::Error::NotDurable(e) => Status::unavailable(e.to_string()),
        door::Error::Backlog(m) => Status::resource_exhausted(m),
        e @ door::Error::Reopening => Status::unavailable(e.to_string()),
        door::Error::Unauthenticated(m) => Status::unauthenticated(m),
    }
}

/// INVALID_ARGUMENT for a document that does not compile: the diagnostics one per line in the
/// message, and structured in the details (`Diagnostics`).
fn invalid_document(diagnostics: Vec<riposte_playbooks::Diagnostic>) -> Status {
    let message = engine::diagnostic_lines(&diagnostics);
    let details = pb::Diagnostics {
        diagnostics: diagnostics.into_iter().map(convert::diagnostic).collect(),
    };
    Status::with_details(
        tonic::Code::InvalidArgument,
        message,
        details.encode_to_vec().into(),
    )
}

fn bounded(what: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{what} is {} bytes, more than the {max} allowed",
            value.len()
        )));
    }
    Ok(())
}

fn parse_run_id(id: &str) -> Result<RunId, Status> {
    id.parse()
        .map_err(|_| Status::invalid_argument(format!("`{id}` is not a run id")))
}

/// `text`, or `default` when it is empty or blank.
fn or_default(text: String, default: &str) -> String {
    if text.trim().is_empty() {
        default.to_string()
    } else {
        text
    }
}

/// `text`, or `default` only when it is empty: `CancelRun` has always kept a blank
/// `requested_by` or `reason` as sent.
fn non_empty(text: String, default: &str) -> String {
    if text.is_empty() {
        default.into()
    } else {
        text
    }
}
