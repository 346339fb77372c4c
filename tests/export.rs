//! Particle selection and export: `write-star`, `write-cs`, `filter-cs` read back by our own
//! `parse-pose-*` / `parse-ctf-*`; `select-clusters`, `filter`, `filter-pkl`, `concat-pkls`,
//! `select-random` against hand-computed (or numpy-computed) expectations; bad inputs fail cleanly.

mod common;

use common::{run, run_ok};
use cryofield::io::array::{ArrayData, NdArray};
use cryofield::io::npy::{read_records, write_records, RecordArray};
use cryofield::io::pkl::{read_pkl, write_pkl, PyValue};
use cryofield::io::source::ParticleSource;
use cryofield::io::star::StarFile;
use cryofield::meta::{load_int_array, save_indices, CtfParams, Poses};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A ctf.pkl for the 100 images of hand.mrcs (D = 64): two optics groups (300 and 200 kV), and
/// defoci, astigmatism angles and phase shifts that differ per image.
fn hand_ctf(dir: &Path) -> PathBuf {
    let rows = (0..100)
        .map(|i| {
            let f = i as f32;
            let kv = if i % 3 == 0 { 200.0 } else { 300.0 };
            [
                64.0,
                1.5,
                12000.0 + 37.25 * f,
                11800.0 + 35.5 * f,
                -170.0 + 3.3 * f,
                kv,
                2.7,
                0.1,
                0.5 * f,
            ]
        })
        .collect();
    let p = dir.join("ctf.pkl");
    CtfParams { rows }.save(&p).unwrap();
    p
}

fn ints(p: &Path) -> Vec<i64> {
    load_int_array(p, "indices").unwrap().1
}

fn max_rot_diff(a: &Poses, b: &Poses) -> f32 {
    assert_eq!(a.len(), b.len());
    a.rots
        .iter()
        .zip(&b.rots)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(u, v)| (u - v).abs()))
        .fold(0.0, f32::max)
}

fn max_trans_diff(a: &Poses, b: &Poses) -> f32 {
    let (ta, tb) = (a.trans.as_ref().unwrap(), b.trans.as_ref().unwrap());
    assert_eq!(ta.len(), tb.len());
    ta.iter()
        .zip(tb)
        .flat_map(|(x, y)| [(x[0] - y[0]).abs(), (x[1] - y[1]).abs()])
        .fold(0.0, f32::max)
}

/// Largest |a − b| / max(1, |a|) over the CTF rows.
fn max_ctf_diff(a: &CtfParams, b: &CtfParams) -> f32 {
    assert_eq!(a.len(), b.len());
    a.rows
        .iter()
        .zip(&b.rows)
        .flat_map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(u, v)| (u - v).abs() / u.abs().max(1.0))
        })
        .fold(0.0, f32::max)
}

/// `parse-pose-star` and `parse-ctf-star` of `star` (our binary).
fn parse_star(star: &Path, dir: &Path) -> (Poses, CtfParams) {
    let (pose, ctf) = (dir.join("parsed_pose.pkl"), dir.join("parsed_ctf.pkl"));
    run_ok(&["parse-pose-star", s(star), "-o", s(&pose)]);
    run_ok(&["parse-ctf-star", s(star), "-o", s(&ctf)]);
    (Poses::read(&pose).unwrap(), CtfParams::load(&ctf).unwrap())
}

/// `parse-pose-csparc` and `parse-ctf-csparc` of `cs` (our binary).
fn parse_cs(cs: &Path, dir: &Path) -> (Poses, CtfParams) {
    let (pose, ctf) = (dir.join("parsed_pose.pkl"), dir.join("parsed_ctf.pkl"));
    run_ok(&["parse-pose-csparc", s(cs), "-o", s(&pose)]);
    run_ok(&["parse-ctf-csparc", s(cs), "-o", s(&ctf)]);
    (Poses::read(&pose).unwrap(), CtfParams::load(&ctf).unwrap())
}

/// The images of `meta` (a .star/.cs naming stacks) are those of hand.mrcs at `ind`.
fn assert_same_images(meta: &Path, ind: &[usize]) {
    let got = ParticleSource::open(meta, None).unwrap();
    let hand = ParticleSource::open(data("hand.mrcs"), None).unwrap();
    assert_eq!(got.len(), ind.len());
    for (k, &i) in ind.iter().enumerate() {
        assert_eq!(got.image(k).unwrap(), hand.image(i).unwrap(), "image {k}");
    }
}

