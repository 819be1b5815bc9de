pub mod dev;
pub mod run;
pub mod sink;
pub mod validate;
