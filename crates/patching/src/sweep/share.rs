//! A sweep shared by workers that each hold the model (the page's Web Workers, each with its own
//! WebAssembly instance): every worker plans the same batches, runs its own part of them, and
//! the workers swap what they read ([`Shard`]s) when the sweep ends. Each batch is the same
//! computation wherever it runs, so the readings, and every number after them, are those of a
//! single worker, in whatever order the workers finish.

use crate::PatchingError;
use crate::metric::Reading;

/// The most workers a run may be shared by.
pub const MAX_WORKERS: usize = 8;

/// Which part of each sweep this worker runs: worker `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub index: usize,
    pub count: usize,
}

impl Share {
    /// A run that no other worker shares.
    pub const ALONE: Share = Share { index: 0, count: 1 };

    /// Worker `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Share, PatchingError> {
        if count == 0 || count > MAX_WORKERS || index >= count {
            return Err(PatchingError::Peer(format!(
                "worker {index} of {count} is not a share of a run: at most {MAX_WORKERS} workers, numbered from 0"
            )));
        }
        Ok(Share { index, count })
    }

    pub fn is_shared(self) -> bool {
        self.count > 1
    }

    /// Whether this worker counts, in its progress, the work every worker does alike (patches
    /// that change nothing, a path sweep, attribution), so that the workers' progress adds up
    /// to the run's total.
    pub fn counts_common(self) -> bool {
        self.index == 0
    }

    /// Which of the batches whose costs are `costs` this worker runs: each batch, costliest
    /// first, goes to the worker with the least work so far (the lowest index on a tie). Every
    /// worker computes the same assignment from the same plan.
    pub fn owned(self, costs: &[usize]) -> Vec<bool> {
        let mut order: Vec<usize> = (0..costs.len()).collect();
        order.sort_by_key(|&b| std::cmp::Reverse(costs[b]));
        let mut load = vec![0usize; self.count];
        let mut owner = vec![0usize; costs.len()];
        for b in order {
            let worker = (0..self.count).min_by_key(|&w| load[w]).expect("count ≥ 1");
            load[worker] += costs[b];
            owner[b] = worker;
        }
        owner.into_iter().map(|w| w == self.index).collect()
    }
}

const FIELDS: usize = Reading::FIELDS;

/// What one worker read in a shared sweep: the readings (one per row) of the patches it ran,
/// by their index in the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    pub patches: Vec<usize>,
    pub readings: Vec<Vec<Reading>>,
}

impl Shard {
    /// The readings of `patches`, which this worker has run, from its sweep's `all`.
    pub(crate) fn of(patches: Vec<usize>, all: &[Option<Vec<Reading>>]) -> Shard {
        let readings = patches
            .iter()
            .map(|&i| all[i].clone().expect("a patch this worker ran has its readings"))
            .collect();
        Shard { patches, readings }
    }

    /// A sweep's readings once every worker's shard is in: one missing means the run was
    /// cancelled or, when shared, that no worker sent it.
    pub(crate) fn complete(
        all: Vec<Option<Vec<Reading>>>,
        share: Share,
    ) -> Result<Vec<Vec<Reading>>, PatchingError> {
        all.into_iter()
            .map(|r| {
                r.ok_or_else(|| match share.is_shared() {
                    true => PatchingError::Peer("a patch of the sweep came from no worker".into()),
                    false => PatchingError::Cancelled,
                })
            })
            .collect()
    }

    /// As flat arrays, to cross between workers: the patch indices, and each patch's rows'
    /// readings, [`FIELDS`] numbers each.
    pub fn to_flat(&self) -> (Vec<u32>, Vec<f32>) {
        let patches = self.patches.iter().map(|&i| i as u32).collect();
        let values = self.readings.iter().flatten().flat_map(Reading::fields).collect();
        (patches, values)
    }

    /// A shard from another worker's flat arrays, checked: the same whole number of readings
    /// for each patch ([`Shard::fill`] checks it against the sweep).
    pub fn from_flat(patches: &[u32], values: &[f32]) -> Result<Shard, PatchingError> {
        let per_patch = values.len().checked_div(patches.len()).unwrap_or(0);
        let rows = per_patch / FIELDS;
        if rows * FIELDS * patches.len() != values.len() || (rows == 0 && !patches.is_empty()) {
            return Err(PatchingError::Peer(format!(
                "a shard of {} patches holds {} numbers: not {FIELDS} per reading, alike for every patch",
                patches.len(),
                values.len()
            )));
        }
        let readings = values
            .chunks(per_patch.max(1))
            .map(|patch| patch.chunks_exact(FIELDS).map(Reading::from_fields).collect())
            .collect();
        Ok(Shard {
            patches: patches.iter().map(|&i| i as usize).collect(),
            readings,
        })
    }

