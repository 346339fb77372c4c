//! Multi-layer perceptrons: cryoDRGN's `MLP` here, `ResidLinearMLP` in [`super::resnet`]; both
//! run as one fused backend primitive ([`crate::backend::Backend::mlp_forward`]).

use super::Linear;
use crate::autodiff::{ParamStore, Tape, Var};
use crate::backend::{Activation, Backend};
use crate::Result;
use rand::Rng;

/// A stack of [`Linear`] layers with an activation after every layer but the last; layer l
/// adds its input to its output when `residual[l]` (cryoDRGN's `ResidLinear`).
#[derive(Clone, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub residual: Vec<bool>,
    pub act: Activation,
}

impl Mlp {
    /// cryoDRGN's `MLP(in_dim, nlayers, hidden_dim, out_dim, activation)`: in → hidden,
    /// `nlayers` × (hidden → hidden), hidden → out. Parameters are named like torch's
    /// state dict: `{name}.main.{2l}.weight`.
    #[allow(clippy::too_many_arguments)]
    pub fn new<B: Backend>(
        be: &B,
        store: &mut ParamStore<B>,
        name: &str,
        in_dim: usize,
        nlayers: usize,
        hidden: usize,
        out_dim: usize,
        act: Activation,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let dims = layer_dims(in_dim, nlayers, hidden, out_dim);
        let mut layers = Vec::with_capacity(dims.len());
        for (l, &(i, o)) in dims.iter().enumerate() {
            layers.push(Linear::new(
                be,
                store,
                &format!("{name}.main.{}", 2 * l),
                i,
                o,
                true,
                rng,
            )?);
        }
        Ok(Self {
            residual: vec![false; layers.len()],
            layers,
            act,
        })
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.layers[0].n_in
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].n_out
    }

    /// x (…, in) → (…, out) as one fused tape op (`Op::Mlp`).
    pub fn forward<B: Backend>(&self, t: &mut Tape<'_, B>, x: Var) -> Result<Var> {
        let params: Vec<(Var, Var)> = self.layers.iter().map(|l| self.layer_vars(t, l)).collect();
        t.mlp(x, &params, &self.residual, self.act)
    }

    /// The same network composed from primitive tape ops (linear, add, activation); the
    /// reference the fused path is tested against.
    pub fn forward_unfused<B: Backend>(&self, t: &mut Tape<'_, B>, x: Var) -> Result<Var> {
        let mut h = x;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let mut z = layer.forward(t, h)?;
            if self.residual[l] {
                z = t.add(z, h)?;
            }
            h = if l == last {
                z
            } else {
                t.unary(z, self.act.unary())?
            };
        }
        Ok(h)
    }

    fn layer_vars<B: Backend>(&self, t: &mut Tape<'_, B>, l: &Linear) -> (Var, Var) {
        let w = t.param(l.w);
        let b =
            l.b.map(|b| t.param(b))
                .expect("Mlp layers always have a bias");
        (w, b)
    }
}

/// (in, out) of each layer of an `nlayers`-hidden-layer MLP.
pub(crate) fn layer_dims(
    in_dim: usize,
    nlayers: usize,
    hidden: usize,
    out_dim: usize,
) -> Vec<(usize, usize)> {
    let mut d = vec![(in_dim, hidden)];
    d.extend(std::iter::repeat_n((hidden, hidden), nlayers));
    d.push((hidden, out_dim));
    d
}
