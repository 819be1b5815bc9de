//! Schedules: 5-field cron (or 6-field with `?` seconds) in the flow's IANA time zone,
//! DST-correct (croner works on the zone's wall clock: a time skipped by spring-forward runs
//! once at the first moment after the gap, as ISC cron does, so a daily job is not lost; a
//! time repeated by fall-back runs once); the minute tick starts what is due
//! without scanning every flow (the store keeps each flow's next due time, indexed by time).
//!
//! A page generator may have a `schedule` of its own (integrator.io's per-export override);
//! the flow's `schedule` is the default of the others. The store still keeps one due time per
//! flow, the earliest of its generators' next times, and the tick works out which
//! generators are due at it ([`due_exports`]): a run of those only (`_exportIds`), or of all.
//!
//! Runs missed while nothing ticked are not replayed one by one: the flow runs once, and its
//! next due time moves to the first one after now.

use crate::runs::start_run;
use crate::{Error, Result, Sluice};
use chrono::{DateTime, Utc};
use sluice_model::validate::parse_schedule;
use sluice_model::{Flow, RunKind, RunRequest, RunStarted};

/// The first time after `after` (at it too when `inclusive`) that `schedule` fires in the
/// flow's zone.
fn occurrence(
    flow: &Flow,
    schedule: &str,
    after: DateTime<Utc>,
    inclusive: bool,
) -> Option<DateTime<Utc>> {
    let cron = parse_schedule(schedule).ok()?;
    let local = after.with_timezone(&flow.timezone());
    cron.find_next_occurrence(&local, inclusive)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The first time strictly after `after` at which `flow` is due: the earliest of its page
/// generators' schedules (each its own `schedule`, else the flow's). None when no generator
/// has a schedule or the flow is disabled.
pub fn next_run(flow: &Flow, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if flow.disabled {
        return None;
    }
    flow.page_generators
        .iter()
        .filter_map(|g| occurrence(flow, flow.schedule_of(g)?, after, false))
        .min()
}

/// The exports of a flow whose schedule fired at `due` or since, up to `now`. `due` is the
/// flow's next due time as [`next_run`] gave it after the previous tick: no generator's
/// schedule fired between that tick and `due` (it would have been earlier), so a generator is
/// due when its first time at or after `due` has come.
pub fn due_exports(flow: &Flow, due: DateTime<Utc>, now: DateTime<Utc>) -> Vec<String> {
    flow.page_generators
        .iter()
        .filter(|g| {
            flow.schedule_of(g)
                .and_then(|s| occurrence(flow, s, due, true))
                .is_some_and(|at| at <= now)
        })
        .map(|g| g.export_id.clone())
        .collect()
}

/// The request of a scheduled run of the exports due: all (`_exportIds` absent) when every
/// generator is due, else only those.
fn scheduled_request(flow: &Flow, due: Vec<String>) -> RunRequest {
    RunRequest {
        export_ids: (due.len() < flow.page_generators.len()).then_some(due),
        ..Default::default()
    }
}

/// Records the flow's next due time in the store (call after a flow is saved or deleted).
pub async fn reschedule(sluice: &Sluice, flow: &Flow) -> Result<()> {
    let next = next_run(flow, sluice.clock.now());
    sluice.store.set_next_run(&flow.id, next).await?;
    Ok(())
}

/// The minute tick: starts every due flow (queued behind a running one) over the exports
/// whose schedules are due, and moves its next due time on; then the automatic retries that
/// are due (`runs::auto_retry::tick`); once a day it also runs the clean-up
/// (`runs::clean::tick`).
pub async fn tick(sluice: &Sluice) -> Result<Vec<RunStarted>> {
    let now = sluice.clock.now();
    let mut started = Vec::new();
    for (flow_id, due) in sluice.store.due_flows(now).await? {
        let flow = match sluice.flow(&flow_id).await {
            Ok(f) => f,
            Err(Error::NotFound { .. }) => {
                sluice.store.set_next_run(&flow_id, None).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        // Move the schedule on first: a failing start must not make every tick retry it.
        sluice
            .store
            .set_next_run(&flow_id, next_run(&flow, now))
            .await?;
        let exports = due_exports(&flow, due, now);
        if flow.disabled || exports.is_empty() {
            continue;
        }
        let request = scheduled_request(&flow, exports);
        match start_run(sluice, &flow_id, request, RunKind::Schedule).await {
            Ok(Some(s)) => started.push(s),
            Ok(None) => tracing::info!(flow = %flow_id, "flow is running; scheduled run queued"),
            Err(e) => tracing::warn!(flow = %flow_id, error = %e, "scheduled run did not start"),
        }
    }
    // Automatic retries that are due ride on the same tick (`runs::auto_retry`).
    match crate::runs::auto_retry::tick(sluice).await {
        Ok(retries) => started.extend(retries),
        Err(e) => tracing::warn!(error = %e, "automatic retries did not run"),
    }
    // The daily clean-up rides on the same tick (on AWS the trigger function's minute rule).
    if let Err(e) = crate::runs::clean::tick(sluice).await {
        tracing::warn!(error = %e, "clean-up did not run");
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn flow(schedule: &str, tz: &str) -> Flow {
        serde_json::from_value(serde_json::json!({"_id": "f", "schedule": schedule, "timezone": tz, "pageGenerators": [{"_exportId": "e"}]})).unwrap()
    }
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn five_and_six_field_forms_in_a_time_zone() {
        let f = flow("30 9 * * 1-5", "America/New_York");
        // Friday 2026-11-20 15:00 UTC is 10:00 in New York: next is Monday 09:30 EST = 14:30 UTC
        assert_eq!(
            next_run(&f, utc(2026, 11, 20, 15, 0)),
            Some(utc(2026, 11, 23, 14, 30))
        );
        let six = flow("? 30 9 * * 1-5", "America/New_York");
        assert_eq!(
            next_run(&six, utc(2026, 11, 20, 15, 0)),
            Some(utc(2026, 11, 23, 14, 30))
        );
    }

    #[test]
    fn spring_forward_runs_the_missing_time_once_after_the_gap() {
        // Europe/Berlin 2026-03-29: 02:00 -> 03:00, so 02:30 does not exist that day.
        let f = flow("30 2 * * *", "Europe/Berlin");
        let on_the_day = next_run(&f, utc(2026, 3, 28, 2, 0)).unwrap();
        assert_eq!(
            on_the_day,
            utc(2026, 3, 29, 1, 0),
            "runs at 03:00 CEST, right after the gap"
        );
        let after = next_run(&f, on_the_day).unwrap();
        assert_eq!(
            after,
            utc(2026, 3, 30, 0, 30),
            "then 02:30 CEST (UTC+2) as usual"
        );
    }

    #[test]
    fn fall_back_runs_once() {
        // Europe/Berlin 2026-10-25: 03:00 -> 02:00, so 02:30 happens twice (00:30 and 01:30 UTC).
        let f = flow("30 2 * * *", "Europe/Berlin");
        let first = next_run(&f, utc(2026, 10, 24, 23, 0)).unwrap();
        assert_eq!(first, utc(2026, 10, 25, 0, 30));
        let second = next_run(&f, first).unwrap();
        assert_eq!(
            second,
            utc(2026, 10, 26, 1, 30),
            "not again at 01:30 UTC the same night"
        );
    }

    #[test]
    fn an_export_with_its_own_schedule_is_due_on_it_and_the_others_on_the_flows() {
        let f: Flow = serde_json::from_value(serde_json::json!({"_id": "f",
            "schedule": "0 3 * * *", "timezone": "Europe/Berlin",
            "pageGenerators": [{"_exportId": "daily"}, {"_exportId": "often", "schedule": "*/15 * * * *"},
                               {"_exportId": "also-daily"}]}))
        .unwrap();
        // 10:05 UTC: the next is 10:15 (often), not 02:00 UTC (03:00 Berlin, daily).
        let next = next_run(&f, utc(2026, 11, 20, 10, 5)).unwrap();
        assert_eq!(next, utc(2026, 11, 20, 10, 15));
        assert_eq!(due_exports(&f, next, next), vec!["often".to_string()]);
        assert_eq!(
            scheduled_request(&f, due_exports(&f, next, next)).export_ids,
            Some(vec!["often".to_string()]),
            "a run of that export alone"
        );
        // The tick came late (10:17): still due; nothing else fired.
        assert_eq!(
            due_exports(&f, next, utc(2026, 11, 20, 10, 17)),
            vec!["often".to_string()]
        );
        // 02:00 UTC is 03:00 in Berlin: all three are due, so the run reads every export.
        let night = next_run(&f, utc(2026, 11, 21, 1, 50)).unwrap();
        assert_eq!(night, utc(2026, 11, 21, 2, 0));
        let all = due_exports(&f, night, night);
        assert_eq!(all.len(), 3);
        assert_eq!(scheduled_request(&f, all).export_ids, None);
        // Before its time nothing is due (a due time read early).
        assert!(due_exports(&f, next, utc(2026, 11, 20, 10, 14)).is_empty());
    }

    #[test]
    fn an_export_schedule_runs_a_flow_that_has_none() {
        let mut f: Flow = serde_json::from_value(serde_json::json!({"_id": "f",
            "pageGenerators": [{"_exportId": "a", "schedule": "0 * * * *"}, {"_exportId": "b"}]}))
        .unwrap();
        let next = next_run(&f, utc(2026, 1, 1, 0, 30)).unwrap();
        assert_eq!(next, utc(2026, 1, 1, 1, 0));
        assert_eq!(due_exports(&f, next, next), vec!["a".to_string()]);
        f.disabled = true;
        assert_eq!(next_run(&f, utc(2026, 1, 1, 0, 30)), None);
    }

    #[test]
    fn disabled_or_unscheduled_flows_are_never_due() {
        let mut f = flow("* * * * *", "UTC");
        assert!(next_run(&f, utc(2026, 1, 1, 0, 0)).is_some());
        f.disabled = true;
        assert!(next_run(&f, utc(2026, 1, 1, 0, 0)).is_none());
        f.disabled = false;
        f.schedule = None;
        assert!(next_run(&f, utc(2026, 1, 1, 0, 0)).is_none());
    }
}
