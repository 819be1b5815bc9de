//! [`DynamoStore`]: the [`Store`] port on one DynamoDB table with a string partition key `pk`
//! and a string sort key `sk`.
//!
//! | what            | pk                    | sk                               | attributes                          |
//! |-----------------|-----------------------|----------------------------------|-------------------------------------|
//! | definition      | `def#<collection>`    | `<id>`                           | `doc` (map)                         |
//! | audit entry     | `audit#<resourceId>`  | `<time>#<entry id>`              | `doc`                               |
//! | job             | `job#<jobId>`         | `job`                            | the job's fields, counters as N     |
//! | job by flow     | `flowjobs#<flowId>`   | `<createdAt>#<jobId>`            | `jobId`                             |
//! | job by time     | `jobs`                | `<createdAt>#<jobId>`            | `jobId` (`GET /jobs` of all flows)  |
//! | page outcome    | `job#<jobId>`         | `outcome#<pageId>#<processor>`   | (claim marker)                      |
//! | job error       | `errors#<jobId>`      | `<error id>`                     | the error's fields                  |
//! | ledger entry    | `ledger#<key>`        | `ledger`                         | `claimedAt`, `outcome`?, `ttl`      |
//! | ledger chunk    | `ledger#<chunk key>`  | `ledger`                         | `claimedAt`, `sends` (map), `ttl`   |
//! | run lock        | `lock#<flowId>`       | `lock`                           | `owner`, `leaseUntil` (epoch ms)    |
//! | waiting run     | `queued#<flowId>`     | `run#<queuedAt>#<runId>`         | `run` (map)                         |
//! | waiting key     | `queued#<flowId>`     | `key#<QueuedRun::key>`           | `entry` (the waiting run's sk)      |
//! | schedule entry  | `schedule`            | `<nextAt>#<flowId>`              | `flowId`, `at`                      |
//! | schedule of flow| `schedule#<flowId>`   | `schedule`                       | `entry` (the sk above)              |
//! | retry time      | `retry`               | `<nextAt>#<jobId>`               | `jobId`, `at` (automatic retry due) |
//! | retry of job    | `retry#<jobId>`       | `retry`                          | `entry` (the sk above)              |
//! | state           | `state#<key>`         | `state`                          | `value`                             |
//! | leased slot     | `slots#<group>`       | `slot#<index, 6 digits>`         | `index`, `owner`, `leaseUntil`, `ttl` |
//!
//! A connection's concurrency slots are the group `limit:<connectionId>`: one Query reads them
//! all, so a waiter polls with a read and writes only to take a slot it saw free. Its rate
//! state is the state `limit:<connectionId>:rate` (a number, swapped with a conditional put
//! on its old value).
//!
//! Times in sort keys are RFC 3339 UTC with milliseconds (fixed width, so they sort).
//! Counters move with `UpdateItem ADD`; a page outcome is claimed by a conditional put in the
//! same transaction as its counter update, so a redelivered outcome never counts twice. Locks
//! compare their lease in the condition: TTL deletion lags on AWS and never happens on moto.

mod attrs;
#[cfg(test)]
mod tests;
mod waiting;

pub use attrs::{from_av, to_av, Item};

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use attrs::{item_to_object, n, object_to_item, s};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::builders::PutBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sluice_core::ports::{
    ledger_prefixes, AuditEntry, ErrorQuery, JobQuery, Kind, LedgerState, LockHolder, PageOutcome,
    Purged, Settled, Store,
};
use sluice_model::api::Listing;
use sluice_model::{Job, JobError, JobStatus, QueuedRun};
use std::time::Duration;

/// The attribute of a ledger chunk item holding its sends: send key -> NULL while claimed,
/// the outcome once settled; a send given back is removed.
const CHUNK_SENDS: &str = "sends";

/// Due times indexed by time, one per id (`<ns>` / `<at>#<id>` entries, `<ns>#<id>`
/// pointers): the flows' schedules and the jobs' automatic retries.
#[derive(Clone, Copy)]
struct Timers {
    ns: &'static str,
    /// The entry's attribute holding the id.
    id_attr: &'static str,
}

const SCHEDULES: Timers = Timers {
    ns: "schedule",
    id_attr: "flowId",
};
const RETRY_TIMES: Timers = Timers {
    ns: "retry",
    id_attr: "jobId",
};

/// Sends per ledger chunk item: [`Store::ledger_chunk_size`].
const LEDGER_CHUNK: usize = 25;

/// What a chunk item says of each of `sends`: `Claimed` standing for "not in it" (to claim).
fn chunk_states(item: &Item, sends: &[String]) -> Vec<LedgerState> {
    let held = item.get(CHUNK_SENDS).and_then(|v| v.as_m().ok());
    sends
        .iter()
        .map(|k| match held.and_then(|m| m.get(k)) {
            None => LedgerState::Claimed,
            Some(AttributeValue::Null(_)) => LedgerState::InFlight,
            Some(outcome) => LedgerState::Done(from_av(outcome)),
        })
        .collect()
}

