//! Cutting what the trigger reads into pages, and keeping its place.
//!
//! Pages are cut at the same records however the reading is split up (a continuation that
//! ran short of time, a checkpoint resumed after a crash), so a page's id always names the
//! same records and every later stage stays idempotent on it.
//!
//! Checkpoints: after each page cut from a source read as a stream (a file, an object, the
//! objects under a prefix, an http export's replies), the trigger's run order is replaced by
//! its progress through [`crate::ports::Queue::checkpoint`]: a `resume` naming the unit being
//! read (its cursor) and how many of its records are in pages already (`skip`). Where the
//! queue keeps checkpoints (the local runtime), a run order picked up again after its process
//! died goes on from its last page instead of reading the source again.

use crate::hooks::export::PreSavePage;
use crate::ports::Measurement;
use crate::{Error, Result, Sluice, Stage};
use serde_json::Value;
use sluice_model::{JobStatus, Page, PageRecord, Resume, RunOrder, SourceRecord, StageMessage};

/// Counts pages across generators, sends them, and keeps the place.
pub(super) struct PageCutter<'a> {
    pub sluice: &'a Sluice,
    pub order: &'a RunOrder,
    /// The step number where the flow's pages start: its first page processor, or its first
    /// router (`sluice_model::routing`).
    pub entry: usize,
    /// The job's `firstPageIndex`: where `{{page.index}}` starts (a retry numbers on).
    pub first_page_index: u64,
    /// Pages cut so far in this job.
    pub pages: u64,
    /// This invocation ran short of time and queued a continuation for the rest.
    pub continued: bool,
    /// The job was canceled while it was read: reading stopped.
    pub canceled: bool,
    /// Where a checkpointed read stands; `None` for sources that are not checkpointed
    /// (records given inline are all in the run order already: its pages are sent when it
    /// has been read whole).
    pub at: Option<Position>,
}

/// A place in a source: the cursor that reads its current unit (an object, an http reply)
/// from the start, and how many records of that unit are in pages or the batch.
pub(super) struct Position {
    pub cursor: Value,
    pub taken: u64,
}

impl PageCutter<'_> {
    /// Before each page goes out: a job canceled meanwhile stops its reading (an error that
    /// unwinds the read, after `canceled` is set), so nothing more of it is read or sent.
    async fn check_not_canceled(&mut self) -> Result<()> {
        let job = self.sluice.store.get_job(&self.order.job_id).await?;
        if job.is_some_and(|j| j.status == JobStatus::Canceled) {
            self.canceled = true;
            return Err(Error::Conflict(format!(
                "job {} was canceled",
                self.order.job_id
            )));
        }
        Ok(())
    }

    /// Starts keeping the place in a unit, `skip` of whose records are in pages already.
    pub fn reading(&mut self, cursor: Value, skip: u64) {
        self.at = Some(Position {
            cursor,
            taken: skip,
        });
    }

    /// Replaces the run order by its progress: right after a page, with nothing carried
    /// (`aborted`: that page's preSavePage hook stopped the generator).
    async fn checkpoint(&self, generator: usize, aborted: bool) -> Result<()> {
        let Some(at) = &self.at else { return Ok(()) };
        let mut order = self.order.clone();
        order.resume = Some(Resume {
            generator_index: generator,
            pages_cut: self.pages,
            carried: Vec::new(),
            cursor: at.cursor.clone(),
            skip: at.taken,
            aborted,
        });
        self.sluice
            .queue
            .checkpoint(&StageMessage::Run(order))
            .await?;
        Ok(())
    }

    /// The invocation is running out of time in a long export (http paging, or many objects
    /// under an s3 prefix): the rest is read by a continuation of the run order, queued to
    /// the trigger with where reading stands (`cursor`, past what was read), the page count
    /// and the records not yet cut into a page.
    pub async fn continue_later(&mut self, batch: &mut Batch, cursor: Value) -> Result<()> {
        let mut order = self.order.clone();
        order.resume = Some(Resume {
            generator_index: batch.generator,
            pages_cut: self.pages,
            carried: std::mem::take(&mut batch.records),
            cursor,
            skip: 0,
            aborted: false,
        });
        tracing::info!(
            pages = self.pages,
            "trigger ran short of time; the export continues in the next invocation"
        );
        self.sluice.measure(Measurement::Continued {
            flow: order.flow_id.clone(),
            stage: Stage::Trigger,
        });
        self.sluice
            .queue
            .send(Stage::Trigger, StageMessage::Run(order))
            .await?;
        self.continued = true;
        Ok(())
    }
}

