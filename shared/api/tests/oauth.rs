//! The OAuth2 authorization-code routes of the API: the authorization URL behind the key, the
//! callback outside it refusing what it did not issue. (The whole exchange against a provider
//! on loopback: shared/cli/tests/oauth.rs, through `sluice dev`.)

mod common;

use common::Api;
use serde_json::json;

fn code_connection(id: &str, grant: &str) -> serde_json::Value {
    json!({"_id": id, "name": id, "type": "http", "http": {"baseURI": "https://api.example.com",
        "auth": {"type": "oauth2", "oauth2": {"grantType": grant, "clientId": "cid",
            "clientSecret": "csecret-literal", "tokenURI": "https://auth.example.com/token",
            "authURI": "https://auth.example.com/authorize?audience=api",
            "redirectURI": "https://sluice.example.com/oauth2/callback",
            "refreshToken": "secret:CRM_RT"}}}})
}

#[tokio::test]
async fn authorize_issues_a_url_with_a_fresh_state_and_the_callback_refuses_the_rest() {
    let api = Api::start().await;
    let created = api
        .post("/connections", code_connection("crm", "authorization_code"))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(
        !created.text.contains("csecret-literal"),
        "{}",
        created.text
    );

    let first = api
        .post("/connections/crm/oauth2/authorize", json!({}))
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let url = url::Url::parse(first.json["authorizationURL"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["audience"], "api", "the authURI's own query is kept");
    assert_eq!(
        q["redirect_uri"],
        "https://sluice.example.com/oauth2/callback"
    );
    assert!(
        q["state"].len() >= 43 && !q.contains_key("code_challenge"),
        "{q:?}"
    );
    assert!(first.json["expiresAt"].is_string());
    let second = api
        .post("/connections/crm/oauth2/authorize", json!({}))
        .await;
    assert_ne!(
        first.json["authorizationURL"], second.json["authorizationURL"],
        "a state per URL"
    );

    let unauthenticated = api
        .send(
            reqwest::Method::POST,
            "/connections/crm/oauth2/authorize",
            None,
            None,
        )
        .await;
    assert_eq!(unauthenticated.status, 401);

    // Not an authorization-code connection: refused naming the field.
    let cc = code_connection("cc", "client_credentials");
    let mut cc = cc;
    let o = cc["http"]["auth"]["oauth2"].as_object_mut().unwrap();
    for f in ["authURI", "redirectURI", "refreshToken"] {
        o.remove(f);
    }
    assert_eq!(api.post("/connections", cc).await.status, 201);
    let refused = api
        .post("/connections/cc/oauth2/authorize", json!({}))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.fields(), ["http.auth.oauth2.grantType"]);

    // The callback, with no key: the provider's refusal, no code, a state never issued.
    for (query, field) in [
        ("error=access_denied&error_description=nope", "error"),
        ("state=abc", "code"),
        ("code=c1&state=never-issued", "state"),
    ] {
        let r = api
            .send(
                reqwest::Method::GET,
                &format!("/oauth2/callback?{query}"),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert_eq!(r.fields(), [field], "{query}");
        assert!(
            !r.text.contains("nope"),
            "the provider's text is not repeated"
        );
    }
}
