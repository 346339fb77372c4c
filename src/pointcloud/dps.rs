//! Cloud priors and posterior sampling (in progress).
