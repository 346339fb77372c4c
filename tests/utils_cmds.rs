//! The cryoDRGN utility commands `phase-flip`, `translate-mrcs`, `view-mrcs`, `plot-classes`,
//! `clean` and `analyze-landscape-full`: analytic cases checked against a naive DFT written
//! here (independent of the code under test), and bad inputs giving errors that name the file.

use cryofield::fourier::ctf::{compute_ctf, Ctf};
use cryofield::io::array::NdArray;
use cryofield::io::mrc::{write_mrc, MrcFile};
use cryofield::io::pkl::{read_pkl_all, write_pkl, PyValue};
use cryofield::meta::{CtfParams, Poses};
use rand::{Rng, SeedableRng};
use std::path::Path;

fn cli(args: &[&str]) -> anyhow::Result<()> {
    use clap::Parser;
    let mut v = vec!["cryofield"];
    v.extend_from_slice(args);
    let c = cryofield::cli::Cli::try_parse_from(v)?;
    cryofield::cli::run(c)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `cli(args)` fails with a message naming `file` (and containing `needle`).
fn fails_naming(args: &[&str], file: &Path, needle: &str) {
    let e = cli(args).expect_err("the command should fail");
    let msg = format!("{e:#}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "error does not name {name}: {msg}");
    assert!(msg.contains(needle), "error lacks `{needle}`: {msg}");
}

fn random_images(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * d * d)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect()
}

fn read_stack(path: &Path) -> Vec<f32> {
    MrcFile::open(path).unwrap().read_all().unwrap()
}

type C = (f64, f64);

/// Naive centred DFT of a `(d, d)` image (d even): `F[ky][kx] = Σ f[y][x]·exp(−2πi(k·(r − d/2)))`
/// with centred frequencies `k = (j − d/2)/d` and centred positions, i.e. the reference's
/// `fftshift(fft2(fftshift(f)))`.
fn dft(img: &[f32], d: usize) -> Vec<C> {
    let h = (d / 2) as f64;
    let mut out = vec![(0.0, 0.0); d * d];
    for ky in 0..d {
        for kx in 0..d {
            let (fx, fy) = ((kx as f64 - h) / d as f64, (ky as f64 - h) / d as f64);
            let mut acc = (0.0, 0.0);
            for y in 0..d {
                for x in 0..d {
                    let ph =
                        -2.0 * std::f64::consts::PI * (fx * (x as f64 - h) + fy * (y as f64 - h));
                    let v = img[y * d + x] as f64;
                    acc.0 += v * ph.cos();
                    acc.1 += v * ph.sin();
                }
            }
            out[ky * d + kx] = acc;
        }
    }
    out
}

/// Real part of the naive inverse of [`dft`].
fn idft_real(spec: &[C], d: usize) -> Vec<f32> {
    let h = (d / 2) as f64;
    let mut out = vec![0.0f32; d * d];
    for y in 0..d {
        for x in 0..d {
            let mut acc = 0.0;
            for ky in 0..d {
                for kx in 0..d {
                    let (fx, fy) = ((kx as f64 - h) / d as f64, (ky as f64 - h) / d as f64);
                    let ph =
                        2.0 * std::f64::consts::PI * (fx * (x as f64 - h) + fy * (y as f64 - h));
                    let (a, b) = spec[ky * d + kx];
                    acc += a * ph.cos() - b * ph.sin();
                }
            }
            out[y * d + x] = (acc / (d * d) as f64) as f32;
        }
    }
    out
}

/// A band-limited image: random, with the Nyquist row and column (index 0) of its spectrum zeroed.
fn band_limited(d: usize, seed: u64) -> Vec<f32> {
    let mut f = dft(&random_images(1, d, seed), d);
    for j in 0..d {
        f[j] = (0.0, 0.0);
        f[j * d] = (0.0, 0.0);
    }
    idft_real(&f, d)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn ctf_row(d: usize, apix: f32, dfu: f32, dfv: f32, ang: f32) -> [f32; 9] {
    [d as f32, apix, dfu, dfv, ang, 300.0, 2.7, 0.1, 0.0]
}

/// The CTF of `row` on the centred `(d, d)` frequencies `(j − d/2)/(d·Apix)`.
fn ctf_on_grid(row: &[f32; 9], d: usize) -> Vec<f32> {
    let f: Vec<f32> = (0..d)
        .map(|j| (j as f32 - (d / 2) as f32) / d as f32 / row[1])
        .collect();
    let freqs: Vec<[f32; 2]> = f
        .iter()
        .flat_map(|&fy| f.iter().map(move |&fx| [fx, fy]))
        .collect();
    compute_ctf(&freqs, &Ctf::from_row(row))
}

/// Images made by applying a known CTF to random images: phase flipping them makes every
/// CTF-weighted Fourier component non-negative against the original (`Re(H·conj F) = |F|²·|c|`)
/// and the spectrum equal to `F·|c|` (away from the Nyquist row and column, where an astigmatic
/// CTF is not centrally symmetric and the real-valued image keeps its symmetric part).
#[test]
fn phase_flip_makes_ctf_weighted_components_positive() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 16;
    let rows = vec![
        ctf_row(d, 2.0, 15000.0, 15000.0, 0.0),
        ctf_row(d, 2.0, 20000.0, 16000.0, 30.0),
        ctf_row(d, 2.0, 8000.0, 9000.0, 77.0),
    ];
    let orig = random_images(rows.len(), d, 1);
    let mut specs = Vec::new();
    let mut stack = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let f = dft(&orig[i * d * d..(i + 1) * d * d], d);
        let c = ctf_on_grid(row, d);
        let g: Vec<C> = f
            .iter()
            .zip(&c)
            .map(|(&(a, b), &c)| (a * c as f64, b * c as f64))
            .collect();
        stack.extend(idft_real(&g, d));
        specs.push((f, c));
    }
    let (inp, ctf, out) = (
        tmp.path().join("p.mrcs"),
        tmp.path().join("ctf.pkl"),
        tmp.path().join("pf.mrcs"),
    );
    write_mrc(&inp, &stack, (rows.len(), d, d), 2.0, false).unwrap();
    CtfParams { rows: rows.clone() }.save(&ctf).unwrap();
    cli(&["phase-flip", s(&inp), s(&ctf), "-o", s(&out)]).unwrap();
    let flipped = read_stack(&out);
    assert_eq!(flipped.len(), stack.len());
    for (i, (f, c)) in specs.iter().enumerate() {
        let h = dft(&flipped[i * d * d..(i + 1) * d * d], d);
        let fmax2 = f.iter().map(|(a, b)| a * a + b * b).fold(0.0, f64::max);
        let mut negatives = 0;
        let mut worst = 0.0f64;
        for k in 0..d * d {
            let (hr, hi) = h[k];
            let (fr, fi) = f[k];
            // Re(H · conj F)
            let dot = hr * fr + hi * fi;
            if dot < -1e-5 * fmax2 {
                negatives += 1;
            }
            let (ky, kx) = (k / d, k % d);
            if ky > 0 && kx > 0 {
                let a = c[k].abs() as f64;
                worst = worst.max(((hr - fr * a).powi(2) + (hi - fi * a).powi(2)).sqrt());
            }
        }
        assert_eq!(negatives, 0, "image {i}: components with Re(H·conj F) < 0");
        assert!(
            worst < 1e-4 * fmax2.sqrt(),
            "image {i}: |H − F·|c|| = {worst}"
        );
    }
    // one image is not the other images' business: flipping image 1 alone gives the same result
    let one = tmp.path().join("one.mrcs");
    let one_ctf = tmp.path().join("one_ctf.pkl");
    let one_out = tmp.path().join("one_pf.mrcs");
    write_mrc(&one, &stack[d * d..2 * d * d], (1, d, d), 2.0, false).unwrap();
    CtfParams {
        rows: vec![rows[1]],
    }
    .save(&one_ctf)
    .unwrap();
    cli(&["phase-flip", s(&one), s(&one_ctf), "-o", s(&one_out)]).unwrap();
    let diff = max_abs_diff(&read_stack(&one_out), &flipped[d * d..2 * d * d]);
    assert!(diff < 1e-6, "image 1 flipped alone differs by {diff}");
}