/// Assert that the command fails without a panic, naming `file` and saying `needle`, and that
/// `keep` (an earlier output) is untouched.
fn assert_clean_failure(args: &[&str], file: &str, needle: &str, keep: &Path) {
    let before = std::fs::read(keep).unwrap();
    let (ok, _, err) = run(args);
    assert!(!ok, "{args:?} succeeded; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(file), "error does not name {file}: {err}");
    assert!(err.contains(needle), "error does not say `{needle}`: {err}");
    assert_eq!(
        std::fs::read(keep).unwrap(),
        before,
        "earlier output modified"
    );
}

#[test]
fn write_star_from_mrcs_round_trips_through_parse_star() {
    let dir = tempfile::tempdir().unwrap();
    let ctf = hand_ctf(dir.path());
    let poses_pkl = data("hand_rot_trans.pkl");
    let star = dir.path().join("out.star");
    let parts = data("hand.mrcs");
    run_ok(&[
        "write-star",
        s(&parts),
        "--ctf",
        s(&ctf),
        "--poses",
        s(&poses_pkl),
        "-o",
        s(&star),
    ]);

    let f = StarFile::read(&star).unwrap();
    let optics = f.optics_table().expect("a data_optics table");
    assert_eq!(optics.rows.len(), 2, "two optics groups (200 and 300 kV)");
    let names = f.particle_str("rlnImageName").unwrap();
    assert!(
        names[0].starts_with("000001@") && names[99].starts_with("000100@"),
        "{}",
        names[0]
    );
    assert!(
        !Path::new(names[0].split_once('@').unwrap().1).is_absolute(),
        "relative by default"
    );

    let want_poses = Poses::read(&poses_pkl).unwrap();
    let want_ctf = CtfParams::load(&ctf).unwrap();
    let (poses, ctf_back) = parse_star(&star, dir.path());
    let (dr, dt, dc) = (
        max_rot_diff(&poses, &want_poses),
        max_trans_diff(&poses, &want_poses),
        max_ctf_diff(&ctf_back, &want_ctf),
    );
    assert!(dr < 1e-5, "rotations differ by {dr}");
    assert!(dt < 1e-6, "translations differ by {dt}");
    assert!(dc == 0.0, "CTF differs by {dc}");
    assert_same_images(&star, &(0..100).collect::<Vec<_>>());

    // --ind: exactly those particles, in that order; --full-path: absolute stack paths.
    let ind = [42usize, 7, 99, 0, 7];
    let ind_pkl = dir.path().join("ind.pkl");
    save_indices(&ind_pkl, &ind).unwrap();
    let sub = dir.path().join("sub.star");
    run_ok(&[
        "write-star",
        s(&parts),
        "--ctf",
        s(&ctf),
        "--poses",
        s(&poses_pkl),
        "--ind",
        s(&ind_pkl),
        "--full-path",
        "-o",
        s(&sub),
    ]);
    let names = StarFile::read(&sub)
        .unwrap()
        .particle_str("rlnImageName")
        .unwrap();
    assert!(names[0].starts_with("000043@/"), "{}", names[0]);
    let (poses, ctf_back) = parse_star(&sub, dir.path());
    assert!(max_rot_diff(&poses, &want_poses.select(&ind)) < 1e-5);
    assert!(max_trans_diff(&poses, &want_poses.select(&ind)) < 1e-6);
    assert_eq!(max_ctf_diff(&ctf_back, &want_ctf.select(&ind)), 0.0);
    assert_same_images(&sub, &ind);

    // RELION 3.0: one table, origins in pixels; the same poses and CTF come back.
    let r30 = dir.path().join("r30.star");
    run_ok(&[
        "write-star",
        s(&parts),
        "--ctf",
        s(&ctf),
        "--poses",
        s(&poses_pkl),
        "--relion30",
        "-o",
        s(&r30),
    ]);
    let f = StarFile::read(&r30).unwrap();
    assert!(f.optics_table().is_none());
    assert!(f.has_particle_column("rlnOriginX") && !f.has_particle_column("rlnOriginXAngst"));
    let (poses, ctf_back) = parse_star(&r30, dir.path());
    assert!(max_rot_diff(&poses, &want_poses) < 1e-5);
    assert!(max_trans_diff(&poses, &want_poses) < 1e-6);
    assert_eq!(max_ctf_diff(&ctf_back, &want_ctf), 0.0);
}

#[test]
fn write_star_from_star_keeps_optics_and_selects_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("relion31.star");
    let (all_poses, all_ctf) = parse_star(&input, dir.path());
    let ind = [4usize, 1, 3];
    let ind_pkl = dir.path().join("ind.pkl");
    save_indices(&ind_pkl, &ind).unwrap();
    let out = dir.path().join("sel.star");
    run_ok(&["write-star", s(&input), "--ind", s(&ind_pkl), "-o", s(&out)]);
    let (src, got) = (
        StarFile::read(&input).unwrap(),
        StarFile::read(&out).unwrap(),
    );
    assert_eq!(got.optics_table(), src.optics_table(), "optics table kept");
    let names = got.particle_str("rlnImageName").unwrap();
    let src_names = src.particle_str("rlnImageName").unwrap();
    assert_eq!(
        names,
        ind.map(|i| src_names[i].clone()),
        "names kept, rows in --ind order"
    );
    let (poses, ctf) = parse_star(&out, dir.path());
    assert!(max_rot_diff(&poses, &all_poses.select(&ind)) == 0.0);
    assert!(max_trans_diff(&poses, &all_poses.select(&ind)) == 0.0);
    assert_eq!(max_ctf_diff(&ctf, &all_ctf.select(&ind)), 0.0);

    // --relion30 folds the optics into the particles; parsing gives the same values.
    let r30 = dir.path().join("r30.star");
    run_ok(&["write-star", s(&input), "--relion30", "-o", s(&r30)]);
    let f = StarFile::read(&r30).unwrap();
    assert!(f.optics_table().is_none() && f.has_particle_column("rlnOriginX"));
    let (poses, ctf) = parse_star(&r30, dir.path());
    assert!(max_rot_diff(&poses, &all_poses) == 0.0);
    assert!(max_trans_diff(&poses, &all_poses) < 1e-6);
    assert!(max_ctf_diff(&ctf, &all_ctf) < 1e-6);

    // --poses replaces the file's poses.
    let new_poses = Poses::read(data("pose.star.pkl")).unwrap();
    let swapped = Poses {
        rots: new_poses.rots.iter().rev().copied().collect(),
        trans: new_poses
            .trans
            .as_ref()
            .map(|t| t.iter().rev().map(|x| [x[1], -x[0]]).collect()),
    };
    let swapped_pkl = dir.path().join("swapped.pkl");
    swapped.save(&swapped_pkl).unwrap();
    let repl = dir.path().join("repl.star");
    run_ok(&[
        "write-star",
        s(&input),
        "--poses",
        s(&swapped_pkl),
        "-o",
        s(&repl),
    ]);
    let (poses, ctf) = parse_star(&repl, dir.path());
    assert!(max_rot_diff(&poses, &swapped) < 1e-5);
    assert!(max_trans_diff(&poses, &swapped) < 1e-6);
    assert_eq!(max_ctf_diff(&ctf, &all_ctf), 0.0);
}

