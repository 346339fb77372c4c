//! cryoTWIN (Yamazaki et al., MICCAI 2023; `../shared/specs/cryotwin.md`): an isometric autoencoder with a
//! trainable GMM prior and automatic conformational pathways. Issue 23; built so far: the rate term and the pathway (Algorithm 1), as library functions.
//!
//! | module | what it holds |
//! |---|---|
//! | [`pathway`] | full-covariance GMM, its ridgeline points and Algorithm 1 (greedy high-density, short-step path between two components) |
//! | [`rate`] | `−log Q(z)`: the GMM's probability mass in the box of side T around z (diagonal covariances, exact, log space) and its gradients |

pub mod pathway;
pub mod rate;
