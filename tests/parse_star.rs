//! `parse-star` (cryoDRGN's `parse_star`): its ctf.pkl and pose.pkl are byte-identical to
//! `parse-ctf-star`'s and `parse-pose-star`'s with the same flags on every RELION fixture, and
//! equal the reference's goldens for relion31.star; existing outputs are refused without
//! `--overwrite` before anything is written; bad inputs are clean errors naming the file.

use cryofield::meta::{CtfParams, Poses};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

mod common;
use common::run_ok;

/// Run the binary; (success, stderr).
fn run(args: &[&str]) -> (bool, String) {
    let (ok, _, err) = common::run(args);
    (ok, err)
}

/// Run `args`; assert a clean failure (no panic) whose message contains every one of `needles`.
fn run_err(args: &[&str], needles: &[&str]) {
    let (ok, err) = run(args);
    assert!(!ok, "{args:?} was accepted");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: error lacks `{n}`: {err}");
    }
}

const OVERRIDES: &[&str] = &[
    "-D", "294", "--Apix", "1.7", "--kv", "200", "--cs", "2.7", "-w", "0.07", "--ps", "10",
];

/// The flags of `flags` that `parse-pose-star` takes (-D and --Apix, with their values).
fn pose_flags<'a>(flags: &[&'a str]) -> Vec<&'a str> {
    flags
        .chunks(2)
        .filter(|f| f[0] == "-D" || f[0] == "--Apix")
        .flatten()
        .copied()
        .collect()
}

#[test]
fn outputs_equal_parse_ctf_star_and_parse_pose_star() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for star in ["relion31.star", "relion31.v2.star", "relion5.star"] {
        let star = data(star);
        for flags in [&[][..], OVERRIDES] {
            let (ctf, pose) = (d.join("ctf.pkl"), d.join("pose.pkl"));
            let (ctf1, pose1) = (d.join("ctf1.pkl"), d.join("pose1.pkl"));
            let mut a = vec![
                "parse-star",
                s(&star),
                "--ctf",
                s(&ctf),
                "--poses",
                s(&pose),
            ];
            a.extend_from_slice(flags);
            a.push("--overwrite");
            run_ok(&a);
            let mut a = vec!["parse-ctf-star", s(&star), "-o", s(&ctf1)];
            a.extend_from_slice(flags);
            run_ok(&a);
            let mut a = vec!["parse-pose-star", s(&star), "-o", s(&pose1)];
            a.extend(pose_flags(flags));
            run_ok(&a);
            let what = format!("{} {flags:?}", star.display());
            assert_eq!(
                std::fs::read(&ctf).unwrap(),
                std::fs::read(&ctf1).unwrap(),
                "{what}: ctf.pkl differs from parse-ctf-star's"
            );
            assert_eq!(
                std::fs::read(&pose).unwrap(),
                std::fs::read(&pose1).unwrap(),
                "{what}: pose.pkl differs from parse-pose-star's"
            );
        }
    }
}

/// Assert `|a − b| ≤ atol` elementwise, reporting the first mismatch.
fn assert_close(what: &str, a: &[f32], b: &[f32], atol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= atol,
            "{what}: first mismatch at {i}: got {x}, reference {y} (tolerance {atol})"
        );
    }
}

#[test]
fn relion31_matches_reference_goldens() {
    // goldens: `cryodrgn parse_ctf_star relion31.star` and `parse_pose_star relion31.star -D 256`
    // (256 is the file's rlnImageSize, so both flag sets give the goldens); tolerances as in
    // tests/golden.rs: the CTF exactly (both float32), rotations 1e-6 and translations 1e-8
    // (the reference's are float64, ours float32)
    let dir = tempfile::tempdir().unwrap();
    let golden_ctf = CtfParams::load(data("golden/ctf.relion31.pkl")).unwrap();
    let golden_pose = Poses::load(data("golden/pose.relion31.pkl")).unwrap();
    for flags in [&[][..], &["-D", "256"][..]] {
        let (ctf, pose) = (dir.path().join("ctf.pkl"), dir.path().join("pose.pkl"));
        let star = data("relion31.star");
        let mut a = vec![
            "parse_star",
            s(&star),
            "--ctf",
            s(&ctf),
            "--poses",
            s(&pose),
        ];
        a.extend_from_slice(flags);
        a.push("--overwrite");
        run_ok(&a);
        assert_eq!(
            CtfParams::load(&ctf).unwrap().rows,
            golden_ctf.rows,
            "{flags:?}"
        );
        let ours = Poses::load(&pose).unwrap();
        assert_eq!(ours.len(), golden_pose.len());
        let flat = |p: &Poses| p.rots.iter().flatten().copied().collect::<Vec<f32>>();
        assert_close("rotations", &flat(&ours), &flat(&golden_pose), 1e-6);
        let flat = |p: &Poses| {
            let t = p.trans.as_ref().unwrap();
            t.iter().flatten().copied().collect::<Vec<f32>>()
        };
        assert_close("translations", &flat(&ours), &flat(&golden_pose), 1e-8);
    }
}

