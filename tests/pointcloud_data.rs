//! Point-cloud data preparation (issue 25, spec §1, §3, acceptance checks 9–10): the Gaussian
//! mixture EM, heavy-atom selection, `pc-prepare` on PDB / mmCIF / multi-model / folder / `.npy`
//! inputs, `pc-observe`, the round trip tools/pseudo_atomic_pdb.py → pc-prepare → pc-observe →
//! pc-eval, and errors on malformed inputs that name the file and the field.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, run_ok};
use cryofield::io::array::{ArrayData, NdArray};
use cryofield::io::npy::{write_npy, write_npz};
use cryofield::io::pdb::{parse_pdb, read_models, Atom};
use cryofield::pointcloud::data::{GroundTruth, Observations};
use cryofield::pointcloud::gmm_fit::{fit_gmm, Covariance, GmmFitParams};
use cryofield::pointcloud::prepare::heavy_atoms;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `tools/pseudo_atomic_pdb.py` with `args` into `out`.
fn pseudo_pdb(out: &Path, args: &[&str]) {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/pseudo_atomic_pdb.py");
    let o = Command::new("python3")
        .arg(tool)
        .args(args)
        .args(["-o", s(out)])
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Gaussian blobs: `per` points around each centre with standard deviation `sd` per axis.
fn blobs(centres: &[[f64; 3]], per: usize, sd: [f64; 3], seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = Normal::new(0.0, 1.0).unwrap();
    let mut v = Vec::new();
    for c in centres {
        for _ in 0..per {
            for d in 0..3 {
                v.push(c[d] + sd[d] * n.sample(&mut rng));
            }
        }
    }
    v
}

/// max over consecutive entries of (previous − next), i.e. the largest decrease.
fn largest_decrease(trace: &[f64]) -> f64 {
    trace
        .windows(2)
        .map(|w| w[0] - w[1])
        .fold(f64::NEG_INFINITY, f64::max)
}

const CENTRES: [[f64; 3]; 4] = [
    [0.0, 0.0, 0.0],
    [10.0, 0.0, 0.0],
    [0.0, 10.0, 0.0],
    [0.0, 0.0, 10.0],
];

#[test]
fn tied_em_recovers_separated_clusters() {
    let x = blobs(&CENTRES, 150, [0.5, 1.0, 0.7], 1);
    let p = GmmFitParams::new(4, Covariance::Tied, 3);
    let fit = fit_gmm(&x, &p).unwrap();
    assert!(fit.converged && fit.n_iter < 100);
    assert!(
        largest_decrease(&fit.log_likelihood) <= 1e-9,
        "{:?}",
        fit.log_likelihood
    );
    for c in CENTRES {
        let best = fit
            .means
            .chunks(3)
            .map(|m| (0..3).map(|d| (m[d] - c[d]).powi(2)).sum::<f64>().sqrt())
            .fold(f64::INFINITY, f64::min);
        assert!(best < 0.2, "centre {c:?} recovered to {best}");
    }
    for w in &fit.weights {
        assert!((w - 0.25).abs() < 1e-6, "{:?}", fit.weights);
    }
    // one shared covariance ≈ diag(0.25, 1, 0.49) (150 points per cluster: ±20 %)
    assert_eq!(fit.covariances.len(), 1);
    let cov = fit.covariance(2);
    for (d, v) in [0.25, 1.0, 0.49].iter().enumerate() {
        assert!((cov[4 * d] / v - 1.0).abs() < 0.2, "{cov:?}");
    }
    assert!(cov[1].abs() < 0.1 && cov[2].abs() < 0.1 && cov[5].abs() < 0.1);
    // the mean log-likelihood of the returned parameters is the trace's last entry
    let ll = fit.mean_log_likelihood(&x).unwrap();
    assert!((ll - fit.log_likelihood.last().unwrap()).abs() < 1e-9);
    // deterministic for a seed
    assert_eq!(fit_gmm(&x, &p).unwrap(), fit);
    // bad input
    assert!(fit_gmm(&x[..9], &p).is_err(), "K > A");
    assert!(fit_gmm(&x[..10], &p).is_err(), "not (A, 3)");
    let mut bad = x.clone();
    bad[7] = f64::NAN;
    assert!(fit_gmm(&bad, &p).is_err());
}

#[test]
fn full_em_recovers_each_covariance() {
    let mut x = blobs(&CENTRES[..1], 400, [0.3, 1.0, 0.5], 2);
    x.extend(blobs(&CENTRES[1..2], 200, [1.0, 0.2, 0.4], 3));
    let fit = fit_gmm(&x, &GmmFitParams::new(2, Covariance::Full, 0)).unwrap();
    assert!(largest_decrease(&fit.log_likelihood) <= 1e-9);
    assert_eq!(fit.covariances.len(), 2);
    let first = if fit.means[0] < 5.0 { 0 } else { 1 };
    let (w0, c0, c1) = (
        fit.weights[first],
        fit.covariance(first),
        fit.covariance(1 - first),
    );
    assert!((w0 - 2.0 / 3.0).abs() < 1e-6, "{w0}");
    for (d, v) in [0.09, 1.0, 0.25].iter().enumerate() {
        assert!((c0[4 * d] / v - 1.0).abs() < 0.2, "{c0:?}");
    }
    for (d, v) in [1.0, 0.04, 0.16].iter().enumerate() {
        assert!((c1[4 * d] / v - 1.0).abs() < 0.25, "{c1:?}");
    }
}

/// Spec check 9: tied EM, 64 components, on a pseudo-atomic model.
#[test]
fn tied_em_on_pseudo_atomic_model() {
    let dir = tempfile::tempdir().unwrap();
    let pdb = dir.path().join("m.pdb");
    pseudo_pdb(&pdb, &["--models", "1", "--seed", "4"]);
    let models = read_models(&pdb).unwrap();
    assert_eq!(models.len(), 1);
    let x = heavy_atoms(&models[0]);
    let a = x.len() / 3;
    assert!((1500..=4000).contains(&a), "{a} heavy atoms");
    let fit = fit_gmm(&x, &GmmFitParams::new(64, Covariance::Tied, 0)).unwrap();
    let tr = &fit.log_likelihood;
    assert!(tr.len() >= 3, "{tr:?}");
    assert!(largest_decrease(tr) <= 1e-9 * tr[0].abs(), "{tr:?}");
    assert!(tr.last().unwrap() > &tr[0]);
}

fn atom(name: &str, res: &str, seq: i64, alt: &str, element: &str, x: f64) -> Atom {
    Atom {
        name: name.into(),
        res_name: res.into(),
        chain: "A".into(),
        res_seq: Some(seq),
        element: element.into(),
        pos: [x, 0.0, 0.0],
        occupancy: 1.0,
        b_factor: 0.0,
        alt_loc: alt.into(),
        hetatm: false,
        line: 0,
    }
}

#[test]
fn heavy_atoms_drop_hydrogens_water_and_later_altlocs() {
    let atoms = [
        atom("N", "ALA", 1, "", "N", 1.0),
        atom("H", "ALA", 1, "", "H", 2.0),
        atom("D1", "ALA", 1, "", "D", 3.0),
        atom("CB", "ALA", 1, "A", "C", 4.0),
        atom("CB", "ALA", 1, "B", "C", 5.0),
        atom("CB", "SER", 2, "B", "C", 6.0), // first altloc of residue 2 is B
        atom("OG", "SER", 2, "C", "O", 7.0),
        atom("O", "HOH", 3, "", "O", 8.0),
        atom("O", "WAT", 4, "", "O", 9.0),
        atom("O", "DOD", 5, "", "O", 10.0),
        atom("FE", "HEM", 6, "", "Fe", 11.0),
    ];
    let xs: Vec<f64> = heavy_atoms(&atoms).chunks(3).map(|p| p[0]).collect();
    assert_eq!(xs, vec![1.0, 4.0, 6.0, 11.0]);
}

fn gt(path: &Path) -> GroundTruth {
    GroundTruth::read(path).unwrap()
}

fn check_normalised(g: &GroundTruth) {
    for i in 0..g.s {
        let c = g.cloud(i);
        let max = c.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!((max - 1.0).abs() < 1e-6, "max |x| = {max}");
        for d in 0..3 {
            let m = c.iter().skip(d).step_by(3).sum::<f64>() / g.n as f64;
            assert!(m.abs() < 1e-6, "centroid {m}");
        }
    }
}

/// Models of a multi-model PDB as mmCIF text (with `pdbx_PDB_model_num`).
fn to_mmcif(models: &[Vec<Atom>]) -> String {
    let mut t = String::from(
        "data_x\nloop_\n_atom_site.group_PDB\n_atom_site.id\n_atom_site.type_symbol\n\
         _atom_site.label_atom_id\n_atom_site.label_alt_id\n_atom_site.label_comp_id\n\
         _atom_site.label_asym_id\n_atom_site.label_seq_id\n_atom_site.Cartn_x\n\
         _atom_site.Cartn_y\n_atom_site.Cartn_z\n_atom_site.pdbx_PDB_model_num\n",
    );
    for (m, atoms) in models.iter().enumerate() {
        for (i, a) in atoms.iter().enumerate() {
            let alt = if a.alt_loc.is_empty() {
                "."
            } else {
                &a.alt_loc
            };
            t.push_str(&format!(
                "{} {} {} {} {alt} {} A {} {} {} {} {}\n",
                if a.hetatm { "HETATM" } else { "ATOM" },
                i + 1,
                a.element,
                a.name,
                a.res_name,
                a.res_seq.unwrap_or(0),
                a.pos[0],
                a.pos[1],
                a.pos[2],
                m + 1
            ));
        }
    }
    t
}

#[test]
fn prepare_reads_multimodel_pdb_mmcif_and_folders_alike() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pdb = d.join("e.pdb");
    let noisy = d.join("e_h.pdb");
    pseudo_pdb(&pdb, &["--models", "2", "--seed", "1", "--domains", "2"]);
    pseudo_pdb(
        &noisy,
        &[
            "--models",
            "2",
            "--seed",
            "1",
            "--domains",
            "2",
            "--hydrogens",
            "--waters",
            "20",
            "--altlocs",
        ],
    );
    let out = |name: &str| d.join(name);
    run_ok(&[
        "pc-prepare",
        s(&pdb),
        "-n",
        "40",
        "--seed",
        "5",
        "-o",
        s(&out("a.npz")),
    ]);
    let g = gt(&out("a.npz"));
    assert_eq!((g.s, g.n), (2, 40));
    assert!(g.atoms.is_none(), "atoms only for one structure");
    check_normalised(&g);
    assert_ne!(g.cloud(0), g.cloud(1), "the models differ");
    // hydrogens, waters and B altlocs do not change the clouds
    run_ok(&[
        "pc-prepare",
        s(&noisy),
        "-n",
        "40",
        "--seed",
        "5",
        "-o",
        s(&out("b.npz")),
    ]);
    assert_eq!(gt(&out("b.npz")), g);
    // the same models as mmCIF
    let models = read_models(&noisy).unwrap();
    let cif = d.join("e.cif");
    std::fs::write(&cif, to_mmcif(&models)).unwrap();
    run_ok(&[
        "pc-prepare",
        s(&cif),
        "-n",
        "40",
        "--seed",
        "5",
        "-o",
        s(&out("c.npz")),
    ]);
    assert_eq!(gt(&out("c.npz")), g);
    // a folder of one-model files, sorted by name
    let folder = d.join("models");
    std::fs::create_dir(&folder).unwrap();
    let text = std::fs::read_to_string(&pdb).unwrap();
    for (k, block) in text.split("MODEL").skip(1).enumerate() {
        std::fs::write(folder.join(format!("m{k}.pdb")), block).unwrap();
    }
    std::fs::write(folder.join("notes.txt"), "not a model").unwrap();
    run_ok(&[
        "pc-prepare",
        s(&folder),
        "-n",
        "40",
        "--seed",
        "5",
        "-o",
        s(&out("f.npz")),
    ]);
    assert_eq!(gt(&out("f.npz")), g);
    // one structure: its heavy atoms are stored, in Å
    let one = folder.join("m0.pdb");
    run_ok(&[
        "pc-prepare",
        s(&one),
        "-n",
        "40",
        "--seed",
        "5",
        "-o",
        s(&out("one.npz")),
    ]);
    let g1 = gt(&out("one.npz"));
    let heavy = heavy_atoms(&parse_pdb(&std::fs::read_to_string(&one).unwrap(), &one).unwrap());
    assert_eq!(g1.atoms.as_ref().map(Vec::len), Some(heavy.len()));
    assert!(g1
        .atoms
        .as_ref()
        .unwrap()
        .iter()
        .zip(&heavy)
        .all(|(a, b)| (a - b).abs() < 1e-4));
    assert_eq!(g1.cloud(0), g.cloud(0));
    // the GT means in Å lie among the atoms: within the atoms' bounding box
    let ang = g1.cloud_angstrom(0);
    for dd in 0..3 {
        let lo = heavy
            .iter()
            .skip(dd)
            .step_by(3)
            .fold(f64::INFINITY, |a, &b| a.min(b));
        let hi = heavy
            .iter()
            .skip(dd)
            .step_by(3)
            .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        assert!(ang
            .iter()
            .skip(dd)
            .step_by(3)
            .all(|&v| v >= lo - 1e-6 && v <= hi + 1e-6));
    }
}

