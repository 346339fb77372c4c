//! The fuzz targets: each reads its input the way the CLI does (the reader, then the
//! parsing layers a user hits right after it); the result is the reader's own (`Err`: a rejection).
//!
//! Seeds: the small real fixtures in `../shared/data` (read at run time, never copied into the
//! repository) plus small files made here with the crate's own writers.

use super::engine::Target;
use cryofield::analysis::latent::load_z;
use cryofield::io::array::{ArrayData, NdArray};
use cryofield::io::cs::CsFile;
use cryofield::io::mrc::{write_mrc, MrcFile, MrcStackWriter};
use cryofield::io::npy::{npy_bytes, parse_npy, read_npy, read_npz, read_records, write_npz};
use cryofield::io::pdb::read_model;
use cryofield::io::pkl::{pickle_bytes, read_pkl_all, PyValue};
use cryofield::io::source::ParticleSource;
use cryofield::io::star::StarFile;
use cryofield::meta::{load_indices, load_int_array, CtfOverrides, CtfParams, Poses};
use std::path::{Path, PathBuf};

/// `../shared/data` beside the repository.
pub fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn fixture(name: &str) -> Vec<u8> {
    let p = shared_data().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading the fuzz seed {}: {e}", p.display()))
}

/// A fixture of this repository's tests/fixtures (made by tools/ scripts).
fn repo_fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading the fuzz seed {}: {e}", p.display()))
}

/// The storages of the cryoDRGN VAE fixture, against which `torch-pkl` inputs are parsed.
fn torch_storages() -> &'static cryofield::io::torch::Storages {
    static S: std::sync::OnceLock<cryofield::io::torch::Storages> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cryodrgn/vae/weights.pkl");
        cryofield::io::torch::read_archive(&p)
            .expect("reading the torch fixture")
            .2
    })
}

/// A torch checkpoint's `data.pkl` (the input) parsed against the VAE fixture's storages.
fn run_torch_pkl(p: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(p)?;
    cryofield::io::torch::parse_archive(&bytes, torch_storages(), p)?;
    Ok(())
}

/// A whole `torch.save` archive, read as `eval-vol` reads cryoDRGN weights.
fn run_torch_zip(p: &Path) -> anyhow::Result<()> {
    cryofield::io::torch::read_torch(p)?;
    Ok(())
}

fn torch_pkl_seeds() -> Vec<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cryodrgn/vae/weights.pkl");
    let (_, pkl, _) = cryofield::io::torch::read_archive(&p).expect("reading the torch fixture");
    vec![pkl]
}

/// Tokens of a torch state-dict pickle: its globals and persistent-id tag.
const TORCH_DICT: &[&[u8]] = &[
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"ccollections\nOrderedDict\n",
    b"ctorch\nFloatStorage\n",
    b"ctorch\nHalfStorage\n",
    b"storage",
    b"Q",
    b"R",
    b"b",
    b"\x80\x02",
];

/// The layers after the reader: each runs (a panic there is a bug) and its error is dropped, since a
/// valid file of one kind is often not what another layer wants (a CTF pickle is not a pose pickle).
/// The target's result is the reader's own: `Err` counts as a rejection.
#[derive(Default)]
struct Layers;

