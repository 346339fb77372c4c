//! Parsers reject invalid values instead of writing them into an output: each bad value is a clean
//! error (exit ≠ 0, no panic) naming the file, the row and the field (or the flag), and an earlier
//! output at the same path is left untouched. Empty selections are errors too.

use cryofield::meta::{load_indices, Poses};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// Run the binary; (success, stderr).
fn run(args: &[OsString]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn os(s: impl AsRef<OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

const EARLIER: &[u8] = b"an earlier output";

/// Run `args` + `-o out` where `out` holds an earlier output; assert a clean failure whose message
/// contains every one of `needles` (case-insensitive) and that `out` is untouched.
fn assert_rejected(args: &[OsString], out: &Path, needles: &[&str]) {
    std::fs::write(out, EARLIER).unwrap();
    let mut a = args.to_vec();
    a.push(os("-o"));
    a.push(os(out));
    let (ok, err) = run(&a);
    assert!(!ok, "accepted {args:?}; stderr: {err}");
    assert!(!err.contains("panicked"), "panic on {args:?}: {err}");
    for n in needles {
        assert!(
            err.to_lowercase().contains(&n.to_lowercase()),
            "{args:?}: error does not say `{n}`: {err}"
        );
    }
    assert_eq!(
        std::fs::read(out).unwrap(),
        EARLIER,
        "{args:?}: output was modified"
    );
}

/// A flag and its value as arguments: `--flag=value` for long flags (so that a value like `-inf`
/// is not read as a flag), `-f value` for short ones.
fn flag_args(flag: &str, v: &str) -> Vec<OsString> {
    if flag.starts_with("--") {
        vec![os(format!("{flag}={v}"))]
    } else {
        vec![os(flag), os(v)]
    }
}

/// Run `args` + `-o out`; assert success.
fn assert_accepted(args: &[OsString], out: &Path) {
    let mut a = args.to_vec();
    a.push(os("-o"));
    a.push(os(out));
    let (ok, err) = run(&a);
    assert!(ok, "rejected {args:?}: {err}");
}

// ---------------------------------------------------------------------------------------------
// STAR files

const STAR_COLUMNS: [&str; 14] = [
    "rlnImageName",
    "rlnImageSize",
    "rlnImagePixelSize",
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnPhaseShift",
    "rlnAngleRot",
    "rlnAngleTilt",
    "rlnAnglePsi",
    "rlnOriginXAngst",
];

/// A one-table STAR file of three particles with every column the parsers read (plus
/// rlnOriginYAngst), where particle row `row` (1-based) has `value` in `column`.
fn star_text(bad: Option<(&str, usize, &str)>) -> String {
    let mut s = String::from("data_particles\n\nloop_\n");
    for c in STAR_COLUMNS.iter().chain(["rlnOriginYAngst"].iter()) {
        s.push_str(&format!("_{c}\n"));
    }
    for row in 1..=3 {
        let mut vals: Vec<String> = [
            format!("{row}@stack.mrcs"),
            "64".into(),
            "1.5".into(),
            format!("{}", 10000 + row),
            "9500".into(),
            "30.0".into(),
            "300".into(),
            "2.7".into(),
            "0.1".into(),
            "0".into(),
            "10".into(),
            "20".into(),
            "30".into(),
            "1.5".into(),
            "-3.0".into(),
        ]
        .to_vec();
        if let Some((col, r, v)) = bad {
            if r == row {
                let k = STAR_COLUMNS.iter().position(|c| *c == col).unwrap();
                vals[k] = v.to_string();
            }
        }
        s.push_str(&vals.join(" "));
        s.push('\n');
    }
    s
}

fn write_star(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn parse_ctf_star_rejects_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ctf.pkl");
    // The same file without a bad value is accepted.
    let good = write_star(dir.path(), "good.star", &star_text(None));
    assert_accepted(&[os("parse-ctf-star"), os(&good)], &out);
    let cases = [
        ("rlnDefocusU", "nan"),
        ("rlnDefocusU", "inf"),
        ("rlnDefocusV", "-inf"),
        ("rlnDefocusV", "1e400"),
        // finite in f64, not in the f32 of ctf.pkl
        ("rlnDefocusAngle", "1e39"),
        ("rlnVoltage", "0"),
        ("rlnVoltage", "-300"),
        ("rlnVoltage", "NaN"),
        ("rlnSphericalAberration", "inf"),
        ("rlnAmplitudeContrast", "1.5"),
        ("rlnAmplitudeContrast", "-0.1"),
        ("rlnAmplitudeContrast", "nan"),
        ("rlnPhaseShift", "nan"),
        ("rlnImagePixelSize", "0"),
        ("rlnImagePixelSize", "inf"),
        ("rlnImageSize", "0"),
        ("rlnImageSize", "63"),
        ("rlnImageSize", "64.5"),
        ("rlnImageSize", "2147483648"),
    ];
    for (col, v) in cases {
        let star = write_star(dir.path(), "bad.star", &star_text(Some((col, 2, v))));
        assert_rejected(
            &[os("parse-ctf-star"), os(&star)],
            &out,
            &["bad.star", col, "row 2"],
        );
    }
}

#[test]
fn parse_ctf_star_rejects_invalid_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ctf.pkl");
    let star = write_star(dir.path(), "good.star", &star_text(None));
    for (flag, v) in [
        ("--kv", "0"),
        ("--kv", "nan"),
        ("--kv", "-inf"),
        ("--cs", "nan"),
        ("--cs", "inf"),
        ("-w", "1.5"),
        ("-w", "nan"),
        ("--ps", "inf"),
        ("--Apix", "0"),
        ("--Apix", "-1.5"),
        ("--Apix", "nan"),
        ("-D", "0"),
        ("-D", "65"),
        ("-D", "100000"),
    ] {
        assert_rejected(
            &[&[os("parse-ctf-star"), os(&star)][..], &flag_args(flag, v)].concat(),
            &out,
            &[flag],
        );
    }
    // Valid overrides are accepted.
    assert_accepted(
        &[
            os("parse-ctf-star"),
            os(&star),
            os("--kv"),
            os("200"),
            os("-w"),
            os("0.07"),
            os("--ps=-90"),
            os("-D"),
            os("128"),
        ],
        &out,
    );
}

#[test]
fn parse_pose_star_errors_name_row_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pose.pkl");
    let good = write_star(dir.path(), "good.star", &star_text(None));
    assert_accepted(&[os("parse-pose-star"), os(&good)], &out);
    for (col, v) in [
        ("rlnAngleRot", "nan"),
        ("rlnAngleTilt", "inf"),
        ("rlnAnglePsi", "1e400"),
        ("rlnOriginXAngst", "-inf"),
        ("rlnImagePixelSize", "0"),
        ("rlnImageSize", "0"),
        ("rlnImageSize", "63"),
    ] {
        let star = write_star(dir.path(), "bad.star", &star_text(Some((col, 2, v))));
        assert_rejected(
            &[os("parse-pose-star"), os(&star)],
            &out,
            &["bad.star", col, "row 2"],
        );
    }
    for (flag, v) in [
        ("-D", "0"),
        ("-D", "33"),
        ("--Apix", "0"),
        ("--Apix", "inf"),
    ] {
        assert_rejected(
            &[&[os("parse-pose-star"), os(&good)][..], &flag_args(flag, v)].concat(),
            &out,
            &[flag],
        );
    }
}

