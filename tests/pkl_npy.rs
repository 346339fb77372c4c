//! Tests of the safe pickle reader/writer and the npy/npz reader/writer: real fixtures from
//! `../shared/data`, cross-checks against Python/numpy (when `CRYOFIELD_PYTHON` names a Python
//! with numpy), forbidden globals, and fuzzing with proptest.

use cryofield::io::array::{ArrayData, NdArray};
use cryofield::io::npy::{self, Npy};
use cryofield::io::pkl::{self, PyValue};
use cryofield::Error;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// The fixture at `rel`, or `None` (with a printed reason) when the shared data folder is absent.
fn fixture(rel: &str) -> Option<PathBuf> {
    let p = data_dir().join(rel);
    if p.exists() {
        Some(p)
    } else {
        println!("skipped: fixture {} not found", p.display());
        None
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn arr(v: &PyValue) -> &NdArray {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v:?}"))
}

fn f32s(a: &NdArray) -> &[f32] {
    match &a.data {
        ArrayData::F32(v) => v,
        d => panic!("expected float32, got {}", d.descr()),
    }
}

// ---------------------------------------------------------------------------------------------
// Real fixtures (values checked against numpy by hand).

#[test]
fn fixture_ctf1_pkl() {
    let Some(p) = fixture("ctf1.pkl") else { return };
    let v = pkl::read_pkl(&p).unwrap();
    let a = arr(&v);
    assert_eq!(a.shape, vec![5, 9]);
    let d = f32s(a);
    let row0 = [
        300.0,
        1.035,
        15686.0,
        17521.4,
        87.62906646728516,
        300.0,
        0.001,
        0.1,
        0.0,
    ];
    for (i, (&got, &want)) in d[..9].iter().zip(&row0).enumerate() {
        assert_eq!(got, want as f32, "ctf1[0,{i}]");
    }
    assert_eq!(d[4 * 9 + 2], 14106.6f32);
    assert_eq!(d[4 * 9 + 4], 10.903939247131348f64 as f32);
}

#[test]
fn fixture_hand_rot_trans_tuple() {
    let Some(p) = fixture("hand_rot_trans.pkl") else {
        return;
    };
    let PyValue::Tuple(items) = pkl::read_pkl(&p).unwrap() else {
        panic!("not a tuple")
    };
    assert_eq!(items.len(), 2);
    let (rot, trans) = (arr(&items[0]), arr(&items[1]));
    assert_eq!(rot.shape, vec![100, 3, 3]);
    assert_eq!(trans.shape, vec![100, 2]);
    let r = f32s(rot);
    let want0 = [
        -0.6646641492843628,
        0.17914113402366638,
        -0.725348174571991,
        -0.7470477819442749,
        -0.17478454113006592,
        0.6413812637329102,
        -0.011881828308105469,
        0.9681729078292847,
        0.25,
    ];
    for (i, &w) in want0.iter().enumerate() {
        assert_eq!(r[i], w as f32, "rot[0] item {i}");
    }
    assert_eq!(r[99 * 9 + 2 * 3 + 1], -0.8573098f32);
    let t = f32s(trans);
    assert_eq!(t[198], 0.05865384638309479f64 as f32);
    assert_eq!(t[199], -0.014423076994717121f64 as f32);
}

#[test]
fn fixture_ind100_int64() {
    let Some(p) = fixture("ind100.pkl") else {
        return;
    };
    let v = pkl::read_pkl(&p).unwrap();
    let a = arr(&v);
    assert_eq!(a.shape, vec![100]);
    assert_eq!(a.data, ArrayData::I64((0..100).collect()));
}

#[test]
fn fixture_zvals_and_all_pickles_in_file() {
    let Some(p) = fixture("zvals_het-8_4k.pkl") else {
        return;
    };
    let all = pkl::read_pkl_all(&p).unwrap();
    assert_eq!(all.len(), 1);
    let a = arr(&all[0]);
    assert_eq!(a.shape, vec![4549, 8]);
    let d = f32s(a);
    assert_eq!(d[4548 * 8], -2.9836783409118652f64 as f32);
    assert_eq!(d[4548 * 8 + 7], -0.4292668104171753f64 as f32);
    assert_eq!(d[1234 * 8 + 5], -0.34731257f32);
}

/// (file, shape of each array, dtype of each array)
type FixtureCase = (
    &'static str,
    &'static [&'static [usize]],
    &'static [&'static str],
);

