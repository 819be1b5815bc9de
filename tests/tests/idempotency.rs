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