#[test]
fn phase_flip_bad_inputs_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 8;
    let inp = tmp.path().join("p.mrcs");
    write_mrc(&inp, &random_images(2, d, 2), (2, d, d), 1.0, false).unwrap();
    let out = tmp.path().join("o.mrcs");
    // three CTF rows for two images
    let ctf = tmp.path().join("ctf3.pkl");
    CtfParams {
        rows: vec![ctf_row(d, 1.0, 1e4, 1e4, 0.0); 3],
    }
    .save(&ctf)
    .unwrap();
    fails_naming(
        &["phase-flip", s(&inp), s(&ctf), "-o", s(&out)],
        &ctf,
        "3 CTF parameter entries",
    );
    // a pickle that is not a CTF table
    let bad = tmp.path().join("notctf.pkl");
    write_pkl(
        &bad,
        &PyValue::Array(NdArray::from_f32(vec![2, 4], vec![1.0; 8]).unwrap()),
    )
    .unwrap();
    fails_naming(
        &["phase-flip", s(&inp), s(&bad), "-o", s(&out)],
        &bad,
        "(N, 9)",
    );
    // a missing stack
    let missing = tmp.path().join("missing.mrcs");
    fails_naming(
        &["phase-flip", s(&missing), s(&ctf), "-o", s(&out)],
        &missing,
        "",
    );
    assert!(!out.exists(), "no output after a failure");
}

