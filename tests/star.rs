//! STAR reader/writer tests: the shared RELION 3.1/5 and 3.0 fixtures (values checked against
//! cryoDRGN 4.3's `Starfile.get_optics_values`), synthetic texts for each layout, malformed input
//! and a no-panic fuzz.

use cryofield::io::star::StarFile;
use cryofield::Error;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

fn parse(text: &str) -> Result<StarFile, Error> {
    StarFile::parse(text, Path::new("mem.star"))
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "lengths: got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "index {i}: got {g}, want {w}"
        );
    }
}

fn sum(v: &[f64]) -> f64 {
    v.iter().sum()
}

// ---------------------------------------------------------------- fixtures

/// relion31.star (optics first) and relion31.v2.star (optics after particles) hold the same data.
#[test]
fn relion31_fixtures_optics_before_and_after() {
    for name in ["relion31.star", "relion31.v2.star"] {
        let s = StarFile::read(data(name)).unwrap();
        assert_eq!(s.n_particles().unwrap(), 5, "{name}");
        assert_close(&s.particle_f64("rlnImagePixelSize").unwrap(), &[2.806; 5]);
        assert_close(&s.particle_f64("rlnImageSize").unwrap(), &[256.0; 5]);
        assert_close(&s.particle_f64("rlnVoltage").unwrap(), &[300.0; 5]);
        assert_close(
            &s.particle_f64("rlnSphericalAberration").unwrap(),
            &[0.01; 5],
        );
        assert_close(&s.particle_f64("rlnAmplitudeContrast").unwrap(), &[0.1; 5]);
        assert_close(&s.particle_f64("rlnPhaseShift").unwrap(), &[0.0; 5]);
        assert_close(&s.particle_f64("rlnDefocusAngle").unwrap(), &[-160.39; 5]);
        let du = s.particle_f64("rlnDefocusU").unwrap();
        assert_close(&du[..3], &[13108.082418, 12906.018499, 12730.825404]);
        assert!((sum(&du) - 63976.50971).abs() < 1e-6);
        assert!((sum(&s.particle_f64("rlnDefocusV").unwrap()) - 62664.00971).abs() < 1e-6);
        assert!((sum(&s.particle_f64("rlnAngleRot").unwrap()) - 20.827573).abs() < 1e-6);
        assert_close(
            &s.particle_f64("rlnAnglePsi").unwrap()[..3],
            &[124.706463, 123.77474, 132.223679],
        );
        assert_close(
            &s.particle_f64("rlnOriginXAngst").unwrap()[..3],
            &[0.019324, -0.25248, -0.65323],
        );
        let names = s.particle_str("rlnImageName").unwrap();
        let want: Vec<String> = (1..=5).map(|i| format!("{i:06}@relion31.mrcs")).collect();
        assert_eq!(names, want);
        assert_eq!(
            s.particle_str("rlnOpticsGroupName").unwrap(),
            vec!["opticsGroup1"; 5]
        );
        assert!(s.has_particle_column("rlnVoltage"));
        assert!(s.has_particle_column("_rlnDefocusU"));
        assert!(!s.has_particle_column("rlnOriginX"));
        assert_eq!(s.optics_table().unwrap().rows.len(), 1);
    }
}

#[test]
fn relion5_fixture() {
    let s = StarFile::read(data("relion5.star")).unwrap();
    assert_eq!(s.n_particles().unwrap(), 17);
    assert_close(&s.particle_f64("rlnImagePixelSize").unwrap(), &[0.89; 17]);
    assert_close(&s.particle_f64("rlnImageSize").unwrap(), &[448.0; 17]);
    assert_close(&s.particle_f64("rlnVoltage").unwrap(), &[100.0; 17]);
    assert_close(
        &s.particle_f64("rlnSphericalAberration").unwrap(),
        &[1.6; 17],
    );
    let du = s.particle_f64("rlnDefocusU").unwrap();
    assert_close(&du[..3], &[11949.06133, 11963.504884, 11895.295429]);
    assert!((sum(&du) - 200190.016102).abs() < 1e-6);
    assert!((sum(&s.particle_f64("rlnDefocusV").unwrap()) - 198258.318575).abs() < 1e-6);
    assert!((sum(&s.particle_f64("rlnAngleRot").unwrap()) - 1485.93522).abs() < 1e-6);
    let angle = s.particle_f64("rlnDefocusAngle").unwrap();
    assert_close(&[angle[0], angle[16]], &[49.059993, 81.974647]);
    let names = s.particle_str("rlnImageName").unwrap();
    assert_eq!(
        &names[..3],
        &[
            "1@toy_images_a.mrcs",
            "2@toy_images_b.mrcs",
            "3@toy_images_a.mrcs"
        ]
    );
    assert_eq!(names[16], "6@toy_images_b.mrcs");
    // A bracketed Zernike list is a string, not a number.
    let e = s.particle_f64("rlnOddZernike").unwrap_err().to_string();
    assert!(
        e.contains("rlnOddZernike") && e.contains("relion5.star"),
        "{e}"
    );
    assert!(s.particle_str("rlnOddZernike").unwrap()[0].starts_with("[0.068"));
}

