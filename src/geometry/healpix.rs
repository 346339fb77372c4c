//! HEALPix pixel centres (Górski et al. 2005) in the nested and ring schemes, computed as
//! healpy / HEALPix C++ (`T_Healpix_Base::pix2loc`) compute them, operation for operation.
//!
//! The reference reads nested-scheme angles for `nside = 2..=128` from its shipped
//! `healpy_grid.json` and asks healpy for any other `nside` (so `nside = 1`, the base grid). That
//! file agrees with healpy to one ulp; [`pix2ang_nest`] reproduces both to within one ulp.
//!
//! Angles: `theta` is the colatitude in `[0, π]` (radians), `phi` the longitude in `[0, 2π)`.

use std::f64::consts::{FRAC_PI_2, PI};

/// Face offsets of the twelve base pixels: ring offset (`jrll`) and longitude offset (`jpll`).
const JRLL: [u64; 12] = [2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4];
const JPLL: [i64; 12] = [1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7];

/// Number of pixels on the sphere, `12·nside²`.
pub fn npix(nside: u64) -> u64 {
    12 * nside * nside
}

/// Every other bit of `v`, starting at bit 0, packed together (the inverse of bit interleaving).
fn compress_bits(mut v: u64) -> u64 {
    v &= 0x5555_5555_5555_5555;
    v = (v | (v >> 1)) & 0x3333_3333_3333_3333;
    v = (v | (v >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    v = (v | (v >> 4)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    (v | (v >> 16)) & 0x0000_0000_ffff_ffff
}

/// `theta` from `z = cos θ`, using `sin θ` where HEALPix has it (near the poles) for accuracy.
fn theta_of(z: f64, sth: Option<f64>) -> f64 {
    match sth {
        Some(s) => s.atan2(z),
        None => z.acos(),
    }
}

/// Centre `(theta, phi)` (radians) of nested-scheme pixel `ipix`, as `healpy.pix2ang(nside, ipix,
/// nest=True)`.
///
/// # Panics
/// If `nside` is not a power of two or `ipix >= 12·nside²`.
pub fn pix2ang_nest(nside: u64, ipix: u64) -> (f64, f64) {
    assert!(
        nside.is_power_of_two(),
        "nested HEALPix needs nside a power of two, got {nside}"
    );
    assert!(
        ipix < npix(nside),
        "pixel {ipix} out of range for nside {nside}"
    );
    let npface = nside * nside;
    let face = (ipix / npface) as usize;
    let ipf = ipix % npface;
    let ix = compress_bits(ipf) as i64;
    let iy = compress_bits(ipf >> 1) as i64;
    let ns = nside as i64;
    let fact2 = 4.0 / npix(nside) as f64;
    let fact1 = (2 * nside) as f64 * fact2;

    let jr = JRLL[face] as i64 * ns - ix - iy - 1;
    let (nr, z, sth) = if jr < ns {
        let tmp = (jr * jr) as f64 * fact2;
        let z = 1.0 - tmp;
        (jr, z, (z > 0.99).then(|| (tmp * (2.0 - tmp)).sqrt()))
    } else if jr > 3 * ns {
        let nr = 4 * ns - jr;
        let tmp = (nr * nr) as f64 * fact2;
        let z = tmp - 1.0;
        (nr, z, (z < -0.99).then(|| (tmp * (2.0 - tmp)).sqrt()))
    } else {
        (ns, (2 * ns - jr) as f64 * fact1, None)
    };
    let mut t = JPLL[face] * nr + ix - iy;
    if t < 0 {
        t += 8 * nr;
    } else if t >= 8 * nr {
        t -= 8 * nr;
    }
    let phi = if nr == ns {
        0.75 * FRAC_PI_2 * t as f64 * fact1
    } else {
        (0.5 * FRAC_PI_2 * t as f64) / nr as f64
    };
    (theta_of(z, sth), phi)
}

/// Centre `(theta, phi)` (radians) of ring-scheme pixel `ipix`, as `healpy.pix2ang(nside, ipix)`.
///
/// # Panics
/// If `nside == 0` or `ipix >= 12·nside²`.
pub fn pix2ang_ring(nside: u64, ipix: u64) -> (f64, f64) {
    assert!(nside > 0, "nside must be positive");
    let np = npix(nside);
    assert!(ipix < np, "pixel {ipix} out of range for nside {nside}");
    let ncap = 2 * nside * (nside - 1);
    let fact2 = 4.0 / np as f64;
    let fact1 = (2 * nside) as f64 * fact2;
    if ipix < ncap {
        // North polar cap.
        let iring = (1 + (1 + 2 * ipix).isqrt()) >> 1;
        let iphi = ipix + 1 - 2 * iring * (iring - 1);
        let tmp = (iring * iring) as f64 * fact2;
        let z = 1.0 - tmp;
        let sth = (z > 0.99).then(|| (tmp * (2.0 - tmp)).sqrt());
        let phi = (iphi as f64 - 0.5) * FRAC_PI_2 / iring as f64;
        (theta_of(z, sth), phi)
    } else if ipix < np - ncap {
        // Equatorial belt.
        let nl4 = 4 * nside;
        let ip = ipix - ncap;
        let tmp = ip / nl4;
        let iring = tmp + nside;
        let iphi = ip - nl4 * tmp + 1;
        let fodd = if (iring + nside) & 1 == 1 { 1.0 } else { 0.5 };
        let z = (2 * nside) as f64 - iring as f64;
        let phi = (iphi as f64 - fodd) * PI * 0.75 * fact1;
        (theta_of(z * fact1, None), phi)
    } else {
        // South polar cap.
        let ip = np - ipix;
        let iring = (1 + (2 * ip - 1).isqrt()) >> 1;
        let iphi = 4 * iring + 1 - (ip - 2 * iring * (iring - 1));
        let tmp = (iring * iring) as f64 * fact2;
        let z = tmp - 1.0;
        let sth = (z < -0.99).then(|| (tmp * (2.0 - tmp)).sqrt());
        let phi = (iphi as f64 - 0.5) * FRAC_PI_2 / iring as f64;
        (theta_of(z, sth), phi)
    }
}

/// Unit vector of the direction `(theta, phi)`: `(sin θ cos φ, sin θ sin φ, cos θ)`.
pub fn ang2vec(theta: f64, phi: f64) -> [f64; 3] {
    let (st, ct) = theta.sin_cos();
    let (sp, cp) = phi.sin_cos();
    [st * cp, st * sp, ct]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_deinterleaves() {
        // ipf = 0b100111: even bits (0,2,4) = 1,1,0 -> x = 0b011; odd bits (1,3,5) = 1,0,1 -> 0b101.
        assert_eq!(compress_bits(0b10_0111), 0b011);
        assert_eq!(compress_bits(0b10_0111 >> 1), 0b101);
    }

    #[test]
    fn nest_and_ring_cover_the_same_centres() {
        for nside in [1u64, 2, 4, 8] {
            let key = |(t, p): (f64, f64)| ((t * 1e9).round() as i64, (p * 1e9).round() as i64);
            let mut a: Vec<_> = (0..npix(nside))
                .map(|i| key(pix2ang_nest(nside, i)))
                .collect();
            let mut b: Vec<_> = (0..npix(nside))
                .map(|i| key(pix2ang_ring(nside, i)))
                .collect();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "nside {nside}");
        }
    }
}
