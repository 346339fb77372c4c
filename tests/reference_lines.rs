//! cryoDRGN 4.3.1's own command lines, with only the program name swapped, run here and write
//! their outputs under the names cryoDRGN gives them.
//!
//! The lines are copied verbatim from cryoDRGN 4.3.1's README (the package's PyPI description)
//! and from the usage examples at the top of its command modules (`train_nn`, `eval_vol`,
//! `filter`, `write_star`, `select_clusters`, `gen_mask`, `backproject_voxel`, `write_cs`).
//! Only what the documentation itself leaves to the user is filled in: the bracketed
//! placeholders (`[input particle stack]`, `[YOUR_WORKDIR]`, `ZVALUE`) and the example folder
//! names of the module docs (`my_workdir`, `004_vae128`, `my_outdir/01_trainvae`), which name the
//! run the README trained. The input files carry the documentation's names (`particles.128.mrcs`,
//! `particles.star`, `cryosparc_P27_J3_005_particles.cs`, …) but hold a small simulated data set
//! (24 images of 16², two states, CTF, shifts, SNR 1), so the box sizes in the names are not the
//! data's.
//!
//! Left out, with the reason:
//! - `train_vae ... # Run on GPU 0` and its `--multigpu` variants: `...` stands for flags;
//! - the two `train_nn projections.star ... --ctf.pkl` examples: `--ctf.pkl` is a typo in the
//!   reference's documentation (its own argparse refuses it);
//! - `eval_vol ... --z-start 0 -1 0 0 --z-end 1 1 1 1` (4 values, for a zdim-4 model; the
//!   module's other example decodes a zdim-8 one), `analyze my_workdir 50 --ksample 50` (needs
//!   ≥ 50 particles per cluster sampling: more than this data set has), `analyze ... --crop 96`
//!   (needs a box of at least 96): these depend on the data, not on the program;
//! - the second `train_vae projections.mrcs ... --load latest -n 50` pair (the README's own
//!   `--load weights.25.pkl` continuation runs here; `--load latest` is tested in tests/resume.rs);
//! - the cryo-ET line (`--encode-mode tilt --dose-per-tilt`), which must be refused
//!   (tests/train_options.rs);
//! - `filter` lines without a selection, which open cryoDRGN's interactive window: ours is not
//!   interactive and says so (asserted below).

use std::path::Path;
use std::process::Command;

