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
    /// Dimension of the latent variable (required, except with --load: the checkpoint's)
    #[arg(long)]
    pub zdim: Option<usize>,
    /// KL weight (default 1/zdim)
    #[arg(long)]
    pub beta: Option<f64>,
    /// KL-controlled loss γ·(β − KL)² with this γ
    #[arg(long = "beta-control")]
    pub beta_control: Option<f64>,
    #[command(flatten)]
    pub net: crate::cli::train_nn::NetArgs,
    /// Encoder architecture. `conv`: cryoDRGN's convolutional encoder on the 64×64 real-space
    /// image (--enc-dim channels, CPU only, not with --ctf). `tilt` is the tilt-pair encoder and
    /// needs --tilt (cryoDRGN 4.3's cryo-ET tilt-series encoder is not implemented) [default: resid]
    #[arg(long = "encode-mode", value_parser = ["resid", "mlp", "conv", "tilt"])]
    pub encode_mode: Option<String>,
    /// Tilt-pair images (same order as the particles); implies --encode-mode tilt
    #[arg(long)]
    pub tilt: Option<PathBuf>,
    #[command(flatten)]
    pub tilt_series: TiltSeriesArgs,
    /// Tilt angle about x between the pair (degrees) [default: 45]
    #[arg(long = "tilt-deg")]
    pub tilt_deg: Option<f64>,
    /// Where the decoder's rotations come from: `known` (the --poses file) or `encoder` (a pose head on
    /// the encoder; --poses then gives only the shifts) [default: known]
    #[arg(long = "pose-source", value_parser = ["known", "encoder"])]
    pub pose_source: Option<String>,
    /// The pose head with --pose-source encoder: `inplane` (an angle about the viewing axis) or `so3`
    /// (6-D Gram–Schmidt) [default: inplane]
    #[arg(long = "pose-head", value_parser = ["inplane", "so3"])]
    pub pose_head: Option<String>,
    /// PoseVAE's intervention loss weight (Klindt et al. 2024, Eq. 2: poses permuted within the batch,
    /// decoded and re-encoded; with --pose-source encoder the pose head's target too, with known poses
    /// the z term only). In the paper's units: like β's KL it is divided by the P pixels of cryoDRGN's
    /// per-pixel loss, so w = 1 is the paper's PoseVAE [default: 0]
    #[arg(long = "intervention-weight")]
    pub intervention_weight: Option<f64>,
    /// SlowVAE (Klindt et al. 2020/2024): pairs of temporally adjacent images (a pairs.pkl of (P, 2)
    /// particle indices, as `simulate --pairs` writes it); adds the Laplace transition prior. Needs an
    /// even --batch-size; trains on the paired images
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// SlowVAE: weight γ of the transition term [default: 10]
    #[arg(long = "slow-gamma")]
    pub slow_gamma: Option<f64>,
    /// SlowVAE: rate λ′ of the Laplace prior on latent transitions [default: 10]
    #[arg(long = "slow-rate")]
    pub slow_rate: Option<f64>,
    /// SlowVAE: apply the transition term both ways (t+1 around t and t around t+1)
    #[arg(long = "slow-symmetric")]
    pub slow_symmetric: bool,
}

/// cryoDRGN 4.3's cryo-ET tilt-series flags: accepted so that its command lines parse, and refused
/// (cryofield does not implement tilt-series training).
#[derive(Debug, clap::Args)]
pub struct TiltSeriesArgs {
    /// cryoDRGN 4.3 cryo-ET: tilts per particle to encode (not implemented)
    #[arg(long)]
    pub ntilts: Option<usize>,
    /// cryoDRGN 4.3 cryo-ET: randomize the tilt order (not implemented)
    #[arg(long = "random-tilts")]
    pub random_tilts: bool,
    /// cryoDRGN 4.3 cryo-ET: tilt embedding width (not implemented)
    #[arg(long = "t-emb-dim")]
    pub t_emb_dim: Option<usize>,
    /// cryoDRGN 4.3 cryo-ET: hidden layers of the tilt encoder (not implemented)
    #[arg(long)]
    pub tlayers: Option<usize>,
    /// cryoDRGN 4.3 cryo-ET: hidden width of the tilt encoder (not implemented)
    #[arg(long)]
    pub tdim: Option<usize>,
    /// cryoDRGN 4.3 cryo-ET: dose per tilt (e⁻/Å² per tilt) (not implemented)
    #[arg(short = 'd', long = "dose-per-tilt")]
    pub dose_per_tilt: Option<f64>,
    /// cryoDRGN 4.3 cryo-ET: tilt angle increment (degrees) (not implemented)
    #[arg(short = 'a', long = "angle-per-tilt")]
    pub angle_per_tilt: Option<f64>,
}

impl TiltSeriesArgs {
    /// The first tilt-series flag given, by name.
    fn given(&self) -> Option<&'static str> {
        [
            ("--ntilts", self.ntilts.is_some()),
            ("--random-tilts", self.random_tilts),
            ("--t-emb-dim", self.t_emb_dim.is_some()),
            ("--tlayers", self.tlayers.is_some()),
            ("--tdim", self.tdim.is_some()),
            ("--dose-per-tilt", self.dose_per_tilt.is_some()),
            ("--angle-per-tilt", self.angle_per_tilt.is_some()),
        ]
        .into_iter()
        .find_map(|(name, g)| g.then_some(name))
    }
}

