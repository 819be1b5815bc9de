mod common;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn s3_blobs_put_get_open_exists_and_list_with_pagination() {
    let Some(env) = common::env("s3_blobs_put_get_open_exists_and_list_with_pagination").await
    else {
        return;
    };
    let blobs = env.harness.sluice.blobs.clone();
    let bucket = env.harness.settings.system_bucket.clone();
    let big = Bytes::from(vec![7u8; 3 * 1024 * 1024]);
    blobs.put(&bucket, "in/big.bin", big.clone()).await.unwrap();
    blobs
        .put(&bucket, "in/a b.csv", Bytes::from_static(b"id\n1\n"))
        .await
        .unwrap();

    assert_eq!(
        blobs.get(&bucket, "in/a b.csv").await.unwrap().as_deref(),
        Some(&b"id\n1\n"[..])
    );
    assert_eq!(blobs.get(&bucket, "in/none").await.unwrap(), None);
    assert!(blobs.exists(&bucket, "in/big.bin").await.unwrap());
    assert!(!blobs.exists(&bucket, "in/none").await.unwrap());

    let mut reader = blobs.open(&bucket, "in/big.bin").await.unwrap().unwrap();
    let mut read = Vec::new();
    reader.read_to_end(&mut read).await.unwrap();
    assert_eq!(read.len(), big.len(), "the stream yields the whole object");
    assert!(blobs.open(&bucket, "in/none").await.unwrap().is_none());

    // More than one ListObjectsV2 page (1000 keys each).
    let keys: Vec<String> = (0..1005).map(|i| format!("many/{i:05}")).collect();
    for chunk in keys.chunks(50) {
        let puts = chunk
            .iter()
            .map(|k| blobs.put(&bucket, k, Bytes::from_static(b"x")));
        for r in futures_join(puts).await {
            r.unwrap();
        }
    }
    let listed = blobs.list(&bucket, "many/").await.unwrap();
    assert_eq!(listed, keys, "every key, sorted, across list pages");
    assert_eq!(
        blobs.list(&bucket, "in/").await.unwrap(),
        vec!["in/a b.csv", "in/big.bin"]
    );
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = futures.collect();
    for f in handles {
        out.push(f.await);
    }
    out
}
