//! Pose accuracy against ground truth: global alignment of two pose sets (both hands), then the
//! per-image rotation error (the cryoDRGN paper's squared Frobenius measure and the geodesic angle)
//! and translation error in pixels, as `cryodrgn.metrics` (`align_rot_best`, `frob_norm`,
//! `get_trans_metrics`) defines them.
//!
//! # Why the alignment acts on the right, and what the other hand is
//! A slice of the volume `V` for pose `R` samples `V` at the row vectors `k·R` (`k = (kx, ky, 0)`,
//! [`crate::fourier::slice`], the reference's `lattice.coords @ rot`). A reconstruction is only
//! determined up to a global rotation and a mirror of the volume:
//! - rotated, `V'(p) = V(p·M)`: `V'(k·R') = V(k·R)` for `R' = R·Mᵀ`, so predicted poses differ
//!   from the truth by one rotation **on the right**: `R_true,i ≈ R_pred,i·A`;
//! - mirrored, `V'(p) = V(p·F)` with `F = diag(1, 1, −1)`: `V'(k·F·R·F) = V(k·R·F·F) = V(k·R)`
//!   because `k·F = k` in the image plane, so `R' = F·R·F` gives **identical images**, and any
//!   other mirror is `F` times a rotation. Translations are in-plane image shifts and do not change
//!   under either ambiguity.
//!
//! So for each hand `H(R) = R` or `H(R) = F·R·F` we find the rotation `A` that aligns
//! `H(R_pred,i)·A` to `R_true,i`, and keep the hand with the smaller median error (the reference
//! logs "Correct Handedness" / "Flipped Handedness" on the same comparison). The reference writes
//! the flipped case as `F·R_pred·A_ref` with an improper `A_ref`; ours is the same matrix,
//! `F·R_pred·F·A` with the proper `A = F·A_ref`.
//!
//! # Alignment
//! The reference (`align_rot_best`) takes each of the first 100 images' relative rotation
//! `A_i = H(R_pred,i)ᵀ·R_true,i` as a candidate and keeps the one with the smallest median error,
//! so its `A` carries that one image's pose error. We take 100 candidates spread over the whole set
//! the same way (robust to up to ~half of the images being wrong), then refine the best by
//! Weiszfeld iterations for the chordal L1 mean, `A = argmin_{A ∈ SO(3)} Σ_i ‖H(R_pred,i)·A − R_true,i‖_F`
//! (each step: `A ← nearest rotation to Σ_i w_i·A_i`, `w_i = 1/‖A_i − A‖_F`), which averages out
//! per-image noise while outliers keep a bounded weight.
//!
//! # Errors reported (per image, after alignment; `R̃_i = H(R_pred,i)·A`)
//! - `rot_frob`: the **squared** Frobenius norm `‖R̃_i − R_true,i‖²_F = Σ_jk (R̃_i − R_true,i)_jk²`,
//!   exactly `cryodrgn.metrics.frob_norm`, the measure of the paper's Table 1 ("Frobenius norm
//!   after alignment"; its 0.0004 … 0.003 medians are squared norms). For rotations it equals
//!   `4·(1 − cos θ)`, about `2θ²` for small `θ`.
//! - `rot_deg`: the geodesic angle `θ` of `R̃_iᵀ·R_true,i` in degrees.
//! - `trans_px`: `‖t_pred,i − t_true,i‖·D` in pixels (pose.pkl translations are fractions of `D`),
//!   the reference's `medae` distance. Optionally (the reference's `correct_global_trans`) after
//!   removing a global 3D shift `u` of the volume, which moves image `i` by the first two rows of
//!   `R_true,i·u`, fitted by least squares on the rotation inliers.
//!
//! The summary statistic is the **median** (the paper's Table 1 and `align_rot_best`'s
//! `median_frob`); means are reported too.

use crate::analysis::pca::symmetric_eigen;
use crate::error::{Error, Result};
use crate::geometry::quaternion::{quat_to_rot, rotation_angle};
use crate::geometry::rotation::{matmul3, transpose3, Mat3};
use crate::meta::Poses;
use rayon::prelude::*;