/// RELION 3.0 style (`data_images`, no optics): optics-like values come from the particle table.
#[test]
fn toy_projections_fixture() {
    let s = StarFile::read(data("toy_projections.star")).unwrap();
    assert_eq!(s.n_particles().unwrap(), 1000);
    assert!(s.optics_table().is_none());
    assert_close(&s.particle_f64("rlnVoltage").unwrap(), &[300.0; 1000]);
    assert_close(
        &s.particle_f64("rlnSphericalAberration").unwrap(),
        &[0.001; 1000],
    );
    assert_close(&s.particle_f64("rlnPhaseShift").unwrap(), &[90.0; 1000]);
    let dummy = s.particle_f64("dummyVariable").unwrap();
    assert_close(
        &dummy[..13],
        &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12., 42.],
    );
    let names = s.particle_str("_rlnImageName").unwrap();
    assert_eq!(names[0], "000001@toy_projections.mrcs");
    assert_eq!(names[999], "001000@toy_projections.mrcs");
    match s.particle_f64("rlnImagePixelSize") {
        Err(Error::MissingColumn {
            path,
            column,
            available,
        }) => {
            assert!(path.ends_with("toy_projections.star"));
            assert_eq!(column, "rlnImagePixelSize");
            assert!(available.contains(&"rlnDefocusU".to_string()));
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
}

// ---------------------------------------------------------------- synthetic layouts

const RELION30: &str = "\
# RELION 3.0
data_

loop_
_rlnImageName #1
_rlnDefocusU #2
_rlnVoltage #3
_rlnDetectorPixelSize #4
_rlnOriginX #5
1@a.mrcs 10000.5 300 5.0 1.5
2@a.mrcs 20000.5 200 5.0 -2.5
";

#[test]
fn relion30_data_block_without_optics() {
    let s = parse(RELION30).unwrap();
    assert_eq!(s.blocks[0].name, "");
    assert_eq!(s.n_particles().unwrap(), 2);
    assert_close(&s.particle_f64("rlnVoltage").unwrap(), &[300.0, 200.0]);
    assert_close(&s.particle_f64("_rlnOriginX").unwrap(), &[1.5, -2.5]);
    assert_eq!(
        s.particle_str("rlnImageName").unwrap(),
        vec!["1@a.mrcs", "2@a.mrcs"]
    );
    assert!(!s.has_particle_column("rlnImagePixelSize"));
}

#[test]
fn relion31_optics_after_particles() {
    let text = "\
# version 30001
data_particles
loop_
_rlnImageName #1
_rlnOpticsGroup #2
_rlnDefocusU #3
1@p.mrcs 1 100
2@p.mrcs 1 200

# version 30001
data_optics
loop_
_rlnOpticsGroup #1
_rlnImagePixelSize #2
_rlnImageSize #3
1 1.5 128
";
    let s = parse(text).unwrap();
    assert_eq!(s.n_particles().unwrap(), 2);
    assert_close(&s.particle_f64("rlnImagePixelSize").unwrap(), &[1.5, 1.5]);
    assert_close(&s.particle_f64("rlnImageSize").unwrap(), &[128.0, 128.0]);
    assert_close(&s.particle_f64("rlnDefocusU").unwrap(), &[100.0, 200.0]);
}

const TWO_GROUPS: &str = "\
data_optics
loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnImagePixelSize #3
_rlnVoltage #4
opticsGroupSeven 7 1.25 300
opticsGroupThree 3 0.85 200

data_particles
loop_
_rlnImageName #1
_rlnOpticsGroup #2
_rlnAngleRot #3
1@s.mrcs 3 10
2@s.mrcs 7 20
3@s.mrcs 3 30
4@s.mrcs 7 40
";

/// Group ids are matched by value (7 then 3 in the optics table), not by row position.
#[test]
fn two_optics_groups_non_sequential_ids() {
    let s = parse(TWO_GROUPS).unwrap();
    assert_eq!(s.n_particles().unwrap(), 4);
    assert_close(
        &s.particle_f64("rlnImagePixelSize").unwrap(),
        &[0.85, 1.25, 0.85, 1.25],
    );
    assert_close(
        &s.particle_f64("rlnVoltage").unwrap(),
        &[200.0, 300.0, 200.0, 300.0],
    );
    assert_eq!(
        s.particle_str("rlnOpticsGroupName").unwrap(),
        vec![
            "opticsGroupThree",
            "opticsGroupSeven",
            "opticsGroupThree",
            "opticsGroupSeven"
        ]
    );
    assert_close(
        &s.particle_f64("rlnOpticsGroup").unwrap(),
        &[3.0, 7.0, 3.0, 7.0],
    );
}

#[test]
fn unknown_optics_group_is_an_error() {
    let text = TWO_GROUPS.replace("4@s.mrcs 7 40", "4@s.mrcs 5 40");
    let s = parse(&text).unwrap();
    let e = s.particle_f64("rlnImagePixelSize").unwrap_err().to_string();
    assert!(e.contains("optics group 5") && e.contains("row 4"), "{e}");
    // Columns of the particle table itself are still readable.
    assert_close(
        &s.particle_f64("rlnAngleRot").unwrap(),
        &[10., 20., 30., 40.],
    );
}

#[test]
fn optics_without_group_column_in_particles() {
    let one = "data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 300\n\ndata_particles\nloop_\n_rlnImageName\n1@x.mrcs\n2@x.mrcs\n";
    let s = parse(one).unwrap();
    assert_close(&s.particle_f64("rlnVoltage").unwrap(), &[300.0, 300.0]);
    let two = one.replace("1 300\n", "1 300\n2 200\n");
    let e = parse(&two)
        .unwrap()
        .particle_f64("rlnVoltage")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rlnOpticsGroup") && e.contains("2 groups"),
        "{e}"
    );
}