#[test]
fn write_cs_round_trips_through_parse_csparc() {
    let dir = tempfile::tempdir().unwrap();
    let ctf = hand_ctf(dir.path());
    let poses_pkl = data("hand_rot_trans.pkl");
    let want_poses = Poses::read(&poses_pkl).unwrap();
    let want_ctf = CtfParams::load(&ctf).unwrap();
    let ind = [42usize, 7, 99, 0];
    let ind_pkl = dir.path().join("ind.pkl");
    save_indices(&ind_pkl, &ind).unwrap();
    let parts = data("hand.mrcs");
    for (sel, name) in [(None, "all.cs"), (Some(&ind_pkl), "sub.cs")] {
        let cs = dir.path().join(name);
        let mut args = vec![
            "write-cs",
            s(&parts),
            "--ctf",
            s(&ctf),
            "--poses",
            s(&poses_pkl),
            "-o",
            s(&cs),
        ];
        if let Some(p) = sel {
            args.extend(["--ind", s(p)]);
        }
        run_ok(&args);
        let keep: Vec<usize> = match sel {
            Some(_) => ind.to_vec(),
            None => (0..100).collect(),
        };
        let (poses, ctf_back) = parse_cs(&cs, dir.path());
        let dr = max_rot_diff(&poses, &want_poses.select(&keep));
        let dt = max_trans_diff(&poses, &want_poses.select(&keep));
        let dc = max_ctf_diff(&ctf_back, &want_ctf.select(&keep));
        assert!(dr < 1e-5, "rotations differ by {dr}");
        assert!(dt < 1e-6, "translations differ by {dt}");
        assert!(dc < 1e-6, "CTF differs by {dc}");
        assert_same_images(&cs, &keep);
        let r = read_records(&cs).unwrap();
        let uid = r.column_u64("uid").unwrap();
        let mut u = uid.clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), uid.len(), "uids are distinct");
    }
}

