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
//! [`AdamRows`] holds the rows and their Adam state; `--refine-poses` uses it sparse, `abinit` dense.
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

/// Per-image rows of parameters (N, width) with their own Adam state: the storage of the pose,
/// translation and conformation tables. Sparse (torch's `SparseAdam`, `--refine-poses`): only the
/// batch's rows and moments change. Dense (torch's `Adam` on a dense table, `abinit`'s tables):
/// every row takes the step with gradient 0 outside the batch, so a row keeps moving on its
/// moments after its batch, as the reference's tables do. One step counter for the table either way.
#[derive(Clone, Debug)]
pub struct AdamRows {
    pub width: usize,
    /// Learning rate.
    pub lr: f64,
    pub dense: bool,
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

impl AdamRows {
    /// A table of `params.len() / width` rows starting at `params`.
    pub fn new(params: Vec<f64>, width: usize, lr: f64, dense: bool) -> Result<Self> {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::invalid(format!(
                "a table's learning rate must be > 0, got {lr}"
            )));
        }
        if width == 0 || !params.len().is_multiple_of(width) {
            return Err(Error::invalid(format!(
                "a table of width {width} cannot hold {} values",
                params.len()
            )));
        }
        let len = params.len();
        Ok(Self {
            width,
            lr,
            dense,
            params,
            m: vec![0.0; len],
            v: vec![0.0; len],
            steps: 0,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.params.len() / self.width
    }

    /// Whether the table has no row.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Rows `idx`, (B, width) in f32.
    pub fn rows(&self, idx: &[usize]) -> Vec<f32> {
        let w = self.width;
        idx.iter()
            .flat_map(|&i| self.params[i * w..(i + 1) * w].iter().map(|&v| v as f32))
            .collect()
    }

    /// Every row, (N, width) in f64.
    pub fn values(&self) -> &[f64] {
        &self.params
    }

    /// The whole state: parameters, first and second moments, steps taken.
    pub fn state(&self) -> (&[f64], &[f64], &[f64], u64) {
        (&self.params, &self.m, &self.v, self.steps)
    }

    /// Restore a state written by [`AdamRows::state`] (same lengths as this table).
    pub fn set_state(
        &mut self,
        params: Vec<f64>,
        m: Vec<f64>,
        v: Vec<f64>,
        steps: u64,
    ) -> Result<()> {
        let len = self.params.len();
        if params.len() != len || m.len() != len || v.len() != len {
            return Err(Error::invalid(format!(
                "a table state of {} values does not fit a table of {len}",
                params.len()
            )));
        }
        (self.params, self.m, self.v, self.steps) = (params, m, v, steps);
        Ok(())
    }

    /// Overwrite rows `idx` with `vals` (B, width), moments kept (the reference's tables are written
    /// in place the same way when an epoch logs a pose search's result).
    pub fn set_rows(&mut self, idx: &[usize], vals: &[f64]) -> Result<()> {
        let w = self.width;
        if vals.len() != idx.len() * w {
            return Err(Error::Shape {
                what: "table rows".into(),
                expected: format!("({}, {w})", idx.len()),
                got: format!("{} values", vals.len()),
            });
        }
        for (b, &i) in idx.iter().enumerate() {
            self.params[i * w..(i + 1) * w].copy_from_slice(&vals[b * w..(b + 1) * w]);
        }
        Ok(())
    }

    /// One Adam step with the gradients `grad` (B, width) of rows `idx` (distinct).
    pub fn step(&mut self, idx: &[usize], grad: &[f32]) -> Result<()> {
        let w = self.width;
        if grad.len() != idx.len() * w {
            return Err(Error::Shape {
                what: "table gradient".into(),
                expected: format!("({}, {w})", idx.len()),
                got: format!("{} values", grad.len()),
            });
        }
        self.steps += 1;
        let bc1 = 1.0 - BETA1.powf(self.steps as f64);
        let bc2 = 1.0 - BETA2.powf(self.steps as f64);
        let lr = self.lr;
        let update = |p: &mut f64, m: &mut f64, v: &mut f64, g: f64| {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *p -= lr * (*m / bc1) / ((*v / bc2).sqrt() + ADAM_EPS);
        };
        if self.dense {
            let mut full = vec![0f64; self.params.len()];
            for (b, &i) in idx.iter().enumerate() {
                for k in 0..w {
                    full[i * w + k] = grad[b * w + k] as f64;
                }
            }
            for (at, g) in full.into_iter().enumerate() {
                update(&mut self.params[at], &mut self.m[at], &mut self.v[at], g);
            }
        } else {
            for (b, &i) in idx.iter().enumerate() {
                for k in 0..w {
                    let at = i * w + k;
                    let g = grad[b * w + k] as f64;
                    update(&mut self.params[at], &mut self.m[at], &mut self.v[at], g);
                }
            }
        }
        Ok(())
    }
}

/// A per-image rotation table and its Adam state (module doc).
#[derive(Clone, Debug)]
pub struct PoseTable {
    pub emb: PoseEmb,
    pub rows: AdamRows,
}

impl PoseTable {
    /// A table starting at `rots` (row-major 3×3 each), SparseAdam.
    pub fn new(rots: &[[f32; 9]], emb: PoseEmb, lr: f64) -> Result<Self> {
        Self::with_adam(rots, emb, lr, false)
    }

