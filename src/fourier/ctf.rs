//! The contrast transfer function, as the reference computes it (cryoDRGN `ctf.py`,
//! `compute_ctf`).
//!
//! ## Math
//! For a spatial frequency `s = (x, y)` in 1/Å, with `|s|² = x² + y²` and `α = atan2(y, x)`:
//!
//! - wavelength (Å) `λ = 12.2639 / √(V + 0.97845·10⁻⁶·V²)`, `V` the voltage in volts
//!   (the relativistic electron wavelength, `h / √(2meV(1 + eV/2mc²))`);
//! - defocus along `α`: `Δf(α) = ½·(Δf_u + Δf_v + (Δf_u − Δf_v)·cos(2(α − θ)))`, `θ` the
//!   astigmatism angle (radians; given in degrees), `Δf` in Å, positive for underfocus;
//! - phase `γ = 2π·(−½·Δf·λ·|s|² + ¼·C_s·λ³·|s|⁴) − φ`, `C_s` in Å (given in mm, ×10⁷), `φ` the
//!   phase shift (radians; given in degrees);
//! - `CTF = √(1 − w²)·sin γ − w·cos γ`, `w` the amplitude contrast ratio, then multiplied by the
//!   optional scale factor and by the optional envelope `exp(−B/4·|s|²)` (`B` in Å²).
//!
//! The computation runs in f32 in the reference's order of operations (the reference's tensors
//! are float32), so results agree with it to f32 rounding of `γ` (`ε·|γ|`).

use rayon::prelude::*;

use crate::fourier::lattice::Lattice;

/// CTF parameters of one image, in the reference's units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ctf {
    /// defocus U (Å)
    pub defocus_u_angstrom: f32,
    /// defocus V (Å)
    pub defocus_v_angstrom: f32,
    /// astigmatism angle (degrees), from the x axis towards y
    pub defocus_angle_deg: f32,
    /// accelerating voltage (kV)
    pub voltage_kv: f32,
    /// spherical aberration (mm)
    pub cs_mm: f32,
    /// amplitude contrast ratio `w`
    pub amplitude_contrast: f32,
    /// phase shift (degrees)
    pub phase_shift_deg: f32,
    /// optional multiplicative scale factor
    pub scalefactor: Option<f32>,
    /// optional B-factor of the envelope `exp(−B/4·|s|²)` (Å²)
    pub bfactor: Option<f32>,
}

impl Ctf {
    /// The parameters of a ctf.pkl row `[D, Apix, dfU, dfV, dfAng, kV, Cs, w, phase]` (D and
    /// Apix are not CTF parameters and are ignored here).
    pub fn from_row(row: &[f32; 9]) -> Self {
        Ctf {
            defocus_u_angstrom: row[2],
            defocus_v_angstrom: row[3],
            defocus_angle_deg: row[4],
            voltage_kv: row[5],
            cs_mm: row[6],
            amplitude_contrast: row[7],
            phase_shift_deg: row[8],
            scalefactor: None,
            bfactor: None,
        }
    }
}

/// Relativistic electron wavelength (Å) at `voltage_kv` kV:
/// `12.2639 / √(V + 0.97845·10⁻⁶·V²)` with `V = 1000·voltage_kv` volts (0.0197 Å at 300 kV).
pub fn wavelength_angstrom(voltage_kv: f32) -> f32 {
    let volt = voltage_kv * 1000.0;
    12.2639 / (volt + 0.97845e-6 * volt * volt).sqrt()
}

