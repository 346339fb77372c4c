//! cryoTWIN (Yamazaki et al., MICCAI 2023; `../shared/specs/cryotwin.md`): an isometric autoencoder with a
//! trainable GMM prior and automatic conformational pathways. Issue 23; built so far: the rate term.
//!
//! | module | what it holds |
//! |---|---|
//! | [`rate`] | `−log Q(z)`: the GMM's probability mass in the box of side T around z (diagonal covariances, exact, log space) and its gradients |

pub mod rate;
