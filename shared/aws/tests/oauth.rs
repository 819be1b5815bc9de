//! The refresh-token grant on the AWS adapters (moto): the refresh token a token server
//! rotates is written to Secrets Manager, and another Lambda instance refreshes with it.

mod common;

use serde_json::json;
use sluice_aws::SecretsManagerStore;
use sluice_core::ports::SecretStore;
use sluice_model::{JobStatus, RunKind};
use sluice_testkit::http::{Answer, TestServer};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn a_rotated_refresh_token_goes_to_secrets_manager_and_another_instance_uses_it() {
    let Some(env) =
        common::env("a_rotated_refresh_token_goes_to_secrets_manager_and_another_instance_uses_it")
            .await
    else {
        return;
    };
    // Strict rotation: each refresh token works once; /orders takes the last access token.
    let valid = Arc::new(Mutex::new(("rt-0".to_string(), String::new(), 0usize)));
    let v = valid.clone();
    let server = TestServer::start(move |_, r| {
        let mut s = v.lock().unwrap();
        if r.path == "/token" {
            if !r.body.contains(&format!("refresh_token={}", s.0)) {
                return Answer::json(400, json!({"error": "invalid_grant"}));
            }
            s.2 += 1;
            let n = s.2;
            (s.0, s.1) = (format!("rt-{n}"), format!("at-{n}"));
            return Answer::json(
                200,
                json!({"access_token": s.1, "refresh_token": s.0, "expires_in": 3600}),
            );
        }
        match r.headers.get("authorization") {
            Some(a) if *a == format!("Bearer {}", s.1) => Answer::json(201, json!({})),
            _ => Answer::json(401, json!({})),
        }
    })
    .await;
    let config = sluice_aws::config::sdk_config(Some(&env.moto.endpoint_url())).await;
    let secrets = SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&config),
        &env.harness.settings.secret_prefix,
    );
    // The deployment's first refresh token, in Secrets Manager.
    secrets.write("CRM_RT", "rt-0").await.unwrap();
    let connection = json!({"_id": "c", "name": "c", "type": "http", "http": {
        "baseURI": server.base_url, "auth": {"type": "oauth2", "oauth2": {
            "grantType": "refresh_token", "tokenURI": format!("{}/token", server.base_url),
            "clientId": "cid", "clientSecret": "csecret", "refreshToken": "secret:CRM_RT"}}}});
    let sluice = env.harness.sluice.clone();
    common::define_flow(
        &sluice,
        connection,
        json!({"_id": "e", "name": "e", "type": "webhook"}),
    )
    .await;

    let job_id = common::start_as(&sluice, "f", vec![json!({"n": 1})], RunKind::Webhook).await;
    let job = env
        .harness
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(
        secrets.read("CRM_RT").await.unwrap().as_deref(),
        Some("rt-1")
    );

    // A second instance has no token cached, and rt-0 is spent.
    let other = env.harness.another_instance().await.unwrap();
    let job_id =
        common::start_as(&other.sluice, "f", vec![json!({"n": 2})], RunKind::Webhook).await;
    let job = other
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(
        secrets.read("CRM_RT").await.unwrap().as_deref(),
        Some("rt-2")
    );
    assert_eq!(
        valid.lock().unwrap().2,
        2,
        "one refresh per instance, none refused"
    );
}
