pub mod definitions;
pub mod flows;
pub mod jobs;
