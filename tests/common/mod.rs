//! Fixtures shared by the end-to-end tests (`mod common;`): running the binary, and the tiny
//! "phantom → simulate → train-vae" pipeline (D = 16, zdim 2, one hidden layer of 16 in the encoder
//! and the decoder). Each test file uses only some of them, hence the `dead_code` allowances.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run the binary; (success, stdout, stderr).
#[allow(dead_code)]
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryofield"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run the binary; its stdout. Panics, with the arguments and the output, when it fails.
#[allow(dead_code)]
pub fn run_ok(args: &[&str]) -> String {
    let (ok, out, err) = run(args);
    assert!(ok, "{args:?}\n{out}\n{err}");
    out
}

#[allow(dead_code)]
fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A phantom and the particles simulated from it.
#[allow(dead_code)]
pub struct Sim {
    /// the phantom's folder (`vols.txt`, `truth.pkl`)
    pub ph: PathBuf,
    /// the simulation's folder (`particles.mrcs`, `pose.pkl`, …)
    pub sim: PathBuf,
}

#[allow(dead_code)]
impl Sim {
    /// The simulated particle stack.
    pub fn particles(&self) -> PathBuf {
        self.sim.join("particles.mrcs")
    }

    /// The simulated poses.
    pub fn poses(&self) -> PathBuf {
        self.sim.join("pose.pkl")
    }
}

/// `phantom --kind KIND --n-states STATES -D 16` into `dir/ph`, then `simulate -N N --seed 2` of its
/// volumes (`extra` flags appended) into `dir/sim`; panics when either fails.
#[allow(dead_code)]
pub fn phantom_sim(dir: &Path, kind: &str, states: usize, n: usize, extra: &[&str]) -> Sim {
    let (ph, sim) = (dir.join("ph"), dir.join("sim"));
    let states = states.to_string();
    run_ok(&[
        "phantom",
        "--kind",
        kind,
        "--n-states",
        &states,
        "-D",
        "16",
        "-o",
        s(&ph),
    ]);
    let vols = ph.join("vols.txt");
    let n = n.to_string();
    let args = ["simulate", s(&vols), "-N", &n, "--seed", "2", "-o", s(&sim)];
    run_ok(&[&args[..], extra].concat());
    Sim { ph, sim }
}

/// The tiny networks: one hidden layer of 16 in the encoder and the decoder.
#[allow(dead_code)]
pub const NETS: [&str; 8] = [
    "--enc-dim",
    "16",
    "--enc-layers",
    "1",
    "--dec-dim",
    "16",
    "--dec-layers",
    "1",
];

/// `train-vae` on `sim`'s particles and poses with zdim 2 and [`NETS`] into `out` (`extra` flags
/// appended: epochs, batch size, seed, …); (success, stderr).
#[allow(dead_code)]
pub fn train_vae(sim: &Sim, out: &Path, extra: &[&str]) -> (bool, String) {
    let (parts, poses) = (sim.particles(), sim.poses());
    let head = ["train-vae", s(&parts), "--poses", s(&poses), "--zdim", "2"];
    let args = [&head[..], &NETS, &["-o", s(out)], extra].concat();
    let (ok, _, err) = run(&args);
    (ok, err)
}
