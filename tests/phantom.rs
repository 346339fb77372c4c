//! Synthetic phantoms (known motions) and atomic-model density maps: the truth they carry is the
//! truth we measure the science against, so each property is checked on rendered voxels.

use cryofield::io::mrc::MrcFile;
use cryofield::io::pdb::{parse_mmcif, parse_pdb, read_model};
use cryofield::io::pkl::{read_pkl, PyValue};
use cryofield::simulate::pdb_density::{atom_weights, model_density, Centering, DensityParams};
use cryofield::simulate::phantom::{render_blobs, Phantom, PhantomKind};
use std::f64::consts::TAU;
use std::path::Path;
use std::process::Command;

const D: usize = 64;
const KINDS: [PhantomKind; 4] = [
    PhantomKind::Linear1d,
    PhantomKind::Circular1d,
    PhantomKind::Linear2d,
    PhantomKind::Discrete { k: 6 },
];

/// Centre of mass `(x, y, z)` in pixels from voxel D/2.
fn com(vol: &[f32], d: usize) -> [f64; 3] {
    let c = d as f64 / 2.0;
    let mut s = [0.0; 3];
    let mut m = 0.0;
    for (i, &v) in vol.iter().enumerate() {
        let v = v as f64;
        let (z, y, x) = (i / (d * d), (i / d) % d, i % d);
        s[0] += v * (x as f64 - c);
        s[1] += v * (y as f64 - c);
        s[2] += v * (z as f64 - c);
        m += v;
    }
    [s[0] / m, s[1] / m, s[2] / m]
}

fn mass(vol: &[f32]) -> f64 {
    vol.iter().map(|&v| v as f64).sum()
}

/// Relative L2 difference `|a − b| / |a|`.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// The rendered density of one part (0 body, 1.. moving domains) at `coord`.
fn part_volume(p: &Phantom, coord: &[f64], part: usize) -> Vec<f32> {
    let blobs: Vec<_> = p
        .blobs_at(coord)
        .unwrap()
        .into_iter()
        .filter(|b| b.part == part)
        .collect();
    assert!(!blobs.is_empty(), "part {part} has no blobs");
    render_blobs(&blobs, p.d())
}

fn sample_coords(p: &Phantom) -> Vec<Vec<f64>> {
    match p.kind() {
        PhantomKind::Linear1d => vec![vec![0.0], vec![0.37], vec![1.0]],
        PhantomKind::Circular1d => vec![vec![0.0], vec![1.3], vec![4.0]],
        PhantomKind::Linear2d => vec![vec![0.0, 1.0], vec![0.5, 0.2], vec![1.0, 1.0]],
        PhantomKind::Discrete { k } => (0..k).map(|i| vec![i as f64]).collect(),
    }
}

#[test]
fn volumes_are_finite_nonnegative_and_fit_in_the_box() {
    for kind in KINDS {
        let p = Phantom::new(kind, D, 2.0, 7).unwrap();
        for c in sample_coords(&p) {
            let v = p.volume_at(&c).unwrap();
            assert_eq!(v.len(), D * D * D);
            assert!(
                v.iter().all(|x| x.is_finite() && *x >= 0.0),
                "{kind:?} {c:?}"
            );
            let r_max = 0.4 * D as f64;
            let h = D as f64 / 2.0;
            let outside: f64 = v
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    let (z, y, x) = (i / (D * D), (i / D) % D, i % D);
                    let r2 =
                        (x as f64 - h).powi(2) + (y as f64 - h).powi(2) + (z as f64 - h).powi(2);
                    r2 > r_max * r_max
                })
                .map(|(_, &x)| x as f64)
                .sum();
            let frac = outside / mass(&v);
            assert!(
                frac < 1e-3,
                "{kind:?} at {c:?}: {frac} of the mass outside 0.4·D"
            );
        }
    }
}

#[test]
fn blobs_are_band_limited() {
    for kind in KINDS {
        let p = Phantom::new(kind, D, 2.0, 7).unwrap();
        assert!(p.sigma_px() >= 1.5);
        let blobs = p.blobs_at(&sample_coords(&p)[0]).unwrap();
        assert!(blobs.len() >= 30, "{} blobs", blobs.len());
        assert!(blobs.iter().all(|b| (b.sigma - p.sigma_px()).abs() < 1e-12));
        assert!(blobs
            .iter()
            .all(|b| b.center.iter().map(|c| c * c).sum::<f64>().sqrt() <= 0.31 * D as f64));
    }
}