#[test]
fn filter_cs_keeps_every_field_of_the_kept_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("cryosparc_P12_J24_001_particles.cs");
    let ind = [5usize, 2, 2018, 2];
    let ind_pkl = dir.path().join("ind.pkl");
    save_indices(&ind_pkl, &ind).unwrap();
    let out = dir.path().join("f.cs");
    run_ok(&["filter-cs", s(&input), "--ind", s(&ind_pkl), "-o", s(&out)]);
    let (src, got) = (read_records(&input).unwrap(), read_records(&out).unwrap());
    assert_eq!(got.fields, src.fields);
    assert_eq!(got.n, ind.len());
    for (k, &i) in ind.iter().enumerate() {
        let w = src.itemsize;
        assert_eq!(
            got.data[k * w..(k + 1) * w],
            src.data[i * w..(i + 1) * w],
            "row {k}"
        );
    }
    let (all_poses, all_ctf) = parse_cs(&input, dir.path());
    let (poses, ctf) = parse_cs(&out, dir.path());
    assert_eq!(max_rot_diff(&poses, &all_poses.select(&ind)), 0.0);
    assert_eq!(max_trans_diff(&poses, &all_poses.select(&ind)), 0.0);
    assert_eq!(max_ctf_diff(&ctf, &all_ctf.select(&ind)), 0.0);

    // write-cs of a .cs with new poses: every other field kept, the poses replaced.
    let poses_pkl = dir.path().join("p.pkl");
    let swapped = Poses {
        rots: all_poses.rots.iter().rev().copied().collect(),
        trans: all_poses.trans.clone(),
    };
    swapped.save(&poses_pkl).unwrap();
    let out2 = dir.path().join("w.cs");
    run_ok(&[
        "write-cs",
        s(&input),
        "--poses",
        s(&poses_pkl),
        "--ind",
        s(&ind_pkl),
        "-o",
        s(&out2),
    ]);
    let got = read_records(&out2).unwrap();
    assert_eq!(got.names(), src.names());
    assert_eq!(
        got.column_strings("blob/path").unwrap(),
        ind.map(|i| src.column_strings("blob/path").unwrap()[i].clone())
    );
    let (poses, ctf) = parse_cs(&out2, dir.path());
    assert!(max_rot_diff(&poses, &swapped.select(&ind)) < 1e-5);
    assert!(max_trans_diff(&poses, &all_poses.select(&ind)) < 1e-6);
    assert_eq!(max_ctf_diff(&ctf, &all_ctf.select(&ind)), 0.0);
}

fn int_pkl(path: &Path, v: &[i64]) {
    write_pkl(
        path,
        &PyValue::Array(NdArray::from_i64(vec![v.len()], v.to_vec()).unwrap()),
    )
    .unwrap();
}

#[test]
fn select_clusters_by_label() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.pkl");
    int_pkl(&labels, &[0, 1, 2, 1, 0]);
    let out = dir.path().join("ind.pkl");
    // --sel counts clusters from 1 (cryoDRGN 4.3's): cluster 2 is label 1
    run_ok(&["select-clusters", s(&labels), "--sel", "2", "-o", s(&out)]);
    assert_eq!(ints(&out), [1, 3]);
    run_ok(&[
        "select_clusters",
        s(&labels),
        "--sel",
        "3",
        "1",
        "-o",
        s(&out),
    ]);
    assert_eq!(ints(&out), [0, 2, 4]);
    assert_clean_failure(
        &["select-clusters", s(&labels), "--sel", "0", "-o", s(&out)],
        "--sel 0",
        "count from 1",
        &out,
    );
    let parent = dir.path().join("parent.pkl");
    int_pkl(&parent, &[10, 11, 12, 13, 14]);
    run_ok(&[
        "select-clusters",
        s(&labels),
        "--sel",
        "2",
        "--parent-ind",
        s(&parent),
        "--N-orig",
        "20",
        "-o",
        s(&out),
    ]);
    assert_eq!(ints(&out), [11, 13]);
    assert_clean_failure(
        &[
            "select-clusters",
            s(&labels),
            "--sel",
            "1",
            "--parent-ind",
            s(&parent),
            "--N-orig",
            "12",
            "-o",
            s(&out),
        ],
        "parent.pkl",
        "out of range",
        &out,
    );
    assert_clean_failure(
        &["select-clusters", s(&labels), "--sel", "7", "-o", s(&out)],
        "labels.pkl",
        "no particle",
        &out,
    );
}

