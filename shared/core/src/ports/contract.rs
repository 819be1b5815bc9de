//! Behaviour every [`Store`] adapter must show. The embedded adapter's tests and the AWS
//! adapter's tests (against moto) both call [`store_contract`], so the two cannot drift;
//! likewise [`secret_store_contract`] for the [`SecretStore`] adapters.

use super::secrets::SecretStore;
use super::store::{
    AuditEntry, ErrorQuery, JobQuery, Kind, LedgerState, LockHolder, PageOutcome, Settled, Store,
};
use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use serde_json::json;
use sluice_model::{Job, JobError, JobStatus, QueuedRun, RunKind, RunRequest, RunSource};
use std::time::Duration;

/// Runs every check; panics with a message naming the broken rule.
pub async fn store_contract(store: &dyn Store) {
    definitions(store).await;
    jobs_and_outcomes(store).await;
    job_listing(store).await;
    errors(store).await;
    error_listing(store).await;
    ledger(store).await;
    ledger_chunks(store).await;
    locks(store).await;
    queued_runs(store).await;
    slots(store).await;
    schedules(store).await;
    retry_times(store).await;
    state(store).await;
    purges(store).await;
    pickup_memory(store).await;
}

/// A [`SecretStore`]: nothing read before a write; a write read back; a second write
/// replaces the first (a refresh token rotated twice); names are apart.
pub async fn secret_store_contract(store: &dyn SecretStore) {
    assert_eq!(store.read("RT").await.unwrap(), None, "nothing written yet");
    store.write("RT", "refresh-1").await.unwrap();
    assert_eq!(
        store.read("RT").await.unwrap().as_deref(),
        Some("refresh-1")
    );
    store.write("RT", "refresh-2").await.unwrap();
    assert_eq!(
        store.read("RT").await.unwrap().as_deref(),
        Some("refresh-2"),
        "a second write replaces the first"
    );
    assert_eq!(store.read("OTHER").await.unwrap(), None, "names are apart");
}

