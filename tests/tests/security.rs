//! Hostile input, tried against real servers on loopback: credentials stay with their origin,
//! templates cannot steer requests, ambiguous failures are not resent blind, deployed
//! defaults refuse private addresses.

use serde_json::{json, Value};
use sluice_core::{Settings, Stage};
use sluice_e2e::*;
use sluice_model::FailureCode;
use sluice_model::RunRequest;
use sluice_model::{JobStatus, PageRecord, StageMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A harness with [`http_bundle`] loaded.
async fn loaded(base: &str, import: Value, connection: Value) -> Harness {
    let h = Harness::new();
    h.load(http_bundle(base, import, connection)).await;
    h
}

// 1. Redirects ---------------------------------------------------------------------------

/// A target that sends every request to `to` with a 307, and the server behind `to`.
async fn redirecting_to(to: &TestServer) -> TestServer {
    let location = format!("{}/collect", to.base_url);
    TestServer::start(move |_, _| Answer::json(307, json!({})).with_header("location", &location))
        .await
}

fn credentials() -> Value {
    json!({"http": {
        "headers": [{"name": "X-Api-Key", "value": "h-secret"}],
        "auth": {"type": "apikey", "apikey": {"in": "query", "name": "api_key", "value": "q-secret"}}
    }})
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed_but_is_the_reply() {
    let elsewhere = TestServer::always(200, json!({})).await;
    let target = redirecting_to(&elsewhere).await;
    let h = loaded(&target.base_url, json!({}), credentials()).await;
    let job = h.run("f", orders(2)).await;
    assert_eq!((job.num_success, job.num_error), (0, 2));
    assert!(
        elsewhere.received().is_empty(),
        "nothing went to the other origin"
    );
    assert_eq!(
        target.received().len(),
        2,
        "a 3xx is an answer, not retried"
    );
    let e = &h.errors(&job.id).await[0];
    let reply = serde_json::to_value(&e.response).unwrap();
    assert_eq!(reply["status"], 307, "{e:?}");
}

#[tokio::test]
async fn same_origin_redirects_are_followed_with_the_body_and_credentials() {
    let target = TestServer::start(|_, r| match r.path.as_str() {
        "/orders" => Answer::json(308, json!({})).with_header("location", "/v2/orders"),
        _ => Answer::json(201, json!({"id": "o1"})),
    })
    .await;
    let h = loaded(&target.base_url, json!({}), credentials()).await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_success, 1, "{:?}", h.errors(&job.id).await);
    let got = target.received();
    assert_eq!(got.len(), 2);
    let second = &got[1];
    assert_eq!(second.path, "/v2/orders");
    assert_eq!(second.method, "POST");
    assert_eq!(second.json()["name"], "order 0");
    assert_eq!(second.headers["x-api-key"], "h-secret");
    assert_eq!(second.query, "api_key=q-secret");
    assert!(!second.headers.contains_key("referer"));
}

#[tokio::test]
async fn an_allowed_cross_origin_redirect_carries_no_credentials_and_no_referer() {
    let elsewhere = TestServer::always(201, json!({"id": "x"})).await;
    let target = redirecting_to(&elsewhere).await;
    let mut connection = credentials();
    connection["http"]["followRedirects"] = json!("anyOrigin");
    let h = loaded(
        &target.base_url,
        json!({"http": {"headers": [{"name": "X-Trace", "value": "t-{{record.qty}}"}]}}),
        connection,
    )
    .await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_success, 1, "{:?}", h.errors(&job.id).await);
    let first = &target.received()[0];
    assert_eq!(
        first.headers["x-api-key"], "h-secret",
        "the origin gets them"
    );
    let got = &elsewhere.received()[0];
    assert_eq!(got.path, "/collect");
    assert_eq!(got.json()["name"], "order 0", "a 307 repeats the request");
    assert_eq!(
        got.headers["x-trace"], "t-0",
        "the import's own headers go along"
    );
    assert!(!got.headers.contains_key("x-api-key"), "{:?}", got.headers);
    assert!(!got.headers.contains_key("authorization"));
    assert!(!got.headers.contains_key("referer"), "{:?}", got.headers);
    assert!(!got.query.contains("q-secret"), "{}", got.query);
}

