//! Real servers for tests, started on loopback by the test itself and stopped on drop.
//! Nothing here is a mock: sshd is Debian's OpenSSH, moto is the AWS API emulator from PyPI,
//! and the HTTP target is a real HTTP server.

pub mod big_replies;
pub mod http;
pub mod moto;
pub mod sshd;
pub mod webhooks;