#[test]
fn linear1d_domain_moves_linearly() {
    let p = Phantom::new(PhantomKind::Linear1d, D, 2.0, 1).unwrap();
    let ts = [0.0, 0.2, 0.45, 0.8, 1.0];
    let coms: Vec<[f64; 3]> = ts
        .iter()
        .map(|&t| com(&part_volume(&p, &[t], 1), D))
        .collect();
    let (c0, c1) = (coms[0], coms[4]);
    // intended displacement: from (−0.12, 0.20, 0.03)·D to (0.12, 0.20, −0.03)·D
    let want = [0.24 * D as f64, 0.0, -0.06 * D as f64];
    for k in 0..3 {
        assert!(
            (c1[k] - c0[k] - want[k]).abs() < 0.02,
            "axis {k}: {} vs {}",
            c1[k] - c0[k],
            want[k]
        );
    }
    for (t, c) in ts.iter().zip(&coms) {
        for k in 0..3 {
            let lin = c0[k] + t * (c1[k] - c0[k]);
            assert!(
                (c[k] - lin).abs() < 0.02,
                "t {t} axis {k}: {} vs {lin}",
                c[k]
            );
        }
    }
    // the body does not move
    let b0 = part_volume(&p, &[0.0], 0);
    let b1 = part_volume(&p, &[1.0], 0);
    assert!(b0 == b1, "the body moved");
}

#[test]
fn circular1d_domain_rotates_about_the_axis() {
    let p = Phantom::new(PhantomKind::Circular1d, D, 2.0, 2).unwrap();
    let u = p.axis().unwrap();
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let perp = |c: [f64; 3]| {
        let a = dot(c, u);
        [c[0] - a * u[0], c[1] - a * u[1], c[2] - a * u[2]]
    };
    let cross = |a: [f64; 3], b: [f64; 3]| {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    };
    let r0 = perp(com(&part_volume(&p, &[0.0], 1), D));
    let arm = 0.22 * D as f64;
    for i in 0..12 {
        let theta = TAU * i as f64 / 12.0 + 0.1;
        let c = com(&part_volume(&p, &[theta], 1), D);
        let r = perp(c);
        let dist = dot(r, r).sqrt();
        assert!(
            (dist - arm).abs() < 0.05,
            "θ {theta}: distance from axis {dist}, want {arm}"
        );
        assert!(
            dot(c, u).abs() < 0.05,
            "θ {theta}: centre leaves the plane: {}",
            dot(c, u)
        );
        let got = dot(cross(r0, r), u).atan2(dot(r0, r)).rem_euclid(TAU);
        let err = (got - theta).rem_euclid(TAU);
        let err = err.min(TAU - err);
        assert!(err < 5e-3, "θ {theta}: domain turned by {got}");
    }
    // periodic: θ and θ + 2π give the same volume (to rounding of sin/cos)
    let a = p.volume_at(&[0.7]).unwrap();
    let b = p.volume_at(&[0.7 + TAU]).unwrap();
    assert!(rel_diff(&a, &b) < 1e-6);
}

#[test]
fn linear2d_motions_are_independent() {
    let p = Phantom::new(PhantomKind::Linear2d, D, 2.0, 3).unwrap();
    let com_of = |c: [f64; 2], part| com(&part_volume(&p, &c, part), D);
    let dist = |a: [f64; 3], b: [f64; 3]| {
        ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
    };
    let step = (0.24f64.powi(2) + 0.06f64.powi(2)).sqrt() * D as f64;
    // t1 moves domain 1 only
    assert!((dist(com_of([0.0, 0.3], 1), com_of([1.0, 0.3], 1)) - step).abs() < 0.02);
    assert!(dist(com_of([0.0, 0.3], 2), com_of([1.0, 0.3], 2)) < 1e-9);
    // t2 moves domain 2 only
    assert!((dist(com_of([0.6, 0.0], 2), com_of([0.6, 1.0], 2)) - step).abs() < 0.02);
    assert!(dist(com_of([0.6, 0.0], 1), com_of([0.6, 1.0], 1)) < 1e-9);
    // the two directions are perpendicular
    let d1: Vec<f64> = (0..3)
        .map(|k| com_of([1.0, 0.0], 1)[k] - com_of([0.0, 0.0], 1)[k])
        .collect();
    let d2: Vec<f64> = (0..3)
        .map(|k| com_of([0.0, 1.0], 2)[k] - com_of([0.0, 0.0], 2)[k])
        .collect();
    let cos = (d1[0] * d2[0] + d1[1] * d2[1] + d1[2] * d2[2]) / (step * step);
    assert!(cos.abs() < 1e-2, "cos between motions {cos}");
}