#[test]
fn quoted_values_comments_and_crlf() {
    let text = "# header comment\r\n\r\ndata_particles   \r\n\r\nloop_ \r\n_rlnImageName #1 \r\n  _rlnMicrographName  #2\r\n_rlnDefocusU #3\r\n# a comment inside the loop\r\n\"1@odd name.mrcs\" \"mics/with space.mrc\" 1.5e4  # trailing\r\n2@b.mrcs 'it's here' -3\r\n\r\n\t3@c.mrcs\tmid'quote\t+7.25\r\n";
    let s = parse(text).unwrap();
    assert_eq!(s.n_particles().unwrap(), 3);
    assert_eq!(
        s.particle_str("rlnImageName").unwrap(),
        vec!["1@odd name.mrcs", "2@b.mrcs", "3@c.mrcs"]
    );
    assert_eq!(
        s.particle_str("rlnMicrographName").unwrap(),
        vec!["mics/with space.mrc", "it's here", "mid'quote"]
    );
    assert_close(
        &s.particle_f64("rlnDefocusU").unwrap(),
        &[15000.0, -3.0, 7.25],
    );
}

#[test]
fn key_value_blocks_are_kept_but_not_particles() {
    let text = "data_general\n_rlnNrClasses 3\n_rlnComment 'two words'\n\n".to_string() + RELION30;
    let s = parse(&text).unwrap();
    assert_eq!(s.blocks.len(), 2);
    assert_eq!(
        s.blocks[0].pairs[1],
        ("rlnComment".into(), "two words".into())
    );
    assert_eq!(s.n_particles().unwrap(), 2);
}

// ---------------------------------------------------------------- malformed input

