//! The binary on malformed input: a clear error naming the file and the problem, exit code ≠ 0, no panic,
//! and earlier outputs left untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// Run the binary; return (success, stderr).
fn run(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Assert that a command fails cleanly, naming `file` and containing `needle`, and that `keep` is untouched.
fn assert_clean_failure(args: &[&std::ffi::OsStr], file: &Path, needle: &str, keep: &Path) {
    let before = std::fs::read(keep).unwrap();
    let (ok, err) = run(args);
    assert!(!ok, "command succeeded on bad input; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(err.contains(&*name), "error does not name {name}: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "error does not say `{needle}`: {err}"
    );
    assert_eq!(
        std::fs::read(keep).unwrap(),
        before,
        "earlier output was modified"
    );
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

struct Fixture {
    dir: tempfile::TempDir,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mrcs");
    std::fs::write(&out, b"an earlier output").unwrap();
    Fixture { dir, out }
}

fn downsample_args<'a>(input: &'a Path, out: &'a Path) -> Vec<&'a std::ffi::OsStr> {
    vec![
        os("downsample"),
        input.as_os_str(),
        os("-D"),
        os("32"),
        os("-o"),
        out.as_os_str(),
    ]
}

#[test]
fn truncated_mrc() {
    let fx = fixture();
    let bad = fx.dir.path().join("truncated.mrcs");
    std::fs::write(&bad, &std::fs::read(data("hand.mrcs")).unwrap()[..500]).unwrap();
    assert_clean_failure(&downsample_args(&bad, &fx.out), &bad, "truncated", &fx.out);
}

#[test]
fn mrc_header_larger_than_data() {
    let fx = fixture();
    let bad = fx.dir.path().join("short.mrcs");
    let bytes = std::fs::read(data("hand.mrcs")).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_failure(&downsample_args(&bad, &fx.out), &bad, "shorter", &fx.out);
}

#[test]
fn nan_pixel() {
    let fx = fixture();
    let bad = fx.dir.path().join("nan.mrcs");
    let mut bytes = std::fs::read(data("hand.mrcs")).unwrap();
    let off = 1024 + 4 * (64 * 64 * 3 + 100);
    bytes[off..off + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&bad, &bytes).unwrap();
    assert_clean_failure(&downsample_args(&bad, &fx.out), &bad, "nan", &fx.out);
}

#[test]
fn npy_wrong_magic() {
    let fx = fixture();
    let bad = fx.dir.path().join("bad.cs");
    let mut bytes = std::fs::read(data("cryosparc_P12_J24_001_particles.cs")).unwrap();
    bytes[1..6].copy_from_slice(b"XXXXX");
    std::fs::write(&bad, &bytes).unwrap();
    let out = fx.dir.path().join("ctf.pkl");
    std::fs::write(&out, b"an earlier ctf.pkl").unwrap();
    let args = [
        os("parse-ctf-csparc"),
        bad.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ];
    assert_clean_failure(&args, &bad, "magic", &out);
}

#[test]
fn star_missing_column() {
    let fx = fixture();
    let bad = fx.dir.path().join("norot.star");
    let text = std::fs::read_to_string(data("relion31.star")).unwrap();
    assert!(text.contains("_rlnAngleRot"));
    std::fs::write(&bad, text.replace("_rlnAngleRot", "_rlnSomethingElse")).unwrap();
    let out = fx.dir.path().join("pose.pkl");
    std::fs::write(&out, b"an earlier pose.pkl").unwrap();
    let args = [
        os("parse-pose-star"),
        bad.as_os_str(),
        os("-D"),
        os("256"),
        os("-o"),
        out.as_os_str(),
    ];
    assert_clean_failure(&args, &bad, "rlnAngleRot", &out);
}

#[test]
fn pickle_with_foreign_global_is_refused_and_not_run() {
    let fx = fixture();
    let marker = fx.dir.path().join("pwned");
    let evil = fx.dir.path().join("evil.pkl");
    // protocol 2: GLOBAL os.system, BINUNICODE "touch <marker>", TUPLE1, REDUCE, STOP
    let cmd = format!("touch {}", marker.display());
    let mut p = b"\x80\x02cos\nsystem\nX".to_vec();
    p.extend((cmd.len() as u32).to_le_bytes());
    p.extend(cmd.as_bytes());
    p.extend(b"\x85R.");
    std::fs::write(&evil, &p).unwrap();
    let input = data("hand.mrcs");
    let mut args = downsample_args(&input, &fx.out);
    args.extend([os("--ind"), evil.as_os_str()]);
    assert_clean_failure(&args, &evil, "os.system", &fx.out);
    assert!(!marker.exists(), "the pickle's code was executed");
}

#[test]
fn downsample_writes_and_replaces_output() {
    let fx = fixture();
    let input = data("hand.mrcs");
    let (ok, err) = run(&downsample_args(&input, &fx.out));
    assert!(ok, "{err}");
    let f = cryofield::io::mrc::MrcFile::open(&fx.out).unwrap();
    assert_eq!((f.header.nx, f.n_images()), (32, 100));
    // pixel size grows by the downsampling factor
    let src = cryofield::io::mrc::MrcFile::open(&input).unwrap();
    assert!((f.header.apix() - src.header.apix() * 2.0).abs() < 1e-4);
}

#[test]
fn downsample_chunks_and_indices() {
    let fx = fixture();
    let input = data("hand.mrcs");
    let out = fx.dir.path().join("small.mrcs");
    let mut args = downsample_args(&input, &out);
    let ind = data("ind100.pkl");
    args.extend([os("--chunk"), os("30"), os("--ind"), ind.as_os_str()]);
    let (ok, err) = run(&args);
    assert!(ok, "{err}");
    let txt = std::fs::read_to_string(fx.dir.path().join("small.txt")).unwrap();
    let names: Vec<&str> = txt.lines().collect();
    assert_eq!(
        names,
        [
            "small.0.mrcs",
            "small.1.mrcs",
            "small.2.mrcs",
            "small.3.mrcs"
        ]
    );
    // the .txt list is itself a particle source
    let src =
        cryofield::io::source::ParticleSource::open(fx.dir.path().join("small.txt"), None).unwrap();
    let ind = cryofield::meta::load_indices(&ind, 100).unwrap();
    assert_eq!(src.len(), ind.len());
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let args = [
        os("demo"),
        os("-N"),
        os("300"),
        os("-D"),
        os("32"),
        os("-n"),
        os("2"),
        os("-o"),
        out.as_os_str(),
    ];
    let (ok, err) = run(&args);
    assert!(ok, "{err}");
    let txt = std::fs::read_to_string(out.join("fsc_vs_truth.txt")).unwrap();
    // after two short epochs the decoded volumes already match the truth at low frequency
    // (shells 1-3; shell 0 is DC)
    let low: Vec<f64> = txt
        .lines()
        .skip(2)
        .take(3)
        .flat_map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(|v| v.parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(low.len(), 9, "{txt}");
    assert!(
        low.iter().all(|&f| f > 0.8),
        "low-frequency FSC {low:?}\n{txt}"
    );
    for f in [
        "fsc_vs_truth.png",
        "z_vs_truth.png",
        "accuracy.txt",
        "vae/z.2.pkl",
        "vae/analyze.2/z_hist.png",
        "vae/analyze.2/z.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
}

/// Training runs on a worker of rayon's pool while the batch prefetch thread uses the same
/// pool: with a single thread the wait for a batch must run the pool's jobs itself, not block
/// (which would wait forever). The demo on one thread finishes, well within the deadline.
#[test]
fn training_finishes_on_a_one_thread_pool() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args([
            os("demo"),
            os("-N"),
            os("200"),
            os("-D"),
            os("32"),
            os("-n"),
            os("1"),
        ])
        .arg("-o")
        .arg(&out)
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(300) {
            child.kill().ok();
            panic!("the demo on one thread did not finish in 300 s (deadlock?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "demo on one thread failed: {status}");
    assert!(out.join("vae/z.1.pkl").is_file(), "z.1.pkl missing");
}

#[test]
fn info_describes_metadata_whose_stacks_are_elsewhere() {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .arg("info")
        .arg(data("relion31.star"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("N: 5") && text.contains("D: 256") && text.contains("Apix: 2.806"));
    assert!(
        text.contains("images: unavailable") && text.contains("--datadir"),
        "{text}"
    );
}