#[test]
fn states_differ_repeat_and_conserve_mass() {
    for kind in KINDS {
        let p = Phantom::new(kind, D, 2.0, 4).unwrap();
        let n = match kind {
            PhantomKind::Linear2d => 9,
            PhantomKind::Discrete { k } => k,
            _ => 6,
        };
        let states = p.states(n).unwrap();
        assert_eq!(states.len(), n);
        let m0 = mass(&states[0].1);
        for (i, (c, v)) in states.iter().enumerate() {
            assert_eq!(c.len(), kind.dim());
            assert_eq!(
                &p.volume_at(c).unwrap(),
                v,
                "{kind:?}: same coordinate, different volume"
            );
            let m = mass(v);
            assert!(
                (m - m0).abs() < 1e-4 * m0,
                "{kind:?} state {i}: mass {m} vs {m0}"
            );
            for (j, (_, w)) in states.iter().enumerate().skip(i + 1) {
                let r = rel_diff(v, w);
                assert!(r > 0.05, "{kind:?}: states {i} and {j} differ by only {r}");
            }
        }
    }
    // a new phantom with the same seed is the same molecule; another seed is another molecule
    let a = Phantom::new(PhantomKind::Linear1d, D, 2.0, 4)
        .unwrap()
        .volume_at(&[0.5])
        .unwrap();
    let b = Phantom::new(PhantomKind::Linear1d, D, 2.0, 4)
        .unwrap()
        .volume_at(&[0.5])
        .unwrap();
    let c = Phantom::new(PhantomKind::Linear1d, D, 2.0, 5)
        .unwrap()
        .volume_at(&[0.5])
        .unwrap();
    assert!(a == b, "same seed, different molecule");
    assert!(rel_diff(&a, &c) > 0.3);
}

#[test]
fn state_sampling_is_even() {
    let p = Phantom::new(PhantomKind::Linear1d, 32, 2.0, 0).unwrap();
    assert_eq!(
        p.state_coords(5).unwrap(),
        vec![vec![0.0], vec![0.25], vec![0.5], vec![0.75], vec![1.0]]
    );
    let p = Phantom::new(PhantomKind::Circular1d, 32, 2.0, 0).unwrap();
    let c = p.state_coords(4).unwrap();
    for (i, ci) in c.iter().enumerate() {
        assert!((ci[0] - TAU * i as f64 / 4.0).abs() < 1e-12);
    }
}

#[test]
fn discrete_states_are_distinct_conformations() {
    let k = 10;
    let p = Phantom::new(PhantomKind::Discrete { k }, D, 2.0, 0).unwrap();
    let coms: Vec<[f64; 3]> = (0..k)
        .map(|i| com(&part_volume(&p, &[i as f64], 1), D))
        .collect();
    for i in 0..k {
        for j in i + 1..k {
            let d: f64 = (0..3)
                .map(|a| (coms[i][a] - coms[j][a]).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                d > 4.0 * p.sigma_px(),
                "states {i} and {j}: domain centres {d:.2} px apart"
            );
        }
    }
}

#[test]
fn phantom_is_chiral() {
    // mirror x → −x about voxel D/2 (voxel 0 has no mirror partner and is left out)
    let p = Phantom::new(PhantomKind::Circular1d, D, 2.0, 0).unwrap();
    let v = p.volume_at(&[0.0]).unwrap();
    let mut m = vec![0f32; v.len()];
    for z in 0..D {
        for y in 0..D {
            for x in 1..D {
                m[(z * D + y) * D + (D - x)] = v[(z * D + y) * D + x];
            }
        }
    }
    assert!(rel_diff(&v, &m) > 0.5, "phantom is nearly mirror-symmetric");
}

