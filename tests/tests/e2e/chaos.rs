//! The fault suite at CI's scale: under each fault, no acknowledged run is lost, none records a
//! result twice, none is left running (`riposte-chaos` prints the same at full scale).

use riposte_tests::chaos::{self, Outcome, Scale};

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