#[test]
fn fixture_other_pickles_shapes_and_dtypes() {
    let cases: [FixtureCase; 11] = [
        (
            "golden/pose.csparc.pkl",
            &[&[2019, 3, 3], &[2019, 2]],
            &["<f4", "<f4"],
        ),
        ("golden/ctf.relion31.pkl", &[&[5, 9]], &["<f4"]),
        ("golden/ctf.csparc.pkl", &[&[2019, 9]], &["<f4"]),
        ("test_ctf.pkl", &[&[1000, 9]], &["<f4"]),
        ("toy_angles.pkl", &[&[1000, 3, 3]], &["<f4"]),
        ("hand_rot.pkl", &[&[100, 3, 3]], &["<f4"]),
        ("pose.star.pkl", &[&[5, 3, 3], &[5, 2]], &["<f8", "<f8"]),
        ("pose.cs.pkl", &[&[2019, 3, 3], &[2019, 2]], &["<f4", "<f4"]),
        (
            "toy_rot_trans.pkl",
            &[&[1000, 3, 3], &[1000, 2]],
            &["<f4", "<f8"],
        ),
        ("toy_trans.pkl", &[&[1000, 2]], &["<f8"]),
        ("ctf2.pkl", &[&[2019, 9]], &["<f4"]),
    ];
    for (rel, shapes, descr) in cases {
        let Some(p) = fixture(rel) else { continue };
        let v = pkl::read_pkl(&p).unwrap();
        let arrays: Vec<&NdArray> = match &v {
            PyValue::Tuple(items) => items.iter().map(arr).collect(),
            other => vec![arr(other)],
        };
        let got: Vec<&[usize]> = arrays.iter().map(|a| a.shape.as_slice()).collect();
        assert_eq!(got, shapes, "{rel}");
        let got: Vec<&str> = arrays.iter().map(|a| a.data.descr()).collect();
        assert_eq!(got, descr, "{rel}");
    }
}

#[test]
fn fixture_golden_npy_files() {
    let Some(p) = fixture("golden/ht2_center.npy") else {
        return;
    };
    let a = npy::read_npy(&p).unwrap();
    assert_eq!(a.shape, vec![4, 64, 64]);
    let d = f32s(&a);
    assert_eq!(d[0], -0.00015413761f32);
    assert_eq!(d[3 * 4096 + 63 * 64 + 62], 2.2914239e-05f32);
    let Some(p) = fixture("golden/so3_grid_res1.npy") else {
        return;
    };
    let a = npy::read_npy(&p).unwrap();
    assert_eq!(a.shape, vec![576, 4]);
    let want = [
        -0.5724109411239624,
        0.07535932958126068,
        -0.4970516264438629,
        0.6477702856063843,
    ];
    for (i, &w) in want.iter().enumerate() {
        assert_eq!(f32s(&a)[575 * 4 + i], w as f32);
    }
    for rel in [
        "ctf_ctf1_lattice.npy",
        "ht2_symmetrized.npy",
        "htn_center_vol.npy",
        "iht2_roundtrip.npy",
        "shift_grid_base.npy",
        "so3_grid_res0.npy",
    ] {
        let Some(p) = fixture(&format!("golden/{rel}")) else {
            continue;
        };
        let a = npy::read_npy(&p).unwrap();
        assert_eq!(a.data.descr(), "<f4", "{rel}");
        assert!(!a.is_empty(), "{rel}");
    }
}

#[test]
fn fixture_fortran_order_f8_npy() {
    // im_shifted.npy is a Fortran-ordered float64 (64, 64) array.
    let Some(p) = fixture("im_shifted.npy") else {
        return;
    };
    let a = npy::read_npy(&p).unwrap();
    assert_eq!(a.shape, vec![64, 64]);
    let ArrayData::F64(d) = &a.data else {
        panic!("not f64")
    };
    assert_eq!(d[64 + 2], 0.004907353266596578);
    assert_eq!(d[2 * 64 + 1], 0.005739472630572111);
    assert_eq!(d[63 * 64], 0.00337753162188805);
    assert_eq!(d[63], 0.004034989672738057);
}

