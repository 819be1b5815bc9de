//! A job's errors as CSV (`GET /jobs/{id}/errors?format=csv`): one row per error, the
//! record and reply as JSON text in their cells, so a spreadsheet shows what failed and why.

use crate::errors::ApiResult;
use sluice_model::JobError;

/// The columns, in order.
pub const COLUMNS: [&str; 14] = [
    "_id",
    "processorIndex",
    "_importId",
    "_exportId",
    "stepName",
    "recordKey",
    "code",
    "message",
    "occurredAt",
    "resolved",
    "tags",
    "retryDataKey",
    "record",
    "responseStatus",
];

pub struct Writer(csv::Writer<Vec<u8>>);

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing into memory cannot fail.
        let _ = w.write_record(COLUMNS);
        Writer(w)
    }

    pub fn write(&mut self, e: &JobError) -> ApiResult<()> {
        let status = e
            .response
            .as_ref()
            .and_then(|r| r.get("status"))
            .map(|s| s.to_string())
            .unwrap_or_default();
        self.0
            .write_record([
                e.id.as_str(),
                &e.processor_index.to_string(),
                e.import_id.as_deref().unwrap_or(""),
                e.export_id.as_deref().unwrap_or(""),
                e.step_name.as_deref().unwrap_or(""),
                &e.record_key,
                &e.code.to_string(),
                &e.message,
                &sluice_model::time::format(&e.occurred_at),
                if e.resolved { "true" } else { "false" },
                &e.tags.join(";"),
                &e.retry_data_key,
                &e.record.to_string(),
                &status,
            ])
            .map_err(anyhow::Error::from)?;
        Ok(())
    }

    pub fn finish(self) -> ApiResult<String> {
        let bytes = self.0.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(String::from_utf8(bytes).map_err(anyhow::Error::from)?)
    }
}