#[test]
fn filter_pkl_and_concat_pkls() {
    let dir = tempfile::tempdir().unwrap();
    let ind = dir.path().join("ind.pkl");
    int_pkl(&ind, &[3, 0]);
    // A pose tuple: both items filtered, dtypes kept (rot f32, trans f64 in this fixture).
    let out = dir.path().join("pose.pkl");
    run_ok(&[
        "filter-pkl",
        s(&data("toy_rot_trans.pkl")),
        "--ind",
        s(&ind),
        "-o",
        s(&out),
    ]);
    let (PyValue::Tuple(src), PyValue::Tuple(got)) = (
        read_pkl(data("toy_rot_trans.pkl")).unwrap(),
        read_pkl(&out).unwrap(),
    ) else {
        panic!("tuples expected")
    };
    for (a, b) in src.iter().zip(&got) {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        assert_eq!(b.shape[0], 2);
        assert_eq!(b.data.descr(), a.data.descr());
        let row = a.len() / a.shape[0];
        let (av, bv) = (a.to_f64(), b.to_f64());
        assert_eq!(bv[..row], av[3 * row..4 * row]);
        assert_eq!(bv[row..], av[..row]);
    }
    // --first on a ctf.pkl.
    let ctf = dir.path().join("ctf.pkl");
    run_ok(&[
        "filter_pkl",
        s(&data("ctf1.pkl")),
        "--first",
        "2",
        "-o",
        s(&ctf),
    ]);
    let want = CtfParams::load(data("ctf1.pkl")).unwrap().select(&[0, 1]);
    assert_eq!(CtfParams::load(&ctf).unwrap(), want);
    // concat: arrays, then pose tuples.
    let cat = dir.path().join("cat.pkl");
    run_ok(&["concat-pkls", s(&ctf), s(&data("ctf1.pkl")), "-o", s(&cat)]);
    let c = CtfParams::load(&cat).unwrap();
    assert_eq!(c.len(), 7);
    assert_eq!(
        c.rows[2..],
        CtfParams::load(data("ctf1.pkl")).unwrap().rows[..]
    );
    run_ok(&["concat_pkls", s(&out), s(&out), "-o", s(&cat)]);
    let p = Poses::read(&cat).unwrap();
    let one = Poses::read(&out).unwrap();
    assert_eq!(p.rots, [one.rots.clone(), one.rots.clone()].concat());
    // Errors: an index out of range; an array with a tuple; a shape that does not stack.
    let bad = dir.path().join("bad.pkl");
    int_pkl(&bad, &[0, 5]);
    assert_clean_failure(
        &[
            "filter-pkl",
            s(&data("ctf1.pkl")),
            "--ind",
            s(&bad),
            "-o",
            s(&cat),
        ],
        "bad.pkl",
        "out of range",
        &cat,
    );
    assert_clean_failure(
        &["concat-pkls", s(&ctf), s(&out), "-o", s(&cat)],
        "pose.pkl",
        "tuple",
        &cat,
    );
    assert_clean_failure(
        &["concat-pkls", s(&ctf), s(&ind), "-o", s(&cat)],
        "ind.pkl",
        "does not stack",
        &cat,
    );
}

#[test]
fn select_random_matches_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let (sel, rest) = (dir.path().join("sel.pkl"), dir.path().join("rest.pkl"));
    // numpy: np.random.seed(0); sorted(np.random.choice(np.arange(20), 5, replace=False))
    run_ok(&[
        "select-random",
        "20",
        "-n",
        "5",
        "-s",
        "0",
        "-o",
        s(&sel),
        "--neg-o",
        s(&rest),
    ]);
    assert_eq!(ints(&sel), [1, 8, 10, 18, 19]);
    assert_eq!(
        ints(&rest),
        [0, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13, 14, 15, 16, 17]
    );
    // np.random.seed(7); np.random.choice(np.arange(1000), 10, replace=False)
    run_ok(&[
        "select_random",
        "1000",
        "--frac",
        "0.01",
        "--seed",
        "7",
        "-o",
        s(&sel),
    ]);
    assert_eq!(
        ints(&sel),
        [94, 170, 216, 271, 334, 408, 487, 778, 802, 812]
    );
    let (ok, _, err) = run(&["select-random", "10", "-n", "11", "-o", s(&sel)]);
    assert!(!ok && err.contains("cannot select 11 of 10"), "{err}");
}

