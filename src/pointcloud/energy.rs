//! Energies of a cloud given observations (in progress).
