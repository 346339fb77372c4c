//! MRC/MRCS reader and writer: real fixtures, hand-built files in every mode and byte order,
//! malformed input, atomic writes, and header fuzzing.
//!
//! Test files are built here byte by byte (not with the crate's header encoder), so that a bug in
//! the encoder cannot hide the same bug in the decoder.

use cryofield::io::mrc::{write_mrc, MrcFile, MrcMode, MrcStackWriter};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// Values verified independently with numpy reading the raw float32 bytes after the 1024-byte header.
#[test]
fn reads_hand_mrcs() {
    let f = MrcFile::open(data_dir().join("hand.mrcs")).unwrap();
    assert_eq!(f.n_images(), 100);
    assert_eq!((f.header.nx, f.header.ny), (64, 64));
    assert_eq!(f.header.mode, MrcMode::F32);
    assert_eq!(f.header.apix(), 1.0);
    assert!(f.header.little_endian);
    assert_eq!(f.header.labels.len(), 1);
    assert!(
        f.header.labels[0].starts_with("EMAN"),
        "{:?}",
        f.header.labels
    );
    let px = |i: usize, y: usize, x: usize| f.image(i).unwrap()[y * 64 + x];
    assert_eq!(px(0, 0, 0), 0.00891649629920721f64 as f32);
    assert_eq!(px(0, 32, 32), 2.6801297664642334f64 as f32);
    assert_eq!(px(7, 10, 50), 0.05376199260354042f64 as f32);
    assert_eq!(px(99, 63, 63), 0.016163090243935585f64 as f32);
    assert_eq!(px(42, 31, 17), 0.013319085352122784f64 as f32);
    let sum0: f64 = f.image(0).unwrap().iter().map(|&v| v as f64).sum();
    assert!((sum0 - 1650.410149539788).abs() < 1e-6, "{sum0}");
    let all = f.read_all().unwrap();
    let sum: f64 = all.iter().map(|&v| v as f64).sum();
    assert!((sum - 165040.99830840772).abs() < 1e-4, "{sum}");
}

#[test]
fn reads_hand_vol() {
    let f = MrcFile::open(data_dir().join("hand-vol.mrc")).unwrap();
    let h = &f.header;
    assert_eq!((h.nx, h.ny, h.nz), (64, 64, 64));
    assert_eq!(h.ispg, 1);
    assert_eq!(h.nversion, 20140);
    assert_eq!(h.apix(), 1.0);
    let v = f.read_all().unwrap();
    let at = |z: usize, y: usize, x: usize| v[(z * 64 + y) * 64 + x];
    assert_eq!(at(32, 32, 32), 0.2685950994491577f64 as f32);
    assert_eq!(at(10, 20, 30), 0.007809852249920368f64 as f32);
    assert_eq!(at(63, 0, 5), -0.0012349211610853672f64 as f32);
    let sum: f64 = v.iter().map(|&x| x as f64).sum();
    assert!((sum - 269.82174346149804).abs() < 1e-5, "{sum}");
}

#[test]
fn reads_golden_downsampled_stack() {
    let f = MrcFile::open(data_dir().join("golden/hand.32.mrcs")).unwrap();
    assert_eq!((f.header.nx, f.header.ny, f.n_images()), (32, 32, 100));
    // written by the reference with Apix 2: cella = 2 * (32, 32, 100), mz = nz
    assert_eq!(f.header.apix(), 2.0);
    assert_eq!(f.header.mz, 100);
    assert_eq!(
        f.image(0).unwrap()[16 * 32 + 16],
        12.011468887329102f64 as f32
    );
    assert_eq!(
        f.image(50).unwrap()[3 * 32 + 29],
        0.18306761980056763f64 as f32
    );
    let sum: f64 = f.read_all().unwrap().iter().map(|&v| v as f64).sum();
    assert!((sum - 165040.99796444364).abs() < 1e-4, "{sum}");
}