    /// Places the shard's readings among a sweep's `all`, checked: a patch the plan has, with
    /// `rows` readings, that no other shard (nor this worker) has filled.
    pub fn fill(self, all: &mut [Option<Vec<Reading>>], rows: usize) -> Result<(), PatchingError> {
        if self.patches.len() != self.readings.len() {
            return Err(PatchingError::Peer(
                "a shard's patches and readings differ in number".into(),
            ));
        }
        for (i, readings) in self.patches.into_iter().zip(self.readings) {
            let slot = all.get_mut(i).ok_or_else(|| {
                PatchingError::Peer(format!("a shard names patch {i}, which the sweep does not have"))
            })?;
            if readings.len() != rows || slot.is_some() {
                return Err(PatchingError::Peer(format!(
                    "a shard's patch {i} has {} readings where {rows} are due, or came twice",
                    readings.len()
                )));
            }
            *slot = Some(readings);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(x: f32) -> Reading {
        Reading {
            logit_r: x,
            logit_rp: x + 1.0,
            logprob_r: -x,
            kl: x * 0.5,
            prob_rp: 0.25,
            prob_set_r: 0.5,
            prob_set_rp: f32::MIN_POSITIVE,
        }
    }

    #[test]
    fn every_batch_has_one_owner_and_the_work_is_balanced() {
        let costs = [90, 10, 40, 40, 30, 30, 5, 5];
        for count in 1..=4 {
            let owned: Vec<Vec<bool>> = (0..count)
                .map(|i| Share::new(i, count).unwrap().owned(&costs))
                .collect();
            for b in 0..costs.len() {
                assert_eq!(owned.iter().filter(|o| o[b]).count(), 1, "batch {b} of {count}");
            }
            let loads: Vec<usize> = owned
                .iter()
                .map(|o| (0..costs.len()).filter(|&b| o[b]).map(|b| costs[b]).sum())
                .collect();
            // Greedy on sorted costs: no worker exceeds the mean by more than the largest batch.
            let mean = costs.iter().sum::<usize>() / count;
            assert!(loads.iter().all(|&l| l <= mean + 90), "{loads:?}");
        }
        assert_eq!(Share::ALONE.owned(&costs), vec![true; costs.len()]);
        assert_eq!(
            Share::new(1, 2).unwrap().owned(&[90, 40, 40, 10]),
            vec![false, true, true, true]
        );
    }

    #[test]
    fn shares_are_checked() {
        assert!(Share::new(0, 1).is_ok());
        for (index, count) in [(0, 0), (2, 2), (0, MAX_WORKERS + 1)] {
            assert!(matches!(Share::new(index, count), Err(PatchingError::Peer(_))));
        }
    }

    #[test]
    fn a_shard_crosses_flat_and_fills_its_patches() {
        let shard = Shard {
            patches: vec![3, 0],
            readings: vec![
                vec![reading(1.0), reading(2.0)],
                vec![reading(-3.5), reading(f32::NAN)],
            ],
        };
        let (patches, values) = shard.to_flat();
        assert_eq!(values.len(), 2 * 2 * FIELDS);
        let back = Shard::from_flat(&patches, &values).unwrap();
        assert_eq!(back.patches, shard.patches);
        assert_eq!(back.to_flat().1.map_bits(), values.map_bits());
        let mut all = vec![None; 4];
        all[1] = Some(vec![reading(0.0); 2]);
        back.clone().fill(&mut all, 2).unwrap();
        assert_eq!(all[3].as_ref().unwrap()[1].logit_r, 2.0);
        assert!(all[2].is_none());
        // Twice, with the wrong rows, out of range, or mis-sized: an error, never a panic.
        assert!(back.clone().fill(&mut all, 2).is_err());
        assert!(back.clone().fill(&mut vec![None; 4], 3).is_err());
        assert!(back.fill(&mut vec![None; 3], 2).is_err());
        for bad in [&values[1..], &values[..FIELDS], &values[..0]] {
            assert!(Shard::from_flat(&patches, bad).is_err());
        }
        assert!(Shard::from_flat(&[], &values).is_err());
        assert!(Shard::from_flat(&[], &[]).unwrap().patches.is_empty());
    }

    trait Bits {
        fn map_bits(&self) -> Vec<u32>;
    }
    impl Bits for Vec<f32> {
        fn map_bits(&self) -> Vec<u32> {
            self.iter().map(|x| x.to_bits()).collect()
        }
    }
}