/// The mirror `F = diag(1, 1, −1)`: the other hand's poses are `F·R·F`.
pub const FLIP: Mat3 = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0];

/// Number of single-image candidate alignments tried per hand (the reference's `n_tries`).
const N_CANDIDATES: usize = 100;
/// Images used to score the candidates (evenly spread; all when there are fewer).
const N_SCORE: usize = 10_000;
/// Most Weiszfeld steps per hand (a well-aligned set converges in ~15; a hopeless one crawls).
const MAX_WEISZFELD_STEPS: usize = 100;

/// Options of [`pose_error_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoseErrorOptions {
    /// box size `D` (pixels): pose.pkl translations are fractions of `D`
    pub d: usize,
    /// remove a least-squares global 3D shift of the volume before measuring translations
    /// (the reference's `get_trans_metrics(correct_global_trans=True)`)
    pub correct_global_trans: bool,
}

/// Per-image pose errors after the global alignment, and their summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct PoseErrorReport {
    /// per image: squared Frobenius norm `‖H(R_pred)·A − R_true‖²_F` (in `[0, 8]`), as the
    /// paper's Table 1 and `cryodrgn.metrics.frob_norm`
    pub rot_frob: Vec<f64>,
    /// per image: geodesic angle between `H(R_pred)·A` and `R_true` (degrees, in `[0, 180]`)
    pub rot_deg: Vec<f64>,
    /// per image: `‖t_pred − t_true‖·D` (pixels), after the global shift when one was fitted;
    /// `None` if either pose set lacks translations
    pub trans_px: Option<Vec<f64>>,
    /// true when the other hand aligned better: `H(R) = F·R·F`, `F = diag(1, 1, −1)`
    pub flipped: bool,
    /// the global alignment rotation `A` (rows), `R_true ≈ H(R_pred)·A`
    pub align: [[f64; 3]; 3],
    /// median of `rot_frob` (numpy's median: mean of the middle two for even N)
    pub median_rot_frob: f64,
    /// median of `rot_deg`
    pub median_rot_deg: f64,
    /// median of `trans_px`
    pub median_trans_px: Option<f64>,
    /// mean of `rot_frob`
    pub mean_rot_frob: f64,
    /// mean of `rot_deg`
    pub mean_rot_deg: f64,
    /// mean of `trans_px`
    pub mean_trans_px: Option<f64>,
    /// median `rot_frob` of the rejected hand after its own alignment: how clear the choice was
    pub other_hand_median_rot_frob: f64,
    /// the fitted global 3D shift of the volume (pixels, in the truth frame) when
    /// [`PoseErrorOptions::correct_global_trans`] was set and both sets have translations
    pub global_shift_px: Option<[f64; 3]>,
}

/// [`pose_error_with`] without the global translation correction.
pub fn pose_error(pred: &Poses, truth: &Poses, d: usize) -> Result<PoseErrorReport> {
    pose_error_with(
        pred,
        truth,
        &PoseErrorOptions {
            d,
            correct_global_trans: false,
        },
    )
}