impl Layers {
    fn note<T, E>(&mut self, r: Result<T, E>) -> Option<T> {
        r.ok()
    }
    fn done(self) -> anyhow::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------
// Runs

/// MRC: header, single images, the full read, and the lazy (memory-mapped) particle source over a stack.
fn run_mrc(p: &Path) -> anyhow::Result<()> {
    let f = MrcFile::open(p)?;
    let mut layers = Layers;
    let _ = f.header.describe();
    let _ = f.header.apix();
    let n = f.n_images();
    if n > 0 {
        layers.note(f.image(0));
        layers.note(f.image(n - 1));
    }
    layers.note(f.image(n));
    f.read_all()?;
    if let Some(src) = layers.note(ParticleSource::open(p, None)) {
        let d = src.d();
        let k = src.len().min(3);
        let mut buf = vec![0f32; k * d * d];
        layers.note(src.read_range(0, k, &mut buf));
        layers.note(src.load_all());
        if let Some(sel) = layers.note(src.select(&[0])) {
            layers.note(sel.image(0));
        }
    }
    layers.done()
}

/// STAR: the table, then CTF and poses as parse_ctf/parse_pose do, the image names a particle source
/// resolves (stacks from ../shared/data), and the filtered copy `filter` writes.
fn run_star(p: &Path) -> anyhow::Result<()> {
    let star = StarFile::read(p)?;
    let mut layers = Layers;
    let n = layers.note(star.n_particles());
    layers.note(CtfParams::from_star(
        &star,
        None,
        None,
        &CtfOverrides::default(),
    ));
    let ov = CtfOverrides {
        kv: Some(300.0),
        cs: Some(2.7),
        w: Some(0.1),
        ps: Some(0.0),
    };
    layers.note(CtfParams::from_star(&star, Some(64), Some(1.5), &ov));
    layers.note(Poses::from_star(&star, None, None));
    layers.note(Poses::from_star(&star, Some(64), Some(1.5)));
    layers.note(star.particle_str("rlnImageName"));
    let _ = star.optics_table();
    if let Some(src) = layers.note(ParticleSource::open(p, Some(&shared_data()))) {
        if !src.is_empty() {
            layers.note(src.image(0));
        }
    }
    if n.is_some_and(|n| n > 0) {
        layers.note(star.write_filtered(p.with_extension("out.star"), &[0]));
    }
    layers.done()
}

/// cryoSPARC .cs: the record array, the blob names, then CTF and poses as parse_ctf/parse_pose do.
fn run_cs(p: &Path) -> anyhow::Result<()> {
    let cs = CsFile::read(p)?;
    let mut layers = Layers;
    layers.note(cs.blobs());
    let _ = cs.records.names();
    layers.note(CtfParams::from_cs(&cs.records, &cs.path, None, None));
    layers.note(CtfParams::from_cs(
        &cs.records,
        &cs.path,
        Some(180),
        Some(1.0),
    ));
    layers.note(Poses::from_cs(&cs.records, &cs.path, None, false, false));
    layers.note(Poses::from_cs(&cs.records, &cs.path, Some(180), true, true));
    layers.note(ParticleSource::open(p, Some(&shared_data())));
    layers.done()
}

/// Pickles: every loader the CLI points at a .pkl (poses, CTF, indices, latents, generic).
fn run_pkl(p: &Path) -> anyhow::Result<()> {
    read_pkl_all(p)?;
    let mut layers = Layers;
    layers.note(Poses::read(p));
    layers.note(CtfParams::load(p));
    layers.note(load_indices(p, 1000));
    layers.note(load_int_array(p, "labels"));
    layers.note(load_z(p));
    layers.done()
}

/// .npy: plain arrays, structured arrays (the .cs reader's layer), latents.
fn run_npy(p: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(p)?;
    parse_npy(&bytes, p)?;
    let mut layers = Layers;
    if let Some(a) = layers.note(read_npy(p)) {
        let _ = a.to_f32();
        let _ = a.to_f64();
        let _ = a.to_i64();
    }
    if let Some(r) = layers.note(read_records(p)) {
        for name in r.names() {
            if let Some(c) = layers.note(r.column(&name)) {
                let _ = c.to_f64();
            }
            layers.note(r.column_strings(&name));
            layers.note(r.column_u64(&name));
        }
    }
    layers.note(load_z(p));
    layers.done()
}

/// .npz: every array of the archive.
fn run_npz(p: &Path) -> anyhow::Result<()> {
    for (_, a) in read_npz(p)? {
        let _ = a.to_f32();
    }
    Ok(())
}

/// PDB and mmCIF (`pdb2mrc`'s reader; it dispatches on the extension), first model and every
/// model (`pc-prepare`'s reader).
fn run_model(p: &Path) -> anyhow::Result<()> {
    let first = read_model(p);
    let all = cryofield::io::pdb::read_models(p);
    first?;
    all?;
    Ok(())
}

/// Point-cloud observations (`OBS.npz`, issue 25), validated.
fn run_pc_obs(p: &Path) -> anyhow::Result<()> {
    cryofield::pointcloud::data::Observations::read(p)?;
    Ok(())
}

/// Point-cloud ground truth (`GT.npz`, issue 25), validated.
fn run_pc_gt(p: &Path) -> anyhow::Result<()> {
    cryofield::pointcloud::data::GroundTruth::read(p)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Seeds made with the crate's writers

fn tmp_written(ext: &str, write: impl FnOnce(&Path)) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let p = dir.path().join(format!("seed.{ext}"));
    write(&p);
    std::fs::read(&p).expect("reading a written seed")
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.37).sin()).collect()
}

