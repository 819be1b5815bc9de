//! Events: S3 ObjectCreated and DynamoDB stream records into run orders.
