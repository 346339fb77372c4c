//! cryoDRGN's `ResidLinearMLP`: the decoder's coordinate network and the shape later used by
//! the EDM denoiser (residual MLP, SiLU). Layers whose input and output widths agree are
//! `ResidLinear` (`y = W x + b + x`).

use super::mlp::{layer_dims, Mlp};
use super::Linear;
use crate::autodiff::ParamStore;
use crate::backend::{Activation, Backend};
use crate::Result;
use rand::Rng;

impl Mlp {
    /// `ResidLinearMLP(in_dim, nlayers, hidden_dim, out_dim, activation)`. Parameter names
    /// follow torch's state dict: `{name}.main.{2l}.linear.weight` for residual layers,
    /// `{name}.main.{2l}.weight` for plain ones (`main.{2l}…` for an empty `name`: the network is
    /// the whole model, as cryoDRGN's `train_nn --domain hartley --pe-type none`).
    #[allow(clippy::too_many_arguments)]
    pub fn resid<B: Backend>(
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
        let mut residual = Vec::with_capacity(dims.len());
        let main = if name.is_empty() {
            "main".to_string()
        } else {
            format!("{name}.main")
        };
        for (l, &(i, o)) in dims.iter().enumerate() {
            let res = i == o;
            let pname = if res {
                format!("{main}.{}.linear", 2 * l)
            } else {
                format!("{main}.{}", 2 * l)
            };
            layers.push(Linear::new(be, store, &pname, i, o, true, rng)?);
            residual.push(res);
        }
        Ok(Self {
            layers,
            residual,
            act,
        })
    }
}