/// Aligns `pred` to `truth` globally (both hands) and measures per-image errors (see the module
/// doc for the definitions).
///
/// Errors when the sets are empty or differ in length, when a rotation is not a proper rotation
/// matrix (`|R·Rᵀ − I| > 1e-3` or `det R < 0`), or when `d = 0` and translations are compared.
pub fn pose_error_with(
    pred: &Poses,
    truth: &Poses,
    opts: &PoseErrorOptions,
) -> Result<PoseErrorReport> {
    if pred.len() != truth.len() {
        return Err(Error::Shape {
            what: "pose-error: predicted vs true poses".into(),
            expected: format!("{} predicted poses (one per true pose)", truth.len()),
            got: format!("{}", pred.len()),
        });
    }
    if pred.is_empty() {
        return Err(Error::invalid("pose-error: no poses to compare"));
    }
    check_rotations(pred, "predicted poses")?;
    check_rotations(truth, "true poses")?;
    let to64 = |p: &Poses| -> Vec<Mat3> { p.rots.iter().map(|r| r.map(f64::from)).collect() };
    let (rp, rt) = (to64(pred), to64(truth));
    let rp_flip: Vec<Mat3> = rp.iter().map(flip).collect();

    let keep = align_rotations(&rp, &rt);
    let other = align_rotations(&rp_flip, &rt);
    let (flipped, align, chosen, other_med) = if other.median_frob < keep.median_frob {
        (true, other.align, &rp_flip, keep.median_frob)
    } else {
        (false, keep.align, &rp, other.median_frob)
    };

    let (rot_frob, rot_deg): (Vec<f64>, Vec<f64>) = chosen
        .iter()
        .zip(&rt)
        .map(|(p, t)| {
            let aligned = matmul3(p, &align);
            (
                frob_sq(&aligned, t),
                rotation_angle(&aligned, t).to_degrees(),
            )
        })
        .unzip();
    let median_rot_deg = median(&rot_deg);

    let (trans_px, global_shift_px) = match (&pred.trans, &truth.trans) {
        (Some(tp), Some(tt)) => {
            if opts.d == 0 {
                return Err(Error::invalid(
                    "pose-error: box size D must be at least 1 to express translations in pixels",
                ));
            }
            let d = opts.d as f64;
            let finite = |t: &[[f32; 2]]| t.iter().all(|v| v[0].is_finite() && v[1].is_finite());
            if !(finite(tp) && finite(tt)) {
                return Err(Error::invalid(
                    "pose-error: translations must be finite numbers",
                ));
            }
            let delta: Vec<[f64; 2]> = tp
                .iter()
                .zip(tt)
                .map(|(p, t)| {
                    [
                        (f64::from(p[0]) - f64::from(t[0])) * d,
                        (f64::from(p[1]) - f64::from(t[1])) * d,
                    ]
                })
                .collect();
            if opts.correct_global_trans {
                // Rotation inliers only (error ≤ max(3 × median, 1°)): an image whose orientation is
                // wrong says nothing about u.
                let cut = (3.0 * median_rot_deg).max(1.0);
                let inliers: Vec<usize> =
                    (0..rot_deg.len()).filter(|&i| rot_deg[i] <= cut).collect();
                let u = fit_global_shift(&rt, &delta, &inliers)?;
                let px = delta
                    .iter()
                    .zip(&rt)
                    .map(|(dt, r)| {
                        let s = in_plane_shift(r, &u);
                        (dt[0] - s[0]).hypot(dt[1] - s[1])
                    })
                    .collect();
                (Some(px), Some(u))
            } else {
                (Some(delta.iter().map(|v| v[0].hypot(v[1])).collect()), None)
            }
        }
        _ => (None, None),
    };

    Ok(PoseErrorReport {
        median_rot_frob: median(&rot_frob),
        median_rot_deg,
        median_trans_px: trans_px.as_deref().map(median),
        mean_rot_frob: mean(&rot_frob),
        mean_rot_deg: mean(&rot_deg),
        mean_trans_px: trans_px.as_deref().map(mean),
        rot_frob,
        rot_deg,
        trans_px,
        flipped,
        align: [
            [align[0], align[1], align[2]],
            [align[3], align[4], align[5]],
            [align[6], align[7], align[8]],
        ],
        other_hand_median_rot_frob: other_med,
        global_shift_px,
    })
}

/// One state's pose errors after its own alignment ([`pose_error_per_state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StateError {
    /// the state's label
    pub label: i64,
    /// the state's images: indices into the pose sets given
    pub images: Vec<usize>,
    /// the state's errors, aligned (rotation, hand and, if asked, 3D shift) on its images alone
    pub report: PoseErrorReport,
    /// geodesic angle (degrees) between this state's alignment and the global one: how far the
    /// reconstruction's frame for this state is turned against the frame of all images together;
    /// `None` when the state's hand differs from the global hand
    pub frame_deg: Option<f64>,
}

