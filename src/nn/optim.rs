//! Optimizers matching `torch.optim` (Adam, RAdam with coupled L2 weight decay) and an
//! exponential moving average of parameters. Each parameter update is the backend primitive
//! [`Backend::adam_update`]; the step-dependent scalars are computed here on the host.

use crate::autodiff::{Grads, ParamStore};
use crate::backend::{AdamCoeffs, Backend};
use crate::Result;

/// First and second moments of every parameter (allocated on the first step).
struct Moments<B: Backend> {
    m: Vec<B::Buf>,
    v: Vec<B::Buf>,
}

impl<B: Backend> Moments<B> {
    fn ensure(be: &B, slot: &mut Option<Self>, store: &ParamStore<B>) -> Result<()> {
        if slot.is_none() {
            let mut m = Vec::with_capacity(store.len());
            let mut v = Vec::with_capacity(store.len());
            for t in &store.tensors {
                m.push(be.zeros(t.numel())?);
                v.push(be.zeros(t.numel())?);
            }
            *slot = Some(Self { m, v });
        }
        Ok(())
    }
}

fn apply<B: Backend>(
    be: &B,
    store: &mut ParamStore<B>,
    grads: &Grads<B>,
    mom: &mut Moments<B>,
    c: AdamCoeffs,
) -> Result<()> {
    for (i, id) in store.ids().collect::<Vec<_>>().into_iter().enumerate() {
        // Parameters without a gradient are skipped, like torch's `p.grad is None`.
        let Some(g) = grads.param(id) else { continue };
        let p = &mut store.get_mut(id).buf;
        be.adam_update(p, g, &mut mom.m[i], &mut mom.v[i], c)?;
    }
    Ok(())
}

/// `torch.optim.Adam(lr, betas, eps, weight_decay)` (L2 penalty added to the gradient):
/// m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ), p −= lr·m̂/(√v̂ + eps).
pub struct Adam<B: Backend> {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    step: u64,
    mom: Option<Moments<B>>,
}

impl<B: Backend> Adam<B> {
    /// Adam with torch's defaults for betas (0.9, 0.999) and eps (1e-8).
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            step: 0,
            mom: None,
        }
    }

    /// One step over every parameter of `store` that has a gradient in `grads`.
    pub fn step(&mut self, be: &B, store: &mut ParamStore<B>, grads: &Grads<B>) -> Result<()> {
        Moments::ensure(be, &mut self.mom, store)?;
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = self.betas;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        // torch: denom = √v/√bc2 + eps ; p −= (lr/bc1)·m/denom
        let c = AdamCoeffs {
            beta1: b1,
            beta2: b2,
            weight_decay: self.weight_decay,
            step_size: self.lr / bc1,
            denom_scale: 1.0 / bc2.sqrt(),
            denom_eps: self.eps,
        };
        apply(be, store, grads, self.mom.as_mut().expect("ensured"), c)
    }
}

/// `torch.optim.RAdam(lr, betas, eps, weight_decay)`: with ρ∞ = 2/(1−β2) − 1 and
/// ρₜ = ρ∞ − 2tβ2ᵗ/(1−β2ᵗ), the step is the rectified adaptive one
/// p −= lr·m̂·r·√(1−β2ᵗ)/(√v + eps), r = √((ρₜ−4)(ρₜ−2)ρ∞/((ρ∞−4)(ρ∞−2)ρₜ)), when ρₜ > 5,
/// and the momentum step p −= lr·m̂ otherwise.
pub struct RAdam<B: Backend> {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    step: u64,
    mom: Option<Moments<B>>,
}

impl<B: Backend> RAdam<B> {
    /// RAdam with torch's defaults for betas (0.9, 0.999) and eps (1e-8).
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        Self {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            step: 0,
            mom: None,
        }
    }

    /// One step over every parameter of `store` that has a gradient in `grads`.
    pub fn step(&mut self, be: &B, store: &mut ParamStore<B>, grads: &Grads<B>) -> Result<()> {
        Moments::ensure(be, &mut self.mom, store)?;
        self.step += 1;
        let t = self.step as f64;
        let (b1, b2) = self.betas;
        let (bc1, bc2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * b2.powf(t) / bc2;
        let (step_size, denom_scale, denom_eps) = if rho_t > 5.0 {
            let r = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt();
            // lr·r·(m/bc1)·√bc2/(√v + eps) = (lr·r/bc1)·m/((√v + eps)/√bc2)
            (self.lr * r / bc1, 1.0 / bc2.sqrt(), self.eps / bc2.sqrt())
        } else {
            // lr·m/bc1: denominator a·√v + e with a = 0, e = 1
            (self.lr / bc1, 0.0, 1.0)
        };
        let c = AdamCoeffs {
            beta1: b1,
            beta2: b2,
            weight_decay: self.weight_decay,
            step_size,
            denom_scale,
            denom_eps,
        };
        apply(be, store, grads, self.mom.as_mut().expect("ensured"), c)
    }
}