#[test]
fn fixture_cryosparc_cs_records() {
    let Some(p) = fixture("cryosparc_P12_J24_001_particles.cs") else {
        return;
    };
    let r = npy::read_records(&p).unwrap();
    assert_eq!(r.n, 2019);
    assert_eq!(r.itemsize, 246);
    let names = r.names();
    assert_eq!(names.len(), 34);
    assert_eq!(&names[..3], ["uid", "blob/path", "blob/idx"]);
    let pose_field = r.field("alignments3D/pose").unwrap();
    assert_eq!(
        (
            pose_field.offset,
            pose_field.shape.as_slice(),
            pose_field.descr.as_str()
        ),
        (178, &[3][..], "<f4")
    );

    let paths = r.column_strings("blob/path").unwrap();
    assert_eq!(paths.len(), 2019);
    assert_eq!(
        paths[1000],
        "J19/extract/20150917_05247_DNA-TET-25k-DE20_raw.region_000.sum-all_003-072_particles.mrc"
    );
    assert_eq!(r.column_strings("ctf/type").unwrap()[0], "ctffind4");

    let idx = r.column("blob/idx").unwrap();
    assert_eq!(idx.shape, vec![2019]);
    assert_eq!(idx.to_i64().unwrap()[..2], [0, 1]);
    assert_eq!(idx.to_i64().unwrap()[2018], 124);
    assert_eq!(idx.to_i64().unwrap()[1000], 2);

    let shape = r.column("blob/shape").unwrap();
    assert_eq!(shape.shape, vec![2019, 2]);
    assert_eq!(shape.to_i64().unwrap()[..2], [180, 180]);

    let df1 = r.column("ctf/df1_A").unwrap();
    assert_eq!(f32s(&df1)[0], 45591.37109375f64 as f32);
    assert_eq!(f32s(&df1)[10], 45591.37f32);
    assert_eq!(f32s(&df1)[2018], 22815.318359375f64 as f32);
    assert_eq!(f32s(&r.column("ctf/df2_A").unwrap())[2018], 21894.865f32);
    assert_eq!(f32s(&r.column("ctf/accel_kv").unwrap())[0], 200.0);

    let pose = r.column("alignments3D/pose").unwrap();
    assert_eq!(pose.shape, vec![2019, 3]);
    let want = [0.9782414436340332, 1.8828518390655518, -2.170363664627075];
    for (i, &w) in want.iter().enumerate() {
        assert_eq!(f32s(&pose)[5 * 3 + i], w as f32);
    }
    let shift = r.column("alignments3D/shift").unwrap();
    assert_eq!(
        f32s(&shift)[..4],
        [11.334375381469727f64 as f32, -1.828125, 1.265625, -4.640625]
    );

    // uid is uint64 with values above i64::MAX: column() refuses, column_u64() is exact.
    assert_eq!(r.column_u64("uid").unwrap()[0], 15494748553812943456);
    assert_eq!(r.column_u64("uid").unwrap()[2018], 2601904955171077498);
    assert!(r.column("uid").is_err());

    match r.column("ctf/nope") {
        Err(Error::MissingColumn {
            column, available, ..
        }) => {
            assert_eq!(column, "ctf/nope");
            assert!(available.contains(&"ctf/df1_A".to_string()));
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
    assert!(
        r.column("blob/path").is_err(),
        "string field read as numbers"
    );
    assert!(
        npy::read_npy(&p).is_err(),
        "structured file read as a plain array"
    );
}

// ---------------------------------------------------------------------------------------------
// Python-written pickles embedded as bytes (no Python needed).

/// `pickle.dumps((np.asfortranarray(np.arange(6, dtype='>i4').reshape(2, 3)), np.float32(1.5), {'k': [1, None]}), protocol=2)`
/// as written by Python 3.11 / numpy 2.4 (hex).
const PY_PROTO2_HEX: &str = "8002636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b00857102635f636f646563730a656e636f64650a7103580100000062710458060000006c6174696e317105867106527107877108527109284b014b024b0386710a636e756d70790a64747970650a710b58020000006934710c898887710d52710e284b0358010000003e710f4e4e4e4affffffff4affffffff4b007471106288680358180000000000000000000003000000010000000400000002000000057111680586711252711374711462636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7115680b5802000000663471168988877117527118284b0358010000003c71194e4e4e4affffffff4affffffff4b0074711a62680358050000000000c3803f711b680586711c52711d86711e52711f7d712058010000006b71215d7122284b014e65738771232e";
/// The same value with `protocol=5` (`_frombuffer`, BYTEARRAY8, Fortran order `'F'`).
const PY_PROTO5_HEX: &str = "800595f3000000000000008c136e756d70792e5f636f72652e6e756d65726963948c0b5f66726f6d62756666657294939428961800000000000000000000000000000300000001000000040000000200000005948c056e756d7079948c0564747970659493948c02693494898887945294284b038c013e944e4e4e4affffffff4affffffff4b007494624b024b0386948c014694749452948c166e756d70792e5f636f72652e6d756c74696172726179948c067363616c617294939468068c02663494898887945294284b038c013c944e4e4e4affffffff4affffffff4b0074946243040000c03f94869452947d948c016b945d94284b014e657387942e";

fn expected_seed_value() -> PyValue {
    PyValue::Tuple(vec![
        PyValue::Array(NdArray::new(vec![2, 3], ArrayData::I32(vec![0, 1, 2, 3, 4, 5])).unwrap()),
        PyValue::Float(1.5),
        PyValue::Dict(vec![(
            PyValue::Str("k".into()),
            PyValue::List(vec![PyValue::Int(1), PyValue::None]),
        )]),
    ])
}

#[test]
fn python_protocol2_and_5_bytes_parse() {
    for (name, hex) in [("proto2", PY_PROTO2_HEX), ("proto5", PY_PROTO5_HEX)] {
        let v = pkl::parse_pickles(&unhex(hex), Path::new(name)).unwrap();
        assert_eq!(v, vec![expected_seed_value()], "{name}");
    }
}

#[test]
fn back_to_back_pickles_roundtrip_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("z.8.pkl");
    let mu = PyValue::Array(
        NdArray::from_f32(vec![3, 2], vec![0.5, -1.0, 2.0, 3.25, -4.0, 1e-3]).unwrap(),
    );
    let logvar = PyValue::Array(NdArray::from_f32(vec![3, 2], vec![-2.0; 6]).unwrap());
    pkl::write_pkls(&p, &[mu.clone(), logvar.clone()]).unwrap();
    assert_eq!(pkl::read_pkl_all(&p).unwrap(), vec![mu.clone(), logvar]);
    assert_eq!(pkl::read_pkl(&p).unwrap(), mu);
    // Trailing garbage after the pickles is an error for read_pkl_all.
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.push(0xff);
    assert!(pkl::parse_pickles(&bytes, &p).is_err());
}

// ---------------------------------------------------------------------------------------------
// Forbidden globals.

#[test]
fn forbidden_global_os_system_is_refused_and_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let cmd = format!("touch {}", marker.display());
    // Protocol 2: GLOBAL 'os system', BINUNICODE cmd, TUPLE1, REDUCE, STOP.
    let mut b = b"\x80\x02cos\nsystem\nX".to_vec();
    b.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
    b.extend_from_slice(cmd.as_bytes());
    b.extend_from_slice(b"\x85R.");
    // Protocol 4: STACK_GLOBAL('posix', 'system').
    let mut b4 = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93\x94X".to_vec();
    b4.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
    b4.extend_from_slice(cmd.as_bytes());
    b4.extend_from_slice(b"\x85R.");
    let p = dir.path().join("evil.pkl");
    for (bytes, module) in [(b, "os"), (b4, "posix")] {
        std::fs::write(&p, &bytes).unwrap();
        let e = pkl::read_pkl(&p).unwrap_err();
        let msg = e.to_string();
        match e {
            Error::ForbiddenGlobal {
                module: m,
                name,
                path,
            } => {
                assert_eq!((m.as_str(), name.as_str()), (module, "system"));
                assert_eq!(path, p);
            }
            other => panic!("expected ForbiddenGlobal, got {other}"),
        }
        assert!(
            msg.contains(&format!("{module}.system")) && msg.contains("evil.pkl"),
            "{msg}"
        );
    }
    assert!(!marker.exists());
}