/// Pose errors with one alignment per state ([`pose_error_per_state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PerStateReport {
    /// states with at least the minimum number of images, by label
    pub states: Vec<StateError>,
    /// (label, images) of the states with too few images to align on their own
    pub skipped: Vec<(i64, usize)>,
    /// medians over the images of all aligned states, each measured after its state's alignment
    pub median_rot_frob: f64,
    /// see [`PerStateReport::median_rot_frob`]
    pub median_rot_deg: f64,
    /// see [`PerStateReport::median_rot_frob`]; `None` without translations
    pub median_trans_px: Option<f64>,
}

/// Pose errors of a heterogeneous data set, each state aligned on its own. A heterogeneous
/// reconstruction fixes poses only up to one rotation (and one 3D shift) per state: replacing the
/// volume of state z by `Q(z)`-rotated copy and each of its poses `R` by `R·Q(z)` changes no image,
/// so the frame of each state drifts freely with z. One global alignment then charges that drift to
/// the poses; this measures what the images do determine. `labels` holds one state label per image
/// (e.g. the volume index `simulate` writes to labels.pkl); `global` is [`pose_error_with`] of all
/// images (its alignment is the reference of [`StateError::frame_deg`]). States with fewer than
/// `min_images` images are skipped (listed in [`PerStateReport::skipped`]).
///
/// Errors as [`pose_error_with`], when `labels` does not have one label per pose, or when no state
/// has `min_images` images.
pub fn pose_error_per_state(
    pred: &Poses,
    truth: &Poses,
    labels: &[i64],
    opts: &PoseErrorOptions,
    global: &PoseErrorReport,
    min_images: usize,
) -> Result<PerStateReport> {
    if labels.len() != pred.len() || labels.len() != truth.len() {
        return Err(Error::Shape {
            what: "pose-error: state labels".into(),
            expected: format!("one label per pose ({})", pred.len()),
            got: labels.len().to_string(),
        });
    }
    let mut groups: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        groups.entry(l).or_default().push(i);
    }
    let ga: Mat3 = global.align.concat().try_into().expect("3 × 3");
    let (mut states, mut skipped) = (Vec::new(), Vec::new());
    let (mut frob, mut deg, mut px) = (Vec::new(), Vec::new(), Vec::new());
    for (label, ind) in groups {
        if ind.len() < min_images.max(1) {
            skipped.push((label, ind.len()));
            continue;
        }
        let report = pose_error_with(&pred.select(&ind), &truth.select(&ind), opts)?;
        let a: Mat3 = report.align.concat().try_into().expect("3 × 3");
        let frame_deg =
            (report.flipped == global.flipped).then(|| rotation_angle(&a, &ga).to_degrees());
        frob.extend_from_slice(&report.rot_frob);
        deg.extend_from_slice(&report.rot_deg);
        if let Some(t) = &report.trans_px {
            px.extend_from_slice(t);
        }
        states.push(StateError {
            label,
            images: ind,
            report,
            frame_deg,
        });
    }
    if states.is_empty() {
        return Err(Error::invalid(format!(
            "pose-error: no state has {min_images} or more images to align on its own"
        )));
    }
    let has_trans = states.iter().all(|s| s.report.trans_px.is_some());
    Ok(PerStateReport {
        median_rot_frob: median(&frob),
        median_rot_deg: median(&deg),
        median_trans_px: has_trans.then(|| median(&px)),
        states,
        skipped,
    })
}

/// Checks that every rotation of `poses` is a proper rotation matrix
/// ([`crate::io::validate::rotation_violation`]: `|R·Rᵀ − I| ≤ 1e-3` entrywise and `det R > 0`). `what` names the set (a file) in the error.
pub fn check_rotations(poses: &Poses, what: &str) -> Result<()> {
    for (i, r) in poses.rots.iter().enumerate() {
        if let Some(why) = crate::io::validate::rotation_violation(r) {
            return Err(Error::invalid(format!("{what}: pose {i} is {why}")));
        }
    }
    Ok(())
}

