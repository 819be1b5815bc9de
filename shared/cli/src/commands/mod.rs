pub mod dev;
pub mod jobs;
pub mod run;
pub mod sink;
pub mod validate;