#[tokio::test]
async fn a_redirect_to_a_metadata_address_is_refused_without_connecting() {
    let target = TestServer::start(|_, _| {
        Answer::json(302, json!({}))
            .with_header("location", "http://169.254.169.254/latest/meta-data/")
    })
    .await;
    let h = loaded(
        &target.base_url,
        json!({}),
        json!({"http": {"followRedirects": "anyOrigin", "retry": {"maxAttempts": 1}}}),
    )
    .await;
    let job = h.run("f", orders(1)).await;
    let e = &h.errors(&job.id).await[0];
    assert_eq!(e.code, FailureCode::AddressRefused, "{e:?}");
    assert!(e.message.contains("169.254.169.254"), "{}", e.message);
}

#[tokio::test]
async fn callbacks_follow_no_redirects_so_their_credentials_stay_put() {
    let elsewhere = TestServer::always(200, json!({})).await;
    let hooks = redirecting_to(&elsewhere).await;
    let target = TestServer::always(201, json!({})).await;
    let h = Harness::with_secrets(&[("hook", "hk-5512")]);
    let mut bundle = http_bundle(&target.base_url, json!({}), json!({}));
    let callback = json!({"url": format!("{}/done", hooks.base_url), "headers": [{"name": "X-Api-Key", "value": "secret:hook"}]});
    bundle["flows"][0]["afterProcess"] = json!([callback]);
    bundle["flows"][0]["notifyResponse"] = callback;
    h.load(bundle).await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_success, 1);
    for _ in 0..100 {
        if hooks.received().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        hooks.received().len(),
        2,
        "the notification and the after-process call"
    );
    assert!(hooks
        .received()
        .iter()
        .all(|r| r.headers["x-api-key"] == "hk-5512"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        elsewhere.received().is_empty(),
        "{:?}",
        elsewhere.received()
    );
}

#[tokio::test]
async fn callbacks_to_an_address_literal_the_deployment_refuses_are_not_sent() {
    // A callback names an IP address, so no resolver sees it: the literal itself must be
    // checked against the deployment's policy (here: loopback refused, as deployed).
    let hooks = TestServer::always(200, json!({})).await;
    let target = TestServer::always(201, json!({})).await;
    let h = Harness::with_settings(Settings::default());
    let mut bundle = http_bundle(
        &target.base_url,
        json!({}),
        json!({"http": {"allowPrivateAddresses": true}}),
    );
    let callback = json!({"url": format!("{}/done", hooks.base_url)});
    bundle["flows"][0]["afterProcess"] = json!([callback]);
    bundle["flows"][0]["notifyResponse"] = callback;
    h.load(bundle).await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_success, 1, "{:?}", h.errors(&job.id).await);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(hooks.received().is_empty(), "{:?}", hooks.received());
}

#[tokio::test]
async fn an_oauth2_token_uri_at_a_refused_address_is_never_asked() {
    // The target is reached by name (refused where it is resolved); the token endpoint is
    // an IP address the deployment refuses: the client secret must not go there either.
    let tokens = TestServer::always(200, json!({"access_token": "t", "expires_in": 600})).await;
    let target = TestServer::always(201, json!({})).await;
    let h = Harness::with_settings(Settings::default());
    let oauth = json!({"type": "oauth2", "oauth2": {
        "tokenURI": format!("{}/token", tokens.base_url), "clientId": "cid", "clientSecret": "cs-881"}});
    h.load(http_bundle(
        &target.base_url.replace("127.0.0.1", "localhost"),
        json!({}),
        json!({"http": {"auth": oauth, "retry": {"maxAttempts": 1}}}),
    ))
    .await;
    let job = h.run("f", orders(1)).await;
    assert!(tokens.received().is_empty(), "{:?}", tokens.received());
    assert!(target.received().is_empty());
    let e = &h.errors(&job.id).await[0];
    assert_eq!(e.code, FailureCode::AddressRefused, "{e:?}");
    assert!(e.message.contains("127.0.0.1"), "{}", e.message);
}

