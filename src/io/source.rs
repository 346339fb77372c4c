//! Particle sources: .mrcs, .star, .cs and .txt lists.