fn mrc_seeds() -> Vec<Vec<u8>> {
    vec![
        tmp_written("mrcs", |p| {
            write_mrc(p, &ramp(3 * 8 * 8), (3, 8, 8), 1.5, false).expect("writing a seed stack")
        }),
        tmp_written("mrc", |p| {
            write_mrc(p, &ramp(4 * 4 * 4), (4, 4, 4), 2.0, true).expect("writing a seed volume")
        }),
        tmp_written("mrcs", |p| {
            let mut w = MrcStackWriter::create(p, 2, 6, 6, 1.0).expect("creating a seed stack");
            w.write_images(&ramp(2 * 36)).expect("writing a seed stack");
            w.finish().expect("finishing a seed stack");
        }),
        fixture("golden/hand-vol.32.mrc"),
        fixture("toymodel_small_nocenter.mrc"),
    ]
}

fn star_seeds() -> Vec<Vec<u8>> {
    let toy = fixture("toy_projections.star");
    // the header and the first 12 particles of the toy stack's table
    let small: Vec<u8> = String::from_utf8_lossy(&toy)
        .lines()
        .take(25)
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    vec![
        fixture("relion31.star"),
        fixture("relion31.v2.star"),
        fixture("relion5.star"),
        small,
    ]
}

fn pkl_seeds() -> Vec<Vec<u8>> {
    let arr = |shape: Vec<usize>, v: Vec<f32>| PyValue::Array(NdArray::from_f32(shape, v).unwrap());
    let poses = PyValue::Tuple(vec![
        arr(
            vec![2, 3, 3],
            vec![
                1., 0., 0., 0., 1., 0., 0., 0., 1., 0., 1., 0., -1., 0., 0., 0., 0., 1.,
            ],
        ),
        arr(vec![2, 2], vec![0.01, -0.02, 0.0, 0.1]),
    ]);
    let ind = PyValue::Array(NdArray::from_i64(vec![4], vec![0, 3, 5, 7]).unwrap());
    let ctf = arr(
        vec![1, 9],
        vec![64., 1.5, 10000., 9000., 45., 300., 2.7, 0.1, 0.],
    );
    let mixed = PyValue::Dict(vec![
        (PyValue::Str("a".into()), PyValue::Int(3)),
        (PyValue::Str("b".into()), PyValue::Float(0.5)),
        (
            PyValue::Str("c".into()),
            PyValue::List(vec![
                PyValue::Bool(true),
                PyValue::None,
                PyValue::Bytes(b"xy".to_vec()),
            ]),
        ),
    ]);
    vec![
        fixture("ctf1.pkl"),
        fixture("ind100.pkl"),
        fixture("pose.star.pkl"),
        fixture("hand_rot.pkl"),
        fixture("hand_rot_trans.pkl"),
        fixture("golden/ctf.relion31.pkl"),
        pickle_bytes(&poses),
        pickle_bytes(&ind),
        pickle_bytes(&ctf),
        pickle_bytes(&mixed),
    ]
}

fn npy_seeds() -> Vec<Vec<u8>> {
    vec![
        fixture("golden/shift_grid_base.npy"),
        fixture("golden/so3_grid_res0.npy"),
        npy_bytes(&NdArray::from_f32(vec![3, 2], ramp(6)).unwrap()),
        npy_bytes(&NdArray::from_i64(vec![5], vec![0, 1, -1, i64::MAX, 7]).unwrap()),
        npy_bytes(&NdArray::new(vec![2, 2], ArrayData::F64(vec![0.5, 1.5, -2.0, 1e300])).unwrap()),
        // a structured array (the .cs fixture cut to 2 records)
        cs_small(),
    ]
}

