//! Routers and branches (integrator.io's `routers[]`), and the numbering of a flow's steps
//! that every page, ledger key, page outcome, stored error and retry is addressed by.
//!
//! A flow's records go through its `pageProcessors` first (the main line), then, when it has
//! routers, to `routers[0]`. A router sends each record down the first branch whose
//! `inputFilter` holds (`first_matching_branch`) or down every one (`all_matching_branches`);
//! a branch without a filter takes every record. After a branch's steps the records go to
//! the branch's `nextRouterId` (else the router's), or end there.
//!
//! Positions ([`Steps::position`]): the page processors are numbered in one sequence, the
//! main line first (`0..n`, so a flow without routers is numbered as it always was), then
//! each router's branches in order, each branch's processors in order. After the `s` steps
//! come the routers (`s..s+r`): a page *at* a router is one about to be routed (the
//! trigger's pages when a flow starts with a router, and the retry of a record whose branch
//! filters could not be decided). Every number past those is the end. A number names the
//! same step for as long as the flow's definition is unchanged, like a processor index did.
//!
//! Page ids: a page that leaves a router becomes one page per branch taken, with
//! `.r{router}b{branch}` added to its id, so pages that meet again at a router later (two
//! branches naming the same `nextRouterId`) keep different ids, and so different ledger
//! keys and outcomes. A record going down a second (third, ...) branch of an
//! `all_matching_branches` router is a copy with the same suffix added to its key.

use crate::{Filter, PageProcessor, ValidationErrors};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

/// A point in a flow where records take different branches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"id": "by-country", "name": "By country",
    "routeRecordsTo": "first_matching_branch",
    "branches": [
        {"name": "Germany", "inputFilter": {"type": "cel", "expression": "record.country == 'DE'"},
         "pageProcessors": [{"type": "import", "_importId": "post-de"}]},
        {"name": "Everyone else", "pageProcessors": [{"type": "import", "_importId": "post-world"}]}]}))]
pub struct Router {
    /// Unique within the flow: what a `nextRouterId` names.
    #[serde(default)]
    #[schema(required = true)]
    pub id: String,
    /// Shown in errors (`router By country`); the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Down which branches a record goes: the first whose filter holds (the default), or all.
    #[serde(default)]
    pub route_records_to: RouteRecordsTo,
    /// integrator.io's field; only `input_filters` (the branches' `inputFilter`) is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_records_using: Option<RouteRecordsUsing>,
    /// At least one, tried in order.
    #[serde(default)]
    pub branches: Vec<Branch>,
    /// Where every branch's records go after its steps, unless the branch names its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_router_id: Option<String>,
}

impl Router {
    /// The name shown in errors: the router's name, else its id.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// Down which branches of a router a record goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteRecordsTo {
    /// The first branch whose `inputFilter` holds.
    #[default]
    FirstMatchingBranch,
    /// Every branch whose `inputFilter` holds (the record's job counts it once: see the
    /// README's "Routers").
    AllMatchingBranches,
}

/// How a router decides (integrator.io's `routeRecordsUsing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteRecordsUsing {
    /// By each branch's `inputFilter`.
    InputFilters,
}

/// One way out of a router: a filter and the steps its records go through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Branch {
    /// Shown in errors and in a preview.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which records take this branch (CEL, rules, or a script function); without one,
    /// every record does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_filter: Option<Filter>,
    /// The branch's steps, in order. Records of a branch without steps and without a next
    /// router end ignored.
    #[serde(default)]
    pub page_processors: Vec<PageProcessor>,
    /// Where this branch's records go after its steps (overrides the router's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_router_id: Option<String>,
}

/// A place in a flow a page can be at, or go to next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A page processor, by step number.
    Step(usize),
    /// A router (index into `routers`): the page is about to be routed.
    Router(usize),
    /// Past the last step: records still active here are successes.
    End,
}

/// One page processor of a flow with where it stands.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    pub processor: &'a PageProcessor,
    /// Its place in the flow's JSON (`pageProcessors[1]`,
    /// `routers[0].branches[1].pageProcessors[0]`), for messages.
    pub field: String,
    /// Where its records go next.
    pub next: Position,
}

/// A flow's steps, numbered, with its routers' branches (see the module doc).
#[derive(Debug, Clone)]
pub struct Steps<'a> {
    steps: Vec<Step<'a>>,
    routers: &'a [Router],
    /// Per router, per branch: where the branch's records go first.
    branch_entries: Vec<Vec<Position>>,
    entry: Position,
}

