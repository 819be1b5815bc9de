//! Shared by the moto tests: one moto per test binary process is too shared (tests run in
//! parallel), so each test starts its own moto; it is ready in under a second.

use sluice_aws::harness::Harness;
use sluice_testkit::moto::Moto;

pub struct Env {
    pub harness: Harness,
    pub _moto: Moto,
}

/// moto plus every resource the template declares; `None` when the test must skip.
pub async fn env(test: &str) -> Option<Env> {
    let moto = Moto::start_or_skip(test)?;
    let harness = Harness::create(&moto.endpoint_url())
        .await
        .expect("harness creates the stack on moto");
    Some(Env {
        harness,
        _moto: moto,
    })
}
