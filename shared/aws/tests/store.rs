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

/// What conditional writes must guarantee when several Lambda containers race.
#[tokio::test]
async fn concurrent_writers_do_not_double_count_or_leave_stale_schedules() {
    use chrono::{Duration, TimeZone, Utc};
    use sluice_core::ports::{PageOutcome, Store};
    use sluice_model::{Job, JobStatus};
    use std::sync::Arc;

    let Some(env) = common::env("concurrent_writers").await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(
        env.harness.dynamodb.clone(),
        &env.harness.settings.table,
    ));
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    store
        .create_job(&Job::new("jc".into(), "fc".into(), "manual", t0))
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
    };
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (store, outcome) = (store.clone(), outcome.clone());
            tokio::spawn(async move { store.record_outcome(&outcome).await })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        // A transaction conflict is an error the caller retries (message redelivered); what
        // must never happen is two applications.
        if let Ok(Some(_)) = t.await.unwrap() {
            applied += 1;
        }
    }
    assert!(applied <= 1, "an outcome applied {applied} times");
    if applied == 0 {
        assert!(store.record_outcome(&outcome).await.unwrap().is_some());
    }
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

    let closers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .close_job("jc", JobStatus::CompletedWithErrors, t0, None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for c in closers {
        won += usize::from(c.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one caller closes the job");

    let setters: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .set_next_run("fs", Some(t0 + Duration::minutes(i)))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for s in setters {
        s.await.unwrap();
    }
    let due = store.due_flows(t0 + Duration::hours(1)).await.unwrap();
    assert_eq!(due.len(), 1, "one schedule entry per flow: {due:?}");
}
