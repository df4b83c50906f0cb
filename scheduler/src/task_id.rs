//! [`TaskId`]: a task's name on the wire, `run/step/item/attempt` (`run/!undo/n/attempt` for an
//! undo, `run/step/!health/attempt` for a wave's health gate). It is formatted and parsed here
//! and nowhere else; everything between the wire edges carries the typed value.
//!
//! A step is named by its id rather than its index, so that a worker's log line reads without
//! the playbook; step ids never contain `/` nor start with `!`, so the forms cannot collide.

use std::fmt;
use std::str::FromStr;

use riposte_playbooks::Playbook;

use crate::state::{RunId, Slot, UnitRef};

/// Which attempt of which unit of which run a task is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId {
    pub run: RunId,
    pub place: Place,
    pub attempt: u32,
}

/// Where in its run a task belongs, with its step named by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    Item { step: String, item: u32 },
    Undo(u32),
    Health { step: String },
}

/// A task id that is not one of the three forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed task id `{0}`: expected run/step/item/attempt")]
pub struct MalformedTaskId(String);

impl TaskId {
    /// The id of `unit`'s attempt `attempt`; `step_id` names the unit's step.
    pub fn new(unit: UnitRef, step_id: &str, attempt: u32) -> TaskId {
        let step = step_id.to_string();
        let place = match unit.slot {
            Slot::Step { item, .. } => Place::Item { step, item },
            Slot::Undo(n) => Place::Undo(n),
            Slot::Health { .. } => Place::Health { step },
        };
        TaskId {
            run: unit.run,
            place,
            attempt,
        }
    }

    /// The unit it names in a run of `playbook`; `None` when the playbook has no such step.
    pub fn unit(&self, playbook: &Playbook) -> Option<UnitRef> {
        let slot = match &self.place {
            Place::Item { step, item } => Slot::Step {
                step: playbook.step_index(step)?,
                item: *item,
            },
            Place::Undo(n) => Slot::Undo(*n),
            Place::Health { step } => Slot::Health {
                step: playbook.step_index(step)?,
            },
        };
        Some(UnitRef {
            run: self.run,
            slot,
        })
    }

    /// The id without its attempt: stable across attempts, what connectors use to make repeats
    /// harmless.
    pub fn without_attempt(&self) -> String {
        let run = self.run;
        match &self.place {
            Place::Item { step, item } => format!("{run}/{step}/{item}"),
            Place::Undo(n) => format!("{run}/!undo/{n}"),
            Place::Health { step } => format!("{run}/{step}/!health"),
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.without_attempt(), self.attempt)
    }
}

impl FromStr for TaskId {
    type Err = MalformedTaskId;

    fn from_str(id: &str) -> Result<TaskId, MalformedTaskId> {
        let malformed = || MalformedTaskId(id.to_string());
        let parts: Vec<&str> = id.split('/').collect();
        let [run, step, item, attempt] = parts[..] else {
            return Err(malformed());
        };
        let run = run.parse().map_err(|_| malformed())?;
        let attempt = attempt.parse().map_err(|_| malformed())?;
        let number = |s: &str| s.parse::<u32>().map_err(|_| malformed());
        let place = match (step, item) {
            ("!undo", n) => Place::Undo(number(n)?),
            (step, _) if step.is_empty() || step.starts_with('!') => return Err(malformed()),
            (step, "!health") => Place::Health {
                step: step.to_string(),
            },
            (step, item) => Place::Item {
                step: step.to_string(),
                item: number(item)?,
            },
        };
        Ok(TaskId {
            run,
            place,
            attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunId {
        "0190f1c2-3b4a-7c5d-8e6f-0123456789ab".parse().unwrap()
    }

    #[test]
    fn every_form_reads_back_as_written() {
        let ids = [
            TaskId::new(UnitRef::step(run(), 2, 7), "block_ip", 3),
            TaskId::new(
                UnitRef {
                    run: run(),
                    slot: Slot::Undo(4),
                },
                "ignored",
                1,
            ),
            TaskId::new(
                UnitRef {
                    run: run(),
                    slot: Slot::Health { step: 1 },
                },
                "patch-wave",
                2,
            ),
        ];
        let written: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        assert_eq!(
            written,
            [
                format!("{}/block_ip/7/3", run()),
                format!("{}/!undo/4/1", run()),
                format!("{}/patch-wave/!health/2", run()),
            ]
        );
        for (id, text) in ids.iter().zip(&written) {
            assert_eq!(&text.parse::<TaskId>().unwrap(), id);
        }
        assert_eq!(ids[0].without_attempt(), format!("{}/block_ip/7", run()));
    }

    #[test]
    fn anything_else_is_malformed_with_the_id_quoted() {
        for bad in [
            "",
            "not-a-run/step/0/1",
            &format!("{}/step/0", run()),
            &format!("{}/step/0/1/extra", run()),
            &format!("{}/step/x/1", run()),
            &format!("{}/step/0/-1", run()),
            &format!("{}/!undo/x/1", run()),
            &format!("{}/!other/0/1", run()),
            &format!("{}//0/1", run()),
        ] {
            let error = bad.parse::<TaskId>().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("malformed task id `{bad}`: expected run/step/item/attempt")
            );
        }
    }
}
