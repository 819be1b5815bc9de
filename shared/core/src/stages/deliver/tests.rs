use super::guard::AddressPolicy;
use super::*;
use crate::PrivateAddresses;
use sluice_model::RetryPolicy;
use std::net::IpAddr;

#[test]
fn retry_after_seconds_and_dates() {
    assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
    let d = parse_retry_after(&soon).unwrap();
    assert!(
        d <= Duration::from_secs(30) && d >= Duration::from_secs(25),
        "{d:?}"
    );
    assert_eq!(parse_retry_after("soon"), None);
}

#[test]
fn backoff_grows_is_capped_and_honours_hints() {
    let p = RetryPolicy {
        max_attempts: 5,
        base_delay_ms: 100,
        max_delay_ms: 1000,
    };
    for _ in 0..50 {
        let first = backoff_delay(&p, 1, None);
        assert!(
            first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
            "{first:?}"
        );
        let late = backoff_delay(&p, 10, None);
        assert!(
            late <= Duration::from_millis(1000) && late >= Duration::from_millis(500),
            "{late:?}"
        );
    }
    assert_eq!(
        backoff_delay(&p, 1, Some(Duration::from_secs(2))),
        Duration::from_millis(1000),
        "hint capped at max"
    );
    assert_eq!(
        backoff_delay(&p, 1, Some(Duration::from_millis(300))),
        Duration::from_millis(300)
    );
}

#[test]
fn metadata_and_private_addresses() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let policy = |metadata, private| AddressPolicy { metadata, private };
    let (all, loopback, none) = (
        PrivateAddresses::Allowed,
        PrivateAddresses::Loopback,
        PrivateAddresses::Refused,
    );
    assert!(policy(false, all).refused(ip("169.254.169.254")).is_some());
    assert!(policy(true, all).refused(ip("169.254.169.254")).is_none());
    assert!(policy(false, all).refused(ip("fd00:ec2::254")).is_some());
    assert!(
        policy(false, all)
            .refused(ip("::ffff:169.254.169.254"))
            .is_some(),
        "an IPv4-mapped address is the IPv4 address"
    );
    assert!(policy(false, all).refused(ip("127.0.0.1")).is_none());
    assert!(policy(false, loopback).refused(ip("127.0.0.1")).is_none());
    assert!(policy(false, loopback).refused(ip("::1")).is_none());
    assert!(policy(false, loopback).refused(ip("10.1.2.3")).is_some());
    assert!(policy(false, loopback)
        .refused(ip("::ffff:10.1.2.3"))
        .is_some());
    assert!(policy(false, none).refused(ip("127.0.0.1")).is_some());
    assert!(policy(false, none).refused(ip("10.1.2.3")).is_some());
    assert!(policy(false, none).refused(ip("192.168.1.1")).is_some());
    assert!(policy(false, none).refused(ip("0.0.0.0")).is_some());
    assert!(policy(false, none).refused(ip("100.64.1.2")).is_some());
    assert!(policy(false, loopback).refused(ip("100.127.0.1")).is_some());
    assert!(policy(false, none).refused(ip("100.128.0.1")).is_none());
    assert!(policy(false, none).refused(ip("93.184.216.34")).is_none());
}

#[tokio::test]
async fn rate_limit_spaces_requests() {
    let limiter = limits::Limiter::new(10, Some((20.0, 1)));
    let start = Instant::now();
    for _ in 0..5 {
        drop(limiter.local(true).await);
    }
    // 1 token up front, then 4 more at 20/s: at least 200 ms of waiting.
    assert!(
        start.elapsed() >= Duration::from_millis(190),
        "{:?}",
        start.elapsed()
    );
}
