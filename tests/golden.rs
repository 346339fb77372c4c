//! Goldens made by the reference implementation (cryoDRGN 4.3.1), `../shared/data/golden/MANIFEST.txt`.
//! Tolerances: float32 rounding of transforms whose values reach ~|sum of pixels|, so relative to the
//! array's largest magnitude.

use cryofield::fourier::downsample::downsample_images;
use cryofield::fourier::fft::{ht2_center, htn_center, iht2_center, symmetrize_ht};
use cryofield::io::cs::CsFile;
use cryofield::io::mrc::MrcFile;
use cryofield::io::npy::read_npy;
use cryofield::io::star::StarFile;
use cryofield::meta::{CtfOverrides, CtfParams, Poses};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// Assert `|a − b| ≤ atol + rtol·max|b|` elementwise, reporting the first mismatch.
fn assert_close(what: &str, a: &[f32], b: &[f32], rtol: f32, atol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let tol = atol + rtol * scale;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol,
            "{what}: first mismatch at {i}: got {x}, reference {y} (tolerance {tol})"
        );
    }
}

fn first_images(n: usize) -> (Vec<f32>, usize) {
    let f = MrcFile::open(data("hand.mrcs")).unwrap();
    let d = f.header.nx;
    let mut v = Vec::new();
    for i in 0..n {
        v.extend(f.image(i).unwrap());
    }
    (v, d)
}

#[test]
fn ht2_center_matches_reference() {
    let (imgs, d) = first_images(4);
    let golden = read_npy(data("golden/ht2_center.npy")).unwrap();
    assert_eq!(golden.shape, vec![4, d, d]);
    assert_close(
        "ht2_center",
        &ht2_center(&imgs, d),
        &golden.to_f32(),
        1e-6,
        0.0,
    );
}

#[test]
fn symmetrized_ht_matches_reference() {
    let (imgs, d) = first_images(4);
    let golden = read_npy(data("golden/ht2_symmetrized.npy")).unwrap();
    assert_eq!(golden.shape, vec![4, d + 1, d + 1]);
    let sym = symmetrize_ht(&ht2_center(&imgs, d), d);
    assert_close("symmetrize_ht", &sym, &golden.to_f32(), 1e-6, 0.0);
}

#[test]
fn iht2_round_trip_matches_reference() {
    let (imgs, d) = first_images(4);
    let golden = read_npy(data("golden/iht2_roundtrip.npy")).unwrap();
    let rt = iht2_center(&ht2_center(&imgs, d), d);
    assert_close("iht2 round trip", &rt, &golden.to_f32(), 1e-5, 0.0);
    assert_close("iht2 round trip vs input", &rt, &imgs, 1e-5, 0.0);
}

#[test]
fn htn_center_matches_reference() {
    let f = MrcFile::open(data("hand-vol.mrc")).unwrap();
    let d = f.header.nx;
    let golden = read_npy(data("golden/htn_center_vol.npy")).unwrap();
    assert_eq!(golden.shape, vec![d, d, d]);
    let ht = htn_center(&f.read_all().unwrap(), d);
    assert_close("htn_center", &ht, &golden.to_f32(), 1e-6, 0.0);
}

#[test]
fn downsampled_stack_matches_reference() {
    let f = MrcFile::open(data("hand.mrcs")).unwrap();
    let d = f.header.nx;
    let golden = MrcFile::open(data("golden/hand.32.mrcs")).unwrap();
    assert_eq!((golden.header.nx, golden.n_images()), (32, f.n_images()));
    let ours = downsample_images(&f.read_all().unwrap(), d, 32);
    assert_close("downsample", &ours, &golden.read_all().unwrap(), 1e-5, 0.0);
}

#[test]
fn downsampled_volume_via_cli_matches_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vol.32.mrc");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(["downsample", "--is-vol", "-D", "32", "-o"])
        .arg(&out)
        .arg(data("hand-vol.mrc"))
        .status()
        .unwrap();
    assert!(st.success());
    let ours = MrcFile::open(&out).unwrap();
    let golden = MrcFile::open(data("golden/hand-vol.32.mrc")).unwrap();
    assert_eq!(
        (ours.header.nx, ours.header.ny, ours.header.nz),
        (32, 32, 32)
    );
    assert_close(
        "downsample --is-vol",
        &ours.read_all().unwrap(),
        &golden.read_all().unwrap(),
        1e-5,
        0.0,
    );
}

fn assert_poses(ours: &Poses, golden: &Poses, rot_atol: f32, trans_atol: f32) {
    assert_eq!(ours.len(), golden.len());
    let r: Vec<f32> = ours.rots.iter().flatten().copied().collect();
    let g: Vec<f32> = golden.rots.iter().flatten().copied().collect();
    assert_close("rotations", &r, &g, 0.0, rot_atol);
    let t: Vec<f32> = ours
        .trans
        .as_ref()
        .unwrap()
        .iter()
        .flatten()
        .copied()
        .collect();
    let gt: Vec<f32> = golden
        .trans
        .as_ref()
        .unwrap()
        .iter()
        .flatten()
        .copied()
        .collect();
    assert_close("translations", &t, &gt, 0.0, trans_atol);
}

#[test]
fn poses_from_relion31_star_match_reference() {
    let star = StarFile::read(data("relion31.star")).unwrap();
    let ours = Poses::from_star(&star, Some(256), None).unwrap();
    let golden = Poses::load(data("golden/pose.relion31.pkl")).unwrap();
    assert_poses(&ours, &golden, 1e-6, 1e-8);
}

#[test]
fn ctf_from_relion31_star_matches_reference() {
    let star = StarFile::read(data("relion31.star")).unwrap();
    let ours = CtfParams::from_star(&star, None, None, &CtfOverrides::default()).unwrap();
    let golden = CtfParams::load(data("golden/ctf.relion31.pkl")).unwrap();
    assert_eq!(ours.rows, golden.rows);
}

#[test]
fn poses_from_cryosparc_match_reference() {
    let cs = CsFile::read(data("cryosparc_P12_J24_001_particles.cs")).unwrap();
    let ours = Poses::from_cs(&cs.records, &cs.path, Some(180), false, false).unwrap();
    let golden = Poses::load(data("golden/pose.csparc.pkl")).unwrap();
    assert_poses(&ours, &golden, 2e-6, 1e-7);
}

#[test]
fn ctf_from_cryosparc_matches_reference() {
    let cs = CsFile::read(data("cryosparc_P12_J24_001_particles.cs")).unwrap();
    let ours = CtfParams::from_cs(&cs.records, &cs.path, None, None).unwrap();
    let golden = CtfParams::load(data("golden/ctf.csparc.pkl")).unwrap();
    let a: Vec<f32> = ours.rows.iter().flatten().copied().collect();
    let b: Vec<f32> = golden.rows.iter().flatten().copied().collect();
    // per-column relative tolerance of float32 rounding after the rad→deg conversion
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-6 * y.abs().max(1.0),
            "ctf row {} column {}: got {x}, reference {y}",
            i / 9,
            i % 9
        );
    }
}