/// A global alignment for one hand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// the rotation `A` (row-major) with `truth_i ≈ pred_i·A`
    pub align: Mat3,
    /// median over images of `‖pred_i·A − truth_i‖²_F`
    pub median_frob: f64,
}

/// The rotation `A` minimising `Σ_i ‖pred_i·A − truth_i‖_F` (no hand change): the best of up to
/// 100 single-image candidates `pred_iᵀ·truth_i` by median squared error, refined by Weiszfeld
/// iterations for the chordal L1 mean of all `pred_iᵀ·truth_i`.
///
/// # Panics
/// When the slices are empty or differ in length.
pub fn align_rotations(pred: &[Mat3], truth: &[Mat3]) -> Alignment {
    assert!(
        !pred.is_empty() && pred.len() == truth.len(),
        "align_rotations: need equally many (≥ 1) predicted and true rotations"
    );
    let n = pred.len();
    // rel_i = pred_iᵀ·truth_i, so ‖pred_i·A − truth_i‖_F = ‖A − rel_i‖_F.
    let rel: Vec<Mat3> = pred
        .iter()
        .zip(truth)
        .map(|(p, t)| matmul3(&transpose3(p), t))
        .collect();
    let score_idx = spread(n, N_SCORE);
    let mut best = (f64::INFINITY, rel[0]);
    for c in spread(n, N_CANDIDATES) {
        let d: Vec<f64> = score_idx
            .iter()
            .map(|&j| frob_sq(&rel[j], &rel[c]))
            .collect();
        let m = median(&d);
        if m < best.0 {
            best = (m, rel[c]);
        }
    }
    // f32 inputs: a candidate is orthonormal only to ~1e-7; start from the nearest rotation.
    let align = weiszfeld(&rel, nearest_rotation(&best.1));
    let frob: Vec<f64> = pred
        .iter()
        .zip(truth)
        .map(|(p, t)| frob_sq(&matmul3(p, &align), t))
        .collect();
    Alignment {
        align,
        median_frob: median(&frob),
    }
}

/// Weiszfeld iterations for `argmin_{A ∈ SO(3)} Σ_i ‖A − rel_i‖_F` from `a`: each step projects
/// the weighted mean `T = Σ w_i·rel_i / Σ w_i` (`w_i = 1/‖A − rel_i‖_F`) onto SO(3). Points at `A`
/// itself (the start is one) are handled as Vardi & Zhang (2000): with `η` of them and `r` the
/// length of the pull `Σ w_i·(rel_i − A)` of the others, the step goes to
/// `(1 − min(1, η/r))·T + min(1, η/r)·A`. Stops when a step no longer lowers the objective, lowers
/// it by less than 1e-10 relative, or moves `A` by less than 1e-12 (at most 100 steps).
fn weiszfeld(rel: &[Mat3], mut a: Mat3) -> Mat3 {
    let mut prev: Option<(Mat3, f64)> = None;
    for _ in 0..MAX_WEISZFELD_STEPS {
        // Fixed chunks summed in order: the same result for any number of threads.
        let parts: Vec<WeiszfeldSums> = rel
            .par_chunks(4096)
            .map(|c| WeiszfeldSums::of(c, &a))
            .collect();
        let s = parts
            .iter()
            .fold(WeiszfeldSums::default(), |acc, p| acc.add(p));
        if let Some((pa, pobj)) = prev {
            if s.obj >= pobj {
                return pa;
            }
            // Converged for any use of the result (f32 inputs): the objective no longer moves.
            if pobj - s.obj <= 1e-10 * pobj {
                return a;
            }
        }
        if s.wsum == 0.0 {
            // Every point is at `a`.
            return a;
        }
        let t: Mat3 = s.m.map(|x| x / s.wsum);
        let pull = frob_sq(&t, &a).sqrt() * s.wsum;
        let lam = if s.eta == 0 {
            0.0
        } else {
            (s.eta as f64 / pull).min(1.0)
        };
        let target: Mat3 = std::array::from_fn(|k| (1.0 - lam) * t[k] + lam * a[k]);
        let next = nearest_rotation(&target);
        if frob_sq(&next, &a) < 1e-24 {
            return next;
        }
        prev = Some((a, s.obj));
        a = next;
    }
    a
}

