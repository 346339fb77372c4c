//! Per-image pose tables refined by gradient descent: cryoDRGN's `PoseTracker` with an SO(3)
//! embedding (`--do-pose-sgd`, `--emb-type quat|s2s2`) and `torch.optim.SparseAdam` — pose
//! refinement in `train-nn` / `train-vae --refine-poses` (issue 26) and the pose table of
//! `abinit`'s SGD epochs.
//!
//! Each image's rotation is a row of parameters: a quaternion (w, x, y, z), 4 values, or the
//! 6-D representation (the first two rows of R), 6 values; [`PoseEmb::rotation`] turns a batch of
//! rows into rotation matrices on the tape ([`crate::model::pose::quat`] / [`crate::model::pose::sixd`]),
//! so the loss's gradient reaches them through [`crate::model::Decoder::forward_posed`]. A table
//! starts at the given rotations exactly (the embedding of R maps back to R).
//!
//! ## Optimiser
//! SparseAdam as torch's: one step counter for the table, incremented at every [`PoseTable::step`];
//! only the rows of the batch change (their first and second moments, m ← β₁m + (1 − β₁)g,
//! v ← β₂v + (1 − β₂)g², and the row p ← p − lr·m̂/(√v̂ + ε) with the bias corrections of the
//! table's step count); rows not in the batch keep their values and moments. β = (0.9, 0.999),
//! ε = 1e-8.

use crate::autodiff::{Tape, Var};
use crate::backend::Backend;
use crate::{Error, Result};

/// The SO(3) embedding of a pose table (cryoDRGN's `--emb-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoseEmb {
    /// A quaternion (w, x, y, z): the reference's default.
    Quat,
    /// The 6-D representation: R's first two rows, Gram–Schmidt on the tape.
    S2s2,
}

impl std::str::FromStr for PoseEmb {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "quat" => Ok(Self::Quat),
            "s2s2" => Ok(Self::S2s2),
            _ => Err(Error::invalid(format!(
                "--emb-type must be quat or s2s2, got {s:?}"
            ))),
        }
    }
}

impl PoseEmb {
    /// Parameters per image.
    pub fn width(self) -> usize {
        match self {
            Self::Quat => 4,
            Self::S2s2 => 6,
        }
    }

    /// The parameters of rotation `r` (row-major): they map back to `r` exactly.
    pub fn embed(self, r: &[f64; 9]) -> Vec<f64> {
        match self {
            Self::Quat => crate::model::pose::quat_of(r).to_vec(),
            Self::S2s2 => r[..6].to_vec(),
        }
    }

    /// The tape map of parameters (B, width) to rotations (B, 9).
    pub fn map<B: Backend>(self) -> fn(&mut Tape<'_, B>, Var) -> Result<Var> {
        match self {
            Self::Quat => crate::model::pose::quat,
            Self::S2s2 => crate::model::pose::sixd,
        }
    }

    /// Rotations (B, 9) of parameters (B, width) on the tape.
    pub fn rotation<B: Backend>(self, t: &mut Tape<'_, B>, params: Var) -> Result<Var> {
        self.map()(t, params)
    }
}