impl<'a> Steps<'a> {
    /// Numbers the steps of `flow`. Total on flows that do not validate (a `nextRouterId`
    /// naming no router ends there), so stage code never fails on one.
    pub fn of(flow: &'a crate::Flow) -> Steps<'a> {
        let routers = flow.routers.as_slice();
        // The first router of an id is the one named (a second one is refused by validate).
        let ids: HashMap<&str, usize> = (routers.iter().enumerate().rev())
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let to_router = |id: Option<&String>| {
            id.and_then(|id| ids.get(id.as_str()))
                .map_or(Position::End, |&i| Position::Router(i))
        };
        let after_main = if routers.is_empty() {
            Position::End
        } else {
            Position::Router(0)
        };
        let mut steps = Vec::new();
        push_line(&mut steps, &flow.page_processors, "", after_main);
        let mut branch_entries = Vec::with_capacity(routers.len());
        for (ri, r) in routers.iter().enumerate() {
            let mut entries = Vec::with_capacity(r.branches.len());
            for (bi, b) in r.branches.iter().enumerate() {
                let after = to_router(b.next_router_id.as_ref().or(r.next_router_id.as_ref()));
                entries.push(if b.page_processors.is_empty() {
                    after
                } else {
                    Position::Step(steps.len())
                });
                let prefix = format!("routers[{ri}].branches[{bi}].");
                push_line(&mut steps, &b.page_processors, &prefix, after);
            }
            branch_entries.push(entries);
        }
        let entry = match (flow.page_processors.is_empty(), routers.is_empty()) {
            (false, _) => Position::Step(0),
            (true, false) => Position::Router(0),
            (true, true) => Position::End,
        };
        Steps {
            steps,
            routers,
            branch_entries,
            entry,
        }
    }

    /// What a page's (or an error's) step number names.
    pub fn position(&self, number: usize) -> Position {
        let n = self.steps.len();
        if number < n {
            Position::Step(number)
        } else if number - n < self.routers.len() {
            Position::Router(number - n)
        } else {
            Position::End
        }
    }

    /// The step number of a position (the end is the first number past the routers).
    pub fn number(&self, at: Position) -> usize {
        match at {
            Position::Step(i) => i,
            Position::Router(r) => self.steps.len() + r,
            Position::End => self.steps.len() + self.routers.len(),
        }
    }

    /// Where the trigger's pages start.
    pub fn entry(&self) -> Position {
        self.entry
    }

    pub fn step(&self, number: usize) -> Option<&Step<'a>> {
        self.steps.get(number)
    }

    /// Every step, in number order.
    pub fn iter(&self) -> impl Iterator<Item = &Step<'a>> {
        self.steps.iter()
    }

    pub fn router(&self, index: usize) -> Option<&'a Router> {
        self.routers.get(index)
    }

    /// Where the records of a router's branch go first: its first step, else (no steps) its
    /// next router, else the end.
    pub fn branch_entry(&self, router: usize, branch: usize) -> Position {
        self.branch_entries[router][branch]
    }
}

fn push_line<'a>(
    steps: &mut Vec<Step<'a>>,
    line: &'a [PageProcessor],
    prefix: &str,
    after: Position,
) {
    let first = steps.len();
    for (i, p) in line.iter().enumerate() {
        let next = if i + 1 < line.len() {
            Position::Step(first + i + 1)
        } else {
            after
        };
        steps.push(Step {
            processor: p,
            field: format!("{prefix}pageProcessors[{i}]"),
            next,
        });
    }
}

/// The suffix a page (and a copied record) gets going down `branch` of `router`.
pub fn branch_suffix(router: usize, branch: usize) -> String {
    format!(".r{router}b{branch}")
}