fn save_trans(path: &Path, t: &[[f32; 2]]) {
    let rots = vec![[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]; t.len()];
    Poses {
        rots,
        trans: Some(t.to_vec()),
    }
    .save(path)
    .unwrap();
}

/// `np.roll(img, (ty, tx), axis=(0, 1))`.
fn roll(img: &[f32], d: usize, tx: i64, ty: i64) -> Vec<f32> {
    let mut out = vec![0.0; d * d];
    let di = d as i64;
    for y in 0..di {
        for x in 0..di {
            let (ny, nx) = ((y + ty).rem_euclid(di), (x + tx).rem_euclid(di));
            out[(ny * di + nx) as usize] = img[(y * di + x) as usize];
        }
    }
    out
}

/// An integer shift is a roll (content moves towards larger indices for positive t); a shift and
/// its opposite give back a band-limited image; `--tscale` scales the shift.
#[test]
fn translate_integer_shift_is_a_roll_and_shifts_invert() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 16;
    let imgs = random_images(2, d, 3);
    let inp = tmp.path().join("p.mrcs");
    write_mrc(&inp, &imgs, (2, d, d), 1.5, false).unwrap();
    let pose = tmp.path().join("pose.pkl");
    save_trans(
        &pose,
        &[
            [3.0 / d as f32, -2.0 / d as f32],
            [-5.0 / d as f32, 1.0 / d as f32],
        ],
    );
    let out = tmp.path().join("t.mrcs");
    cli(&["translate-mrcs", s(&inp), s(&pose), "-o", s(&out)]).unwrap();
    let t = read_stack(&out);
    let want: Vec<f32> = [
        roll(&imgs[..d * d], d, 3, -2),
        roll(&imgs[d * d..], d, -5, 1),
    ]
    .concat();
    let diff = max_abs_diff(&t, &want);
    assert!(diff < 1e-5, "integer shift differs from np.roll by {diff}");
    assert_eq!(MrcFile::open(&out).unwrap().header.apix(), 1.5);

    // --tscale 2 on half the shift, from a bare translation array
    let bare = tmp.path().join("trans.pkl");
    let half: Vec<f32> = vec![
        1.5 / d as f32,
        -1.0 / d as f32,
        -2.5 / d as f32,
        0.5 / d as f32,
    ];
    write_pkl(
        &bare,
        &PyValue::Array(NdArray::from_f32(vec![2, 2], half).unwrap()),
    )
    .unwrap();
    let out2 = tmp.path().join("t2.mrcs");
    cli(&[
        "translate-mrcs",
        s(&inp),
        s(&bare),
        "--tscale",
        "2",
        "-o",
        s(&out2),
    ])
    .unwrap();
    let diff = max_abs_diff(&read_stack(&out2), &want);
    assert!(diff < 1e-5, "--tscale 2 differs by {diff}");

    // (dx, dy) then (−dx, −dy) returns a band-limited image
    let bl = [band_limited(d, 4), band_limited(d, 5)].concat();
    let bl_in = tmp.path().join("bl.mrcs");
    write_mrc(&bl_in, &bl, (2, d, d), 1.0, false).unwrap();
    let sh = [[0.137f32, -0.071], [-0.2203, 0.0313]];
    let (fwd, back) = (tmp.path().join("fwd.pkl"), tmp.path().join("back.pkl"));
    save_trans(&fwd, &sh);
    save_trans(&back, &sh.map(|t| [-t[0], -t[1]]));
    let (mid, end) = (tmp.path().join("mid.mrcs"), tmp.path().join("end.mrcs"));
    cli(&["translate-mrcs", s(&bl_in), s(&fwd), "-o", s(&mid)]).unwrap();
    cli(&["translate-mrcs", s(&mid), s(&back), "-o", s(&end)]).unwrap();
    let moved = max_abs_diff(&read_stack(&mid), &bl);
    let diff = max_abs_diff(&read_stack(&end), &bl);
    assert!(moved > 0.1, "the shift did nothing ({moved})");
    assert!(diff < 1e-5, "shift and back differs by {diff}");
}

