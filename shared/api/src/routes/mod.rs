pub mod definitions;
pub mod errors_csv;
pub mod flows;
pub mod header_secrets;
pub mod jobs;
pub mod listeners;
pub mod meta;
pub mod oauth;
