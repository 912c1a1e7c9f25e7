//! Links that prove they reproduced. A link made after a run carries a digest of the grid (its
//! shape and every value as f32, the precision the model computes in) and the backend it ran
//! on. When the page runs the link again, its grid is compared with the digest cell by cell:
//! "reproduced: every cell within 1e-5 of the link", or "differs at N cells (largest L at
//! layer l, position p)". WebGPU and the CPU legitimately differ at about 1e-6.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::PatchingError;
use crate::analysis::results::{Grid, Results};

/// Cells of a grid closer than this to the link's count as reproduced.
pub const TOLERANCE: f64 = 1e-5;
/// The largest grid a digest may describe, in cells.
pub const MAX_CELLS: usize = 1 << 20;

/// A grid as a link carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    pub shape: Vec<usize>,
    /// Every value as a little-endian f32, base64 (NaN stays NaN).
    pub values: String,
    /// The backend the grid was computed on, as the page names it.
    pub backend: String,
}

/// How a rerun compares with the link it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reproduction {
    pub cells: usize,
    /// Cells further than [`TOLERANCE`] from the link (a NaN on one side only counts).
    pub differing: usize,
    /// The largest difference, and the cell it is at.
    pub largest: f64,
    pub largest_cell: Option<usize>,
    /// The backend of the link's grid, and of this run's.
    pub linked_backend: String,
    pub backend: String,
    /// One sentence saying it.
    pub summary: String,
}

impl Digest {
    /// The digest of `grid`, computed on `backend`.
    pub fn of(grid: &Grid, backend: &str) -> Self {
        let bytes: Vec<u8> = grid
            .values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect();
        Digest {
            shape: grid.shape.clone(),
            values: STANDARD.encode(bytes),
            backend: backend.to_string(),
        }
    }

    /// The grid the digest carries, checked: a bounded shape and exactly its number of values.
    pub fn grid(&self) -> Result<Grid, PatchingError> {
        let bad = |m: String| PatchingError::Spec(format!("the link's grid digest {m}"));
        let cells = self
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= MAX_CELLS && !self.shape.is_empty())
            .ok_or_else(|| bad(format!("has an impossible shape {:?}", self.shape)))?;
        if self.values.len() > 4 * (4 * cells).div_ceil(3) + 4 {
            return Err(bad("holds more values than its shape".into()));
        }
        let bytes = STANDARD
            .decode(&self.values)
            .map_err(|e| bad(format!("is not base64: {e}")))?;
        if bytes.len() != 4 * cells {
            return Err(bad(format!(
                "holds {} values for a grid of {cells} cells",
                bytes.len() / 4
            )));
        }
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect();
        Ok(Grid {
            shape: self.shape.clone(),
            values,
        })
    }
}

impl Results {
    /// This run's grid against the grid a link carries; `backend` names this run's backend.
    pub fn reproduce(&self, digest: &Digest, backend: &str) -> Result<Reproduction, PatchingError> {
        let linked = digest.grid()?;
        if linked.shape != self.grid.shape {
            return Err(PatchingError::Spec(format!(
                "the link's grid is {:?} but this run's is {:?}: the link was made by another experiment",
                linked.shape, self.grid.shape
            )));
        }
        let mut differing = 0;
        let mut largest = (0.0f64, None);
        for (cell, (&ours, &theirs)) in self.grid.values.iter().zip(&linked.values).enumerate() {
            // The link holds f32 values: compare at that precision.
            let ours = ours as f32 as f64;
            let diff = match (ours.is_nan(), theirs.is_nan()) {
                (true, true) => 0.0,
                (false, false) => (ours - theirs).abs(),
                _ => f64::INFINITY,
            };
            if diff > TOLERANCE {
                differing += 1;
            }
            if diff > largest.0 {
                largest = (diff, Some(cell));
            }
        }
        let on = if digest.backend == backend {
            format!("on {backend}, as the link was")
        } else {
            format!("on {backend}; the link's grid came from {}", digest.backend)
        };
        let summary = match (differing, largest.1) {
            (0, _) => format!("Reproduced: every cell within {TOLERANCE:.0e} of the link ({on})."),
            (n, Some(cell)) => format!(
                "Differs at {n} of {} cells (largest {:.2e}, at {}) ({on}).",
                linked.values.len(),
                largest.0,
                self.describe_cell(cell)
            ),
            (n, None) => format!("Differs at {n} cells ({on})."),
        };
        Ok(Reproduction {
            cells: linked.values.len(),
            differing,
            largest: largest.0,
            largest_cell: largest.1,
            linked_backend: digest.backend.clone(),
            backend: backend.to_string(),
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_round_trips_and_refuses_what_does_not_fit() {
        let grid = Grid::new(vec![2, 2], vec![0.5, -1.25, f64::NAN, 3.0]);
        let digest = Digest::of(&grid, "CPU");
        let back = digest.grid().unwrap();
        assert_eq!(back.shape, grid.shape);
        assert_eq!(back.values[..2], grid.values[..2]);
        assert!(back.values[2].is_nan());
        let short = Digest {
            shape: vec![3, 2],
            ..digest.clone()
        };
        assert!(
            short
                .grid()
                .unwrap_err()
                .to_string()
                .contains("4 values for a grid of 6")
        );
        let huge = Digest {
            shape: vec![usize::MAX, 2],
            ..digest.clone()
        };
        assert!(huge.grid().unwrap_err().to_string().contains("impossible shape"));
        let garbage = Digest {
            values: "not base64!".into(),
            ..digest
        };
        assert!(garbage.grid().is_err());
    }
}