#[test]
fn prepare_normalises_npy_clouds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let raw = blobs(&CENTRES, 12, [1.0, 1.0, 1.0], 9); // 48 points, Å
    let f32s: Vec<f32> = raw.iter().map(|&v| v as f32).collect();
    let one = d.join("c.npy");
    write_npy(&one, &NdArray::from_f32(vec![48, 3], f32s.clone()).unwrap()).unwrap();
    run_ok(&["pc-prepare", s(&one), "-o", s(&d.join("g.npz"))]);
    let g = gt(&d.join("g.npz"));
    assert_eq!((g.s, g.n), (1, 48));
    check_normalised(&g);
    let back = g.cloud_angstrom(0);
    for (a, b) in back.iter().zip(&f32s) {
        assert!((a - *b as f64).abs() < 1e-4, "x_Å = center + scale·x");
    }
    // (S, N, 3) reduced to -n 16 GMM means each
    let mut two = f32s.clone();
    two.extend(f32s.iter().map(|v| 2.0 * v));
    let many = d.join("s.npy");
    write_npy(&many, &NdArray::from_f32(vec![2, 48, 3], two).unwrap()).unwrap();
    run_ok(&[
        "pc-prepare",
        s(&many),
        "-n",
        "16",
        "-o",
        s(&d.join("h.npz")),
    ]);
    let h = gt(&d.join("h.npz"));
    assert_eq!((h.s, h.n), (2, 16));
    check_normalised(&h);
    assert!((h.scale[1] / h.scale[0] - 2.0).abs() < 0.2);
    // errors name the file and what is wrong
    let bad = d.join("bad.npy");
    write_npy(&bad, &NdArray::from_f32(vec![5, 2], vec![0.0; 10]).unwrap()).unwrap();
    let (ok, _, err) = run(&["pc-prepare", s(&bad), "-o", s(&d.join("x.npz"))]);
    assert!(
        !ok && err.contains("bad.npy") && err.contains("(N, 3)"),
        "{err}"
    );
    let mut nan = f32s.clone();
    nan[4] = f32::NAN;
    write_npy(&bad, &NdArray::from_f32(vec![48, 3], nan).unwrap()).unwrap();
    let (ok, _, err) = run(&["pc-prepare", s(&bad), "-o", s(&d.join("x.npz"))]);
    assert!(
        !ok && err.contains("bad.npy") && err.contains("non-finite"),
        "{err}"
    );
    assert!(!d.join("x.npz").exists(), "no output on error");
}