// 2. URI templates -----------------------------------------------------------------------

#[tokio::test]
async fn record_values_in_a_uri_are_path_segments_and_stay_under_the_base() {
    let target = TestServer::always(200, json!({})).await;
    let h = loaded(
        &format!("{}/api", target.base_url),
        json!({"http": {"relativeURI": "/orders/{{record.id}}?tenant=acme&q={{record.q}}"}}),
        json!({}),
    )
    .await;
    let job = h
        .run(
            "f",
            vec![
                json!({"id": "../../admin?x=1#", "q": "a&b=c d"}),
                json!({"id": "..", "q": ""}),
                json!({"id": "7/../..", "q": ""}),
            ],
        )
        .await;
    assert_eq!(
        (job.num_success, job.num_error),
        (2, 1),
        "{:?}",
        h.errors(&job.id).await
    );
    // Records of a page are sent concurrently: the target may see them in any order.
    let mut got: Vec<_> = target
        .received()
        .into_iter()
        .map(|r| (r.path, r.query))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "/api/orders/..%2F..%2Fadmin%3Fx%3D1%23".to_string(),
                "tenant=acme&q=a%26b%3Dc%20d".to_string()
            ),
            (
                "/api/orders/7%2F..%2F..".to_string(),
                "tenant=acme&q=".to_string()
            ),
        ]
    );
    let e = &h.errors(&job.id).await[0];
    assert_eq!(e.code, FailureCode::UrlRefused);
    assert!(e.message.contains("'..'"), "{}", e.message);
}

#[tokio::test]
async fn a_raw_url_that_only_starts_like_the_base_is_refused() {
    let target = TestServer::always(200, json!({})).await;
    let other = TestServer::always(200, json!({})).await;
    let h = loaded(
        &target.base_url,
        json!({"http": {"relativeURI": "{{{record.url}}}"}}),
        json!({}),
    )
    .await;
    let other_authority = other.base_url.trim_start_matches("http://");
    // Starts with the baseURI's text: userinfo `127.0.0.1:PORT`, then the other server.
    let sneaky = format!("{}@{other_authority}/x", target.base_url);
    let job = h
        .run(
            "f",
            vec![
                json!({"url": sneaky}),
                json!({"url": format!("{}/orders/1", target.base_url)}),
            ],
        )
        .await;
    assert_eq!(
        (job.num_success, job.num_error),
        (1, 1),
        "{:?}",
        h.errors(&job.id).await
    );
    assert!(
        other.received().is_empty(),
        "nothing reached the other server"
    );
    assert_eq!(target.received()[0].path, "/orders/1");
    assert_eq!(h.errors(&job.id).await[0].code, FailureCode::UrlRefused);
}

#[tokio::test]
async fn lookups_escape_values_in_their_uri() {
    let server = TestServer::always(200, json!({"tier": "gold"})).await;
    let h = Harness::new();
    let mut bundle = http_bundle(&server.base_url, json!({}), json!({}));
    bundle["exports"].as_array_mut().unwrap().push(
        json!({"_id": "lookup", "name": "lookup", "type": "http", "_connectionId": "conn", "http": {"relativeURI": "/customers/{{record.name}}"}}),
    );
    bundle["flows"][0]["pageProcessors"] = json!([{"type": "export", "_exportId": "lookup"}]);
    h.load(bundle).await;
    let job = h.run("f", vec![json!({"name": "../orders?all=1"})]).await;
    assert_eq!(job.num_success, 1, "{:?}", h.errors(&job.id).await);
    assert_eq!(
        server.received()[0].path,
        "/customers/..%2Forders%3Fall%3D1"
    );
    assert_eq!(server.received()[0].query, "");
}

