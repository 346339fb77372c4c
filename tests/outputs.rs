//! What a failure, a kill or a closed pipe leaves behind: multi-file outputs land all together or not
//! at all, leftovers of killed processes are removed, FSC of an empty map is undefined, and a closed
//! stdout ends the process quietly.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// Run the binary; return (success, stderr).
fn run<S: AsRef<OsStr>>(args: &[S]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` (recursively) with its contents, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn downsample_chunks(out: &Path, d: usize, chunk: usize) -> (bool, String) {
    let (d, chunk) = (d.to_string(), chunk.to_string());
    let input = data("hand.mrcs");
    run(&[
        OsStr::new("downsample"),
        input.as_os_str(),
        OsStr::new("-D"),
        OsStr::new(&d),
        OsStr::new("--chunk"),
        OsStr::new(&chunk),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
}

#[test]
fn downsample_chunks_fail_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("parts.mrcs");
    // An earlier run: 100 images at D = 16 in chunks 0..3 of 30 + parts.txt.
    let (ok, err) = downsample_chunks(&out, 16, 30);
    assert!(ok, "{err}");
    assert_eq!(
        names(dir.path()),
        [
            "parts.0.mrcs",
            "parts.1.mrcs",
            "parts.2.mrcs",
            "parts.3.mrcs",
            "parts.txt"
        ]
    );
    // Something in the way of the third chunk of the next run (standing in for a write that fails
    // part-way, as on a full disk): the run fails after two chunks are complete.
    std::fs::remove_file(dir.path().join("parts.2.mrcs")).unwrap();
    std::fs::create_dir(dir.path().join("parts.2.mrcs")).unwrap();
    let before = snapshot(dir.path());
    let (ok, err) = downsample_chunks(&out, 8, 30);
    assert!(!ok, "the run should fail on the folder in its way");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("parts.2.mrcs"),
        "error does not name the file: {err}"
    );
    // Every earlier chunk is as it was: no new D = 8 chunk beside old D = 16 ones, no leftovers.
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(
        names(dir.path()),
        [
            "parts.0.mrcs",
            "parts.1.mrcs",
            "parts.2.mrcs",
            "parts.3.mrcs",
            "parts.txt"
        ]
    );
}

#[test]
fn downsample_chunks_replace_a_longer_earlier_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("parts.mrcs");
    let (ok, err) = downsample_chunks(&out, 16, 25);
    assert!(ok, "{err}");
    assert_eq!(names(dir.path()).len(), 5);
    // Fewer, larger chunks: the old parts.2 and parts.3 must not remain beside the new set.
    let (ok, err) = downsample_chunks(&out, 8, 50);
    assert!(ok, "{err}");
    assert_eq!(
        names(dir.path()),
        ["parts.0.mrcs", "parts.1.mrcs", "parts.txt"]
    );
    let txt = std::fs::read_to_string(dir.path().join("parts.txt")).unwrap();
    assert_eq!(txt, "parts.0.mrcs\nparts.1.mrcs");
}

fn backproject(out: &Path, first: usize) -> (bool, String) {
    let first = first.to_string();
    let (p, poses) = (data("hand.mrcs"), data("hand_rot.pkl"));
    run(&[
        OsStr::new("backproject-voxel"),
        p.as_os_str(),
        OsStr::new("--poses"),
        poses.as_os_str(),
        OsStr::new("--first"),
        OsStr::new(&first),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
}

#[test]
fn backproject_folder_fails_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bp");
    let (ok, err) = backproject(&out, 40);
    assert!(ok, "{err}");
    assert_eq!(
        names(&out),
        [
            "backproject.mrc",
            "fsc-plot.png",
            "fsc-vals.txt",
            "half_map_a.mrc",
            "half_map_b.mrc"
        ]
    );
    // The next run cannot put its plot in place: nothing of it may land beside the old files.
    std::fs::remove_file(out.join("fsc-plot.png")).unwrap();
    std::fs::create_dir(out.join("fsc-plot.png")).unwrap();
    let before = snapshot(&out);
    let (ok, err) = backproject(&out, 60);
    assert!(!ok, "the run should fail on the folder in its way");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(snapshot(&out), before);
    assert_eq!(names(&out).len(), 5);
}

#[test]
fn backproject_of_one_image_claims_no_fsc() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bp");
    // An earlier run's FSC must not remain beside maps it does not describe.
    let (ok, err) = backproject(&out, 40);
    assert!(ok, "{err}");
    let (ok, err) = backproject(&out, 1);
    assert!(ok, "{err}");
    // Half map B is empty: the FSC is undefined, no resolution is reported and no curve is written.
    assert!(
        !err.contains("FSC=0.5:"),
        "a resolution was reported: {err}"
    );
    assert!(err.contains("undefined"), "{err}");
    assert_eq!(
        names(&out),
        ["backproject.mrc", "half_map_a.mrc", "half_map_b.mrc"]
    );
}

#[test]
fn fsc_against_an_empty_or_constant_map_is_undefined() {
    let dir = tempfile::tempdir().unwrap();
    let vol = data("hand-vol.mrc");
    let f = cryofield::io::mrc::MrcFile::open(&vol).unwrap();
    let d = f.header.nx;
    for (name, value) in [("zero.mrc", 0.0f32), ("constant.mrc", 0.25)] {
        let p = dir.path().join(name);
        cryofield::io::mrc::write_mrc(&p, &vec![value; d * d * d], (d, d, d), 1.0, true).unwrap();
        let txt = dir.path().join(format!("{name}.txt"));
        let (ok, err) = run(&[
            OsStr::new("fsc"),
            vol.as_os_str(),
            p.as_os_str(),
            OsStr::new("-o"),
            txt.as_os_str(),
        ]);
        assert!(!ok, "FSC against {name} succeeded: {err}");
        assert!(err.contains("undefined"), "{err}");
        assert!(err.contains(name), "error does not name {name}: {err}");
        assert!(!txt.exists());
    }
}

#[test]
fn leftovers_of_a_killed_run_are_removed() {
    if !Path::new("/proc/self").exists() {
        eprintln!("skipped: this system cannot tell whether a process runs (no /proc)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("parts.mrcs");
    // What kill -9 of an earlier run (pid above Linux's largest) left: a truncated temporary
    // chunk and a staging folder.
    let dead = 4_194_305;
    std::fs::write(
        dir.path().join(format!("parts.0.mrcs.tmp-{dead}")),
        b"trunc",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join(format!(".cryofield-stage-{dead}-0"))).unwrap();
    let (ok, err) = downsample_chunks(&out, 16, 50);
    assert!(ok, "{err}");
    assert_eq!(
        names(dir.path()),
        ["parts.0.mrcs", "parts.1.mrcs", "parts.txt"]
    );
}

/// Run `args` with stdout a pipe whose reading end is closed before the process starts (so its first
/// write fails, however fast it runs); return (status, stderr).
fn run_into_closed_pipe(args: &[&OsStr]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(unix)]
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (stack, z) = (data("hand.mrcs"), data("zvals_het-8_4k.pkl"));
    for args in [
        vec![OsStr::new("info"), stack.as_os_str()],
        vec![OsStr::new("view-header"), stack.as_os_str()],
        vec![OsStr::new("pc-traversal"), z.as_os_str()],
    ] {
        let (status, err) = run_into_closed_pipe(&args);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        // Killed by SIGPIPE, as `cat` or `grep` would be (a shell shows 141).
        assert_eq!(status.signal(), Some(13), "{args:?}: {status:?}, {err}");
    }
}

fn phantom(out: &Path, n_states: usize) -> (bool, String) {
    let k = n_states.to_string();
    run(&[
        OsStr::new("phantom"),
        OsStr::new("--kind"),
        OsStr::new("linear1d"),
        OsStr::new("--n-states"),
        OsStr::new(&k),
        OsStr::new("-D"),
        OsStr::new("16"),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
}

#[test]
fn phantom_replaces_an_earlier_phantom_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ph");
    let (ok, err) = phantom(&out, 6);
    assert!(ok, "{err}");
    assert_eq!(names(&out).len(), 6 + 3);
    // A failure part-way (a folder in the way of the last volume) leaves the earlier phantom whole.
    std::fs::remove_file(out.join("vol_003.mrc")).unwrap();
    std::fs::create_dir(out.join("vol_003.mrc")).unwrap();
    let before = snapshot(&out);
    let (ok, err) = phantom(&out, 4);
    assert!(!ok && !err.contains("panicked"), "{err}");
    assert_eq!(snapshot(&out), before);
    // A phantom with fewer states: no volume of the earlier one is left beside the new list.
    std::fs::remove_dir(out.join("vol_003.mrc")).unwrap();
    let (ok, err) = phantom(&out, 3);
    assert!(ok, "{err}");
    assert_eq!(
        names(&out),
        [
            "phantom.txt",
            "truth.pkl",
            "vol_000.mrc",
            "vol_001.mrc",
            "vol_002.mrc",
            "vols.txt"
        ]
    );
}

#[test]
fn simulate_leaves_no_file_of_an_earlier_run_beside_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let vol = data("hand-vol.mrc");
    let sim = |extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("simulate"),
            vol.as_os_str(),
            OsStr::new("-N"),
            OsStr::new("6"),
            OsStr::new("-o"),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        run(&args)
    };
    let (ok, err) = sim(&["--defocus", "10000", "15000", "--Apix", "2"]);
    assert!(ok, "{err}");
    assert!(out.join("ctf.pkl").is_file());
    // Without a CTF this time: the earlier ctf.pkl would describe other images.
    let (ok, err) = sim(&[]);
    assert!(ok, "{err}");
    assert_eq!(names(&out), ["particles.mrcs", "pose.pkl"]);
}

/// A real full disk: a 256 KiB tmpfs (in a user and mount namespace of its own, `unshare -rm`) holding an
/// earlier run's chunks at D = 8 and a filler that leaves room for about one and a half chunks of the
/// next run at D = 16, which therefore fails with ENOSPC after its first chunk is complete. The folder must
/// hold exactly the earlier run's files afterwards.
#[cfg(target_os = "linux")]
#[test]
fn downsample_on_a_full_disk_fails_all_or_nothing() {
    let can = Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=256k tmpfs /tmp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !can {
        eprintln!(
            "skipped: cannot mount a tmpfs in a new user and mount namespace (unshare -rm) here"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
set -u
mount -t tmpfs -o size=256k tmpfs "$DIR" || exit 90
cd "$DIR"
"$BIN" downsample "$IN" -D 8 --chunk 30 -o parts.mrcs 2>/dev/null || exit 91
before=$(md5sum parts.* | sort)
avail=$(df -k --output=avail . | tail -1)
dd if=/dev/zero of=fill bs=1k count=$((avail - 48)) 2>/dev/null
"$BIN" downsample "$IN" -D 16 --chunk 30 -o parts.mrcs 2>err.txt && exit 92
grep -q "No space left" err.txt || { cat err.txt; exit 93; }
after=$(md5sum parts.* | sort)
[ "$before" = "$after" ] || { echo "changed: $before // $after"; exit 94; }
left=$(ls -A | grep -v -e '^parts\.[0-3]\.mrcs$' -e '^parts\.txt$' -e '^fill$' -e '^err\.txt$')
[ -z "$left" ] || { echo "left: $left"; exit 95; }
echo ok
"#;
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .env("DIR", dir.path())
        .env("BIN", env!("CARGO_BIN_EXE_cryofield"))
        .env("IN", data("hand.mrcs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "status {:?}: {stdout} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}
