//! A fully connected layer `y = x·Wᵀ + b` with torch's `nn.Linear` layout and initialization.

use crate::autodiff::{ParamId, ParamStore, Tape, Tensor, Var};
use crate::backend::Backend;
use crate::Result;
use rand::Rng;

/// `y (…, n_out) = x (…, n_in)·Wᵀ + b`, W (n_out, n_in), b (n_out).
#[derive(Clone, Debug)]
pub struct Linear {
    pub w: ParamId,
    pub b: Option<ParamId>,
    pub n_in: usize,
    pub n_out: usize,
}

/// PyTorch's default init for `nn.Linear`: kaiming_uniform(a = √5) on W is U(−1/√fan_in,
/// 1/√fan_in), and the bias is U(−1/√fan_in, 1/√fan_in) too.
pub fn torch_uniform<T: crate::backend::Float>(
    rng: &mut impl Rng,
    fan_in: usize,
    n: usize,
) -> Vec<T> {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    (0..n)
        .map(|_| T::c(rng.random_range(-bound..bound)))
        .collect()
}

impl Linear {
    /// A new layer whose parameters `{name}.weight`, `{name}.bias` are added to `store`.
    pub fn new<B: Backend>(
        be: &B,
        store: &mut ParamStore<B>,
        name: &str,
        n_in: usize,
        n_out: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let w = torch_uniform::<B::Elem>(rng, n_in, n_in * n_out);
        let w = store.add(
            format!("{name}.weight"),
            Tensor::from_slice(be, &w, &[n_out, n_in])?,
        );
        let b = if bias {
            let b = torch_uniform::<B::Elem>(rng, n_in, n_out);
            Some(store.add(
                format!("{name}.bias"),
                Tensor::from_slice(be, &b, &[n_out])?,
            ))
        } else {
            None
        };
        Ok(Self { w, b, n_in, n_out })
    }

    /// Record `x·Wᵀ + b` on the tape.
    pub fn forward<B: Backend>(&self, t: &mut Tape<'_, B>, x: Var) -> Result<Var> {
        let w = t.param(self.w);
        let b = self.b.map(|b| t.param(b));
        t.linear(x, w, b)
    }
}
