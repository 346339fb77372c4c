//! A heterogeneous phantom made from a real volume: a spherical domain of the base map slides along
//! a line while the rest stays put (`phantom --kind linear1d --base VOL.mrc`).
//!
//! Blob phantoms are nearly isotropic, which makes poses hard to identify (ab initio on them
//! mostly fails for that reason, not the search's). A real map with one moving domain keeps the
//! map's shape and gives a known one-dimensional motion.
//!
//! State t ∈ [0, 1]: `V_t(x) = B(x)·(1 − m(x)) + (B·m)(x − t·s)`, with B the base map, m a soft
//! sphere (1 inside the radius, a cosine edge 2 px wide) around the domain centre, s the shift at
//! t = 1; the moved part is resampled by trilinear interpolation (zero outside the box).

use crate::{Error, Result};

/// Width (px) of the mask's cosine edge.
const EDGE: f64 = 2.0;

/// A base map whose spherical domain slides along a line.
pub struct DomainMotion {
    base: Vec<f32>,
    d: usize,
    /// Domain centre in voxel coordinates (x, y, z) of the box (index order z, y, x in memory).
    center: [f64; 3],
    radius: f64,
    shift: [f64; 3],
    /// B·m, the part that moves.
    moving: Vec<f32>,
    /// B·(1 − m), the part that stays.
    fixed: Vec<f32>,
}

impl DomainMotion {
    /// `center`: voxel coordinates (x, y, z), or `None` for the automatic choice (see
    /// [`auto_center`]). `radius`, `shift` in pixels.
    pub fn new(
        base: Vec<f32>,
        d: usize,
        center: Option<[f64; 3]>,
        radius: f64,
        shift: [f64; 3],
    ) -> Result<Self> {
        if d == 0 || base.len() != d * d * d {
            return Err(Error::invalid(format!(
                "domain phantom: base map has {} voxels, not a {d}³ cube",
                base.len()
            )));
        }
        if !(radius > 0.0 && radius.is_finite()) || shift.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "domain phantom: radius must be positive and the shift finite",
            ));
        }
        if base.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("domain phantom: base map has NaN or inf"));
        }
        let center = match center {
            Some(c) => c,
            None => auto_center(&base, d, radius)?,
        };
        let (mut moving, mut fixed) = (vec![0f32; base.len()], vec![0f32; base.len()]);
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let i = (z * d + y) * d + x;
                    let r = dist([x as f64, y as f64, z as f64], center);
                    let m = mask(r, radius) as f32;
                    moving[i] = base[i] * m;
                    fixed[i] = base[i] - moving[i];
                }
            }
        }
        Ok(Self {
            base,
            d,
            center,
            radius,
            shift,
            moving,
            fixed,
        })
    }

    /// The map at state t (t = 0 is the base map).
    pub fn volume_at(&self, t: f64) -> Vec<f32> {
        let d = self.d;
        let s = [t * self.shift[0], t * self.shift[1], t * self.shift[2]];
        let mut out = self.fixed.clone();
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let p = [x as f64 - s[0], y as f64 - s[1], z as f64 - s[2]];
                    out[(z * d + y) * d + x] += trilinear(&self.moving, d, p);
                }
            }
        }
        out
    }

    /// The base map.
    pub fn base(&self) -> &[f32] {
        &self.base
    }

    /// Domain centre (voxel x, y, z), radius and shift at t = 1, for `phantom.txt`.
    pub fn describe(&self) -> String {
        format!(
            "kind: linear1d (domain of a base map)\ndomain_center_voxel_xyz: {:.2} {:.2} {:.2}\ndomain_radius_px: {}\nshift_at_t1_px_xyz: {} {} {}\nmask_edge_px: {EDGE}\n",
            self.center[0], self.center[1], self.center[2], self.radius, self.shift[0], self.shift[1], self.shift[2]
        )
    }
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// 1 inside `radius`, a cosine edge of [`EDGE`] px, 0 beyond.
fn mask(r: f64, radius: f64) -> f64 {
    if r <= radius {
        1.0
    } else if r >= radius + EDGE {
        0.0
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * (r - radius) / EDGE).cos())
    }
}

/// v at the (x, y, z) voxel position p, trilinear, zero outside the box.
fn trilinear(v: &[f32], d: usize, p: [f64; 3]) -> f32 {
    let f = [p[0].floor(), p[1].floor(), p[2].floor()];
    let w = [p[0] - f[0], p[1] - f[1], p[2] - f[2]];
    let mut acc = 0f64;
    for dz in 0..2 {
        for dy in 0..2 {
            for dx in 0..2 {
                let (x, y, z) = (f[0] as i64 + dx, f[1] as i64 + dy, f[2] as i64 + dz);
                if x < 0 || y < 0 || z < 0 || x >= d as i64 || y >= d as i64 || z >= d as i64 {
                    continue;
                }
                let wt = (if dx == 1 { w[0] } else { 1.0 - w[0] })
                    * (if dy == 1 { w[1] } else { 1.0 - w[1] })
                    * (if dz == 1 { w[2] } else { 1.0 - w[2] });
                acc += wt * v[(z as usize * d + y as usize) * d + x as usize] as f64;
            }
        }
    }
    acc as f32
}

/// The default domain centre: among the densest 10% of voxels (those whose sphere fits in the box,
/// when any does), the one farthest from the map's centre of (positive) mass, moved `radius/2`
/// back towards it — a peripheral piece of density whose sphere is mostly inside the molecule.
pub fn auto_center(base: &[f32], d: usize, radius: f64) -> Result<[f64; 3]> {
    let mut sorted: Vec<f32> = base.iter().copied().filter(|v| *v > 0.0).collect();
    if sorted.is_empty() {
        return Err(Error::invalid(
            "domain phantom: base map has no positive density to pick a domain from",
        ));
    }
    sorted.sort_by(f32::total_cmp);
    let thr = sorted[sorted.len() * 9 / 10];
    let (mut com, mut mass) = ([0f64; 3], 0f64);
    let pos = |i: usize| [(i % d) as f64, ((i / d) % d) as f64, (i / (d * d)) as f64];
    for (i, &v) in base.iter().enumerate() {
        if v > 0.0 {
            let p = pos(i);
            for q in 0..3 {
                com[q] += v as f64 * p[q];
            }
            mass += v as f64;
        }
    }
    com.iter_mut().for_each(|c| *c /= mass);
    // Prefer voxels whose whole sphere (with its edge) is inside the box.
    let margin = radius + EDGE;
    let inside = |i: usize| {
        pos(i)
            .iter()
            .all(|&c| c >= margin && c <= d as f64 - 1.0 - margin)
    };
    let dense = |i: &usize| base[*i] >= thr;
    let farthest = |cands: &mut dyn Iterator<Item = usize>| {
        cands.max_by(|&a, &b| dist(pos(a), com).total_cmp(&dist(pos(b), com)))
    };
    let far = farthest(&mut (0..base.len()).filter(dense).filter(|&i| inside(i)))
        .or_else(|| farthest(&mut (0..base.len()).filter(dense)))
        .expect("at least one voxel reaches the 90th percentile");
    let p = pos(far);
    let r = dist(p, com);
    let back = if r > 0.0 {
        (radius / 2.0).min(r) / r
    } else {
        0.0
    };
    Ok([
        p[0] + back * (com[0] - p[0]),
        p[1] + back * (com[1] - p[1]),
        p[2] + back * (com[2] - p[2]),
    ])
}