/// Checks a flow's routers: ids, branches, filters, the router graph (every `nextRouterId`
/// names a router, none leads back to one already passed, every router is reached). Each
/// branch's page processors are checked by the flow with the others.
pub(crate) fn validate(e: &mut ValidationErrors, routers: &[Router]) {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, r) in routers.iter().enumerate() {
        let at = format!("routers[{i}]");
        if r.id.is_empty() {
            e.add(format!("{at}.id"), "is required");
        } else if let Some(first) = ids.get(r.id.as_str()) {
            e.add(
                format!("{at}.id"),
                format!("'{}' is the id of routers[{first}] too", r.id),
            );
        } else {
            ids.insert(&r.id, i);
            crate::validate::id(e, &format!("{at}.id"), &r.id);
        }
        if r.branches.is_empty() {
            e.add(
                format!("{at}.branches"),
                "a router needs at least one branch",
            );
        }
        for (j, b) in r.branches.iter().enumerate() {
            if let Some(f) = &b.input_filter {
                f.validate_into(e, &format!("{at}.branches[{j}].inputFilter"));
            }
        }
    }
    // Each edge of the router graph, with the field it is written in.
    let mut edges: Vec<Vec<(usize, String)>> = vec![Vec::new(); routers.len()];
    for (i, r) in routers.iter().enumerate() {
        let mut named = |field: String, id: &String| match ids.get(id.as_str()) {
            Some(&to) => edges[i].push((to, field)),
            None => e.add(field, format!("Router not found: {id}")),
        };
        let mut all_own = !r.branches.is_empty();
        for (j, b) in r.branches.iter().enumerate() {
            match &b.next_router_id {
                Some(id) => named(format!("routers[{i}].branches[{j}].nextRouterId"), id),
                None => all_own = false,
            }
        }
        if let Some(id) = &r.next_router_id {
            // Used by the branches that name none (a router whose branches all name their
            // own still gets its own checked).
            let field = format!("routers[{i}].nextRouterId");
            if all_own {
                if !ids.contains_key(id.as_str()) {
                    e.add(field, format!("Router not found: {id}"));
                }
            } else {
                named(field, id);
            }
        }
    }
    if let Some((field, path)) = router_cycle(routers, &edges) {
        e.add(
            field,
            format!(
                "leads back to a router already passed ({}): records would go round for ever",
                path.join(" → ")
            ),
        );
    }
    let mut reached = vec![false; routers.len()];
    let mut stack = vec![0];
    while let Some(i) = stack.pop() {
        if i < routers.len() && !std::mem::replace(&mut reached[i], true) {
            stack.extend(edges[i].iter().map(|(to, _)| *to));
        }
    }
    for (i, r) in routers.iter().enumerate().filter(|(i, _)| !reached[*i]) {
        e.add(
            format!("routers[{i}]"),
            format!(
                "router '{}' is never reached: records start at routers[0] and no \
                 nextRouterId on the way leads here",
                r.id
            ),
        );
    }
}