#[test]
fn malformed_inputs_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pdb = d.join("e.pdb");
    pseudo_pdb(
        &pdb,
        &[
            "--models",
            "1",
            "--seed",
            "2",
            "--domains",
            "2",
            "--helices",
            "2",
        ],
    );
    let o = d.join("o.npz");
    // fewer heavy atoms than -n
    let (ok, _, err) = run(&["pc-prepare", s(&pdb), "-n", "5000", "-o", s(&o)]);
    assert!(
        !ok && err.contains("e.pdb") && err.contains("heavy atoms") && err.contains("5000"),
        "{err}"
    );
    // truncated coordinates
    let text = std::fs::read_to_string(&pdb).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let k = lines.iter().position(|l| l.starts_with("ATOM")).unwrap() + 10;
    lines[k].truncate(40);
    let trunc = d.join("trunc.pdb");
    std::fs::write(&trunc, lines.join("\n")).unwrap();
    let (ok, _, err) = run(&["pc-prepare", s(&trunc), "-n", "8", "-o", s(&o)]);
    assert!(
        !ok && err.contains("trunc.pdb") && err.contains(&format!("line {}", k + 1)),
        "{err}"
    );
    // a bad coordinate in the second model of an mmCIF
    let models = read_models(&pdb).unwrap();
    let cif = to_mmcif(&[models[0].clone(), models[0].clone()]);
    let last = cif.lines().last().unwrap().to_string();
    let mut f: Vec<&str> = last.split(' ').collect();
    f[9] = "1.2.3";
    let cif = cif.replace(&last, &f.join(" "));
    let badcif = d.join("bad.cif");
    std::fs::write(&badcif, cif).unwrap();
    let (ok, _, err) = run(&["pc-prepare", s(&badcif), "-n", "8", "-o", s(&o)]);
    assert!(
        !ok && err.contains("bad.cif") && err.contains("Cartn_y") && err.contains("1.2.3"),
        "{err}"
    );
    // a file without atoms
    let empty = d.join("empty.pdb");
    std::fs::write(&empty, "REMARK nothing\nEND\n").unwrap();
    let (ok, _, err) = run(&["pc-prepare", s(&empty), "-o", s(&o)]);
    assert!(
        !ok && err.contains("empty.pdb") && err.contains("no atoms"),
        "{err}"
    );
    assert!(!o.exists());
    // GT.npz without `scale`
    let noscale = d.join("noscale.npz");
    write_npz(
        &noscale,
        &[
            (
                "cloud".into(),
                NdArray::from_f32(vec![1, 4, 3], vec![0.5; 12]).unwrap(),
            ),
            (
                "center".into(),
                NdArray::new(vec![1, 3], ArrayData::F64(vec![0.0; 3])).unwrap(),
            ),
        ],
    )
    .unwrap();
    let (ok, _, err) = run(&["pc-observe", s(&noscale), "--proj", "1", "-o", s(&o)]);
    assert!(
        !ok && err.contains("noscale.npz") && err.contains("`scale`"),
        "{err}"
    );
    // OBS.npz with a projection of the wrong shape
    let badobs = d.join("badobs.npz");
    write_npz(
        &badobs,
        &[
            (
                "proj_0".into(),
                NdArray::new(vec![5, 3], ArrayData::F64(vec![0.0; 15])).unwrap(),
            ),
            (
                "rot_0".into(),
                NdArray::new(
                    vec![3, 3],
                    ArrayData::F64(vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]),
                )
                .unwrap(),
            ),
            (
                "n_points".into(),
                NdArray::from_i64(vec![1], vec![8]).unwrap(),
            ),
        ],
    )
    .unwrap();
    let e = Observations::read(&badobs).unwrap_err().to_string();
    assert!(
        e.contains("badobs.npz") && e.contains("proj_0") && e.contains("(M, 2)"),
        "{e}"
    );
    // pc-observe without any observation kind, and out of range
    run_ok(&["pc-prepare", s(&pdb), "-n", "16", "-o", s(&d.join("g.npz"))]);
    let g = d.join("g.npz");
    let (ok, _, err) = run(&["pc-observe", s(&g), "-o", s(&o)]);
    assert!(!ok && err.contains("nothing to observe"), "{err}");
    let (ok, _, err) = run(&[
        "pc-observe",
        s(&g),
        "--proj",
        "1",
        "--proj-points",
        "17",
        "-o",
        s(&o),
    ]);
    assert!(!ok && err.contains("--proj-points 17"), "{err}");
    let (ok, _, err) = run(&[
        "pc-observe",
        s(&g),
        "--index",
        "1",
        "--cg",
        "4",
        "-o",
        s(&o),
    ]);
    assert!(!ok && err.contains("--index 1"), "{err}");
    // pc-eval on a reconstruction of the wrong shape
    let rec = d.join("rec.npy");
    write_npy(
        &rec,
        &NdArray::from_f32(vec![16, 2], vec![0.0; 32]).unwrap(),
    )
    .unwrap();
    let (ok, _, err) = run(&[
        "pc-eval",
        s(&rec),
        "--truth",
        s(&g),
        "-o",
        s(&d.join("m.json")),
    ]);
    assert!(
        !ok && err.contains("rec.npy") && err.contains("(N, 3)"),
        "{err}"
    );
}

