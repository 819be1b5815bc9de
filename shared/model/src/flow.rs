use crate::{validate, NameValue, ResponseMapping, ValidationErrors};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Export(s) linked to an ordered list of page processors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"_id": "orders-to-erp", "name": "Orders to the ERP",
    "schedule": "*/15 * * * *", "timezone": "Europe/Berlin",
    "pageGenerators": [{"_exportId": "new-orders"}],
    "pageProcessors": [{"type": "import", "_importId": "post-order"}]}))]
pub struct Flow {
    /// The id; generated on create when absent. Letters, digits, `_`, `-`, `.`; at most 128.
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Shown in lists and messages; required.
    // serde default: a missing name gets validate()'s message naming the field.
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The integration this belongs to (`GET /flows?_integrationId=` filters by it).
    #[serde(
        rename = "_integrationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub integration_id: Option<String>,
    /// A disabled flow does not run on its schedule, on S3 objects, stream changes or
    /// chains; it can still be run by hand (`POST /flows/{id}/run`, `sluice run`).
    #[serde(default)]
    pub disabled: bool,
    /// 5-field cron (or integrator.io's 6-field form with `?` seconds), read in `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The exports the records come from (at least one).
    #[serde(default)]
    pub page_generators: Vec<PageGenerator>,
    /// What each page goes through, in order: imports and lookups.
    #[serde(default)]
    pub page_processors: Vec<PageProcessor>,
    /// Where records go after `pageProcessors`: `routers[0]` first, then on through each
    /// branch's `nextRouterId`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<crate::Router>,
    /// Flows started when a run of this one completes.
    #[serde(
        rename = "_runNextFlowIds",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub run_next_flow_ids: Vec<String>,
    /// Each rendered request is also posted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_request: Option<Callback>,
    /// Each reply is also posted here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_response: Option<Callback>,
    /// Posted the job summary when a run ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_process: Vec<Callback>,
    /// Failure alerts: a job that fails, or ends with record errors, is announced to a
    /// webhook (Slack-compatible), at most once per quiet period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<crate::FlowAlerts>,
    /// Automatic retry: a job's retryable errors (no reply, limits, 429 and 5xx replies; see
    /// the README) are retried on a backoff schedule, as retry jobs linked to it, until none
    /// is left or `maxAttempts` retries have run. A record that succeeded is never sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_retry: Option<crate::AutoRetry>,
    /// Days its jobs (with their errors and delivery ledger) are kept before the clean-up
    /// purges them; the deployment's `SLUICE_RETENTION_DAYS` (30 by default) when absent.
    /// 1 to 3650.
    #[serde(
        default,
        deserialize_with = "crate::parse::count",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_days: Option<u32>,
    /// Set by the API on create.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<DateTime<Utc>>,
    /// Set by the API on every change.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_modified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// One export feeding the flow.
pub struct PageGenerator {
    #[serde(rename = "_exportId")]
    pub export_id: String,
    /// Accepted for integrator.io compatibility; Sluice keeps every failed record retryable.
    #[serde(default)]
    pub skip_retries: bool,
    /// This export's own schedule (5-field cron, in the flow's `timezone`), instead of the
    /// flow's: a scheduled run reads only the exports due at that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProcessorType {
    /// An import: records go out.
    Import,
    /// A lookup: an http export whose reply is mapped into the record.
    Export,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// One step each page goes through.
pub struct PageProcessor {
    #[serde(rename = "type")]
    pub kind: ProcessorType,
    /// The import run (type import).
    #[serde(rename = "_importId", default, skip_serializing_if = "Option::is_none")]
    pub import_id: Option<String>,
    /// The lookup export run (type export).
    #[serde(rename = "_exportId", default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    /// Overrides the import's responseMapping; for lookups, the only mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mapping: Option<ResponseMapping>,
    /// Script hook run after the responseMapping (`postResponseMap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<crate::ProcessorHooks>,
    /// A record that fails here still goes on to the next steps (its error is stored, and
    /// its job counts it as an error wherever it ends).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proceed_on_failure: bool,
}

impl PageProcessor {
    /// Checks the processor on its own, its fields named under `at` (`pageProcessors[2]`).
    fn validate_into(&self, e: &mut ValidationErrors, at: &str) {
        let (field, id) = match self.kind {
            ProcessorType::Import => ("_importId", &self.import_id),
            ProcessorType::Export => ("_exportId", &self.export_id),
        };
        if id.as_deref().unwrap_or("").is_empty() {
            e.add(
                format!("{at}.{field}"),
                format!("is required when type is {:?}", self.kind).to_lowercase(),
            );
        }
        if let Some(m) = &self.response_mapping {
            m.validate_into(e, &format!("{at}.responseMapping"));
        }
        if let Some(h) = &self.hooks {
            crate::script::validate_hooks(e, &format!("{at}.hooks"), h.refs());
        }
    }

    /// The field of its import or lookup export id (`_importId`, `_exportId`).
    pub fn target_field(&self) -> &'static str {
        match self.kind {
            ProcessorType::Import => "_importId",
            ProcessorType::Export => "_exportId",
        }
    }

    /// The id of the import or export this processor runs.
    pub fn target_id(&self) -> Option<&str> {
        match self.kind {
            ProcessorType::Import => self.import_id.as_deref(),
            ProcessorType::Export => self.export_id.as_deref(),
        }
    }
}

/// An HTTP callback: the after-process webhook and the request/response notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Callback {
    /// Where the JSON is posted.
    pub url: String,
    /// Headers sent with it; credential headers are masked in every answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NameValue>,
}

