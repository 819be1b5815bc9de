//! Scripts in flows: the hook points with integrator.io's contracts (export `preSavePage`;
//! import `preMap`, `postMap`, `postSubmit`; page processor `postResponseMap`), run in the
//! stage that needs them by the embedded engine (`engine.rs`, sluice-core's `hooks` feature).
//!
//! This module owns what a hook is called with and what its answer does to the page; the
//! engine owns running JavaScript within bounds. Invariants:
//! - A hook sees the records and the settings of its export or import, never a secret, unless
//!   the connection lists it in `scriptSecrets` (then `options.secrets.NAME`).
//! - An answer of the wrong shape (not an array, the wrong length, an element that is not an
//!   object) fails every record the hook was given, with a message naming the script, the
//!   function and what was wrong; so does an exception (with the script's message and line),
//!   an endless loop (the time limit) or a memory bomb (the heap limit). Nothing is dropped:
//!   each record given to a hook ends as a success, an ignore or a readable error.
//! - Without the `hooks` feature (the functions that run no scripts) the engine is a stub
//!   whose every call fails with a message saying so; nothing of QuickJS is linked.

#[cfg(feature = "hooks")]
mod engine;
#[cfg(not(feature = "hooks"))]
#[path = "no_engine.rs"]
mod engine;
pub mod export;
pub mod import;
pub mod processor;
mod shape;
pub(crate) mod shaping;
#[cfg(all(test, feature = "hooks"))]
mod tests;

use crate::runtime::number_var;
use crate::Sluice;
use serde_json::{Map, Value};
use sluice_model::{Connection, HookPoint, HookRef, Script};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How far one call of a script may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Per call (one call is one page): `SLUICE_SCRIPT_TIMEOUT_MS`, default 5000.
    pub timeout: Duration,
    /// The engine's heap: `SLUICE_SCRIPT_MEMORY_MB`, default 64.
    pub memory_bytes: usize,
}

pub const ENV_SCRIPT_TIMEOUT_MS: &str = "SLUICE_SCRIPT_TIMEOUT_MS";
pub const ENV_SCRIPT_MEMORY_MB: &str = "SLUICE_SCRIPT_MEMORY_MB";

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits {
            timeout: Duration::from_secs(5),
            memory_bytes: 64 * 1024 * 1024,
        }
    }
}

impl ScriptLimits {
    /// From the variables above, defaults for unset ones; the error names the variable.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<ScriptLimits> {
        let mut limits = ScriptLimits::default();
        let number = |name: &str, min| number_var(&lookup, name, "a whole number", min);
        if let Some(ms) = number(ENV_SCRIPT_TIMEOUT_MS, 10)? {
            limits.timeout = Duration::from_millis(ms);
        }
        if let Some(mb) = number(ENV_SCRIPT_MEMORY_MB, 8)? {
            limits.memory_bytes = (mb as usize) * 1024 * 1024;
        }
        Ok(limits)
    }

    pub fn from_env() -> anyhow::Result<ScriptLimits> {
        Self::from_vars(|name| std::env::var(name).ok())
    }
}

/// Why a call of a script gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptError {
    /// The source does not compile.
    Compile { message: String, line: Option<u32> },
    /// The script declares no function of that name.
    NoFunction(String),
    /// The function threw (or the engine refused something it did: a stack overflow).
    Thrown { message: String, line: Option<u32> },
    /// Stopped at the time limit.
    TimedOut(Duration),
    /// Stopped at the heap limit.
    OutOfMemory(usize),
    /// No engine to run it (a build without the `hooks` feature, or it failed to start).
    Unavailable(String),
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |line: &Option<u32>| line.map(|l| format!(" (line {l})")).unwrap_or_default();
        match self {
            ScriptError::Compile { message, line } => {
                write!(f, "does not compile{}: {message}", at(line))
            }
            ScriptError::NoFunction(name) => {
                write!(f, "declares no function '{name}' at its top level")
            }
            ScriptError::Thrown { message, line } => write!(f, "threw{}: {message}", at(line)),
            ScriptError::TimedOut(limit) => write!(
                f,
                "was stopped after {} ms, the time limit per call ({ENV_SCRIPT_TIMEOUT_MS}): does it loop for ever?",
                limit.as_millis()
            ),
            ScriptError::OutOfMemory(bytes) => write!(
                f,
                "ran out of memory: the script heap is {} MiB ({ENV_SCRIPT_MEMORY_MB})",
                bytes / (1024 * 1024)
            ),
            ScriptError::Unavailable(why) => write!(f, "could not run: {why}"),
        }
    }
}

/// What one call gave: its answer (as JSON) or why not, and what it logged.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutput {
    pub result: Result<Value, ScriptError>,
    pub logs: Vec<String>,
}