/// Run `train-vae`.
pub fn run(a: Args) -> anyhow::Result<()> {
    // cryoDRGN 4.3's `--encode-mode tilt` is cryo-ET (its tilt-series flags, no --tilt); ours is the
    // tilt-pair encoder of --tilt
    let series = match (a.tilt_series.given(), a.encode_mode.as_deref(), &a.tilt) {
        (Some(flag), _, _) => Some(flag),
        (None, Some("tilt"), None) => Some("--encode-mode tilt"),
        _ => None,
    };
    if let Some(flag) = series {
        anyhow::bail!(
            "{flag}: cryo-ET tilt-series training (cryoDRGN 4.3's --encode-mode tilt, --ntilts, \
             --dose-per-tilt, --angle-per-tilt) is not implemented in cryofield; `--tilt PARTICLES` \
             is the tilt-pair encoder"
        );
    }
    let mut cfg = a.common.config()?;
    if a.zdim.is_none() && cfg.load.is_none() {
        anyhow::bail!("train-vae needs --zdim (or --load, to resume a run with its zdim)");
    }
    // with --load and no --zdim, a placeholder that the checkpoint's zdim replaces
    cfg.zdim = Some(a.zdim.unwrap_or(1));
    cfg.beta = a.beta;
    cfg.beta_control = a.beta_control;
    cfg.encode_mode = match (&a.tilt, a.encode_mode.clone()) {
        (Some(_), _) => "tilt".into(),
        (None, m) => m.unwrap_or_else(|| "resid".into()),
    };
    cfg.tilt_deg = a.tilt_deg.unwrap_or(45.0);
    let mut given = a.common.given();
    a.net.apply(&mut cfg, &mut given);
    for (key, g) in [
        ("zdim", a.zdim.is_some()),
        ("beta", a.beta.is_some()),
        ("beta_control", a.beta_control.is_some()),
        ("encode_mode", a.encode_mode.is_some() || a.tilt.is_some()),
        ("tilt_deg", a.tilt_deg.is_some()),
    ] {
        if g {
            given.push(key);
        }
    }
    cfg.tilt = a.tilt;
    let learned = a.pose_source.as_deref() == Some("encoder");
    if !learned && a.pose_head.is_some() {
        anyhow::bail!("--pose-head needs --pose-source encoder");
    }
    if !learned {
        // the known-pose variant of the intervention loss (z only)
        cfg.known_intervention = a.intervention_weight;
        given.extend(a.intervention_weight.map(|_| "known_intervention_weight"));
    }
    if learned {
        cfg.learned_pose = Some(crate::disentangle::intervention::LearnedPose {
            kind: a.pose_head.clone().unwrap_or_else(|| "inplane".into()),
            intervention_weight: a.intervention_weight.unwrap_or(0.0),
        });
        given.extend(a.pose_head.as_ref().map(|_| "pose_head"));
        given.extend(a.intervention_weight.map(|_| "intervention_weight"));
    }
    if a.pairs.is_none() && (a.slow_gamma.is_some() || a.slow_rate.is_some() || a.slow_symmetric) {
        anyhow::bail!("--slow-gamma, --slow-rate and --slow-symmetric need --pairs");
    }
    if let Some(pairs) = &a.pairs {
        cfg.slow = Some(crate::disentangle::slow::SlowParams {
            pairs: pairs.clone(),
            gamma: a.slow_gamma.unwrap_or(10.0),
            rate: a.slow_rate.unwrap_or(10.0),
            symmetric: a.slow_symmetric,
        });
        given.extend(a.slow_gamma.map(|_| "slow_gamma"));
        given.extend(a.slow_rate.map(|_| "slow_rate"));
        if a.slow_symmetric {
            given.push("slow_symmetric");
        }
    }
    let recorded = crate::train::adopt_settings(&mut cfg, &given)?;
    if let (None, Some(load), false) = (a.zdim, &cfg.load, recorded) {
        anyhow::bail!(
            "{}: the checkpoint does not record its zdim (written by an older cryofield); give --zdim",
            load.display()
        );
    }
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
        // as the reference: `analyze OUTDIR N` on the final epoch unless --no-analysis (into
        // analyze.N; −1, the unnumbered final outputs, when --checkpoint skipped epoch N)
        if !a.common.reference.no_analysis {
            let n = crate::analysis::latent::load_z(cfg.outdir.join("z.pkl"))?.n;
            let zdim = cfg.zdim.unwrap_or(1);
            let last = cfg.num_epochs;
            let epoch = if cfg.outdir.join(format!("z.{last}.pkl")).exists() {
                last as i64
            } else {
                -1
            };
            super::abinit_ai::analyze_last(&cfg.outdir, epoch, n, zdim)?;
        }
    }
    Ok(())
}
