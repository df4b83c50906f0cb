//! The step graph: cycles, a stable topological order, and what each step transitively needs.
//!
//! Steps are numbered by declaration; `needs[i]` lists the steps step `i` waits for.

use std::collections::{BTreeSet, HashMap};

/// A dependency cycle, as declaration indices: each step needs the next, the last needs the
/// first.
pub(crate) type Cycle = Vec<usize>;

/// A topological order preferring declaration order (Kahn's algorithm taking the earliest
/// declared ready step); `Err` with the cycles when there is none.
pub(crate) fn order(needs: &[Vec<usize>]) -> Result<Vec<usize>, Vec<Cycle>> {
    let count = needs.len();
    let mut waiting: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut needed_by: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (step, step_needs) in needs.iter().enumerate() {
        for &need in step_needs {
            needed_by[need].push(step);
        }
    }
    let mut ready: BTreeSet<usize> = (0..count).filter(|&s| waiting[s] == 0).collect();
    let mut order = Vec::with_capacity(count);
    while let Some(step) = ready.pop_first() {
        order.push(step);
        for &next in &needed_by[step] {
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.insert(next);
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }
    let stuck: BTreeSet<usize> = (0..count).filter(|&s| waiting[s] > 0).collect();
    Err(cycles(needs, &stuck))
}

/// Finds cycles among the steps Kahn's algorithm could not order: each of those needs at least
/// one other of them, so following such needs always comes back to a step already walked.
fn cycles(needs: &[Vec<usize>], stuck: &BTreeSet<usize>) -> Vec<Cycle> {
    let mut walked = vec![false; needs.len()];
    let mut found = Vec::new();
    for &start in stuck {
        let mut path: Vec<usize> = Vec::new();
        let mut at = Some(start);
        while let Some(step) = at.filter(|&s| !walked[s]) {
            walked[step] = true;
            path.push(step);
            at = needs[step].iter().copied().find(|n| stuck.contains(n));
        }
        let begin = at.and_then(|step| path.iter().position(|&s| s == step));
        if let Some(begin) = begin {
            found.push(rotate_to_first_declared(path[begin..].to_vec()));
        }
    }
    found
}

/// Starts the cycle at its earliest declared step, for a stable name.
fn rotate_to_first_declared(mut cycle: Cycle) -> Cycle {
    if let Some(first) = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, s)| **s)
        .map(|(i, _)| i)
    {
        cycle.rotate_left(first);
    }
    cycle
}

/// For each step, every step it needs directly or through other needs.
pub(crate) fn ancestors(needs: &[Vec<usize>]) -> Vec<BTreeSet<usize>> {
    (0..needs.len())
        .map(|step| {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<usize> = needs[step].clone();
            while let Some(need) = stack.pop() {
                if seen.insert(need) {
                    stack.extend(&needs[need]);
                }
            }
            seen.remove(&step);
            seen
        })
        .collect()
}

/// Layer of each step, for needs that point at earlier steps only (steps in a topological
/// order): 0 without needs, else one more than its deepest need.
pub(crate) fn layers(needs: &[Vec<usize>]) -> Vec<usize> {
    let mut layer = vec![0; needs.len()];
    for step in 0..needs.len() {
        layer[step] = needs[step].iter().map(|&n| layer[n] + 1).max().unwrap_or(0);
    }
    layer
}

/// Maps step ids to declaration indices (the first declaration wins).
pub(crate) fn index_ids<'a>(ids: impl Iterator<Item = Option<&'a str>>) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (index, id) in ids.enumerate() {
        if let Some(id) = id {
            map.entry(id.to_string()).or_insert(index);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keeps_declaration_order_when_possible() {
        let needs = vec![vec![], vec![0], vec![0], vec![1, 2]];
        assert_eq!(order(&needs), Ok(vec![0, 1, 2, 3]));
        let needs = vec![vec![2], vec![], vec![1]];
        assert_eq!(order(&needs), Ok(vec![1, 2, 0]));
    }

    #[test]
    fn cycles_are_named_from_their_first_declared_step() {
        let needs = vec![vec![], vec![2], vec![3], vec![1], vec![3]];
        assert_eq!(order(&needs), Err(vec![vec![1, 2, 3]]));
        let needs = vec![vec![1], vec![0], vec![3], vec![2]];
        assert_eq!(order(&needs), Err(vec![vec![0, 1], vec![2, 3]]));
    }

    #[test]
    fn ancestors_are_transitive() {
        let needs = vec![vec![], vec![0], vec![1], vec![]];
        let expected: Vec<BTreeSet<usize>> = vec![[].into(), [0].into(), [0, 1].into(), [].into()];
        assert_eq!(ancestors(&needs), expected);
    }

    #[test]
    fn layers_follow_the_longest_chain() {
        let needs = vec![vec![], vec![0], vec![0], vec![1, 2], vec![0, 3]];
        assert_eq!(layers(&needs), vec![0, 1, 1, 2, 3]);
    }
}
