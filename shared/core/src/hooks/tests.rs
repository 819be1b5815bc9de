//! The engine itself: answers, exceptions with their line, logs, compile-once, and the
//! sandbox (time, memory, no host access) leaving the engine healthy.

use super::*;
use serde_json::json;
use std::time::Instant;

fn script(id: &str, content: &str) -> Arc<Script> {
    Arc::new(Script {
        id: id.into(),
        name: id.into(),
        description: None,
        content: content.into(),
        integration_id: None,
        created_at: None,
        last_modified: None,
    })
}

fn scripts() -> Scripts {
    Scripts::new(ScriptLimits {
        timeout: Duration::from_millis(300),
        memory_bytes: 16 * 1024 * 1024,
    })
}

#[tokio::test]
async fn a_function_gets_its_options_and_its_answer_comes_back_as_json() {
    let s = scripts();
    let js = script(
        "s1",
        "function preMap(options) {\n  return options.data.map(d => ({data: {...d, n: d.n * 2}}));\n}",
    );
    let out = s
        .call(js, "preMap", &json!({"data": [{"n": 1}, {"n": 21}]}))
        .await;
    assert_eq!(
        out.result,
        Ok(json!([{"data": {"n": 2}}, {"data": {"n": 42}}]))
    );
}

#[tokio::test]
async fn an_exception_carries_the_scripts_message_and_line() {
    let s = scripts();
    let js = script(
        "s1",
        "function f(o) {\n  let x = 1;\n  throw new Error('no total on ' + o.id);\n}",
    );
    let out = s.call(js, "f", &json!({"id": "A7"})).await;
    match out.result {
        Err(ScriptError::Thrown { message, line }) => {
            assert_eq!(message, "no total on A7");
            assert_eq!(line, Some(3));
        }
        other => panic!("{other:?}"),
    }
    let bad = script("s2", "function f(o) {\n  return o.;\n}");
    let out = s.call(bad, "f", &json!({})).await;
    assert!(
        matches!(&out.result, Err(ScriptError::Compile { line: Some(2), .. })),
        "{:?}",
        out.result
    );
    let out = s.call(script("s3", "var f = 1;"), "g", &json!({})).await;
    assert_eq!(out.result, Err(ScriptError::NoFunction("g".into())));
}