#[test]
fn translate_bad_inputs_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 8;
    let inp = tmp.path().join("p.mrcs");
    write_mrc(&inp, &random_images(2, d, 6), (2, d, d), 1.0, false).unwrap();
    let out = tmp.path().join("o.mrcs");
    // pixel translations (old format)
    let old = tmp.path().join("oldpose.pkl");
    save_trans(&old, &[[3.0, 1.0], [0.0, 0.0]]);
    fails_naming(
        &["translate-mrcs", s(&inp), s(&old), "-o", s(&out)],
        &old,
        "old pose format",
    );
    // wrong count
    let three = tmp.path().join("three.pkl");
    save_trans(&three, &[[0.1, 0.0]; 3]);
    fails_naming(
        &["translate-mrcs", s(&inp), s(&three), "-o", s(&out)],
        &three,
        "3 translations",
    );
    // rotations only
    let rot = tmp.path().join("rotonly.pkl");
    Poses {
        rots: vec![[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]; 2],
        trans: None,
    }
    .save(&rot)
    .unwrap();
    fails_naming(
        &["translate-mrcs", s(&inp), s(&rot), "-o", s(&out)],
        &rot,
        "(N, 2)",
    );
    assert!(!out.exists());
}

/// The grid has the reference's layout (⌈√n⌉ columns) and each image spans black to white.
#[test]
fn view_mrcs_draws_a_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let d = 8;
    let n = 10;
    let mut imgs = random_images(n, d, 7);
    // image 0: a ramp, its minimum at pixel (0, 0), its maximum at (7, 7)
    for (j, v) in imgs[..d * d].iter_mut().enumerate() {
        *v = j as f32;
    }
    let inp = tmp.path().join("p.mrcs");
    write_mrc(&inp, &imgs, (n, d, d), 1.0, false).unwrap();
    let png = tmp.path().join("grid.png");
    cli(&["view-mrcs", s(&inp), "-o", s(&png)]).unwrap();
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0u8; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    // 10 images: 4 columns, 3 rows of 144-pixel cells (scale 18) with 4-pixel gaps
    assert_eq!(
        (info.width, info.height),
        (4 * 144 + 5 * 4, 3 * 144 + 4 * 4)
    );
    let w = info.width as usize;
    let px = |x: usize, y: usize| &buf[(y * w + x) * 3..(y * w + x) * 3 + 3];
    assert_eq!(px(4, 4), &[0, 0, 0], "image 0's minimum is black");
    assert_eq!(
        px(4 + 143, 4 + 143),
        &[255, 255, 255],
        "image 0's maximum is white"
    );
    // --invert swaps them; default output name INPUT.png
    cli(&["view-mrcs", s(&inp), "--invert", "-n", "1"]).unwrap();
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(tmp.path().join("p.png")).unwrap(),
    ));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0u8; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (144 + 8, 144 + 8));
    assert_eq!(
        &buf[(4 * 152 + 4) * 3..(4 * 152 + 4) * 3 + 3],
        &[255, 255, 255]
    );
    // bad input
    let junk = tmp.path().join("junk.mrcs");
    std::fs::write(&junk, b"not an mrc file").unwrap();
    fails_naming(&["view-mrcs", s(&junk), "-o", s(&png)], &junk, "");
}