/// What several calls of one function gave (a script filter or transform: one per record).
#[derive(Debug, Clone, PartialEq)]
pub struct CallsOutput {
    pub results: Vec<Result<Value, ScriptError>>,
    pub logs: Vec<String>,
}

impl CallsOutput {
    pub(crate) fn failed(e: ScriptError, calls: usize) -> Self {
        CallsOutput {
            results: vec![Err(e); calls],
            logs: Vec::new(),
        }
    }
}

/// The per-process script engine, started by the first call (never in INIT).
pub struct Scripts {
    limits: ScriptLimits,
    engine: OnceLock<engine::Engine>,
}

impl Scripts {
    pub fn new(limits: ScriptLimits) -> Self {
        Scripts {
            limits,
            engine: OnceLock::new(),
        }
    }

    /// Whether this process has started its engine.
    pub fn started(&self) -> bool {
        self.engine.get().is_some_and(|e| e.started())
    }

    /// Calls `function` of `script` with `options`.
    pub async fn call(&self, script: Arc<Script>, function: &str, options: &Value) -> CallOutput {
        let mut out = self
            .call_each(script, function, std::slice::from_ref(options))
            .await;
        CallOutput {
            result: out.results.pop().expect("one call, one result"),
            logs: out.logs,
        }
    }

    /// Calls `function` of `script` once with each of `inputs`, in one round trip to the
    /// engine and within one time limit (a page's).
    pub async fn call_each(
        &self,
        script: Arc<Script>,
        function: &str,
        inputs: &[Value],
    ) -> CallsOutput {
        let engine = self
            .engine
            .get_or_init(|| engine::Engine::new(self.limits.clone()));
        engine.call_each(script, function, inputs).await
    }
}

impl Sluice {
    /// Whether this process started its script engine: only a page that calls a script
    /// starts it, so building a `Sluice` (a Lambda's INIT) never does.
    pub fn script_engine_started(&self) -> bool {
        self.caches.scripts.started()
    }
}

/// A hook that gave no usable answer: what every record it was given fails with.
#[derive(Debug, Clone, PartialEq)]
pub struct HookFailure(pub String);

impl HookFailure {
    fn new(point: HookPoint, hook: &HookRef, why: impl fmt::Display) -> Self {
        HookFailure(format!(
            "{} hook: script {}, function {}: {why}",
            point.name(),
            hook.script_id,
            hook.function
        ))
    }
}

impl fmt::Display for HookFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Calls a hook: loads its script, runs it, writes what it logged to this message's logs
/// (the span carries the flow, job and page). Infrastructure failures (the store) are
/// errors; everything the script did wrong is a [`HookFailure`].
pub(crate) async fn call(
    sluice: &Sluice,
    point: HookPoint,
    hook: &HookRef,
    options: &Value,
) -> crate::Result<Result<Value, HookFailure>> {
    let script = match load(sluice, point, hook).await? {
        Ok(s) => Arc::new(s),
        Err(f) => return Ok(Err(f)),
    };
    let out = sluice
        .caches
        .scripts
        .call(script, &hook.function, options)
        .await;
    log_lines(point, hook, &out.logs);
    Ok(out.result.map_err(|e| HookFailure::new(point, hook, e)))
}

/// The script a hook names; one that does not exist is the hook's failure.
async fn load(
    sluice: &Sluice,
    point: HookPoint,
    hook: &HookRef,
) -> crate::Result<Result<Script, HookFailure>> {
    match sluice.script(&hook.script_id).await {
        Ok(s) => Ok(Ok(s)),
        Err(crate::Error::NotFound { .. }) => Ok(Err(HookFailure::new(
            point,
            hook,
            "the script does not exist",
        ))),
        Err(e) => Err(e),
    }
}

/// A script's `console.log` lines, into the job's logs.
fn log_lines(point: HookPoint, hook: &HookRef, lines: &[String]) {
    for line in lines {
        tracing::info!(
            target: "sluice::script",
            script = %hook.script_id,
            function = %hook.function,
            hook = point.name(),
            "{line}"
        );
    }
}

/// `options.settings` and, when the connection passes any, `options.secrets`: what every
/// hook of an export or import gets besides its records.
pub(crate) fn common_options(
    sluice: &Sluice,
    settings: Option<&Map<String, Value>>,
    connection: Option<&Connection>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "settings".into(),
        Value::Object(settings.cloned().unwrap_or_default()),
    );
    if let Some(c) = connection.filter(|c| !c.script_secrets.is_empty()) {
        let secrets: Map<String, Value> = (c.script_secrets.iter())
            .filter_map(|name| Some((name.clone(), Value::String(sluice.secrets.get(name)?))))
            .collect();
        m.insert("secrets".into(), Value::Object(secrets));
    }
    m
}
