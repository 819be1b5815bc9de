pub mod definitions;
pub mod flows;
pub mod header_secrets;
pub mod jobs;
