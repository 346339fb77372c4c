//! `select-random`: a random subset of `-n` (or `--frac` of) the indices `0..N` as an index .pkl
//! (int64, ascending), and optionally the rest (cryoDRGN's `select_random`), written atomically.
//!
//! The draw is numpy's: `np.random.seed(seed); np.random.choice(N, n, replace=False)`, i.e. the first
//! `n` entries of a Fisher–Yates shuffle of `0..N` driven by MT19937 (legacy `RandomState`), so the
//! same seed selects the same particles as the reference.
//!
//! Example: `cryofield select-random 189043 -n 100000 -s 0 -o train.pkl --neg-o test.pkl`

use crate::meta::save_indices;
use anyhow::bail;
use std::path::PathBuf;

/// Select a random subset of particles.
#[derive(Debug, clap::Args)]
#[command(about = "A random subset of the particle indices 0..N (numpy's draw for a given seed)")]
#[command(group(clap::ArgGroup::new("how_many").required(true).args(["n", "frac"])))]
pub struct Args {
    /// Total number of particles
    #[arg(value_name = "N")]
    pub total: usize,
    /// Number of particles to select
    #[arg(short = 'n')]
    pub n: Option<usize>,
    /// Fraction of the particles to select (n = floor(N·frac))
    #[arg(long)]
    pub frac: Option<f64>,
    /// Random seed (numpy's np.random.seed)
    #[arg(short = 's', long, default_value_t = 0)]
    pub seed: u32,
    /// Output index .pkl (the selection)
    #[arg(short = 'o')]
    pub o: PathBuf,
    /// Also write the particles not selected to this index .pkl
    #[arg(long = "neg-o")]
    pub neg_o: Option<PathBuf>,
}

/// The Mersenne Twister MT19937 (32-bit), seeded as numpy's legacy `RandomState.seed(int)`.
pub struct Mt19937 {
    state: [u32; 624],
    pos: usize,
}

impl Mt19937 {
    /// Knuth's initialisation (`init_genrand`), as `mt19937_seed`.
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let p = state[i - 1];
            state[i] = 1812433253u32
                .wrapping_mul(p ^ (p >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, pos: 624 }
    }

    /// The next 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.pos = 0;
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform integer in `0..=max` by masked rejection (numpy's `random_interval`; the 64-bit
    /// branch is for `max ≥ 2³²`).
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for s in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> s;
        }
        loop {
            let v = if max <= 0xffff_ffff {
                u64::from(self.next_u32()) & mask
            } else {
                let hi = u64::from(self.next_u32());
                ((hi << 32) | u64::from(self.next_u32())) & mask
            };
            if v <= max {
                return v;
            }
        }
    }
}

/// `np.random.seed(seed); np.random.choice(total, n, replace=False)`: the first `n` entries of
/// numpy's in-place shuffle of `0..total` (for `i = total−1 … 1`: swap `i` with `interval(i)`).
pub fn numpy_choice(total: usize, n: usize, seed: u32) -> Vec<usize> {
    let mut rng = Mt19937::new(seed);
    let mut perm: Vec<usize> = (0..total).collect();
    for i in (1..total).rev() {
        let j = rng.interval(i as u64) as usize;
        perm.swap(i, j);
    }
    perm.truncate(n);
    perm
}

/// Run `select-random`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let n = match (a.n, a.frac) {
        (Some(n), _) => n,
        (None, Some(f)) if (0.0..=1.0).contains(&f) => (a.total as f64 * f) as usize,
        (None, Some(f)) => bail!("--frac {f} must be between 0 and 1"),
        (None, None) => bail!("give -n or --frac"),
    };
    if n == 0 || n > a.total {
        bail!(
            "cannot select {n} of {} particles (select between 1 and N)",
            a.total
        );
    }
    let mut sel = numpy_choice(a.total, n, a.seed);
    sel.sort_unstable();
    let mut keep = vec![false; a.total];
    sel.iter().for_each(|&i| keep[i] = true);
    let rest: Vec<usize> = (0..a.total).filter(|&i| !keep[i]).collect();
    if let Some(p) = &a.neg_o {
        if rest.is_empty() {
            bail!(
                "--neg-o {}: every particle is selected, the rest is empty",
                p.display()
            );
        }
    }
    save_indices(&a.o, &sel)?;
    eprintln!(
        "selected {} of {} particles; wrote {}",
        sel.len(),
        a.total,
        a.o.display()
    );
    if let Some(p) = &a.neg_o {
        save_indices(p, &rest)?;
        eprintln!("wrote the other {} to {}", rest.len(), p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_reference_outputs() {
        // The first outputs of mt19937ar.c's init_genrand(5489), the reference implementation's default.
        let mut r = Mt19937::new(5489);
        let first: Vec<u32> = (0..3).map(|_| r.next_u32()).collect();
        assert_eq!(first, [3499211612, 581869302, 3890346734]);
    }
}
