//! The authorization-code set-up end to end: `sluice oauth authorize` prints the URL, a
//! provider on loopback (this test, playing the browser too) calls back `sluice dev`, whose
//! callback exchanges the code (PKCE S256) and stores the refresh token; a forged or
//! replayed state is refused and exchanges nothing.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use sluice_core::ports::SecretStore;
use std::collections::HashMap;

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_dev_takes_the_authorization_callback_once_with_its_state_and_stores_the_refresh_token(
) {
    let provider = TestServer::start(|_, r| {
        let form: HashMap<String, String> = url::form_urlencoded::parse(r.body.as_bytes())
            .into_owned()
            .collect();
        if r.path == "/token" && form.get("code").map(String::as_str) == Some("code-1") {
            Answer::json(
                200,
                json!({"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600}),
            )
        } else {
            Answer::json(400, json!({"error": "invalid_grant"}))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut dev, base) = start_dev(&data).await;
    let redirect = format!("{base}/oauth2/callback");
    let connection = json!({"_id": "crm", "name": "CRM", "type": "http", "http": {
        "baseURI": provider.base_url, "auth": {"type": "oauth2", "oauth2": {
            "grantType": "authorization_code", "clientId": "cid", "clientSecret": "csecret",
            "authURI": format!("{}/authorize", provider.base_url),
            "tokenURI": format!("{}/token", provider.base_url),
            "redirectURI": redirect, "usePKCE": true, "scope": "orders offline_access",
            "refreshToken": "secret:CRM_RT"}}}});
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{base}/connections"))
        .bearer_auth("k")
        .json(&connection)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());

    let out = sluice()
        .args(["oauth", "authorize", "crm", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        url.starts_with(&format!("{}/authorize?", provider.base_url)),
        "{url}"
    );
    let q = query(&url);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "cid");
    assert_eq!(q["redirect_uri"], redirect);
    assert_eq!(q["scope"], "orders offline_access");
    assert_eq!(q["code_challenge_method"], "S256");
    let state = &q["state"];

    // A callback with a state Sluice did not issue (CSRF) is refused before any exchange.
    let forged = http
        .get(format!("{redirect}?code=code-1&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    assert!(provider.received().is_empty(), "nothing exchanged");

    let callback = format!("{redirect}?code=code-1&state={state}");
    let answer = http.get(&callback).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let page = answer.text().await.unwrap();
    assert!(page.contains("crm is authorized"), "{page}");
    for secret in ["at-1", "rt-1", "csecret", "code-1"] {
        assert!(!page.contains(secret), "{secret} in {page}");
    }
    let exchanges = provider.received();
    assert_eq!(exchanges.len(), 1);
    let form: HashMap<String, String> = url::form_urlencoded::parse(exchanges[0].body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["redirect_uri"], redirect);
    let verifier = &form["code_verifier"];
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        q["code_challenge"],
        "the verifier matches the challenge (S256)"
    );
    assert_eq!(
        exchanges[0].headers["authorization"],
        "Basic Y2lkOmNzZWNyZXQ="
    );

    // The same callback again (a replay): the state is spent.
    let replay = http.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert_eq!(provider.received().len(), 1, "nothing exchanged again");

    // The API shows the reference, not the secret.
    let shown = http
        .get(format!("{base}/connections/crm"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        shown.contains("secret:CRM_RT") && !shown.contains("csecret"),
        "{shown}"
    );
    signal(&dev, "TERM");
    dev.wait().unwrap();

    let store = sluice_embedded::SqliteStore::open(&data.join("sluice.db")).unwrap();
    assert_eq!(
        store.read("CRM_RT").await.unwrap().as_deref(),
        Some("rt-1"),
        "the refresh token is stored where runs read it"
    );
}
