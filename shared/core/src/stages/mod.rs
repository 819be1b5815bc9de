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
pub(crate) mod routing;
pub mod translate;
pub mod trigger;
pub mod upload;

use crate::{Error, Result, Sluice};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sluice_model::{Job, Page, RunOrder, StageMessage};
use tracing::Instrument;

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

/// Per-process state of the stages: compiled templates, HTTP clients and tokens, limiters,
/// the script engine (started by the first script call), the run locks this process renewed.
pub(crate) struct Caches {
    pub templates: translate::TemplateCache,
    pub conditions: crate::conditions::ConditionCache,
    pub filters: crate::filters::FilterCache,
    pub mappings: crate::mapping::MappingCache,
    pub transforms: crate::transform::TransformCache,
    pub http: deliver::HttpState,
    pub scripts: crate::hooks::Scripts,
    pub lock_renewals: crate::runs::LockRenewals,
}

impl Caches {
    pub fn new(settings: &crate::Settings) -> Self {
        Caches {
            templates: Default::default(),
            conditions: Default::default(),
            filters: Default::default(),
            mappings: Default::default(),
            transforms: Default::default(),
            http: Default::default(),
            scripts: crate::hooks::Scripts::new(settings.scripts.clone()),
            lock_renewals: Default::default(),
        }
    }
}

/// One stage's entry point: the stage and the function that takes its messages. A process
/// that runs every stage (the local runtime) picks one with [`Stage::handler`]; a Lambda
/// function names its own stage's constant (`stages::deliver::HANDLER`), so its binary
/// references that stage's code only and the linker leaves the other stages out.
#[derive(Clone, Copy)]
pub struct StageHandler {
    pub stage: Stage,
    takes: Takes,
}

type RunFn = for<'a> fn(&'a Sluice, RunOrder) -> BoxFuture<'a, Result<()>>;
type PageFn = for<'a> fn(&'a Sluice, Page) -> BoxFuture<'a, Result<()>>;
type JobFn = for<'a> fn(&'a Sluice, Job) -> BoxFuture<'a, Result<()>>;

/// The message kinds a stage takes: trigger reads run orders (and settles the files of
/// completed jobs, having the file clients), every other stage pages, and deliver (the stage
/// that sends requests) also the closed jobs whose callbacks it posts.
#[derive(Clone, Copy)]
enum Takes {
    RunsAndFilesRead(RunFn, JobFn),
    Pages(PageFn),
    PagesAndClosedJobs(PageFn, JobFn),
}

impl StageHandler {
    pub(crate) const fn runs_and_files_read(stage: Stage, run: RunFn, read: JobFn) -> Self {
        StageHandler {
            stage,
            takes: Takes::RunsAndFilesRead(run, read),
        }
    }

    pub(crate) const fn pages(stage: Stage, run: PageFn) -> Self {
        StageHandler {
            stage,
            takes: Takes::Pages(run),
        }
    }

    pub(crate) const fn pages_and_closed_jobs(stage: Stage, run: PageFn, closed: JobFn) -> Self {
        StageHandler {
            stage,
            takes: Takes::PagesAndClosedJobs(run, closed),
        }
    }

    /// Handles one message inside its [`message_span`], so every line the stage logs names
    /// the stage, flow, job and page.
    pub async fn handle(&self, sluice: &Sluice, message: StageMessage) -> Result<()> {
        let span = message_span(self.stage, &message);
        let handled = async move {
            match (self.takes, message) {
                (Takes::RunsAndFilesRead(run, _), StageMessage::Run(order)) => {
                    run(sluice, order).await
                }
                (Takes::RunsAndFilesRead(_, read), StageMessage::FilesRead { job }) => {
                    read(sluice, job).await
                }
                (
                    Takes::Pages(run) | Takes::PagesAndClosedJobs(run, _),
                    StageMessage::Page(page),
                ) => run(sluice, page).await,
                (Takes::PagesAndClosedJobs(_, closed), StageMessage::AfterProcess { job }) => {
                    closed(sluice, job).await
                }
                _ => Err(Error::Internal(anyhow::anyhow!(
                    "stage {} got a message it does not take",
                    self.stage.name()
                ))),
            }
        };
        handled.instrument(span).await
    }
}

impl Stage {
    /// The stage's handler, for a process that runs every stage.
    pub fn handler(self) -> StageHandler {
        match self {
            Stage::Trigger => trigger::HANDLER,
            Stage::Translate => translate::HANDLER,
            Stage::Deliver => deliver::HANDLER,
            Stage::Extract => extract::HANDLER,
            Stage::Evaluate => evaluate::HANDLER,
            Stage::Upload => upload::HANDLER,
        }
    }
}

/// The span every handled message runs in: its log lines carry `stage`, `flow`, `job` and
/// `page` (absent for a run order, which has no page yet, and for a closed job) as fields of
/// their own. The one place these fields are set; stage code logs without repeating them.
pub fn message_span(stage: Stage, message: &StageMessage) -> tracing::Span {
    match message {
        StageMessage::Run(order) => tracing::info_span!(
            "message",
            stage = stage.name(),
            flow = %order.flow_id,
            job = %order.job_id,
            page = tracing::field::Empty,
        ),
        StageMessage::Page(page) => tracing::info_span!(
            "message",
            stage = stage.name(),
            flow = %page.flow_id,
            job = %page.job_id,
            page = %page.page_id,
        ),
        StageMessage::AfterProcess { job } | StageMessage::FilesRead { job } => {
            tracing::info_span!(
                "message",
                stage = stage.name(),
                flow = %job.flow_id,
                job = %job.id,
                page = tracing::field::Empty,
            )
        }
    }
}