#[test]
fn reads_toymodel() {
    let f = MrcFile::open(data_dir().join("toymodel_small_nocenter.mrc")).unwrap();
    assert_eq!((f.header.nx, f.header.ny, f.header.nz), (30, 30, 30));
    let v = f.read_all().unwrap();
    assert_eq!(v.iter().filter(|&&x| x != 0.0).count(), 180);
    assert_eq!(v.iter().map(|&x| x as f64).sum::<f64>(), 180.0);
    assert_eq!(v[(8 * 30 + 15) * 30 + 8], 1.0);
    assert_eq!(v[0], 0.0);
}

#[test]
fn zero_machine_stamp_is_read_by_sanity_check() {
    // toy_projections.mrcs has an all-zero machine stamp and mx = 1
    let f = MrcFile::open(data_dir().join("toy_projections.mrcs")).unwrap();
    assert_eq!(f.header.machst, [0, 0, 0, 0]);
    assert!(f.header.little_endian);
    assert_eq!((f.header.nx, f.header.ny, f.n_images()), (30, 30, 1000));
    assert_eq!(f.header.apix(), 1.0);
}

// ---------- hand-built files ----------

/// A raw header: sizes, mode, NSYMBT, machine stamp; `little` chooses the byte order of the words.
fn raw_header(n: [i32; 3], mode: i32, nsymbt: i32, little: bool, stamp: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0u8; 1024];
    let mut put = |word: usize, b: [u8; 4]| h[4 * word..4 * word + 4].copy_from_slice(&b);
    let i = |v: i32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let f = |v: f32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    put(0, i(n[0]));
    put(1, i(n[1]));
    put(2, i(n[2]));
    put(3, i(mode));
    put(7, i(n[0]));
    put(8, i(n[1]));
    put(9, i(n[2]));
    put(10, f(2.5 * n[0] as f32)); // apix 2.5
    put(11, f(2.5 * n[1] as f32));
    put(12, f(2.5 * n[2] as f32));
    put(23, i(nsymbt));
    put(52, *b"MAP ");
    put(53, stamp);
    h
}

fn stamp(little: bool) -> [u8; 4] {
    if little {
        [0x44, 0x41, 0, 0]
    } else {
        [0x11, 0x11, 0, 0]
    }
}

/// Encode `vals` (each exactly representable in `mode`) as stored values.
fn encode(vals: &[f32], mode: i32, little: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in vals {
        match mode {
            0 => out.push(v as i8 as u8),
            1 => {
                let x = v as i16;
                out.extend(if little {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                })
            }
            2 => out.extend(if little {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }),
            6 => {
                let x = v as u16;
                out.extend(if little {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                })
            }
            12 => {
                let x = half::f16::from_f32(v);
                out.extend(if little {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                })
            }
            _ => unreachable!(),
        }
    }
    out
}

