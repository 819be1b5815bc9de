//! The page processor a page is at: the flow's entry, the import or lookup export it runs,
//! and the connection it goes over. Loaded by translate, deliver, extract, evaluate, upload.
//! A page's `processorIndex` is a step number of the flow (`sluice_model::routing`).

use crate::{Error, Result, Sluice};
use sluice_model::{
    Connection, Export, Flow, Import, ImportType, PageProcessor, Position, ProcessorType,
    ResponseMapping, DEFAULT_EVALUATOR,
};

pub(crate) enum Target {
    // Boxed: an import and an export are large, and one of them is in every loaded page.
    Import(Box<Import>),
    /// A lookup: an http export run per record, its reply mapped into the record.
    Lookup(Box<Export>),
}

pub(crate) struct Processor {
    pub flow: Flow,
    /// The flow's entry for this step (a copy: `flow` stays whole).
    pub entry: PageProcessor,
    /// Where the step's records go next.
    pub next: Position,
    pub target: Target,
    pub connection: Connection,
}

impl Processor {
    /// The import's (or lookup export's) own `http.headers`, as written: their `secret:NAME`
    /// values are resolved only at send time, so no secret travels in a page.
    pub fn definition_headers(&self) -> &[sluice_model::NameValue] {
        match &self.target {
            Target::Import(i) => i.http.as_ref().map(|h| h.headers.as_slice()),
            Target::Lookup(e) => e.http.as_ref().map(|h| h.headers.as_slice()),
        }
        .unwrap_or(&[])
    }

    pub async fn load(sluice: &Sluice, flow_id: &str, index: usize) -> Result<Processor> {
        Self::of(sluice, sluice.flow(flow_id).await?, index).await
    }

    /// The processor at `index` of an already loaded flow (no second read of the flow).
    pub async fn of(sluice: &Sluice, flow: Flow, index: usize) -> Result<Processor> {
        let flow_id = flow.id.as_str();
        let steps = flow.steps();
        let step = steps.step(index).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "flow {flow_id} has no page processor {index}"
            ))
        })?;
        let (entry, next) = (step.processor.clone(), step.next);
        drop(steps);
        let id = entry.target_id().unwrap_or_default().to_string();
        let (target, connection_id) = match entry.kind {
            ProcessorType::Import => {
                let import = sluice.import(&id).await?;
                let c = import.connection_id.clone();
                (Target::Import(Box::new(import)), c)
            }
            ProcessorType::Export => {
                let export = sluice.export(&id).await?;
                let c = export.connection_id.clone().ok_or_else(|| {
                    Error::invalid(
                        "_connectionId",
                        format!("lookup export {id} has no connection"),
                    )
                })?;
                (Target::Lookup(Box::new(export)), c)
            }
        };
        let connection = sluice.connection(&connection_id).await?;
        Ok(Processor {
            flow,
            entry,
            next,
            target,
            connection,
        })
    }

    /// The flow entry's mapping overrides the import's.
    pub fn mapping(&self) -> Option<&ResponseMapping> {
        self.entry.response_mapping.as_ref().or(match &self.target {
            Target::Import(i) => i.response_mapping.as_ref(),
            Target::Lookup(_) => None,
        })
    }

    pub fn evaluator(&self) -> &str {
        match &self.target {
            Target::Import(i) => i.evaluator(),
            Target::Lookup(_) => DEFAULT_EVALUATOR,
        }
    }

    pub fn import_id(&self) -> Option<String> {
        match &self.target {
            Target::Import(i) => Some(i.id.clone()),
            Target::Lookup(_) => None,
        }
    }

    pub fn export_id(&self) -> Option<String> {
        match &self.target {
            Target::Lookup(e) => Some(e.id.clone()),
            Target::Import(_) => None,
        }
    }

    /// The import's or lookup export's name, for the errors of this step.
    pub fn name(&self) -> &str {
        match &self.target {
            Target::Import(i) => &i.name,
            Target::Lookup(e) => &e.name,
        }
    }

    /// Whether this processor's requests are sent again after a failure that may have
    /// reached the target: lookups and idempotent methods always, POST and PATCH imports as
    /// the import says (`http.retryAmbiguous`, by default while an idempotency key is sent).
    pub fn ambiguous_failures(&self) -> crate::stages::deliver::Ambiguous {
        use crate::stages::deliver::Ambiguous;
        match &self.target {
            Target::Import(import)
                if import
                    .http
                    .as_ref()
                    .is_some_and(|http| !http.retries_ambiguous()) =>
            {
                Ambiguous::Fail
            }
            _ => Ambiguous::Retry,
        }
    }

    /// File imports go to upload; http imports and lookups to deliver.
    pub fn writes_files(&self) -> bool {
        matches!(&self.target, Target::Import(i) if matches!(i.kind, ImportType::Sftp | ImportType::S3))
    }
}

/// The reply each record of a page is mapped and judged on: its own, else the page's batch
/// reply. Indexed like `page.records`.
pub(crate) fn replies(page: &sluice_model::Page) -> Vec<Option<sluice_model::Reply>> {
    let batch = page.batch.as_ref().and_then(|b| b.reply.as_ref());
    page.records
        .iter()
        .map(|r| {
            r.exchange
                .as_ref()
                .and_then(|e| e.reply.as_ref())
                .or(batch)
                .cloned()
        })
        .collect()
}
