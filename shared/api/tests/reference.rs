//! docs/reference.md is what the schemas say (regenerate with SLUICE_BLESS=1).

#[test]
fn docs_reference_is_generated_from_the_schemas() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference.md");
    let generated = sluice_api::reference::markdown();
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/reference.md is out of date: run SLUICE_BLESS=1 cargo test -p sluice-api --test reference"
    );
    for kind in ["Connection", "Export", "Import", "Flow", "Integration"] {
        assert!(generated.contains(&format!("\n## {kind}\n")), "{kind}");
    }
    // Nested settings are documented too, with their descriptions.
    assert!(generated.contains("## HttpConnection"));
    assert!(generated.contains("| `requestTimeoutMs` | whole number |  | Per-request timeout"));
    assert!(generated.contains("## RetryPolicy"));
    assert!(generated.contains(
        "| `type` | one of `basic`, `token`, `bearer`, `apikey`, `oauth2`, `oauth` | yes |"
    ));
}
