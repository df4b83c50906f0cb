//! The nftables backend of `firewall.*` and `access.*`: one managed table on this host.

/// Where the managed nftables objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Name of the `inet` table Riposte owns (created on first use, never another's).
    pub table: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            table: "riposte".to_owned(),
        }
    }
}