fn f32_pkl(path: &Path, shape: Vec<usize>, v: Vec<f32>) {
    write_pkl(path, &PyValue::Array(NdArray::from_f32(shape, v).unwrap())).unwrap();
}

fn i64_pkl(path: &Path, v: Vec<i64>) {
    write_pkl(
        path,
        &PyValue::Array(NdArray::from_i64(vec![v.len()], v).unwrap()),
    )
    .unwrap();
}

/// A fake cryoDRGN run folder with `z.5.pkl` `(n, zdim)`: three Gaussian blobs.
fn fake_run(dir: &Path, n: usize, zdim: usize) -> Vec<i64> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.yaml"), "cmd: [cryodrgn, train_vae]\n").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let labels: Vec<i64> = (0..n).map(|i| (i % 3) as i64).collect();
    let z: Vec<f32> = labels
        .iter()
        .flat_map(|&l| {
            (0..zdim)
                .map(|j| (if j as i64 == l { 3.0 } else { 0.0 }) + rng.random_range(-0.5f32..0.5))
                .collect::<Vec<_>>()
        })
        .collect();
    f32_pkl(&dir.join("z.5.pkl"), vec![n, zdim], z);
    labels
}

#[test]
fn plot_classes_writes_the_reference_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let n = 300;
    let labels = fake_run(&run, n, 4);
    let lab = tmp.path().join("labels.pkl");
    i64_pkl(&lab, labels.clone());
    // an embedding from analyze
    std::fs::create_dir_all(run.join("analyze.5")).unwrap();
    let emb: Vec<f32> = (0..2 * n).map(|i| (i % 17) as f32).collect();
    f32_pkl(&run.join("analyze.5/tsne.pkl"), vec![n, 2], emb);
    cli(&[
        "plot-classes",
        s(&run),
        "5",
        "--labels",
        s(&lab),
        "--plot-types",
        "scatter",
        "kde",
    ])
    .unwrap();
    let a = run.join("analyze.5");
    for t in ["scatter", "kde"] {
        assert!(a.join(format!("tsne_{t}_classes.png")).exists());
        for (i, j) in [(1, 2), (1, 3), (2, 3)] {
            let p = a.join(format!("z_pca_{t}_classes_pc.{i}xpc.{j}.png"));
            assert!(p.exists(), "{} missing", p.display());
        }
    }
    // class order and the subset form
    let c = cryofield::cli::plot_classes::load_classes(&lab, n).unwrap();
    assert_eq!(c.names, vec!["0", "1", "2"]);
    assert_eq!(c.class[..4], [0, 1, 2, 0]);
    let sub = tmp.path().join("subset.pkl");
    i64_pkl(&sub, vec![4, 1]);
    let c = cryofield::cli::plot_classes::load_classes(&sub, n).unwrap();
    assert_eq!(c.names, vec!["False", "True"]);
    assert_eq!(c.class[..5], [0, 1, 0, 0, 1]);
    // a palette file as a list of colours, and a named one
    let pal = tmp.path().join("pal.pkl");
    write_pkl(
        &pal,
        &PyValue::List(vec![
            PyValue::Str("#ff0000".into()),
            PyValue::Str("blue".into()),
            PyValue::Tuple(vec![
                PyValue::Float(0.0),
                PyValue::Float(1.0),
                PyValue::Float(0.0),
            ]),
        ]),
    )
    .unwrap();
    let out = tmp.path().join("plots");
    cli(&[
        "plot-classes",
        s(&run),
        "5",
        "--labels",
        s(&lab),
        "--palette",
        s(&pal),
        "-o",
        s(&out),
    ])
    .unwrap();
    assert!(out.join("z_pca_scatter_classes_pc.1xpc.2.png").exists());
    cli(&[
        "plot-classes",
        s(&run),
        "5",
        "--labels",
        s(&sub),
        "--palette",
        "Dark2",
        "-o",
        s(&out),
    ])
    .unwrap();
}

