//! AWS Lambda entry point for Sluice's API: API Gateway events -> the axum router.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sluice_aws::lambda::init_logging();
    // Built once per Lambda INIT and shared by every request of this instance.
    let sluice = sluice_aws::build_sluice_from_env().await?;
    let config = sluice_api::ApiConfig::from_env();
    if config.api_keys.is_empty() {
        tracing::warn!("SLUICE_API_KEYS is empty: every protected route answers 401");
    }
    lambda_http::run(sluice_api::router(sluice, config)).await
}
