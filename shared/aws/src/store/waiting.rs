//! Runs waiting for their flow (see the key table in the module above): one item per
//! waiting run, sorted by when it was queued, and one item per waiting key, so a run kept
//! twice (an event delivered again, a second scheduled run) waits once.

use super::attrs::{from_av, s, to_av};
use super::{conditional_transaction, is_condition_failed, key, stamp, DynamoStore};
use anyhow::Context;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
use sluice_model::QueuedRun;

fn pk(flow_id: &str) -> String {
    format!("queued#{flow_id}")
}

fn run_sk(run: &QueuedRun) -> String {
    format!("run#{}#{}", stamp(run.queued_at), run.id)
}

impl DynamoStore {
    /// One transaction: the run's job does not exist, its key is free, the run is written.
    pub(super) async fn put_waiting_run(
        &self,
        flow_id: &str,
        run: &QueuedRun,
    ) -> anyhow::Result<bool> {
        let sk = run_sk(run);
        let job_absent = ConditionCheck::builder()
            .table_name(self.table())
            .set_key(Some(key(format!("job#{}", run.id), "job")))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        let mut key_item = key(pk(flow_id), format!("key#{}", run.key()));
        key_item.insert("entry".into(), s(&sk));
        let key_free = Put::builder()
            .table_name(self.table())
            .set_item(Some(key_item))
            .condition_expression("attribute_not_exists(pk)")
            .build()?;
        let mut run_item = key(pk(flow_id), sk);
        run_item.insert("run".into(), to_av(&serde_json::to_value(run)?));
        let write = Put::builder()
            .table_name(self.table())
            .set_item(Some(run_item))
            .build()?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(job_absent)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(key_free).build())
            .transact_items(TransactWriteItem::builder().put(write).build())
            .send()
            .await;
        conditional_transaction(result, "queue run")
    }

    pub(super) async fn waiting_runs(
        &self,
        flow_id: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<QueuedRun>> {
        let mut runs = Vec::new();
        let mut start = None;
        while runs.len() < limit {
            let out = self
                .client
                .query()
                .table_name(self.table())
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND begins_with(sk, :run)")
                .expression_attribute_values(":pk", s(pk(flow_id)))
                .expression_attribute_values(":run", s("run#"))
                .limit((limit - runs.len()).min(100) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .context("dynamodb Query (waiting runs)")?;
            for item in out.items.unwrap_or_default() {
                let run = item.get("run").context("waiting run without `run`")?;
                runs.push(
                    serde_json::from_value(from_av(run))
                        .context("stored waiting run is unreadable")?,
                );
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(runs)
    }

    /// The key first, and only if it still names this run: a crash between the two leaves a
    /// run without its key, which the next start finds already run and removes, never a key
    /// that would refuse every later run of that key.
    pub(super) async fn delete_waiting_run(
        &self,
        flow_id: &str,
        run: &QueuedRun,
    ) -> anyhow::Result<()> {
        let sk = run_sk(run);
        let result = self
            .client
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(pk(flow_id), format!("key#{}", run.key()))))
            .condition_expression("#entry = :sk")
            .expression_attribute_names("#entry", "entry")
            .expression_attribute_values(":sk", s(&sk))
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_condition_failed(&e) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context("dynamodb DeleteItem (waiting key)"))
            }
        }
        self.client
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(pk(flow_id), sk)))
            .send()
            .await
            .context("dynamodb DeleteItem (waiting run)")?;
        Ok(())
    }
}
