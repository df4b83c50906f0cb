//! The action catalog: every action a step may name, with its inputs. Pure data.
//!
//! Validation checks a step's `action` and the keys of its `with` against this catalog; the
//! worker implements the same names.

/// One action a step may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    /// Dotted name, e.g. `core.echo`.
    pub name: &'static str,
    /// What it does, in one line.
    pub description: &'static str,
    /// The inputs the action knows.
    pub inputs: &'static [InputSpec],
    /// Accepts any input key, not only those in `inputs`.
    pub open_inputs: bool,
    /// Contains a threat by changing the world (block, disable): held while containment is
    /// paused, and counted by containment budgets.
    pub containment: bool,
    /// The input the platform-wide guard checks before the action may run, if any.
    pub guard: Option<Guard>,
}

/// What the platform-wide guard checks in an action's rendered input. No playbook can skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// This input is an IP address or CIDR that must not touch a protected range and must not
    /// be wider than the configured maximum prefix.
    Ip(&'static str),
    /// This input is an account that must not be a protected account.
    Account(&'static str),
}

/// One input of an action (a key of the step's `with`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    /// The key in `with`.
    pub name: &'static str,
    /// Validation refuses a step that does not give it.
    pub required: bool,
    /// What it means, in one line.
    pub description: &'static str,
}

const fn input(name: &'static str, required: bool, description: &'static str) -> InputSpec {
    InputSpec {
        name,
        required,
        description,
    }
}

