//! `train-vae`: train cryoDRGN's VAE (heterogeneous reconstruction) on particles with known
//! poses (the reference's `train_vae`). Writes `z.N.pkl` (z_mu then z_logvar, two pickles),
//! `weights.N.safetensors` and `config.json` to the output folder.
//!
//! Example: `cryofield train-vae particles.mrcs --poses pose.pkl --ctf ctf.pkl --zdim 8 -o out/ -n 25`

use crate::cli::train_nn::CommonArgs;
use std::path::PathBuf;

/// Train a heterogeneous VAE.
#[derive(Debug, clap::Args)]
#[command(about = "Train a VAE for heterogeneous reconstruction with known poses")]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Dimension of the latent variable
    #[arg(long)]
    pub zdim: usize,
    /// KL weight (default 1/zdim)
    #[arg(long)]
    pub beta: Option<f64>,
    /// KL-controlled loss γ·(β − KL)² with this γ
    #[arg(long = "beta-control")]
    pub beta_control: Option<f64>,
    /// Hidden layers of the encoder
    #[arg(long = "enc-layers", default_value_t = 3)]
    pub enc_layers: usize,
    /// Hidden width of the encoder
    #[arg(long = "enc-dim", default_value_t = 1024)]
    pub enc_dim: usize,
    /// Encoder architecture (`tilt` needs --tilt)
    #[arg(long = "encode-mode", default_value = "resid", value_parser = ["resid", "mlp", "tilt"])]
    pub encode_mode: String,
    /// Encoder mask radius in pixels (default D/2; −1: no mask)
    #[arg(long = "enc-mask", allow_hyphen_values = true)]
    pub enc_mask: Option<i64>,
    /// Hidden layers of the decoder
    #[arg(long = "dec-layers", default_value_t = 3)]
    pub dec_layers: usize,
    /// Hidden width of the decoder
    #[arg(long = "dec-dim", default_value_t = 1024)]
    pub dec_dim: usize,
    /// Tilt-pair images (same order as the particles); implies --encode-mode tilt
    #[arg(long)]
    pub tilt: Option<PathBuf>,
    /// Tilt angle about x between the pair (degrees)
    #[arg(long = "tilt-deg", default_value_t = 45.0)]
    pub tilt_deg: f64,
}

/// Run `train-vae`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut cfg = a.common.config()?;
    cfg.zdim = Some(a.zdim);
    cfg.beta = a.beta;
    cfg.beta_control = a.beta_control;
    cfg.enc_layers = a.enc_layers;
    cfg.enc_dim = a.enc_dim;
    cfg.encode_mode = if a.tilt.is_some() {
        "tilt".into()
    } else {
        a.encode_mode
    };
    cfg.enc_mask = a.enc_mask;
    cfg.dec_layers = a.dec_layers;
    cfg.dec_dim = a.dec_dim;
    cfg.tilt = a.tilt;
    cfg.tilt_deg = a.tilt_deg;
    let history = super::train_nn::train_on(a.common.device, &cfg)?;
    if let Some(last) = history.last() {
        eprintln!(
            "trained {} epochs; final loss {:.6} (gen {:.6}, KLD {:.4}); outputs in {}",
            cfg.num_epochs,
            last.loss,
            last.gen,
            last.kld,
            cfg.outdir.display()
        );
    }
    Ok(())
}
