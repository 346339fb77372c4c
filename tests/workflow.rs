//! A cryoDRGN user's session end to end, as the README shows it: simulate → train-vae (which
//! runs analyze at its end) → select-clusters → write-star / write-cs → parse-pose-star /
//! parse-pose-csparc, which must give back exactly the selected particles' poses and images.

mod common;

use common::{phantom_sim, run_ok, train_vae};
use cryofield::io::pkl::{read_pkl, PyValue};
use cryofield::io::star::StarFile;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn arr(v: &PyValue) -> (Vec<usize>, Vec<f32>) {
    let a = v.as_array().unwrap();
    (a.shape.clone(), a.to_f32())
}

/// (rotations (N, 9), translations (N, 2)) of a pose pickle.
fn poses(p: &Path) -> (Vec<f32>, Vec<f32>) {
    match read_pkl(p).unwrap() {
        PyValue::Tuple(t) => (arr(&t[0]).1, arr(&t[1]).1),
        other => panic!("{}: not a pose tuple: {other:?}", p.display()),
    }
}

#[test]
fn simulate_train_analyze_select_and_export_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let sim = phantom_sim(
        dir.path(),
        "discrete",
        2,
        120,
        &["--defocus", "10000", "20000", "--t-extent", "2"],
    );
    let run = dir.path().join("vae");
    let (ok, err) = train_vae(&sim, &run, &["-n", "2", "-b", "16", "--seed", "1"]);
    assert!(ok, "{err}");
    // train-vae analyzed its final epoch (as the reference does unless --no-analysis) into
    // analyze.2: `analyze OUT 2`, the outputs numbered by the 1-based epoch
    for f in [
        "z.1.pkl",
        "z.2.pkl",
        "z.pkl",
        "weights.2.pkl",
        "weights.pkl",
        "config.yaml",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    assert!(!run.join("z.0.pkl").exists() && !run.join("z.3.pkl").exists());
    let labels = run.join("analyze.2/kmeans20/labels.pkl");
    assert!(labels.exists(), "analyze at the end of train-vae: {err}");
    let lab: Vec<i64> = read_pkl(&labels)
        .unwrap()
        .as_array()
        .unwrap()
        .to_i64()
        .unwrap();
    let ind = dir.path().join("ind.pkl");
    run_ok(&[
        "select-clusters",
        s(&labels),
        "--sel",
        "1",
        "4",
        "-o",
        s(&ind),
    ]);
    let sel: Vec<i64> = read_pkl(&ind)
        .unwrap()
        .as_array()
        .unwrap()
        .to_i64()
        .unwrap();
    let expect: Vec<i64> = (0..lab.len() as i64)
        // clusters 1 and 4 are stored as labels 0 and 3
        .filter(|&i| lab[i as usize] == 0 || lab[i as usize] == 3)
        .collect();
    assert_eq!(sel, expect);
    assert!(!sel.is_empty());

    let (rot, trans) = poses(&sim.poses());
    let ctf = sim.sim.join("ctf.pkl");
    let check = |parsed: &Path, what: &str| {
        let (r, t) = poses(parsed);
        assert_eq!(r.len(), 9 * sel.len(), "{what}: rotations");
        for (k, &i) in sel.iter().enumerate() {
            let i = i as usize;
            for c in 0..9 {
                let d = (r[9 * k + c] - rot[9 * i + c]).abs();
                assert!(
                    d < 2e-6,
                    "{what}: particle {i} rotation entry {c} off by {d}"
                );
            }
            for c in 0..2 {
                let d = (t[2 * k + c] - trans[2 * i + c]).abs();
                assert!(d < 1e-6, "{what}: particle {i} translation off by {d}");
            }
        }
    };

    // RELION 3.1 star of the selection, read back by our parser
    let star = dir.path().join("sel.star");
    run_ok(&[
        "write-star",
        s(&sim.particles()),
        "--ctf",
        s(&ctf),
        "--poses",
        s(&sim.poses()),
        "--ind",
        s(&ind),
        "-o",
        s(&star),
    ]);
    let names = StarFile::read(&star)
        .unwrap()
        .particle_str("rlnImageName")
        .unwrap();
    let idx: Vec<i64> = names
        .iter()
        .map(|n| n.split('@').next().unwrap().parse::<i64>().unwrap() - 1)
        .collect();
    assert_eq!(idx, sel, "the star names the selected images");
    let p_star = dir.path().join("p_star.pkl");
    run_ok(&["parse-pose-star", s(&star), "-o", s(&p_star)]);
    check(&p_star, "write-star → parse-pose-star");
    let c_star = dir.path().join("c_star.pkl");
    run_ok(&["parse-ctf-star", s(&star), "-o", s(&c_star)]);
    let (_, c_all) = arr(&read_pkl(&ctf).unwrap());
    let (_, c_sel) = arr(&read_pkl(&c_star).unwrap());
    for (k, &i) in sel.iter().enumerate() {
        for c in 0..9 {
            let (a, b) = (c_sel[9 * k + c], c_all[9 * i as usize + c]);
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "CTF {i}/{c}: {a} vs {b}"
            );
        }
    }
    // the star's images are the selected ones: the stack it names, read through the star
    let via_star = cryofield::io::source::ParticleSource::open(&star, None).unwrap();
    assert_eq!(via_star.len(), sel.len());

    // cryoSPARC .cs of the selection, read back by our parser
    let cs = dir.path().join("sel.cs");
    run_ok(&[
        "write-cs",
        s(&sim.particles()),
        "--ctf",
        s(&ctf),
        "--poses",
        s(&sim.poses()),
        "--ind",
        s(&ind),
        "-o",
        s(&cs),
    ]);
    let p_cs = dir.path().join("p_cs.pkl");
    run_ok(&["parse-pose-csparc", s(&cs), "-D", "16", "-o", s(&p_cs)]);
    check(&p_cs, "write-cs → parse-pose-csparc");
}

