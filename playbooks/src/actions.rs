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
        name: "core.delay",
        description: "waits for `duration`, then succeeds",
        inputs: &[input("duration", true, "how long to wait, e.g. \"2s\"")],
        open_inputs: false,
    },
    ActionSpec {
        name: "core.echo",
        description: "succeeds with its input as output",
        inputs: &[],
        open_inputs: true,
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
    },
    ActionSpec {
        name: "core.noop",
        description: "does nothing and succeeds",
        inputs: &[],
        open_inputs: false,
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