/// A per-image rotation table and its SparseAdam state (module doc).
#[derive(Clone, Debug)]
pub struct PoseTable {
    pub emb: PoseEmb,
    /// Learning rate.
    pub lr: f64,
    /// Parameters (N, width), moments (N, width), in f64.
    params: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    /// Steps taken (the bias corrections' t).
    steps: u64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

impl PoseTable {
    /// A table starting at `rots` (row-major 3×3 each).
    pub fn new(rots: &[[f32; 9]], emb: PoseEmb, lr: f64) -> Result<Self> {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::invalid(format!(
                "the pose learning rate must be > 0, got {lr}"
            )));
        }
        let params: Vec<f64> = rots
            .iter()
            .flat_map(|r| emb.embed(&r.map(f64::from)))
            .collect();
        let len = params.len();
        Ok(Self {
            emb,
            lr,
            params,
            m: vec![0.0; len],
            v: vec![0.0; len],
            steps: 0,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.params.len() / self.emb.width()
    }

    /// Whether the table has no image.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The rows of images `idx`, (B, width) in f32.
    pub fn rows(&self, idx: &[usize]) -> Vec<f32> {
        let w = self.emb.width();
        idx.iter()
            .flat_map(|&i| self.params[i * w..(i + 1) * w].iter().map(|&v| v as f32))
            .collect()
    }

    /// One SparseAdam step on the rows of images `idx` (distinct) with their gradients
    /// `grad` (B, width).
    pub fn step(&mut self, idx: &[usize], grad: &[f32]) -> Result<()> {
        let w = self.emb.width();
        if grad.len() != idx.len() * w {
            return Err(Error::Shape {
                what: "pose table gradient".into(),
                expected: format!("({}, {w})", idx.len()),
                got: format!("{} values", grad.len()),
            });
        }
        self.steps += 1;
        let bc1 = 1.0 - BETA1.powf(self.steps as f64);
        let bc2 = 1.0 - BETA2.powf(self.steps as f64);
        for (b, &i) in idx.iter().enumerate() {
            for k in 0..w {
                let (g, at) = (grad[b * w + k] as f64, i * w + k);
                self.m[at] = BETA1 * self.m[at] + (1.0 - BETA1) * g;
                self.v[at] = BETA2 * self.v[at] + (1.0 - BETA2) * g * g;
                let step = self.lr * (self.m[at] / bc1) / ((self.v[at] / bc2).sqrt() + ADAM_EPS);
                self.params[at] -= step;
            }
        }
        Ok(())
    }

    /// Every image's rotation (row-major), from the current parameters (the embedding's map in
    /// f64 on the host).
    pub fn rotations(&self) -> Result<Vec<[f32; 9]>> {
        Ok(
            crate::model::pose::on_host(self.emb.map(), &self.params, self.emb.width())?
                .chunks(9)
                .map(|c| std::array::from_fn(|k| c[k] as f32))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::quaternion::random_rotations;

    #[test]
    fn starts_at_the_given_rotations_and_only_batch_rows_move() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let rots: Vec<[f32; 9]> = random_rotations(20, &mut rng)
            .iter()
            .map(|r| std::array::from_fn(|k| r[k] as f32))
            .collect();
        for emb in [PoseEmb::Quat, PoseEmb::S2s2] {
            let mut t = PoseTable::new(&rots, emb, 1e-2).unwrap();
            for (a, b) in t.rotations().unwrap().iter().zip(&rots) {
                for k in 0..9 {
                    assert!((a[k] - b[k]).abs() < 1e-6, "{emb:?}: {a:?} vs {b:?}");
                }
            }
            let w = emb.width();
            let before = t.rows(&(0..20).collect::<Vec<_>>());
            let idx = [3, 7];
            let g: Vec<f32> = (0..2 * w).map(|k| 1.0 - k as f32 * 0.3).collect();
            t.step(&idx, &g).unwrap();
            let after = t.rows(&(0..20).collect::<Vec<_>>());
            for i in 0..20 {
                for k in 0..w {
                    let (a, b) = (before[i * w + k], after[i * w + k]);
                    if idx.contains(&i) {
                        // Adam's first step moves every coordinate by lr against its gradient's sign
                        let gk = g[idx.iter().position(|&j| j == i).unwrap() * w + k];
                        assert!(((b - a) + 1e-2 * gk.signum()).abs() < 1e-6, "{a} → {b}");
                    } else {
                        assert_eq!(a, b);
                    }
                }
            }
            assert!(t.step(&idx, &g[1..]).is_err());
        }
        assert!(PoseTable::new(&rots, PoseEmb::Quat, 0.0).is_err());
        assert!("euler".parse::<PoseEmb>().is_err());
    }
}
