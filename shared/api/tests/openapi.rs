//! The published document: valid OpenAPI 3.1 (checked by openapi-spec-validator, a
//! maintained validator from PyPI that infra/setup-moto.sh installs), unique operationIds,
//! query parameters in the query, security on every route but the open ones, schemas with
//! examples; and every route in it enforces what it documents.

mod common;
use common::*;
use serde_json::Value;
use sluice_api::routes::{listeners, meta, oauth};
use std::collections::BTreeSet;

fn doc() -> &'static Value {
    sluice_api::schemas::document_json()
}

fn operations() -> Vec<(String, String, &'static Value)> {
    let mut out = Vec::new();
    for (path, item) in doc()["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op));
        }
    }
    out
}

#[test]
fn document_passes_the_openapi_validator() {
    let validator = sluice_testkit::moto::venv_dir().join("bin/openapi-spec-validator");
    if !validator.exists() {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_MOTO").is_none(),
            "{} is missing: run infra/setup-moto.sh",
            validator.display()
        );
        eprintln!(
            "skipped: {} missing (run infra/setup-moto.sh)",
            validator.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc()).unwrap()).unwrap();
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openapi-spec-validator: {said}");
    assert!(said.contains("OK"), "{said}");
    assert_eq!(doc()["openapi"], "3.1.0");
}

#[test]
fn operation_ids_are_unique_and_filters_are_query_parameters() {
    let ids: Vec<&str> = operations()
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    for (method, path, op) in operations() {
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            let place = p["in"].as_str().unwrap();
            let in_path = path.contains(&format!("{{{name}}}"));
            assert_eq!(
                place,
                if in_path { "path" } else { "query" },
                "{method} {path}: parameter {name}"
            );
        }
    }
    let listed = |path: &str| {
        doc()["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(listed("/flows"), ["_integrationId", "disabled"]);
    assert!(listed("/jobs").contains(&"_flowId".to_string()));
}

/// Paths served without a bearer key: health, this document, the webhook listeners, the
/// OAuth2 callback.
fn is_open(path: &str) -> bool {
    meta::OPEN_PATHS.contains(&path)
        || listeners::PATHS.contains(&path)
        || path == oauth::CALLBACK_PATH
}

#[test]
fn every_operation_documents_its_bodies_errors_and_security() {
    for (method, path, op) in operations() {
        let open = is_open(&path);
        let security = op.get("security").and_then(Value::as_array);
        if open {
            assert!(
                security.is_none_or(|s| s.iter().all(|r| r.as_object().unwrap().is_empty())),
                "{path} is open"
            );
        } else {
            assert_eq!(
                security.unwrap()[0]["bearer"],
                Value::Array(vec![]),
                "{method} {path}"
            );
            assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
        }
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('2') && status != "204" {
                let content = &response["content"];
                assert!(content.is_object(), "{method} {path} {status}: no content");
                let schema = &content["application/json"]["schema"];
                // CSV downloads, and the OAuth2 callback's page for the browser, are not JSON.
                assert!(
                    schema.is_object()
                        || content["text/csv"].is_object()
                        || (path == oauth::CALLBACK_PATH && content["text/plain"].is_object()),
                    "{method} {path} {status}"
                );
                assert_ne!(
                    schema,
                    &serde_json::json!({}),
                    "{method} {path} {status}: schema is {{}}"
                );
            }
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
        if let Some(body) = op.get("requestBody") {
            for s in ["400", "413", "415"] {
                assert!(op["responses"][s].is_object(), "{method} {path}: {s}");
            }
            assert!(body["content"]["application/json"]["schema"].is_object());
        }
        if path.contains('{') {
            assert!(op["responses"]["404"].is_object(), "{method} {path}: 404");
        }
    }
    // Every body and answer that names a component shows an example of it (a page of a
    // list shows its items').
    for (method, path, op) in operations() {
        let bodies = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(status, _)| status.starts_with('2'))
            .map(|(_, r)| &r["content"]["application/json"]["schema"])
            .chain([&op["requestBody"]["content"]["application/json"]["schema"]]);
        for schema in bodies {
            let schema = schema.get("items").unwrap_or(schema);
            let Some(name) = schema["$ref"]
                .as_str()
                .map(|r| r.rsplit('/').next().unwrap())
            else {
                continue;
            };
            let component = &doc()["components"]["schemas"][name];
            let shown = if name.starts_with("Listing_") {
                // The page's items, inline or by reference.
                let items = &component["properties"]["items"]["items"];
                match items["$ref"].as_str() {
                    Some(r) => &doc()["components"]["schemas"][r.rsplit('/').next().unwrap()],
                    None => items,
                }
            } else {
                component
            };
            assert!(
                shown["example"].is_object() || name.ends_with("Changes"),
                "{method} {path}: {name} has no example"
            );
        }
    }
    let run = &doc()["paths"]["/flows/{id}/run"]["post"]["requestBody"];
    assert_ne!(run["required"], true, "the run body is optional");
    for name in [
        "Connection",
        "Export",
        "Import",
        "Flow",
        "Integration",
        "Job",
        "JobError",
        "ErrorBody",
    ] {
        let schema = &doc()["components"]["schemas"][name];
        assert!(
            schema["example"].is_object() || schema["examples"].is_array(),
            "{name} has an example"
        );
    }
    let flow = &doc()["components"]["schemas"]["Flow"];
    assert!(flow["required"]
        .as_array()
        .unwrap()
        .contains(&"name".into()));
    assert_eq!(flow["additionalProperties"], false);
    assert!(doc()["components"]["schemas"]["FlowChanges"]["required"].is_null());
}