#[test]
fn cli_writes_volumes_and_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("circ");
    cryofield::cli::phantom::run(cryofield::cli::phantom::Args {
        kind: cryofield::cli::phantom::Kind::Circular1d,
        n_states: Some(8),
        d: 32,
        apix: 4.0,
        seed: 3,
        o: out.clone(),
        base: None,
        domain_center: None,
        domain_radius: None,
        shift: None,
    })
    .unwrap();
    let list = std::fs::read_to_string(out.join("vols.txt")).unwrap();
    let names: Vec<&str> = list.lines().collect();
    assert_eq!(names.len(), 8);
    let truth = read_pkl(out.join("truth.pkl")).unwrap();
    let arr = truth.as_array().unwrap();
    assert_eq!(arr.shape, vec![8, 1]);
    assert!(matches!(arr.data, cryofield::io::ArrayData::F32(_)));
    let t = arr.to_f64();
    let p = Phantom::new(PhantomKind::Circular1d, 32, 4.0, 3).unwrap();
    for (i, name) in names.iter().enumerate() {
        assert!((t[i] - TAU * i as f64 / 8.0).abs() < 1e-6);
        let f = MrcFile::open(out.join(name)).unwrap();
        assert_eq!((f.header.nx, f.header.ny, f.header.nz), (32, 32, 32));
        assert!((f.header.apix() - 4.0).abs() < 1e-6);
        // truth.pkl holds θ as f32; the volume at that θ matches to f32 rounding of θ
        let r = rel_diff(&f.read_all().unwrap(), &p.volume_at(&[t[i]]).unwrap());
        assert!(r < 1e-5, "{name}: differs from the phantom by {r}");
    }
    let desc = std::fs::read_to_string(out.join("phantom.txt")).unwrap();
    assert!(
        desc.contains("circular1d") && desc.contains("n_states: 8"),
        "{desc}"
    );
    // no temporary files left behind
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 8 + 3);
}

