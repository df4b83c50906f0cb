//! The built-in playbooks (`playbooks/builtin/`), compiled into the binary and applied at every
//! start unless `--no-builtin-playbooks`: each only when the store has neither its version nor
//! a newer one, so what an operator applied is never overwritten or downgraded.

use std::sync::Arc;

use crate::Error;
use crate::door::{Caller, Node, playbooks::ApplyBuiltin};
use crate::engine::Builtin;

/// The built-in playbooks: file name and source.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "ip-block.yaml",
        include_str!("../../playbooks/builtin/ip-block.yaml"),
    ),
    (
        "account-disable.yaml",
        include_str!("../../playbooks/builtin/account-disable.yaml"),
    ),
    (
        "jit-access-grant.yaml",
        include_str!("../../playbooks/builtin/jit-access-grant.yaml"),
    ),
    (
        "patch-deployment.yaml",
        include_str!("../../playbooks/builtin/patch-deployment.yaml"),
    ),
];

/// Whether `name` is a built-in playbook's (its file is `NAME.yaml`).
pub fn is_builtin(name: &str) -> bool {
    BUILTIN
        .iter()
        .any(|(file, _)| file.strip_suffix(".yaml") == Some(name))
}

/// The version of the built-in playbook `name`, when it is one.
pub fn builtin_version(name: &str) -> Option<u32> {
    let (_, source) = BUILTIN
        .iter()
        .find(|(file, _)| file.strip_suffix(".yaml") == Some(name))?;
    riposte_playbooks::compile(source).ok().map(|p| p.version)
}

/// Applies each built-in playbook the store lacks; logs what it kept.
pub(crate) async fn apply(node: &Arc<Node>) -> Result<(), Error> {
    for (origin, source) in BUILTIN {
        match node
            .handle(Caller::Internal, ApplyBuiltin { source })
            .await?
        {
            Builtin::Applied { name, version } => {
                tracing::info!(playbook = %name, version, origin, "playbook.builtin_applied");
            }
            Builtin::Kept {
                name,
                version,
                stored,
            } => {
                tracing::info!(playbook = %name, version, stored, origin, "playbook.builtin_kept");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_compiles_and_is_named_after_its_file() {
        for (file, source) in BUILTIN {
            let playbook = riposte_playbooks::compile(source)
                .unwrap_or_else(|d| panic!("{file}: {:?}", d.first()));
            assert_eq!(format!("{}.yaml", playbook.name), *file);
        }
    }

    #[test]
    fn every_builtin_meets_the_default_platform_rules() {
        let rules = riposte_playbooks::platform::default_requirements();
        for (file, source) in BUILTIN {
            let playbook = riposte_playbooks::compile(source).expect("compiles");
            assert!(is_builtin(&playbook.name));
            let scheduled = riposte_playbooks::platform::unmet(&playbook, &rules, true);
            assert_eq!(scheduled, vec![], "{file}");
            // Patching outside a schedule needs an approval: a person starts it through a
            // schedule (`riposte schedules trigger`).
            let by_hand = riposte_playbooks::platform::unmet(&playbook, &rules, false);
            assert_eq!(
                by_hand.is_empty(),
                playbook.name != "patch-deployment",
                "{file}"
            );
        }
    }
}
