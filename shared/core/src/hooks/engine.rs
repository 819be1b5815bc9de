//! The embedded JavaScript engine: QuickJS (quickjs-ng, through rquickjs) on one thread of
//! its own, started by the first script call of the process (so an INIT that never runs a
//! script never pays for it).
//!
//! Why QuickJS: it is made to be embedded — a small C library (about 1 MiB in the binary),
//! ES2020 and later, a heap limit (`JS_SetMemoryLimit`) and an interrupt callback built in, and
//! no host access at all unless the embedder adds it: no file system, network, process,
//! `require` or `fetch` exist in its contexts. Boa (pure Rust) has no heap limit; V8 and
//! SpiderMonkey are tens of MiB and slow to start in a Lambda INIT.
//!
//! Invariants:
//! - One QuickJS runtime per process, owned by the engine thread; stage code only sends it
//!   calls and awaits the answer, so no tokio worker ever blocks on a script.
//! - Each script is compiled once per process into a context of its own (its globals are its
//!   own; one script cannot see or change another's), keyed by id and a hash of its source:
//!   an edited script is compiled again, an unchanged one never.
//! - Every call runs under the time limit (the interrupt handler stops it, uncatchably) and
//!   the heap limit. A call that ran out of either drops its script's context (its globals may
//!   hold the garbage), and the next call compiles it afresh: the engine stays healthy.
//! - A panic in the engine thread ends the thread; the next call starts a new one.

use super::{CallsOutput, ScriptError, ScriptLimits};
use rquickjs::function::Rest;
use rquickjs::{CaughtError, Context, Ctx, Function, Object, Runtime, Value as JsValue};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_model::Script;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines of `console.log` kept per call, and characters per line: a chatty script cannot
/// flood the logs or the memory.
const MAX_LOG_LINES: usize = 200;
const MAX_LOG_CHARS: usize = 2000;
/// QuickJS's own stack bound (below the thread's 8 MiB): deep recursion is a RangeError.
const MAX_STACK_BYTES: usize = 1024 * 1024;
const THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;
/// Compiled scripts kept at once; past it all are dropped and compiled again when called.
const MAX_COMPILED: usize = 256;

struct Call {
    script: Arc<Script>,
    function: String,
    /// One call per element, in order, under one deadline.
    inputs: Vec<String>,
    reply: tokio::sync::oneshot::Sender<CallsOutput>,
}

/// The handle stage code holds (in the per-process caches): sends calls to the engine
/// thread, starting it on first use.
pub struct Engine {
    limits: ScriptLimits,
    calls: Mutex<Option<mpsc::Sender<Call>>>,
}

impl Engine {
    pub fn new(limits: ScriptLimits) -> Self {
        Engine {
            limits,
            calls: Mutex::new(None),
        }
    }

