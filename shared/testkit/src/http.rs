//! A scriptable HTTP target on 127.0.0.1: records what it receives and answers as told —
//! normally, slowly, with 429/500, by dropping the connection before answering or in the
//! middle of the reply.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Json {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
    /// Wait, then answer.
    Slow { delay: Duration, then: Box<Answer> },
    /// Close the connection without answering.
    Drop,
    /// Answer 200 with headers and the start of a body, then close the connection: the
    /// target has the request, the client gets no whole reply.
    DropMidReply,
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Answer {
        Answer::Json {
            status,
            body,
            headers: vec![],
        }
    }
    pub fn with_header(self, name: &str, value: &str) -> Answer {
        match self {
            Answer::Json {
                status,
                body,
                mut headers,
            } => {
                headers.push((name.into(), value.into()));
                Answer::Json {
                    status,
                    body,
                    headers,
                }
            }
            other => other,
        }
    }
}

/// What the server got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Decides the answer to the n-th request (0-based) given what arrived.
pub type Script = Arc<dyn Fn(usize, &Received) -> Answer + Send + Sync>;

struct Shared {
    script: Script,
    received: Mutex<Vec<Received>>,
    count: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

pub struct TestServer {
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Starts the server on a free loopback port.
    pub async fn start(
        script: impl Fn(usize, &Received) -> Answer + Send + Sync + 'static,
    ) -> TestServer {
        let shared = Arc::new(Shared {
            script: Arc::new(script),
            received: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer {
            base_url: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// Answers every request with `status` and `body`.
    pub async fn always(status: u16, body: Value) -> TestServer {
        Self::start(move |_, _| Answer::json(status, body.clone())).await
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let headers: HashMap<String, String> = headers_of(&parts.headers);
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    let n = s.count.fetch_add(1, Ordering::SeqCst);
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    s.received.lock().unwrap().push(received.clone());
    let mut answer = (s.script)(n, &received);
    let response = loop {
        match answer {
            Answer::Slow { delay, then } => {
                tokio::time::sleep(delay).await;
                answer = *then;
            }
            Answer::Json {
                status,
                body,
                headers,
            } => {
                let mut r = (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    axum::Json(body),
                )
                    .into_response();
                for (k, v) in headers {
                    r.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                break r;
            }
            Answer::DropMidReply => {
                let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                    Ok(Bytes::from_static(b"{\"id\": \"")),
                    Err(std::io::Error::other(
                        "dropping the connection mid-reply on purpose",
                    )),
                ];
                let mut r =
                    Response::new(axum::body::Body::from_stream(futures::stream::iter(chunks)));
                r.headers_mut()
                    .insert("content-type", "application/json".parse().unwrap());
                r.headers_mut()
                    .insert("content-length", "100".parse().unwrap());
                break r;
            }
            Answer::Drop => {
                s.in_flight.fetch_sub(1, Ordering::SeqCst);
                // Panicking inside the handler makes hyper close the connection unanswered.
                std::panic::resume_unwind(Box::new("dropping the connection on purpose"));
            }
        }
    };
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn headers_of(h: &HeaderMap) -> HashMap<String, String> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