fn npz_seeds() -> Vec<Vec<u8>> {
    vec![tmp_written("npz", |p| {
        write_npz(
            p,
            &[
                ("z".into(), NdArray::from_f32(vec![4, 2], ramp(8)).unwrap()),
                (
                    "ind".into(),
                    NdArray::from_i64(vec![3], vec![2, 0, 1]).unwrap(),
                ),
            ],
        )
        .expect("writing a seed .npz")
    })]
}

fn pc_obs_seeds() -> Vec<Vec<u8>> {
    use cryofield::pointcloud::data::{Observations, Projection};
    vec![tmp_written("npz", |p| {
        Observations {
            proj: vec![Projection {
                rot: [0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                points: ramp(6).iter().map(|&v| v as f64).collect(),
            }],
            cg: Some(vec![0.1, 0.2, 0.3, -0.1, -0.2, -0.3]),
            subunit: Some(vec![0.5, 0.5, 0.5]),
            n_points: 4,
            frame: Some(([1.0, 2.0, 3.0], 10.0)),
        }
        .write(p)
        .expect("writing a seed OBS.npz")
    })]
}

fn pc_gt_seeds() -> Vec<Vec<u8>> {
    use cryofield::pointcloud::data::GroundTruth;
    vec![tmp_written("npz", |p| {
        GroundTruth {
            clouds: ramp(12).iter().map(|&v| v as f64).collect(),
            s: 2,
            n: 2,
            center: vec![0.0; 6],
            scale: vec![1.0, 2.0],
            atoms: None,
        }
        .write(p)
        .expect("writing a seed GT.npz")
    })]
}

/// The .cs fixture cut to its first 2 records (its header's shape rewritten): a small structured array.
fn cs_small() -> Vec<u8> {
    let full = fixture("cryosparc_P12_J24_001_particles.cs");
    let hlen = u16::from_le_bytes([full[8], full[9]]) as usize;
    let header = String::from_utf8_lossy(&full[10..10 + hlen]).to_string();
    let n: usize = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .expect("the .cs fixture's shape");
    let rec = (full.len() - 10 - hlen) / n;
    let new_header = header.replacen(&format!("'shape': ({n},"), "'shape': (2,", 1);
    // keep the header length (pad with spaces before the newline) so the data stays aligned
    let mut h = new_header.trim_end_matches('\n').to_string();
    while h.len() + 1 < hlen {
        h.push(' ');
    }
    h.push('\n');
    let mut out = full[..10].to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&full[10 + hlen..10 + hlen + 2 * rec]);
    out
}

const PDB_SEED: &str = "\
HEADER    TEST
CRYST1   50.000   50.000   50.000  90.00  90.00  90.00 P 1           1
ATOM      1  CA  ALA A   1      15.000  18.000  21.000  1.00  0.00           C
ATOM      2  N   ALA A   1      30.000  24.000  18.000  1.00  0.00           N
HETATM    3 FE   HEM A   2      10.500  11.250  12.125  0.50 20.00          FE
ATOM      4  O   GLY B   3      -1.000   2.000  -3.000  1.00  5.00
MODEL        2
ATOM      5  CA  ALA A   1      15.000  18.000  21.000  1.00  0.00           C
ENDMDL
END
";

const CIF_SEED: &str = "\
data_three
#
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
_atom_site.pdbx_PDB_model_num
ATOM   1 C CA ALA A 1 15.000 18.000 21.000 1.00 1
ATOM   2 N N  ALA A 1 30.000 24.000 18.000 1.00 1
HETATM 3 FE FE HEM A . 10.500 11.250 12.125 0.50 1
ATOM   4 O 'O 1' GLY B 3 -1.000 2.000 -3.000 ? 1
ATOM   5 C CA ALA A 1 15.000 18.000 21.000 1.00 2
#
";

// ---------------------------------------------------------------------------------------------------
// Dictionaries

const STAR_DICT: &[&[u8]] = &[
    b"data_",
    b"data_optics\n",
    b"data_particles\n",
    b"loop_\n",
    b"_rlnOpticsGroup",
    b"_rlnImageName",
    b"_rlnDefocusU",
    b"_rlnImageSize",
    b"_rlnImagePixelSize",
    b"_rlnAngleRot",
    b"_rlnOriginXAngst",
    b"_rlnVoltage",
    b"# version 30001\n",
    b"1@toy_projections.mrcs",
    b"0@toy_projections.mrcs",
    b"99999@toy_projections.mrcs",
    b"1@/",
    b"\"",
    b"'",
];

