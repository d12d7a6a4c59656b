//! A pipeline's chain of stages applied to events.
//!
//! A [`Blueprint`] is a pipeline whose plugins are compiled and checked (every
//! `init` ran once): what `weir validate` proves and what a reload builds
//! before it swaps. Each worker makes its own [`Chain`] from it, with its own
//! instances, and feeds it batches of input events; for each input event the
//! chain says what became of it: an [`Outcome`].
//!
//! An input event and everything derived from it succeed or fail together:
//! if any stage refuses or faults on any part of it, the original input goes
//! to the dead letter, untouched, and none of its outputs are published. That
//! keeps redelivery simple: an input is either fully processed or not at all.
//!
//! - `blueprint`: building a [`Blueprint`] from a pipeline's configuration;
//! - `chain`: a [`Chain`] running a batch through every stage, one
//!   [`Outcome`] per input;
//! - `candidate`: a stage's candidate version (`[stages.candidate]`) run
//!   beside it in shadow or canary, compared, and judged by its rules
//!   ([`CandidateState`], shared by every worker's chain);
//! - [`workers`]: the OS threads that own the chains, and the dispatch of
//!   batches to them;
//! - `version`: a pipeline's version, from its settings and plugins.

mod blueprint;
mod candidate;
mod chain;
mod version;
pub mod workers;

pub use version::{candidate_id, canonical, version};

pub use blueprint::{Blueprint, BuildError, BuildFailure, StageReport, stage_spec};
pub use candidate::{CandidateState, Difference, Verdict};
pub use chain::{Chain, Outcome};
