//! Analysis outputs: plots (PNG, embedded font, atomic writes).

pub mod plot;