const BIN_DICT: &[&[u8]] = &[
    b"\x93NUMPY",
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
    b"'<f8'",
    b"'|b1'",
    b"'<i8'",
    b"'>f4'",
    b"'fortran_order': True",
    b"(0,)",
    b"(99999999999, 99999999999)",
    b"[]",
    b"'descr': [],",
    b"('x', '<f4', (0,))",
    b"('blob/idx', '<u4')",
    b"('blob/path', '|O')",
    b"('alignments3D/pose', '<f4', (3,))",
    b"'|S0'",
    b"'<U4'",
    b"'<c8'",
    b"'<V8'",
    b"MAP ",
    b"\x80\x02",
    b"cnumpy.core.multiarray\n_reconstruct\n",
    b"cnumpy\ndtype\n",
    b"cbuiltins\neval\n",
    b"R",
    b"t",
    b"(",
    b"]",
    b"}",
    b"\x94",
    b".",
];

const PDB_DICT: &[&[u8]] = &[
    b"ATOM  ",
    b"HETATM",
    b"MODEL        1\n",
    b"ENDMDL\n",
    b"END\n",
    b"data_x\n",
    b"loop_\n",
    b"_atom_site.Cartn_x\n",
    b"_atom_site.type_symbol\n",
    b"_atom_site.id\n",
    b"?",
    b".",
    b"'",
    b";\n",
];

// ---------------------------------------------------------------------------------------------------

/// Every target, with its seeds.
pub fn all() -> Vec<Target> {
    vec![
        Target {
            name: "mrc",
            ext: "mrcs",
            text: false,
            dict: BIN_DICT,
            seeds: mrc_seeds(),
            run: run_mrc,
        },
        Target {
            name: "star",
            ext: "star",
            text: true,
            dict: STAR_DICT,
            seeds: star_seeds(),
            run: run_star,
        },
        Target {
            name: "cs",
            ext: "cs",
            text: false,
            dict: BIN_DICT,
            seeds: vec![cs_small(), fixture("cryosparc_P12_J24_001_particles.cs")],
            run: run_cs,
        },
        Target {
            name: "pkl",
            ext: "pkl",
            text: false,
            dict: BIN_DICT,
            seeds: pkl_seeds(),
            run: run_pkl,
        },
        Target {
            name: "npy",
            ext: "npy",
            text: false,
            dict: BIN_DICT,
            seeds: npy_seeds(),
            run: run_npy,
        },
        Target {
            name: "npz",
            ext: "npz",
            text: false,
            dict: BIN_DICT,
            seeds: npz_seeds(),
            run: run_npz,
        },
        Target {
            name: "pdb",
            ext: "pdb",
            text: true,
            dict: PDB_DICT,
            seeds: vec![PDB_SEED.as_bytes().to_vec()],
            run: run_model,
        },
        Target {
            name: "mmcif",
            ext: "cif",
            text: true,
            dict: PDB_DICT,
            seeds: vec![CIF_SEED.as_bytes().to_vec()],
            run: run_model,
        },
        Target {
            name: "pc-obs",
            ext: "npz",
            text: false,
            dict: BIN_DICT,
            seeds: pc_obs_seeds(),
            run: run_pc_obs,
        },
        Target {
            name: "torch-pkl",
            ext: "pkl",
            text: false,
            dict: TORCH_DICT,
            seeds: torch_pkl_seeds(),
            run: run_torch_pkl,
        },
        Target {
            name: "torch-zip",
            ext: "pkl",
            text: false,
            dict: BIN_DICT,
            seeds: vec![repo_fixture("cryodrgn/nn/weights.pkl")],
            run: run_torch_zip,
        },
        Target {
            name: "pc-gt",
            ext: "npz",
            text: false,
            dict: BIN_DICT,
            seeds: pc_gt_seeds(),
            run: run_pc_gt,
        },
    ]
}