#[test]
fn plot_classes_bad_inputs_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let n = 50;
    fake_run(&run, n, 3);
    let long = tmp.path().join("toolong.pkl");
    i64_pkl(&long, vec![0; n + 1]);
    fails_naming(
        &["plot-classes", s(&run), "5", "--labels", s(&long)],
        &long,
        "51 class labels",
    );
    let outside = tmp.path().join("outside.pkl");
    i64_pkl(&outside, vec![1, 2, 50]);
    fails_naming(
        &["plot-classes", s(&run), "5", "--labels", s(&outside)],
        &outside,
        "not an integer in [0, 50)",
    );
    let pal = tmp.path().join("badpal.pkl");
    write_pkl(&pal, &PyValue::List(vec![PyValue::Str("nocolour".into())])).unwrap();
    let ok = tmp.path().join("ok.pkl");
    i64_pkl(&ok, vec![0; n]);
    fails_naming(
        &[
            "plot-classes",
            s(&run),
            "5",
            "--labels",
            s(&ok),
            "--palette",
            s(&pal),
        ],
        &pal,
        "not understood",
    );
    // no such epoch
    fails_naming(
        &["plot-classes", s(&run), "7", "--labels", s(&ok)],
        Path::new("z.7.pkl"),
        "not found",
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Fills `dir` with per-epoch outputs of epochs 1..=12 and things `clean` must never touch.
fn fake_outputs(dir: &Path, config: bool) {
    std::fs::create_dir_all(dir.join("analyze.7")).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    if config {
        std::fs::write(dir.join("config.yaml"), "cmd: x\n").unwrap();
    }
    for e in 1..=12 {
        std::fs::write(dir.join(format!("weights.{e}.pkl")), b"w").unwrap();
        std::fs::write(dir.join(format!("z.{e}.pkl")), b"z").unwrap();
    }
    for name in [
        "pose.3.pkl",
        "reconstruct.4.mrc",
        "weights.pkl",
        "z.pkl",
        "weights.x.pkl",
        "zeta.3.pkl",
        "run.log",
        "sub/weights.3.pkl",
        "analyze.7/z.3.pkl",
    ] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("run.log"), dir.join("z.13.pkl")).unwrap();
}

/// Keeps epochs that are multiples of -n, that have an analysis folder, and the latest; never
/// touches any other file, subfolder or link; a dry run removes nothing; a folder without a
/// config is left alone.
#[test]
fn clean_keeps_every_nth_epoch_and_nothing_else_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    fake_outputs(&run, true);
    let before = names_in(&run);
    cli(&["clean", s(&run), "-n", "5", "--dry-run"]).unwrap();
    assert_eq!(names_in(&run), before, "a dry run removed files");
    let plan = cryofield::cli::clean::plan_clean(&run, 5).unwrap();
    // epochs 1-4, 6, 8, 9, 11 of weights and z (16 files), pose.3 and reconstruct.4
    assert_eq!(plan.remove.len(), 18);
    cli(&["clean", s(&run), "-n", "5"]).unwrap();
    let mut want: Vec<String> = before
        .iter()
        .filter(|n| {
            let ep = cryofield::cli::clean::epoch_of_name(n);
            // z.13.pkl is a link: kept
            n.as_str() == "z.13.pkl" || ep.is_none_or(|e| e % 5 == 0 || e == 7 || e == 12)
        })
        .cloned()
        .collect();
    want.sort();
    assert_eq!(names_in(&run), want);
    assert!(run.join("sub/weights.3.pkl").exists() && run.join("analyze.7/z.3.pkl").exists());
    assert!(
        run.join("weights.12.pkl").exists(),
        "the latest epoch is kept"
    );

    // no config: untouched
    let other = tmp.path().join("other");
    fake_outputs(&other, false);
    let before = names_in(&other);
    cli(&["clean", s(&other), "-n", "5"]).unwrap();
    assert_eq!(names_in(&other), before);

    // a glob over several folders with -f: only the run folders are cleaned
    let many = tmp.path().join("many");
    for (k, cfg) in [(1, true), (2, true), (3, false)] {
        fake_outputs(&many.join(format!("r{k}")), cfg);
    }
    let pattern = format!("{}/r*", many.display());
    cli(&["clean", &pattern, "-n", "3", "-f"]).unwrap();
    for k in [1, 2] {
        let r = many.join(format!("r{k}"));
        assert!(!r.join("weights.1.pkl").exists() && r.join("weights.3.pkl").exists());
        assert!(r.join("weights.7.pkl").exists() && r.join("sub/weights.3.pkl").exists());
    }
    assert!(
        many.join("r3/weights.1.pkl").exists(),
        "a folder without config was cleaned"
    );
    assert!(cli(&["clean", s(&run), "-n", "0"]).is_err());
}

