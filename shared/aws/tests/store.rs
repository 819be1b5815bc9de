mod common;

use sluice_aws::DynamoStore;
use sluice_core::ports::contract::store_contract;

#[tokio::test]
async fn dynamo_store_passes_the_store_contract() {
    let Some(env) = common::env("dynamo_store_passes_the_store_contract").await else {
        return;
    };
    let store = DynamoStore::new(env.harness.dynamodb.clone(), &env.harness.settings.table);
    store_contract(&store).await;
}