/// An optimizer whose state a checkpoint stores: one step over every parameter of a store that has
/// a gradient, and its step count and moments (m, v) of every parameter in store order, on the host.
pub trait Optimizer<B: Backend> {
    /// One step over every parameter of `store` that has a gradient in `grads`.
    fn step(&mut self, be: &B, store: &mut ParamStore<B>, grads: &Grads<B>) -> Result<()>;
    /// The step count and moments (empty before the first step) — for checkpoints.
    #[allow(clippy::type_complexity)]
    fn state(&self, be: &B) -> Result<(u64, Vec<Vec<B::Elem>>, Vec<Vec<B::Elem>>)>;
    /// Restore a [`Optimizer::state`] (empty moments: none yet).
    fn set_state(
        &mut self,
        be: &B,
        step: u64,
        m: &[Vec<B::Elem>],
        v: &[Vec<B::Elem>],
    ) -> Result<()>;
}

impl<B: Backend> Moments<B> {
    #[allow(clippy::type_complexity)]
    fn state(be: &B, slot: &Option<Self>) -> Result<(Vec<Vec<B::Elem>>, Vec<Vec<B::Elem>>)> {
        let Some(mom) = slot else {
            return Ok((Vec::new(), Vec::new()));
        };
        let m = mom.m.iter().map(|b| be.to_vec(b)).collect::<Result<_>>()?;
        let v = mom.v.iter().map(|b| be.to_vec(b)).collect::<Result<_>>()?;
        Ok((m, v))
    }

    fn restore(be: &B, m: &[Vec<B::Elem>], v: &[Vec<B::Elem>]) -> Result<Option<Self>> {
        if m.is_empty() {
            return Ok(None);
        }
        Ok(Some(Moments {
            m: m.iter().map(|x| be.upload(x)).collect::<Result<_>>()?,
            v: v.iter().map(|x| be.upload(x)).collect::<Result<_>>()?,
        }))
    }
}

/// The [`Optimizer`] impl of a type with `step`, `mom` fields and an inherent `step` method.
macro_rules! optimizer_impl {
    ($t:ident) => {
        impl<B: Backend> Optimizer<B> for $t<B> {
            fn step(&mut self, be: &B, store: &mut ParamStore<B>, grads: &Grads<B>) -> Result<()> {
                $t::step(self, be, store, grads)
            }
            fn state(&self, be: &B) -> Result<(u64, Vec<Vec<B::Elem>>, Vec<Vec<B::Elem>>)> {
                let (m, v) = Moments::state(be, &self.mom)?;
                Ok((self.step, m, v))
            }
            fn set_state(
                &mut self,
                be: &B,
                step: u64,
                m: &[Vec<B::Elem>],
                v: &[Vec<B::Elem>],
            ) -> Result<()> {
                self.step = step;
                self.mom = Moments::restore(be, m, v)?;
                Ok(())
            }
        }
    };
}
optimizer_impl!(Adam);
optimizer_impl!(RAdam);

/// Exponential moving average of parameters: avg = decay·avg + (1 − decay)·p (the EDM
/// denoiser's evaluation weights).
pub struct Ema<B: Backend> {
    pub decay: f64,
    /// The averaged parameters, in store order.
    pub shadow: Vec<B::Buf>,
}

impl<B: Backend> Ema<B> {
    /// Start the average at the current parameters.
    pub fn new(be: &B, store: &ParamStore<B>, decay: f64) -> Result<Self> {
        let shadow = store
            .tensors
            .iter()
            .map(|t| be.copy(&t.buf))
            .collect::<Result<_>>()?;
        Ok(Self { decay, shadow })
    }

    /// Fold the current parameters into the average.
    pub fn update(&mut self, be: &B, store: &ParamStore<B>) -> Result<()> {
        for (s, t) in self.shadow.iter_mut().zip(&store.tensors) {
            be.axpby(1.0 - self.decay, &t.buf, self.decay, s)?;
        }
        Ok(())
    }

    /// Copy the averaged weights into `store` (for evaluation or saving).
    pub fn copy_to(&self, be: &B, store: &mut ParamStore<B>) -> Result<()> {
        for (s, t) in self.shadow.iter().zip(store.tensors.iter_mut()) {
            be.axpby(1.0, s, 0.0, &mut t.buf)?;
        }
        Ok(())
    }
}
