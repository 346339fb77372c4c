//! `downsample`: shrink particle images (or a volume) by clipping Fourier frequencies, as the reference's
//! `cryodrgn downsample`: `iht2_center(ht2_center(x)[c−D/2 : c+D/2, c−D/2 : c+D/2])`. The pixel size grows
//! by the same factor.
//!
//! A stack and its chunks (`--chunk`: `OUT.0.mrcs` … and `OUT.txt`) are written into a staging folder
//! beside the output and moved into place together when every image is written: a failure part-way
//! leaves the earlier outputs as they were; a successful run also removes higher-numbered chunks of an
//! earlier run under the same name, so the folder holds one consistent set.
//!
//! Example: `cryofield downsample particles.star -D 64 -o particles.64.mrcs --chunk 50000`

use crate::cli::progress;
use crate::error::Error;
use crate::fourier::downsample::{downsample_images, downsample_volume};
use crate::io::atomic::Staged;
use crate::io::mrc::{write_mrc, MrcFile, MrcStackWriter};
use crate::io::source::ParticleSource;
use crate::meta::load_indices;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Downsample images or a volume by Fourier cropping.
#[derive(Debug, clap::Args)]
#[command(about = "Downsample particle images or a volume by clipping Fourier frequencies")]
pub struct Args {
    /// Input particles (.mrcs, .star, .cs, .txt) or volume (.mrc with --is-vol)
    pub input: PathBuf,
    /// New box size in pixels (even)
    #[arg(short = 'D')]
    pub d: usize,
    /// Output stack (.mrcs/.mrc) or volume (.mrc)
    #[arg(short = 'o', long = "outfile")]
    pub o: PathBuf,
    /// The input .mrc is a volume
    #[arg(long)]
    pub is_vol: bool,
    /// Images per batch (bounds memory use)
    #[arg(short = 'b', long = "batch-size", default_value_t = 5000)]
    pub batch_size: usize,
    /// Split the output into files of this many images (OUT.0.mrcs, OUT.1.mrcs, ... listed in OUT.txt)
    #[arg(long)]
    pub chunk: Option<usize>,
    /// Keep only the particles at these indices (.pkl of integers)
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Folder of the stacks named in a .star/.cs input
    #[arg(long)]
    pub datadir: Option<PathBuf>,
}

/// Run `downsample`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.d == 0 || !a.d.is_multiple_of(2) {
        bail!("new box size -D {} must be even and positive", a.d);
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    if a.chunk == Some(0) {
        bail!("--chunk must be positive");
    }
    let ext = a.o.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "mrc" | "mrcs") {
        bail!(
            "{}: output must be an .mrcs/.mrc file (.star/.txt outputs that mirror the input's stack layout are not supported yet)",
            a.o.display()
        );
    }
    if a.is_vol {
        if a.ind.is_some() || a.chunk.is_some() {
            bail!("--ind and --chunk do not apply to volumes (--is-vol)");
        }
        return run_volume(&a);
    }
    let t0 = std::time::Instant::now();
    let mut src = ParticleSource::open(&a.input, a.datadir.as_deref())?;
    if let Some(ind) = &a.ind {
        let ind = load_indices(ind, src.len())?;
        src = src.select(&ind)?;
    }
    let big_d = src.d();
    if a.d > big_d {
        bail!(
            "new box size {} is larger than the box size {big_d} of {}",
            a.d,
            a.input.display()
        );
    }
    let new_apix = ((src.apix() as f64 * big_d as f64 / a.d as f64) * 1e6).round() / 1e6;
    let n = src.len();
    let chunk = a.chunk.unwrap_or(n.max(1));
    let nchunks = n.div_ceil(chunk).max(1);
    let outs: Vec<PathBuf> = if a.chunk.is_some() {
        (0..nchunks).map(|i| chunk_name(&a.o, i)).collect()
    } else {
        vec![a.o.clone()]
    };
    // Every output (the chunks and their list) is staged and lands together: a failure part-way
    // (a full disk, a bad image) leaves the folder exactly as it was.
    let mut staged = Staged::for_file(&a.o)?;
    let pb = progress::bar(n as u64, "downsample");
    let mut buf = Vec::new();
    for (ci, out) in outs.iter().enumerate() {
        let (c0, c1) = (ci * chunk, ((ci + 1) * chunk).min(n));
        let mut w = MrcStackWriter::create(
            staged.path(file_name(out)?)?,
            c1 - c0,
            a.d,
            a.d,
            new_apix as f32,
        )?;
        let mut s = c0;
        while s < c1 {
            let e = (s + a.batch_size).min(c1);
            buf.resize((e - s) * big_d * big_d, 0.0);
            src.read_range(s, e, &mut buf)?;
            let small = downsample_images(&buf, big_d, a.d);
            w.write_images(&small)?;
            pb.inc((e - s) as u64);
            s = e;
        }
        w.finish()?;
    }
    pb.finish_and_clear();
    let mut stale = 0;
    if a.chunk.is_some() {
        let txt = a.o.with_extension("txt");
        let names: Vec<String> = outs
            .iter()
            .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .collect();
        crate::io::atomic::write_bytes_atomic(
            staged.path(file_name(&txt)?)?,
            names.join("\n").as_bytes(),
        )?;
        // Chunks of an earlier, longer run under the same name would sit beside the new set.
        while chunk_name(&a.o, nchunks + stale).is_file() {
            staged.remove_on_commit(file_name(&chunk_name(&a.o, nchunks + stale))?);
            stale += 1;
        }
    }
    staged.commit()?;
    if a.chunk.is_some() {
        eprintln!(
            "wrote {} chunks listed in {}{}",
            outs.len(),
            a.o.with_extension("txt").display(),
            if stale > 0 {
                format!(" (removed {stale} chunks of an earlier run beyond these)")
            } else {
                String::new()
            }
        );
    }
    eprintln!(
        "downsampled {n} images {big_d}→{} (Apix {new_apix} Å) into {} in {:.2} s",
        a.d,
        a.o.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The file name of an output path.
fn file_name(p: &Path) -> anyhow::Result<&std::ffi::OsStr> {
    p.file_name()
        .with_context(|| format!("{}: output must name a file", p.display()))
}

/// `OUT.mrcs` → `OUT.{i}.mrcs`.
fn chunk_name(out: &Path, i: usize) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}.{i}.{ext}"))
}

fn run_volume(a: &Args) -> anyhow::Result<()> {
    let f = MrcFile::open(&a.input)?;
    let h = &f.header;
    if !(h.nx == h.ny && h.ny == h.nz) {
        return Err(Error::format(
            &a.input,
            format!("not a cubic volume: {}×{}×{}", h.nz, h.ny, h.nx),
        )
        .into());
    }
    let big_d = h.nx;
    if a.d > big_d {
        bail!("new box size {} is larger than the volume's {big_d}", a.d);
    }
    let vol = f.read_all()?;
    let small = downsample_volume(&vol, big_d, a.d);
    let apix = h.apix() * big_d as f32 / a.d as f32;
    write_mrc(&a.o, &small, (a.d, a.d, a.d), apix, true)
        .with_context(|| format!("writing {}", a.o.display()))?;
    eprintln!(
        "downsampled volume {big_d}³→{}³ (Apix {apix} Å) into {}",
        a.d,
        a.o.display()
    );
    Ok(())
}