/// The longest `retentionDays` a flow may ask for (10 years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

impl Flow {
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.timezone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(chrono_tz::UTC)
    }

    /// The schedule a page generator runs on: its own, else the flow's.
    pub fn schedule_of<'a>(&'a self, generator: &'a PageGenerator) -> Option<&'a str> {
        generator.schedule.as_deref().or(self.schedule.as_deref())
    }

    /// Its page processors numbered, with its routers (see [`crate::routing`]).
    pub fn steps(&self) -> crate::Steps<'_> {
        crate::Steps::of(self)
    }

    /// Checks the flow on its own; references to exports and imports are checked by
    /// [`crate::Bundle::validate`] or by the store.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        validate::identity(&mut e, &self.id, &self.name);
        if let Some(s) = &self.schedule {
            validate::schedule(&mut e, "schedule", s);
        }
        if let Some(tz) = &self.timezone {
            validate::timezone(&mut e, "timezone", tz);
        }
        if self
            .retention_days
            .is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d))
        {
            e.add(
                "retentionDays",
                format!("must be between 1 and {MAX_RETENTION_DAYS} days"),
            );
        }
        if self.page_generators.is_empty() {
            e.add("pageGenerators", "a flow needs at least one page generator");
        }
        for (i, g) in self.page_generators.iter().enumerate() {
            validate::required(
                &mut e,
                &format!("pageGenerators[{i}]._exportId"),
                &g.export_id,
            );
            if let Some(s) = &g.schedule {
                validate::schedule(&mut e, &format!("pageGenerators[{i}].schedule"), s);
            }
        }
        for step in self.steps().iter() {
            step.processor.validate_into(&mut e, &step.field);
        }
        crate::routing::validate(&mut e, &self.routers);
        for (i, c) in self
            .after_process
            .iter()
            .chain(&self.notify_request)
            .chain(&self.notify_response)
            .enumerate()
        {
            if url::Url::parse(&c.url).is_err() {
                e.add(
                    format!("callbacks[{i}].url"),
                    format!("'{}' is not a URL", c.url),
                );
            }
        }
        if let Some(a) = &self.alerts {
            a.validate_into(&mut e, "alerts");
        }
        if let Some(r) = &self.auto_retry {
            r.validate_into(&mut e, "autoRetry");
        }
        if self
            .run_next_flow_ids
            .iter()
            .any(|id| !self.id.is_empty() && id == &self.id)
        {
            e.add("_runNextFlowIds", "a flow cannot run itself next");
        }
        e.into_result()
    }
}

/// What a chain that loops is refused with, naming the loop.
pub fn chain_loop_message(cycle: &[String]) -> String {
    format!(
        "chains in a loop: {} (each run would start the next for ever); remove one of these links",
        cycle.join(" → ")
    )
}

/// A chain (`_runNextFlowIds`) that leads from `start` back to `start`, as the flows on it
/// (`["a", "b", "a"]`), if any. `next` gives a flow's `_runNextFlowIds` (empty for a flow
/// it does not know). Such a chain would run its flows in a loop for ever, so it is refused
/// when saved.
pub fn chain_cycle<'a>(
    start: &'a str,
    next: impl Fn(&str) -> Option<&'a [String]>,
) -> Option<Vec<String>> {
    // Depth first, keeping the path: the first way back to `start` is reported.
    let mut path: Vec<&str> = vec![start];
    let mut stack: Vec<std::slice::Iter<'a, String>> = vec![next(start).unwrap_or_default().iter()];
    let mut seen = std::collections::HashSet::from([start]);
    while let Some(top) = stack.last_mut() {
        let Some(flow) = top.next() else {
            stack.pop();
            path.pop();
            continue;
        };
        if flow == start {
            let mut cycle: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            cycle.push(start.to_string());
            return Some(cycle);
        }
        if seen.insert(flow) {
            path.push(flow);
            stack.push(next(flow).unwrap_or_default().iter());
        }
    }
    None
}

#[cfg(test)]
mod chain_tests {
    use super::chain_cycle;
    use std::collections::HashMap;

    fn chains(edges: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(a, bs)| (a.to_string(), bs.iter().map(|b| b.to_string()).collect()))
            .collect()
    }

    #[test]
    fn cycles_of_any_length_are_found_with_their_path() {
        let c = chains(&[("a", &["b"]), ("b", &["a"])]);
        let next = |f: &str| c.get(f).map(Vec::as_slice);
        assert_eq!(
            chain_cycle("a", next),
            Some(vec!["a".into(), "b".into(), "a".into()])
        );
        let c = chains(&[
            ("a", &["x", "b"]),
            ("x", &[]),
            ("b", &["c"]),
            ("c", &["d", "a"]),
            ("d", &["b"]),
        ]);
        let next = |f: &str| c.get(f).map(Vec::as_slice);
        assert_eq!(
            chain_cycle("a", next),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }

    #[test]
    fn chains_that_end_or_loop_elsewhere_are_not_cycles_of_this_flow() {
        let c = chains(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[]), ("d", &["a"])]);
        let next = |f: &str| c.get(f).map(Vec::as_slice);
        assert_eq!(chain_cycle("a", next), None, "a diamond is not a loop");
        let c = chains(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"])]);
        let next = |f: &str| c.get(f).map(Vec::as_slice);
        assert_eq!(
            chain_cycle("a", next),
            None,
            "b and c loop, but never back to a"
        );
        assert_eq!(
            chain_cycle("b", next),
            Some(vec!["b".into(), "c".into(), "b".into()])
        );
    }
}
