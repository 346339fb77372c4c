//! Built-in synthetic molecules with a known conformational motion ("phantoms"), after the
//! synthetic datasets of cryoDRGN (Zhong et al. 2020, App. D.1) and the `linear1d`/`circular1d`
//! sets of the latent diffusion prior paper: a rigid body plus one or two moving domains, all made
//! of isotropic 3-D Gaussian blobs, rendered analytically on a D³ grid.
//!
//! Geometry is defined in fractions of the box D, so a phantom has the same shape at every box
//! size. Blob centres stay within `0.30·D` of the box centre and blobs have
//! `σ = max(0.025·D, 1.5)` px, so for D ≥ 64 less than 1e-3 of the mass lies outside a sphere of
//! radius `0.4·D` and the map is band-limited well below Nyquist (the Gaussian's transform is
//! `exp(−2π²σ²k²)`, ≤ e^{−12} at Nyquist for σ = 1.5 px).
//!
//! | kind | moving parts | truth coordinate |
//! |---|---|---|
//! | `linear1d` | one domain slides along a line | `t ∈ [0, 1]` |
//! | `circular1d` | one domain rotates rigidly about an axis through the body | angle `θ ∈ [0, 2π)` (rad, periodic) |
//! | `linear2d` | two domains slide along two perpendicular lines on opposite sides | `(t₁, t₂) ∈ [0, 1]²` |
//! | `discrete` | one domain at one of K well-spread positions and orientations | state index `k ∈ {0, …, K−1}` |
//!
//! Voxel `(z, y, x)` of a volume is `vol[(z·D + y)·D + x]` and sits at `(x, y, z) − D/2` px from
//! the centre (the reference's convention: the centre is voxel D/2).

use crate::error::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::f64::consts::TAU;

/// Blobs are truncated at this many standard deviations.
const CUTOFF_SIGMAS: f64 = 4.0;
/// Body: a random-walk chain of blobs confined to a sphere of this radius (fraction of D).
const BODY_RADIUS: f64 = 0.15;
const BODY_BLOBS: usize = 36;
/// Moving domains: compact chains, weighted centre at the origin, within this radius (fraction of D).
const DOMAIN_RADIUS: f64 = 0.06;
/// Distance of the moving domain's centre from the rotation axis / box centre (fraction of D).
const ARM: f64 = 0.22;
/// `linear1d` (and the first `linear2d` domain): the domain's centre goes from `A` to `B`.
const LIN_A: [f64; 3] = [-0.12, 0.20, 0.03];
const LIN_B: [f64; 3] = [0.12, 0.20, -0.03];
/// Second `linear2d` domain, on the other side of the body, moving perpendicularly to the first.
const LIN2_A: [f64; 3] = [-0.03, -0.20, -0.12];
const LIN2_B: [f64; 3] = [0.03, -0.20, 0.12];
/// `circular1d` rotation axis (through the box centre), normalised at use.
const AXIS: [f64; 3] = [0.25, -0.15, 1.0];

/// Which motion a phantom has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhantomKind {
    /// One domain translates along a line; truth `t ∈ [0, 1]`.
    Linear1d,
    /// One domain rotates about an axis through the body; truth is the angle (rad, periodic).
    Circular1d,
    /// Two domains translate independently; truth `(t₁, t₂) ∈ [0, 1]²`.
    Linear2d,
    /// `k` distinct conformations; truth is the state index.
    Discrete { k: usize },
}

impl PhantomKind {
    /// Dimension of the truth coordinate.
    pub fn dim(&self) -> usize {
        match self {
            PhantomKind::Linear2d => 2,
            _ => 1,
        }
    }

    /// The name used on the command line (`linear1d`, `circular1d`, `linear2d`, `discrete`).
    pub fn name(&self) -> &'static str {
        match self {
            PhantomKind::Linear1d => "linear1d",
            PhantomKind::Circular1d => "circular1d",
            PhantomKind::Linear2d => "linear2d",
            PhantomKind::Discrete { .. } => "discrete",
        }
    }

    /// The number of states the reference's datasets used: 50 (linear1d), 100 (circular1d),
    /// 100 = 10×10 (linear2d), K (discrete).
    pub fn default_n_states(&self) -> usize {
        match self {
            PhantomKind::Linear1d => 50,
            PhantomKind::Circular1d | PhantomKind::Linear2d => 100,
            PhantomKind::Discrete { k } => *k,
        }
    }
}