    /// Whether the engine thread was started (tests: INIT does not start it).
    pub fn started(&self) -> bool {
        self.calls.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    /// Calls `function` of `script` once with each of `inputs` (JSON), all within one time
    /// limit, and returns what each call returned.
    pub async fn call_each(
        &self,
        script: Arc<Script>,
        function: &str,
        inputs: &[Value],
    ) -> CallsOutput {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let n = inputs.len();
        let call = Call {
            script,
            function: function.to_string(),
            inputs: inputs.iter().map(Value::to_string).collect(),
            reply,
        };
        if let Err(e) = self.send(call) {
            return CallsOutput::failed(e, n);
        }
        answer.await.unwrap_or_else(|_| {
            // The thread died mid-call (a panic): forget it, the next call starts another.
            if let Ok(mut c) = self.calls.lock() {
                *c = None;
            }
            let why = "the script engine stopped during the call; it restarts on the next";
            CallsOutput::failed(ScriptError::Unavailable(why.into()), n)
        })
    }

    fn send(&self, call: Call) -> Result<(), ScriptError> {
        let mut calls = self
            .calls
            .lock()
            .map_err(|_| ScriptError::Unavailable("the script engine's lock is poisoned".into()))?;
        let call = match calls.as_ref() {
            Some(tx) => match tx.send(call) {
                Ok(()) => return Ok(()),
                // The thread is gone (it panicked between calls): start another.
                Err(mpsc::SendError(call)) => call,
            },
            None => call,
        };
        let tx = start(self.limits.clone())?;
        tx.send(call)
            .map_err(|_| ScriptError::Unavailable("the script engine did not start".into()))?;
        *calls = Some(tx);
        Ok(())
    }
}

fn start(limits: ScriptLimits) -> Result<mpsc::Sender<Call>, ScriptError> {
    let (tx, rx) = mpsc::channel::<Call>();
    std::thread::Builder::new()
        .name("sluice-scripts".into())
        .stack_size(THREAD_STACK_BYTES)
        .spawn(move || match Sandbox::new(limits) {
            Ok(mut sandbox) => {
                for call in rx {
                    let out = sandbox.call(&call.script, &call.function, &call.inputs);
                    let _ = call.reply.send(out);
                }
            }
            Err(e) => {
                for call in rx {
                    let n = call.inputs.len();
                    let _ = call.reply.send(CallsOutput::failed(e.clone(), n));
                }
            }
        })
        .map_err(|e| ScriptError::Unavailable(format!("cannot start the script engine: {e}")))?;
    Ok(tx)
}

struct Compiled {
    hash: [u8; 32],
    context: Context,
}

/// The QuickJS runtime and what it compiled; lives on the engine thread only.
struct Sandbox {
    runtime: Runtime,
    limits: ScriptLimits,
    compiled: HashMap<String, Compiled>,
    /// When the running call must stop (ns after `epoch`; 0: no call running).
    deadline: Arc<AtomicU64>,
    interrupted: Arc<AtomicBool>,
    epoch: Instant,
    logs: Rc<RefCell<Vec<String>>>,
}

impl Sandbox {
    fn new(limits: ScriptLimits) -> Result<Self, ScriptError> {
        let runtime = Runtime::new()
            .map_err(|e| ScriptError::Unavailable(format!("cannot create the engine: {e}")))?;
        runtime.set_memory_limit(limits.memory_bytes);
        runtime.set_max_stack_size(MAX_STACK_BYTES);
        let deadline = Arc::new(AtomicU64::new(0));
        let interrupted = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let (d, i) = (deadline.clone(), interrupted.clone());
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let at = d.load(Ordering::Relaxed);
            let stop = at != 0 && epoch.elapsed().as_nanos() as u64 > at;
            if stop {
                i.store(true, Ordering::Relaxed);
            }
            stop
        })));
        Ok(Sandbox {
            runtime,
            limits,
            compiled: HashMap::new(),
            deadline,
            interrupted,
            epoch,
            logs: Rc::new(RefCell::new(Vec::new())),
        })
    }

    fn call(&mut self, script: &Script, function: &str, inputs: &[String]) -> CallsOutput {
        self.logs.borrow_mut().clear();
        self.arm(self.limits.timeout);
        let mut results = Vec::with_capacity(inputs.len());
        let context = self.compiled_context(script);
        for input in inputs {
            let out = match &context {
                Err(e) => Err(e.clone()),
                Ok(context) => context.with(|ctx| invoke(&ctx, &script.id, function, input)),
            };
            let out = self.limit_reached(out);
            let stop = matches!(
                out,
                Err(ScriptError::TimedOut(_) | ScriptError::OutOfMemory(_))
            );
            results.push(out);
            if stop {
                // The limit is the page's: the calls not made fail with it too.
                let e = results.last().cloned().expect("pushed");
                results.resize(inputs.len(), e);
                // What the script left in its globals may be the garbage: start it afresh.
                self.compiled.remove(&script.id);
                self.runtime.run_gc();
                break;
            }
        }
        self.arm(Duration::ZERO);
        self.interrupted.store(false, Ordering::Relaxed);
        let logs = std::mem::take(&mut *self.logs.borrow_mut());
        CallsOutput { results, logs }
    }

    /// A call stopped by the interrupt or the heap limit, told apart from a plain exception.
    fn limit_reached(&self, out: Result<Value, ScriptError>) -> Result<Value, ScriptError> {
        match out {
            Err(ScriptError::Thrown { .. }) if self.interrupted.swap(false, Ordering::Relaxed) => {
                Err(ScriptError::TimedOut(self.limits.timeout))
            }
            Err(ScriptError::Thrown { message, .. }) if message.contains("out of memory") => {
                Err(ScriptError::OutOfMemory(self.limits.memory_bytes))
            }
            other => other,
        }
    }

    /// Sets the running call's deadline (`ZERO`: none).
    fn arm(&self, limit: Duration) {
        let at = if limit.is_zero() {
            0
        } else {
            (self.epoch.elapsed() + limit).as_nanos() as u64
        };
        self.deadline.store(at, Ordering::Relaxed);
    }

    /// The script's context, compiling it when new or changed.
    fn compiled_context(&mut self, script: &Script) -> Result<Context, ScriptError> {
        let hash: [u8; 32] = Sha256::digest(script.content.as_bytes()).into();
        if let Some(c) = self.compiled.get(&script.id).filter(|c| c.hash == hash) {
            return Ok(c.context.clone());
        }
        if self.compiled.len() >= MAX_COMPILED {
            self.compiled.clear();
        }
        let context = Context::full(&self.runtime)
            .map_err(|e| ScriptError::Unavailable(format!("cannot create a context: {e}")))?;
        let logs = self.logs.clone();
        context.with(|ctx| {
            install_console(&ctx, logs).map_err(|e| thrown(&ctx, &script.id, e))?;
            let mut opts = rquickjs::context::EvalOptions::default();
            opts.global = true;
            opts.strict = false;
            opts.filename = Some(script.id.clone());
            ctx.eval_with_options::<(), _>(script.content.as_bytes(), opts)
                .map_err(|e| match thrown(&ctx, &script.id, e) {
                    ScriptError::Thrown { message, line } => ScriptError::Compile { message, line },
                    other => other,
                })
        })?;
        self.compiled.insert(
            script.id.clone(),
            Compiled {
                hash,
                context: context.clone(),
            },
        );
        Ok(context)
    }
}

