pub mod definitions;
pub mod flow_secrets;
pub mod flows;
pub mod jobs;
