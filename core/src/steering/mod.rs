//! The steering engine: contrastive pairs → steering vectors → applied edits → measured effects.
//! No I/O: pair files, vectors and reports come in and go out as bytes or strings.

pub mod extract;
pub mod gguf;
pub mod linalg;
pub mod metrics;
pub mod pairs;
pub mod vector;

pub use extract::{
    Aggregation, Method, PairActivations, PairStats, PromptFormat, SweepRow, collect, collect_ids, collect_stats, collect_stats_ids, encode_pairs,
    mean_diff_vector, steering_vector, sweep, sweep_with,
};
pub use pairs::{DatasetEntry, Pair, PairError, PairFormat, PairSet};
pub use vector::{Application, Direction, HookSite, SteeringVector, VectorModel, VectorPairs};