/// The first edge that closes a loop (its field) and the routers on the loop.
fn router_cycle(
    routers: &[Router],
    edges: &[Vec<(usize, String)>],
) -> Option<(String, Vec<String>)> {
    // 0: unseen, 1: on the current path, 2: done.
    let mut state = vec![0u8; routers.len()];
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        at: usize,
        edges: &[Vec<(usize, String)>],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<(String, usize)> {
        state[at] = 1;
        path.push(at);
        for (to, field) in &edges[at] {
            match state[*to] {
                1 => return Some((field.clone(), *to)),
                0 => {
                    if let Some(found) = visit(*to, edges, state, path) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state[at] = 2;
        None
    }
    for start in 0..routers.len() {
        if state[start] == 0 {
            if let Some((field, back_to)) = visit(start, edges, &mut state, &mut path) {
                let from = path.iter().position(|&r| r == back_to).unwrap_or(0);
                let mut names: Vec<String> = path[from..]
                    .iter()
                    .map(|&r| routers[r].id.clone())
                    .collect();
                names.push(routers[back_to].id.clone());
                return Some((field, names));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Flow;
    use serde_json::json;

    fn flow(v: serde_json::Value) -> Flow {
        let mut base = json!({"_id": "f", "name": "F", "pageGenerators": [{"_exportId": "e"}]});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn import(id: &str) -> serde_json::Value {
        json!({"type": "import", "_importId": id})
    }

    fn problems(f: &Flow) -> Vec<(String, String)> {
        match f.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| (e.field, e.message)).collect(),
        }
    }

    #[test]
    fn steps_number_the_main_line_first_then_each_branch_and_routers_after_them() {
        let f = flow(json!({
            "pageProcessors": [import("a")],
            "routers": [
                {"id": "r1", "branches": [
                    {"name": "x", "pageProcessors": [import("b"), import("c")], "nextRouterId": "r2"},
                    {"name": "y", "pageProcessors": []}]},
                {"id": "r2", "branches": [{"name": "z", "pageProcessors": [import("d")]}]}]}));
        let s = Steps::of(&f);
        let fields: Vec<(&str, Position)> = s.iter().map(|s| (&*s.field, s.next)).collect();
        assert_eq!(
            fields,
            [
                ("pageProcessors[0]", Position::Router(0)),
                (
                    "routers[0].branches[0].pageProcessors[0]",
                    Position::Step(2)
                ),
                (
                    "routers[0].branches[0].pageProcessors[1]",
                    Position::Router(1)
                ),
                ("routers[1].branches[0].pageProcessors[0]", Position::End),
            ]
        );
        assert_eq!(s.entry(), Position::Step(0));
        assert_eq!(s.branch_entry(0, 0), Position::Step(1));
        assert_eq!(s.branch_entry(0, 1), Position::End, "an empty branch");
        assert_eq!(s.position(4), Position::Router(0));
        assert_eq!(s.position(5), Position::Router(1));
        assert_eq!(s.position(6), Position::End);
        assert_eq!(s.number(Position::Router(1)), 5);
        assert!(problems(&f).is_empty(), "{:?}", problems(&f));

        let plain = flow(json!({"pageProcessors": [import("a"), import("b")]}));
        let s = Steps::of(&plain);
        assert_eq!(s.position(1), Position::Step(1));
        assert_eq!(s.step(1).unwrap().next, Position::End);
        assert_eq!(s.position(2), Position::End);
        let starts_routed = flow(json!({"routers": [{"id": "r", "branches": [{"name": "x"}]}]}));
        assert_eq!(Steps::of(&starts_routed).entry(), Position::Router(0));
    }

    #[test]
    fn a_router_graph_with_unknown_ids_loops_or_unreached_routers_is_refused_naming_the_field() {
        let f = flow(json!({"routers": [
            {"id": "r1", "branches": [{"name": "x", "nextRouterId": "r2"},
                                      {"name": "y", "nextRouterId": "nope"}]},
            {"id": "r2", "nextRouterId": "r1", "branches": [{"name": "z"}]},
            {"id": "r3", "branches": [{"name": "w"}]},
            {"id": "r1", "branches": []}]}));
        let got = problems(&f);
        let expect = [
            ("routers[3].id", "'r1' is the id of routers[0] too"),
            ("routers[3].branches", "a router needs at least one branch"),
            ("routers[0].branches[1].nextRouterId", "Router not found: nope"),
            (
                "routers[1].nextRouterId",
                "leads back to a router already passed (r1 → r2 → r1): records would go round for ever",
            ),
            (
                "routers[2]",
                "router 'r3' is never reached: records start at routers[0] and no nextRouterId on the way leads here",
            ),
        ];
        for (field, message) in expect {
            assert!(
                got.iter().any(|(f, m)| f == field && m == message),
                "{field}: {message} not in {got:#?}"
            );
        }
    }

    #[test]
    fn branch_steps_and_filters_are_validated_like_the_main_line() {
        let f = flow(
            json!({"routers": [{"id": "r", "routeRecordsTo": "all_matching_branches",
            "branches": [{"name": "x", "inputFilter": {"type": "cel", "expression": "record.a >"},
                          "pageProcessors": [{"type": "import"}]}]}]}),
        );
        let got = problems(&f);
        let fields: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert!(
            fields.contains(&"routers[0].branches[0].inputFilter.expression"),
            "{got:?}"
        );
        assert!(
            fields.contains(&"routers[0].branches[0].pageProcessors[0]._importId"),
            "{got:?}"
        );
    }

    #[test]
    fn a_bundle_names_the_branch_step_whose_import_or_export_is_unknown() {
        let bundle: crate::Bundle = serde_json::from_value(json!({
            "exports": [{"_id": "e", "name": "e", "type": "webhook"}],
            "flows": [{"_id": "f", "name": "F", "pageGenerators": [{"_exportId": "e"}],
                "routers": [{"id": "r", "branches": [
                    {"name": "x", "pageProcessors": [{"type": "export", "_exportId": "e"}]},
                    {"name": "y", "pageProcessors": [import("gone")]}]}]}]}))
        .unwrap();
        let e = bundle.validate().unwrap_err();
        assert_eq!(
            e.0.iter()
                .map(|e| (e.field.as_str(), e.message.as_str()))
                .collect::<Vec<_>>(),
            [(
                "flows[0].routers[0].branches[1].pageProcessors[0]._importId",
                "Import not found: gone"
            )]
        );
    }
}