#[test]
fn missing_column_names_column_file_and_available() {
    let s = parse(TWO_GROUPS).unwrap();
    let e = s.particle_f64("_rlnDefocusU").unwrap_err();
    match &e {
        Error::MissingColumn {
            path,
            column,
            available,
        } => {
            assert_eq!(path, Path::new("mem.star"));
            assert_eq!(column, "rlnDefocusU");
            // Particle columns and optics columns, each once.
            assert_eq!(
                available,
                &[
                    "rlnImageName",
                    "rlnOpticsGroup",
                    "rlnAngleRot",
                    "rlnOpticsGroupName",
                    "rlnImagePixelSize",
                    "rlnVoltage"
                ]
            );
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("mem.star") && msg.contains("rlnDefocusU"),
        "{msg}"
    );
    assert!(s.particle_str("rlnDefocusU").is_err());
}

#[test]
fn ragged_row_names_file_and_line() {
    let text = RELION30.replace("2@a.mrcs 20000.5 200 5.0 -2.5", "2@a.mrcs 20000.5 200 5.0");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("mem.star") && e.contains("line 11"), "{e}");
    assert!(e.contains("4 values") && e.contains("5 columns"), "{e}");
    let text = RELION30.replace(
        "1@a.mrcs 10000.5 300 5.0 1.5",
        "1@a.mrcs 10000.5 300 5.0 1.5 9",
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("line 10"), "{e}");
}

#[test]
fn empty_file_and_comment_only_file() {
    for text in ["", "\n\n   \n", "# only a comment\n"] {
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.contains("mem.star") && e.contains("no `data_` block"),
            "{text:?}: {e}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.star");
    std::fs::write(&p, "").unwrap();
    let e = StarFile::read(&p).unwrap_err().to_string();
    assert!(e.contains("empty.star"), "{e}");
    let e = StarFile::read(dir.path().join("absent.star"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.star"), "{e}");
}

#[test]
fn no_loop_at_all() {
    let s = parse("data_general\n_rlnKey 1\n").unwrap();
    let e = s.n_particles().unwrap_err().to_string();
    assert!(
        e.contains("mem.star") && e.contains("no particle table"),
        "{e}"
    );
    assert!(s.particle_f64("rlnKey").is_err());
    assert!(!s.has_particle_column("rlnKey"));
    // An optics table alone is not a particle table.
    let s = parse("data_optics\nloop_\n_rlnOpticsGroup\n1\n").unwrap();
    assert!(s.n_particles().is_err());
}

#[test]
fn non_numeric_value_names_column_and_row() {
    let text = RELION30.replace("20000.5", "20k");
    let s = parse(&text).unwrap();
    let e = s.particle_f64("rlnDefocusU").unwrap_err().to_string();
    assert!(e.contains("mem.star"), "{e}");
    assert!(
        e.contains("rlnDefocusU") && e.contains("row 2") && e.contains("`20k`"),
        "{e}"
    );
    // Non-numeric optics values name the optics row.
    let text = TWO_GROUPS.replace("0.85", "n/a");
    let e = parse(&text)
        .unwrap()
        .particle_f64("rlnImagePixelSize")
        .unwrap_err()
        .to_string();
    assert!(e.contains("optics row 2") && e.contains("`n/a`"), "{e}");
}

#[test]
fn invalid_utf8_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bin.star");
    std::fs::write(&p, b"data_\nloop_\n_a\n\xff\xfe\n").unwrap();
    let e = StarFile::read(&p).unwrap_err().to_string();
    assert!(e.contains("bin.star") && e.contains("UTF-8"), "{e}");
}

// ---------------------------------------------------------------- writing

#[test]
fn write_filtered_round_trip_relion31() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["relion31.star", "relion31.v2.star", "relion5.star"] {
        let s = StarFile::read(data(name)).unwrap();
        let out = dir.path().join(format!("filtered_{name}"));
        let ind = [4, 0, 2, 2];
        s.write_filtered(&out, &ind).unwrap();
        let r = StarFile::read(&out).unwrap();
        assert_eq!(r.n_particles().unwrap(), 4);
        let names = s.particle_str("rlnImageName").unwrap();
        let want: Vec<String> = ind.iter().map(|&i| names[i].clone()).collect();
        assert_eq!(r.particle_str("rlnImageName").unwrap(), want);
        let du = s.particle_f64("rlnDefocusU").unwrap();
        let want: Vec<f64> = ind.iter().map(|&i| du[i]).collect();
        assert_close(&r.particle_f64("rlnDefocusU").unwrap(), &want);
        // Optics kept unchanged, lookups still work.
        assert_eq!(r.optics_table(), s.optics_table());
        assert_close(
            &r.particle_f64("rlnImagePixelSize").unwrap(),
            &s.particle_f64("rlnImagePixelSize").unwrap()[..4],
        );
        // RELION 3.1 marker so RELION does not treat it as 3.0.
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("# version 30001\n\ndata_optics"), "{name}");
        assert!(text.contains("data_particles"), "{name}");
        if name == "relion5.star" {
            // RELION's bracketed Zernike lists stay bare (the reference keeps quotes as text).
            assert!(text.contains(" [0.0680480107376,"), "{text}");
        }
        // The particle table's columns are unchanged.
        assert_eq!(
            r.particles_table().unwrap().columns,
            s.particles_table().unwrap().columns
        );
    }
}

