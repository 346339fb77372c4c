//! `write-star`: particles as a RELION .star file (cryoDRGN's `write_star`), with their CTF and,
//! when given, their poses; with `--ind`, only the particles of an index .pkl, in its order.
//!
//! From a `.mrcs`/`.txt` stack (CTF from `--ctf`) or a `.cs` file (CTF and poses from its fields
//! unless `--ctf`/`--poses` are given) a RELION 3.1 file is built: a `data_optics` table with one
//! group per distinct (image size, pixel size, voltage, Cs, amplitude contrast) of the CTF, and a
//! `data_particles` table with `_rlnImageName` (`000123@stack.mrcs`, 1-based), `_rlnDefocusU/V`
//! (Å), `_rlnDefocusAngle`, `_rlnPhaseShift` (degrees), `_rlnOpticsGroup` and, with poses,
//! `_rlnAngleRot/Tilt/Psi` (degrees) and `_rlnOriginXAngst/YAngst` (Å). Poses are written as the
//! exact inverse of `parse-pose-star`: the Euler angles whose `R_from_relion` is the rotation, and
//! origins `t·D·Apix` Å (D and Apix of the particle's optics group) for a translation `t` (a
//! fraction of D). With `--relion30`: one `data_` table holding every CTF column and the origins
//! in pixels (`_rlnOriginX/Y` = `t·D`).
//!
//! From a `.star` file: its tables are kept (the optics table included) and only the rows of the
//! selected particles written; `--poses` replaces its pose columns; `--relion30` folds the optics
//! values into the particle table (origins converted to pixels) and drops `data_optics`.
//!
//! Stack paths: see [`crate::cli::export`] (relative to the output's folder by default,
//! `--full-path` for absolute; the names in a .star/.cs input are kept unless `--full-path` or
//! `--datadir`). The output is written atomically.
//!
//! Example: `cryofield write-star particles.mrcs --ctf ctf.pkl --poses pose.pkl --ind good.pkl -o good.star`

use crate::cli::export::{fmt_f32, optics_groups, Input, Naming};
use crate::geometry::rotation::relion_from_r;
use crate::io::star::{StarBlock, StarFile, StarTable};
use crate::meta::{load_indices, Poses};
use anyhow::{bail, Context};
use std::path::PathBuf;

/// Write particles as a RELION .star file.
#[derive(Debug, clap::Args)]
#[command(about = "Write particles (with CTF and poses) as a RELION 3.1 .star file")]
pub struct Args {
    /// Input particles (.mrcs, .txt, .star, .cs)
    pub particles: PathBuf,
    /// CTF parameters (ctf.pkl); needed for .mrcs/.txt inputs
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Poses (pose.pkl: rotations (N,3,3), translations (N,2) as a fraction of D)
    #[arg(long)]
    pub poses: Option<PathBuf>,
    /// Keep only these particles (index .pkl, 0-based), in this order
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Write RELION 3.0 (one table, no data_optics, origins in pixels)
    #[arg(long)]
    pub relion30: bool,
    /// Write absolute stack paths (default: relative to the output's folder)
    #[arg(long = "full-path")]
    pub full_path: bool,
    /// Folder of the stacks named in a .star/.cs input (their names are then rewritten)
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Output .star
    #[arg(short = 'o', long = "outfile")]
    pub o: PathBuf,
}

/// Run `write-star`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let naming = Naming::new(&a.o, a.full_path, a.datadir.as_deref())?;
    let input = Input::open(&a.particles, &naming)?;
    let n = input.len();
    let ind: Vec<usize> = match &a.ind {
        Some(p) => load_indices(p, n)?,
        None => (0..n).collect(),
    };
    let (star, rows) = match &input.star {
        Some(star) => (from_star(&a, &input, star, &naming)?, ind),
        None => {
            let m = ind.len();
            (build(&a, &input, &ind)?, (0..m).collect())
        }
    };
    star.write_filtered(&a.o, &rows)?;
    let groups = star.optics_table().map_or(0, |t| t.rows.len());
    eprintln!(
        "wrote {} particles ({}) to {}",
        rows.len(),
        if groups > 0 {
            format!("RELION 3.1, {groups} optics group(s)")
        } else {
            "RELION 3.0".to_string()
        },
        a.o.display()
    );
    Ok(())
}

