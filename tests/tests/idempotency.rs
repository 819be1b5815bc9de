//! At-least-once hand-offs: a redelivered page is never sent twice, and never counted twice.

use serde_json::json;
use sluice_core::ports::Kind;
use sluice_core::Stage;
use sluice_e2e::*;
use sluice_model::FailureCode;
use sluice_model::{Exchange, PageRecord, RenderedRequest, StageMessage};

#[tokio::test]
async fn a_redelivered_page_reuses_the_recorded_reply() {
    let server = TestServer::start(|n, _| Answer::json(201, json!({"id": format!("x{n}")}))).await;
    let h = Harness::new();
    h.load(http_bundle(
        &server.base_url,
        json!({"responseMapping": {"fields": [{"extract": "id", "generate": "id"}]}}),
        json!({}),
    ))
    .await;
    let s = h.sluice();
    open_job(&s, "j1").await;
    let record = |k: &str| {
        let mut r = PageRecord::new(k.into(), json!({"name": k}));
        r.exchange = Some(Exchange {
            request: RenderedRequest {
                method: "POST".into(),
                url: format!("{}/orders", server.base_url),
                headers: vec![],
                body: Some("{}".into()),
            },
            reply: None,
        });
        r
    };
    let page = first_page("j1", vec![record("a"), record("b")]);
    // The deliver stage handles the same page three times (a queue redelivering it).
    for _ in 0..3 {
        s.handle(Stage::Deliver, StageMessage::Page(page.clone()))
            .await
            .unwrap();
    }
    h.runtime
        .wait_idle(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(server.received().len(), 2, "each record sent once");
    let job = s.store.get_job("j1").await.unwrap().unwrap();
    assert_eq!(
        (job.num_success, job.num_error),
        (2, 0),
        "counted once: {job:?}"
    );
    assert!(job.status.is_finished());
    let _ = Kind::Flow;
}

#[tokio::test]
async fn a_send_interrupted_mid_flight_is_not_repeated_but_reported() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    let s = h.sluice();
    open_job(&s, "j2").await;
    // A process claimed the record (in its ledger chunk) and died before recording the reply.
    s.store
        .ledger_claim_chunk(
            "j2",
            "deliver:j2:g0-p000000:0:chunk0",
            &["r1".to_string()],
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let mut r = PageRecord::new("r1".into(), json!({}));
    r.exchange = Some(Exchange {
        request: RenderedRequest {
            method: "POST".into(),
            url: format!("{}/orders", server.base_url),
            headers: vec![],
            body: None,
        },
        reply: None,
    });
    let page = first_page("j2", vec![r]);
    s.handle(Stage::Deliver, StageMessage::Page(page))
        .await
        .unwrap();
    h.runtime
        .wait_idle(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    assert!(server.received().is_empty(), "not sent again");
    let errors = h.errors("j2").await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, FailureCode::DeliveryUnknown);
    assert_eq!(s.store.get_job("j2").await.unwrap().unwrap().num_error, 1);
}

/// A webhook delivery sent again with the same `Idempotency-Key` (its sender timed out, or
/// was answered with an error after the records were kept for some of the export's flows)
/// runs no flow twice: each of the two flows reading the export sends each record once. A
/// delivery without the key, or with another one, is a new delivery; an empty key is refused.
#[tokio::test]
async fn a_webhook_delivery_sent_again_with_its_idempotency_key_runs_no_flow_twice() {
    use sluice_core::stages::trigger::listener::{receive, Delivery};
    let server = TestServer::always(201, json!({"id": "x"})).await;
    let h = Harness::with_secrets(&[("HOOK_TOKEN", "tok-1")]);
    let mut bundle = http_bundle(&server.base_url, json!({}), json!({}));
    bundle["exports"][0]["webhook"] =
        json!({"verify": "token", "token": "secret:HOOK_TOKEN", "header": "X-Token"});
    let mut second = bundle["flows"][0].clone();
    second["_id"] = json!("g");
    bundle["flows"].as_array_mut().unwrap().push(second);
    h.load(bundle).await;
    let s = h.sluice();
    let body = serde_json::to_vec(&json!([{"name": "a"}, {"name": "b"}])).unwrap();
    let deliver = |key: Option<&'static str>| {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-token", "tok-1".parse().unwrap());
        if let Some(key) = key {
            headers.insert("idempotency-key", key.parse().unwrap());
        }
        let (s, body) = (s.clone(), body.clone());
        async move {
            let delivery = Delivery {
                export_id: "exp",
                url_token: None,
                headers: &headers,
                query: None,
                body: &body,
            };
            receive(&s, delivery).await
        }
    };
    let idle = || h.runtime.wait_idle(std::time::Duration::from_secs(30));
    for _ in 0..3 {
        deliver(Some("delivery-1")).await.unwrap();
        idle().await.unwrap();
    }
    assert_eq!(server.received().len(), 4, "2 records x 2 flows, once");
    for flow in ["f", "g"] {
        let jobs = s.store.list_jobs(flow, 10).await.unwrap();
        assert_eq!(jobs.len(), 1, "{flow}: {jobs:?}");
        assert_eq!(jobs[0].num_success, 2, "{flow}: {jobs:?}");
    }
    deliver(Some("delivery-2")).await.unwrap();
    deliver(None).await.unwrap();
    idle().await.unwrap();
    assert_eq!(
        server.received().len(),
        12,
        "two new deliveries, each to both flows"
    );
    let refused = deliver(Some("")).await.unwrap_err();
    assert!(refused.to_string().contains("Idempotency-Key"), "{refused}");
}
