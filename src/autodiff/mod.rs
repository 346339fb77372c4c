//! A minimal reverse-mode autodiff tape over a [`crate::backend::Backend`].
//!
//! - [`tensor`]: [`Tensor`] (buffer + shape) and the [`ParamStore`] models keep their weights in.
//! - [`tape`]: [`Tape`] records nodes in execution order; [`Tape::backward`] walks them in
//!   reverse and returns [`Grads`] for the leaves (inputs and parameters).
//! - [`op`]: the closed [`Op`] enum and the single `match` with every derivative rule.
//!
//! ```
//! use cryofield::autodiff::{ParamStore, Tape, Tensor};
//! use cryofield::backend::cpu::CpuBackend;
//! let be = CpuBackend::<f64>::new();
//! let store = ParamStore::new();
//! let mut t = Tape::new(&be, &store);
//! let x = t.input(Tensor::from_slice(&be, &[1.0, 2.0], &[2]).unwrap());
//! let y = t.unary(x, cryofield::backend::UnaryOp::Square).unwrap();
//! let l = t.sum_all(y, 1.0).unwrap();
//! let g = t.backward(l).unwrap();
//! assert_eq!(g.get(x).unwrap(), &vec![2.0, 4.0]);
//! ```

pub mod op;
pub mod tape;
pub mod tensor;

pub use op::Op;
pub use tape::{Grads, Tape, Var};
pub use tensor::{ParamId, ParamStore, Tensor};
