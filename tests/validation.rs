//! Parsers reject invalid values instead of writing them into an output: each bad value is a clean
//! error (exit ≠ 0, no panic) naming the file, the row and the field (or the flag), and an earlier
//! output at the same path is left untouched. Empty selections are errors too.

use cryofield::meta::load_indices;
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

/// Run `args` + `-o out`; assert success.
fn assert_accepted(args: &[OsString], out: &Path) {
    let mut a = args.to_vec();
    a.push(os("-o"));
    a.push(os(out));
    let (ok, err) = run(&a);
    assert!(ok, "rejected {args:?}: {err}");
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
