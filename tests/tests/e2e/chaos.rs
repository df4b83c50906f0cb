//! The fault suite at CI's scale: under each fault, no acknowledged run is lost, none records a
//! result twice, none is left running, and a run damaged on purpose is named by `store check`
//! (`riposte-chaos` prints the same at full scale). The full disk mounts a tmpfs: a host test.

use riposte_tests::chaos::{self, Outcome, Scale};
use riposte_tests::host;

fn assert_clean(outcome: Outcome) {
    assert!(outcome.clean(), "{}\n{}", Outcome::header(), outcome.row());
    assert_eq!(outcome.acknowledged, Scale::SMALL.runs);
}

#[tokio::test]
async fn orchestrator_kills_lose_duplicate_and_strand_nothing() {
    assert_clean(chaos::coordinator_kills(Scale::SMALL).await);
}

#[tokio::test]
async fn worker_kills_lose_duplicate_and_strand_nothing() {
    assert_clean(chaos::worker_kills(Scale::SMALL).await);
}

#[tokio::test]
async fn a_frozen_worker_loses_duplicates_and_strands_nothing() {
    assert_clean(chaos::frozen_worker(Scale::SMALL).await);
}

#[tokio::test]
async fn a_disk_that_fills_mid_run_then_frees_loses_duplicates_and_strands_nothing() {
    if !host::enabled() {
        return;
    }
    assert_clean(chaos::disk_full(Scale::SMALL).await);
}

#[tokio::test]
async fn damaged_records_are_named_and_no_other_run_is_lost() {
    let outcome = chaos::damaged_records(Scale::SMALL).await;
    assert_eq!(
        outcome.damaged,
        3,
        "{}\n{}",
        Outcome::header(),
        outcome.row()
    );
    assert_clean(outcome);
}

#[tokio::test]
async fn a_second_orchestrator_on_a_data_dir_in_use_is_refused_and_changes_nothing() {
    assert_clean(chaos::locked_data_dir(Scale::SMALL).await);
}