/// `purge_jobs` deletes the jobs named with their errors, outcomes and ledger entries, and
/// leaves every other job's; a second purge finds nothing.
async fn purges(store: &dyn Store) {
    use crate::Stage;
    let t0 = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
    for (id, at) in [("jp-old", t0), ("jp-new", t0 + ChronoDuration::days(40))] {
        store.create_job(&job(id, "fp", at)).await.unwrap();
        store
            .put_errors(&[
                an_error(&format!("{id}-e1"), id),
                an_error(&format!("{id}-e2"), id),
            ])
            .await
            .unwrap();
        let outcome = PageOutcome {
            job_id: id.into(),
            page_id: "p0".into(),
            processor_index: 0,
            num_success: 1,
            num_error: 2,
            num_ignore: 0,
            page_done: true,
            branch_pages: 0,
        };
        store.record_outcome(&outcome).await.unwrap();
        for stage in [Stage::Deliver, Stage::Upload] {
            let key = super::store::ledger_key(stage, &format!("{id}:p0:0:r0"));
            store.ledger_claim(id, &key, at).await.unwrap();
            store
                .ledger_complete(&key, &json!({"status": 200}))
                .await
                .unwrap();
        }
        // Failed: the embedded store's own pruning (at the flow's next job) leaves the ledger
        // of failed jobs, which only a purge removes.
        store
            .close_job(id, JobStatus::Failed, at, None)
            .await
            .unwrap();
    }
    let purged = store
        .purge_jobs(&["jp-old".into(), "jp-none".into()])
        .await
        .unwrap();
    assert_eq!(
        purged,
        super::store::Purged {
            jobs: 1,
            errors: 2,
            ledger_entries: 2
        },
        "the job, its two errors and its ledger entry per stage; an unknown id is skipped"
    );
    assert_eq!(store.get_job("jp-old").await.unwrap(), None);
    assert!(store.list_errors("jp-old").await.unwrap().is_empty());
    let listed = store.list_jobs("fp", 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["jp-new"]
    );
    let all = store
        .find_jobs(&JobQuery {
            flow_id: Some("fp".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1, "gone from the listing of all jobs too");
    assert_eq!(
        store.purge_jobs(&["jp-old".into()]).await.unwrap(),
        super::store::Purged::default(),
        "nothing left to purge"
    );
    let old_key = super::store::ledger_key(Stage::Deliver, "jp-old:p0:0:r0");
    assert_eq!(
        store.ledger_claim("jp-new", &old_key, t0).await.unwrap(),
        LedgerState::Claimed,
        "the purged job's ledger entry is gone"
    );
    let new_key = super::store::ledger_key(Stage::Deliver, "jp-new:p0:0:r0");
    assert_eq!(
        store.ledger_claim("jp-new", &new_key, t0).await.unwrap(),
        LedgerState::Done(json!({"status": 200})),
        "the other job keeps its ledger"
    );
    assert_eq!(store.list_errors("jp-new").await.unwrap().len(), 2);
}

async fn definitions(store: &dyn Store) {
    let doc = json!({"_id": "f1", "name": "one"});
    store.put_definition(Kind::Flow, "f1", &doc).await.unwrap();
    store
        .put_definition(Kind::Flow, "f0", &json!({"_id": "f0"}))
        .await
        .unwrap();
    store
        .put_definition(Kind::Export, "f1", &json!({"_id": "f1", "kind": "export"}))
        .await
        .unwrap();
    assert_eq!(
        store.get_definition(Kind::Flow, "f1").await.unwrap(),
        Some(doc),
        "get returns what put stored"
    );
    let all = store.list_definitions(Kind::Flow).await.unwrap();
    let ids: Vec<_> = all
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["f0", "f1"], "list is per kind and ordered by id");
    assert!(store.delete_definition(Kind::Flow, "f1").await.unwrap());
    assert!(
        !store.delete_definition(Kind::Flow, "f1").await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(store.get_definition(Kind::Flow, "f1").await.unwrap(), None);
    assert!(
        store
            .get_definition(Kind::Export, "f1")
            .await
            .unwrap()
            .is_some(),
        "kinds are separate"
    );

    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for (i, action) in ["create", "update"].iter().enumerate() {
        store
            .append_audit(&AuditEntry {
                id: format!("a{i}"),
                resource_type: Kind::Flow,
                resource_id: "f0".into(),
                action: action.to_string(),
                time: t0 + ChronoDuration::seconds(i as i64),
                actor: "test".into(),
                changes: json!({}),
            })
            .await
            .unwrap();
    }
    let audit = store.list_audit("f0").await.unwrap();
    assert_eq!(
        audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        vec!["create", "update"],
        "audit oldest first"
    );
}

fn job(id: &str, flow: &str, at: chrono::DateTime<Utc>) -> Job {
    Job::new(id.into(), flow.into(), RunKind::Manual, at)
}

async fn jobs_and_outcomes(store: &dyn Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    store.create_job(&job("j1", "fa", t0)).await.unwrap();
    store
        .create_job(&job("j2", "fa", t0 + ChronoDuration::seconds(5)))
        .await
        .unwrap();
    store.create_job(&job("j3", "fb", t0)).await.unwrap();
    assert!(
        !store.create_job(&job("j1", "fa", t0)).await.unwrap(),
        "a job id is opened once"
    );
    // What a run uses and where its page numbering starts are kept with the job.
    let mut retry = job("j4", "fc", t0);
    retry.first_page_index = 7;
    retry.uses.import_ids.insert("imp".into());
    retry.uses.connection_ids.insert("conn".into());
    store.create_job(&retry).await.unwrap();
    assert_eq!(store.get_job("j4").await.unwrap(), Some(retry));
    let latest = store.list_jobs("fa", 10).await.unwrap();
    assert_eq!(
        latest.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec!["j2", "j1"],
        "jobs newest first, per flow"
    );
    assert_eq!(
        store.list_jobs("fa", 1).await.unwrap().len(),
        1,
        "limit honoured"
    );

    let outcome = |page: &str, proc_: usize, s, e, i, done| PageOutcome {
        job_id: "j1".into(),
        page_id: page.into(),
        processor_index: proc_,
        num_success: s,
        num_error: e,
        num_ignore: i,
        page_done: done,
        branch_pages: 0,
    };
    let after = store
        .record_outcome(&outcome("p0", 0, 3, 1, 1, true))
        .await
        .unwrap()
        .expect("first outcome applies");
    assert_eq!(
        (
            after.num_success,
            after.num_error,
            after.num_ignore,
            after.num_pages_done
        ),
        (3, 1, 1, 1)
    );
    assert!(
        store
            .record_outcome(&outcome("p0", 0, 3, 1, 1, true))
            .await
            .unwrap()
            .is_none(),
        "a redelivered outcome is not counted twice"
    );
    let after = store
        .record_outcome(&outcome("p0", 1, 2, 0, 0, false))
        .await
        .unwrap()
        .expect("another processor of the same page counts");
    assert_eq!((after.num_success, after.num_pages_done), (5, 1));
    assert!(!after.all_pages_done(), "not done before paging finished");
    let j = store.finish_paging("j1", 2).await.unwrap();
    assert!(j.paging_done && j.num_pages == 2 && !j.all_pages_done());
    let j = store
        .record_outcome(&outcome("p1", 0, 1, 0, 0, true))
        .await
        .unwrap()
        .unwrap();
    assert!(
        j.all_pages_done(),
        "all pages done once the last page finished"
    );
    branch_pages(store).await;

    assert!(
        store
            .close_job("j1", JobStatus::CompletedWithErrors, t0, None)
            .await
            .unwrap(),
        "first close wins"
    );
    assert!(
        !store
            .close_job("j1", JobStatus::Completed, t0, None)
            .await
            .unwrap(),
        "second close loses"
    );
    let j = store.get_job("j1").await.unwrap().unwrap();
    assert_eq!(j.status, JobStatus::CompletedWithErrors);
    assert_eq!(j.ended_at, Some(t0));
    assert_eq!(store.get_job("nope").await.unwrap(), None);
}

/// A page a router split into branch pages is done when each of them is.
async fn branch_pages(store: &dyn Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let job = Job::new("jb".into(), "fbranch".into(), RunKind::Manual, t0);
    store.create_job(&job).await.unwrap();
    store.finish_paging("jb", 1).await.unwrap();
    let outcome = |page: &str, proc_: usize, done, branch_pages| PageOutcome {
        job_id: "jb".into(),
        page_id: page.into(),
        processor_index: proc_,
        num_success: 0,
        num_error: 0,
        num_ignore: 1,
        page_done: done,
        branch_pages,
    };
    let split = outcome("p0", 0, false, 2);
    let j = store.record_outcome(&split).await.unwrap().unwrap();
    assert_eq!((j.num_branch_pages, j.num_ignore), (2, 1));
    assert!(
        store.record_outcome(&split).await.unwrap().is_none(),
        "a redelivered split adds no pages"
    );
    for (i, page) in ["p0.r0b0", "p0.r0b1"].iter().enumerate() {
        let j = store
            .record_outcome(&outcome(page, 1 + i, true, 0))
            .await
            .unwrap()
            .unwrap();
        assert!(!j.all_pages_done(), "{page}: a third branch page is out");
    }
    let j = store
        .record_outcome(&outcome("p0.r0b2", 3, true, 0))
        .await
        .unwrap()
        .unwrap();
    assert!(j.all_pages_done() && j.num_branch_pages == 2, "{j:?}");
}

/// Error `id` of job `job_id` (flow `fa`, page `p0`).
fn an_error(id: &str, job_id: &str) -> JobError {
    JobError {
        id: id.into(),
        job_id: job_id.into(),
        flow_id: "fa".into(),
        processor_index: 0,
        import_id: Some("i1".into()),
        export_id: None,
        page_id: "p0".into(),
        record_key: format!("p0-{id}"),
        record: json!({"n": id}),
        request: None,
        response: Some(json!({"status": 500})),
        code: sluice_model::FailureCode::Evaluator,
        message: "server error".into(),
        retry_data_key: format!("{job_id}/{id}"),
        occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        resolved: false,
        step_name: Some("post items".into()),
        tags: Vec::new(),
    }
}

async fn errors(store: &dyn Store) {
    let err = |id: &str| an_error(id, "je");
    store.put_errors(&[err("e1"), err("e2")]).await.unwrap();
    store.put_errors(&[err("e1")]).await.unwrap();
    let listed = store.list_errors("je").await.unwrap();
    assert_eq!(listed.len(), 2, "errors are idempotent on _id");
    store.resolve_errors("je", &["e1".into()]).await.unwrap();
    let listed = store.list_errors("je").await.unwrap();
    assert!(listed.iter().find(|e| e.id == "e1").unwrap().resolved);
    assert!(!listed.iter().find(|e| e.id == "e2").unwrap().resolved);
}

/// `find_jobs`: every flow or one, newest first, filtered by status and creation time, paged
/// by a cursor that neither skips nor repeats a job.
async fn job_listing(store: &dyn Store) {
    // A window of its own (2031), so jobs other checks made stay out of it.
    let t0 = Utc.with_ymd_and_hms(2031, 3, 1, 0, 0, 0).unwrap();
    for i in 0..7i64 {
        let flow = if i % 2 == 0 { "la" } else { "lb" };
        let mut j = job(&format!("l{i}"), flow, t0 + ChronoDuration::seconds(i));
        if i == 3 {
            j.status = JobStatus::Failed;
        }
        store.create_job(&j).await.unwrap();
    }
    let window = JobQuery {
        since: Some(t0),
        until: Some(t0 + ChronoDuration::days(1)),
        limit: 3,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut query = window.clone();
    loop {
        let page = store.find_jobs(&query).await.unwrap();
        assert!(page.items.len() <= 3, "limit honoured");
        seen.extend(page.items.iter().map(|j| j.id.clone()));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["l6", "l5", "l4", "l3", "l2", "l1", "l0"],
        "every job once, newest first, across pages"
    );
    let of = |q: JobQuery| async move {
        let page = store.find_jobs(&q).await.unwrap();
        page.items.into_iter().map(|j| j.id).collect::<Vec<_>>()
    };
    assert_eq!(
        of(JobQuery {
            flow_id: Some("lb".into()),
            limit: 10,
            ..window.clone()
        })
        .await,
        ["l5", "l3", "l1"],
        "one flow's jobs"
    );
    assert_eq!(
        of(JobQuery {
            status: Some(JobStatus::Failed),
            limit: 10,
            ..window.clone()
        })
        .await,
        ["l3"],
        "by status"
    );
    assert_eq!(
        of(JobQuery {
            since: Some(t0 + ChronoDuration::seconds(2)),
            until: Some(t0 + ChronoDuration::seconds(4)),
            limit: 10,
            ..window.clone()
        })
        .await,
        ["l3", "l2"],
        "since is inclusive, until exclusive"
    );
    let last = store
        .find_jobs(&JobQuery {
            limit: 7,
            ..window.clone()
        })
        .await
        .unwrap();
    assert_eq!(last.items.len(), 7);
    assert_eq!(last.next_cursor, None, "no cursor when nothing follows");
}

/// `find_errors` pages and filters; `update_error` and `mark_errors` change what is stored.
async fn error_listing(store: &dyn Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let errors: Vec<JobError> = (0..9)
        .map(|i| JobError {
            id: format!("el-{i:02}"),
            job_id: "jl".into(),
            flow_id: "fa".into(),
            processor_index: i % 3,
            import_id: Some(format!("imp{}", i % 3)),
            export_id: None,
            step_name: Some(format!("step {}", i % 3)),
            page_id: "p0".into(),
            record_key: format!("p0-r{i}"),
            record: json!({"n": i}),
            request: None,
            response: None,
            code: if i < 5 {
                sluice_model::FailureCode::Evaluator
            } else {
                sluice_model::FailureCode::Template
            },
            message: "failed".into(),
            retry_data_key: format!("jl/p0-r{i}"),
            occurred_at: t0,
            resolved: false,
            tags: Vec::new(),
        })
        .collect();
    store.put_errors(&errors).await.unwrap();
    let ids = |page: &sluice_model::api::Listing<JobError>| {
        page.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    };
    let mut query = ErrorQuery {
        limit: 4,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.find_errors("jl", &query).await.unwrap();
        assert!(page.items.len() <= 4);
        seen.extend(ids(&page));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9, "every error once across pages: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ordered by _id");

    let by_processor = ErrorQuery {
        processor_index: Some(1),
        limit: 10,
        ..Default::default()
    };
    let page = store.find_errors("jl", &by_processor).await.unwrap();
    assert_eq!(ids(&page), ["el-01", "el-04", "el-07"]);
    let filtered = ErrorQuery {
        processor_index: Some(1),
        code: Some(sluice_model::FailureCode::Template),
        limit: 1,
        ..Default::default()
    };
    let page = store.find_errors("jl", &filtered).await.unwrap();
    assert_eq!(ids(&page), ["el-07"]);
    assert_eq!(page.next_cursor, None, "a filtered last page has no cursor");

    assert_eq!(
        store
            .mark_errors("jl", &["el-00".into(), "el-01".into(), "nope".into()], true)
            .await
            .unwrap(),
        2,
        "only existing errors are counted"
    );
    let resolved = ErrorQuery {
        resolved: Some(true),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        ids(&store.find_errors("jl", &resolved).await.unwrap()),
        ["el-00", "el-01"]
    );
    store
        .mark_errors("jl", &["el-00".into()], false)
        .await
        .unwrap();
    assert_eq!(
        ids(&store.find_errors("jl", &resolved).await.unwrap()),
        ["el-01"]
    );
    store.put_errors(&errors[1..2]).await.unwrap();
    assert_eq!(
        ids(&store.find_errors("jl", &resolved).await.unwrap()),
        ["el-01"],
        "a resolved error written again stays resolved"
    );

    let mut edited = errors[2].clone();
    edited.record = json!({"n": 2, "fixed": true});
    edited.tags = vec!["fixed-by-hand".into()];
    assert!(store.update_error(&edited).await.unwrap());
    let stored = store.list_errors("jl").await.unwrap();
    assert_eq!(stored.iter().find(|e| e.id == "el-02"), Some(&edited));
    let mut stranger = edited.clone();
    stranger.id = "el-99".into();
    assert!(
        !store.update_error(&stranger).await.unwrap(),
        "no such error: nothing written"
    );
    assert_eq!(store.list_errors("jl").await.unwrap().len(), 9);
}

async fn ledger(store: &dyn Store) {
    let t0 = Utc::now();
    store.create_job(&job("jl", "fl", t0)).await.unwrap();
    assert_eq!(
        store.ledger_claim("jl", "k1", t0).await.unwrap(),
        LedgerState::Claimed
    );
    assert_eq!(
        store.ledger_claim("jl", "k1", t0).await.unwrap(),
        LedgerState::InFlight,
        "a claim not completed is in flight"
    );
    store
        .ledger_complete("k1", &json!({"status": 201}))
        .await
        .unwrap();
    assert_eq!(
        store.ledger_claim("jl", "k1", t0).await.unwrap(),
        LedgerState::Done(json!({"status": 201}))
    );
    assert_eq!(
        store.ledger_claim("jl", "k2", t0).await.unwrap(),
        LedgerState::Claimed
    );
    // A canceled job: nothing new is claimed, what was sent still reads as sent.
    assert!(store
        .close_job("jl", JobStatus::Canceled, t0, Some("canceled".into()))
        .await
        .unwrap());
    assert_eq!(
        store.ledger_claim("jl", "k3", t0).await.unwrap(),
        LedgerState::JobCanceled,
        "no send of a canceled job"
    );
    assert_eq!(
        store.ledger_claim("jl", "k3", t0).await.unwrap(),
        LedgerState::JobCanceled,
        "and no claim was left behind"
    );
    assert_eq!(
        store.ledger_claim("jl", "k1", t0).await.unwrap(),
        LedgerState::Done(json!({"status": 201}))
    );
    assert_eq!(
        store.ledger_claim("jl", "k2", t0).await.unwrap(),
        LedgerState::InFlight
    );
    // Other finished jobs still send what they read (a failed export's pages go on).
    store.create_job(&job("jf", "fl", t0)).await.unwrap();
    store
        .close_job("jf", JobStatus::Failed, t0, None)
        .await
        .unwrap();
    assert_eq!(
        store.ledger_claim("jf", "k4", t0).await.unwrap(),
        LedgerState::Claimed
    );
}

/// A chunk's sends are claimed and settled in one call each, every send answering as a key
/// of its own would: a crash between the two leaves the unsettled ones in flight (reported,
/// never resent), a send settled `NotSent` is claimed again, and a canceled job claims
/// nothing new.
async fn ledger_chunks(store: &dyn Store) {
    use LedgerState::*;
    let t0 = Utc::now();
    store.create_job(&job("jc", "fl", t0)).await.unwrap();
    let sends = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let claim = |chunk: &'static str, keys: Vec<String>| async move {
        store
            .ledger_claim_chunk("jc", chunk, &keys, t0)
            .await
            .unwrap()
    };
    assert_eq!(
        claim("c0", sends(&["a", "b", "c"])).await,
        vec![Claimed, Claimed, Claimed]
    );
    store
        .ledger_settle_chunk(
            "c0",
            &[
                ("a".into(), Settled::Sent(json!({"status": 201}))),
                ("c".into(), Settled::NotSent),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        claim("c0", sends(&["a", "b", "c"])).await,
        vec![Done(json!({"status": 201})), InFlight, Claimed],
        "sent, claimed and never settled (a crash mid-chunk), and given back"
    );
    assert_eq!(
        claim("c1", sends(&["a"])).await,
        vec![Claimed],
        "chunks are apart"
    );
    store
        .ledger_settle_chunk("c0", &[("c".into(), Settled::Sent(json!({"status": 500})))])
        .await
        .unwrap();
    store
        .ledger_settle_chunk("c1", &[("a".into(), Settled::NotSent)])
        .await
        .unwrap();
    assert!(store
        .close_job("jc", JobStatus::Canceled, t0, Some("canceled".into()))
        .await
        .unwrap());
    assert_eq!(
        claim("c0", sends(&["a", "b", "c"])).await,
        vec![
            Done(json!({"status": 201})),
            InFlight,
            Done(json!({"status": 500}))
        ],
        "what was claimed before answers as it stands once the job is canceled"
    );
    assert_eq!(
        claim("c2", sends(&["x", "y"])).await,
        vec![JobCanceled, JobCanceled],
        "no send of a canceled job"
    );
    assert_eq!(
        claim("c2", sends(&["x"])).await,
        vec![JobCanceled],
        "and no claim was left behind"
    );
    assert_eq!(
        claim("c1", sends(&["a"])).await,
        vec![JobCanceled],
        "a send given back is not claimed again once the job is canceled"
    );
}

async fn slots(store: &dyn Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let lease = Duration::from_secs(60);
    let take = |owner: &'static str, at: i64| {
        store.take_slot("g", 2, owner, t0 + ChronoDuration::seconds(at), lease)
    };
    let a = take("a", 0).await.unwrap().expect("a free slot");
    let b = take("b", 1).await.unwrap().expect("the other free slot");
    assert_ne!(a, b, "two holders, two slots");
    assert!(a < 2 && b < 2, "indexes within the group's size");
    assert_eq!(take("c", 2).await.unwrap(), None, "all held");
    assert_eq!(
        store
            .take_slot("other", 2, "c", t0, lease)
            .await
            .unwrap()
            .map(|_| ()),
        Some(()),
        "groups are apart"
    );
    store.release_slot("g", a, "not-a").await.unwrap();
    assert_eq!(
        take("c", 3).await.unwrap(),
        None,
        "release by a non-holder does nothing"
    );
    store.release_slot("g", a, "a").await.unwrap();
    assert_eq!(
        take("c", 4).await.unwrap(),
        Some(a),
        "a released slot is free"
    );
    assert_eq!(
        take("d", 61).await.unwrap(),
        Some(b),
        "an expired lease is taken over"
    );
    store.release_slot("g", b, "b").await.unwrap();
    assert_eq!(
        take("e", 62).await.unwrap(),
        None,
        "the old holder cannot free it"
    );
    assert_eq!(
        store
            .take_slot("g", 3, "e", t0 + ChronoDuration::seconds(62), lease)
            .await
            .unwrap(),
        Some(2),
        "a larger group has room"
    );

    // Concurrent takers of a fresh group: exactly as many win as there are slots.
    let owners: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let racers = owners
        .iter()
        .map(|o| store.take_slot("race", 3, o, t0, lease));
    let mut won: Vec<u32> = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    won.sort();
    assert_eq!(won, vec![0, 1, 2], "each slot to one taker");
}

async fn locks(store: &dyn Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let lease = Duration::from_secs(60);
    assert_eq!(store.lock_holder("fl").await.unwrap(), None);
    assert!(store.acquire_lock("fl", "run1", t0, lease).await.unwrap());
    assert_eq!(
        store.lock_holder("fl").await.unwrap(),
        Some(LockHolder {
            owner: "run1".into(),
            lease_until: t0 + ChronoDuration::seconds(60)
        }),
        "who holds it, and until when"
    );
    assert!(
        !store
            .acquire_lock("fl", "run1", t0 + ChronoDuration::seconds(1), lease)
            .await
            .unwrap(),
        "a held lock refuses its holder too"
    );
    assert!(
        !store
            .acquire_lock("fl", "run2", t0 + ChronoDuration::seconds(30), lease)
            .await
            .unwrap(),
        "held lock refuses others"
    );
    assert!(store
        .renew_lock("fl", "run1", t0 + ChronoDuration::seconds(50), lease)
        .await
        .unwrap());
    assert!(
        !store
            .acquire_lock("fl", "run2", t0 + ChronoDuration::seconds(100), lease)
            .await
            .unwrap(),
        "renewed lease still holds"
    );
    assert!(
        store
            .acquire_lock("fl", "run2", t0 + ChronoDuration::seconds(111), lease)
            .await
            .unwrap(),
        "expired lease is taken over"
    );
    assert!(
        !store
            .renew_lock("fl", "run1", t0 + ChronoDuration::seconds(112), lease)
            .await
            .unwrap(),
        "old owner cannot renew"
    );
    store.release_lock("fl", "run1").await.unwrap();
    assert!(
        !store
            .acquire_lock("fl", "run3", t0 + ChronoDuration::seconds(113), lease)
            .await
            .unwrap(),
        "release by a non-owner does nothing"
    );
    store.release_lock("fl", "run2").await.unwrap();
    assert_eq!(store.lock_holder("fl").await.unwrap(), None, "released");
    assert!(store
        .acquire_lock("fl", "run3", t0 + ChronoDuration::seconds(114), lease)
        .await
        .unwrap());
}

async fn queued_runs(store: &dyn Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
    let event = |id: &str, kind: RunKind, at: i64| QueuedRun {
        id: id.into(),
        kind,
        request: RunRequest {
            export_ids: Some(vec!["e1".into()]),
            source: Some(RunSource::S3Object {
                bucket: "in".into(),
                key: format!("{id} b.csv"),
            }),
            ..Default::default()
        },
        queued_at: t0 + ChronoDuration::seconds(at),
    };
    let export_run = |id: &str, kind: RunKind, at: i64| QueuedRun {
        id: id.into(),
        kind,
        request: RunRequest::default(),
        queued_at: t0 + ChronoDuration::seconds(at),
    };
    assert!(store.queued_runs("fq", 10).await.unwrap().is_empty());
    // Arrival order is kept whatever the ids; every event is its own run.
    let runs: Vec<QueuedRun> = (0..25)
        .map(|i| event(&format!("q{:02}", 24 - i), RunKind::S3, i))
        .collect();
    for r in &runs {
        assert!(
            store.queue_run("fq", r).await.unwrap(),
            "each event is kept"
        );
    }
    assert!(
        !store.queue_run("fq", &runs[3]).await.unwrap(),
        "an event kept twice waits once"
    );
    let schedule = export_run("sch1", RunKind::Schedule, 30);
    assert!(store.queue_run("fq", &schedule).await.unwrap());
    assert!(
        !store
            .queue_run("fq", &export_run("chain1", RunKind::Chain, 31))
            .await
            .unwrap(),
        "one run of the whole export waits at most"
    );
    let waiting = store.queued_runs("fq", 100).await.unwrap();
    let mut expected = runs.clone();
    expected.push(schedule.clone());
    assert_eq!(
        waiting, expected,
        "every waiting run comes back typed (kind, source), oldest first"
    );
    assert_eq!(
        store.queued_runs("fq", 2).await.unwrap(),
        runs[..2].to_vec()
    );
    assert!(
        store.queued_runs("other", 10).await.unwrap().is_empty(),
        "per flow"
    );

    store.remove_queued_run("fq", &runs[0]).await.unwrap();
    store.remove_queued_run("fq", &runs[0]).await.unwrap();
    assert_eq!(
        store.queued_runs("fq", 1).await.unwrap(),
        vec![runs[1].clone()]
    );
    store.remove_queued_run("fq", &schedule).await.unwrap();
    assert!(
        store
            .queue_run("fq", &export_run("chain1", RunKind::Chain, 40))
            .await
            .unwrap(),
        "once the export run left, another may wait"
    );
    // A run whose job exists has run: it is not kept again.
    store.create_job(&job("q05", "fq", t0)).await.unwrap();
    store.remove_queued_run("fq", &runs[19]).await.unwrap();
    assert!(
        !store.queue_run("fq", &runs[19]).await.unwrap(),
        "an event whose run started is not kept again"
    );
}

async fn schedules(store: &dyn Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    store.set_next_run("s1", Some(t0)).await.unwrap();
    store
        .set_next_run("s2", Some(t0 + ChronoDuration::minutes(5)))
        .await
        .unwrap();
    store.set_next_run("s3", Some(t0)).await.unwrap();
    store.set_next_run("s3", None).await.unwrap();
    let due = store.due_flows(t0).await.unwrap();
    assert_eq!(
        due,
        vec![("s1".to_string(), t0)],
        "only what is due, and cleared schedules are gone"
    );
}

/// One pending automatic retry per job: set again it moves, cleared it is gone; only what is
/// due is listed, earliest first.
async fn retry_times(store: &dyn Store) {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let minute = ChronoDuration::minutes(1);
    assert_eq!(store.retry_at("rj1").await.unwrap(), None);
    store.set_retry_at("rj1", Some(t0 + minute)).await.unwrap();
    store.set_retry_at("rj1", Some(t0)).await.unwrap();
    store.set_retry_at("rj2", Some(t0 - minute)).await.unwrap();
    store.set_retry_at("rj3", Some(t0 + minute)).await.unwrap();
    store.set_retry_at("rj4", Some(t0)).await.unwrap();
    store.set_retry_at("rj4", None).await.unwrap();
    store.set_retry_at("rj5", None).await.unwrap();
    assert_eq!(
        store.retry_at("rj1").await.unwrap(),
        Some(t0),
        "moved, not added"
    );
    assert_eq!(store.retry_at("rj4").await.unwrap(), None, "cleared");
    assert_eq!(
        store.due_retries(t0).await.unwrap(),
        vec![("rj2".to_string(), t0 - minute), ("rj1".to_string(), t0)],
        "what is due, earliest first; the moved entry once"
    );
    assert!(
        !store
            .due_flows(t0 + minute)
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| id.starts_with("rj")),
        "retry times are not schedules"
    );
    for id in ["rj1", "rj2", "rj3"] {
        store.set_retry_at(id, None).await.unwrap();
    }
    assert!(store.due_retries(t0 + minute).await.unwrap().is_empty());
}

async fn state(store: &dyn Store) {
    assert_eq!(store.get_state("w").await.unwrap(), None);
    store
        .put_state("w", &json!("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    store
        .put_state("w", &json!("2026-01-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        store.get_state("w").await.unwrap(),
        Some(json!("2026-01-02T00:00:00Z"))
    );

    // swap_state: a compare-and-set; of concurrent swappers from one value, exactly one wins.
    assert!(
        store.swap_state("n", None, &json!(1)).await.unwrap(),
        "absent, expected absent"
    );
    assert!(
        !store.swap_state("n", None, &json!(5)).await.unwrap(),
        "present, expected absent"
    );
    assert!(
        !store
            .swap_state("n", Some(&json!(2)), &json!(5))
            .await
            .unwrap(),
        "stale expectation"
    );
    assert_eq!(
        store.get_state("n").await.unwrap(),
        Some(json!(1)),
        "a failed swap writes nothing"
    );
    assert!(store
        .swap_state("n", Some(&json!(1)), &json!(1_700_000_000_123_456i64))
        .await
        .unwrap());
    let big = json!(1_700_000_000_123_456i64);
    let values: Vec<_> = (0..8).map(|i| json!(i)).collect();
    let racers = values.iter().map(|v| store.swap_state("n", Some(&big), v));
    let won = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(
        won, 1,
        "exactly one concurrent swap from the same value wins"
    );
    assert!(
        store
            .swap_state("w", Some(&json!("2026-01-02T00:00:00Z")), &json!("x"))
            .await
            .unwrap(),
        "strings compare too"
    );
}

/// An export remembers the files of its completed runs only, each once, apart from other
/// exports' (`runs::pickup`, kept as state).
async fn pickup_memory(store: &dyn Store) {
    use crate::runs::pickup;
    let names: Vec<String> = ["in/a.csv", "in/b.csv"].map(String::from).to_vec();
    let new = |export: &'static str| pickup::new_files(store, export, names.clone());
    assert_eq!(new("pk-e").await.unwrap(), names, "nothing read yet");
    pickup::reading(store, "pk-j1", "pk-e", &names[..1])
        .await
        .unwrap();
    pickup::reading(store, "pk-j1", "pk-e", &names[..1])
        .await
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut job = Job::new("pk-j1".into(), "pk-f".into(), RunKind::Schedule, now);
    job.uses.export_ids.insert("pk-e".into());
    for status in [JobStatus::Failed, JobStatus::Canceled] {
        job.status = status;
        pickup::remember(store, &job).await.unwrap();
        assert_eq!(
            new("pk-e").await.unwrap(),
            names,
            "a {status:?} run's files are read again"
        );
    }
    job.status = JobStatus::CompletedWithErrors;
    pickup::remember(store, &job).await.unwrap();
    pickup::remember(store, &job).await.unwrap();
    assert_eq!(
        new("pk-e").await.unwrap(),
        names[1..],
        "a completed run's file is remembered"
    );
    assert_eq!(new("pk-e2").await.unwrap(), names, "per export");
}
