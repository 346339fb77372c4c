//! Particle sources: the same images through .mrcs, .star and .txt; --datadir; --ind; clear errors.

use cryofield::io::source::{ParticleSource, SourceKind};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

#[test]
fn mrcs_star_and_txt_give_the_same_images() {
    let m = ParticleSource::open(data("toy_projections.mrcs"), None).unwrap();
    let s = ParticleSource::open(data("toy_projections.star"), None).unwrap();
    let t = ParticleSource::open(data("toy_projections.txt"), None).unwrap();
    assert_eq!(
        (m.kind, s.kind, t.kind),
        (SourceKind::Mrcs, SourceKind::Star, SourceKind::Txt)
    );
    assert_eq!(m.len(), s.len());
    assert_eq!(m.len(), t.len());
    let all = m.load_all().unwrap();
    assert_eq!(all, s.load_all().unwrap());
    assert_eq!(all, t.load_all().unwrap());
    let dd = m.d() * m.d();
    assert_eq!(m.image(7).unwrap(), all[7 * dd..8 * dd]);
    assert!(all.iter().any(|&x| x != 0.0));
}

#[test]
fn star_with_datadir_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let star = dir.path().join("moved.star");
    std::fs::copy(data("toy_projections.star"), &star).unwrap();
    let err = ParticleSource::open(&star, None).unwrap_err().to_string();
    assert!(
        err.contains("moved.star") && err.contains("toy_projections.mrcs"),
        "{err}"
    );
    assert!(err.contains("--datadir"), "{err}");
    let datadir = data("");
    let s = ParticleSource::open(&star, Some(&datadir)).unwrap();
    assert_eq!(s.len(), 1000);
}

#[test]
fn selection_by_indices() {
    let m = ParticleSource::open(data("hand.mrcs"), None).unwrap();
    let first = m.image(5).unwrap();
    let m = m.select(&[5, 0, 5]).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m.image(0).unwrap(), first);
    assert_eq!(m.image(2).unwrap(), first);
    assert!(m.select(&[3]).is_err());
}

#[test]
fn cs_source_names_missing_stacks() {
    let err = ParticleSource::open(data("cryosparc_P12_J24_001_particles.cs"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cryosparc_P12_J24_001_particles.cs"), "{err}");
    assert!(err.contains("J19/extract"), "{err}");
}

#[test]
fn unknown_extension_is_an_error() {
    let err = ParticleSource::open(data("hand_rot.pkl"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hand_rot.pkl") && err.contains("unknown particle file"),
        "{err}"
    );
}
