//! The stages, one folder each, in pipeline order:
//!
//! ```text
//! trigger ─▶ translate ─▶ deliver ─▶ extract ─▶ evaluate ─┬─▶ translate (next processor)
//!                 └──────▶ upload ──────────────▶ evaluate └─▶ job finished
//! ```
//!
//! Each `handle` takes one message, does its work through the ports, and sends the page on.
//! Every hand-off is at least once; each stage is idempotent on a redelivered page.

pub mod base_uri;
pub mod dead_letter;
pub mod deliver;
pub mod evaluate;
pub mod extract;
pub(crate) mod processor;
pub mod translate;
pub mod trigger;
pub mod upload;

use crate::{Error, Result, Sluice};
use serde::{Deserialize, Serialize};
use sluice_model::StageMessage;

/// A stage, and so a queue and a Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Trigger,
    Translate,
    Deliver,
    Extract,
    Evaluate,
    Upload,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Trigger,
        Stage::Translate,
        Stage::Deliver,
        Stage::Extract,
        Stage::Evaluate,
        Stage::Upload,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Stage::Trigger => "trigger",
            Stage::Translate => "translate",
            Stage::Deliver => "deliver",
            Stage::Extract => "extract",
            Stage::Evaluate => "evaluate",
            Stage::Upload => "upload",
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| format!("unknown stage '{s}'"))
    }
}

/// Per-process state of the stages: compiled templates, HTTP clients and tokens, limiters.
#[derive(Default)]
pub(crate) struct Caches {
    pub templates: translate::TemplateCache,
    pub conditions: crate::conditions::ConditionCache,
    pub http: deliver::HttpState,
}

pub(crate) async fn handle(sluice: &Sluice, stage: Stage, message: StageMessage) -> Result<()> {
    match (stage, message) {
        (Stage::Trigger, StageMessage::Run(order)) => trigger::handle_run(sluice, order).await,
        (Stage::Translate, StageMessage::Page(page)) => translate::handle(sluice, page).await,
        (Stage::Deliver, StageMessage::Page(page)) => deliver::handle(sluice, page).await,
        (Stage::Extract, StageMessage::Page(page)) => extract::handle(sluice, page).await,
        (Stage::Evaluate, StageMessage::Page(page)) => evaluate::handle(sluice, page).await,
        (Stage::Upload, StageMessage::Page(page)) => upload::handle(sluice, page).await,
        (stage, _) => Err(Error::Internal(anyhow::anyhow!(
            "stage {} got a message it does not take",
            stage.name()
        ))),
    }
}