#[tokio::test]
async fn a_next_page_link_off_the_base_path_fails_the_export() {
    let source = TestServer::start(|_, r| match r.path.as_str() {
        "/api/items" => Answer::json(200, json!({"items": [{"id": 1}]}))
            .with_header("link", "</admin/items>; rel=\"next\""),
        _ => Answer::json(200, json!({"items": [{"id": 2}]})),
    })
    .await;
    let sink = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    let mut bundle = http_bundle(&sink.base_url, json!({}), json!({}));
    bundle["connections"].as_array_mut().unwrap().push(
        json!({"_id": "src", "name": "src", "type": "http", "http": {"baseURI": format!("{}/api", source.base_url)}}),
    );
    bundle["exports"] = json!([{"_id": "exp", "name": "exp", "type": "http", "_connectionId": "src", "http": {"relativeURI": "/items", "resourcePath": "items", "paging": {"method": "linkheader"}}}]);
    h.load(bundle).await;
    let job = h.run_with("f", RunRequest::default()).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let message = job.message.unwrap_or_default();
    assert!(
        message.contains("/admin/items") && message.contains("leaves"),
        "{message}"
    );
    assert!(
        source.received().iter().all(|r| r.path == "/api/items"),
        "the link was not followed"
    );
}

// 3. Idempotency keys --------------------------------------------------------------------

/// Cuts off the first reply to each idempotency key mid-way; answers the repeat.
async fn cutting_off_first_replies() -> TestServer {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    TestServer::start(move |_, r| {
        let key = r
            .headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default();
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(key.clone()).or_default();
        *n += 1;
        if *n == 1 || key.is_empty() {
            Answer::DropMidReply
        } else {
            Answer::json(201, json!({"id": key}))
        }
    })
    .await
}

fn keys_of(server: &TestServer) -> HashMap<String, usize> {
    let mut keys = HashMap::new();
    for r in server.received() {
        let key = r
            .headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default();
        *keys.entry(key).or_default() += 1;
    }
    keys
}

#[tokio::test]
async fn a_post_cut_off_mid_reply_is_retried_with_the_same_idempotency_key() {
    let target = cutting_off_first_replies().await;
    let h = loaded(&target.base_url, json!({}), json!({})).await;
    let job = h.run("f", orders(18)).await;
    assert_eq!(job.num_success, 18, "{:?}", h.errors(&job.id).await);
    let keys = keys_of(&target);
    assert_eq!(keys.len(), 18, "one key per record: {keys:?}");
    assert!(
        keys.values().all(|&n| n == 2),
        "each sent twice, same key: {keys:?}"
    );
    assert!(
        keys.keys().all(|k| k.starts_with(&format!("{}:", job.id))),
        "derived from the job, page, processor and record: {keys:?}"
    );
}