#[test]
fn star_without_particles_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = star_text(None);
    // header only: cut the text before the first data row
    let header = &text[..text.find("1@stack").unwrap()];
    let star = write_star(dir.path(), "empty.star", header);
    for cmd in ["parse-ctf-star", "parse-pose-star"] {
        assert_rejected(
            &[os(cmd), os(&star)],
            &dir.path().join("out.pkl"),
            &["empty.star", "no particle"],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// cryoSPARC .cs files

/// One record of the minimal `.cs` files written here.
#[derive(Clone, Copy)]
struct Rec {
    shape: [u32; 2],
    psize: f32,
    kv: f32,
    cs_mm: f32,
    amp: f32,
    df1: f32,
    df2: f32,
    df_ang: f32,
    phase: f32,
    shift: [f32; 2],
    pose: [f32; 3],
}

const GOOD: Rec = Rec {
    shape: [64, 64],
    psize: 1.5,
    kv: 300.0,
    cs_mm: 2.7,
    amp: 0.1,
    df1: 10000.0,
    df2: 9500.0,
    df_ang: 0.5,
    phase: 0.0,
    shift: [1.0, -2.0],
    pose: [0.1, 0.2, 0.3],
};

/// A structured .npy (cryoSPARC .cs) holding `recs`, written field by field as numpy lays it out.
fn write_cs(dir: &Path, name: &str, recs: &[Rec]) -> PathBuf {
    let descr = "[('blob/shape', '<u4', (2,)), ('blob/psize_A', '<f4'), ('ctf/accel_kv', '<f4'), \
                 ('ctf/cs_mm', '<f4'), ('ctf/amp_contrast', '<f4'), ('ctf/df1_A', '<f4'), \
                 ('ctf/df2_A', '<f4'), ('ctf/df_angle_rad', '<f4'), ('ctf/phase_shift_rad', '<f4'), \
                 ('alignments3D/shift', '<f4', (2,)), ('alignments3D/pose', '<f4', (3,))]";
    let mut header = format!(
        "{{'descr': {descr}, 'fortran_order': False, 'shape': ({},), }}",
        recs.len()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for r in recs {
        for s in r.shape {
            b.extend_from_slice(&s.to_le_bytes());
        }
        let floats = [
            r.psize, r.kv, r.cs_mm, r.amp, r.df1, r.df2, r.df_ang, r.phase, r.shift[0], r.shift[1],
            r.pose[0], r.pose[1], r.pose[2],
        ];
        for f in floats {
            b.extend_from_slice(&f.to_le_bytes());
        }
    }
    let p = dir.join(name);
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn parse_ctf_csparc_rejects_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ctf.pkl");
    let good = write_cs(dir.path(), "good.cs", &[GOOD; 3]);
    assert_accepted(&[os("parse-ctf-csparc"), os(&good)], &out);
    let set = |f: fn(&mut Rec, f32), v: f32| {
        let mut r = [GOOD; 3];
        f(&mut r[1], v);
        r
    };
    let cases: Vec<(&str, [Rec; 3])> = vec![
        ("blob/psize_A", set(|r, v| r.psize = v, 0.0)),
        ("blob/psize_A", set(|r, v| r.psize = v, -1.0)),
        ("blob/psize_A", set(|r, v| r.psize = v, f32::NAN)),
        ("blob/psize_A", set(|r, v| r.psize = v, f32::INFINITY)),
        ("ctf/accel_kv", set(|r, v| r.kv = v, f32::NAN)),
        ("ctf/accel_kv", set(|r, v| r.kv = v, f32::INFINITY)),
        ("ctf/accel_kv", set(|r, v| r.kv = v, 0.0)),
        ("ctf/amp_contrast", set(|r, v| r.amp = v, f32::NAN)),
        ("ctf/amp_contrast", set(|r, v| r.amp = v, f32::NEG_INFINITY)),
        ("ctf/amp_contrast", set(|r, v| r.amp = v, 2.0)),
        ("ctf/df1_A", set(|r, v| r.df1 = v, f32::NAN)),
        ("ctf/cs_mm", set(|r, v| r.cs_mm = v, f32::INFINITY)),
        ("ctf/phase_shift_rad", set(|r, v| r.phase = v, f32::NAN)),
    ];
    for (field, recs) in cases {
        let cs = write_cs(dir.path(), "bad.cs", &recs);
        assert_rejected(
            &[os("parse-ctf-csparc"), os(&cs)],
            &out,
            &["bad.cs", field, "row 1"],
        );
    }
    // The pixel-size override is checked too.
    assert_rejected(
        &[os("parse-ctf-csparc"), os(&good), os("--Apix"), os("0")],
        &out,
        &["--Apix"],
    );
}

#[test]
fn csparc_box_size_is_square_consistent_and_sane() {
    let dir = tempfile::tempdir().unwrap();
    let with_shape = |s0: [u32; 2], s1: [u32; 2]| {
        let mut r = [GOOD; 3];
        r[0].shape = s0;
        r[1].shape = s1;
        r[2].shape = s1;
        r
    };
    let cases = [
        (with_shape([64, 32], [64, 32]), "row 0"),
        (with_shape([64, 64], [32, 32]), "row 1"),
        (
            with_shape([2147483647, 2147483647], [2147483647, 2147483647]),
            "row 0",
        ),
        (with_shape([0, 0], [0, 0]), "row 0"),
        (with_shape([63, 63], [63, 63]), "row 0"),
    ];
    for cmd in ["parse-ctf-csparc", "parse-pose-csparc"] {
        let out = dir.path().join("out.pkl");
        let good = write_cs(dir.path(), "good.cs", &[GOOD; 3]);
        assert_accepted(&[os(cmd), os(&good)], &out);
        for (recs, row) in &cases {
            let cs = write_cs(dir.path(), "bad.cs", recs);
            assert_rejected(&[os(cmd), os(&cs)], &out, &["bad.cs", "blob/shape", row]);
            // -D replaces blob/shape
            std::fs::remove_file(&out).unwrap();
            assert_accepted(&[os(cmd), os(&cs), os("-D"), os("64")], &out);
        }
        assert_rejected(&[os(cmd), os(&good), os("-D"), os("0")], &out, &["-D"]);
    }
}

#[test]
fn parse_pose_csparc_rejects_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pose.pkl");
    let mut r = [GOOD; 3];
    r[1].pose[2] = f32::NAN;
    let cs = write_cs(dir.path(), "bad.cs", &r);
    assert_rejected(
        &[os("parse-pose-csparc"), os(&cs)],
        &out,
        &["bad.cs", "alignments3D/pose", "row 1"],
    );
    let mut r = [GOOD; 3];
    r[2].shift[0] = f32::INFINITY;
    let cs = write_cs(dir.path(), "bad.cs", &r);
    assert_rejected(
        &[os("parse-pose-csparc"), os(&cs)],
        &out,
        &["bad.cs", "alignments3D/shift", "row 2"],
    );
}

#[test]
fn cs_without_records_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cs = write_cs(dir.path(), "empty.cs", &[]);
    for cmd in ["parse-ctf-csparc", "parse-pose-csparc"] {
        assert_rejected(
            &[os(cmd), os(&cs)],
            &dir.path().join("out.pkl"),
            &["empty.cs", "no particle"],
        );
        assert_rejected(
            &[os(cmd), os(&cs), os("-D"), os("64")],
            &dir.path().join("out.pkl"),
            &["empty.cs", "no particle"],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// index files

#[test]
fn index_files_are_one_dimensional_and_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ind2d.pkl");
    let a = cryofield::io::NdArray {
        shape: vec![100, 10],
        data: cryofield::io::ArrayData::I64((0..1000).collect()),
    };
    cryofield::io::pkl::write_pkl(&p, &cryofield::io::pkl::PyValue::Array(a)).unwrap();
    let Err(e) = load_indices(&p, 1000) else {
        panic!("a (100, 10) index array was accepted");
    };
    let e = e.to_string();
    assert!(
        e.contains("ind2d.pkl") && e.contains("[100, 10]") && e.contains("1-D"),
        "{e}"
    );

    let p = dir.path().join("none.pkl");
    cryofield::meta::save_indices(&p, &[]).unwrap();
    let Err(e) = load_indices(&p, 1000) else {
        panic!("an empty index file was accepted");
    };
    let e = e.to_string();
    assert!(e.contains("none.pkl") && e.contains("no image"), "{e}");

    // the reference's own index file still loads
    let ind = load_indices(data("ind100.pkl"), 1000).unwrap();
    assert!(!ind.is_empty());
}

#[test]
fn an_empty_index_file_is_refused_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let ind = dir.path().join("none.pkl");
    cryofield::meta::save_indices(&ind, &[]).unwrap();
    let out = dir.path().join("out.mrcs");
    assert_rejected(
        &[
            os("filter-mrcs"),
            os(data("hand.mrcs")),
            os("--ind"),
            os(&ind),
        ],
        &out,
        &["none.pkl", "no image"],
    );
}

// ---------------------------------------------------------------------------------------------
// pose pickles

fn hand_rotations() -> Vec<[f32; 9]> {
    Poses::load(data("hand_rot.pkl")).unwrap().rots
}

#[test]
fn pose_pickle_rotations_must_be_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let rots = hand_rotations();
    let n = rots.len();
    let good = Poses {
        rots: rots.clone(),
        trans: Some(vec![[0.01, -0.02]; n]),
    };
    let p = dir.path().join("pose.pkl");
    good.save(&p).unwrap();
    assert_eq!(Poses::load(&p).unwrap(), good);
    for (k, bad_rot) in [
        // scaled: not orthonormal
        [2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0],
        // a reflection (det −1)
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
        // zeros
        [0.0; 9],
        // sheared
        [1.0, 0.1, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    ]
    .into_iter()
    .enumerate()
    {
        let mut bad = good.clone();
        bad.rots[3] = bad_rot;
        let p = dir.path().join(format!("bad{k}.pkl"));
        bad.save(&p).unwrap();
        let Err(e) = Poses::load(&p) else {
            panic!("rotation {bad_rot:?} accepted");
        };
        let e = e.to_string();
        assert!(
            e.contains(&format!("bad{k}.pkl")) && e.contains("pose 3") && e.contains("rotation"),
            "{e}"
        );
    }
}

/// cryoDRGN's PoseTracker.load accepts a pickle holding rotations only (`(rot,)` or a bare array,
/// both of which its PoseTracker.save can write) and warns that no translations were given; so does
/// cryofield, naming the file, rather than accepting it silently.
#[test]
fn rotation_only_pose_pickle_is_not_accepted_silently() {
    let dir = tempfile::tempdir().unwrap();
    let rots = hand_rotations();
    let n = rots.len();
    let rot_array = cryofield::io::NdArray {
        shape: vec![n, 3, 3],
        data: cryofield::io::ArrayData::F32(rots.iter().flatten().copied().collect()),
    };
    let one = dir.path().join("rot_only.pkl");
    cryofield::io::pkl::write_pkl(
        &one,
        &cryofield::io::pkl::PyValue::Tuple(vec![cryofield::io::pkl::PyValue::Array(rot_array)]),
    )
    .unwrap();
    let loaded = Poses::load(&one).unwrap();
    assert_eq!((loaded.rots.len(), loaded.trans.is_none()), (n, true));
    // through the binary: pose-error on two rotation-only files warns about each
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .arg("pose-error")
        .arg(&one)
        .arg(data("hand_rot.pkl"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for f in ["rot_only.pkl", "hand_rot.pkl"] {
        assert!(
            err.lines()
                .any(|l| l.contains(f) && l.contains("warning") && l.contains("translations")),
            "no warning naming {f}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// pdb2mrc

fn pdb_atom(serial: usize, x: &str, y: &str, z: &str) -> String {
    format!("ATOM  {serial:>5}  CA  ALA A   1    {x:>8}{y:>8}{z:>8}  1.00  0.00           C\n")
}

#[test]
fn pdb2mrc_rejects_far_atoms_and_empty_maps() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("map.mrc");
    let base =
        pdb_atom(1, "15.000", "18.000", "21.000") + &pdb_atom(2, "30.000", "24.000", "18.000");
    let args = |model: &Path, extra: &[&str]| {
        let mut a = vec![
            os("pdb2mrc"),
            os(model),
            os("-D"),
            os("32"),
            os("--Apix"),
            os("1.5"),
        ];
        a.extend(extra.iter().map(os));
        a
    };
    let good = dir.path().join("good.pdb");
    std::fs::write(&good, &base).unwrap();
    assert_accepted(&args(&good, &[]), &out);

    // One atom at 1e30 Å: it pulls the centre of mass away and would leave an all-zero map.
    let far = dir.path().join("far.pdb");
    std::fs::write(&far, base.clone() + &pdb_atom(3, "1e30", "0.000", "0.000")).unwrap();
    assert_rejected(&args(&far, &[]), &out, &["far.pdb", "line 3", "coordinate"]);

    // Every atom outside the box (no centring): an all-zero map is an error naming the input.
    let outside = dir.path().join("outside.pdb");
    std::fs::write(
        &outside,
        pdb_atom(1, "900.000", "900.000", "900.000")
            + &pdb_atom(2, "950.000", "900.000", "900.000"),
    )
    .unwrap();
    assert_rejected(
        &args(&outside, &["--center", "none"]),
        &out,
        &["outside.pdb", "no atom"],
    );
}