/// `(name, one value per particle)` columns of a table being built.
type Columns = Vec<(&'static str, Vec<String>)>;

fn table(columns: Columns) -> StarTable {
    let n = columns.first().map_or(0, |c| c.1.len());
    StarTable {
        columns: columns.iter().map(|c| c.0.to_string()).collect(),
        rows: (0..n)
            .map(|i| columns.iter().map(|c| c.1[i].clone()).collect())
            .collect(),
    }
}

/// Pose columns: Euler angles (degrees) and origins `t·scale[i]` (Å with `scale = D·Apix`, pixels
/// with `scale = D`) under the names `origin`.
fn pose_columns(poses: &Poses, scale: &[f64], origin: [&'static str; 2]) -> Columns {
    let eulers: Vec<[f64; 3]> = poses
        .rots
        .iter()
        .map(|r| relion_from_r(&r.map(f64::from)))
        .collect();
    let angle = |k: usize| eulers.iter().map(|e| format!("{:.6}", e[k])).collect();
    let shift = |k: usize| {
        (0..poses.len())
            .map(|i| {
                let t = poses.trans.as_ref().map_or(0.0, |t| f64::from(t[i][k]));
                format!("{:.6}", t * scale[i])
            })
            .collect()
    };
    vec![
        ("rlnAngleRot", angle(0)),
        ("rlnAngleTilt", angle(1)),
        ("rlnAnglePsi", angle(2)),
        (origin[0], shift(0)),
        (origin[1], shift(1)),
    ]
}

/// A new .star file for the particles `ind` of a .mrcs/.txt/.cs input.
fn build(a: &Args, input: &Input, ind: &[usize]) -> anyhow::Result<StarFile> {
    let ctf = input.ctf(a.ctf.as_deref())?.with_context(|| {
        format!(
            "{}: a .{} input has no CTF parameters: give them with --ctf ctf.pkl",
            input.path.display(),
            input.kind.name()
        )
    })?;
    let poses = input.poses(a.poses.as_deref())?.map(|p| p.select(ind));
    let ctf = ctf.select(ind);
    let col = |k: usize| -> Vec<String> { ctf.rows.iter().map(|r| fmt_f32(r[k])).collect() };
    let mut particles: Columns = vec![
        (
            "rlnImageName",
            ind.iter()
                .map(|&i| {
                    let (stack, k) = &input.images[i];
                    format!("{:06}@{stack}", k + 1)
                })
                .collect(),
        ),
        ("rlnDefocusU", col(2)),
        ("rlnDefocusV", col(3)),
        ("rlnDefocusAngle", col(4)),
        ("rlnPhaseShift", col(8)),
    ];
    // D and Apix of each particle: the values parse-pose-star divides the origins by.
    let d: Vec<f64> = ctf.rows.iter().map(|r| f64::from(r[0])).collect();
    let mut blocks = Vec::new();
    if a.relion30 {
        particles.extend([
            ("rlnVoltage", col(5)),
            ("rlnSphericalAberration", col(6)),
            ("rlnAmplitudeContrast", col(7)),
            ("rlnImagePixelSize", col(1)),
            ("rlnImageSize", col(0)),
        ]);
        if let Some(p) = &poses {
            particles.extend(pose_columns(p, &d, ["rlnOriginX", "rlnOriginY"]));
        }
    } else {
        let (group_of, groups) = optics_groups(&ctf);
        let g = |k: usize| groups.iter().map(|v| fmt_f32(v[k])).collect();
        let optics = vec![
            (
                "rlnOpticsGroupName",
                (1..=groups.len())
                    .map(|i| format!("opticsGroup{i}"))
                    .collect(),
            ),
            (
                "rlnOpticsGroup",
                (1..=groups.len()).map(|i| i.to_string()).collect(),
            ),
            ("rlnImagePixelSize", g(1)),
            ("rlnImageSize", g(0)),
            (
                "rlnImageDimensionality",
                vec!["2".to_string(); groups.len()],
            ),
            ("rlnVoltage", g(2)),
            ("rlnSphericalAberration", g(3)),
            ("rlnAmplitudeContrast", g(4)),
        ];
        blocks.push(StarBlock {
            name: "optics".into(),
            pairs: vec![],
            table: Some(table(optics)),
        });
        particles.push((
            "rlnOpticsGroup",
            group_of.iter().map(|g| (g + 1).to_string()).collect(),
        ));
        if let Some(p) = &poses {
            let scale: Vec<f64> = ctf
                .rows
                .iter()
                .map(|r| f64::from(r[0]) * f64::from(r[1]))
                .collect();
            particles.extend(pose_columns(
                p,
                &scale,
                ["rlnOriginXAngst", "rlnOriginYAngst"],
            ));
        }
    }
    blocks.push(StarBlock {
        name: if a.relion30 {
            String::new()
        } else {
            "particles".into()
        },
        pairs: vec![],
        table: Some(table(particles)),
    });
    Ok(StarFile {
        path: a.o.clone(),
        blocks,
    })
}

/// The input .star file edited for output (all rows; the caller writes the selected ones).
fn from_star(
    a: &Args,
    input: &Input,
    star: &StarFile,
    naming: &Naming<'_>,
) -> anyhow::Result<StarFile> {
    if let Some(c) = &a.ctf {
        bail!(
            "--ctf {}: the CTF of a .star input is taken from the file ({})",
            c.display(),
            input.path.display()
        );
    }
    let mut out = star.clone();
    out.path = a.o.clone();
    if naming.rewrites_metadata_paths() {
        let names = input
            .images
            .iter()
            .map(|(stack, k)| format!("{:06}@{stack}", k + 1))
            .collect();
        out.particles_table_mut()?
            .set_column("rlnImageName", names)?;
    }
    let versioned = star.optics_table().is_some() && !a.relion30;
    if a.relion30 && star.optics_table().is_some() {
        fold_optics(star, &mut out)?;
    }
    if let Some(p) = &a.poses {
        let poses = input
            .poses(Some(p))?
            .context("no poses were read from --poses")?;
        let need = |c: &str| {
            if star.has_particle_column(c) {
                Ok(star.particle_f64(c)?)
            } else {
                Err(anyhow::anyhow!(
                    "{}: no `{c}` to convert the translations of {} to RELION origins",
                    input.path.display(),
                    p.display()
                ))
            }
        };
        let d = need("rlnImageSize")?;
        let (scale, names) = if versioned {
            let apix = need("rlnImagePixelSize")?;
            let s: Vec<f64> = d.iter().zip(&apix).map(|(d, a)| d * a).collect();
            (s, ["rlnOriginXAngst", "rlnOriginYAngst"])
        } else {
            (d, ["rlnOriginX", "rlnOriginY"])
        };
        let t = out.particles_table_mut()?;
        for c in [
            "rlnOriginX",
            "rlnOriginY",
            "rlnOriginXAngst",
            "rlnOriginYAngst",
        ] {
            t.remove_column(c);
        }
        for (name, values) in pose_columns(&poses, &scale, names) {
            t.set_column(name, values)?;
        }
    }
    Ok(out)
}

/// RELION 3.0 from a 3.1 file: every optics column (bar the group's id and name) copied to the
/// particles that lack it, `rlnOriginX/YAngst` converted to `rlnOriginX/Y` pixels, `data_optics`
/// and `rlnOpticsGroup` dropped.
fn fold_optics(star: &StarFile, out: &mut StarFile) -> anyhow::Result<()> {
    let particles = star.particles_table()?;
    let optics = star
        .optics_table()
        .map(|o| o.columns.clone())
        .unwrap_or_default();
    let mut add = Vec::new();
    for c in optics {
        if c != "rlnOpticsGroup"
            && c != "rlnOpticsGroupName"
            && particles.column_index(&c).is_none()
        {
            let v = star.particle_str(&c)?;
            add.push((c, v));
        }
    }
    let angst = particles.column_index("rlnOriginXAngst").is_some()
        && particles.column_index("rlnOriginYAngst").is_some()
        && particles.column_index("rlnOriginX").is_none();
    let origins = if angst {
        let apix = star.particle_f64("rlnImagePixelSize").with_context(|| {
            format!(
                "{}: converting rlnOriginX/YAngst to pixels for --relion30",
                star.path.display()
            )
        })?;
        let px = |c: &str| -> anyhow::Result<Vec<String>> {
            Ok(star
                .particle_f64(c)?
                .iter()
                .zip(&apix)
                .map(|(x, a)| format!("{:.6}", x / a))
                .collect())
        };
        Some((px("rlnOriginXAngst")?, px("rlnOriginYAngst")?))
    } else {
        None
    };
    let t = out.particles_table_mut()?;
    for (c, v) in add {
        t.set_column(&c, v)?;
    }
    if let Some((x, y)) = origins {
        t.remove_column("rlnOriginXAngst");
        t.remove_column("rlnOriginYAngst");
        t.set_column("rlnOriginX", x)?;
        t.set_column("rlnOriginY", y)?;
    }
    t.remove_column("rlnOpticsGroup");
    out.blocks.retain(|b| b.name != "optics");
    Ok(())
}
