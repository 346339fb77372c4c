//! cryoTWIN (Yamazaki et al., MICCAI 2023; `../shared/specs/cryotwin.md`): an isometric autoencoder with a
//! trainable GMM prior and automatic conformational pathways. Issue 23; built so far: the rate term, the pathway (Algorithm 1) and the trainable prior's update with its backward pass, the KLIEP and isometry metrics, and training; their commands are `train-twin`, `pathway`, `twin-analyze`, `kl-kliep` and `isometry` (`src/cli/`).
//!
//! | module | what it holds |
//! |---|---|
//! | [`gmm`] | full-covariance GMM: density, sampling, ridgeline points, `gmm.npz` |
//! | [`metrics`] | KL between latents and a prior by KLIEP density-ratio estimation; the isometry correlation of a decoder |
//! | [`pathway`] | Algorithm 1 (greedy high-density, short-step path between two components) |
//! | [`prior`] | the trainable diagonal GMM prior: running sufficient statistics from (z, γ), the mixture, and the backward pass to z and γ |
//! | [`rate`] | `−log Q(z)`: the GMM's probability mass in the box of side T around z (diagonal covariances, exact, log space) and its gradients |
//! | [`train`] | `train-twin`: the training loop (Eq. 3), the rate's gradient into the tape, checkpoints with the prior's state |

pub mod full;
pub mod gmm;
pub mod metrics;
pub mod pathway;
pub mod prior;
pub mod rate;
pub mod train;

/// `‖a − b‖²`.
pub(crate) fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
