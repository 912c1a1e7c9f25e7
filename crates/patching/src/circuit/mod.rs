//! Circuits: found by edge attribution and checked by exact edge-level patching, and checked
//! by other means than patching, as circuit papers do.
//!
//! Discovery (EAP, EAP-IG; Syed et al. 2023, Hanna et al. 2024):
//! - [`graph`]: the nodes and edges scored (q, k and v inputs of each head apart);
//! - [`forward`]: the model run as that graph, with gradient probes and cut edges;
//! - [`edge_runs`]: a batch's clean and corrupted runs as the graph sees them;
//! - [`eap`]: edge attribution scores, one backward pass a step (needs autodiff), and
//!   [`qk_fix`]: AtP*'s exact attention pattern for the edges into queries and keys;
//! - [`exact`]: a circuit run with every other edge corrupted, and one edge patched alone;
//! - [`discover`]: the orchestration (needs autodiff); [`results`] and [`draw`]: what it gives.
//!
//! Other checks: how well the model does the task at all ([`accuracy`]), what ablating heads
//! leaves of it ([`ablation`]), and where heads attend ([`attention`]).

pub mod ablation;
pub mod accuracy;
pub mod attention;
#[cfg(feature = "autodiff")]
pub mod discover;
pub mod draw;
#[cfg(feature = "autodiff")]
pub mod eap;
pub mod edge_runs;
pub mod exact;
pub mod forward;
pub mod graph;
#[cfg(feature = "autodiff")]
pub mod qk_fix;
pub mod results;
