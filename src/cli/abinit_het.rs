//! `abinit-het`: heterogeneous ab initio reconstruction — cryoDRGN's VAE trained with poses found
//! by branch-and-bound search, each image searched with its encoded (sampled) z (the reference's
//! `abinit_het_old`). Writes `pose.N.pkl`, `z.N.pkl`, `weights.N.safetensors` and `config.json`.
//!
//! Example: `cryofield abinit-het particles.mrcs --ctf ctf.pkl --zdim 8 -o out/ -n 30`

use crate::cli::abinit_homo::{adopt_settings, summary, AbinitArgs};
use crate::pose::abinit::abinit;

/// Heterogeneous ab initio reconstruction.
#[derive(Debug, clap::Args)]
#[command(about = "Heterogeneous ab initio reconstruction (VAE) with branch-and-bound pose search")]
pub struct Args {
    #[command(flatten)]
    pub common: AbinitArgs,
    /// Dimension of the latent variable
    #[arg(long)]
    pub zdim: usize,
    /// Epochs over which the search's band limit ramps from --l-start to --l-end (0: no ramp)
    #[arg(long = "l-ramp-epochs", default_value_t = 0)]
    pub l_ramp_epochs: usize,
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
    #[arg(long = "enc-dim", default_value_t = 256)]
    pub enc_dim: usize,
    /// Encoder architecture (`tilt` goes with --tilt)
    #[arg(long = "encode-mode", default_value = "resid", value_parser = ["resid", "mlp", "tilt"])]
    pub encode_mode: String,
    /// Encoder mask radius in pixels (default D/2; −1: no mask)
    #[arg(long = "enc-mask", allow_hyphen_values = true)]
    pub enc_mask: Option<i64>,
    /// Hidden layers of the decoder
    #[arg(long = "dec-layers", default_value_t = 3)]
    pub dec_layers: usize,
    /// Hidden width of the decoder
    #[arg(long = "dec-dim", default_value_t = 256)]
    pub dec_dim: usize,
    /// With --tilt: use the tilt pair in the encoder only, not in the pose search
    #[arg(long = "enc-only")]
    pub enc_only: bool,
}

/// Run `abinit-het`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut cfg = a.common.config(a.l_ramp_epochs)?;
    let t = &mut cfg.train;
    t.zdim = Some(a.zdim);
    t.beta = a.beta;
    t.beta_control = a.beta_control;
    t.enc_layers = a.enc_layers;
    t.enc_dim = a.enc_dim;
    t.encode_mode = if t.tilt.is_some() {
        "tilt".into()
    } else {
        a.encode_mode
    };
    t.enc_mask = a.enc_mask;
    t.dec_layers = a.dec_layers;
    t.dec_dim = a.dec_dim;
    cfg.enc_only = a.enc_only;
    adopt_settings(&mut cfg, &a.common)?;
    let r = abinit(&cfg, true)?;
    summary(&r, &cfg);
    Ok(())
}
