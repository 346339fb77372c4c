//! Typed pose and CTF metadata.
