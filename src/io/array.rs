//! A small n-dimensional array in C order, the exchange type of the npy/pickle/cs readers.

use crate::error::{Error, Result};

/// Typed storage of an [`NdArray`], always in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

impl ArrayData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::I32(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::U8(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numpy dtype string (`<f4`, `<i8`, `|b1`, ...).
    pub fn descr(&self) -> &'static str {
        match self {
            ArrayData::F32(_) => "<f4",
            ArrayData::F64(_) => "<f8",
            ArrayData::I32(_) => "<i4",
            ArrayData::I64(_) => "<i8",
            ArrayData::U8(_) => "|u1",
            ArrayData::Bool(_) => "|b1",
        }
    }
}

/// An n-dimensional array: `shape` and C-ordered `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

impl NdArray {
    /// Build an array, checking that `shape` matches the element count.
    pub fn new(shape: Vec<usize>, data: ArrayData) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape {
                what: "array".into(),
                expected: format!("{n} elements for shape {shape:?}"),
                got: data.len().to_string(),
            });
        }
        Ok(NdArray { shape, data })
    }

    /// A float32 array.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        Self::new(shape, ArrayData::F32(data))
    }

    /// An int64 array.
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self> {
        Self::new(shape, ArrayData::I64(data))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// All elements converted to f32 (bool → 0/1).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            ArrayData::F32(v) => v.clone(),
            ArrayData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
        }
    }

    /// All elements converted to f64 (bool → 0/1).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            ArrayData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::F64(v) => v.clone(),
            ArrayData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }

    /// Elements as i64 indices; errors on non-integral floats.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let conv = |x: f64| -> Result<i64> {
            if x.fract() == 0.0 && x.is_finite() {
                Ok(x as i64)
            } else {
                Err(Error::invalid(format!(
                    "expected integer values, found {x}"
                )))
            }
        };
        match &self.data {
            ArrayData::I32(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            ArrayData::I64(v) => Ok(v.clone()),
            ArrayData::U8(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            ArrayData::Bool(v) => Ok(v.iter().map(|&x| x as i64).collect()),
            ArrayData::F32(v) => v.iter().map(|&x| conv(x as f64)).collect(),
            ArrayData::F64(v) => v.iter().map(|&x| conv(x)).collect(),
        }
    }
}