/// Evaluates the CTF at `freqs` `(N, 2)` (1/Å, `(x, y)`) into `out` `(N)`.
///
/// # Panics
/// If `out.len() != freqs.len()`.
pub fn compute_ctf_into(freqs: &[[f32; 2]], ctf: &Ctf, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        freqs.len(),
        "output must hold one value per frequency"
    );
    let deg = std::f32::consts::PI / 180.0;
    let lam = wavelength_angstrom(ctf.voltage_kv);
    let cs = ctf.cs_mm * 1.0e7;
    let dfang = ctf.defocus_angle_deg * deg;
    let phase = ctf.phase_shift_deg * deg;
    let (dfu, dfv, w) = (
        ctf.defocus_u_angstrom,
        ctf.defocus_v_angstrom,
        ctf.amplitude_contrast,
    );
    let sqrt_1mw2 = (1.0 - w * w).sqrt();
    let cs_lam3 = 0.25 * cs * (lam * lam * lam);
    let two_pi = 2.0 * std::f32::consts::PI;
    // cos 2(θ − α) with θ = atan2(y, x) = cos 2θ·cos 2α + sin 2θ·sin 2α, where cos 2θ =
    // (x² − y²)/s² and sin 2θ = 2xy/s² (θ = 0 at the origin, as atan2(0, 0)): no atan2 or cos
    // per frequency. Then sin γ and cos γ in one vectorized pass.
    let (sin2a, cos2a) = (2.0 * dfang).sin_cos();
    let gamma: Vec<f32> = freqs
        .iter()
        .map(|f| {
            let (x, y) = (f[0], f[1]);
            let s2 = x * x + y * y;
            let cos2 = if s2 > 0.0 {
                ((x * x - y * y) * cos2a + 2.0 * x * y * sin2a) / s2
            } else {
                cos2a
            };
            let df = 0.5 * (dfu + dfv + (dfu - dfv) * cos2);
            two_pi * (-0.5 * df * lam * s2 + cs_lam3 * (s2 * s2)) - phase
        })
        .collect();
    // sin γ straight into `out`, then combined in place.
    let mut cosg = vec![0.0; gamma.len()];
    crate::backend::cpu::trig::sin_cos(&gamma, out, &mut cosg);
    for ((o, f), &cg) in out.iter_mut().zip(freqs).zip(&cosg) {
        let mut c = sqrt_1mw2 * *o - w * cg;
        if let Some(sf) = ctf.scalefactor {
            c *= sf;
        }
        if let Some(b) = ctf.bfactor {
            c *= (-b / 4.0 * (f[0] * f[0] + f[1] * f[1])).exp();
        }
        *o = c;
    }
}

/// The CTF at `freqs` `(N, 2)` (1/Å), returning `(N)`.
pub fn compute_ctf(freqs: &[[f32; 2]], ctf: &Ctf) -> Vec<f32> {
    let mut out = vec![0.0; freqs.len()];
    compute_ctf_into(freqs, ctf, &mut out);
    out
}

/// The CTFs of a batch of images at shared `freqs` `(N, 2)` (1/Å), returning `(B, N)`.
/// Parallel over images.
pub fn compute_ctf_batch(freqs: &[[f32; 2]], ctfs: &[Ctf]) -> Vec<f32> {
    let n = freqs.len();
    let mut out = vec![0.0; ctfs.len() * n];
    if n == 0 {
        return out;
    }
    out.par_chunks_mut(n)
        .zip(ctfs.par_iter())
        .for_each(|(o, c)| compute_ctf_into(freqs, c, o));
    out
}

/// Lattice frequencies in 1/Å: `lattice.freqs2d() / apix` `(n², 2)` (apix in Å/pixel).
pub fn lattice_freqs_angstrom(lattice: &Lattice, apix: f32) -> Vec<[f32; 2]> {
    lattice
        .freqs2d()
        .iter()
        .map(|f| [f[0] / apix, f[1] / apix])
        .collect()
}

/// The CTF of one ctf.pkl row `[D, Apix, dfU, dfV, dfAng, kV, Cs, w, phase]` on `lattice`,
/// at `freqs2d / Apix` with the row's own Apix; returns `(n²)`, laid out as the lattice.
pub fn ctf_on_lattice(lattice: &Lattice, row: &[f32; 9]) -> Vec<f32> {
    compute_ctf(
        &lattice_freqs_angstrom(lattice, row[1]),
        &Ctf::from_row(row),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wavelength_at_300kv() {
        // 0.01969 Å is the textbook value at 300 kV.
        assert!((wavelength_angstrom(300.0) - 0.019687).abs() < 1e-5);
    }

    #[test]
    fn dc_is_minus_w() {
        let c = Ctf::from_row(&[64.0, 1.0, 1e4, 1.2e4, 30.0, 300.0, 2.7, 0.1, 0.0]);
        let v = compute_ctf(&[[0.0, 0.0]], &c);
        assert!((v[0] + 0.1).abs() < 1e-7);
    }
}