/// One Weiszfeld step's sums over some `rel_i` at the current `A`: the objective `Σ ‖rel_i − A‖_F`,
/// `m = Σ w_i·rel_i` and `Σ w_i` over the points not at `A`, and the count `η` of those at `A`.
#[derive(Default)]
struct WeiszfeldSums {
    obj: f64,
    m: Mat3,
    wsum: f64,
    eta: usize,
}

impl WeiszfeldSums {
    fn of(rel: &[Mat3], a: &Mat3) -> Self {
        let mut s = WeiszfeldSums::default();
        for r in rel {
            let dist = frob_sq(r, a).sqrt();
            s.obj += dist;
            if dist < 1e-12 {
                s.eta += 1;
                continue;
            }
            let w = 1.0 / dist;
            s.wsum += w;
            s.m.iter_mut().zip(r).for_each(|(acc, x)| *acc += w * x);
        }
        s
    }

    fn add(mut self, o: &Self) -> Self {
        self.obj += o.obj;
        self.m.iter_mut().zip(&o.m).for_each(|(x, y)| *x += y);
        self.wsum += o.wsum;
        self.eta += o.eta;
        self
    }
}

/// The rotation nearest to `m` in Frobenius norm, `argmax_{R ∈ SO(3)} tr(Rᵀ·m)` (the SO(3)
/// Procrustes solution), by Horn's method: the eigenvector of the largest eigenvalue of the 4×4
/// symmetric `K(m)` is the unit quaternion `(w, x, y, z)` of `R`, `tr(Rᵀ·m) = qᵀ·K·q`.
pub fn nearest_rotation(m: &Mat3) -> Mat3 {
    let e = |i: usize, j: usize| m[3 * i + j];
    #[rustfmt::skip]
    let k = [
        e(0, 0) + e(1, 1) + e(2, 2), e(2, 1) - e(1, 2), e(0, 2) - e(2, 0), e(1, 0) - e(0, 1),
        e(2, 1) - e(1, 2), e(0, 0) - e(1, 1) - e(2, 2), e(0, 1) + e(1, 0), e(0, 2) + e(2, 0),
        e(0, 2) - e(2, 0), e(0, 1) + e(1, 0), -e(0, 0) + e(1, 1) - e(2, 2), e(1, 2) + e(2, 1),
        e(1, 0) - e(0, 1), e(0, 2) + e(2, 0), e(1, 2) + e(2, 1), -e(0, 0) - e(1, 1) + e(2, 2),
    ];
    let (_, vecs) = symmetric_eigen(&k, 4);
    let (w, x, y, z) = (vecs[0], vecs[1], vecs[2], vecs[3]);
    // The textbook (Hamilton) matrix of w + xi + yj + zk is the transpose of the reference-convention
    // matrix of the quaternion stored as [x, y, z, w] (see geometry::quaternion).
    transpose3(&quat_to_rot(&[x, y, z, w]))
}

/// `F·r·F`: the pose of the mirrored volume that gives the same image (see the module doc).
pub fn flip(r: &Mat3) -> Mat3 {
    matmul3(&FLIP, &matmul3(r, &FLIP))
}

/// Squared Frobenius distance `Σ_jk (a − b)_jk²`.
pub fn frob_sq(a: &Mat3, b: &Mat3) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn det3(r: &Mat3) -> f64 {
    r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6])
        + r[2] * (r[3] * r[7] - r[4] * r[6])
}

/// Up to `k` indices spread evenly over `0..n` (all of them when `n ≤ k`).
fn spread(n: usize, k: usize) -> Vec<usize> {
    if n <= k {
        (0..n).collect()
    } else {
        (0..k).map(|i| i * n / k).collect()
    }
}

