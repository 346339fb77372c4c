//! Model mode of `disentangle scores` (spec `disentanglement.md` §4: "images generated from the phantom
//! on the fly"): a [`LabelledGenerator`] whose factors are a phantom's grid factors and whose
//! representation is a trained model's posterior mean μ_z of freshly simulated images.
//!
//! Each draw picks every factor level uniformly (the fixed one held), then draws the nuisances as
//! `simulate` draws them with the same [`DrawSpec`] law: the rotation (`--pose-dist`), the shift
//! (`--t-extent`) and the CTF (`--defocus`), and adds white noise of the σ that `simulate --snr` would
//! use for that law ([`sigma_for`]). This is disentanglement_lib's setting (a ground-truth generator
//! sampled at factor values) with pose, shift and CTF as nuisances that no score sees.

use crate::disentangle::probe::{Probe, World};
use crate::disentangle::report::LabelledGenerator;
use crate::disentangle::scores::Generator;
use crate::simulate::dataset::{draw_params_with, variance, CtfSpec, DrawSpec, PoseDist};
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Images rendered and encoded per pass (bounds memory at any sample count).
const CHUNK: usize = 1024;

/// How images are drawn around the factors: the nuisance laws of `simulate`.
#[derive(Debug, Clone)]
pub struct ImageLaw {
    /// rotations
    pub pose: PoseDist,
    /// translations uniform in [−T, T] pixels
    pub t_extent_px: f32,
    /// CTF parameters
    pub ctf: CtfSpec,
}

/// The noise σ that `simulate --snr snr` gives under `law`: the variance of 1000 clean images (states
/// uniform, nuisances from `law`, drawn from `seed`) over `snr`, as `simulate` measures it on its first
/// 1000 images.
pub fn sigma_for(world: &World, law: &ImageLaw, snr: f64, seed: u64) -> Result<f64> {
    if !(snr > 0.0 && snr.is_finite()) {
        return Err(Error::invalid(format!("SNR must be positive, got {snr}")));
    }
    let spec = DrawSpec {
        d: world.d,
        apix: world.apix,
        t_extent_px: law.t_extent_px,
        ctf: &law.ctf,
        pose: law.pose,
        seed,
    };
    let (params, _) = draw_params_with(1000, world.n_states(), &spec);
    let imgs = world.render(&params)?;
    Ok((variance(&imgs) / snr).sqrt())
}

/// Factors → simulated images → μ_z of a model (module doc).
pub struct WorldGenerator<'a> {
    world: &'a World,
    probe: &'a Probe,
    law: ImageLaw,
    sigma: f64,
    num_values: Vec<usize>,
    rng: StdRng,
    /// images drawn so far: each chunk's nuisance and noise seeds derive from it
    drawn: u64,
    seed: u64,
}

impl<'a> WorldGenerator<'a> {
    /// A generator over `world`'s grid factors encoded by `probe`, nuisances from `law`, noise σ
    /// `sigma` (0: none), reproducible from `seed`. A model whose box is not the phantom's errors at the first
    /// draw ([`World::encode`]).
    pub fn new(
        world: &'a World,
        probe: &'a Probe,
        law: ImageLaw,
        sigma: f64,
        seed: u64,
    ) -> Result<Self> {
        if !(sigma >= 0.0 && sigma.is_finite()) {
            return Err(Error::invalid(format!("noise σ must be ≥ 0, got {sigma}")));
        }
        Ok(WorldGenerator {
            world,
            probe,
            law,
            sigma,
            num_values: vec![world.grid.g; world.n_factors()],
            rng: StdRng::seed_from_u64(seed),
            drawn: 0,
            seed,
        })
    }

    /// Uniform factor levels for `n` draws (n, K), factor `fixed.0` held at `fixed.1`.
    fn factor_rows(&mut self, fixed: Option<(usize, usize)>, n: usize) -> Result<Vec<usize>> {
        let k = self.num_values.len();
        if let Some((f, v)) = fixed {
            if f >= k || v >= self.num_values[f] {
                return Err(Error::invalid(format!(
                    "scores: factor {f} = {v} is outside the phantom's {k} factors of {} levels",
                    self.world.grid.g
                )));
            }
        }
        let mut out = Vec::with_capacity(n * k);
        for _ in 0..n {
            for (j, &m) in self.num_values.iter().enumerate() {
                out.push(match fixed {
                    Some((f, v)) if f == j => v,
                    _ => self.rng.random_range(0..m),
                });
            }
        }
        Ok(out)
    }

    /// μ_z (n, zdim) of the images at factor rows `factors` (n, K).
    fn encode(&mut self, factors: &[usize]) -> Result<Vec<f64>> {
        let k = self.num_values.len();
        let n = factors.len() / k;
        let mut out = Vec::with_capacity(n * self.probe.zdim());
        for rows in factors.chunks(CHUNK * k) {
            let m = rows.len() / k;
            let s = self.seed ^ (0x5C0E_5000 + self.drawn);
            self.drawn += m as u64;
            let spec = DrawSpec {
                d: self.world.d,
                apix: self.world.apix,
                t_extent_px: self.law.t_extent_px,
                ctf: &self.law.ctf,
                pose: self.law.pose,
                seed: s,
            };
            let (mut params, _) = draw_params_with(m, 1, &spec);
            for (p, f) in params.iter_mut().zip(rows.chunks(k)) {
                p.state = self.world.grid.index(f);
            }
            out.extend(self.world.encode(self.probe, &params, self.sigma, s)?.mu);
        }
        Ok(out)
    }
}

impl Generator for WorldGenerator<'_> {
    fn num_values(&self) -> &[usize] {
        &self.num_values
    }

    fn dim(&self) -> usize {
        self.probe.zdim()
    }

    fn sample(&mut self, fixed: Option<(usize, usize)>, batch: usize) -> Result<Vec<f64>> {
        let f = self.factor_rows(fixed, batch)?;
        self.encode(&f)
    }
}

impl LabelledGenerator for WorldGenerator<'_> {
    fn draw(&mut self, n: usize) -> Result<(Vec<f64>, Vec<usize>)> {
        let f = self.factor_rows(None, n)?;
        Ok((self.encode(&f)?, f))
    }
}