/// How long ledger entries are kept before DynamoDB's TTL may delete them.
const LEDGER_TTL_DAYS: i64 = 30;

pub struct DynamoStore {
    client: Client,
    table: String,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    Item::from([("pk".into(), s(pk)), ("sk".into(), s(sk))])
}

/// `item` held by `owner` until `until`. TTL only as housekeeping, a day after the lease:
/// correctness is in the conditions that compare `leaseUntil`.
fn leased(mut item: Item, owner: &str, until: DateTime<Utc>) -> Item {
    item.insert("owner".into(), s(owner));
    item.insert("leaseUntil".into(), n(until.timestamp_millis()));
    item.insert("ttl".into(), n(until.timestamp() + 86_400));
    item
}

fn is_condition_failed<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

impl DynamoStore {
    /// A Put of `item` into the table, for a transaction (conditions added by the caller).
    fn put_of(&self, item: Item) -> PutBuilder {
        Put::builder().table_name(&self.table).set_item(Some(item))
    }

    /// Deletes the item if `owner` still holds it; nothing if someone else does.
    async fn delete_if_owner(&self, key: Item, owner: &str, what: &str) -> anyhow::Result<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("dynamodb DeleteItem ({what})"))),
        }
    }

    /// Puts `item` if `condition` holds; false (nothing written) when it does not.
    async fn put_if(&self, item: Item, condition: &str, what: &str) -> anyhow::Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context(format!("dynamodb PutItem ({what})"))),
        }
    }

    /// Puts a new chunk item with every send claimed; false when the chunk exists already.
    async fn claim_new_chunk(
        &self,
        pk: &str,
        sends: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let mut item = key(pk, "ledger");
        item.insert("claimedAt".into(), s(stamp(now)));
        item.insert(
            "ttl".into(),
            n((now + chrono::Duration::days(LEDGER_TTL_DAYS)).timestamp()),
        );
        let claimed = sends
            .iter()
            .map(|k| (k.clone(), AttributeValue::Null(true)))
            .collect();
        item.insert(CHUNK_SENDS.into(), AttributeValue::M(claimed));
        self.put_if(item, "attribute_not_exists(pk)", "ledger chunk claim")
            .await
    }

    /// Claims sends of an existing chunk that are not in it (given back, or new to it); false
    /// when one of them was claimed by someone else first.
    async fn claim_given_back(&self, pk: &str, sends: &[String]) -> anyhow::Result<bool> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, "ledger")))
            .expression_attribute_names("#s", CHUNK_SENDS)
            .expression_attribute_values(":claimed", AttributeValue::Null(true));
        let (mut sets, mut conditions) = (vec![], vec![]);
        for (i, send) in sends.iter().enumerate() {
            update = update.expression_attribute_names(format!("#k{i}"), send);
            sets.push(format!("#s.#k{i} = :claimed"));
            conditions.push(format!("attribute_not_exists(#s.#k{i})"));
        }
        let result = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => {
                Err(anyhow::Error::new(e).context("dynamodb UpdateItem (ledger chunk claim)"))
            }
        }
    }

    /// Writes sends' outcomes into a chunk item (`None`: given back, removed), in one update.
    async fn settle<'k>(
        &self,
        pk: &str,
        values: impl Iterator<Item = (&'k str, Option<AttributeValue>)>,
    ) -> anyhow::Result<()> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, "ledger")))
            .expression_attribute_names("#s", CHUNK_SENDS);
        let (mut sets, mut removes) = (vec![], vec![]);
        for (i, (send, value)) in values.enumerate() {
            update = update.expression_attribute_names(format!("#k{i}"), send);
            match value {
                Some(v) => {
                    update = update.expression_attribute_values(format!(":v{i}"), v);
                    sets.push(format!("#s.#k{i} = :v{i}"));
                }
                None => removes.push(format!("#s.#k{i}")),
            }
        }
        let mut expression = vec![];
        if !sets.is_empty() {
            expression.push(format!("SET {}", sets.join(", ")));
        }
        if !removes.is_empty() {
            expression.push(format!("REMOVE {}", removes.join(", ")));
        }
        update
            .update_expression(expression.join(" "))
            .send()
            .await?;
        Ok(())
    }

    /// The job's status read consistently: canceled or not (a job not stored is not).
    async fn job_canceled(&self, job_id: &str) -> anyhow::Result<bool> {
        let job = self.get(format!("job#{job_id}"), "job").await?;
        Ok(job
            .as_ref()
            .and_then(|i| i.get("status"))
            .and_then(|v| v.as_s().ok())
            .is_some_and(|st| st == JobStatus::Canceled.as_str()))
    }

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, pk: String, sk: &str) -> anyhow::Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .context("dynamodb GetItem")?;
        Ok(out.item)
    }

    /// Every item of a partition, ascending by sk (follows pagination).
    async fn query_all(&self, pk: String, sk_at_most: Option<String>) -> anyhow::Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            q = match &sk_at_most {
                Some(max) => q
                    .key_condition_expression("pk = :pk AND sk <= :max")
                    .expression_attribute_values(":max", s(max.clone())),
                None => q.key_condition_expression("pk = :pk"),
            };
            let out = q.send().await.context("dynamodb Query")?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Deletes the items with these keys (BatchWriteItem, 25 at a time, unprocessed ones
    /// sent again).
    async fn delete_all(&self, keys: Vec<Item>) -> anyhow::Result<()> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    let delete = DeleteRequest::builder().set_key(Some(k.clone())).build()?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<anyhow::Result<_>>()?;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .context("dynamodb BatchWriteItem (purge)")?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }

    /// The keys of the ledger items of these jobs. The ledger is keyed by send, not by job,
    /// so this is one Scan of the ledger items for the whole purge (TTL stays the backstop
    /// that needs no scan).
    async fn ledger_keys_of(&self, job_ids: &[String]) -> anyhow::Result<Vec<Item>> {
        let prefixes: Vec<String> = job_ids
            .iter()
            .flat_map(|j| ledger_prefixes(j))
            .map(|p| format!("ledger#{p}"))
            .collect();
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :ledger)")
                .expression_attribute_values(":ledger", s("ledger#"))
                .projection_expression("pk, sk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .context("dynamodb Scan (ledger of purged jobs)")?;
            for item in out.items.unwrap_or_default() {
                let pk = item.get("pk").and_then(|v| v.as_s().ok());
                if pk.is_some_and(|pk| prefixes.iter().any(|p| pk.starts_with(p.as_str()))) {
                    keys.push(item);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(keys),
            }
        }
    }

    async fn put(&self, item: Item) -> anyhow::Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .context("dynamodb PutItem")?;
        Ok(())
    }

    fn job_from_item(item: &Item) -> anyhow::Result<Job> {
        serde_json::from_value(item_to_object(item, &["pk", "sk"]))
            .context("stored job is unreadable")
    }

    fn doc(item: &Item) -> Value {
        item.get("doc").map(from_av).unwrap_or(Value::Null)
    }

    /// Sets (or clears) `id`'s due time among `timers`, retrying while another writer moves
    /// it concurrently. The per-id pointer is written on the condition that it still names
    /// the entry read, so two concurrent writers cannot leave a stale entry behind: the loser
    /// reads again and retries.
    async fn set_time(
        &self,
        timers: Timers,
        id: &str,
        at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        for _ in 0..8 {
            if self.try_set_time(timers, id, at).await? {
                return Ok(());
            }
        }
        Err(anyhow!(
            "{}: {id}: due time kept changing concurrently",
            timers.ns
        ))
    }

    /// The ids whose due time among `timers` is at or before `now`, earliest first.
    async fn due(
        &self,
        timers: Timers,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, DateTime<Utc>)>> {
        // '$' sorts after '#', so every entry at exactly `now` is included.
        let items = self
            .query_all(timers.ns.into(), Some(format!("{}$", stamp(now))))
            .await?;
        items
            .iter()
            .map(|i| {
                let obj = item_to_object(i, &["pk", "sk"]);
                let id = obj[timers.id_attr]
                    .as_str()
                    .with_context(|| format!("{} entry without {}", timers.ns, timers.id_attr))?;
                let at = obj["at"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .with_context(|| format!("{} entry without a valid at", timers.ns))?;
                Ok((id.to_string(), at.with_timezone(&Utc)))
            })
            .collect()
    }

    /// One attempt of `set_time`; false when another writer moved the time meanwhile.
    async fn try_set_time(
        &self,
        timers: Timers,
        id: &str,
        at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<bool> {
        let Timers { ns, id_attr } = timers;
        let pointer_pk = format!("{ns}#{id}");
        let old = self.get(pointer_pk.clone(), ns).await?;
        let old_sk = match old.as_ref().and_then(|i| i.get("entry")) {
            Some(AttributeValue::S(sk)) => Some(sk.clone()),
            _ => None,
        };
        let new_sk = at.map(|at| format!("{}#{id}", stamp(at)));
        if old_sk == new_sk {
            return Ok(true);
        }
        let (condition, values): (&str, Item) = match &old_sk {
            Some(sk) => ("entry = :old", Item::from([(":old".to_string(), s(sk))])),
            None => ("attribute_not_exists(pk)", Item::new()),
        };
        let values = (!values.is_empty()).then_some(values);
        let mut tx = self.client.transact_write_items();
        if let Some(sk) = &old_sk {
            tx = tx.transact_items(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(ns, sk)))
                            .build()?,
                    )
                    .build(),
            );
        }
        match (at, &new_sk) {
            (Some(at), Some(entry_sk)) => {
                let mut entry = key(ns, entry_sk);
                entry.insert(id_attr.into(), s(id));
                entry.insert("at".into(), s(at.to_rfc3339()));
                let mut pointer = key(pointer_pk, ns);
                pointer.insert("entry".into(), s(entry_sk));
                tx = tx
                    .transact_items(tx_put(self.put_of(entry))?)
                    .transact_items(tx_put(
                        self.put_of(pointer)
                            .condition_expression(condition)
                            .set_expression_attribute_values(values),
                    )?);
            }
            _ => {
                tx = tx.transact_items(
                    TransactWriteItem::builder()
                        .delete(
                            Delete::builder()
                                .table_name(&self.table)
                                .set_key(Some(key(pointer_pk, ns)))
                                .condition_expression(condition)
                                .set_expression_attribute_values(values)
                                .build()?,
                        )
                        .build(),
                );
            }
        }
        match tx.send().await {
            Ok(_) => Ok(true),
            Err(err) => {
                match err.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(_)) => Ok(false),
                    _ => Err(anyhow::Error::new(err)
                        .context(format!("dynamodb TransactWriteItems ({ns})"))),
                }
            }
        }
    }
}

