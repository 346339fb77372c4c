//! Host-side tensors (a backend buffer plus a row-major shape) and the parameter store.

use crate::backend::Backend;
use crate::{Error, Result};

/// A row-major tensor: a backend buffer and its shape.
pub struct Tensor<B: Backend> {
    pub buf: B::Buf,
    pub shape: Vec<usize>,
}

impl<B: Backend> Tensor<B> {
    /// Upload host data with a shape; errors when the element count disagrees.
    pub fn from_slice(be: &B, data: &[B::Elem], shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape {
                what: "Tensor::from_slice".into(),
                expected: format!("{n} elements for shape {shape:?}"),
                got: data.len().to_string(),
            });
        }
        Ok(Self {
            buf: be.upload(data)?,
            shape: shape.to_vec(),
        })
    }

    /// A zero tensor.
    pub fn zeros(be: &B, shape: &[usize]) -> Result<Self> {
        Ok(Self {
            buf: be.zeros(shape.iter().product())?,
            shape: shape.to_vec(),
        })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Index of a parameter in a [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

/// All trainable parameters of a model, by name. Modules hold [`ParamId`]s; a
/// [`crate::autodiff::Tape`] borrows the store during a step, optimizers update it afterwards.
pub struct ParamStore<B: Backend> {
    pub names: Vec<String>,
    pub tensors: Vec<Tensor<B>>,
}

impl<B: Backend> Default for ParamStore<B> {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl<B: Backend> ParamStore<B> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a parameter; its id is its insertion index.
    pub fn add(&mut self, name: impl Into<String>, t: Tensor<B>) -> ParamId {
        self.names.push(name.into());
        self.tensors.push(t);
        ParamId(self.tensors.len() - 1)
    }

    /// The tensor of a parameter.
    ///
    /// # Panics
    /// When `id` does not come from this store.
    pub fn get(&self, id: ParamId) -> &Tensor<B> {
        &self.tensors[id.0]
    }

    /// Mutable access to a parameter's tensor (optimizers, checkpoint loading).
    pub fn get_mut(&mut self, id: ParamId) -> &mut Tensor<B> {
        &mut self.tensors[id.0]
    }

    /// Number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// All ids in insertion order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.tensors.len()).map(ParamId)
    }

    /// (name, shape) of every parameter in insertion order (what a checkpoint must match).
    pub fn named_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.names
            .iter()
            .zip(&self.tensors)
            .map(|(n, t)| (n.clone(), t.shape.clone()))
            .collect()
    }
}
