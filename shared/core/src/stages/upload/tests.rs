use super::s3_key;
use super::sftp::host_key_matches;
use base64::Engine;

#[test]
fn pinned_keys_in_both_forms() {
    let blob = b"\x00\x00\x00\x0bssh-ed25519 fake key bytes";
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    assert!(host_key_matches(
        &format!("ssh-ed25519 {b64}"),
        "ssh-ed25519",
        blob,
        None
    ));
    assert!(host_key_matches(
        &format!("[127.0.0.1]:2222 ssh-ed25519 {b64} comment"),
        "ssh-ed25519",
        blob,
        None
    ));
    assert!(
        !host_key_matches(&format!("ssh-rsa {b64}"), "ssh-ed25519", blob, None),
        "type must match"
    );
    assert!(!host_key_matches(
        &format!("ssh-ed25519 {b64}"),
        "ssh-ed25519",
        b"other",
        None
    ));
    let hash = [7u8; 32];
    let fp = base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash);
    assert!(host_key_matches(
        &format!("SHA256:{fp}"),
        "ssh-ed25519",
        blob,
        Some(&hash)
    ));
    assert!(!host_key_matches(
        &format!("SHA256:{fp}"),
        "ssh-ed25519",
        blob,
        Some(&[8u8; 32])
    ));
    assert!(!host_key_matches("garbage", "ssh-ed25519", blob, None));
}

#[test]
fn s3_keys_join_cleanly() {
    assert_eq!(
        s3_key(Some("exports/"), "/2026/11/", "a.csv"),
        "exports/2026/11/a.csv"
    );
    assert_eq!(s3_key(None, "", "a.csv"), "a.csv");
}