#[test]
fn write_filtered_round_trip_relion30_and_quotes() {
    let dir = tempfile::tempdir().unwrap();
    let text = "data_general\n_rlnComment 'two words'\n\n".to_string()
        + &RELION30.replace("2@a.mrcs", "\"2@a b.mrcs\"");
    let s = parse(&text).unwrap();
    let out = dir.path().join("r30.star");
    s.write_filtered(&out, &[1]).unwrap();
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(!written.contains("# version"), "{written}");
    assert!(written.contains("\ndata_\n"), "{written}");
    let r = StarFile::read(&out).unwrap();
    assert_eq!(r.blocks.len(), 2);
    assert_eq!(r.blocks[0], s.blocks[0]);
    assert_eq!(r.particle_str("rlnImageName").unwrap(), vec!["2@a b.mrcs"]);
    assert_close(&r.particle_f64("rlnOriginX").unwrap(), &[-2.5]);
    // Empty selection keeps the header.
    s.write_filtered(&out, &[]).unwrap();
    let r = StarFile::read(&out).unwrap();
    assert_eq!(r.n_particles().unwrap(), 0);
    assert_eq!(r.particles_table().unwrap().columns.len(), 5);
}

#[test]
fn write_filtered_full_selection_reproduces_tables() {
    let dir = tempfile::tempdir().unwrap();
    let s = StarFile::read(data("toy_projections.star")).unwrap();
    let out = dir.path().join("all.star");
    let all: Vec<usize> = (0..1000).collect();
    s.write_filtered(&out, &all).unwrap();
    let r = StarFile::read(&out).unwrap();
    assert_eq!(r.blocks, s.blocks);
}

#[test]
fn write_filtered_out_of_range_keeps_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = parse(RELION30).unwrap();
    let out = dir.path().join("keep.star");
    std::fs::write(&out, "old").unwrap();
    let e = s.write_filtered(&out, &[0, 2]).unwrap_err().to_string();
    assert!(e.contains("index 2") && e.contains("2 particles"), "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

// ---------------------------------------------------------------- fuzz

/// Exercise every accessor on whatever parsed; none may panic.
fn poke(s: &StarFile) {
    let _ = s.n_particles();
    for c in [
        "rlnImageName",
        "rlnDefocusU",
        "rlnImagePixelSize",
        "rlnVoltage",
        "rlnOpticsGroup",
        "_a",
    ] {
        let _ = s.particle_f64(c);
        let _ = s.particle_str(c);
        let _ = s.has_particle_column(c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_text_never_panics(text in "(data_|loop_|_rln[A-Z][a-z]*|#|'|\"|;|[ \t\r\n]|[0-9.e+-]{1,6}|[a-z@/]{1,5}|\u{e9}){0,60}") {
        if let Ok(s) = parse(&text) {
            poke(&s);
        }
    }

    #[test]
    fn mutated_star_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..8)
    ) {
        let mut text: Vec<char> = TWO_GROUPS.chars().collect();
        for (at, kind, c) in edits {
            if text.is_empty() {
                text.push(c);
                continue;
            }
            let i = at.index(text.len());
            match kind {
                0 => text.insert(i, c),
                1 => { text.remove(i); }
                _ => text[i] = c,
            }
        }
        let text: String = text.into_iter().collect();
        if let Ok(s) = parse(&text) {
            poke(&s);
            let dir = tempfile::tempdir().unwrap();
            if let Ok(n) = s.n_particles() {
                let ind: Vec<usize> = (0..n).rev().collect();
                if s.write_filtered(dir.path().join("m.star"), &ind).is_ok() {
                    let r = StarFile::read(dir.path().join("m.star")).unwrap();
                    prop_assert_eq!(r.n_particles().unwrap(), n);
                }
            }
        }
    }
}