fn det3(r: &[f64; 9]) -> f64 {
    r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6])
        + r[2] * (r[3] * r[7] - r[4] * r[6])
}

/// Spec check 10 without the reconstruction step: pseudo-atomic PDB → pc-prepare → pc-observe →
/// pc-eval on reconstructions made from the ground truth.
#[test]
fn round_trip_pseudo_pdb_prepare_observe_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pdb = d.join("e.pdb");
    pseudo_pdb(&pdb, &["--models", "2", "--seed", "3"]);
    let gtp = d.join("GT.npz");
    run_ok(&[
        "pc-prepare",
        s(&pdb),
        "-n",
        "48",
        "--seed",
        "0",
        "-o",
        s(&gtp),
    ]);
    let g = gt(&gtp);
    check_normalised(&g);
    let obs = d.join("OBS.npz");
    let args = [
        "pc-observe",
        s(&gtp),
        "--index",
        "1",
        "--proj",
        "2",
        "--proj-points",
        "30",
        "--cg",
        "8",
        "--subunit-k",
        "4",
        "--seed",
        "9",
        "-o",
        s(&obs),
    ];
    run_ok(&args);
    let o = Observations::read(&obs).unwrap();
    assert_eq!((o.n_points, o.proj.len(), o.items()), (48, 2, 4));
    let x = g.cloud(1);
    let pts: Vec<&[f64]> = x.chunks(3).collect();
    for p in &o.proj {
        assert!((det3(&p.rot) - 1.0).abs() < 1e-9, "SO(3)");
        assert_eq!(p.points.len(), 60);
        let mut used = Vec::new();
        for y in p.points.chunks(2) {
            let hit = pts.iter().position(|q| {
                (0..2).all(|c| {
                    let v = q[0] * p.rot[c] + q[1] * p.rot[3 + c] + q[2] * p.rot[6 + c];
                    (v - y[c]).abs() < 1e-9
                })
            });
            let hit = hit.expect("every observed point is (x·R)[:2] of a GT point");
            assert!(!used.contains(&hit), "drawn without replacement");
            used.push(hit);
        }
    }
    assert_eq!(o.cg.as_ref().unwrap().len(), 24);
    let su = o.subunit.as_ref().unwrap();
    assert!(!su.is_empty() && su.len() < 3 * 48);
    assert!(
        su.chunks(3).all(|p| pts.iter().any(|q| q == &p)),
        "subunit ⊂ GT"
    );
    // same seed, same observations; o3 draws reflections too
    let obs2 = d.join("OBS2.npz");
    let mut args2 = args;
    args2[args2.len() - 1] = s(&obs2);
    run_ok(&args2);
    assert_eq!(Observations::read(&obs2).unwrap(), o);
    let o3 = d.join("O3.npz");
    run_ok(&[
        "pc-observe",
        s(&gtp),
        "--proj",
        "12",
        "--proj-points",
        "5",
        "--rot",
        "o3",
        "-o",
        s(&o3),
    ]);
    let dets: Vec<f64> = Observations::read(&o3)
        .unwrap()
        .proj
        .iter()
        .map(|p| det3(&p.rot))
        .collect();
    assert!(
        dets.iter().any(|v| (v + 1.0).abs() < 1e-9) && dets.iter().any(|v| (v - 1.0).abs() < 1e-9),
        "{dets:?}"
    );
    // reconstructions of cloud 0: the truth itself (shuffled), and the truth shrunk by 10 %
    let x0 = g.cloud(0);
    let mut rec: Vec<f32> = x0.chunks(3).rev().flatten().map(|&v| v as f32).collect();
    rec.extend(x0.iter().map(|&v| 0.9 * v as f32));
    let recp = d.join("recon.npy");
    write_npy(&recp, &NdArray::from_f32(vec![2, 48, 3], rec).unwrap()).unwrap();
    let mj = d.join("metrics.json");
    run_ok(&[
        "pc-eval",
        s(&recp),
        "--truth",
        s(&gtp),
        "--pdb",
        s(&pdb),
        "-o",
        s(&mj),
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mj).unwrap()).unwrap();
    let models = m["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let f = |i: usize, k: &str| models[i][k].as_f64().unwrap();
    assert!(f(0, "cd") < 1e-10 && f(0, "emd") < 1e-6, "{m}");
    assert!(
        f(1, "cd") > 1e-4 && f(1, "emd") > 1e-3,
        "a shrunk cloud is off before scaling"
    );
    // both are exact after Rg scaling and alignment (the shrink is about the centroid 0)
    for i in 0..2 {
        assert!(f(i, "rmsd_subsampled_A") < 1e-3, "{m}");
    }
    assert!((f(1, "rg_scale") - 1.0 / 0.9).abs() < 1e-6);
    // atomic RMSD = that of the GT means (in Å) to the first model's heavy atoms
    let heavy = heavy_atoms(&read_models(&pdb).unwrap()[0]);
    let means = g.cloud_angstrom(0);
    let atomic_ref = (heavy
        .chunks(3)
        .map(|a| {
            means
                .chunks(3)
                .map(|q| (0..3).map(|k| (a[k] - q[k]).powi(2)).sum::<f64>())
                .fold(f64::INFINITY, f64::min)
        })
        .sum::<f64>()
        / (heavy.len() / 3) as f64)
        .sqrt();
    for i in 0..2 {
        assert!(
            (f(i, "rmsd_atomic_A") - atomic_ref).abs() < 1e-3,
            "{m} vs {atomic_ref}"
        );
    }
    assert!(m["mean"]["cd"].as_f64().is_some() && m["std"]["rmsd_atomic_A"].as_f64().is_some());
    // generation metrics of the two GT clouds against themselves
    let gm = d.join("gen.json");
    let (ok, out, err) = run(&["pc-gen-metrics", s(&recp), "--ref", s(&gtp), "-o", s(&gm)]);
    assert!(ok, "{err}");
    assert!(out.contains("1-NNA") && out.contains("COV"), "{out}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&gm).unwrap()).unwrap();
    assert_eq!(j["n_refs"], 2);
    assert!(j["mmd"].as_f64().unwrap() >= 0.0);

    // pc-reconstruct with the exact GMM prior over the two GT clouds, then pc-eval --obs: E of
    // each model equals the reconstruction's final energy (same U, exact assignments)
    let out = d.join("rec");
    let prior = format!("gmm:{}", s(&gtp));
    run_ok(&[
        "pc-reconstruct",
        &prior,
        s(&obs),
        "-o",
        s(&out),
        "--samples",
        "2",
        "--steps",
        "6",
        "--alpha",
        "100",
        "--assign",
        "hungarian",
        "--seed",
        "4",
    ]);
    assert!(
        out.join("recon_A.pdb").is_file(),
        "pc-observe keeps the Å transform"
    );
    let run_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let me = d.join("m2.json");
    run_ok(&[
        "pc-eval",
        s(&out.join("recon.npy")),
        "--truth",
        s(&gtp),
        "--index",
        "1",
        "--obs",
        s(&obs),
        "--seed",
        "4",
        "-o",
        s(&me),
    ]);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&me).unwrap()).unwrap();
    for i in 0..2 {
        let (e, want) = (
            m["models"][i]["E"].as_f64().unwrap(),
            run_json["energy"][i].as_f64().unwrap(),
        );
        // recon.npy is f32: E moves by rounding only
        assert!(
            (e - want).abs() < 1e-4 * (1.0 + want),
            "model {i}: E {e} vs {want}"
        );
    }
}
