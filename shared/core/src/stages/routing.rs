//! Routers: which branch(es) each record of a page takes, and the pages that go down them.
//! Evaluate routes a page as it leaves the step before a router, or as it arrives at one
//! (`sluice_model::routing` numbers the steps and names the pages).
//!
//! Invariant: every record routed either goes on in exactly one branch page as it is counted
//! (its `Counting` unchanged), or ends here, ignored (no branch takes it, or its branch has no
//! steps) or failed (a branch filter could not be decided), and is counted in the page's
//! verdicts. Its copies on further branches of an `all_matching_branches` router are
//! `NotCounted`: however many branches a record takes, its job counts it once.

use super::evaluate::{job_error, Ended, StepLabel, Verdicts};
use crate::{Result, Sluice};
use sluice_model::routing::branch_suffix;
use sluice_model::{
    Counting, FailureCode, Flow, Page, PageRecord, Position, RecordState, RouteRecordsTo, Router,
};

/// Routes `records` (leaving `from`) through router `router` and on through the routers
/// that branches without steps lead to; returns the pages that go to a step.
pub(crate) async fn route(
    sluice: &Sluice,
    flow: &Flow,
    router: usize,
    from: &Page,
    records: Vec<PageRecord>,
    v: &mut Verdicts,
) -> Result<Vec<Page>> {
    let steps = flow.steps();
    let mut pages = Vec::new();
    // (router, the id of the page its records are in, records, routers passed)
    let mut work = vec![(router, from.page_id.clone(), records, 0)];
    while let Some((ri, page_id, records, passed)) = work.pop() {
        let Some(r) = steps.router(ri).filter(|_| passed <= flow.routers.len()) else {
            // Only a flow saved without validation can loop through empty branches.
            records
                .iter()
                .for_each(|rec| v.count(rec.counting, Ended::Ignored));
            continue;
        };
        let at = steps.number(Position::Router(ri));
        let per_branch = choose(sluice, r, ri, (from, at), records, v).await?;
        for (bi, recs) in per_branch.into_iter().enumerate() {
            if recs.is_empty() {
                continue;
            }
            let id = format!("{page_id}{}", branch_suffix(ri, bi));
            match steps.branch_entry(ri, bi) {
                Position::Step(t) => pages.push(from.onward(t, id, recs)),
                Position::Router(next) => work.push((next, id, recs, passed + 1)),
                // A branch without steps and without a next router: its records end here.
                Position::End => recs
                    .iter()
                    .for_each(|rec| v.count(rec.counting, Ended::Ignored)),
            }
        }
    }
    Ok(pages)
}

/// Sorts the records into the router's branches. Records no branch takes are counted as
/// ignored; records a filter could not decide fail (stored at the router's position, so a
/// retry is routed again).
async fn choose(
    sluice: &Sluice,
    r: &Router,
    ri: usize,
    (from, at): (&Page, usize),
    records: Vec<PageRecord>,
    v: &mut Verdicts,
) -> Result<Vec<Vec<PageRecord>>> {
    let all = r.route_records_to == RouteRecordsTo::AllMatchingBranches;
    let mut taken: Vec<Vec<usize>> = vec![Vec::new(); records.len()];
    let mut failed: Vec<Option<String>> = vec![None; records.len()];
    for (bi, b) in r.branches.iter().enumerate() {
        let open: Vec<usize> = (0..records.len())
            .filter(|&i| failed[i].is_none() && (all || taken[i].is_empty()))
            .collect();
        if open.is_empty() {
            break;
        }
        let Some(filter) = &b.input_filter else {
            open.iter().for_each(|&i| taken[i].push(bi));
            continue;
        };
        let mut probes: Vec<PageRecord> = (open.iter())
            .map(|&i| PageRecord::new(records[i].key.clone(), records[i].data.clone()))
            .collect();
        let whose = format!("branch '{}' of router '{}'", b.name, r.label());
        let how = (whose.as_str(), FailureCode::InputFilter);
        crate::hooks::shaping::filter_records(sluice, filter, how, None, &mut probes).await?;
        for (&i, probe) in open.iter().zip(&probes) {
            match &probe.state {
                RecordState::Active => taken[i].push(bi),
                RecordState::Ignored { .. } => {}
                RecordState::Failed { message, .. } => {
                    failed[i] = Some(format!("the inputFilter of {whose}: {message}"))
                }
            }
        }
    }
    let mut per_branch = vec![Vec::new(); r.branches.len()];
    let label = StepLabel {
        name: Some(format!("router {}", r.label())),
        ..StepLabel::default()
    };
    let at_router = from.onward(at, from.page_id.clone(), Vec::new());
    for ((rec, branches), failure) in records.into_iter().zip(taken).zip(failed) {
        if let Some(message) = failure {
            let error = job_error(
                sluice,
                &at_router,
                &label,
                &rec,
                None,
                FailureCode::InputFilter,
                &message,
            );
            v.errors.push(error);
            v.count(rec.counting, Ended::Failed);
            continue;
        }
        let Some((&first, further)) = branches.split_first() else {
            v.count(rec.counting, Ended::Ignored);
            continue;
        };
        for &bi in further {
            let mut copy = rec.clone();
            copy.key = format!("{}{}", rec.key, branch_suffix(ri, bi));
            copy.counting = Counting::NotCounted;
            per_branch[bi].push(copy);
        }
        per_branch[first].push(rec);
    }
    Ok(per_branch)
}
