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

#[tokio::test]
async fn secrets_manager_passes_the_secret_store_contract() {
    let Some(env) = common::env("secrets_manager_passes_the_secret_store_contract").await else {
        return;
    };
    let config = sluice_aws::config::sdk_config(Some(&env.moto.endpoint_url())).await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let store = sluice_aws::SecretsManagerStore::new(client, "stack/");
    sluice_core::ports::contract::secret_store_contract(&store).await;
}

/// Redelivered writes (the same message handled again by other containers, at the same
/// time) apply once. (The tests' moto keeps DynamoDB's atomicity, see the test below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
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
    let applied = futures::future::join_all((0..4).map(|_| store.record_outcome(&outcome)))
        .await
        .into_iter()
        .filter(|applied| applied.as_ref().unwrap().is_some())
        .count();
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

    let won = futures::future::join_all(
        (0..4).map(|_| store.close_job("jc", JobStatus::CompletedWithErrors, t0, Some("m".into()))),
    )
    .await
    .into_iter()
    .filter(|won| *won.as_ref().unwrap())
    .count();
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

/// The moto the tests run keeps DynamoDB's atomicity: of conditional puts racing for one key,
/// exactly one wins, and a cancelled transaction does not erase a concurrent winner's write.
/// (moto alone checks a condition and writes in two steps, and restores a snapshot of every
/// table when a transaction is cancelled; slot leases, ledger claims and job counters rely on
/// DynamoDB doing neither, so the tests' moto serialises writes: `sluice_testkit::moto`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conditional_writes_have_one_winner_as_on_dynamodb() {
    use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
    let Some(env) = common::env("racing_conditional_writes_have_one_winner_as_on_dynamodb").await
    else {
        return;
    };
    let (db, table) = (&env.harness.dynamodb, env.harness.settings.table.clone());
    let item = |pk: String, sk: &str| {
        std::collections::HashMap::from([
            ("pk".to_string(), AttributeValue::S(pk)),
            ("sk".to_string(), AttributeValue::S(sk.to_string())),
        ])
    };
    // A table of some size, as in a run: moto's snapshot of it takes a while to copy.
    let batches = (0..60).map(|b| {
        let writes = (0..25).map(|i| {
            let put = aws_sdk_dynamodb::types::PutRequest::builder()
                .set_item(Some(item(format!("filler#{b}"), &format!("{i:03}"))))
                .build()
                .unwrap();
            aws_sdk_dynamodb::types::WriteRequest::builder()
                .put_request(put)
                .build()
        });
        db.batch_write_item()
            .request_items(&table, writes.collect())
            .send()
    });
    for done in futures::future::join_all(batches).await {
        done.unwrap();
    }
    for round in 0..12 {
        let pk = format!("race#{round}");
        // Eight puts of one key racing, and, beside them, cancelled transactions (their
        // condition fails on an item put first) racing with plain puts of other keys.
        db.put_item()
            .table_name(&table)
            .set_item(Some(item(pk.clone(), "present")))
            .send()
            .await
            .unwrap();
        let puts = (0..8).map(|_| {
            db.put_item()
                .table_name(&table)
                .set_item(Some(item(pk.clone(), "one")))
                .condition_expression("attribute_not_exists(pk)")
                .send()
        });
        let cancelled = (0..4).map(|_| {
            let put = Put::builder()
                .table_name(&table)
                .set_item(Some(item(pk.clone(), "present")))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .unwrap();
            db.transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .send()
        });
        let others = (0..8).map(|i| {
            db.put_item()
                .table_name(&table)
                .set_item(Some(item(pk.clone(), &format!("other-{i}"))))
                .send()
        });
        let (puts, cancelled, others) = tokio::join!(
            futures::future::join_all(puts),
            futures::future::join_all(cancelled),
            futures::future::join_all(others)
        );
        let won = puts.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            won, 1,
            "round {round}: {won} of 8 racing conditional puts won"
        );
        assert!(cancelled.iter().all(|r| r.is_err()), "round {round}");
        assert!(others.iter().all(|r| r.is_ok()), "round {round}");
        let kept = db
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .count();
        assert_eq!(
            kept, 10,
            "round {round}: a cancelled transaction erased writes"
        );
    }
}
