//! Poses: branch-and-bound pose search with frequency marching, the slice models it searches
//! against, ab initio reconstruction (`abinit-homo`, `abinit-het`) and accuracy against ground
//! truth.
//!
//! | module | what |
//! |---|---|
//! | [`search`] | [`search::PoseSearch`]: base SO(3) × shift grid, subdivision, frequency marching, optional bound |
//! | [`slices`] | [`slices::SliceModel`]: exact decoder slices, slices interpolated in a volume's transform, per-image latent grids |
//! | [`abinit`] | random-pose pretraining, then pose search every `--ps-freq` epochs and training on the found poses; `search_volume` (`pose-search`) |
//! | [`drgnai`] | `abinit` (cryoDRGN-AI): pretraining, pose-search epochs, then SGD on per-image pose and conformation tables |
//! | [`error`] | pose accuracy: global alignment with handedness, Frobenius/degree/pixel errors |
//! | [`table`] | per-image rotation tables (quaternion or 6-D) refined by SparseAdam: `--refine-poses` |

pub mod abinit;
pub mod drgnai;
pub mod error;
pub mod search;
pub mod slices;
pub mod table;
