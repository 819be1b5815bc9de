mod common;

use sluice_aws::DynamoStore;
use sluice_core::ports::contract::store_contract;

#[tokio::test]
async fn dynamo_store_passes_the_store_contract() {
    let Some(env) = common::env("dynamo_store_passes_the_store_contract").await else {
        return;
    };
    let store = DynamoStore::new(env.harness.dynamodb.clone(), &env.harness.settings.table);
    store_contract(&store).await;
}

/// Redelivered writes (the same message handled again by another container) apply once.
///
/// Sequential on purpose: moto is not safe for racing transactions (a cancelled
/// TransactWriteItems restores a snapshot of all tables, which can erase a concurrent winner's
/// writes), so true races would test moto, not this adapter. On DynamoDB the same conditions
/// hold under concurrency because each transaction is atomic.
#[tokio::test]
async fn redelivered_writes_apply_once() {
    use chrono::{Duration, TimeZone, Utc};
    use sluice_core::ports::{PageOutcome, Store};
    use sluice_model::{Job, JobStatus};

    let Some(env) = common::env("redelivered_writes_apply_once").await else {
        return;
    };
    let store = DynamoStore::new(env.harness.dynamodb.clone(), &env.harness.settings.table);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    store
        .create_job(&Job::new(
            "jc".into(),
            "fc".into(),
            sluice_model::RunKind::Manual,
            t0,
        ))
        .await
        .unwrap();
    store.finish_paging("jc", 1).await.unwrap();
    let outcome = PageOutcome {
        job_id: "jc".into(),
        page_id: "g0-p000000".into(),
        processor_index: 0,
        num_success: 7,
        num_error: 2,
        num_ignore: 1,
        page_done: true,
        branch_pages: 0,
    };
    let mut applied = 0;
    for _ in 0..4 {
        applied += usize::from(store.record_outcome(&outcome).await.unwrap().is_some());
    }
    assert_eq!(applied, 1, "an outcome applies once");
    let job = store.get_job("jc").await.unwrap().unwrap();
    assert_eq!(
        (
            job.num_success,
            job.num_error,
            job.num_ignore,
            job.num_pages_done
        ),
        (7, 2, 1, 1)
    );
    assert!(job.all_pages_done());

    let mut won = 0;
    for _ in 0..4 {
        won += usize::from(
            store
                .close_job("jc", JobStatus::CompletedWithErrors, t0, Some("m".into()))
                .await
                .unwrap(),
        );
    }
    assert_eq!(won, 1, "exactly one caller closes the job");
    let job = store.get_job("jc").await.unwrap().unwrap();
    assert_eq!(job.message.as_deref(), Some("m"));

    for i in 0..6 {
        store
            .set_next_run("fs", Some(t0 + Duration::minutes(i)))
            .await
            .unwrap();
    }
    let due = store.due_flows(t0 + Duration::hours(1)).await.unwrap();
    assert_eq!(
        due,
        vec![("fs".to_string(), t0 + Duration::minutes(5))],
        "one schedule entry per flow, the latest"
    );
    assert!(
        store
            .due_flows(t0 + Duration::minutes(4))
            .await
            .unwrap()
            .is_empty(),
        "old entries are gone"
    );
}