/// Looks up and calls the function with the options parsed from JSON; the answer as JSON.
fn invoke<'js>(
    ctx: &Ctx<'js>,
    script_id: &str,
    function: &str,
    options: &str,
) -> Result<Value, ScriptError> {
    let f: JsValue = ctx
        .globals()
        .get(function)
        .map_err(|e| thrown(ctx, script_id, e))?;
    let Some(f) = f.into_function() else {
        return Err(ScriptError::NoFunction(function.to_string()));
    };
    let arg = ctx
        .json_parse(options)
        .map_err(|e| thrown(ctx, script_id, e))?;
    let answer: JsValue = f.call((arg,)).map_err(|e| thrown(ctx, script_id, e))?;
    if answer.is_undefined() {
        return Ok(Value::Null);
    }
    let json = ctx
        .json_stringify(answer)
        .map_err(|e| thrown(ctx, script_id, e))?;
    match json {
        None => Ok(Value::Null),
        Some(s) => {
            let s = s.to_string().map_err(|e| thrown(ctx, script_id, e))?;
            serde_json::from_str(&s)
                .map_err(|e| ScriptError::Unavailable(format!("the answer is not JSON: {e}")))
        }
    }
}

/// `console.log/info/warn/error/debug`: each call one line in the buffer of the running call.
fn install_console(ctx: &Ctx, logs: Rc<RefCell<Vec<String>>>) -> rquickjs::Result<()> {
    let console = Object::new(ctx.clone())?;
    for level in ["log", "info", "warn", "error", "debug"] {
        let logs = logs.clone();
        let f = Function::new(ctx.clone(), move |args: Rest<JsValue>| {
            let mut logs = logs.borrow_mut();
            if logs.len() < MAX_LOG_LINES {
                let line: Vec<String> = args.0.iter().map(show).collect();
                let mut line = line.join(" ");
                if line.chars().count() > MAX_LOG_CHARS {
                    line = line.chars().take(MAX_LOG_CHARS).collect::<String>() + "…";
                }
                logs.push(line);
            }
        })?;
        console.set(level, f)?;
    }
    ctx.globals().set("console", console)
}

/// A logged value as text: strings as they are, the rest as JSON (or its type).
fn show(v: &JsValue) -> String {
    let ctx = v.ctx();
    if let Some(s) = v.as_string() {
        return s.to_string().unwrap_or_default();
    }
    if v.is_undefined() {
        return "undefined".into();
    }
    if let Some(e) = v.as_exception() {
        return e.message().unwrap_or_else(|| "Error".into());
    }
    match ctx.json_stringify(v.clone()) {
        Ok(Some(s)) => s.to_string().unwrap_or_default(),
        _ => format!("[{}]", v.type_name()),
    }
}

/// The exception behind an rquickjs error: its message and the script line it came from.
fn thrown<'js>(ctx: &Ctx<'js>, script_id: &str, e: rquickjs::Error) -> ScriptError {
    match CaughtError::from_error(ctx, e) {
        CaughtError::Exception(x) => {
            let message = x.message().unwrap_or_default();
            let name: Option<String> = x.get("name").ok();
            let message = match name {
                Some(n) if !n.is_empty() && n != "Error" => format!("{n}: {message}"),
                _ => message,
            };
            let line = x.stack().and_then(|s| line_in(&s, script_id));
            ScriptError::Thrown { message, line }
        }
        CaughtError::Value(v) => ScriptError::Thrown {
            message: show(&v),
            line: None,
        },
        CaughtError::Error(e) => ScriptError::Thrown {
            message: e.to_string(),
            line: None,
        },
    }
}

/// The first `<script_id>:<line>` in a QuickJS stack (`at preMap (order-hooks:3:11)`).
pub(crate) fn line_in(stack: &str, script_id: &str) -> Option<u32> {
    let needle = format!("{script_id}:");
    stack.match_indices(&needle).find_map(|(i, _)| {
        let digits: String = stack[i + needle.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}