#[tokio::test]
async fn one_request_per_page_carries_the_pages_key_and_is_retried_with_it() {
    let target = cutting_off_first_replies().await;
    let h = loaded(
        &target.base_url,
        json!({"http": {"requestMode": "page", "body": "{{json records}}"}}),
        json!({}),
    )
    .await;
    let job = h.run("f", orders(3)).await;
    assert_eq!(job.num_success, 3, "{:?}", h.errors(&job.id).await);
    let keys = keys_of(&target);
    assert_eq!(keys.len(), 1, "one key for the page's request: {keys:?}");
    let (key, sends) = keys.iter().next().unwrap();
    assert_eq!(*sends, 2, "cut off, then sent again with the same key");
    assert!(
        key.starts_with(&format!("{}:", job.id)) && key.contains(":0:batch-"),
        "{key}"
    );
    assert_eq!(target.received()[1].json().as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn without_retry_ambiguous_a_post_cut_off_is_not_sent_again_but_a_429_is() {
    // Every record: a 429 first (declined, safe to repeat), then a reply cut off.
    let target = TestServer::start(|n, _| {
        if n < 18 {
            Answer::json(429, json!({}))
        } else {
            Answer::DropMidReply
        }
    })
    .await;
    let h = loaded(
        &target.base_url,
        json!({"http": {"retryAmbiguous": false}}),
        json!({"concurrencyLevel": 18}),
    )
    .await;
    let job = h.run("f", orders(18)).await;
    assert_eq!((job.num_success, job.num_error), (0, 18));
    assert_eq!(
        target.received().len(),
        36,
        "18 declined and repeated, 18 not repeated"
    );
    let e = &h.errors(&job.id).await[0];
    assert!(
        e.message.contains("may have acted") && e.message.contains("retryAmbiguous"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn the_idempotency_header_can_be_renamed_or_turned_off() {
    let target = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    let mut bundle = http_bundle(
        &target.base_url,
        json!({"http": {"idempotencyKeyHeader": "X-Request-Id"}}),
        json!({}),
    );
    bundle["imports"].as_array_mut().unwrap().push(json!({"_id": "off", "name": "off", "_connectionId": "conn", "type": "http", "http": {"relativeURI": "/off", "idempotencyKeyHeader": null}}));
    bundle["flows"].as_array_mut().unwrap().push(json!({"_id": "f2", "name": "f2", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "off"}]}));
    h.load(bundle).await;
    h.run("f", orders(1)).await;
    h.run("f2", orders(1)).await;
    let got = target.received();
    assert!(got[0].headers["x-request-id"].contains(':'));
    assert!(!got[0].headers.contains_key("idempotency-key"));
    assert!(!got[1].headers.contains_key("idempotency-key"));
    assert!(!got[1].headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn a_page_rendered_again_elsewhere_carries_the_same_keys() {
    // Two processes that share nothing (not even the ledger) translate and deliver the same
    // page: the target sees the same key for each record both times.
    let target = TestServer::always(201, json!({})).await;
    for _ in 0..2 {
        let h = loaded(&target.base_url, json!({}), json!({})).await;
        let s = h.sluice();
        open_job(&s, "j1").await;
        let records = (0..3)
            .map(|i| PageRecord::new(format!("g0-p000000-r{i:05}"), json!({"name": i})))
            .collect();
        let page = first_page("j1", records);
        s.handle(Stage::Translate, StageMessage::Page(page))
            .await
            .unwrap();
        h.wait("j1").await;
    }
    let keys = keys_of(&target);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.values().all(|&n| n == 2), "{keys:?}");
    assert!(
        keys.contains_key("j1:g0-p000000:0:g0-p000000-r00001"),
        "{keys:?}"
    );
}

// 4. Safe defaults -----------------------------------------------------------------------

#[tokio::test]
async fn deployed_defaults_refuse_loopback_unless_the_connection_opts_in() {
    let target = TestServer::always(200, json!({})).await;
    let by_name = target.base_url.replace("127.0.0.1", "localhost");
    for base in [target.base_url.clone(), by_name] {
        // Settings::default() is what the Lambda functions run with.
        let h = Harness::with_settings(Settings::default());
        h.load(http_bundle(
            &base,
            json!({}),
            json!({"http": {"retry": {"maxAttempts": 1}}}),
        ))
        .await;
        let job = h.run("f", orders(1)).await;
        let e = &h.errors(&job.id).await[0];
        assert_eq!(e.code, FailureCode::AddressRefused, "{base}: {e:?}");
        assert!(e.message.contains("allowPrivateAddresses"), "{}", e.message);
    }
    assert!(target.received().is_empty());
    let h = Harness::with_settings(Settings::default());
    h.load(http_bundle(
        &target.base_url,
        json!({}),
        json!({"http": {"allowPrivateAddresses": true}}),
    ))
    .await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_success, 1, "{:?}", h.errors(&job.id).await);
}
