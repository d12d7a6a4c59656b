
pub mod harness;