    /// A table starting at `rots`, with dense Adam (`dense`) or SparseAdam.
    pub fn with_adam(rots: &[[f32; 9]], emb: PoseEmb, lr: f64, dense: bool) -> Result<Self> {
        let params: Vec<f64> = rots
            .iter()
            .flat_map(|r| emb.embed(&r.map(f64::from)))
            .collect();
        Ok(Self {
            emb,
            rows: AdamRows::new(params, emb.width(), lr, dense)
                .map_err(|e| Error::invalid(format!("the pose table: {e}")))?,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no image.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows of images `idx`, (B, width) in f32.
    pub fn rows(&self, idx: &[usize]) -> Vec<f32> {
        self.rows.rows(idx)
    }

    /// Set the rotations of images `idx` (the table's embedding of each).
    pub fn set(&mut self, idx: &[usize], rots: &[[f32; 9]]) -> Result<()> {
        let vals: Vec<f64> = rots
            .iter()
            .flat_map(|r| self.emb.embed(&r.map(f64::from)))
            .collect();
        self.rows.set_rows(idx, &vals)
    }

    /// One Adam step on the rows of images `idx` (distinct) with their gradients
    /// `grad` (B, width).
    pub fn step(&mut self, idx: &[usize], grad: &[f32]) -> Result<()> {
        self.rows.step(idx, grad)
    }

    /// The rotations of images `idx` (row-major), from the current parameters (f64 on the host).
    pub fn rotations_of(&self, idx: &[usize]) -> Result<Vec<[f32; 9]>> {
        let (w, vals) = (self.emb.width(), self.rows.values());
        let sel: Vec<f64> = idx
            .iter()
            .flat_map(|&i| vals[i * w..(i + 1) * w].iter().copied())
            .collect();
        self.to_rotations(&sel)
    }

    /// Every image's rotation (row-major), from the current parameters (the embedding's map in
    /// f64 on the host).
    pub fn rotations(&self) -> Result<Vec<[f32; 9]>> {
        self.to_rotations(self.rows.values())
    }

    /// Rotations of parameter rows (n, width) by the embedding's map in f64.
    fn to_rotations(&self, params: &[f64]) -> Result<Vec<[f32; 9]>> {
        Ok(
            crate::model::pose::on_host(self.emb.map(), params, self.emb.width())?
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
        // dense Adam: a row outside the batch keeps moving on its moments after its batch
        let mut d = AdamRows::new(vec![0.0; 4], 2, 1e-2, true).unwrap();
        d.step(&[0], &[1.0, -1.0]).unwrap();
        let after1 = d.values().to_vec();
        d.step(&[1], &[1.0, 1.0]).unwrap();
        let after2 = d.values().to_vec();
        assert!((after1[0] + 1e-2).abs() < 1e-9 && (after1[1] - 1e-2).abs() < 1e-9);
        assert!(
            after2[0] < after1[0] && after2[1] > after1[1],
            "{after1:?} {after2:?}"
        );
        let mut s = AdamRows::new(vec![0.0; 4], 2, 1e-2, false).unwrap();
        s.step(&[0], &[1.0, -1.0]).unwrap();
        s.step(&[1], &[1.0, 1.0]).unwrap();
        assert_eq!(&s.values()[..2], &after1[..2]);
        assert!(PoseTable::new(&rots, PoseEmb::Quat, 0.0).is_err());
        assert!(AdamRows::new(vec![0.0; 5], 2, 1e-3, false).is_err());
        assert!("euler".parse::<PoseEmb>().is_err());
    }
}
