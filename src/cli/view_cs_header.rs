//! `view-cs-header`: the fields of a cryoSPARC `.cs` file (name, dtype, shape) and their values in
//! its first records (cryoDRGN's `view_cs_header`).
//!
//! Example: `cryofield view-cs-header P12_J24_particles.cs -n 2`

use crate::io::npy::read_records;
use std::path::PathBuf;

/// Show a .cs file's fields.
#[derive(Debug, clap::Args)]
#[command(about = "Show the fields of a cryoSPARC .cs file and its first records")]
pub struct Args {
    /// cryoSPARC particles (.cs)
    pub input: PathBuf,
    /// Records to show
    #[arg(short = 'n', default_value_t = 1)]
    pub n: usize,
}

/// Run `view-cs-header`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let r = read_records(&a.input)?;
    println!("file: {}", a.input.display());
    println!(
        "records: {}, {} bytes each, {} fields",
        r.n,
        r.itemsize,
        r.fields.len()
    );
    let show = a.n.min(r.n);
    for f in &r.fields {
        let shape = if f.shape.is_empty() {
            String::new()
        } else {
            format!(" {:?}", f.shape)
        };
        let per: usize = f.shape.iter().product::<usize>().max(1);
        let vals = match r.column_strings(&f.name) {
            Ok(s) => s
                .iter()
                .take(show * per)
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>(),
            Err(_) if f.descr.ends_with("u8") => match r.column_u64(&f.name) {
                Ok(c) => c.iter().take(show * per).map(|v| v.to_string()).collect(),
                Err(e) => vec![format!("({e})")],
            },
            Err(_) => match r.column(&f.name) {
                Ok(c) => c
                    .to_f64()
                    .iter()
                    .take(show * per)
                    .map(|v| format!("{v}"))
                    .collect(),
                Err(e) => vec![format!("({e})")],
            },
        };
        println!("{:<32} {:<6}{shape}  {}", f.name, f.descr, vals.join(" "));
    }
    Ok(())
}
