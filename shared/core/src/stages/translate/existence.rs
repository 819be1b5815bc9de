//! The import's existence check (integrator.io's `existingExtract`): whether a record
//! exists in the target, read from the record as the flow carries it (a lookup step's
//! responseMapping typically wrote the field). It decides two things, here and nowhere
//! else: which records `ignoreExisting` / `ignoreMissing` skip (ignored, counted, never
//! sent), and which request an upsert sends (`http.update` for records that exist).
//!
//! Invariant: both decisions read the same value of the same record (`flow_data`, which
//! preMap and postMap do not change), so a record skipped as missing is never the one sent
//! an update, and the case a record is sent under does not depend on its hooks.

use crate::stages::processor::{Processor, Target};
use serde_json::Value;
use sluice_model::paths::RecordPath;
use sluice_model::{Page, PageRecord, RecordState, RequestCase};

/// An import's compiled existence check.
pub(crate) struct Existence {
    path: RecordPath,
    skip: Option<RequestCase>,
    upserts: bool,
}

impl Existence {
    /// The check of the processor's import, if it has one (a stored import was validated,
    /// so its path compiles; one that does not is treated as no check).
    pub fn of(p: &Processor) -> Option<Existence> {
        let Target::Import(import) = &p.target else {
            return None;
        };
        let http = import.http.as_ref()?;
        let path = RecordPath::compile(http.existing_extract.as_deref()?).ok()?;
        let skip = match (import.ignore_existing, import.ignore_missing) {
            (true, _) => Some(RequestCase::Update),
            (false, true) => Some(RequestCase::Create),
            (false, false) => None,
        };
        Some(Existence {
            path,
            skip,
            upserts: http.update.is_some(),
        })
    }

    /// Does the record exist in the target? A value at the path that is not null, `""` or
    /// an empty list.
    pub fn exists(&self, record: &PageRecord) -> bool {
        match self.path.get(record.flow_data()).as_deref() {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        }
    }

    /// The request the record is sent with.
    pub fn case(&self, record: &PageRecord) -> RequestCase {
        if self.upserts && self.exists(record) {
            RequestCase::Update
        } else {
            RequestCase::Create
        }
    }

    /// `ignoreExisting` / `ignoreMissing`: the active records they skip become ignored,
    /// saying why.
    pub fn skip_ignored(&self, page: &mut Page) {
        let Some(skip) = self.skip else {
            return;
        };
        let path = self.path.source();
        for r in page.records.iter_mut().filter(|r| r.is_active()) {
            let exists = self.exists(r);
            let reason = match (skip, exists) {
                (RequestCase::Update, true) => format!(
                    "exists in the target (http.existingExtract '{path}' has a value) and the \
                     import has ignoreExisting"
                ),
                (RequestCase::Create, false) => format!(
                    "does not exist in the target (http.existingExtract '{path}' has no value) \
                     and the import has ignoreMissing"
                ),
                _ => continue,
            };
            r.state = RecordState::Ignored { reason };
        }
    }
}