/// Run one documented command line in `dir`: `cryodrgn X …` / `cryodrgn_utils X …` → our `X …`,
/// with `subs` applied first; (success, stderr).
fn run_line(dir: &Path, line: &str, subs: &[(&str, &str)]) -> (bool, String) {
    let mut l = line.to_string();
    for (from, to) in subs {
        l = l.replace(from, to);
    }
    let mut words = l.split_whitespace();
    let prog = words.next().unwrap();
    assert!(
        prog == "cryodrgn" || prog == "cryodrgn_utils",
        "not a cryoDRGN line: {line}"
    );
    let args: Vec<&str> = words.collect();
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .current_dir(dir)
        .args(&args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{line}: panic\n{err}");
    (out.status.success(), err)
}

fn ok(dir: &Path, line: &str, subs: &[(&str, &str)]) {
    let (ok, err) = run_line(dir, line, subs);
    assert!(ok, "`{line}` failed:\n{err}");
}

fn ours(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exists(dir: &Path, names: &[&str]) {
    for n in names {
        assert!(dir.join(n).exists(), "{n} missing");
    }
}

fn mrc_box(p: &Path) -> usize {
    cryofield::io::mrc::MrcFile::open(p).unwrap().header.nx
}

/// The README's downsampling lines, on a stack of 2 random images of 260².
#[test]
fn readme_downsample_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let d = 260;
    let img: Vec<f32> = (0..2 * d * d)
        .map(|i| ((i * 7919) % 1009) as f32 / 1009.0)
        .collect();
    cryofield::io::mrc::write_mrc(w.join("stack.mrcs"), &img, (2, d, d), 1.0, false).unwrap();
    let subs = [("[input particle stack]", "stack.mrcs")];
    ok(
        w,
        "cryodrgn downsample [input particle stack] -D 128 -o particles.128.mrcs",
        &subs,
    );
    ok(
        w,
        "cryodrgn downsample [input particle stack] -D 256 -o particles.256.mrcs",
        &subs,
    );
    assert_eq!(mrc_box(&w.join("particles.128.mrcs")), 128);
    assert_eq!(mrc_box(&w.join("particles.256.mrcs")), 256);
}

/// The README's session (parse → backproject → train_vae ×2 → continue with --load → analyze →
/// eval_vol) and the module docs' train_nn, eval_vol, analyze, select_clusters, filter,
/// write_star, write_cs, backproject_voxel and gen_mask lines.
#[test]
fn readme_and_module_doc_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    // the data: a two-state phantom, 64 images with CTF, shifts and noise at SNR 1
    ours(
        w,
        &[
            "phantom",
            "--kind",
            "discrete",
            "--n-states",
            "2",
            "-D",
            "16",
            "-o",
            "ph",
        ],
    );
    ours(
        w,
        &[
            "simulate",
            "ph/vols.txt",
            "-N",
            "24",
            "--defocus",
            "10000",
            "20000",
            "--t-extent",
            "2",
            "--snr",
            "1",
            "--seed",
            "2",
            "-o",
            "sim",
        ],
    );
    for name in [
        "particles.128.mrcs",
        "particles.256.mrcs",
        "projections.128.mrcs",
        "projections.mrcs",
    ] {
        std::fs::copy(w.join("sim/particles.mrcs"), w.join(name)).unwrap();
    }
    let truth = ["--ctf", "sim/ctf.pkl", "--poses", "sim/pose.pkl"];
    ours(
        w,
        &[
            &["write-star", "sim/particles.mrcs", "-o", "particles.star"],
            &truth[..],
        ]
        .concat(),
    );
    ours(
        w,
        &[
            &[
                "write-cs",
                "sim/particles.mrcs",
                "-o",
                "cryosparc_P27_J3_005_particles.cs",
            ],
            &truth[..],
        ]
        .concat(),
    );

    // README: poses and CTF from cryoSPARC, then from RELION (the star lines last: their
    // pose.pkl / ctf.pkl, with the data's box, are the ones trained on)
    for line in [
        "cryodrgn parse_pose_csparc cryosparc_P27_J3_005_particles.cs -o pose.pkl -D 300",
        "cryodrgn parse_ctf_csparc cryosparc_P27_J3_005_particles.cs -o ctf.pkl",
        "cryodrgn parse_ctf_star particles.star -D 300 --Apix 1.03 -o ctf.pkl",
        "cryodrgn parse_pose_star particles.star -o pose.pkl",
        "cryodrgn parse_ctf_star particles.star -o ctf.pkl",
    ] {
        ok(w, line, &[]);
    }
    exists(w, &["pose.pkl", "ctf.pkl"]);
    ok(
        w,
        "cryodrgn backproject_voxel projections.128.mrcs \
             --poses pose.pkl \
             --ctf ctf.pkl \
             -o backproject.128 \
             --first 10000",
        &[],
    );
    exists(w, &["backproject.128/backproject.mrc"]);

    // README: the two trainings and the continuation of the second
    ok(
        w,
        "cryodrgn train_vae particles.128.mrcs \
             --poses pose.pkl \
             --ctf ctf.pkl \
             --zdim 8 -n 25 \
             -o 00_cryodrgn128",
        &[],
    );
    ok(
        w,
        "cryodrgn train_vae particles.256.mrcs \
             --poses pose.pkl \
             --ctf ctf.pkl \
             --zdim 8 -n 25 \
             -o 01_cryodrgn256",
        &[],
    );
    // numbered as cryoDRGN 4.3: z.1.pkl … z.25.pkl, the final z.pkl / weights.pkl, the last
    // epoch's weights.25.pkl, the analysis of epoch 25 (train_vae runs `analyze OUT 25`)
    exists(
        w,
        &[
            "01_cryodrgn256/z.1.pkl",
            "01_cryodrgn256/z.25.pkl",
            "01_cryodrgn256/z.pkl",
            "01_cryodrgn256/weights.25.pkl",
            "01_cryodrgn256/weights.pkl",
            "01_cryodrgn256/config.yaml",
            "01_cryodrgn256/run.log",
            "01_cryodrgn256/analyze.25/kmeans20/labels.pkl",
            "01_cryodrgn256/analyze.25/kmeans20/vol_001.mrc",
            "01_cryodrgn256/analyze.25/kmeans20/vol_020.mrc",
            "01_cryodrgn256/analyze.25/pc1/vol_010.mrc",
            "00_cryodrgn128/z.25.pkl",
        ],
    );
    assert!(
        !w.join("01_cryodrgn256/z.0.pkl").exists() && !w.join("01_cryodrgn256/z.26.pkl").exists()
    );
    assert!(!w
        .join("01_cryodrgn256/analyze.25/kmeans20/vol_000.mrc")
        .exists());
    ok(
        w,
        "cryodrgn train_vae particles.256.mrcs \
             --poses pose.pkl \
             --ctf ctf.pkl \
             --zdim 8 -n 50 \
             -o 01_cryodrgn256 \
             --load 01_cryodrgn256/weights.25.pkl",
        &[],
    );
    exists(
        w,
        &[
            "01_cryodrgn256/z.26.pkl",
            "01_cryodrgn256/z.50.pkl",
            "01_cryodrgn256/weights.50.pkl",
            "01_cryodrgn256/analyze.50/kmeans20/labels.pkl",
        ],
    );
    let log = std::fs::read_to_string(w.join("01_cryodrgn256/run.log")).unwrap();
    assert!(
        log.contains("# =====> Epoch: 1 ") && log.contains("# =====> Epoch: 50 "),
        "run.log numbers the epochs 1…50"
    );

    // README: analyze with cryoDRGN's 1-based epoch, eval_vol on the final weights.pkl
    ok(
        w,
        "cryodrgn analyze 01_cryodrgn256 25 --Apix 1.31  # 25 for 1-based indexing of epoch numbers",
        &[("# 25 for 1-based indexing of epoch numbers", "")],
    );
    exists(
        w,
        &[
            "01_cryodrgn256/analyze.25/z_pca.png",
            "01_cryodrgn256/analyze.25/umap.png",
            "01_cryodrgn256/analyze.25/kmeans20/vol_001.mrc",
        ],
    );
    let h =
        cryofield::io::mrc::MrcFile::open(w.join("01_cryodrgn256/analyze.25/kmeans20/vol_001.mrc"))
            .unwrap()
            .header;
    assert!(
        (h.cella[0] / h.mx as f32 - 1.31).abs() < 1e-4,
        "--Apix 1.31"
    );
    let wd = [
        ("[YOUR_WORKDIR]", "01_cryodrgn256"),
        ("[WORKDIR]", "01_cryodrgn256"),
        ("ZVALUE", "0.1 0 0 0 0 0 0 -0.2"),
    ];
    std::fs::write(
        w.join("zvalues.txt"),
        "0 0 0 0 0 0 0 0\n0.5 0 0 0 0 0 0 0\n1 1 1 1 1 1 1 1\n",
    )
    .unwrap();
    ok(
        w,
        "cryodrgn eval_vol [YOUR_WORKDIR]/weights.pkl --config [YOUR_WORKDIR]/config.yaml -z ZVALUE -o reconstruct.mrc",
        &wd,
    );
    ok(
        w,
        "cryodrgn eval_vol [YOUR_WORKDIR]/weights.pkl --config [YOUR_WORKDIR]/config.yaml -o [WORKDIR]/trajectory \
                         --z-start -3 --z-end 3 -n 20",
        &wd,
    );
    exists(
        w,
        &[
            "reconstruct.mrc",
            "01_cryodrgn256/trajectory/vol_001.mrc",
            "01_cryodrgn256/trajectory/vol_020.mrc",
        ],
    );
    ok(
        w,
        "cryodrgn eval_vol [WORKDIR]/weights.pkl --config [WORKDIR]/config.yaml --zfile zvalues.txt -o [WORKDIR]/trajectory",
        &wd,
    );

    // module docs (cryoDRGN 4.3.1's own usage examples)
    let docs = [
        ("my_workdir", "01_cryodrgn256"),
        ("004_vae128", "01_cryodrgn256"),
        ("my_outdir/01_trainvae", "01_cryodrgn256"),
        ("angles.pkl", "pose.pkl"),
    ];
    ok(
        w,
        "cryodrgn train_nn projections.mrcs --poses angles.pkl --ctf ctf.pkl -o output/train_nn -n 10",
        &docs,
    );
    exists(
        w,
        &[
            "output/train_nn/reconstruct.1.mrc",
            "output/train_nn/reconstruct.10.mrc",
            "output/train_nn/reconstruct.mrc",
            "output/train_nn/weights.10.pkl",
            "output/train_nn/weights.pkl",
        ],
    );
    ok(w, "cryodrgn analyze my_workdir 50", &docs);
    exists(w, &["01_cryodrgn256/analyze.50/kmeans20/vol_020.mrc"]);
    ok(
        w,
        "cryodrgn eval_vol 004_vae128/weights.pkl -c 004_vae128/config.yaml -o zero-vol.mrc -z 0 0 0 0 0 0 0 0",
        &docs,
    );
    exists(w, &["zero-vol.mrc"]);
    // an intermediate epoch under cryoDRGN's name (ours keeps it as weights.10.safetensors)
    ok(
        w,
        "cryodrgn eval_vol 004_vae128/weights.10.pkl -c 004_vae128/config.yaml -o ten.mrc -z 0 0 0 0 0 0 0 0",
        &docs,
    );
    std::fs::copy(
        w.join("01_cryodrgn256/analyze.50/kmeans20/labels.pkl"),
        w.join("labels.pkl"),
    )
    .unwrap();
    ok(
        w,
        "cryodrgn_utils select_clusters labels.pkl --sel 1 2 3 -o selected.pkl",
        &[],
    );
    std::fs::copy(w.join("selected.pkl"), w.join("candidate-particles.pkl")).unwrap();
    std::fs::copy(w.join("selected.pkl"), w.join("good-ind.pkl")).unwrap();
    ok(
        w,
        "cryodrgn filter my_outdir/01_trainvae --plot-inds candidate-particles.pkl",
        &docs,
    );
    exists(w, &["indices.pkl", "indices_inverse.pkl"]);
    let sel = cryofield::meta::load_indices(w.join("selected.pkl"), 24).unwrap();
    let got = cryofield::meta::load_indices(w.join("indices.pkl"), 24).unwrap();
    assert_eq!(got, sel, "filter --plot-inds keeps the listed particles");
    for line in [
        "cryodrgn filter 00_trainvae",
        "cryodrgn filter my_outdir --epoch 30 -f",
        "cryodrgn filter my_outdir/ -k 25",
    ] {
        let (ok, err) = run_line(
            w,
            line,
            &[
                ("00_trainvae", "01_cryodrgn256"),
                ("my_outdir", "01_cryodrgn256"),
            ],
        );
        assert!(!ok && err.contains("not interactive"), "{line}: {err}");
    }
    // the module's examples are alternatives that write the same particles.128.star: the
    // selection first, then the whole stack, which the third line filters
    for line in [
        "cryodrgn_utils write_star particles.128.mrcs -o particles.128.star --ctf ctf.pkl \
                             --poses pose.pkl --ind good-ind.pkl",
        "cryodrgn_utils write_star particles.128.mrcs -o particles.128.star --ctf ctf.pkl",
        "cryodrgn_utils write_star particles.128.star -o particles.128_good.star \
                             --ind good-ind.pkl",
    ] {
        ok(w, line, &[]);
    }
    std::fs::write(w.join("particles.256.txt"), "particles.256.mrcs\n").unwrap();
    ok(
        w,
        "cryodrgn_utils write_star particles.256.txt -o particles.256.star --ctf ctf.pkl \
                             --full-path",
        &[],
    );
    exists(
        w,
        &[
            "particles.128.star",
            "particles.128_good.star",
            "particles.256.star",
        ],
    );
    let good = std::fs::read_to_string(w.join("particles.128_good.star")).unwrap();
    let rows = good
        .lines()
        .filter(|l| l.contains("@") && l.contains("particles"))
        .count();
    assert_eq!(rows, sel.len(), "the --ind selection of the star file");
    ok(
        w,
        "cryodrgn_utils write_cs particles.mrcs --poses pose.pkl --ctf ctf.pkl -o particles.cs",
        &[("particles.mrcs", "particles.128.mrcs")],
    );
    ok(
        w,
        "cryodrgn backproject_voxel particles.128.mrcs \
                              --ctf ctf.pkl --poses pose.pkl -o backproject-results/",
        &[],
    );
    exists(w, &["particles.cs", "backproject-results/backproject.mrc"]);
    std::fs::copy(
        w.join("backproject-results/backproject.mrc"),
        w.join("volume16.mrc"),
    )
    .unwrap();
    for line in [
        "cryodrgn_utils gen_mask volume16.mrc mask16.mrc",
        "cryodrgn_utils gen_mask volume16.mrc mask16.mrc -p slices.png",
        "cryodrgn_utils gen_mask volume16.mrc mask16.mrc --dist 15",
    ] {
        ok(w, line, &[]);
    }
    exists(w, &["mask16.mrc", "slices.png"]);
}