/// Test values representable exactly in `mode`, using the mode's range.
fn values(mode: i32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|k| {
            let k = k as f32;
            match mode {
                0 => (k * 37.0) % 256.0 - 128.0,
                1 => (k * 1237.0) % 65536.0 - 32768.0,
                2 => (k - 7.0) * 0.1 + 1e-3 * k * k,
                6 => (k * 4099.0) % 65536.0,
                12 => half::f16::from_f32((k - 11.0) * 0.37).to_f32(),
                _ => unreachable!(),
            }
        })
        .collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn every_mode_and_byte_order_roundtrips() {
    let dir = tempfile::tempdir().unwrap();
    let (nx, ny, nz) = (5usize, 3usize, 4usize);
    let n = nx * ny * nz;
    for mode in [0, 1, 2, 6, 12] {
        for little in [true, false] {
            for garbage_stamp in [false, true] {
                let st = if garbage_stamp {
                    [0xde, 0xad, 0xbe, 0xef]
                } else {
                    stamp(little)
                };
                let vals = values(mode, n);
                let mut bytes = raw_header([nx as i32, ny as i32, nz as i32], mode, 0, little, st);
                bytes.extend(encode(&vals, mode, little));
                let name = format!("m{mode}_{little}_{garbage_stamp}.mrc");
                let p = write_file(dir.path(), &name, &bytes);
                let f = MrcFile::open(&p).unwrap();
                assert_eq!(f.header.mode.code(), mode);
                assert_eq!(f.header.little_endian, little, "{name}");
                assert_eq!((f.header.nx, f.header.ny, f.header.nz), (nx, ny, nz));
                assert_eq!(f.header.apix(), 2.5);
                assert_eq!(f.read_all().unwrap(), vals, "{name}");
                assert_eq!(
                    f.image(2).unwrap(),
                    vals[2 * nx * ny..3 * nx * ny],
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn extended_header_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    for little in [true, false] {
        let vals = values(2, 4 * 4 * 2);
        let mut bytes = raw_header([4, 4, 2], 2, 131, little, stamp(little));
        bytes[104..108].copy_from_slice(b"FEI1");
        let nver = if little {
            20140i32.to_le_bytes()
        } else {
            20140i32.to_be_bytes()
        };
        bytes[108..112].copy_from_slice(&nver);
        bytes.extend(std::iter::repeat_n(0xffu8, 131)); // NaN bytes if misread as data
        bytes.extend(encode(&vals, 2, little));
        let p = write_file(dir.path(), &format!("ext{little}.mrc"), &bytes);
        let f = MrcFile::open(&p).unwrap();
        assert_eq!(f.header.nsymbt, 131);
        assert_eq!(&f.header.exttyp, b"FEI1");
        assert_eq!(f.header.nversion, 20140);
        assert_eq!(f.read_all().unwrap(), vals);
    }
}

#[test]
fn random_access_equals_read_all() {
    let f = MrcFile::open(data_dir().join("hand.mrcs")).unwrap();
    let all = f.read_all().unwrap();
    let d2 = 64 * 64;
    for i in [0, 1, 17, 50, 98, 99, 3] {
        assert_eq!(f.image(i).unwrap(), all[i * d2..(i + 1) * d2]);
    }
    let mut some = vec![0.0; 5 * d2];
    f.read_images_into(40, &mut some).unwrap();
    assert_eq!(some, all[40 * d2..45 * d2]);
    let err = f.image(100).unwrap_err().to_string();
    assert!(
        err.contains("out of range") && err.contains("hand.mrcs"),
        "{err}"
    );
}

// ---------- writing ----------

fn le_i32(b: &[u8], word: usize) -> i32 {
    i32::from_le_bytes(b[4 * word..4 * word + 4].try_into().unwrap())
}
fn le_f32(b: &[u8], word: usize) -> f32 {
    f32::from_le_bytes(b[4 * word..4 * word + 4].try_into().unwrap())
}

#[test]
fn write_mrc_header_matches_reference_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (nz, ny, nx) = (3usize, 4usize, 6usize);
    let data: Vec<f32> = (0..nz * ny * nx).map(|k| (k as f32 - 20.0) * 0.5).collect();
    let n = data.len() as f64;
    let mean = data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    for is_vol in [false, true] {
        let p = dir.path().join(format!("w{is_vol}.mrc"));
        write_mrc(&p, &data, (nz, ny, nx), 1.75, is_vol).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(b.len(), 1024 + 4 * data.len());
        let ints: Vec<i32> = (0..10).map(|w| le_i32(&b, w)).collect();
        assert_eq!(ints, [6, 4, 3, 2, 0, 0, 0, 6, 4, 3]); // mz = nz for stacks too, as the reference
        assert_eq!(
            [le_f32(&b, 10), le_f32(&b, 11), le_f32(&b, 12)],
            [1.75 * 6.0, 1.75 * 4.0, 1.75 * 3.0]
        );
        assert_eq!([le_f32(&b, 13), le_f32(&b, 14), le_f32(&b, 15)], [90.0; 3]);
        assert_eq!([le_i32(&b, 16), le_i32(&b, 17), le_i32(&b, 18)], [1, 2, 3]);
        assert_eq!(le_f32(&b, 19), -10.0);
        assert_eq!(le_f32(&b, 20), 25.5);
        assert!((le_f32(&b, 21) as f64 - mean).abs() < 1e-6);
        assert!((le_f32(&b, 54) as f64 - std).abs() < 1e-5);
        assert_eq!(le_i32(&b, 22), if is_vol { 1 } else { 0 });
        assert_eq!(le_i32(&b, 23), 0);
        assert_eq!(le_i32(&b, 27), 20140);
        assert_eq!(&b[208..212], b"MAP ");
        assert_eq!(&b[212..216], &[0x44, 0x44, 0, 0]);
        let nlabl = le_i32(&b, 55);
        assert_eq!(nlabl, 1);
        assert!(b[224..304].starts_with(b"cryofield"));
        assert!(b[304..1024].iter().all(|&c| c == 0));
        let f = MrcFile::open(&p).unwrap();
        assert_eq!(f.read_all().unwrap(), data);
        assert_eq!(f.header.apix(), 1.75);
    }
}

#[test]
fn stack_writer_equals_write_mrc() {
    let dir = tempfile::tempdir().unwrap();
    let (n, ny, nx) = (7usize, 5usize, 4usize);
    let data: Vec<f32> = (0..n * ny * nx)
        .map(|k| ((k * 7919) % 101) as f32 / 9.0)
        .collect();
    let a = dir.path().join("a.mrcs");
    let b = dir.path().join("b.mrcs");
    write_mrc(&a, &data, (n, ny, nx), 3.0, false).unwrap();
    let mut w = MrcStackWriter::create(&b, n, ny, nx, 3.0).unwrap();
    w.write_images(&data[..2 * ny * nx]).unwrap();
    w.write_images(&data[2 * ny * nx..3 * ny * nx]).unwrap();
    w.write_images(&data[3 * ny * nx..]).unwrap();
    w.finish().unwrap();
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ba.len(), bb.len());
    assert_eq!(ba[1024..], bb[1024..]);
    // headers equal except for possible last-bit differences in mean and rms from chunking
    for w in (0..256).filter(|&w| w != 21 && w != 54) {
        assert_eq!(
            ba[4 * w..4 * w + 4],
            bb[4 * w..4 * w + 4],
            "header word {w}"
        );
    }
    for w in [21, 54] {
        assert!((le_f32(&ba, w) - le_f32(&bb, w)).abs() <= 1e-6 * le_f32(&ba, w).abs());
    }
    assert_eq!(MrcFile::open(&b).unwrap().read_all().unwrap(), data);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn stack_writer_rejects_wrong_counts_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.mrcs");
    let mut w = MrcStackWriter::create(&p, 3, 2, 2, 1.0).unwrap();
    let err = w.write_images(&[0.0; 5]).unwrap_err().to_string();
    assert!(err.contains("multiple of 4"), "{err}");
    let err = w.write_images(&[0.0; 16]).unwrap_err().to_string();
    assert!(err.contains("at most 3 more images"), "{err}");
    w.write_images(&[1.0; 8]).unwrap();
    let err = w.finish().unwrap_err().to_string();
    assert!(
        err.contains("declared 3 images but 2 were written"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // dropped without finish: the temporary file disappears
    let mut w = MrcStackWriter::create(&p, 1, 2, 2, 1.0).unwrap();
    w.write_images(&[1.0; 4]).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn failing_writes_leave_existing_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("keep.mrc");
    write_mrc(&p, &[1.0, 2.0, 3.0, 4.0], (1, 2, 2), 1.0, true).unwrap();
    let before = std::fs::read(&p).unwrap();

    // a NaN late in the data is found while streaming, after the temporary file has been filled
    let mut data = vec![0.5f32; 3 * 300 * 300];
    let last = data.len() - 1;
    data[last] = f32::NAN;
    let err = write_mrc(&p, &data, (3, 300, 300), 1.0, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keep.mrc") && err.contains("non-finite") && err.contains(&last.to_string()),
        "{err}"
    );
    let err = write_mrc(&p, &[1.0; 3], (1, 2, 2), 1.0, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1x2x2"), "{err}");
    let err = write_mrc(&p, &[1.0; 4], (1, 2, 2), 0.0, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pixel size"), "{err}");

    let mut w = MrcStackWriter::create(&p, 2, 2, 2, 1.0).unwrap();
    w.write_images(&[9.0; 4]).unwrap();
    assert!(w.write_images(&[f32::INFINITY; 4]).is_err());
    assert!(w.finish().is_err());

    assert_eq!(std::fs::read(&p).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// The reference's reader (cryoDRGN 4.3 `parse_mrc`) reads what we write; skipped without it.
#[test]
fn reference_reads_what_we_write() {
    let py = Path::new("/root/refvenv/bin/python");
    if !py.exists() {
        eprintln!("skipping: reference environment {} not found", py.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ref.mrcs");
    let data: Vec<f32> = (0..2 * 3 * 4).map(|k| k as f32 * 0.25 - 1.0).collect();
    write_mrc(&p, &data, (2, 3, 4), 1.5, false).unwrap();
    let script = "import sys\nfrom cryodrgn.mrcfile import parse_mrc\n\
                  a, h = parse_mrc(sys.argv[1])\n\
                  print(a.shape, h.apix, h.fields['ispg'], h.fields['mz'], float(a.sum()), float(a[1, 2, 3]))";
    let out = std::process::Command::new(py)
        .args(["-c", script])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stdout);
    let sum: f32 = data.iter().sum();
    assert_eq!(
        s.trim(),
        format!("(2, 3, 4) 1.5 0 2 {:?} {:?}", sum as f64, data[23] as f64)
    );
}

// ---------- malformed input ----------

fn open_err(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = write_file(dir, name, bytes);
    MrcFile::open(&p).unwrap_err().to_string()
}

#[test]
fn malformed_files_are_errors_naming_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = {
        let mut b = raw_header([4, 4, 2], 2, 0, true, stamp(true));
        b.extend(encode(&values(2, 32), 2, true));
        b
    };
    assert!(MrcFile::open(write_file(d, "good.mrc", &good)).is_ok());

    let e = open_err(d, "empty.mrc", &[]);
    assert!(
        e.contains("empty.mrc") && e.contains("truncated: header needs 1024 bytes"),
        "{e}"
    );
    let e = open_err(d, "tiny.mrc", &good[..100]);
    assert!(
        e.contains("tiny.mrc") && e.contains("truncated: header needs 1024 bytes, file has 100"),
        "{e}"
    );

    let e = open_err(d, "short.mrc", &good[..good.len() - 1]);
    assert!(e.contains("short.mrc"), "{e}");
    assert!(
        e.contains("data shorter than the header claims: expected 1152 bytes, found 1151"),
        "{e}"
    );

    let mut b = good.clone();
    b[12..16].copy_from_slice(&4i32.to_le_bytes());
    let e = open_err(d, "mode4.mrc", &b);
    assert!(
        e.contains("mode4.mrc") && e.contains("unsupported MRC mode 4"),
        "{e}"
    );

    let mut b = good.clone();
    b[4..8].copy_from_slice(&(-4i32).to_le_bytes());
    let e = open_err(d, "neg.mrc", &b);
    assert!(
        e.contains("neg.mrc") && e.contains("sizes must be positive") && e.contains("ny=-4"),
        "{e}"
    );

    let mut b = good.clone();
    b[8..12].copy_from_slice(&0i32.to_le_bytes());
    let e = open_err(d, "zero.mrc", &b);
    assert!(e.contains("zero.mrc") && e.contains("nz=0"), "{e}");

    let mut b = good.clone();
    b[92..96].copy_from_slice(&(-8i32).to_le_bytes());
    let e = open_err(d, "negext.mrc", &b);
    assert!(e.contains("negext.mrc") && e.contains("NSYMBT=-8"), "{e}");

    let mut b = good.clone();
    b[92..96].copy_from_slice(&1_000_000i32.to_le_bytes());
    let e = open_err(d, "bigext.mrc", &b);
    assert!(
        e.contains("bigext.mrc")
            && e.contains("data shorter than the header claims: expected 1001152"),
        "{e}"
    );

    let mut b = good.clone();
    for w in 0..3 {
        b[4 * w..4 * w + 4].copy_from_slice(&i32::MAX.to_le_bytes());
    }
    let e = open_err(d, "huge.mrc", &b);
    assert!(
        e.contains("huge.mrc") && (e.contains("overflow") || e.contains("shorter")),
        "{e}"
    );

    let e = MrcFile::open(d.join("missing.mrc"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.mrc"), "{e}");
}

#[test]
fn non_finite_pixels_are_reported_with_image_and_pixel() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, bad, word) in [
        (2, f32::NAN.to_le_bytes().to_vec(), "NaN"),
        (2, f32::NEG_INFINITY.to_le_bytes().to_vec(), "-inf"),
        (12, half::f16::INFINITY.to_le_bytes().to_vec(), "inf"),
    ] {
        let bpv = bad.len();
        let mut b = raw_header([4, 3, 2], mode, 0, true, stamp(true));
        b.extend(encode(&values(mode, 24), mode, true));
        // image 1, row 2, column 1 -> pixel 9
        let at = 1024 + (12 + 9) * bpv;
        b[at..at + bpv].copy_from_slice(&bad);
        let p = write_file(dir.path(), &format!("bad{mode}.mrc"), &b);
        let f = MrcFile::open(&p).unwrap();
        assert!(f.image(0).is_ok());
        let e = f.image(1).unwrap_err().to_string();
        assert!(e.contains(&format!("bad{mode}.mrc")), "{e}");
        assert!(
            e.contains(&format!(
                "image 1 has a non-finite value {word} at pixel 9 (row 2, column 1)"
            )),
            "{e}"
        );
        let e = f.read_all().unwrap_err().to_string();
        assert!(e.contains("image 1") && e.contains("pixel 9"), "{e}");
    }
}

// ---------- fuzzing ----------

fn small_valid_mrc() -> Vec<u8> {
    let mut b = raw_header([3, 2, 2], 2, 8, true, stamp(true));
    b.extend([0u8; 8]);
    b.extend(encode(&values(2, 12), 2, true));
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random byte and word mutations of the header and random truncations never panic, and
    /// everything that opens decodes within the file's bounds.
    #[test]
    fn mutated_headers_never_panic(
        byte_muts in proptest::collection::vec((0usize..1024, any::<u8>()), 0..8),
        word_muts in proptest::collection::vec((0usize..56, any::<i32>()), 0..4),
        small_words in proptest::collection::vec((0usize..24, -3i32..20), 0..4),
        truncate in proptest::option::of(0usize..1200),
    ) {
        let mut b = small_valid_mrc();
        for (i, v) in byte_muts {
            b[i] = v;
        }
        for (w, v) in word_muts.into_iter().chain(small_words) {
            b[4 * w..4 * w + 4].copy_from_slice(&v.to_le_bytes());
        }
        if let Some(t) = truncate {
            b.truncate(t);
        }
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "fuzz.mrc", &b);
        match MrcFile::open(&p) {
            Ok(f) => {
                let h = &f.header;
                let need = 1024 + h.nsymbt + h.nx * h.ny * h.nz * h.mode.bytes_per_value();
                prop_assert!(need <= b.len());
                let _ = f.read_all();
                for i in 0..f.n_images().min(4) {
                    let _ = f.image(i);
                }
                prop_assert!(f.image(f.n_images()).is_err());
                let _ = h.describe();
            }
            Err(e) => prop_assert!(e.to_string().contains("fuzz.mrc"), "{}", e),
        }
    }
}