/// One isotropic Gaussian `amp · exp(−|r − center|² / (2σ²))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blob {
    /// centre `(x, y, z)` in pixels from the box centre
    pub center: [f64; 3],
    /// standard deviation (pixels)
    pub sigma: f64,
    /// peak value
    pub amp: f64,
    /// 0 for the rigid body, 1, 2, … for the moving domains
    pub part: usize,
}

/// A rigid part: blob offsets (fractions of D) and peak amplitudes.
#[derive(Debug, Clone)]
struct Part {
    offsets: Vec<[f64; 3]>,
    amps: Vec<f64>,
}

/// A synthetic molecule with a known motion.
#[derive(Debug, Clone)]
pub struct Phantom {
    kind: PhantomKind,
    d: usize,
    apix: f64,
    seed: u64,
    sigma_px: f64,
    body: Part,
    domains: Vec<Part>,
    /// `discrete`: per state, the domain's centre (fraction of D) and rotation
    discrete: Vec<([f64; 3], [[f64; 3]; 3])>,
}

impl Phantom {
    /// A phantom of `kind` in a D³ box of pixel size `apix` (Å); `seed` fixes the blob layout.
    ///
    /// D must be even and at least 16 (the 0.4·D mass bound is guaranteed for D ≥ 64); a
    /// `discrete` phantom needs K ≥ 1.
    pub fn new(kind: PhantomKind, d: usize, apix: f64, seed: u64) -> Result<Self> {
        if d < 16 || !d.is_multiple_of(2) {
            return Err(Error::invalid(format!(
                "phantom box size D must be even and at least 16, got {d}"
            )));
        }
        if !(apix.is_finite() && apix > 0.0) {
            return Err(Error::invalid(format!(
                "phantom pixel size must be positive, got {apix}"
            )));
        }
        if let PhantomKind::Discrete { k } = kind {
            if k == 0 {
                return Err(Error::invalid(
                    "a discrete phantom needs at least one state",
                ));
            }
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let body = chain(&mut rng, BODY_BLOBS, BODY_RADIUS, 0.045, (0.5, 1.0), false);
        let n_domains = if kind == PhantomKind::Linear2d { 2 } else { 1 };
        let domains = (0..n_domains)
            .map(|i| chain(&mut rng, 9 - 2 * i, DOMAIN_RADIUS, 0.035, (0.7, 1.0), true))
            .collect();
        let discrete = match kind {
            PhantomKind::Discrete { k } => (0..k)
                .map(|i| {
                    (
                        scale(fibonacci_sphere(i, k), ARM),
                        random_rotation(&mut rng),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Phantom {
            kind,
            d,
            apix,
            seed,
            sigma_px: (0.025 * d as f64).max(1.5),
            body,
            domains,
            discrete,
        })
    }

    /// The phantom's kind.
    pub fn kind(&self) -> PhantomKind {
        self.kind
    }

    /// Box size (pixels).
    pub fn d(&self) -> usize {
        self.d
    }

    /// Pixel size (Å).
    pub fn apix(&self) -> f64 {
        self.apix
    }

    /// Blob standard deviation (pixels).
    pub fn sigma_px(&self) -> f64 {
        self.sigma_px
    }

    /// `circular1d`: the unit rotation axis `(x, y, z)` (through the box centre); `None` otherwise.
    /// The domain turns by `+θ` about it (right-handed).
    pub fn axis(&self) -> Option<[f64; 3]> {
        (self.kind == PhantomKind::Circular1d).then(|| normalize(AXIS))
    }

    /// Check a truth coordinate: its length is `kind.dim()`, linear coordinates lie in `[0, 1]`,
    /// a discrete one is an integer state index, all are finite.
    fn check(&self, coord: &[f64]) -> Result<()> {
        if coord.len() != self.kind.dim() {
            return Err(Error::Shape {
                what: format!("{} phantom coordinate", self.kind.name()),
                expected: format!("{} values", self.kind.dim()),
                got: format!("{}", coord.len()),
            });
        }
        if let Some(c) = coord.iter().find(|c| !c.is_finite()) {
            return Err(Error::invalid(format!(
                "phantom coordinate {c} is not finite"
            )));
        }
        match self.kind {
            PhantomKind::Linear1d | PhantomKind::Linear2d => {
                if let Some(t) = coord.iter().find(|t| !(0.0..=1.0).contains(*t)) {
                    return Err(Error::invalid(format!(
                        "{} coordinate {t} is outside [0, 1]",
                        self.kind.name()
                    )));
                }
            }
            PhantomKind::Discrete { k } => {
                let c = coord[0];
                if c.fract() != 0.0 || c < 0.0 || c >= k as f64 {
                    return Err(Error::invalid(format!(
                        "discrete state {c} is not an integer in 0..{k}"
                    )));
                }
            }
            PhantomKind::Circular1d => {}
        }
        Ok(())
    }

    /// The blobs of the conformation at truth coordinate `coord` (see the module table).
    pub fn blobs_at(&self, coord: &[f64]) -> Result<Vec<Blob>> {
        self.check(coord)?;
        let d = self.d as f64;
        let mut out = Vec::new();
        let mut push = |part: usize, p: &Part, rot: &[[f64; 3]; 3], shift: [f64; 3]| {
            for (o, &amp) in p.offsets.iter().zip(&p.amps) {
                let r = matvec(rot, *o);
                out.push(Blob {
                    center: [
                        (r[0] + shift[0]) * d,
                        (r[1] + shift[1]) * d,
                        (r[2] + shift[2]) * d,
                    ],
                    sigma: self.sigma_px,
                    amp,
                    part,
                });
            }
        };
        push(0, &self.body, &IDENTITY, [0.0; 3]);
        match self.kind {
            PhantomKind::Linear1d => {
                push(1, &self.domains[0], &IDENTITY, lerp(LIN_A, LIN_B, coord[0]))
            }
            PhantomKind::Linear2d => {
                push(1, &self.domains[0], &IDENTITY, lerp(LIN_A, LIN_B, coord[0]));
                push(
                    2,
                    &self.domains[1],
                    &IDENTITY,
                    lerp(LIN2_A, LIN2_B, coord[1]),
                );
            }
            PhantomKind::Circular1d => {
                let rot = axis_angle(normalize(AXIS), coord[0]);
                push(1, &self.domains[0], &rot, matvec(&rot, self.arm0()));
            }
            PhantomKind::Discrete { .. } => {
                let (c, rot) = &self.discrete[coord[0] as usize];
                push(1, &self.domains[0], rot, *c);
            }
        }
        Ok(out)
    }

    /// `circular1d`: the domain's centre at θ = 0 (fraction of D), perpendicular to the axis at
    /// distance [`ARM`] from it.
    fn arm0(&self) -> [f64; 3] {
        let u = normalize(AXIS);
        let e = [1.0, 0.0, 0.0];
        let along = dot(e, u);
        scale(
            normalize([
                e[0] - along * u[0],
                e[1] - along * u[1],
                e[2] - along * u[2],
            ]),
            ARM,
        )
    }

    /// The D³ volume at truth coordinate `coord` (row-major `(z, y, x)`).
    pub fn volume_at(&self, coord: &[f64]) -> Result<Vec<f32>> {
        Ok(render_blobs(&self.blobs_at(coord)?, self.d))
    }

    /// `n` truth coordinates sampling the motion evenly: `t = i/(n−1)` (linear1d; 0 when n = 1),
    /// `θ = 2πi/n` (circular1d), a g×g grid with `n = g²` and the first coordinate slowest
    /// (linear2d), the K state indices (discrete; n must be K).
    pub fn state_coords(&self, n: usize) -> Result<Vec<Vec<f64>>> {
        if n == 0 {
            return Err(Error::invalid(
                "the number of phantom states must be positive",
            ));
        }
        let lin = |i: usize, n: usize| {
            if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            }
        };
        Ok(match self.kind {
            PhantomKind::Linear1d => (0..n).map(|i| vec![lin(i, n)]).collect(),
            PhantomKind::Circular1d => (0..n).map(|i| vec![TAU * i as f64 / n as f64]).collect(),
            PhantomKind::Linear2d => {
                let g = (n as f64).sqrt().round() as usize;
                if g * g != n {
                    return Err(Error::invalid(format!(
                        "linear2d samples a g×g grid: the number of states must be a square, got {n}"
                    )));
                }
                (0..n).map(|i| vec![lin(i / g, g), lin(i % g, g)]).collect()
            }
            PhantomKind::Discrete { k } => {
                if n != k {
                    return Err(Error::invalid(format!(
                        "this discrete phantom has {k} states, {n} were asked for"
                    )));
                }
                (0..k).map(|i| vec![i as f64]).collect()
            }
        })
    }

    /// `n` states sampling the motion evenly ([`Phantom::state_coords`]), each with its volume.
    pub fn states(&self, n: usize) -> Result<Vec<(Vec<f64>, Vec<f32>)>> {
        self.state_coords(n)?
            .into_iter()
            .map(|c| {
                let v = self.volume_at(&c)?;
                Ok((c, v))
            })
            .collect()
    }

    /// A few lines describing the phantom (kind, box, blobs, motion), for `phantom.txt`.
    pub fn describe(&self) -> String {
        let d = self.d as f64;
        let px = |p: [f64; 3]| format!("({:.2}, {:.2}, {:.2})", p[0] * d, p[1] * d, p[2] * d);
        let motion = match self.kind {
            PhantomKind::Linear1d => format!(
                "domain 1 centre moves linearly from {} to {} px as t goes 0 → 1",
                px(LIN_A),
                px(LIN_B)
            ),
            PhantomKind::Linear2d => format!(
                "domain 1 centre moves from {} to {} px with t1; domain 2 from {} to {} px with t2",
                px(LIN_A),
                px(LIN_B),
                px(LIN2_A),
                px(LIN2_B)
            ),
            PhantomKind::Circular1d => {
                let u = normalize(AXIS);
                format!(
                    "domain 1 rotates rigidly by θ (rad) about the axis ({:.4}, {:.4}, {:.4}) through the box centre; its centre is at {} px for θ = 0, {:.2} px from the axis",
                    u[0], u[1], u[2], px(self.arm0()), ARM * d
                )
            }
            PhantomKind::Discrete { k } => format!(
                "domain 1 sits at one of {k} positions {:.2} px from the centre (Fibonacci sphere), each with its own orientation",
                ARM * d
            ),
        };
        let truth = match self.kind {
            PhantomKind::Linear1d => "t in [0, 1]",
            PhantomKind::Circular1d => "angle theta in [0, 2*pi) rad (periodic)",
            PhantomKind::Linear2d => "(t1, t2) in [0, 1]^2",
            PhantomKind::Discrete { .. } => "state index k",
        };
        let n_dom: usize = self.domains.iter().map(|p| p.offsets.len()).sum();
        format!(
            "kind: {}\nD: {}\nApix: {} A\nseed: {}\nblob sigma: {:.3} px\nbody: {} blobs within {:.2} px of the centre\nmoving domains: {} ({} blobs)\nmotion: {motion}\ntruth: {truth}\naxes: x, y, z in pixels from the box centre (voxel D/2); volumes are (z, y, x) row-major\n",
            self.kind.name(),
            self.d,
            self.apix,
            self.seed,
            self.sigma_px,
            self.body.offsets.len(),
            BODY_RADIUS * d,
            self.domains.len(),
            n_dom,
        )
    }
}

/// A random-walk chain of `n` blobs with steps of `step`, confined to a ball of `radius`
/// (fractions of D), amplitudes uniform in `amps`. With `recenter`, the amplitude-weighted centre
/// is moved to the origin and chains reaching beyond `radius` after that are drawn again.
fn chain(
    rng: &mut StdRng,
    n: usize,
    radius: f64,
    step: f64,
    amps: (f64, f64),
    recenter: bool,
) -> Part {
    let mut last = None;
    for _ in 0..1000 {
        let mut offsets: Vec<[f64; 3]> = Vec::with_capacity(n);
        let mut p = [0.0; 3];
        offsets.push(p);
        while offsets.len() < n {
            let dir = normalize(random_direction(rng));
            let q = [
                p[0] + step * dir[0],
                p[1] + step * dir[1],
                p[2] + step * dir[2],
            ];
            if norm(q) <= radius {
                p = q;
                offsets.push(p);
            }
        }
        let amps: Vec<f64> = (0..n).map(|_| rng.random_range(amps.0..amps.1)).collect();
        if recenter {
            let w: f64 = amps.iter().sum();
            let mut c = [0.0; 3];
            for (o, a) in offsets.iter().zip(&amps) {
                for k in 0..3 {
                    c[k] += a * o[k] / w;
                }
            }
            for o in &mut offsets {
                for k in 0..3 {
                    o[k] -= c[k];
                }
            }
        }
        let part = Part { offsets, amps };
        if part.offsets.iter().all(|o| norm(*o) <= radius) {
            return part;
        }
        last = Some(part);
    }
    // 1000 rejections in a row do not happen for the constants above; keep the last draw.
    last.unwrap_or(Part {
        offsets: vec![[0.0; 3]],
        amps: vec![1.0],
    })
}

fn random_direction(rng: &mut StdRng) -> [f64; 3] {
    loop {
        let v: [f64; 3] = [
            StandardNormal.sample(rng),
            StandardNormal.sample(rng),
            StandardNormal.sample(rng),
        ];
        if norm(v) > 1e-6 {
            return v;
        }
    }
}

/// A uniformly random rotation (from a normalised Gaussian quaternion).
fn random_rotation(rng: &mut StdRng) -> [[f64; 3]; 3] {
    let mut q = [0.0f64; 4];
    loop {
        for v in &mut q {
            *v = StandardNormal.sample(rng);
        }
        let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        if n > 1e-6 {
            q.iter_mut().for_each(|v| *v /= n);
            break;
        }
    }
    let [w, x, y, z] = q;
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - w * z),
            2.0 * (x * z + w * y),
        ],
        [
            2.0 * (x * y + w * z),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - w * x),
        ],
        [
            2.0 * (x * z - w * y),
            2.0 * (y * z + w * x),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

/// Point `i` of `n` on the unit sphere's Fibonacci lattice (golden-angle spiral).
fn fibonacci_sphere(i: usize, n: usize) -> [f64; 3] {
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    let z = 1.0 - 2.0 * (i as f64 + 0.5) / n as f64;
    let r = (1.0 - z * z).max(0.0).sqrt();
    let phi = golden * i as f64;
    [r * phi.cos(), r * phi.sin(), z]
}

/// Rotation by `theta` (rad, right-handed) about the unit axis `u` (Rodrigues).
fn axis_angle(u: [f64; 3], theta: f64) -> [[f64; 3]; 3] {
    let (s, c) = theta.sin_cos();
    let t = 1.0 - c;
    let [x, y, z] = u;
    [
        [c + x * x * t, x * y * t - z * s, x * z * t + y * s],
        [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
        [z * x * t - y * s, z * y * t + x * s, c + z * z * t],
    ]
}

const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

fn matvec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [dot(m[0], v), dot(m[1], v), dot(m[2], v)]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn normalize(a: [f64; 3]) -> [f64; 3] {
    scale(a, 1.0 / norm(a))
}

fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

fn lerp(a: [f64; 3], b: [f64; 3], t: f64) -> [f64; 3] {
    [
        a[0] + t * (b[0] - a[0]),
        a[1] + t * (b[1] - a[1]),
        a[2] + t * (b[2] - a[2]),
    ]
}

/// One axis of a separable Gaussian: the first voxel index and the values
/// `exp(−(i − c)² / (2σ²))` for voxels within `CUTOFF_SIGMAS·σ` of `c` (voxel units), clipped to
/// `0..d`. Empty when the blob misses the box.
fn axis_table(c: f64, sigma: f64, d: usize) -> (usize, Vec<f64>) {
    let r = CUTOFF_SIGMAS * sigma;
    let lo = (c - r).ceil().max(0.0);
    let hi = (c + r).floor().min(d as f64 - 1.0);
    if hi < lo {
        return (0, Vec::new());
    }
    let (lo, hi) = (lo as usize, hi as usize);
    let vals = (lo..=hi)
        .map(|i| {
            let x = i as f64 - c;
            (-x * x / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    (lo, vals)
}

/// Render blobs on a D³ grid (row-major `(z, y, x)`; blob centres are pixels from voxel D/2):
/// `vol[z,y,x] = Σ_b amp_b·g(x)·g(y)·g(z)`, each factor a 1-D Gaussian truncated at 4σ.
/// Parallel over z-slices; cost `O(#blobs · (8σ)³)`.
pub fn render_blobs(blobs: &[Blob], d: usize) -> Vec<f32> {
    let c0 = d as f64 / 2.0;
    // per blob: (amp, x table, y table, z table)
    let tables: Vec<_> = blobs
        .iter()
        .map(|b| {
            (
                b.amp,
                axis_table(b.center[0] + c0, b.sigma, d),
                axis_table(b.center[1] + c0, b.sigma, d),
                axis_table(b.center[2] + c0, b.sigma, d),
            )
        })
        .filter(|(_, x, y, z)| !(x.1.is_empty() || y.1.is_empty() || z.1.is_empty()))
        .collect();
    let mut vol = vec![0f32; d * d * d];
    vol.par_chunks_mut(d * d)
        .enumerate()
        .for_each(|(z, slice)| {
            for (amp, (x0, gx), (y0, gy), (z0, gz)) in &tables {
                if z < *z0 || z >= z0 + gz.len() {
                    continue;
                }
                let az = amp * gz[z - z0];
                for (j, gyv) in gy.iter().enumerate() {
                    let row = &mut slice[(y0 + j) * d + x0..(y0 + j) * d + x0 + gx.len()];
                    let azy = az * gyv;
                    for (v, gxv) in row.iter_mut().zip(gx) {
                        *v += (azy * gxv) as f32;
                    }
                }
            }
        });
    vol
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive renderer: every voxel, every blob, no truncation (the spec of `render_blobs`).
    fn render_naive(blobs: &[Blob], d: usize) -> Vec<f32> {
        let c0 = d as f64 / 2.0;
        let mut vol = vec![0f32; d * d * d];
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let p = [x as f64 - c0, y as f64 - c0, z as f64 - c0];
                    let v: f64 = blobs
                        .iter()
                        .map(|b| {
                            let r2 = (0..3).map(|k| (p[k] - b.center[k]).powi(2)).sum::<f64>();
                            b.amp * (-r2 / (2.0 * b.sigma * b.sigma)).exp()
                        })
                        .sum();
                    vol[(z * d + y) * d + x] = v as f32;
                }
            }
        }
        vol
    }

    #[test]
    fn fast_render_matches_naive() {
        let p = Phantom::new(PhantomKind::Circular1d, 32, 2.0, 3).unwrap();
        let mut blobs = p.blobs_at(&[1.0]).unwrap();
        // a blob half outside the box is clipped, not wrapped
        blobs.push(Blob {
            center: [15.2, -3.0, 1.0],
            sigma: 1.7,
            amp: 0.9,
            part: 0,
        });
        let fast = render_blobs(&blobs, 32);
        let slow = render_naive(&blobs, 32);
        let peak = slow.iter().cloned().fold(0f32, f32::max);
        // truncation at 4σ drops at most exp(−8) ≈ 3.4e-4 of a peak per blob; a few blobs overlap
        let tol = 2e-3 * peak;
        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
            assert!(
                (a - b).abs() <= tol,
                "voxel {i}: fast {a} naive {b} (tol {tol})"
            );
        }
    }

    #[test]
    fn rotation_helpers() {
        let r = axis_angle(normalize(AXIS), 0.7);
        let u = normalize(AXIS);
        let ru = matvec(&r, u);
        for k in 0..3 {
            assert!((ru[k] - u[k]).abs() < 1e-12);
        }
        let mut rng = StdRng::seed_from_u64(0);
        let q = random_rotation(&mut rng);
        for i in 0..3 {
            for j in 0..3 {
                let d = dot(q[i], q[j]);
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        let s = fibonacci_sphere(3, 10);
        assert!((norm(s) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(Phantom::new(PhantomKind::Linear1d, 15, 1.0, 0).is_err());
        assert!(Phantom::new(PhantomKind::Linear1d, 64, 0.0, 0).is_err());
        assert!(Phantom::new(PhantomKind::Discrete { k: 0 }, 64, 1.0, 0).is_err());
        let p = Phantom::new(PhantomKind::Linear1d, 32, 1.0, 0).unwrap();
        assert!(p.volume_at(&[1.5]).is_err());
        assert!(p.volume_at(&[0.5, 0.5]).is_err());
        assert!(p.volume_at(&[f64::NAN]).is_err());
        let p2 = Phantom::new(PhantomKind::Linear2d, 32, 1.0, 0).unwrap();
        assert!(p2.state_coords(10).is_err());
        assert_eq!(p2.state_coords(9).unwrap()[5], vec![0.5, 1.0]);
        let pd = Phantom::new(PhantomKind::Discrete { k: 4 }, 32, 1.0, 0).unwrap();
        assert!(pd.volume_at(&[4.0]).is_err());
        assert!(pd.volume_at(&[1.5]).is_err());
        assert!(pd.state_coords(3).is_err());
    }
}