/// Every action the language knows, sorted by name.
pub const CATALOG: &[ActionSpec] = &[
    ActionSpec {
        name: "access.grant_jit",
        description: "opens `port` to `source_ip` for `ttl`; the backend closes it by itself at the end",
        inputs: &[
            input("source_ip", true, "the one address allowed in"),
            input("port", true, "TCP or UDP port, 1 to 65535"),
            input("protocol", false, "tcp (default) or udp"),
            input("ttl", true, "how long access lasts, e.g. \"1h\""),
            input("vm", false, "ARM id of the virtual machine (azure backend)"),
            input("justification", false, "why, recorded with the provider"),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "access.revoke_jit",
        description: "closes a just-in-time grant before its end",
        inputs: &[
            input("source_ip", true, "the address that was allowed in"),
            input("port", true, "the port that was opened"),
            input("protocol", false, "tcp (default) or udp"),
            input("vm", false, "ARM id of the virtual machine (azure backend)"),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "core.delay",
        description: "waits for `duration`, then succeeds",
        inputs: &[input("duration", true, "how long to wait, e.g. \"2s\"")],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "core.echo",
        description: "succeeds with its input as output",
        inputs: &[],
        open_inputs: true,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "core.fail",
        description: "fails with `message`; with `attempts_failing`, only the first N attempts fail",
        inputs: &[
            input("message", true, "the error message"),
            input(
                "attempts_failing",
                false,
                "fail only the first N attempts, then succeed",
            ),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "core.noop",
        description: "does nothing and succeeds",
        inputs: &[],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "defender.list_alerts",
        description: "lists the Microsoft Graph security alerts (Defender XDR, Defender for Cloud) modified within a window, one page; outputs items and next_link",
        inputs: &[
            input(
                "modified_from",
                true,
                "start of the window (RFC 3339): changes at or after it",
            ),
            input(
                "modified_to",
                true,
                "end of the window (RFC 3339): changes at or before it",
            ),
            input("page_size", false, "items per page, 1 to 100 (default 50)"),
            input(
                "next_link",
                false,
                "the previous page's next_link, to fetch the next page",
            ),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "firewall.block_ip",
        description: "ensures `ip` (an address or CIDR) is blocked for `ttl`",
        inputs: &[
            input("ip", true, "IPv4 or IPv6 address, or a CIDR"),
            input("ttl", true, "how long the block lasts, e.g. \"24h\""),
            input("reason", false, "recorded with the block"),
        ],
        open_inputs: false,
        containment: true,
        guard: Some(Guard::Ip("ip")),
    },
    ActionSpec {
        name: "firewall.list_blocked",
        description: "lists the addresses the managed block set or rule holds",
        inputs: &[],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "firewall.unblock_ip",
        description: "ensures `ip` is no longer blocked",
        inputs: &[input("ip", true, "IPv4 or IPv6 address, or a CIDR")],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "http.request",
        description: "sends one HTTP request and returns status, headers and body",
        inputs: &[
            input("url", true, "absolute http or https URL"),
            input("method", false, "HTTP method, GET by default"),
            input("headers", false, "mapping of header name to value"),
            input(
                "json",
                false,
                "a JSON body, sent with content-type application/json",
            ),
            input("body", false, "a text body"),
            input("timeout", false, "request timeout, e.g. \"10s\""),
            input("response_bytes_max", false, "largest response body kept"),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "identity.disable_account",
        description: "ensures `account` cannot sign in; the output records its previous state",
        inputs: &[
            input(
                "account",
                true,
                "login name (linux) or user id / UPN (graph)",
            ),
            input("reason", false, "recorded with the change"),
        ],
        open_inputs: false,
        containment: true,
        guard: Some(Guard::Account("account")),
    },
    ActionSpec {
        name: "identity.enable_account",
        description: "ensures `account` can sign in again, restoring `previous` when given",
        inputs: &[
            input(
                "account",
                true,
                "login name (linux) or user id / UPN (graph)",
            ),
            input(
                "previous",
                false,
                "the `previous` output of the disable, restored exactly",
            ),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "identity.revoke_sessions",
        description: "ends the sessions of `account`",
        inputs: &[input(
            "account",
            true,
            "login name (linux) or user id / UPN (graph)",
        )],
        open_inputs: false,
        containment: true,
        guard: Some(Guard::Account("account")),
    },
    ActionSpec {
        name: "notify.webhook",
        description: "posts a message to an incoming webhook (teams, slack or plain json)",
        inputs: &[
            input(
                "url",
                true,
                "the webhook URL; its host must be in --http-allow-hosts",
            ),
            input("text", true, "the message"),
            input("title", false, "a heading"),
            input("format", false, "teams, slack or json (default)"),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "patch.assess",
        description: "lists pending updates (security-only or all) and whether a reboot is pending",
        inputs: &[
            input("scope", false, "security (default) or all"),
            input("vm", false, "ARM id of the virtual machine (azure backend)"),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "patch.install",
        description: "installs pending updates non-interactively and reports what changed",
        inputs: &[
            input("scope", false, "security (default) or all"),
            input(
                "packages",
                false,
                "only these package names (a list); default every pending update in scope",
            ),
            input("reboot", false, "never (default), if_required or always"),
            input(
                "max_duration",
                false,
                "longest the installation may take, e.g. \"2h\"",
            ),
            input("vm", false, "ARM id of the virtual machine (azure backend)"),
            input(
                "classifications",
                false,
                "Azure update classifications instead of the scope's (azure backend), e.g. [Critical, Security, Definition]",
            ),
            input(
                "kb_include",
                false,
                "KB numbers to install whatever their classification (Windows VMs; ignored on Linux VMs)",
            ),
            input(
                "kb_exclude",
                false,
                "KB numbers never to install (Windows VMs; ignored on Linux VMs)",
            ),
            input(
                "exclude_kbs_requiring_reboot",
                false,
                "true: leave out updates that may reboot (Windows VMs; ignored on Linux VMs)",
            ),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "patch.verify",
        description: "fails unless no update in scope is pending and the named packages are at least at their versions",
        inputs: &[
            input("scope", false, "security (default) or all"),
            input(
                "packages",
                false,
                "mapping of package name to the least version required",
            ),
            input("vm", false, "ARM id of the virtual machine (azure backend)"),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "sentinel.comment",
        description: "adds a comment to a Microsoft Sentinel incident (the same comment again when the task is retried)",
        inputs: &[
            input(
                "incident",
                true,
                "ARM id of the incident (`alert.id` of a Sentinel alert)",
            ),
            input("message", true, "the comment, at most 30000 characters"),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "sentinel.list_incidents",
        description: "lists a workspace's Microsoft Sentinel incidents modified within a window, oldest change first, each with its entities, one page; outputs items and next_link",
        inputs: &[
            input("workspace", true, "ARM id of the Log Analytics workspace"),
            input(
                "modified_from",
                true,
                "start of the window (RFC 3339): changes at or after it",
            ),
            input(
                "modified_to",
                true,
                "end of the window (RFC 3339): changes at or before it",
            ),
            input("page_size", false, "items per page, 1 to 100 (default 50)"),
            input(
                "next_link",
                false,
                "the previous page's next_link, to fetch the next page",
            ),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
    ActionSpec {
        name: "sentinel.update_incident",
        description: "changes a Microsoft Sentinel incident (read, change, write back with its etag; a stale etag reads again); outputs labels_added for an undo",
        inputs: &[
            input("incident", true, "ARM id of the incident"),
            input(
                "status",
                false,
                "New, Active or Closed (Closed needs a classification)",
            ),
            input("severity", false, "High, Medium, Low or Informational"),
            input(
                "classification",
                false,
                "Undetermined, TruePositive, BenignPositive or FalsePositive",
            ),
            input(
                "classification_reason",
                false,
                "SuspiciousActivity, SuspiciousButExpected, IncorrectAlertLogic or InaccurateData",
            ),
            input("classification_comment", false, "why, in a few words"),
            input(
                "owner",
                false,
                "the new owner: a user principal name or an object id",
            ),
            input("labels_add", false, "labels to add (a list)"),
            input("labels_remove", false, "labels to remove (a list)"),
        ],
        open_inputs: false,
        containment: false,
        guard: None,
    },
];

/// The catalog entry named `name`.
pub fn find(name: &str) -> Option<&'static ActionSpec> {
    CATALOG.iter().find(|action| action.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_and_unique() {
        let names: Vec<_> = CATALOG.iter().map(|a| a.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn find_knows_every_entry() {
        for action in CATALOG {
            assert_eq!(find(action.name), Some(action));
        }
        assert_eq!(find("core.nope"), None);
    }
}