/// A fake train-vae run: z.3.pkl (8 particles, zdim 2, spread along z[0]) and analyze.3/kmeans2/labels.pkl.
fn fake_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(run.join("analyze.3/kmeans2")).unwrap();
    let z: Vec<f32> = [
        (-3.0, 0.1),
        (-2.0, -0.1),
        (-1.0, 0.2),
        (0.0, 0.0),
        (1.0, -0.2),
        (2.0, 0.1),
        (3.0, -0.1),
        (4.0, 0.0),
    ]
    .iter()
    .flat_map(|&(a, b)| [a, b])
    .collect();
    write_pkl(
        run.join("z.3.pkl"),
        &PyValue::Array(NdArray::from_f32(vec![8, 2], z).unwrap()),
    )
    .unwrap();
    int_pkl(
        &run.join("analyze.3/kmeans2/labels.pkl"),
        &[0, 0, 1, 1, 0, 1, 1, 0],
    );
    run
}

#[test]
fn filter_selects_by_cluster_range_and_polygon() {
    let dir = tempfile::tempdir().unwrap();
    let rundir = fake_run(dir.path());
    let out = dir.path().join("sel.pkl");
    let neg = dir.path().join("neg.pkl");
    // --sel 2: cluster 2 (from 1, as select-clusters), stored as label 1
    run_ok(&[
        "filter",
        s(&rundir),
        "--epoch",
        "3",
        "--kmeans",
        "2",
        "--sel",
        "2",
        "-o",
        s(&out),
        "--neg-o",
        s(&neg),
    ]);
    assert_eq!(ints(&out), [2, 3, 5, 6]);
    assert_eq!(ints(&neg), [0, 1, 4, 7]);
    let png = std::fs::read(out.with_extension("png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // An existing output needs --force; the epoch defaults to the last z.EPOCH.pkl.
    assert_clean_failure(
        &[
            "filter",
            s(&rundir),
            "--z-range",
            "0",
            "-1",
            "1",
            "-o",
            s(&out),
        ],
        "sel.pkl",
        "--force",
        &out,
    );
    run_ok(&[
        "filter",
        s(&rundir),
        "--z-range",
        "0",
        "-1",
        "1",
        "-o",
        s(&out),
        "--force",
    ]);
    assert_eq!(ints(&out), [2, 3, 4]);
    // PC1 ≈ z[0] − 0.5 (the largest-magnitude entry of each component positive, as sklearn).
    run_ok(&[
        "filter",
        s(&rundir),
        "--pc-polygon",
        "-10,-10 0.9,-10 0.9,10 -10,10",
        "-o",
        s(&out),
        "-f",
    ]);
    assert_eq!(ints(&out), [0, 1, 2, 3, 4]);
    // Criteria combine; a run trained on a subset maps to the original stack.
    let parent = dir.path().join("parent.pkl");
    int_pkl(&parent, &[100, 101, 102, 103, 104, 105, 106, 107]);
    std::fs::write(
        rundir.join("config.json"),
        format!("{{\"config\": {{\"ind\": {:?}}}}}", s(&parent)),
    )
    .unwrap();
    run_ok(&[
        "filter",
        s(&rundir),
        "--sel",
        "2",
        "--pc-polygon",
        "-10,-10 0.9,-10 0.9,10 -10,10",
        "-o",
        s(&out),
        "-f",
    ]);
    assert_eq!(ints(&out), [102, 103]);
    std::fs::remove_file(rundir.join("config.json")).unwrap();
    let yaml = format!("dataset_args:\n  ind: {}\n", s(&parent));
    std::fs::write(rundir.join("config.yaml"), yaml).unwrap();
    run_ok(&["filter", s(&rundir), "--sel", "2", "-o", s(&out), "-f"]);
    assert_eq!(ints(&out), [102, 103, 105, 106], "cryoDRGN's config.yaml");
    run_ok(&[
        "filter",
        s(&rundir),
        "--sel",
        "2",
        "--positions",
        "-o",
        s(&out),
        "-f",
    ]);
    assert_eq!(ints(&out), [2, 3, 5, 6]);
    // Errors.
    assert_clean_failure(
        &[
            "filter",
            s(&rundir),
            "--kmeans",
            "5",
            "--sel",
            "2",
            "-o",
            s(&out),
            "-f",
        ],
        "kmeans5",
        "not found",
        &out,
    );
    assert_clean_failure(
        &[
            "filter",
            s(&rundir),
            "--z-range",
            "0",
            "10",
            "20",
            "-o",
            s(&out),
            "-f",
        ],
        "z.3.pkl",
        "no particle",
        &out,
    );
    assert_clean_failure(
        &[
            "filter",
            s(&rundir),
            "--z-range",
            "2",
            "0",
            "1",
            "-o",
            s(&out),
            "-f",
        ],
        "DIM 2",
        "not a dimension",
        &out,
    );
}

#[test]
fn bad_inputs_fail_cleanly_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.star");
    std::fs::write(&out, "an earlier output").unwrap();
    let ctf = hand_ctf(dir.path());
    let parts = data("hand.mrcs");
    // A pose .pkl of the wrong shape (a ctf.pkl).
    assert_clean_failure(
        &[
            "write-star",
            s(&parts),
            "--ctf",
            s(&ctf),
            "--poses",
            s(&ctf),
            "-o",
            s(&out),
        ],
        "ctf.pkl",
        "(N, 3, 3)",
        &out,
    );
    // A pose .pkl for another number of particles.
    assert_clean_failure(
        &[
            "write-star",
            s(&parts),
            "--ctf",
            s(&ctf),
            "--poses",
            s(&data("toy_rot_trans.pkl")),
            "-o",
            s(&out),
        ],
        "toy_rot_trans.pkl",
        "1000 poses",
        &out,
    );
    // An index out of range.
    let ind = dir.path().join("ind.pkl");
    int_pkl(&ind, &[0, 100]);
    assert_clean_failure(
        &[
            "write-star",
            s(&parts),
            "--ctf",
            s(&ctf),
            "--ind",
            s(&ind),
            "-o",
            s(&out),
        ],
        "ind.pkl",
        "out of range",
        &out,
    );
    // No CTF for an .mrcs input.
    assert_clean_failure(
        &["write-star", s(&parts), "-o", s(&out)],
        "hand.mrcs",
        "--ctf",
        &out,
    );
    // A .cs missing the CTF fields.
    let cs = dir.path().join("noctf.cs");
    let mut r = RecordArray::with_len(2);
    r.set_u64("uid", &[1, 2]).unwrap();
    r.set_bytes("blob/path", &[s(&parts).to_string(), s(&parts).to_string()])
        .unwrap();
    r.set_u32("blob/idx", &[], &[0, 1]).unwrap();
    r.set_u32("blob/shape", &[2], &[64; 4]).unwrap();
    r.set_f32("blob/psize_A", &[], &[1.0, 1.0]).unwrap();
    write_records(&cs, &r).unwrap();
    let out_cs = dir.path().join("out.cs");
    std::fs::write(&out_cs, "an earlier output").unwrap();
    assert_clean_failure(
        &["write-star", s(&cs), "-o", s(&out)],
        "noctf.cs",
        "ctf/df1_A",
        &out,
    );
    assert_clean_failure(
        &["filter-cs", s(&cs), "--ind", s(&ind), "-o", s(&out_cs)],
        "ind.pkl",
        "out of range",
        &out_cs,
    );
    // A file that is not a .cs at all.
    assert_clean_failure(
        &["filter-cs", s(&ctf), "--ind", s(&ind), "-o", s(&out_cs)],
        "ctf.pkl",
        "",
        &out_cs,
    );
    // A 0-d array in filter-pkl.
    let scalar = dir.path().join("scalar.pkl");
    write_pkl(
        &scalar,
        &PyValue::Array(NdArray::new(vec![], ArrayData::F64(vec![1.0])).unwrap()),
    )
    .unwrap();
    assert_clean_failure(
        &["filter-pkl", s(&scalar), "--first", "1", "-o", s(&out)],
        "scalar.pkl",
        "0-d",
        &out,
    );
}
