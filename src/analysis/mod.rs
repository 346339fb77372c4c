//! Analysis outputs: plots (PNG, embedded font, atomic writes).

pub mod convergence;
pub mod convergence_plots;
pub mod embed;
pub mod kmeans;
pub mod landscape;
pub mod latent;
pub mod leiden;
pub mod mask;
pub mod pca;
pub mod plot;
pub mod stats;
pub mod traversal;
pub mod umap;

pub use latent::run_basic;
