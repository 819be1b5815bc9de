//! The engine of a build without sluice-core's `hooks` feature: no JavaScript is linked, and
//! every call fails saying how to get one. (The Lambda functions that run no scripts are
//! built so; a flow whose hook reaches one of them fails those records readably.)

use super::{CallsOutput, ScriptError, ScriptLimits};
use serde_json::Value;
use sluice_model::Script;
use std::sync::Arc;

pub struct Engine;

impl Engine {
    pub fn new(_limits: ScriptLimits) -> Self {
        Engine
    }

    pub fn started(&self) -> bool {
        false
    }

    pub async fn call_each(
        &self,
        _script: Arc<Script>,
        _function: &str,
        inputs: &[Value],
    ) -> CallsOutput {
        let why = "this build has no script engine: build it with sluice-core's `hooks` feature";
        CallsOutput::failed(ScriptError::Unavailable(why.into()), inputs.len())
    }
}