const EARLIER: &[u8] = b"an earlier output";

#[test]
fn existing_outputs_are_refused_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (ctf, pose) = (dir.path().join("ctf.pkl"), dir.path().join("pose.pkl"));
    let star = data("relion31.star");
    let args = [
        "parse-star",
        s(&star),
        "--ctf",
        s(&ctf),
        "--poses",
        s(&pose),
    ];
    // only the second output exists: refused before the first is written
    std::fs::write(&pose, EARLIER).unwrap();
    run_err(&args, &["pose.pkl", "already exists", "--overwrite"]);
    assert_eq!(
        std::fs::read(&pose).unwrap(),
        EARLIER,
        "pose.pkl was modified"
    );
    assert!(
        !ctf.exists(),
        "ctf.pkl was written although pose.pkl exists"
    );
    // an existing --png is refused too
    let png = dir.path().join("ctf.png");
    std::fs::write(&png, EARLIER).unwrap();
    run_err(
        &["parse-star", s(&star), "--ctf", s(&ctf), "--png", s(&png)],
        &["ctf.png", "already exists"],
    );
    assert_eq!(
        std::fs::read(&png).unwrap(),
        EARLIER,
        "ctf.png was modified"
    );
    assert!(!ctf.exists());
    // with --overwrite both are replaced
    run_ok(&[&args[..], &["--overwrite"]].concat());
    assert_ne!(std::fs::read(&pose).unwrap(), EARLIER);
    assert_eq!(Poses::load(&pose).unwrap().len(), 5);
    assert_eq!(CtfParams::load(&ctf).unwrap().len(), 5);
}

#[test]
fn one_output_is_enough_and_none_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let star = data("relion31.star");
    run_err(
        &["parse-star", s(&star)],
        &["relion31.star", "--ctf", "--poses"],
    );
    run_err(
        &["parse-star", s(&star), "-D", "256"],
        &["--ctf", "--poses"],
    );
    let pose = dir.path().join("pose.pkl");
    run_ok(&["parse-star", s(&star), "--poses", s(&pose)]);
    assert_eq!(Poses::load(&pose).unwrap().len(), 5);
    let ctf = dir.path().join("ctf.pkl");
    run_ok(&["parse-star", s(&star), "--ctf", s(&ctf)]);
    assert_eq!(CtfParams::load(&ctf).unwrap().len(), 5);
    // the same path for both outputs
    let both = dir.path().join("both.pkl");
    run_err(
        &[
            "parse-star",
            s(&star),
            "--ctf",
            s(&both),
            "--poses",
            s(&both),
        ],
        &["both.pkl", "--ctf", "--poses"],
    );
    assert!(!both.exists());
}

#[test]
fn png_plots_the_first_ctf() {
    let dir = tempfile::tempdir().unwrap();
    let (ctf, png) = (dir.path().join("ctf.pkl"), dir.path().join("ctf.png"));
    let star = data("relion31.star");
    run_ok(&[
        "parse-star",
        s(&star),
        "--ctf",
        s(&ctf),
        "--png",
        s(&png),
        "-D",
        "64",
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // a 64×64 CTF scaled ×2 (to about 150 pixels) plus a 4-pixel white border
    let (w, h) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (136, 136));
    // --png plots the CTF: without --ctf it is a usage error
    run_err(
        &[
            "parse-star",
            s(&star),
            "--poses",
            s(&dir.path().join("p.pkl")),
            "--png",
            s(&png),
        ],
        &["--ctf"],
    );
}

#[test]
fn bad_inputs_are_errors_naming_the_file_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ctf, pose) = (dir.path().join("ctf.pkl"), dir.path().join("pose.pkl"));
    let missing = dir.path().join("missing.star");
    run_err(
        &[
            "parse-star",
            s(&missing),
            "--ctf",
            s(&ctf),
            "--poses",
            s(&pose),
        ],
        &["missing.star"],
    );
    // CTF columns but no angles: the CTF parses, the poses do not, and neither is written
    let star = data("toy_projections.star");
    let args = [
        "parse-star",
        s(&star),
        "--ctf",
        s(&ctf),
        "--poses",
        s(&pose),
    ];
    run_err(
        &[&args[..], &["-D", "64", "--Apix", "1"]].concat(),
        &["toy_projections.star", "rlnAngleRot"],
    );
    assert!(!ctf.exists() && !pose.exists(), "an output was written");
    // no rlnImageSize and no -D
    run_err(&args, &["toy_projections.star"]);
    assert!(!ctf.exists() && !pose.exists(), "an output was written");
}