/// A conditional TransactWriteItems: true when written, false when one of its conditions
/// failed. Any other cancellation (a conflicting transaction) is an error, so the caller
/// retries rather than takes "no" for an answer.
fn conditional_transaction<T, R2>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError, R2>>,
    what: &str,
) -> anyhow::Result<bool>
where
    R2: std::fmt::Debug + Send + Sync + 'static,
{
    let err = match result {
        Ok(_) => return Ok(true),
        Err(err) => err,
    };
    if let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error() {
        if e.cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed"))
        {
            return Ok(false);
        }
    }
    Err(anyhow::Error::new(err).context(format!("dynamodb TransactWriteItems ({what})")))
}

/// One Put of a TransactWriteItems.
fn tx_put(put: PutBuilder) -> anyhow::Result<TransactWriteItem> {
    Ok(TransactWriteItem::builder().put(put.build()?).build())
}

fn job_key(job_id: &str) -> Item {
    key(format!("job#{job_id}"), "job")
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_definition(&self, kind: Kind, id: &str, doc: &Value) -> anyhow::Result<()> {
        let mut item = key(format!("def#{}", kind.collection()), id);
        item.insert("doc".into(), to_av(doc));
        self.put(item).await
    }

    async fn get_definition(&self, kind: Kind, id: &str) -> anyhow::Result<Option<Value>> {
        let item = self.get(format!("def#{}", kind.collection()), id).await?;
        Ok(item.as_ref().map(Self::doc))
    }

    async fn list_definitions(&self, kind: Kind) -> anyhow::Result<Vec<Value>> {
        let items = self
            .query_all(format!("def#{}", kind.collection()), None)
            .await?;
        Ok(items.iter().map(Self::doc).collect())
    }

    async fn delete_definition(&self, kind: Kind, id: &str) -> anyhow::Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("def#{}", kind.collection()), id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .context("dynamodb DeleteItem")?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn append_audit(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        let mut item = key(
            format!("audit#{}", entry.resource_id),
            format!("{}#{}", stamp(entry.time), entry.id),
        );
        item.insert("doc".into(), to_av(&serde_json::to_value(entry)?));
        self.put(item).await
    }

    async fn list_audit(&self, resource_id: &str) -> anyhow::Result<Vec<AuditEntry>> {
        let items = self.query_all(format!("audit#{resource_id}"), None).await?;
        items
            .iter()
            .map(|i| serde_json::from_value(Self::doc(i)).context("stored audit entry"))
            .collect()
    }

    async fn create_job(&self, job: &Job) -> anyhow::Result<bool> {
        let mut item = object_to_item(&serde_json::to_value(job)?);
        item.extend(job_key(&job.id));
        let created = job.created_at.map(stamp).unwrap_or_default();
        let mut index = key(
            format!("flowjobs#{}", job.flow_id),
            format!("{created}#{}", job.id),
        );
        index.insert("jobId".into(), s(&job.id));
        let mut by_time = key("jobs", format!("{created}#{}", job.id));
        by_time.insert("jobId".into(), s(&job.id));
        let result = self
            .client
            .transact_write_items()
            .transact_items(tx_put(
                self.put_of(item)
                    .condition_expression("attribute_not_exists(pk)"),
            )?)
            .transact_items(tx_put(self.put_of(index))?)
            .transact_items(tx_put(self.put_of(by_time))?)
            .send()
            .await;
        conditional_transaction(result, "create job")
    }

    async fn purge_jobs(&self, job_ids: &[String]) -> anyhow::Result<Purged> {
        let mut purged = Purged::default();
        let (mut keys, mut job_items) = (Vec::new(), Vec::new());
        let only_keys = |items: Vec<Item>| {
            items.into_iter().map(|i| {
                i.into_iter()
                    .filter(|(k, _)| k == "pk" || k == "sk")
                    .collect::<Item>()
            })
        };
        for id in job_ids {
            let Some(job) = self.get_job(id).await? else {
                continue;
            };
            purged.jobs += 1;
            job_items.push(job_key(id));
            let errors = self.query_all(format!("errors#{id}"), None).await?;
            purged.errors += errors.len();
            keys.extend(only_keys(errors));
            // The job item and its page outcomes share its partition.
            let partition = self.query_all(format!("job#{id}"), None).await?;
            let outcomes = partition.into_iter().filter(|i| {
                i.get("sk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|sk| sk != "job")
            });
            keys.extend(only_keys(outcomes.collect()));
            let created = job.created_at.map(stamp).unwrap_or_default();
            keys.push(key(
                format!("flowjobs#{}", job.flow_id),
                format!("{created}#{id}"),
            ));
            keys.push(key("jobs", format!("{created}#{id}")));
        }
        if purged.jobs == 0 {
            return Ok(purged);
        }
        let ledger = self.ledger_keys_of(job_ids).await?;
        purged.ledger_entries = ledger.len();
        keys.extend(ledger);
        // The job items last: a purge cut short finds its jobs again and finishes.
        self.delete_all(keys).await?;
        self.delete_all(job_items).await?;
        Ok(purged)
    }

    async fn get_job(&self, id: &str) -> anyhow::Result<Option<Job>> {
        match self.get(format!("job#{id}"), "job").await? {
            Some(item) => Ok(Some(Self::job_from_item(&item)?)),
            None => Ok(None),
        }
    }

    async fn list_jobs(&self, flow_id: &str, limit: usize) -> anyhow::Result<Vec<Job>> {
        let mut jobs = Vec::new();
        let mut start = None;
        // Newest first: query the flow's index backwards, then load each job.
        'pages: loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("flowjobs#{flow_id}")))
                .scan_index_forward(false)
                .limit(i32::try_from(limit).unwrap_or(i32::MAX).max(1))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .context("dynamodb Query (jobs of flow)")?;
            for item in out.items.unwrap_or_default() {
                if jobs.len() >= limit {
                    break 'pages;
                }
                if let Some(AttributeValue::S(id)) = item.get("jobId") {
                    if let Some(job) = self.get_job(id).await? {
                        jobs.push(job);
                    }
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && jobs.len() < limit => start = Some(k),
                _ => break,
            }
        }
        Ok(jobs)
    }

    async fn find_jobs(&self, query: &JobQuery) -> anyhow::Result<Listing<Job>> {
        let pk = match &query.flow_id {
            Some(flow) => format!("flowjobs#{flow}"),
            None => "jobs".to_string(),
        };
        // Index keys are `<createdAt>#<jobId>`. One range condition is allowed on the sort
        // key, so both bounds go into one inclusive BETWEEN and the upper one (the cursor,
        // or `until`, which no key equals) is dropped when met.
        let low = query.since.map(stamp).unwrap_or_else(|| "0".into());
        let until = query.until.map(stamp).unwrap_or_else(|| "~".into());
        let high = match &query.cursor {
            Some(c) if c.as_str() < until.as_str() => c.clone(),
            _ => until,
        };
        let limit = query.limit.max(1);
        let (mut items, mut next_cursor, mut last) = (Vec::new(), None, String::new());
        let mut start = None;
        'pages: loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":lo", s(&low))
                .expression_attribute_values(":hi", s(&high))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .context("dynamodb Query (jobs)")?;
            for item in out.items.unwrap_or_default() {
                let (Some(AttributeValue::S(sk)), Some(AttributeValue::S(id))) =
                    (item.get("sk"), item.get("jobId"))
                else {
                    continue;
                };
                if sk == &high {
                    continue;
                }
                let Some(job) = self.get_job(id).await? else {
                    continue;
                };
                if !query.matches(&job) {
                    continue;
                }
                if items.len() == limit {
                    next_cursor = Some(last);
                    break 'pages;
                }
                last = sk.clone();
                items.push(job);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(Listing { items, next_cursor })
    }

    async fn finish_paging(&self, job_id: &str, num_pages: u64) -> anyhow::Result<Job> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(job_key(job_id)))
            .update_expression("SET numPages = :n, pagingDone = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":n", n(num_pages))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .with_context(|| format!("finish_paging: job {job_id}"))?;
        Self::job_from_item(&out.attributes.unwrap_or_default())
    }

    async fn record_outcome(&self, o: &PageOutcome) -> anyhow::Result<Option<Job>> {
        let claim = key(
            format!("job#{}", o.job_id),
            format!("outcome#{}#{}", o.page_id, o.processor_index),
        );
        let result = self
            .client
            .transact_write_items()
            .transact_items(tx_put(
                self.put_of(claim)
                    .condition_expression("attribute_not_exists(pk)"),
            )?)
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .set_key(Some(job_key(&o.job_id)))
                            .update_expression(
                                "ADD numSuccess :s, numError :e, numIgnore :i, numPagesDone :d, numBranchPages :b",
                            )
                            .condition_expression("attribute_exists(pk)")
                            .expression_attribute_values(":s", n(o.num_success))
                            .expression_attribute_values(":e", n(o.num_error))
                            .expression_attribute_values(":i", n(o.num_ignore))
                            .expression_attribute_values(":d", n(u64::from(o.page_done)))
                            .expression_attribute_values(":b", n(o.branch_pages))
                            .build()?,
                    )
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => self.get_job(&o.job_id).await,
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(e)) =
                    err.as_service_error()
                {
                    let reasons = e.cancellation_reasons();
                    let claim_taken = reasons
                        .first()
                        .and_then(|r| r.code())
                        .is_some_and(|c| c == "ConditionalCheckFailed");
                    if claim_taken {
                        return Ok(None);
                    }
                    let no_job = reasons
                        .get(1)
                        .and_then(|r| r.code())
                        .is_some_and(|c| c == "ConditionalCheckFailed");
                    if no_job {
                        return Err(anyhow!("record_outcome: job {} does not exist", o.job_id));
                    }
                }
                Err(anyhow::Error::new(err).context("dynamodb TransactWriteItems (outcome)"))
            }
        }
    }

    async fn close_job(
        &self,
        job_id: &str,
        status: JobStatus,
        ended_at: DateTime<Utc>,
        message: Option<String>,
    ) -> anyhow::Result<bool> {
        let status = serde_json::to_value(status)?;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(job_key(job_id)))
            .condition_expression("attribute_exists(pk) AND #st IN (:queued, :running)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":status", to_av(&status))
            .expression_attribute_values(":ended", s(ended_at.to_rfc3339()))
            .expression_attribute_values(":queued", s("queued"))
            .expression_attribute_values(":running", s("running"));
        update = match message {
            Some(m) => update
                .update_expression("SET #st = :status, endedAt = :ended, message = :m")
                .expression_attribute_values(":m", s(m)),
            None => update.update_expression("SET #st = :status, endedAt = :ended"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("dynamodb UpdateItem (close job)")),
        }
    }

    async fn put_errors(&self, errors: &[JobError]) -> anyhow::Result<()> {
        for error in errors {
            let mut item = object_to_item(&serde_json::to_value(error)?);
            item.extend(key(format!("errors#{}", error.job_id), &error.id));
            // Idempotent on _id: a redelivered page must not undo a resolution.
            self.put_if(item, "attribute_not_exists(pk)", "error")
                .await?;
        }
        Ok(())
    }

    async fn list_errors(&self, job_id: &str) -> anyhow::Result<Vec<JobError>> {
        let items = self.query_all(format!("errors#{job_id}"), None).await?;
        items
            .iter()
            .map(|i| {
                serde_json::from_value(item_to_object(i, &["pk", "sk"]))
                    .context("stored job error is unreadable")
            })
            .collect()
    }

    async fn find_errors(
        &self,
        job_id: &str,
        query: &ErrorQuery,
    ) -> anyhow::Result<Listing<JobError>> {
        let pk = format!("errors#{job_id}");
        let mut matched = Vec::new();
        let mut start = query
            .cursor
            .as_ref()
            .map(|after| key(pk.clone(), after.clone()));
        // Filters are read here, not in a FilterExpression: one predicate for both adapters,
        // and DynamoDB's Limit counts items before filtering anyway.
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .context("dynamodb Query (errors)")?;
            for item in out.items.unwrap_or_default() {
                let e: JobError = serde_json::from_value(item_to_object(&item, &["pk", "sk"]))
                    .context("stored job error is unreadable")?;
                if query.matches(&e) {
                    matched.push(e);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && matched.len() <= query.limit.max(1) => start = Some(k),
                _ => break,
            }
        }
        Ok(query.page(matched))
    }

    async fn update_error(&self, error: &JobError) -> anyhow::Result<bool> {
        let mut item = object_to_item(&serde_json::to_value(error)?);
        item.extend(key(format!("errors#{}", error.job_id), &error.id));
        self.put_if(item, "attribute_exists(pk)", "update error")
            .await
    }

    async fn mark_errors(
        &self,
        job_id: &str,
        error_ids: &[String],
        resolved: bool,
    ) -> anyhow::Result<usize> {
        let mut found = 0;
        for id in error_ids {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(format!("errors#{job_id}"), id)))
                .update_expression("SET resolved = :r")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":r", AttributeValue::Bool(resolved))
                .send()
                .await;
            match result {
                Ok(_) => found += 1,
                Err(e) if is_condition_failed(&e) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e).context("dynamodb UpdateItem (resolve)"))
                }
            }
        }
        Ok(found)
    }

    async fn ledger_claim(
        &self,
        job_id: &str,
        k: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<LedgerState> {
        let mut item = key(format!("ledger#{k}"), "ledger");
        item.insert("claimedAt".into(), s(stamp(now)));
        item.insert(
            "ttl".into(),
            n((now + chrono::Duration::days(LEDGER_TTL_DAYS)).timestamp()),
        );
        if !self
            .put_if(item, "attribute_not_exists(pk)", "ledger claim")
            .await?
        {
            // Claimed before: it answers as it stands, whatever the job's status.
            let existing = self.get(format!("ledger#{k}"), "ledger").await?;
            return Ok(match existing.as_ref().and_then(|i| i.get("outcome")) {
                Some(outcome) => LedgerState::Done(from_av(outcome)),
                None => LedgerState::InFlight,
            });
        }
        // The job is read after the claim, consistently: a cancel that committed before this
        // read is seen, and a send only starts after the read. Not one transaction with the
        // claim: every concurrent send of a job would then contend for the job item
        // (TransactionConflict), on the path each record takes.
        if !self.job_canceled(job_id).await? {
            return Ok(LedgerState::Claimed);
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("ledger#{k}"), "ledger")))
            .send()
            .await
            .context("dynamodb DeleteItem (claim of a canceled job)")?;
        Ok(LedgerState::JobCanceled)
    }

    async fn ledger_complete(&self, k: &str, outcome: &Value) -> anyhow::Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("ledger#{k}"), "ledger")))
            .update_expression("SET outcome = :o")
            .expression_attribute_values(":o", to_av(outcome))
            .send()
            .await
            .context("dynamodb UpdateItem (ledger complete)")?;
        Ok(())
    }

    /// Two writes per chunk instead of two per record: see `deliver/ledger.rs`.
    fn ledger_chunk_size(&self) -> usize {
        LEDGER_CHUNK
    }

    async fn ledger_claim_chunk(
        &self,
        job_id: &str,
        chunk: &str,
        sends: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<LedgerState>> {
        let pk = format!("ledger#{chunk}");
        let (mut states, new, existed) = match self.claim_new_chunk(&pk, sends, now).await? {
            true => (
                vec![LedgerState::Claimed; sends.len()],
                sends.to_vec(),
                false,
            ),
            false => {
                let item = self.get(pk.clone(), "ledger").await?.unwrap_or_default();
                let states = chunk_states(&item, sends);
                let new: Vec<String> = sends
                    .iter()
                    .zip(&states)
                    .filter(|(_, st)| **st == LedgerState::Claimed)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !new.is_empty() && !self.claim_given_back(&pk, &new).await? {
                    // Someone else claimed them meanwhile: theirs, so in flight for us.
                    let states = states
                        .into_iter()
                        .map(|st| match st {
                            LedgerState::Claimed => LedgerState::InFlight,
                            other => other,
                        })
                        .collect();
                    return Ok(states);
                }
                (states, new, true)
            }
        };
        if new.is_empty() || !self.job_canceled(job_id).await? {
            return Ok(states);
        }
        // Canceled before the look: take the new claims back, answer them as not to be sent.
        if existed {
            self.settle(&pk, new.iter().map(|k| (k.as_str(), None)))
                .await
                .context("dynamodb UpdateItem (claims of a canceled job)")?;
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(pk, "ledger")))
                .send()
                .await
                .context("dynamodb DeleteItem (chunk of a canceled job)")?;
        }
        for st in states.iter_mut().filter(|st| **st == LedgerState::Claimed) {
            *st = LedgerState::JobCanceled;
        }
        Ok(states)
    }

    async fn ledger_settle_chunk(
        &self,
        chunk: &str,
        settled: &[(String, Settled)],
    ) -> anyhow::Result<()> {
        if settled.is_empty() {
            return Ok(());
        }
        let values = settled.iter().map(|(k, how)| {
            let value = match how {
                Settled::Sent(v) => Some(to_av(v)),
                Settled::NotSent => None,
            };
            (k.as_str(), value)
        });
        self.settle(&format!("ledger#{chunk}"), values)
            .await
            .context("dynamodb UpdateItem (settle a ledger chunk)")
    }

    async fn acquire_lock(
        &self,
        flow_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool> {
        let until = now + chrono::Duration::from_std(lease)?;
        let item = leased(key(format!("lock#{flow_id}"), "lock"), owner, until);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Held by anyone (this owner too) refuses: two starters of one waiting run share
            // its id and must not both hold the lock.
            .condition_expression("attribute_not_exists(pk) OR leaseUntil <= :now")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("dynamodb PutItem (acquire lock)")),
        }
    }

    async fn lock_holder(&self, flow_id: &str) -> anyhow::Result<Option<LockHolder>> {
        let Some(item) = self.get(format!("lock#{flow_id}"), "lock").await? else {
            return Ok(None);
        };
        let owner = item.get("owner").and_then(|v| v.as_s().ok()).cloned();
        let until = item
            .get("leaseUntil")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        Ok(owner
            .zip(until)
            .map(|(owner, lease_until)| LockHolder { owner, lease_until }))
    }

    async fn renew_lock(
        &self,
        flow_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool> {
        let until = now + chrono::Duration::from_std(lease)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("lock#{flow_id}"), "lock")))
            .update_expression("SET leaseUntil = :until, #ttl = :ttl")
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .expression_attribute_values(":ttl", n(until.timestamp() + 86_400))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("dynamodb UpdateItem (renew lock)")),
        }
    }

    async fn release_lock(&self, flow_id: &str, owner: &str) -> anyhow::Result<()> {
        self.delete_if_owner(
            key(format!("lock#{flow_id}"), "lock"),
            owner,
            "release lock",
        )
        .await
    }

    async fn take_slot(
        &self,
        group: &str,
        slots: u32,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Option<u32>> {
        let pk = format!("slots#{group}");
        let now_ms = now.timestamp_millis();
        let until = now + chrono::Duration::from_std(lease)?;
        // A few rounds: another taker may win the slot we saw free; read again then.
        for _ in 0..3 {
            // One consistent read of the group; waiters poll this, not the writes below.
            let held: std::collections::HashSet<u32> = self
                .query_all(pk.clone(), None)
                .await?
                .iter()
                .filter(|i| {
                    i.get("leaseUntil")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse::<i64>().ok())
                        .is_some_and(|until| until > now_ms)
                })
                .filter_map(|i| i.get("index")?.as_n().ok()?.parse().ok())
                .collect();
            let free: Vec<u32> = (0..slots).filter(|i| !held.contains(i)).collect();
            if free.is_empty() {
                return Ok(None);
            }
            // Start at a random free slot so concurrent takers spread out.
            let start = rand::random_range(0..free.len());
            for index in free.iter().cycle().skip(start).take(free.len().min(3)) {
                let mut item = leased(key(pk.clone(), format!("slot#{index:06}")), owner, until);
                item.insert("index".into(), n(*index as i64));
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk) OR leaseUntil <= :now")
                    .expression_attribute_values(":now", n(now_ms))
                    .send()
                    .await;
                match result {
                    Ok(_) => return Ok(Some(*index)),
                    Err(e) if is_condition_failed(&e) => continue,
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context("dynamodb PutItem (take slot)"))
                    }
                }
            }
        }
        Ok(None)
    }

    async fn release_slot(&self, group: &str, index: u32, owner: &str) -> anyhow::Result<()> {
        let slot = key(format!("slots#{group}"), format!("slot#{index:06}"));
        self.delete_if_owner(slot, owner, "release slot").await
    }

    async fn queue_run(&self, flow_id: &str, run: &QueuedRun) -> anyhow::Result<bool> {
        self.put_waiting_run(flow_id, run).await
    }

    async fn queued_runs(&self, flow_id: &str, limit: usize) -> anyhow::Result<Vec<QueuedRun>> {
        self.waiting_runs(flow_id, limit).await
    }

    async fn remove_queued_run(&self, flow_id: &str, run: &QueuedRun) -> anyhow::Result<()> {
        self.delete_waiting_run(flow_id, run).await
    }

    async fn set_next_run(&self, flow_id: &str, at: Option<DateTime<Utc>>) -> anyhow::Result<()> {
        self.set_time(SCHEDULES, flow_id, at).await
    }

    async fn due_flows(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<(String, DateTime<Utc>)>> {
        self.due(SCHEDULES, now).await
    }

    async fn set_retry_at(&self, job_id: &str, at: Option<DateTime<Utc>>) -> anyhow::Result<()> {
        self.set_time(RETRY_TIMES, job_id, at).await
    }

    async fn retry_at(&self, job_id: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        let ns = RETRY_TIMES.ns;
        let Some(pointer) = self.get(format!("{ns}#{job_id}"), ns).await? else {
            return Ok(None);
        };
        // The entry's sort key is `<at>#<jobId>`.
        let entry = match pointer.get("entry") {
            Some(AttributeValue::S(sk)) => sk.clone(),
            _ => return Ok(None),
        };
        let at = entry.split('#').next().unwrap_or_default();
        let at =
            DateTime::parse_from_rfc3339(at).context("retry time entry without a valid time")?;
        Ok(Some(at.with_timezone(&Utc)))
    }

    async fn due_retries(
        &self,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, DateTime<Utc>)>> {
        self.due(RETRY_TIMES, now).await
    }

    async fn get_state(&self, k: &str) -> anyhow::Result<Option<Value>> {
        let item = self.get(format!("state#{k}"), "state").await?;
        Ok(item.and_then(|i| i.get("value").map(from_av)))
    }

    async fn put_state(&self, k: &str, value: &Value) -> anyhow::Result<()> {
        let mut item = key(format!("state#{k}"), "state");
        item.insert("value".into(), to_av(value));
        self.put(item).await
    }

    async fn swap_state(
        &self,
        k: &str,
        expected: Option<&Value>,
        new: &Value,
    ) -> anyhow::Result<bool> {
        let mut item = key(format!("state#{k}"), "state");
        item.insert("value".into(), to_av(new));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(old) => put
                .condition_expression("#value = :expected")
                .expression_attribute_names("#value", "value")
                .expression_attribute_values(":expected", to_av(old)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("dynamodb PutItem (swap state)")),
        }
    }
}

/// Creates the table as the template declares it (harness and tests; on AWS the template does).
pub async fn create_table(client: &Client, table: &str) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key_el = |name: &str, kt| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kt)
            .build()
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key_el("pk", KeyType::Hash)?)
        .key_schema(key_el("sk", KeyType::Range)?)
        .send()
        .await
        .with_context(|| format!("creating table {table}"))?;
    Ok(())
}