/// The regressor learns a smooth map (test MSE well below the targets' variance).
#[test]
fn landscape_full_regressor_learns_a_smooth_map() {
    use cryofield::cli::analyze_landscape_full::{train_regressor, RegressorConfig};
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let n = 400;
    let x: Vec<f32> = (0..2 * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let y: Vec<f32> = x
        .chunks(2)
        .flat_map(|r| [(2.0 * r[0]).sin(), r[0] * r[1] + r[1]])
        .collect();
    let var = y.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / y.len() as f64;
    let cfg = RegressorConfig {
        layers: 2,
        dim: 64,
        lr: 3e-3,
        epochs: 60,
        batch: 32,
        eval_batch: 100,
        seed: 1,
    };
    let reg = train_regressor(&x, &y, 2, 2, &cfg, |_, _, _| {}).unwrap();
    let (tr, te) = *reg.losses.last().unwrap();
    eprintln!("regressor: target variance {var:.3}, final train MSE {tr:.5}, test MSE {te:.5}");
    assert!(te < 0.02 * var, "test MSE {te} vs variance {var}");
    let p = reg.predict(&x[..2]).unwrap();
    assert!((p[0] - y[0]).abs() < 0.2 && (p[1] - y[1]).abs() < 0.2);
}

/// End to end on a tiny run: phantom → simulate → train-vae → analyze-landscape →
/// analyze-landscape-full. The recomputed volume PCA reproduces the stored sketch coordinates,
/// the outputs carry the reference's names and shapes, and the sampled volumes' coordinates are
/// those of the landscape PCA (with -N = every particle, each sketch centre is sampled and its
/// decoded volume is its sketch volume).
#[test]
fn analyze_landscape_full_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ph, sim, vae, land) = (
        dir.join("ph"),
        dir.join("sim"),
        dir.join("vae"),
        dir.join("land"),
    );
    cli(&[
        "phantom",
        "--kind",
        "discrete",
        "--n-states",
        "2",
        "-D",
        "16",
        "-o",
        s(&ph),
    ])
    .unwrap();
    cli(&[
        "simulate",
        s(&ph.join("vols.txt")),
        "-N",
        "120",
        "-o",
        s(&sim),
        "--seed",
        "3",
    ])
    .unwrap();
    cli(&[
        "train-vae",
        s(&sim.join("particles.mrcs")),
        "--poses",
        s(&sim.join("pose.pkl")),
        "--zdim",
        "2",
        "-n",
        "6",
        "-b",
        "8",
        "--lr",
        "1e-3",
        "--uninvert-data",
        "--enc-layers",
        "2",
        "--enc-dim",
        "16",
        "--dec-layers",
        "2",
        "--dec-dim",
        "32",
        "--seed",
        "11",
        "-o",
        s(&vae),
    ])
    .unwrap();
    cli(&[
        "analyze-landscape",
        s(&vae),
        "6",
        "--sketch-size",
        "10",
        "-M",
        "2",
        "--pc-dim",
        "3",
        "--plot-dim",
        "2",
        "-o",
        s(&land),
    ])
    .unwrap();
    let pca = cryofield::cli::analyze_landscape_full::landscape_pca(&land, None).unwrap();
    assert!(
        pca.stored_rel_diff < 1e-4,
        "recomputed PCA differs by {}",
        pca.stored_rel_diff
    );
    let out = dir.join("full");
    cli(&[
        "analyze-landscape-full",
        s(&vae),
        "6",
        "--landscape-dir",
        s(&land),
        "-o",
        s(&out),
        "-N",
        "120",
        "--epochs",
        "5",
        "--dim",
        "16",
        "--layers",
        "1",
        "--batch-size",
        "8",
    ])
    .unwrap();
    let shape = |p: &str| {
        read_pkl_all(out.join(p)).unwrap()[0]
            .as_array()
            .unwrap()
            .shape
            .clone()
    };
    assert_eq!(shape("z.sampled.pkl"), vec![120, 2]);
    assert_eq!(shape("ind.sampled.pkl"), vec![120]);
    assert_eq!(shape("vol_pca_sampled.pkl"), vec![120, 3]);
    assert_eq!(shape("vol_pca_all.pkl"), vec![120, 3]);
    for f in [
        "model.pt",
        "volpca_landscape.png",
        "loss.txt",
        "umap_vol_pca_hexbin.png",
        "full_clustering/umap.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // UMAP of every particle, and a Leiden cluster numbered from 1 for each
    assert_eq!(shape("umap_vol_pca.pkl"), vec![120, 2]);
    let umap = read_pkl_all(out.join("umap_vol_pca.pkl")).unwrap()[0]
        .as_array()
        .unwrap()
        .to_f64();
    assert!(umap.iter().all(|v| v.is_finite()));
    let labels_pkl = read_pkl_all(out.join("full_clustering/cluster_labels.pkl")).unwrap();
    let labels_arr = labels_pkl[0].as_array().unwrap();
    assert_eq!(labels_arr.shape, vec![120]);
    assert_eq!(labels_arr.data.descr(), "<i4");
    let labels = labels_arr.to_i64().unwrap();
    let k = *labels.iter().max().unwrap();
    assert!(labels.iter().all(|&c| c >= 1), "labels from 1: {labels:?}");
    // every id in 1..=k used, sizes non-increasing with the id
    let mut sizes = vec![0usize; k as usize];
    labels.iter().for_each(|&c| sizes[c as usize - 1] += 1);
    assert!(
        sizes.iter().all(|&c| c > 0) && sizes.windows(2).all(|w| w[0] >= w[1]),
        "cluster sizes {sizes:?}"
    );
    // a sampled particle that is a sketch centre: its coordinates are the stored ones
    let ind: Vec<usize> = read_pkl_all(out.join("ind.sampled.pkl")).unwrap()[0]
        .as_array()
        .unwrap()
        .to_i64()
        .unwrap()
        .iter()
        .map(|&i| i as usize)
        .collect();
    let centers: Vec<usize> = std::fs::read_to_string(land.join("kmeans10/centers_ind.txt"))
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse::<f64>().unwrap() as usize)
        .collect();
    let stored = read_pkl_all(land.join("vol_pca_10.pkl")).unwrap()[0]
        .as_array()
        .unwrap()
        .to_f64();
    let sampled = read_pkl_all(out.join("vol_pca_sampled.pkl")).unwrap()[0]
        .as_array()
        .unwrap()
        .to_f64();
    let scale = stored.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut matched = 0;
    for (r, &i) in ind.iter().enumerate() {
        if let Some(c) = centers.iter().position(|&ci| ci == i) {
            for k in 0..3 {
                let (a, b) = (sampled[r * 3 + k], stored[c * 3 + k]);
                assert!(
                    (a - b).abs() < 1e-3 * scale,
                    "particle {i} PC{}: {a} vs stored {b}",
                    k + 1
                );
            }
            matched += 1;
        }
    }
    assert_eq!(
        matched, 10,
        "every particle is sampled, so every sketch centre"
    );
    // --skip-vol reuses the sampled volumes
    cli(&[
        "analyze-landscape-full",
        s(&vae),
        "6",
        "--landscape-dir",
        s(&land),
        "-o",
        s(&out),
        "--skip-vol",
        "--epochs",
        "2",
        "--dim",
        "8",
        "--layers",
        "1",
    ])
    .unwrap();
    // a landscape folder without its mask
    std::fs::remove_file(land.join("mask.mrc")).unwrap();
    fails_naming(
        &[
            "analyze-landscape-full",
            s(&vae),
            "6",
            "--landscape-dir",
            s(&land),
            "-o",
            s(&out),
        ],
        Path::new("mask.mrc"),
        "analyze-landscape",
    );
}
