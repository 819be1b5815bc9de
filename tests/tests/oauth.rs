//! OAuth 2.0 beyond client credentials, against a real token server on loopback: the
//! refresh-token grant with rotation stored across processes, one refresh per revoked token,
//! and no secret in what Sluice says.

use serde_json::{json, Value};
use sluice_core::ports::SecretStore;
use sluice_e2e::*;
use sluice_embedded::SqliteStore;
use sluice_model::Connection;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A token server and API in one: `/token` takes the refresh-token grant and rotates strictly
/// (each refresh token works once, as servers that rotate do); `/orders` takes the access
/// tokens it issued and answers 401 to any other.
#[derive(Default)]
struct AuthState {
    refresh: String,
    access: HashSet<String>,
    issued: usize,
    refused: usize,
}

struct AuthServer {
    server: TestServer,
    state: Arc<Mutex<AuthState>>,
}

impl AuthServer {
    async fn start(first_refresh: &str, delay: Duration) -> AuthServer {
        let state = Arc::new(Mutex::new(AuthState {
            refresh: first_refresh.to_string(),
            ..Default::default()
        }));
        let s = state.clone();
        let server = TestServer::start(move |_, r| {
            let answer = if r.path == "/token" {
                token_answer(&mut s.lock().unwrap(), r)
            } else {
                orders_answer(&s.lock().unwrap(), r)
            };
            Answer::Slow {
                delay,
                then: Box::new(answer),
            }
        })
        .await;
        AuthServer { server, state }
    }

    fn token_uri(&self) -> String {
        format!("{}/token", self.server.base_url)
    }

    /// `(refreshes granted, refreshes refused, the refresh token now valid)`.
    fn refreshes(&self) -> (usize, usize, String) {
        let s = self.state.lock().unwrap();
        (s.issued, s.refused, s.refresh.clone())
    }
}

fn form(body: &str) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn token_answer(s: &mut AuthState, r: &Received) -> Answer {
    let f = form(&r.body);
    assert_eq!(r.headers["authorization"], "Basic Y2lkOmNzZWNyZXQ=");
    assert_eq!(f["grant_type"], "refresh_token");
    if f["refresh_token"] != s.refresh {
        s.refused += 1;
        // Echoes what it was sent, as some servers do: Sluice must not repeat it.
        return Answer::json(
            400,
            json!({"error": "invalid_grant", "error_description": format!("refresh token {} is not valid", f["refresh_token"])}),
        );
    }
    s.issued += 1;
    let n = s.issued;
    s.refresh = format!("rt-{n}");
    s.access.insert(format!("at-{n}"));
    Answer::json(
        200,
        json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 3600, "refresh_token": s.refresh}),
    )
}

fn orders_answer(s: &AuthState, r: &Received) -> Answer {
    let token = r
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) if s.access.contains(t) => Answer::json(201, json!({"ok": true})),
        _ => Answer::json(401, json!({"error": "invalid_token"})),
    }
}

fn refresh_connection(token_uri: &str) -> Value {
    json!({"http": {"auth": {"type": "oauth2", "oauth2": {
        "tokenURI": token_uri, "grantType": "refresh_token", "clientId": "cid",
        "clientSecret": "csecret", "refreshToken": "secret:CRM_RT"}}}})
}

async fn connection(h: &Harness) -> Connection {
    let doc = h
        .sluice()
        .store
        .get_definition(sluice_core::ports::Kind::Connection, "conn")
        .await
        .unwrap()
        .unwrap();
    serde_json::from_value(doc).unwrap()
}