/// Every protected operation, called without a key, answers 401: the document's security
/// is what the router enforces.
#[tokio::test]
async fn every_protected_route_refuses_a_missing_key() {
    let api = Api::start().await;
    for (method, path, _) in operations() {
        let concrete = path
            .replace("{id}", "x1")
            .replace("{errorId}", "e1")
            .replace("{token}", "t1");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = api.send(method.clone(), &concrete, None, None).await;
        if meta::OPEN_PATHS.contains(&path.as_str()) {
            assert_eq!(r.status, 200, "{method} {path}");
        } else if listeners::PATHS.contains(&path.as_str()) {
            // No key asked: the export's own check would decide (here: no such export).
            assert_eq!(r.status, 404, "{method} {path}");
        } else if path == oauth::CALLBACK_PATH {
            // No key asked: the state decides (here: there is none).
            assert_eq!(r.status, 400, "{method} {path}");
        } else {
            assert_eq!(r.status, 401, "{method} {path}");
            assert_eq!(r.error().0, "unauthorized");
        }
    }
}

/// The examples in the schemas are accepted by the API they document.
#[tokio::test]
async fn the_schema_examples_are_accepted() {
    let api = Api::start().await;
    let example = |name: &str| doc()["components"]["schemas"][name]["example"].clone();
    let mut connection = example("Connection");
    connection["http"]["baseURI"] = "http://127.0.0.1:9/v1".into();
    for (path, body) in [
        ("/integrations", example("Integration")),
        ("/connections", connection),
        ("/exports", example("Export")),
        ("/imports", example("Import")),
        ("/flows", example("Flow")),
    ] {
        let r = api.post(path, body).await;
        assert_eq!(r.status, 201, "{path}: {}", r.text);
    }
    let r = api
        .post("/flows/orders-to-erp/run", example("RunBody"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Automatic retry is in the document: the flow's setting (with its example and limits), and
/// on a job its link, its attempt and when its next retry is due; the new codes and trigger.
#[test]
fn automatic_retry_is_documented() {
    let schemas = &doc()["components"]["schemas"];
    let setting = &schemas["AutoRetry"];
    assert!(setting["example"].is_object(), "{setting}");
    for field in ["on", "scheduleSeconds", "maxAttempts"] {
        assert!(
            setting["properties"][field].is_object(),
            "AutoRetry.{field}"
        );
    }
    assert!(
        schemas["Flow"]["properties"]["autoRetry"]
            .to_string()
            .contains("AutoRetry"),
        "{}",
        schemas["Flow"]["properties"]["autoRetry"]
    );
    let job = &schemas["Job"]["properties"];
    for field in ["_retryOf", "autoRetry", "nextRetryAt"] {
        assert!(job[field].is_object(), "Job.{field}");
    }
    assert!(schemas["RetryAttempt"]["properties"]["_originalJobId"].is_object());
    let text = schemas.to_string();
    assert!(
        text.contains("\"maybe_delivered\""),
        "FailureCode has maybe_delivered"
    );
    assert!(text.contains("\"auto_retry\""), "RunKind has auto_retry");
}
