//! `eval-images`: encode a particle stack with a trained VAE or twin model (the reference's
//! `eval_images`). Images are preprocessed as in training (window, inversion, the training normalization).
//! VAE: writes z_mu then z_logvar (two pickles of (N, zdim) f32, like `z.N.pkl`) to `-o`, and with
//! `--out-losses` a pickle of (N, 3) f64 per-image [loss, reconstruction MSE, KL] at z = z_mu.
//! Twin (`train-twin`): writes z ((N, zdim) f32, one pickle, like its `z.N.pkl`), `--out-gamma` the GMM
//! responsibilities (N, C), and `--out-losses` [distortion + β·rate, ramp-weighted distortion, rate] per
//! image without latent noise; the prior is read from the `gmm.N.npz` beside the weights.
//!
//! Example: `cryofield eval-images particles.mrcs out/weights.19.safetensors -c out/config.json --poses pose.pkl --ctf ctf.pkl -o z_eval.pkl`

use crate::io::array::{ArrayData, NdArray};
use crate::io::pkl::{write_pkl, write_pkls, PyValue};
use crate::model::load::LoadedModel;
use std::path::PathBuf;

/// Encode images with a trained model.
#[derive(Debug, clap::Args)]
#[command(about = "Encode particle images with a trained VAE: latents and per-image losses")]
pub struct Args {
    /// Particles (.mrcs, .star, .cs, .txt)
    pub particles: PathBuf,
    /// Model weights (weights.N.safetensors)
    pub weights: PathBuf,
    /// The run's config.json
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Poses (.pkl)
    #[arg(long)]
    pub poses: PathBuf,
    /// CTF parameters (.pkl)
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Output z pickle (z_mu, z_logvar)
    #[arg(short = 'o', long = "out-z")]
    pub o: PathBuf,
    /// Output per-image losses (.pkl)
    #[arg(long = "out-losses")]
    pub out_losses: Option<PathBuf>,
    /// Twin models: output GMM responsibilities (N, C) (.pkl)
    #[arg(long = "out-gamma")]
    pub out_gamma: Option<PathBuf>,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Minibatch size
    #[arg(short = 'b', long = "batch-size", default_value_t = 64)]
    pub batch_size: usize,
}

/// Run `eval-images`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let model = LoadedModel::load(&a.weights, &a.config)?;
    let e = model.encode(
        &a.particles,
        &a.poses,
        a.ctf.as_deref(),
        a.datadir.as_deref(),
        a.batch_size,
    )?;
    let n = e.losses.len();
    let zd = model.zdim;
    let arr = |v: Vec<f32>| -> anyhow::Result<PyValue> {
        Ok(PyValue::Array(NdArray::new(
            vec![n, zd],
            ArrayData::F32(v),
        )?))
    };
    let mean = |k: usize| e.losses.iter().map(|l| l[k]).sum::<f64>() / n as f64;
    let twin = model.record.config.twin.is_some();
    if twin {
        write_pkls(&a.o, &[arr(e.mu)?])?;
        eprintln!(
            "# =====> Average distortion = {:.6}, rate = {:.6}, total loss = {:.6}; z written to {}",
            mean(1),
            mean(2),
            mean(0),
            a.o.display()
        );
    } else {
        anyhow::ensure!(
            a.out_gamma.is_none(),
            "--out-gamma: {} is not a twin model (no GMM responsibilities)",
            a.config.display()
        );
        write_pkls(&a.o, &[arr(e.mu)?, arr(e.logvar)?])?;
        eprintln!(
            "# =====> Average gen loss = {:.6}, KLD = {:.6}, total loss = {:.6}; z written to {}",
            mean(1),
            mean(2),
            mean(0),
            a.o.display()
        );
    }
    if let (Some(p), true) = (&a.out_gamma, twin) {
        let c = e.gamma.len() / n.max(1);
        write_pkl(
            p,
            &PyValue::Array(NdArray::new(vec![n, c], ArrayData::F32(e.gamma))?),
        )?;
    }
    if let Some(p) = &a.out_losses {
        let flat: Vec<f64> = e.losses.iter().flatten().copied().collect();
        write_pkl(
            p,
            &PyValue::Array(NdArray::new(vec![n, 3], ArrayData::F64(flat))?),
        )?;
    }
    Ok(())
}