/// The first refresh token where a deployment would put it, in the store's file.
async fn seed_refresh_token(dir: &std::path::Path, token: &str) -> SqliteStore {
    let store = SqliteStore::open(&dir.join("sluice.db")).unwrap();
    store.write("CRM_RT", token).await.unwrap();
    store
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_and_the_next_process_uses_it() {
    let auth = AuthServer::start("rt-0", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let store = seed_refresh_token(dir.path(), "rt-0").await;
    let first = Harness::on_disk(dir.path());
    first
        .load(http_bundle(
            &auth.server.base_url,
            json!({}),
            refresh_connection(&auth.token_uri()),
        ))
        .await;
    let job = first.run("f", orders(3)).await;
    assert_eq!(job.num_success, 3, "{:?}", first.errors(&job.id).await);
    assert_eq!(auth.refreshes(), (1, 0, "rt-1".into()));
    assert_eq!(store.read("CRM_RT").await.unwrap().as_deref(), Some("rt-1"));

    // Another process: no token cached, and rt-0 is spent; it must refresh with rt-1.
    let second = Harness::on_disk(dir.path());
    let job = second.run("f", orders(2)).await;
    assert_eq!(job.num_success, 2, "{:?}", second.errors(&job.id).await);
    assert_eq!(auth.refreshes(), (2, 0, "rt-2".into()));
    assert_eq!(store.read("CRM_RT").await.unwrap().as_deref(), Some("rt-2"));
}

#[tokio::test]
async fn two_processes_refreshing_at_once_lose_no_rotation() {
    // Slow answers: without the refresh lock both would send rt-0, and one be refused.
    let auth = AuthServer::start("rt-0", Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = seed_refresh_token(dir.path(), "rt-0").await;
    let (a, b) = (Harness::on_disk(dir.path()), Harness::on_disk(dir.path()));
    a.load(http_bundle(
        &auth.server.base_url,
        json!({}),
        refresh_connection(&auth.token_uri()),
    ))
    .await;
    let c = connection(&a).await;
    let (sa, sb) = (a.sluice(), b.sluice());
    let (ta, tb) = tokio::join!(
        sluice_core::stages::deliver::access_token(&sa, &c),
        sluice_core::stages::deliver::access_token(&sb, &c),
    );
    let mut tokens = vec![ta.unwrap(), tb.unwrap()];
    tokens.sort();
    assert_eq!(tokens, ["at-1", "at-2"], "each process got its own token");
    assert_eq!(auth.refreshes(), (2, 0, "rt-2".into()), "none refused");
    assert_eq!(
        store.read("CRM_RT").await.unwrap().as_deref(),
        Some("rt-2"),
        "the last rotation is the one stored"
    );
}

#[tokio::test]
async fn a_401_with_a_cached_token_causes_one_refresh_and_each_record_is_delivered_once() {
    let auth = AuthServer::start("rt-0", Duration::from_millis(20)).await;
    // The first refresh token from the deployment's secrets (read only); rotations go to the
    // written secrets.
    let h = Harness::with_secrets(&[("CRM_RT", "rt-0")]);
    h.load(http_bundle(
        &auth.server.base_url,
        json!({}),
        refresh_connection(&auth.token_uri()),
    ))
    .await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_success, 1, "{:?}", h.errors(&job.id).await);
    assert_eq!(auth.refreshes().0, 1);

    // The API revokes the token early: the next records, sent at once, are all refused.
    auth.state.lock().unwrap().access.clear();
    let job = h.run("f", orders(10)).await;
    assert_eq!(job.num_success, 10, "{:?}", h.errors(&job.id).await);
    assert_eq!(
        auth.refreshes(),
        (2, 0, "rt-2".into()),
        "one refresh for all the records refused at once"
    );
    let received = auth.server.received();
    let mut taken: Vec<String> = received
        .iter()
        .filter(|r| r.path == "/orders")
        .filter(|r| r.headers["authorization"] == "Bearer at-2")
        .map(|r| r.json()["name"].as_str().unwrap().to_string())
        .collect();
    taken.sort();
    taken.dedup();
    assert_eq!(taken.len(), 10, "each record taken with the new token");
    let posts = received.iter().filter(|r| r.path == "/orders").count();
    assert!(posts <= 21, "at most one resend per record: {posts} posts");
}

#[tokio::test]
async fn a_refused_refresh_token_fails_the_records_without_repeating_any_secret() {
    let auth = AuthServer::start("rt-valid", Duration::ZERO).await;
    let h = Harness::with_secrets(&[("CRM_RT", "rt-revoked-7f3a")]);
    h.load(http_bundle(
        &auth.server.base_url,
        json!({}),
        refresh_connection(&auth.token_uri()),
    ))
    .await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_error, 1);
    assert_eq!(
        auth.refreshes().1,
        1,
        "the server refused the refresh token"
    );
    let errors = h.errors(&job.id).await;
    let text = serde_json::to_string(&errors).unwrap();
    assert!(text.contains("invalid_grant"), "{text}");
    for secret in ["rt-revoked-7f3a", "csecret", "Y2lkOmNzZWNyZXQ="] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[tokio::test]
async fn a_custom_token_refresh_takes_the_token_at_its_path_and_asks_again_after_a_401() {
    // `/auth/login` trades the API key in a JSON body for a token under data.token; `/orders`
    // takes the last token it gave.
    let current = Arc::new(Mutex::new(String::new()));
    let (c, logins) = (current.clone(), Arc::new(Mutex::new(0usize)));
    let l = logins.clone();
    let server = TestServer::start(move |_, r| match r.path.as_str() {
        "/auth/login" => {
            assert_eq!(r.method, "POST");
            assert_eq!(r.headers["content-type"], "application/json");
            assert_eq!(r.headers["x-client"], "sluice");
            assert!(
                !r.headers.contains_key("authorization"),
                "no connection auth here"
            );
            if r.json()["apiKey"] != "k-\"123" {
                return Answer::json(403, json!({"error": "bad key k-\"123?"}));
            }
            let mut n = l.lock().unwrap();
            *n += 1;
            *c.lock().unwrap() = format!("tok-{n}");
            Answer::json(
                200,
                json!({"data": {"token": format!("tok-{n}")}, "expires_in": 3600}),
            )
        }
        _ => {
            let want = format!("Token {}", c.lock().unwrap());
            match r.headers.get("authorization") {
                Some(v) if *v == want => Answer::json(201, json!({})),
                _ => Answer::json(401, json!({})),
            }
        }
    })
    .await;
    // The key holds a quote: the JSON body's template escapes it.
    let h = Harness::with_secrets(&[("SHOP_KEY", "k-\"123")]);
    let auth = json!({"type": "token", "token": {
        "scheme": "Token", "refreshRelativeURI": "/auth/login",
        "refreshBody": "{\"apiKey\": \"{{connection.http.auth.token.refreshToken}}\"}",
        "refreshHeaders": [{"name": "X-Client", "value": "sluice"}],
        "refreshToken": "secret:SHOP_KEY", "refreshTokenPath": "data.token"}});
    h.load(http_bundle(
        &server.base_url,
        json!({}),
        json!({"http": {"auth": auth}}),
    ))
    .await;
    let job = h.run("f", orders(4)).await;
    assert_eq!(job.num_success, 4, "{:?}", h.errors(&job.id).await);
    assert_eq!(*logins.lock().unwrap(), 1, "one token for every request");

    // The API forgets the token: one new login, every record taken.
    current.lock().unwrap().clear();
    let job = h.run("f", orders(4)).await;
    assert_eq!(job.num_success, 4, "{:?}", h.errors(&job.id).await);
    assert_eq!(*logins.lock().unwrap(), 2);
}

#[tokio::test]
async fn a_custom_token_refresh_without_a_token_at_its_path_fails_naming_the_path_not_the_reply() {
    let server = TestServer::start(|_, r| match r.path.as_str() {
        "/auth/login" => Answer::json(200, json!({"echo": "k-123", "token": null})),
        _ => Answer::json(201, json!({})),
    })
    .await;
    let h = Harness::with_secrets(&[("SHOP_KEY", "k-123")]);
    let auth = json!({"type": "token", "token": {
        "refreshRelativeURI": "/auth/login", "refreshMediaType": "urlencoded",
        "refreshBody": "key={{connection.http.auth.token.refreshToken}}",
        "refreshToken": "secret:SHOP_KEY", "refreshTokenPath": "token"}});
    h.load(http_bundle(
        &server.base_url,
        json!({}),
        json!({"http": {"auth": auth, "retry": {"maxAttempts": 1}}}),
    ))
    .await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_error, 1);
    let login = &server.received()[0];
    assert_eq!(login.body, "key=k-123");
    assert_eq!(
        login.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let text = serde_json::to_string(&h.errors(&job.id).await).unwrap();
    assert!(text.contains("no token at 'token'"), "{text}");
    assert!(!text.contains("k-123"), "the key leaked: {text}");
}
