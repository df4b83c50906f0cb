//! The embedded default (`--dev`): example playbooks applied at start. The in-process workers
//! are started by the binary, which knows the bound address.

use std::sync::Arc;

use crate::door::Node;
use crate::{Error, apply_one};

/// The example playbooks shipped in `playbooks/examples/`.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "hello.yaml",
        include_str!("../../playbooks/examples/hello.yaml"),
    ),
    (
        "diamond.yaml",
        include_str!("../../playbooks/examples/diamond.yaml"),
    ),
    (
        "noop-chain.yaml",
        include_str!("../../playbooks/examples/noop-chain.yaml"),
    ),
    (
        "retry.yaml",
        include_str!("../../playbooks/examples/retry.yaml"),
    ),
];

pub(crate) async fn apply_examples(shared: &Arc<Node>) -> Result<(), Error> {
    for (name, source) in EXAMPLES {
        apply_one(shared, name, source).await?;
    }
    Ok(())
}