/// numpy's median (mean of the two middle values for an even count); NaN for no values.
fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    let mid = s.len() / 2;
    let (lo, m, _) = s.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len() % 2 == 1 {
        m
    } else {
        let below = lo.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (below + m)
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The image shift caused by a volume shift `u` for pose `r`: the first two entries of `r·u`.
fn in_plane_shift(r: &Mat3, u: &[f64; 3]) -> [f64; 2] {
    [
        r[0] * u[0] + r[1] * u[1] + r[2] * u[2],
        r[3] * u[0] + r[4] * u[1] + r[5] * u[2],
    ]
}

/// Least-squares `u = argmin Σ_{i ∈ inliers} ‖delta_i − (r_i·u)_xy‖²` via the 3×3 normal equations
/// `(Σ Bᵢᵀ Bᵢ) u = Σ Bᵢᵀ delta_i`, `Bᵢ` the first two rows of `r_i`.
fn fit_global_shift(rots: &[Mat3], delta: &[[f64; 2]], inliers: &[usize]) -> Result<[f64; 3]> {
    let mut ata = [0.0; 9];
    let mut atb = [0.0; 3];
    for &i in inliers {
        let r = &rots[i];
        for row in 0..2 {
            let b = &r[3 * row..3 * row + 3];
            for p in 0..3 {
                atb[p] += b[p] * delta[i][row];
                for q in 0..3 {
                    ata[3 * p + q] += b[p] * b[q];
                }
            }
        }
    }
    let det = det3(&ata);
    // Σ BᵢᵀBᵢ = Σ (I − nᵢnᵢᵀ) with nᵢ the viewing direction: singular when all views share one axis.
    let scale = (ata[0] + ata[4] + ata[8]) / 3.0;
    let solvable = det.abs() > 1e-9 * scale.powi(3);
    if !solvable {
        return Err(Error::invalid(format!(
            "pose-error: cannot fit a global 3D shift from {} inlier images (their viewing directions do not span 3D)",
            inliers.len()
        )));
    }
    // Cramer's rule.
    let col = |c: usize| -> f64 {
        let mut m = ata;
        for r in 0..3 {
            m[3 * r + c] = atb[r];
        }
        det3(&m) / det
    };
    Ok([col(0), col(1), col(2)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::quaternion::random_rotations;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn nearest_rotation_recovers_rotations_and_projects() {
        let mut rng = StdRng::seed_from_u64(1);
        for r in random_rotations(20, &mut rng) {
            // A rotation is its own nearest rotation, also when scaled.
            let got = nearest_rotation(&r.map(|x| 3.0 * x));
            assert!(frob_sq(&got, &r) < 1e-20, "{got:?} vs {r:?}");
            // Perturbed: the projection is orthonormal, proper and no farther than r.
            let m: Mat3 = std::array::from_fn(|k| r[k] + 0.1 * ((k as f64) * 0.7).sin());
            let p = nearest_rotation(&m);
            let ppt = matmul3(&p, &transpose3(&p));
            for (k, x) in ppt.iter().enumerate() {
                let eye = if k % 4 == 0 { 1.0 } else { 0.0 };
                assert!((x - eye).abs() < 1e-12);
            }
            assert!((det3(&p) - 1.0).abs() < 1e-12);
            assert!(frob_sq(&p, &m) <= frob_sq(&r, &m) + 1e-12);
        }
        // An improper input still gives a proper rotation.
        let p = nearest_rotation(&FLIP);
        assert!((det3(&p) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn frob_is_four_one_minus_cos() {
        let mut rng = StdRng::seed_from_u64(2);
        let r = random_rotations(30, &mut rng);
        for w in r.windows(2) {
            let th = rotation_angle(&w[0], &w[1]);
            assert!((frob_sq(&w[0], &w[1]) - 4.0 * (1.0 - th.cos())).abs() < 1e-12);
        }
    }

    #[test]
    fn median_matches_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn spread_covers_range() {
        assert_eq!(spread(3, 100), vec![0, 1, 2]);
        let s = spread(1000, 100);
        assert_eq!((s.len(), s[0], s[99]), (100, 0, 990));
    }

    #[test]
    fn rejects_non_rotations_and_mismatched_sets() {
        let eye = [1f32, 0., 0., 0., 1., 0., 0., 0., 1.];
        let good = Poses {
            rots: vec![eye; 2],
            trans: None,
        };
        let bad = Poses {
            rots: vec![eye, [1., 0., 0., 0., 1., 0., 0., 0., -1.]],
            trans: None,
        };
        let e = pose_error(&bad, &good, 64).unwrap_err().to_string();
        assert!(e.contains("predicted poses: pose 1"), "{e}");
        let mut nan = good.clone();
        nan.rots[0][4] = f32::NAN;
        let e = pose_error(&good, &nan, 64).unwrap_err().to_string();
        assert!(e.contains("true poses: pose 0"), "{e}");
        let short = good.select(&[0]);
        let e = pose_error(&short, &good, 64).unwrap_err().to_string();
        assert!(e.contains("expected 2") && e.contains("got 1"), "{e}");
    }

    /// Poses exact up to a rotation per state that turns with the state (4° per state about
    /// one axis, plus a shift per state): one global alignment leaves degrees of error, one
    /// alignment per state none, and the states' alignments differ by the drift.
    #[test]
    fn per_state_alignment_removes_a_drifting_frame() {
        let mut rng = StdRng::seed_from_u64(5);
        let (n, k) = (600, 6);
        let rt = random_rotations(n, &mut rng);
        let axis = [0.6f64, -0.48, 0.64]; // unit
        let q = |s: usize| {
            let h = (4.0 * s as f64).to_radians() / 2.0;
            quat_to_rot(&[
                h.cos(),
                h.sin() * axis[0],
                h.sin() * axis[1],
                h.sin() * axis[2],
            ])
        };
        let labels: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
        let to32 = |r: &Mat3| r.map(|x| x as f32);
        let truth = Poses {
            rots: rt.iter().map(to32).collect(),
            trans: Some(vec![[0.0, 0.0]; n]),
        };
        // R_true = R_pred·Q(s), and a 3D shift u(s) of state s's volume seen in the images.
        let pred = Poses {
            rots: (0..n)
                .map(|i| to32(&matmul3(&rt[i], &transpose3(&q(i % k)))))
                .collect(),
            trans: Some(
                (0..n)
                    .map(|i| {
                        let u = [0.5 * (i % k) as f64, -0.3, 0.2 * (i % k) as f64];
                        let p = in_plane_shift(&rt[i], &u);
                        [(p[0] / 64.0) as f32, (p[1] / 64.0) as f32]
                    })
                    .collect(),
            ),
        };
        let opts = PoseErrorOptions {
            d: 64,
            correct_global_trans: true,
        };
        let global = pose_error_with(&pred, &truth, &opts).unwrap();
        assert!(global.median_rot_deg > 3.0, "{}", global.median_rot_deg);
        let per = pose_error_per_state(&pred, &truth, &labels, &opts, &global, 3).unwrap();
        assert_eq!(per.states.len(), k);
        assert!(per.median_rot_deg < 1e-2, "{}", per.median_rot_deg);
        assert!(
            per.median_trans_px.unwrap() < 1e-3,
            "{:?}",
            per.median_trans_px
        );
        let a = |s: usize| -> Mat3 { per.states[s].report.align.concat().try_into().unwrap() };
        for s in 1..k {
            let drift = rotation_angle(&a(0), &a(s)).to_degrees();
            assert!((drift - 4.0 * s as f64).abs() < 1e-2, "state {s}: {drift}°");
            assert!(per.states[s].frame_deg.is_some());
        }
        // A state too small to align alone is skipped and listed; labels must match the poses.
        let mut few = labels.clone();
        few[0] = 99;
        few[1] = 99;
        let per = pose_error_per_state(&pred, &truth, &few, &opts, &global, 3).unwrap();
        assert_eq!(per.skipped, vec![(99, 2)]);
        let e = pose_error_per_state(&pred, &truth, &labels[1..], &opts, &global, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("state labels") && e.contains("599"), "{e}");
    }
}