/// Records collecting into the next page of one generator.
pub(super) struct Batch {
    pub generator: usize,
    processor: usize,
    size: usize,
    /// The export's transform and output filter, applied in that order as pages are cut.
    shaping: Shaping,
    /// The export's preSavePage hook, given each page after the shaping.
    pre_save_page: Option<PreSavePage>,
    /// The hook asked to abort: no new pages are cut, and what is read after is left.
    aborted: bool,
    pub records: Vec<SourceRecord>,
}

/// What trigger does to each record before it is paged: the export's `transform`, then its
/// output `filter` (which so sees the transformed record).
#[derive(Default)]
pub(crate) struct Shaping {
    pub transform: Option<sluice_model::Transform>,
    pub filter: Option<sluice_model::Filter>,
    /// The export's `settings`, which script filters and transforms are given.
    pub settings: Option<serde_json::Map<String, Value>>,
}

impl Shaping {
    pub fn of(export: &sluice_model::Export) -> Self {
        Shaping {
            transform: export.transform.clone(),
            filter: export.filter.clone(),
            settings: export.settings.clone(),
        }
    }

    pub(crate) async fn apply(&self, sluice: &Sluice, records: &mut [PageRecord]) -> Result<()> {
        use crate::hooks::shaping::{filter_records, transform_records};
        let settings = self.settings.as_ref();
        if let Some(t) = &self.transform {
            let code = sluice_model::FailureCode::Transform;
            transform_records(sluice, t, code, settings, records).await?;
        }
        if let Some(f) = &self.filter {
            let whose = (
                "the export's filter",
                sluice_model::FailureCode::OutputFilter,
            );
            filter_records(sluice, f, whose, settings, records).await?;
        }
        Ok(())
    }
}

impl Batch {
    pub fn new(generator: usize, processor: usize, size: usize, shaping: Shaping) -> Self {
        Batch {
            generator,
            processor,
            size,
            shaping,
            pre_save_page: None,
            aborted: false,
            records: Vec::with_capacity(size),
        }
    }

    pub fn with_pre_save_page(mut self, hook: Option<PreSavePage>) -> Self {
        self.pre_save_page = hook;
        self
    }

    /// The preSavePage hook asked to stop: readers read no further, and queue no
    /// continuation (a checkpoint taken after the page says so too).
    pub fn aborted(&self) -> bool {
        self.aborted
    }

    pub async fn push(&mut self, cutter: &mut PageCutter<'_>, record: Value) -> Result<()> {
        self.take(cutter, SourceRecord::Record { data: record })
            .await
    }

    /// Adds what was read (a record or an unreadable part) and sends the page once full.
    pub async fn take(&mut self, cutter: &mut PageCutter<'_>, read: SourceRecord) -> Result<()> {
        if self.aborted {
            return Ok(());
        }
        if let Some(at) = cutter.at.as_mut() {
            at.taken += 1;
        }
        self.records.push(read);
        if self.records.len() >= self.size {
            self.flush(cutter).await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self, cutter: &mut PageCutter<'_>) -> Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        cutter.check_not_canceled().await?;
        let index = cutter.pages;
        let page_id = if self.processor == cutter.entry {
            format!("g{}-p{index:06}", self.generator)
        } else {
            format!("g{}-r{}-p{index:06}", self.generator, self.processor)
        };
        let mut records: Vec<PageRecord> = self
            .records
            .drain(..)
            .enumerate()
            .map(|(i, read)| read.into_page_record(format!("{page_id}-r{i:05}")))
            .collect();
        self.shaping.apply(cutter.sluice, &mut records).await?;
        if let Some(hook) = &self.pre_save_page {
            let sluice = cutter.sluice;
            self.aborted = hook.apply(sluice, &page_id, index, &mut records).await?;
        }
        let page = Page {
            job_id: cutter.order.job_id.clone(),
            flow_id: cutter.order.flow_id.clone(),
            page_id,
            page_index: cutter.first_page_index + index,
            processor_index: self.processor,
            records,
            batches: Vec::new(),
            file: None,
            records_ref: None,
            trace_id: cutter.order.job_id.clone(),
        };
        cutter
            .sluice
            .queue
            .send(Stage::Translate, StageMessage::Page(page))
            .await?;
        cutter.pages += 1;
        cutter.checkpoint(self.generator, self.aborted).await
    }
}

/// The cursor of a checkpoint as the reader wants it back.
pub(super) fn cursor_of<T: serde::de::DeserializeOwned>(resume: &Resume) -> Result<T> {
    serde_json::from_value(resume.cursor.clone())
        .map_err(|e| Error::Internal(anyhow::anyhow!("unreadable paging cursor: {e}")))
}