#[test]
fn binary_phantom_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("disc");
    let bin = env!("CARGO_BIN_EXE_cryofield");
    let o = Command::new(bin)
        .args([
            "phantom",
            "--kind",
            "discrete",
            "--n-states",
            "4",
            "-D",
            "32",
            "--Apix",
            "2.5",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let truth = read_pkl(out.join("truth.pkl")).unwrap();
    let PyValue::Array(a) = truth else {
        panic!("truth.pkl is not an array")
    };
    assert_eq!(a.shape, vec![4, 1]);
    assert_eq!(a.to_f64(), vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(
        std::fs::read_to_string(out.join("vols.txt"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    let o = Command::new(bin)
        .args(["phantom", "--kind", "linear2d", "--n-states", "10", "-o"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("square") && !err.contains("panicked"),
        "{err}"
    );
}

// ---- atomic models ----

/// Three atoms (C, N, O) at voxel centres of a 32³ box of 1.5 Å pixels (voxel = Å / 1.5):
/// (10, 12, 14), (20, 16, 12), (14, 22, 18) as (x, y, z).
const PDB3: &str = "\
REMARK   three atoms
ATOM      1  CA  ALA A   1      15.000  18.000  21.000  1.00  0.00           C
ATOM      2  N   ALA A   1      30.000  24.000  18.000  1.00  0.00           N
HETATM    3  O   HOH B   2      21.000  33.000  27.000  1.00  0.00           O
END
";

const CIF3: &str = "\
data_three
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.type_symbol
_atom_site.label_atom_id
_atom_site.label_comp_id
_atom_site.label_asym_id
_atom_site.label_seq_id
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.occupancy
ATOM   1 C CA ALA A 1 15.000 18.000 21.000 1.00
ATOM   2 N N  ALA A 1 30.000 24.000 18.000 1.00
HETATM 3 O O  HOH B . 21.000 33.000 27.000 1.00
#
";

const VOXELS: [[usize; 3]; 3] = [[10, 12, 14], [20, 16, 12], [14, 22, 18]];
const Z: [f64; 3] = [6.0, 7.0, 8.0];

fn density(atoms: &[cryofield::io::pdb::Atom], center: Centering) -> Vec<f32> {
    let w = atom_weights(atoms, Path::new("m")).unwrap();
    let p = DensityParams {
        d: 32,
        apix: 1.5,
        res: 4.5,
        center,
    };
    model_density(atoms, &w, &p).unwrap().vol
}

#[test]
fn pdb_density_peaks_at_atoms_with_mass_by_atomic_number() {
    let atoms = parse_pdb(PDB3, Path::new("three.pdb")).unwrap();
    assert_eq!(atoms.len(), 3);
    let v = density(&atoms, Centering::None);
    let d = 32;
    let at = |x: usize, y: usize, z: usize| v[(z * d + y) * d + x];
    for (a, &[x, y, z]) in VOXELS.iter().enumerate() {
        let peak = at(x, y, z);
        for dz in -1i32..=1 {
            for dy in -1i32..=1 {
                for dx in -1i32..=1 {
                    if (dx, dy, dz) != (0, 0, 0) {
                        let n = at(
                            (x as i32 + dx) as usize,
                            (y as i32 + dy) as usize,
                            (z as i32 + dz) as usize,
                        );
                        assert!(
                            n < peak,
                            "atom {a}: neighbour ({dx},{dy},{dz}) {n} ≥ peak {peak}"
                        );
                    }
                }
            }
        }
        // mass within 3 voxels of the atom ∝ its atomic number (σ = 4.5/(π√2)/1.5 ≈ 0.68 px, so
        // the ±3.5-voxel cube holds all but ~1e-7 of it, and the other atoms are ≥ 6 voxels away)
        let mut m = 0.0;
        for zz in z - 3..=z + 3 {
            for yy in y - 3..=y + 3 {
                for xx in x - 3..=x + 3 {
                    m += at(xx, yy, zz) as f64;
                }
            }
        }
        assert!(
            (m - Z[a]).abs() < 1e-4 * Z[a],
            "atom {a}: integral {m}, want {}",
            Z[a]
        );
    }
    assert!((mass(&v) - 21.0).abs() < 1e-4 * 21.0);
    // centred by mass: the map's centre of mass is the box centre
    let vc = density(&atoms, Centering::Mass);
    let c = com(&vc, 32);
    assert!(c.iter().all(|x| x.abs() < 1e-3), "centre of mass {c:?}");
}

#[test]
fn mmcif_gives_the_same_volume_as_pdb() {
    let a = parse_pdb(PDB3, Path::new("three.pdb")).unwrap();
    let b = parse_mmcif(CIF3, Path::new("three.cif")).unwrap();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.pos, &x.element, &x.name, x.hetatm),
            (y.pos, &y.element, &y.name, y.hetatm)
        );
    }
    assert!(
        density(&a, Centering::Mass) == density(&b, Centering::Mass),
        "PDB and mmCIF maps differ"
    );
}

#[test]
fn malformed_models_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.pdb");
    std::fs::write(&bad, PDB3.replace("24.000", "24.0?0")).unwrap();
    let e = read_model(&bad).unwrap_err().to_string();
    assert!(e.contains("broken.pdb") && e.contains("line 3"), "{e}");
    let badc = dir.path().join("broken.cif");
    std::fs::write(&badc, CIF3.replace("33.000", "3e3e")).unwrap();
    let e = read_model(&badc).unwrap_err().to_string();
    assert!(
        e.contains("broken.cif") && e.contains("line 16") && e.contains("3e3e"),
        "{e}"
    );
    let unknown = dir.path().join("xx.pdb");
    std::fs::write(&unknown, PDB3.replace("           O\n", "          XX\n")).unwrap();
    let atoms = read_model(&unknown).unwrap();
    let e = atom_weights(&atoms, &unknown).unwrap_err().to_string();
    assert!(
        e.contains("xx.pdb") && e.contains("line 4") && e.contains("Xx"),
        "{e}"
    );
    // through the binary: clean failure, no output written
    let out = dir.path().join("o.mrc");
    let o = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .arg("pdb2mrc")
        .arg(&bad)
        .args(["-D", "32", "--Apix", "1.5", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("broken.pdb")
            && err.contains("line 3")
            && !err.contains("panicked"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn binary_pdb2mrc_writes_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("three.cif");
    std::fs::write(&model, CIF3).unwrap();
    let out = dir.path().join("three.mrc");
    let o = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .arg("pdb2mrc")
        .arg(&model)
        .args([
            "-D", "32", "--Apix", "1.5", "--res", "4.5", "--center", "none", "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = MrcFile::open(&out).unwrap();
    assert_eq!((f.header.nx, f.header.nz, f.header.ispg), (32, 32, 1));
    assert!((f.header.apix() - 1.5).abs() < 1e-6);
    let atoms = parse_mmcif(CIF3, &model).unwrap();
    assert!(
        f.read_all().unwrap() == density(&atoms, Centering::None),
        "written map differs"
    );
}

/// Two Gaussian blobs on the x axis of a 32³ box: a fixed one at the centre and one at +8 px.
fn two_blob_base(d: usize) -> Vec<f32> {
    let c = d as f64 / 2.0;
    let mut v = vec![0f32; d * d * d];
    for (i, x) in v.iter_mut().enumerate() {
        let (z, y, xx) = ((i / (d * d)) as f64, ((i / d) % d) as f64, (i % d) as f64);
        let g = |cx: f64| {
            (-((xx - cx).powi(2) + (y - c).powi(2) + (z - c).powi(2)) / (2.0 * 1.5f64.powi(2)))
                .exp()
        };
        *x = (g(c) + g(c + 8.0)) as f32;
    }
    v
}

/// `phantom --base`: the domain around the second blob slides by the shift (its centre of mass
/// moves by t·s), the rest of the map does not change, mass is conserved, t = 0 is the base map.
#[test]
fn base_map_domain_slides_by_the_shift() {
    use cryofield::simulate::domain::DomainMotion;
    let d = 32;
    let base = two_blob_base(d);
    let c = d as f64 / 2.0;
    let m = DomainMotion::new(
        base.clone(),
        d,
        Some([c + 8.0, c, c]),
        4.0,
        [3.0, -2.0, 0.0],
    )
    .unwrap();
    let v0 = m.volume_at(0.0);
    let err0 = v0
        .iter()
        .zip(&base)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err0 < 1e-6, "t = 0 differs from the base map by {err0}");
    // The domain's part: voxels with x > c + 4 (the fixed blob's tail there is ~e^-3.6).
    let domain_com = |v: &[f32]| {
        let part: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| if (i % d) as f64 > c + 4.0 { x } else { 0.0 })
            .collect();
        com(&part, d)
    };
    let (a, b) = (domain_com(&v0), domain_com(&m.volume_at(1.0)));
    let moved = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    for (q, want) in [3.0, -2.0, 0.0].iter().enumerate() {
        assert!(
            (moved[q] - want).abs() < 0.15,
            "domain moved {moved:?}, want [3, -2, 0]"
        );
    }
    let half = m.volume_at(0.5);
    let (h, _) = (domain_com(&half), ());
    assert!(
        (h[0] - a[0] - 1.5).abs() < 0.15,
        "t = 0.5 moved {}",
        h[0] - a[0]
    );
    // The fixed blob's neighbourhood is untouched; mass is conserved.
    let v1 = m.volume_at(1.0);
    for (i, (&p, &q)) in v0.iter().zip(&v1).enumerate() {
        if ((i % d) as f64) < c + 1.0 {
            assert!(
                (p - q).abs() < 1e-3,
                "voxel {i} far from the domain changed: {p} vs {q}"
            );
        }
    }
    assert!((mass(&v1) / mass(&v0) - 1.0).abs() < 1e-3);
}

/// The CLI: `--base` writes n states, vols.txt, truth.pkl (t evenly in [0, 1]) and the domain in
/// phantom.txt; a non-linear1d kind or a missing map is a clear error.
#[test]
fn phantom_cli_base_map() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 32;
    let base = tmp.path().join("base.mrc");
    cryofield::io::mrc::write_mrc(&base, &two_blob_base(d), (d, d, d), 2.5, true).unwrap();
    let bin = env!("CARGO_BIN_EXE_cryofield");
    let out = tmp.path().join("ph");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let o = run(&[
        "phantom",
        "--kind",
        "linear1d",
        "--base",
        base.to_str().unwrap(),
        "--n-states",
        "5",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = std::fs::read_to_string(out.join("vols.txt")).unwrap();
    assert_eq!(list.lines().count(), 5);
    let f = MrcFile::open(out.join("vol_004.mrc")).unwrap();
    assert_eq!((f.header.nx, f.header.ny, f.header.nz), (d, d, d));
    let truth = match read_pkl(out.join("truth.pkl")).unwrap() {
        PyValue::Array(a) => a.to_f32(),
        other => panic!("truth.pkl: {other:?}"),
    };
    assert_eq!(truth, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    let desc = std::fs::read_to_string(out.join("phantom.txt")).unwrap();
    assert!(desc.contains("domain_center_voxel_xyz"), "{desc}");
    let bad = run(&[
        "phantom",
        "--kind",
        "circular1d",
        "--base",
        base.to_str().unwrap(),
        "-o",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("linear1d"));
    let missing = run(&[
        "phantom",
        "--kind",
        "linear1d",
        "--base",
        "/nonexistent/base.mrc",
        "-o",
        tmp.path().join("y").to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/base.mrc"));
}
