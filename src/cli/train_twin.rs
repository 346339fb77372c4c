//! `train-twin`: train cryoTWIN (Yamazaki et al., MICCAI 2023): an isometric autoencoder whose latent
//! space is trained jointly with a GMM prior, so that latent distances follow volume differences and latent
//! density follows conformational density (then `pathway` draws paths between states automatically).
//! Takes train-vae's data flags; writes `z.N.pkl` ((n, zdim), one pickle), `gamma.N.pkl` (responsibilities),
//! `gmm.N.npz` (pi, mu, cov and the running statistics), `weights.N.safetensors`, `config.json`,
//! `loss.txt` (distortion, rate, total per epoch) and `loss.png`.
//!
//! Loss (Eq. 3): Σ over the masked lattice of (X − X̃)²·√(s² + t²) with the decoder at z + ε,
//! ε ~ U[−T/2, T/2]^zdim, plus β·(−log Q(z)), Q the prior's mass in the box of side T around z (exact for
//! the default diagonal covariances; Monte Carlo over --rate-mc box samples with --gmm-cov full). RAdam.
//!
//! Example: `cryofield train-twin particles.mrcs --poses pose.pkl --ctf ctf.pkl --zdim 8 -o out/ -n 20`

use crate::backend::cuda::{select, Selected};
use crate::cli::train_nn::CommonArgs;
use crate::twin::train::TwinParams;

/// Train a cryoTWIN model.
#[derive(Debug, clap::Args)]
#[command(
    about = "Train cryoTWIN: an isometric autoencoder with a trainable GMM prior (known poses)"
)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Dimension of the latent variable d [default: 8; with --load, the checkpoint's]
    #[arg(long)]
    pub zdim: Option<usize>,
    /// Number of GMM components C [default: 100]
    #[arg(long = "n-comp")]
    pub n_comp: Option<usize>,
    /// Width T of the uniform latent noise and of the rate's box [default: 3]
    #[arg(long = "noise-width")]
    pub noise_width: Option<f64>,
    /// Rate weight β [default: 0.125]
    #[arg(long)]
    pub beta: Option<f64>,
    /// Momentum η of the GMM's running statistics [default: 0.01]
    #[arg(long = "gmm-momentum")]
    pub gmm_momentum: Option<f64>,
    /// Variance floor of the GMM components [default: 0.001]
    #[arg(long = "gmm-eps")]
    pub gmm_eps: Option<f64>,
    /// GMM covariances: diag (exact rate) or full (Monte Carlo rate, --rate-mc box samples per step)
    /// [default: diag]
    #[arg(long = "gmm-cov", value_parser = ["diag", "full"])]
    pub gmm_cov: Option<String>,
    /// Box samples of the full-covariance rate's Monte Carlo estimate [default: 16]
    #[arg(long = "rate-mc")]
    pub rate_mc: Option<usize>,
    #[command(flatten)]
    pub net: crate::cli::train_nn::NetArgs,
    /// Encoder architecture [default: resid]
    #[arg(long = "encode-mode", value_parser = ["resid", "mlp"])]
    pub encode_mode: Option<String>,
}

/// Run `train-twin`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut cfg = a.common.config()?;
    let def = TwinParams::default();
    cfg.zdim = Some(a.zdim.unwrap_or(8));
    cfg.twin = Some(TwinParams {
        n_comp: a.n_comp.unwrap_or(def.n_comp),
        noise_width: a.noise_width.unwrap_or(def.noise_width),
        beta: a.beta.unwrap_or(def.beta),
        gmm_momentum: a.gmm_momentum.unwrap_or(def.gmm_momentum),
        gmm_eps: a.gmm_eps.unwrap_or(def.gmm_eps),
        gmm_cov: a.gmm_cov.clone().unwrap_or(def.gmm_cov),
        rate_mc: a.rate_mc.unwrap_or(def.rate_mc),
    });
    cfg.encode_mode = a.encode_mode.clone().unwrap_or_else(|| "resid".into());
    let mut given = a.common.given();
    a.net.apply(&mut cfg, &mut given);
    for (key, g) in [
        ("zdim", a.zdim.is_some()),
        ("n_comp", a.n_comp.is_some()),
        ("noise_width", a.noise_width.is_some()),
        ("twin_beta", a.beta.is_some()),
        ("gmm_momentum", a.gmm_momentum.is_some()),
        ("gmm_eps", a.gmm_eps.is_some()),
        ("gmm_cov", a.gmm_cov.is_some()),
        ("rate_mc", a.rate_mc.is_some()),
        ("encode_mode", a.encode_mode.is_some()),
    ] {
        if g {
            given.push(key);
        }
    }
    let recorded = crate::train::adopt_settings(&mut cfg, &given)?;
    if let (Some(load), false) = (&cfg.load, recorded) {
        if a.zdim.is_none() || a.n_comp.is_none() {
            anyhow::bail!(
                "{}: the checkpoint does not record its settings; give --zdim and --n-comp",
                load.display()
            );
        }
    }
    let sel = select(a.common.device)?;
    eprintln!("{}", sel.notice);
    let history = match sel.device {
        Selected::Cpu => crate::twin::train::train_twin_cpu(&cfg, true)?.history,
        #[cfg(feature = "cuda")]
        Selected::Cuda(n) => {
            crate::twin::train::train_twin(crate::backend::cuda::CudaBackend::new(n)?, &cfg, true)?
                .history
        }
        #[cfg(not(feature = "cuda"))]
        Selected::Cuda(_) => anyhow::bail!("this build has no CUDA backend (feature `cuda`)"),
    };
    if let Some(last) = history.last() {
        eprintln!(
            "trained {} epochs; final distortion {:.4}, rate {:.4}, total {:.4}; outputs in {}",
            cfg.num_epochs,
            last.distortion,
            last.rate,
            last.total,
            cfg.outdir.display()
        );
    }
    Ok(())
}