#[test]
fn volume_utilities_flip_invert_and_set_the_pixel_size() {
    use cryofield::io::mrc::MrcFile;
    let dir = tempfile::tempdir().unwrap();
    let vol = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cryodrgn/vae_vol.mrc");
    let v = MrcFile::open(&vol).unwrap().read_all().unwrap();
    let d = 16;
    let flipped = dir.path().join("f.mrc");
    run_ok(&["flip-hand", s(&vol), "-o", s(&flipped)]);
    let f = MrcFile::open(&flipped).unwrap().read_all().unwrap();
    for z in 0..d {
        assert_eq!(
            &f[z * d * d..(z + 1) * d * d],
            &v[(d - 1 - z) * d * d..(d - z) * d * d],
            "plane {z}"
        );
    }
    // the default output name, beside the input; and flipping twice gives the volume back
    let copy = dir.path().join("v.mrc");
    std::fs::copy(&vol, &copy).unwrap();
    run_ok(&["flip_hand", s(&copy)]);
    let twice = dir.path().join("twice.mrc");
    run_ok(&[
        "flip-hand",
        s(&dir.path().join("v_flipped.mrc")),
        "-o",
        s(&twice),
    ]);
    assert_eq!(MrcFile::open(&twice).unwrap().read_all().unwrap(), v);
    let inv = dir.path().join("i.mrc");
    run_ok(&["invert-contrast", s(&vol), "-o", s(&inv)]);
    let i = MrcFile::open(&inv).unwrap().read_all().unwrap();
    assert!(i.iter().zip(&v).all(|(a, b)| *a == -*b));
    let ps = dir.path().join("p.mrc");
    run_ok(&["add-psize", s(&vol), "--Apix", "2.5", "-o", s(&ps)]);
    let p = MrcFile::open(&ps).unwrap();
    assert_eq!(p.header.apix(), 2.5);
    assert_eq!(p.read_all().unwrap(), v);
    // a stack is not a volume
    let (ok, _, err) = common::run(&[
        "flip-hand",
        "../shared/data/hand.mrcs",
        "-o",
        s(&dir.path().join("x.mrc")),
    ]);
    assert!(!ok && err.contains("hand.mrcs"), "{err}");
}

#[test]
fn plot_fsc_reads_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("a.txt");
    std::fs::write(
        &two,
        "pixres fsc\n0.0 1.0\n0.125 0.8\n0.25 0.4\n0.375 0.1\n",
    )
    .unwrap();
    let one = dir.path().join("b.txt");
    std::fs::write(&one, "1.0\n0.9\n0.5\n0.2\n").unwrap();
    let (x, y) = cryofield::cli::plot_fsc::read_fsc_txt(&one).unwrap();
    assert_eq!(x, vec![0.0, 0.125, 0.25, 0.375]);
    assert_eq!(y, vec![1.0, 0.9, 0.5, 0.2]);
    let png = dir.path().join("p.png");
    run_ok(&["plot-fsc", s(&two), s(&one), "--Apix", "2", "-o", s(&png)]);
    assert!(png.exists());
    let bad = dir.path().join("c.txt");
    std::fs::write(&bad, "0.0 1.0\n0.1 0.5 0.3\n").unwrap();
    let (ok, _, err) = common::run(&["plot-fsc", s(&bad), "-o", s(&png)]);
    assert!(!ok && err.contains("c.txt"), "{err}");
}

#[test]
fn view_cs_header_lists_the_fields() {
    let cs = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/cryosparc_P12_J24_001_particles.cs");
    let out = run_ok(&["view-cs-header", s(&cs), "-n", "2"]);
    assert!(out.contains("records: 2019"), "{out}");
    // the fields parse-pose-csparc reads, with their first values
    for f in ["blob/path", "blob/idx", "alignments3D/pose", "ctf/df1_A"] {
        assert!(out.lines().any(|l| l.starts_with(f)), "{f} missing:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("blob/idx") && l.trim_end().ends_with("0 1")),
        "{out}"
    );
}
