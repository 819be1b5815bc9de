//! integrator.io compatibility, made precise: every export in tests/fixtures/integrator/ is
//! either accepted by `POST /flows/import-template` and read back with every field it gave,
//! or refused listing exactly the fields Sluice does not support, storing nothing.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// Is everything in `given` also in `stored` (which may add defaults and timestamps)?
fn kept(given: &Value, stored: &Value, at: &str) {
    match (given, stored) {
        (Value::Object(g), Value::Object(s)) => {
            for (k, v) in g {
                let inner = s.get(k).unwrap_or_else(|| panic!("{at}.{k} was dropped"));
                kept(v, inner, &format!("{at}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(s)) => {
            assert_eq!(g.len(), s.len(), "{at}");
            for (i, (a, b)) in g.iter().zip(s).enumerate() {
                kept(a, b, &format!("{at}[{i}]"));
            }
        }
        // 5 and 5.0 are the same number (an f64 field writes 5.0 back).
        (Value::Number(g), Value::Number(s)) => assert_eq!(g.as_f64(), s.as_f64(), "{at}"),
        _ => assert_eq!(given, stored, "{at}"),
    }
}

fn fixtures() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/integrator");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn integrator_io_exports_are_accepted_or_refused_with_exactly_the_unsupported_fields() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 5, "the suite has its fixtures");
    let (mut accepted, mut refused) = (0, 0);
    for (name, fixture) in fixtures {
        let api = Api::start().await;
        let template = fixture["template"].clone();
        let expected: BTreeSet<String> = fixture["unsupported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        let r = api.post("/flows/import-template", template.clone()).await;
        if expected.is_empty() {
            accepted += 1;
            assert_eq!(r.status, 201, "{name}: {}", r.text);
            for kind in ["connections", "exports", "imports", "flows"] {
                for given in template[kind].as_array().into_iter().flatten() {
                    let id = given["_id"].as_str().unwrap();
                    let stored = api.get(&format!("/{kind}/{id}")).await;
                    assert_eq!(stored.status, 200, "{name}: {kind}/{id}");
                    kept(given, &stored.json, &format!("{name}: {kind}/{id}"));
                }
            }
        } else {
            refused += 1;
            assert_eq!(r.status, 400, "{name}: {}", r.text);
            let listed: BTreeSet<String> = r.fields().into_iter().collect();
            assert_eq!(
                listed.len(),
                r.json["errors"].as_array().unwrap().len(),
                "{name}: every entry names its field once: {}",
                r.text
            );
            let missing: Vec<_> = expected.difference(&listed).collect();
            let extra: Vec<_> = listed.difference(&expected).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{name}: not listed {missing:?}; listed but not expected {extra:?}"
            );
            for e in r.json["errors"].as_array().unwrap() {
                assert_eq!(e["code"], "validation_error");
            }
            for kind in ["connections", "exports", "imports", "flows"] {
                assert_eq!(
                    api.get(&format!("/{kind}")).await.json,
                    serde_json::json!([]),
                    "{name}: nothing stored"
                );
            }
        }
    }
    assert!(accepted >= 2 && refused >= 3, "both outcomes are covered");
}