#[test]
fn allowed_module_with_other_name_is_refused() {
    // numpy.load is in an allowed module but is not an allowed name.
    let b = b"\x80\x02cnumpy\nload\n)R.";
    match pkl::parse_pickles(b, Path::new("x.pkl")) {
        Err(Error::ForbiddenGlobal { module, name, .. }) => {
            assert_eq!((module.as_str(), name.as_str()), ("numpy", "load"))
        }
        other => panic!("expected ForbiddenGlobal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// npy / npz.

#[test]
fn npy_and_npz_roundtrip_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let arrays = vec![
        (
            "rot".to_string(),
            NdArray::from_f32(vec![1, 3, 3], (0..9).map(|i| i as f32 * 0.5).collect()).unwrap(),
        ),
        (
            "ind".to_string(),
            NdArray::from_i64(vec![4], vec![3, -1, i64::MAX, 0]).unwrap(),
        ),
        (
            "mask".to_string(),
            NdArray::new(vec![2], ArrayData::Bool(vec![false, true])).unwrap(),
        ),
        (
            "u".to_string(),
            NdArray::new(vec![2, 1], ArrayData::U8(vec![7, 255])).unwrap(),
        ),
        (
            "d".to_string(),
            NdArray::new(vec![], ArrayData::F64(vec![-0.125])).unwrap(),
        ),
    ];
    let npz = dir.path().join("a.npz");
    npy::write_npz(&npz, &arrays).unwrap();
    assert_eq!(npy::read_npz(&npz).unwrap(), arrays);
    for (name, a) in &arrays {
        let p = dir.path().join(format!("{name}.npy"));
        npy::write_npy(&p, a).unwrap();
        assert_eq!(&npy::read_npy(&p).unwrap(), a);
    }
    // A corrupt archive is a Format error naming the file.
    std::fs::write(&npz, b"PK\x03\x04 not really a zip").unwrap();
    let e = npy::read_npz(&npz).unwrap_err().to_string();
    assert!(e.contains("a.npz"), "{e}");
}

/// A small structured .npy like a cryoSPARC file: nested names, padding, sub-array, both byte
/// orders, byte and unicode strings.
fn structured_npy() -> Vec<u8> {
    let dict = "{'descr': [('uid', '<u8'), ('blob', [('path', '|S5'), ('idx', '<u4')]), ('', '|V3'), ('pose', '>f4', (3,)), ('name', '<U2')], 'fortran_order': False, 'shape': (2,), }";
    let mut h = dict.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    for (uid, path, idx, pose, name) in [
        (u64::MAX, &b"ab\0\0\0"[..], 7u32, [1.0f32, -2.0, 0.5], "x"),
        (5, b"hello", 9, [3.0, 4.0, 5.0], "yz"),
    ] {
        b.extend_from_slice(&uid.to_le_bytes());
        b.extend_from_slice(path);
        b.extend_from_slice(&idx.to_le_bytes());
        b.extend_from_slice(&[0xee; 3]);
        for x in pose {
            b.extend_from_slice(&x.to_be_bytes());
        }
        let mut chars: Vec<u32> = name.chars().map(u32::from).collect();
        chars.resize(2, 0);
        for c in chars {
            b.extend_from_slice(&c.to_le_bytes());
        }
    }
    b
}

#[test]
fn structured_npy_fields() {
    let Npy::Records(r) = npy::parse_npy(&structured_npy(), Path::new("s.npy")).unwrap() else {
        panic!("records expected")
    };
    assert_eq!(r.names(), ["uid", "blob/path", "blob/idx", "pose", "name"]);
    assert_eq!(r.itemsize, 8 + 5 + 4 + 3 + 12 + 8);
    assert_eq!(r.column_u64("uid").unwrap(), vec![u64::MAX, 5]);
    assert_eq!(r.column_strings("blob/path").unwrap(), ["ab", "hello"]);
    assert_eq!(r.column("blob/idx").unwrap().to_i64().unwrap(), [7, 9]);
    let pose = r.column("pose").unwrap();
    assert_eq!(pose.shape, vec![2, 3]);
    assert_eq!(f32s(&pose), [1.0, -2.0, 0.5, 3.0, 4.0, 5.0]);
    assert_eq!(r.column_strings("name").unwrap(), ["x", "yz"]);
}

// ---------------------------------------------------------------------------------------------
// Cross-checks with Python.

/// A canonical text form shared with the Python side: floats by their f64 bits, strings and
/// bytes in hex, arrays as `a<descr>|<shape>|<little-endian C-order data in hex>`.
fn canon(v: &PyValue) -> String {
    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
    fn join(items: &[PyValue]) -> String {
        items.iter().map(canon).collect::<Vec<_>>().join(",")
    }
    match v {
        PyValue::None => "N".into(),
        PyValue::Bool(b) => if *b { "T" } else { "F" }.into(),
        PyValue::Int(i) => format!("i{i}"),
        PyValue::Float(f) => format!("f{:016x}", f.to_bits()),
        PyValue::Str(s) => format!("s{}", hex(s.as_bytes())),
        PyValue::Bytes(b) => format!("b{}", hex(b)),
        PyValue::Tuple(t) => format!("({})", join(t)),
        PyValue::List(t) => format!("[{}]", join(t)),
        PyValue::Dict(items) => format!(
            "{{{}}}",
            items
                .iter()
                .map(|(k, x)| format!("{}:{}", canon(k), canon(x)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        PyValue::Array(a) => {
            let data: Vec<u8> = match &a.data {
                ArrayData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ArrayData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ArrayData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ArrayData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ArrayData::U8(v) => v.clone(),
                ArrayData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            };
            let shape = a
                .shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x");
            format!("a{}|{shape}|{}", a.data.descr(), hex(&data))
        }
    }
}

const PY_CANON: &str = r#"
import sys, struct, pickle, os
import numpy as np

WIDEN = {'f2': '<f4', 'f4': '<f4', 'f8': '<f8', 'i1': '<i4', 'i2': '<i4', 'i4': '<i4', 'u2': '<i4',
         'i8': '<i8', 'u4': '<i8', 'u8': '<i8', 'u1': '|u1', 'b1': '|b1'}

def canon(v):
    if v is None: return 'N'
    if isinstance(v, np.ndarray):
        key = v.dtype.kind + str(v.dtype.itemsize)
        d = WIDEN[key]
        data = np.ascontiguousarray(v.astype(d)).tobytes()
        return 'a%s|%s|%s' % (d, 'x'.join(str(s) for s in v.shape), data.hex())
    if isinstance(v, (bool, np.bool_)): return 'T' if v else 'F'
    if isinstance(v, (int, np.integer)): return 'i%d' % int(v)
    if isinstance(v, (float, np.floating)): return 'f%016x' % struct.unpack('<Q', struct.pack('<d', float(v)))[0]
    if isinstance(v, str): return 's' + v.encode('utf-8').hex()
    if isinstance(v, (bytes, bytearray)): return 'b' + bytes(v).hex()
    if isinstance(v, tuple): return '(' + ','.join(canon(x) for x in v) + ')'
    if isinstance(v, list): return '[' + ','.join(canon(x) for x in v) + ']'
    if isinstance(v, dict): return '{' + ','.join(canon(k) + ':' + canon(x) for k, x in v.items()) + '}'
    raise TypeError(type(v))

def load_all(path):
    out = []
    with open(path, 'rb') as f:
        while True:
            try:
                out.append(pickle.load(f))
            except EOFError:
                return out
"#;

const PY_WRITE: &str = r#"
out = sys.argv[1]
rng = np.random.default_rng(0)
cases = {}
for dt in ['<f4', '>f4', '<f8', '>f8', '<i4', '>i4', '<i8', '>i8', 'u1', 'b1', '<f2', 'i1', '>i2', '<u2', '<u4', '>u8']:
    base = (rng.standard_normal((2, 3, 4)) * 50)
    if dt == 'b1': base = base > 0
    if 'u' in dt: base = np.abs(base)
    a = base.astype(dt)
    tag = dt.replace('<', 'le').replace('>', 'be')
    cases['c_' + tag] = a
    cases['f_' + tag] = np.asfortranarray(a)
    cases['1d_' + tag] = a.reshape(-1)[:5].copy()
    cases['0d_' + tag] = np.array(a.reshape(-1)[0])
cases['empty'] = np.zeros((0, 3), dtype='<f4')
cases['strided'] = np.arange(20, dtype='<i8').reshape(4, 5)[:, ::2]
cases['transposed'] = np.arange(6, dtype='<f8').reshape(2, 3).T
rot = rng.standard_normal((4, 3, 3)).astype('f4')
cases['pose'] = (rot, rng.standard_normal((4, 2)).astype('f4'))
cases['mixed'] = {'a': [1, -2, 2**40, -2**63, 2**63 - 1, None, True, False], 'b': (1.5, float('inf'), -0.0),
                  's': 'héllo ✓', 'bytes': b'\x00\xff', 'empty_bytes': b'', 'nested': {'t': (), 'l': []},
                  7: 'int key'}
cases['scalars'] = (np.float32(1.25), np.float64(-3.5), np.int64(-7), np.int32(9), np.uint8(200), np.bool_(True))
x = np.arange(3, dtype='<i8')
shared = [1, 2]
cases['shared'] = (x, x, shared, shared)
cases['bytearray'] = bytearray(b'abc')
exp = open(os.path.join(out, 'expected.txt'), 'w')
for proto in [2, 3, 4, 5]:
    for name, v in cases.items():
        fname = 'p%d_%s.pkl' % (proto, name)
        with open(os.path.join(out, fname), 'wb') as f:
            pickle.dump(v, f, protocol=proto)
        exp.write('%s\t%s\n' % (fname, canon(v)))
    fname = 'p%d_backtoback.pkl' % proto
    with open(os.path.join(out, fname), 'wb') as f:
        pickle.dump(rot, f, protocol=proto)
        pickle.dump(cases['mixed'], f, protocol=proto)
        pickle.dump(cases['0d_lef4'], f, protocol=proto)
    exp.write('%s\t%s;%s;%s\n' % (fname, canon(rot), canon(cases['mixed']), canon(cases['0d_lef4'])))
# .npy in every version, plain and Fortran, and .npz stored and deflated.
for name in ['c_lef4', 'f_bef8', 'c_bei8', 'f_b1', 'c_u1', '0d_lei4', 'c_lef2']:
    for ver in [(1, 0), (2, 0), (3, 0)]:
        fname = 'n%d_%s.npy' % (ver[0], name)
        with open(os.path.join(out, fname), 'wb') as f:
            np.lib.format.write_array(f, cases[name], version=ver)
        exp.write('%s\t%s\n' % (fname, canon(cases[name])))
np.savez(os.path.join(out, 'plain.npz'), rot=rot, ind=np.arange(5), m=np.array([True, False]))
np.savez_compressed(os.path.join(out, 'comp.npz'), rot=rot, ind=np.arange(5), m=np.array([True, False]))
for z in ['plain.npz', 'comp.npz']:
    exp.write('%s\t%s\n' % (z, ';'.join('%s=%s' % (k, canon(v)) for k, v in [('rot', rot), ('ind', np.arange(5)), ('m', np.array([True, False]))])))
# A structured array like a cryoSPARC file (aligned, so numpy writes padding fields).
dt = np.dtype([('uid', '<u8'), ('blob', [('path', 'S12'), ('idx', '<u4')]), ('pose', '>f4', (3,)), ('name', '<U3'), ('flag', 'b1'), ('v', '<f8')], align=True)
r = np.zeros(3, dtype=dt)
r['uid'] = [2**64 - 1, 5, 6]
r['blob']['path'] = [b'a.mrcs', b'bb.mrcs', b'']
r['blob']['idx'] = [0, 10, 20]
r['pose'] = rng.standard_normal((3, 3))
r['name'] = ['x', 'yzw', 'é']
r['flag'] = [True, False, True]
r['v'] = [0.5, -1.5, 2.5]
np.save(os.path.join(out, 'rec.npy'), r)
rec = open(os.path.join(out, 'rec_expected.txt'), 'w')
rec.write('itemsize\t%d\n' % dt.itemsize)
rec.write('uid\t%s\n' % ','.join(str(int(u)) for u in r['uid']))
rec.write('blob/path\t%s\n' % ','.join(s.decode().encode().hex() for s in r['blob']['path']))
rec.write('name\t%s\n' % ','.join(s.encode().hex() for s in r['name']))
for col, v in [('blob/idx', r['blob']['idx']), ('pose', r['pose']), ('flag', r['flag']), ('v', r['v'])]:
    rec.write('%s\t%s\n' % (col, canon(v)))
"#;

const PY_READ: &str = r#"
out = sys.argv[1]
for line in open(os.path.join(out, 'written.txt')):
    fname = line.rstrip('\n').split('\t')[0]
    p = os.path.join(out, fname)
    if fname.endswith('.pkl'):
        vals = load_all(p)
        print('%s\t%s' % (fname, ';'.join(canon(v) for v in vals)))
    elif fname.endswith('.npz'):
        z = np.load(p)
        print('%s\t%s' % (fname, ';'.join('%s=%s' % (k, canon(z[k])) for k in z.files)))
    else:
        print('%s\t%s' % (fname, canon(np.load(p))))
"#;

fn python() -> Option<String> {
    match std::env::var("CRYOFIELD_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            println!("skipped: CRYOFIELD_PYTHON not set");
            None
        }
    }
}

fn run_python(py: &str, script: &str, dir: &Path) -> String {
    let out = Command::new(py)
        .args(["-W", "error", "-c", script])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py}: {e}"));
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tab_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
}

#[test]
fn python_written_pickles_and_npy_are_read_identically() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    run_python(&py, &format!("{PY_CANON}\n{PY_WRITE}"), dir.path());
    let expected = std::fs::read_to_string(dir.path().join("expected.txt")).unwrap();
    let mut failures = Vec::new();
    let cases = tab_lines(&expected);
    assert!(cases.len() > 200, "python wrote only {} cases", cases.len());
    for (fname, want) in &cases {
        let p = dir.path().join(fname);
        let got: Result<String, Error> = if fname.ends_with(".pkl") {
            pkl::read_pkl_all(&p).map(|vs| vs.iter().map(canon).collect::<Vec<_>>().join(";"))
        } else if fname.ends_with(".npz") {
            npy::read_npz(&p).map(|vs| {
                vs.into_iter()
                    .map(|(k, a)| format!("{k}={}", canon(&PyValue::Array(a))))
                    .collect::<Vec<_>>()
                    .join(";")
            })
        } else {
            npy::read_npy(&p).map(|a| canon(&PyValue::Array(a)))
        };
        match got {
            Ok(g) if &g == want => {}
            Ok(g) => failures.push(format!("{fname}:\n  want {want}\n  got  {g}")),
            Err(e) => failures.push(format!("{fname}: error {e}")),
        }
    }
    // The structured file.
    let r = npy::read_records(dir.path().join("rec.npy")).unwrap();
    let hex = |s: &str| s.bytes().map(|x| format!("{x:02x}")).collect::<String>();
    for (col, want) in
        tab_lines(&std::fs::read_to_string(dir.path().join("rec_expected.txt")).unwrap())
    {
        let got = match col.as_str() {
            "itemsize" => r.itemsize.to_string(),
            "uid" => r
                .column_u64("uid")
                .unwrap()
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(","),
            "blob/path" | "name" => r
                .column_strings(&col)
                .unwrap()
                .iter()
                .map(|s| hex(s))
                .collect::<Vec<_>>()
                .join(","),
            _ => canon(&PyValue::Array(r.column(&col).unwrap())),
        };
        if got != want {
            failures.push(format!("rec.npy field {col}:\n  want {want}\n  got  {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn our_pickles_and_npy_load_in_python() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let f32a = |shape: Vec<usize>| {
        let n = shape.iter().product::<usize>();
        NdArray::from_f32(shape, (0..n).map(|i| (i as f32 - 3.0) * 0.37).collect()).unwrap()
    };
    let values: Vec<(&str, PyValue)> = vec![
        (
            "pose",
            PyValue::Tuple(vec![
                PyValue::Array(f32a(vec![5, 3, 3])),
                PyValue::Array(f32a(vec![5, 2])),
            ]),
        ),
        ("ctf", PyValue::Array(f32a(vec![4, 9]))),
        (
            "ind",
            PyValue::Array(
                NdArray::from_i64(vec![6], vec![0, 5, -1, i64::MAX, i64::MIN, 1 << 40]).unwrap(),
            ),
        ),
        (
            "f64",
            PyValue::Array(
                NdArray::new(
                    vec![2, 2],
                    ArrayData::F64(vec![0.1, -0.0, f64::INFINITY, 1e300]),
                )
                .unwrap(),
            ),
        ),
        (
            "i32",
            PyValue::Array(
                NdArray::new(vec![3], ArrayData::I32(vec![i32::MIN, 0, i32::MAX])).unwrap(),
            ),
        ),
        (
            "u8",
            PyValue::Array(NdArray::new(vec![1, 3], ArrayData::U8(vec![0, 128, 255])).unwrap()),
        ),
        (
            "bool",
            PyValue::Array(NdArray::new(vec![2], ArrayData::Bool(vec![true, false])).unwrap()),
        ),
        (
            "zero_d",
            PyValue::Array(NdArray::new(vec![], ArrayData::F32(vec![2.5])).unwrap()),
        ),
        ("empty", PyValue::Array(f32a(vec![0, 3]))),
        ("big_4d", PyValue::Array(f32a(vec![2, 3, 4, 5]))),
        (
            "mixed",
            PyValue::Dict(vec![
                (
                    PyValue::Str("a".into()),
                    PyValue::List(vec![
                        PyValue::Int(1),
                        PyValue::Int(-300),
                        PyValue::Int(70000),
                        PyValue::Int(-(1 << 50)),
                        PyValue::None,
                    ]),
                ),
                (
                    PyValue::Int(3),
                    PyValue::Tuple(vec![
                        PyValue::Bool(true),
                        PyValue::Float(-1.5),
                        PyValue::Str("é✓".into()),
                        PyValue::Bytes(vec![0, 255]),
                    ]),
                ),
                (
                    PyValue::Str("t".into()),
                    PyValue::Tuple(vec![
                        PyValue::Int(1),
                        PyValue::Int(2),
                        PyValue::Int(3),
                        PyValue::Int(4),
                    ]),
                ),
                (PyValue::Str("e".into()), PyValue::Tuple(vec![])),
                (PyValue::Str("long".into()), PyValue::Str("x".repeat(300))),
                (PyValue::Str("lb".into()), PyValue::Bytes(vec![7; 300])),
            ]),
        ),
    ];
    let mut written = String::new();
    let mut want = Vec::new();
    for (name, v) in &values {
        let f = format!("{name}.pkl");
        pkl::write_pkl(dir.path().join(&f), v).unwrap();
        written.push_str(&format!("{f}\n"));
        want.push((f, canon(v)));
    }
    let z = [values[1].1.clone(), values[2].1.clone()];
    pkl::write_pkls(dir.path().join("z.pkl"), &z).unwrap();
    written.push_str("z.pkl\n");
    want.push(("z.pkl".into(), format!("{};{}", canon(&z[0]), canon(&z[1]))));
    let mut npz = Vec::new();
    for (name, v) in &values {
        if let PyValue::Array(a) = v {
            let f = format!("{name}.npy");
            npy::write_npy(dir.path().join(&f), a).unwrap();
            written.push_str(&format!("{f}\n"));
            want.push((f, canon(v)));
            npz.push((name.to_string(), a.clone()));
        }
    }
    npy::write_npz(dir.path().join("all.npz"), &npz).unwrap();
    written.push_str("all.npz\n");
    want.push((
        "all.npz".into(),
        npz.iter()
            .map(|(k, a)| format!("{k}={}", canon(&PyValue::Array(a.clone()))))
            .collect::<Vec<_>>()
            .join(";"),
    ));
    std::fs::write(dir.path().join("written.txt"), written).unwrap();
    let got = tab_lines(&run_python(
        &py,
        &format!("{PY_CANON}\n{PY_READ}"),
        dir.path(),
    ));
    assert_eq!(got.len(), want.len());
    let failures: Vec<String> = got
        .iter()
        .zip(&want)
        .filter(|(g, w)| g != w)
        .map(|(g, w)| format!("{}:\n  want {}\n  got  {}", w.0, w.1, g.1))
        .collect();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: nothing from a file may panic.

fn pickle_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        unhex(PY_PROTO2_HEX),
        unhex(PY_PROTO5_HEX),
        pkl::pickle_bytes(&expected_seed_value()),
    ];
    seeds.push(pkl::pickle_bytes(&PyValue::List(vec![
        PyValue::Dict(vec![(PyValue::Str("k".into()), PyValue::Int(1 << 40))]),
        PyValue::Array(NdArray::new(vec![2], ArrayData::Bool(vec![true, false])).unwrap()),
    ])));
    for rel in ["ctf1.pkl", "ind100.pkl", "golden/pose.relion31.pkl"] {
        if let Ok(b) = std::fs::read(data_dir().join(rel)) {
            seeds.push(b);
        }
    }
    seeds
}

fn npy_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        structured_npy(),
        npy::npy_bytes(&NdArray::from_f32(vec![2, 3], vec![1.0; 6]).unwrap()),
        npy::npy_bytes(&NdArray::new(vec![], ArrayData::I64(vec![3])).unwrap()),
    ];
    let mut fortran = npy::npy_bytes(
        &NdArray::new(vec![2, 2], ArrayData::F64(vec![1.0, 2.0, 3.0, 4.0])).unwrap(),
    );
    let pos = fortran.windows(5).position(|w| w == b"False").unwrap();
    fortran.splice(pos..pos + 5, b"True ".iter().copied());
    seeds.push(fortran);
    seeds
}

fn mutate(seed: &[u8], muts: &[(usize, u8, u8)], cut: usize) -> Vec<u8> {
    let mut b = seed.to_vec();
    for &(pos, val, kind) in muts {
        if b.is_empty() {
            break;
        }
        let i = pos % b.len();
        match kind % 4 {
            0 => b[i] = val,
            1 => b[i] ^= 1 << (val % 8),
            2 => b.insert(i, val),
            _ => {
                b.remove(i);
            }
        }
    }
    let keep = if b.is_empty() { 0 } else { cut % (b.len() + 1) };
    if cut.is_multiple_of(3) {
        b.truncate(keep);
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300), proto in 0u8..7) {
        let p = Path::new("fuzz.pkl");
        let _ = pkl::parse_pickles(&body, p);
        let mut framed = vec![0x80, proto];
        framed.extend_from_slice(&body);
        let _ = pkl::parse_pickles(&framed, p);
        let _ = npy::parse_npy(&body, Path::new("fuzz.npy"));
        let mut npy_framed = b"\x93NUMPY\x01\x00".to_vec();
        npy_framed.extend_from_slice(&body);
        let _ = npy::parse_npy(&npy_framed, Path::new("fuzz.npy"));
    }

    #[test]
    fn fuzz_mutated_pickles_never_panic(
        which in any::<usize>(),
        muts in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let seeds = pickle_seeds();
        let b = mutate(&seeds[which % seeds.len()], &muts, cut);
        if let Ok(vs) = pkl::parse_pickles(&b, Path::new("fuzz.pkl")) {
            // Whatever parses must re-serialize and parse back to the same values.
            for v in vs {
                let again = pkl::parse_pickles(&pkl::pickle_bytes(&v), Path::new("again.pkl")).unwrap();
                let same = again.len() == 1 && canon(&again[0]) == canon(&v);
                prop_assert!(same, "roundtrip changed {v:?}");
            }
        }
    }

    #[test]
    fn fuzz_mutated_npy_never_panic(
        which in any::<usize>(),
        muts in proptest::collection::vec((0usize..400, any::<u8>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let seeds = npy_seeds();
        let b = mutate(&seeds[which % seeds.len()], &muts, cut);
        if let Ok(Npy::Records(r)) = npy::parse_npy(&b, Path::new("fuzz.npy")) {
            for name in r.names() {
                let _ = r.column(&name);
                let _ = r.column_strings(&name);
                let _ = r.column_u64(&name);
            }
        }
    }
}