#[tokio::test]
async fn console_log_lines_come_back_with_the_answer() {
    let s = scripts();
    let js = script(
        "s1",
        "function f(o) { console.log('seen', o.data.length, {a: 1}); return null; }",
    );
    let out = s.call(js, "f", &json!({"data": [1, 2]})).await;
    assert_eq!(out.result, Ok(Value::Null));
    assert_eq!(out.logs, vec![r#"seen 2 {"a":1}"#.to_string()]);
}

#[tokio::test]
async fn a_script_is_compiled_once_and_again_only_when_its_source_changes() {
    let s = scripts();
    let v1 = "var calls = 0;\nfunction f() { calls += 1; return calls; }";
    for expected in [1, 2, 3] {
        let out = s.call(script("s1", v1), "f", &json!({})).await;
        assert_eq!(
            out.result,
            Ok(json!(expected)),
            "the compiled script is reused"
        );
    }
    let v2 = "var calls = 100;\nfunction f() { calls += 1; return calls; }";
    let out = s.call(script("s1", v2), "f", &json!({})).await;
    assert_eq!(
        out.result,
        Ok(json!(101)),
        "an edited script is compiled again"
    );
    // Scripts do not share globals.
    let other = "function f() { return typeof calls; }";
    let out = s.call(script("s2", other), "f", &json!({})).await;
    assert_eq!(out.result, Ok(json!("undefined")));
}

#[tokio::test]
async fn the_sandbox_stops_loops_and_memory_bombs_refuses_host_access_and_stays_healthy() {
    let s = scripts();
    let js = script(
        "sandbox",
        r#"
function loop() { while (true) {} }
function caughtLoop() { try { while (true) {} } catch (e) { return 'escaped'; } }
function bomb() { const a = []; while (true) { a.push(new Array(100000).fill('x')); } }
function needsFs() { return require('fs').readFileSync('/etc/passwd', 'utf8'); }
function fetches() { return fetch('http://127.0.0.1:1/'); }
function std() { return typeof std !== 'undefined' || typeof os !== 'undefined' ? 'host' : 'none'; }
function ok(o) { return o.n + 1; }
"#,
    );
    let started = Instant::now();
    let out = s.call(js.clone(), "loop", &json!({})).await;
    assert_eq!(
        out.result,
        Err(ScriptError::TimedOut(Duration::from_millis(300)))
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped near the limit"
    );
    let out = s.call(js.clone(), "caughtLoop", &json!({})).await;
    assert_eq!(
        out.result,
        Err(ScriptError::TimedOut(Duration::from_millis(300))),
        "the interrupt cannot be caught"
    );
    let out = s.call(js.clone(), "bomb", &json!({})).await;
    assert_eq!(out.result, Err(ScriptError::OutOfMemory(16 * 1024 * 1024)));
    let out = s.call(js.clone(), "needsFs", &json!({})).await;
    match &out.result {
        Err(ScriptError::Thrown { message, line }) => {
            assert!(message.contains("require is not defined"), "{message}");
            assert_eq!(*line, Some(5));
        }
        other => panic!("{other:?}"),
    }
    let out = s.call(js.clone(), "fetches", &json!({})).await;
    assert!(
        matches!(&out.result, Err(ScriptError::Thrown { message, .. }) if message.contains("fetch is not defined")),
        "{:?}",
        out.result
    );
    // The engine goes on: the same script (compiled again) and others answer.
    let out = s.call(js.clone(), "ok", &json!({"n": 41})).await;
    assert_eq!(out.result, Ok(json!(42)));
    let out = s
        .call(
            script("other", "function f() { return [1,2,3].map(x => x * 2); }"),
            "f",
            &json!({}),
        )
        .await;
    assert_eq!(out.result, Ok(json!([2, 4, 6])));
}

#[tokio::test]
async fn es2020_features_are_there() {
    let s = scripts();
    let js = script(
        "es",
        "function f(o) { const big = 2n ** 64n; return { opt: o?.missing?.deep ?? 'dflt', big: big.toString(), all: Object.fromEntries([['a', 1]]) }; }",
    );
    let out = s.call(js, "f", &json!({})).await;
    assert_eq!(
        out.result,
        Ok(json!({"opt": "dflt", "big": "18446744073709551616", "all": {"a": 1}}))
    );
}

#[test]
fn limits_come_from_the_environment_and_bad_values_are_named() {
    use crate::runtime::tests::vars;
    assert_eq!(
        ScriptLimits::from_vars(vars(&[])).unwrap(),
        ScriptLimits::default()
    );
    let set = ScriptLimits::from_vars(vars(&[
        (ENV_SCRIPT_TIMEOUT_MS, "250"),
        (ENV_SCRIPT_MEMORY_MB, "32"),
    ]))
    .unwrap();
    assert_eq!(set.timeout, Duration::from_millis(250));
    assert_eq!(set.memory_bytes, 32 * 1024 * 1024);
    let err = ScriptLimits::from_vars(vars(&[(ENV_SCRIPT_MEMORY_MB, "lots")])).unwrap_err();
    assert!(err.to_string().contains(ENV_SCRIPT_MEMORY_MB), "{err}");
}

#[tokio::test]
async fn the_engine_starts_at_the_first_call_not_before() {
    let s = scripts();
    assert!(!s.started());
    let out = s
        .call(script("s", "function f() { return 1; }"), "f", &json!({}))
        .await;
    assert_eq!(out.result, Ok(json!(1)));
    assert!(s.started());
}
