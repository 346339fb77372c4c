//! STAR files: RELION 3.0, 3.1 (optics block before or after particles, several optics groups) and 5.
//!
//! # Grammar accepted
//!
//! - `#` starts a comment when it is the first character of a line or of an unquoted token.
//! - `data_NAME` starts a block (`data_` with an empty name is what RELION 3.0 writes).
//! - `loop_` starts the block's table; it is followed by `_name` column lines (an optional `#N` after
//!   the name is a comment) and then by rows of whitespace-separated values. Blank lines inside the
//!   rows are skipped; the table ends at the next `data_`, `loop_` (an error: one table per block),
//!   `_key value` line or the end of the file.
//! - `_key value` outside a loop is a key/value pair of the block.
//! - Values may be quoted with `'…'` or `"…"` to hold spaces; a quote closes only when followed by
//!   whitespace or the end of the line (STAR 1.1).
//! - `;`-delimited multi-line values are rejected with an error naming the line.
//! - CRLF line endings and a UTF-8 byte-order mark are accepted.
//!
//! # Particles and optics
//!
//! The particle table is the loop of `data_particles` (RELION 3.1/5), else of `data_images`, else
//! the first loop in any block other than `data_optics` (RELION 3.0 writes `data_`). The optics
//! table is the loop of `data_optics`, which may come before or after the particles. A per-particle
//! value ([`StarFile::particle_f64`], [`StarFile::particle_str`]) comes from the particle table when
//! it has the column, else from the particle's optics group: its `rlnOpticsGroup` value is matched
//! to the optics table's `rlnOpticsGroup` column (ids need not be 1..n nor in order). Unlike the
//! reference (cryoDRGN's `Starfile.get_optics_values`, which prefers the optics table), a column
//! present in both tables is read from the particle table, as RELION does for per-particle values.
//!
//! Typical lookups: pose `rlnAngleRot/Tilt/Psi` (degrees), `rlnOriginX/Y` (pixels, RELION 3.0) or
//! `rlnOriginXAngst/YAngst` (Å, 3.1+); CTF `rlnDefocusU/V` (Å), `rlnDefocusAngle` (degrees),
//! `rlnVoltage` (kV), `rlnSphericalAberration` (mm), `rlnAmplitudeContrast`, `rlnPhaseShift`
//! (degrees), `rlnImagePixelSize` (Å/px) and `rlnImageSize` (px, usually in optics);
//! `rlnImageName` (`index@stack.mrcs`, index 1-based).

use crate::error::{Error, IoContext, Result};
use crate::io::atomic::write_atomic;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A `loop_` table: column names without the leading underscore (`rlnImageName`), rows of raw strings
/// (quotes removed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StarTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl StarTable {
    /// Index of `column` (given with or without the leading underscore), if present.
    pub fn column_index(&self, column: &str) -> Option<usize> {
        let name = strip_underscore(column);
        self.columns.iter().position(|c| c == name)
    }

    /// Set `column` (with or without the leading underscore) to `values`, one per row: an existing
    /// column is overwritten, a new one is appended. `values` must have one entry per row.
    pub fn set_column(&mut self, column: &str, values: Vec<String>) -> Result<()> {
        if values.len() != self.rows.len() {
            return Err(Error::Shape {
                what: format!("STAR column `{}`", strip_underscore(column)),
                expected: format!("{} values (one per row)", self.rows.len()),
                got: values.len().to_string(),
            });
        }
        match self.column_index(column) {
            Some(c) => {
                for (row, v) in self.rows.iter_mut().zip(values) {
                    if let Some(cell) = row.get_mut(c) {
                        *cell = v;
                    }
                }
            }
            None => {
                self.columns.push(strip_underscore(column).to_string());
                for (row, v) in self.rows.iter_mut().zip(values) {
                    row.push(v);
                }
            }
        }
        Ok(())
    }

    /// Remove `column` (with or without the leading underscore) when present.
    pub fn remove_column(&mut self, column: &str) {
        if let Some(c) = self.column_index(column) {
            self.columns.remove(c);
            for row in &mut self.rows {
                if c < row.len() {
                    row.remove(c);
                }
            }
        }
    }
}

/// One `data_NAME` block: key/value pairs and/or one loop table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StarBlock {
    pub name: String,
    pub pairs: Vec<(String, String)>,
    pub table: Option<StarTable>,
}

/// A parsed STAR file.
#[derive(Debug, Clone)]
pub struct StarFile {
    pub path: PathBuf,
    pub blocks: Vec<StarBlock>,
}

/// Name of the optics block (RELION 3.1+), without `data_`.
const OPTICS: &str = "optics";
/// Column linking particles to optics groups.
const OPTICS_GROUP: &str = "rlnOpticsGroup";

/// `rlnImageName` and `_rlnImageName` both name the column `rlnImageName`.
fn strip_underscore(column: &str) -> &str {
    column.strip_prefix('_').unwrap_or(column)
}

/// Bytes that separate STAR tokens.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

/// Whether `s` starts with the ASCII keyword `kw`, ignoring case.
fn starts_with_keyword(s: &str, kw: &str) -> bool {
    s.get(..kw.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(kw))
}

/// Split one line into values: whitespace-separated, `'…'`/`"…"` quoted (the quote closes only
/// before whitespace or the end of the line), and an unquoted token starting with `#` begins a
/// comment that runs to the end of the line. Errors describe the problem (the caller adds file and
/// line).
fn tokenize(line: &str) -> std::result::Result<Vec<String>, String> {
    let b = line.as_bytes();
    let n = b.len();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < n && is_space(b[i]) {
            i += 1;
        }
        if i >= n {
            break;
        }
        let c = b[i];
        if c == b'#' {
            break;
        }
        if c == b'\'' || c == b'"' {
            let start = i + 1;
            let mut j = start;
            let close = loop {
                if j >= n {
                    break None;
                }
                if b[j] == c && (j + 1 == n || is_space(b[j + 1])) {
                    break Some(j);
                }
                j += 1;
            };
            let Some(end) = close else {
                return Err(format!("unterminated {} quote", c as char));
            };
            // `start` and `end` sit next to ASCII quote bytes, so both are char boundaries.
            let tok = line
                .get(start..end)
                .ok_or_else(|| "invalid UTF-8 boundary in quoted value".to_string())?;
            out.push(tok.to_string());
            i = end + 1;
        } else {
            let start = i;
            while i < n && !is_space(b[i]) {
                i += 1;
            }
            let tok = line
                .get(start..i)
                .ok_or_else(|| "invalid UTF-8 boundary in value".to_string())?;
            out.push(tok.to_string());
        }
    }
    Ok(out)
}

/// Where the parser is within the current block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Before the first `data_` line.
    Preamble,
    /// Inside a block, outside any loop.
    Block,
    /// After `loop_`, reading `_column` lines.
    LoopHeader,
    /// Reading rows of the current block's table.
    LoopRows,
}

impl StarFile {
    /// Read and parse a STAR file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).at(path)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::format(
                path,
                format!(
                    "not a UTF-8 text file (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Self::parse(&text, path)
    }

    /// Parse STAR text; `path` is used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut blocks: Vec<StarBlock> = Vec::new();
        let mut state = State::Preamble;
        let err = |lineno: usize, msg: String| Error::format(path, format!("line {lineno}: {msg}"));

        for (k, raw) in text.lines().enumerate() {
            let lineno = k + 1;
            if raw.starts_with(';') {
                return Err(err(
                    lineno,
                    "multi-line `;`-delimited values are not supported".into(),
                ));
            }
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let tokens = tokenize(line).map_err(|m| err(lineno, m))?;
            let Some(first) = tokens.first() else {
                continue;
            };
            let quoted_first = line.starts_with('"') || line.starts_with('\'');

            if !quoted_first && starts_with_keyword(first, "data_") {
                if tokens.len() > 1 {
                    return Err(err(lineno, format!("unexpected text after `{first}`")));
                }
                if state == State::LoopHeader {
                    check_header_end(&blocks, path, lineno)?;
                }
                blocks.push(StarBlock {
                    name: first.get(5..).unwrap_or_default().to_string(),
                    ..StarBlock::default()
                });
                state = State::Block;
            } else if !quoted_first && first.eq_ignore_ascii_case("loop_") {
                if tokens.len() > 1 {
                    return Err(err(lineno, "unexpected text after `loop_`".into()));
                }
                let Some(block) = blocks.last_mut() else {
                    return Err(err(lineno, "`loop_` before any `data_` block".into()));
                };
                if block.table.is_some() {
                    return Err(err(
                        lineno,
                        format!(
                            "second `loop_` in block `data_{}` (one table per block is supported)",
                            block.name
                        ),
                    ));
                }
                block.table = Some(StarTable::default());
                state = State::LoopHeader;
            } else if !quoted_first && first.starts_with('_') {
                let name = strip_underscore(first).to_string();
                if name.is_empty() {
                    return Err(err(lineno, "empty name after `_`".into()));
                }
                let Some(block) = blocks.last_mut() else {
                    return Err(err(lineno, format!("`{first}` before any `data_` block")));
                };
                if state == State::LoopHeader {
                    if tokens.len() > 1 {
                        return Err(err(
                            lineno,
                            format!(
                                "unexpected text after column name `{first}` in `loop_` header"
                            ),
                        ));
                    }
                    if let Some(t) = block.table.as_mut() {
                        if t.columns.contains(&name) {
                            return Err(err(lineno, format!("duplicate column `{first}`")));
                        }
                        t.columns.push(name);
                    }
                } else {
                    // A key/value pair; it also ends a loop whose rows have started.
                    match tokens.len() {
                        1 => return Err(err(lineno, format!("key `{first}` has no value"))),
                        2 => {}
                        _ => {
                            return Err(err(
                                lineno,
                                format!(
                                "key `{first}` has more than one value (quote values with spaces)"
                            ),
                            ))
                        }
                    }
                    block.pairs.push((name, tokens[1].clone()));
                    state = State::Block;
                }
            } else {
                // A data row.
                let Some(block) = blocks.last_mut() else {
                    return Err(err(lineno, "data before any `data_` block".into()));
                };
                let table = match (state, block.table.as_mut()) {
                    (State::LoopHeader | State::LoopRows, Some(t)) => t,
                    _ => {
                        return Err(err(
                            lineno,
                            format!(
                                "value `{first}` outside a `loop_` in block `data_{}`",
                                block.name
                            ),
                        ))
                    }
                };
                if table.columns.is_empty() {
                    return Err(err(
                        lineno,
                        format!("`loop_` in block `data_{}` has no column names", block.name),
                    ));
                }
                if tokens.len() != table.columns.len() {
                    return Err(err(
                        lineno,
                        format!(
                            "row has {} values but the table of block `data_{}` has {} columns",
                            tokens.len(),
                            block.name,
                            table.columns.len()
                        ),
                    ));
                }
                table.rows.push(tokens);
                state = State::LoopRows;
            }
        }
        if state == State::LoopHeader {
            check_header_end(&blocks, path, text.lines().count())?;
        }
        if blocks.is_empty() {
            return Err(Error::format(
                path,
                "no `data_` block (empty or not a STAR file)",
            ));
        }
        Ok(StarFile {
            path: path.to_path_buf(),
            blocks,
        })
    }

    /// The block named `name` (without `data_`), if any; the first one when names repeat.
    pub fn block(&self, name: &str) -> Option<&StarBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// Index into `blocks` of the block holding the particle table: `data_particles`, else
    /// `data_images`, else the first block other than `data_optics` with a loop.
    fn particles_block_index(&self) -> Result<usize> {
        let with_table = |name: &str| {
            self.blocks
                .iter()
                .position(|b| b.name == name && b.table.is_some())
        };
        with_table("particles")
            .or_else(|| with_table("images"))
            .or_else(|| {
                self.blocks
                    .iter()
                    .position(|b| b.name != OPTICS && b.table.is_some())
            })
            .ok_or_else(|| {
                Error::format(
                    &self.path,
                    "no particle table (no `loop_` in `data_particles`, `data_images` or any block other than `data_optics`)",
                )
            })
    }

    /// The particle table (see the module doc for how it is chosen).
    pub fn particles_table(&self) -> Result<&StarTable> {
        let i = self.particles_block_index()?;
        self.blocks
            .get(i)
            .and_then(|b| b.table.as_ref())
            .ok_or_else(|| Error::format(&self.path, "no particle table"))
    }

    /// The particle table, for editing (chosen as [`StarFile::particles_table`] chooses it).
    pub fn particles_table_mut(&mut self) -> Result<&mut StarTable> {
        let i = self.particles_block_index()?;
        let path = self.path.clone();
        self.blocks
            .get_mut(i)
            .and_then(|b| b.table.as_mut())
            .ok_or_else(|| Error::format(path, "no particle table"))
    }

    /// The optics table (the loop of `data_optics`), if present.
    pub fn optics_table(&self) -> Option<&StarTable> {
        self.blocks
            .iter()
            .find(|b| b.name == OPTICS && b.table.is_some())
            .and_then(|b| b.table.as_ref())
    }

    /// Number of particles (rows of the particle table).
    pub fn n_particles(&self) -> Result<usize> {
        Ok(self.particles_table()?.rows.len())
    }

    /// The value of `column` for each particle as f64; when the particle table lacks it, it is taken from
    /// the particle's optics group (`rlnOpticsGroup` → optics table row). Error names the file and column.
    pub fn particle_f64(&self, column: &str) -> Result<Vec<f64>> {
        let name = strip_underscore(column);
        let parse = |table: &str, row: usize, v: &str| -> Result<f64> {
            v.parse::<f64>().map_err(|_| {
                Error::format(
                    &self.path,
                    format!(
                        "column `{name}`, {table} row {}: `{v}` is not a number",
                        row + 1
                    ),
                )
            })
        };
        match self.locate(name)? {
            Source::Particles(table, c) => table
                .rows
                .iter()
                .enumerate()
                .map(|(i, r)| parse("particle", i, cell(r, c)))
                .collect(),
            Source::Optics(optics, c, groups) => {
                let vals = optics
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| parse("optics", i, cell(r, c)))
                    .collect::<Result<Vec<f64>>>()?;
                Ok(groups
                    .iter()
                    .map(|&g| vals.get(g).copied().unwrap_or(f64::NAN))
                    .collect())
            }
        }
    }

    /// Like [`Self::particle_f64`] for string columns (e.g. `rlnImageName`).
    pub fn particle_str(&self, column: &str) -> Result<Vec<String>> {
        let name = strip_underscore(column);
        match self.locate(name)? {
            Source::Particles(table, c) => {
                Ok(table.rows.iter().map(|r| cell(r, c).to_string()).collect())
            }
            Source::Optics(optics, c, groups) => Ok(groups
                .iter()
                .map(|&g| {
                    optics
                        .rows
                        .get(g)
                        .map(|r| cell(r, c))
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()),
        }
    }

    /// Whether the column exists for particles (directly or through optics).
    pub fn has_particle_column(&self, column: &str) -> bool {
        let Ok(particles) = self.particles_table() else {
            return false;
        };
        particles.column_index(column).is_some()
            || self
                .optics_table()
                .is_some_and(|o| o.column_index(column).is_some())
    }

    /// Find where `name` lives for particles; for the optics table, also map each particle to its
    /// optics row.
    fn locate(&self, name: &str) -> Result<Source<'_>> {
        let particles = self.particles_table()?;
        if let Some(c) = particles.column_index(name) {
            return Ok(Source::Particles(particles, c));
        }
        let optics = self.optics_table();
        if let Some((optics, c)) = optics.and_then(|o| o.column_index(name).map(|c| (o, c))) {
            let groups = self.optics_rows(particles, optics, name)?;
            return Ok(Source::Optics(optics, c, groups));
        }
        let mut available = particles.columns.clone();
        if let Some(o) = optics {
            for col in &o.columns {
                if !available.contains(col) {
                    available.push(col.clone());
                }
            }
        }
        Err(Error::MissingColumn {
            path: self.path.clone(),
            column: name.to_string(),
            available,
        })
    }

    /// For each particle, the index of its row in the optics table.
    fn optics_rows(
        &self,
        particles: &StarTable,
        optics: &StarTable,
        name: &str,
    ) -> Result<Vec<usize>> {
        let n = particles.rows.len();
        let Some(pc) = particles.column_index(OPTICS_GROUP) else {
            return if optics.rows.len() == 1 {
                Ok(vec![0; n])
            } else {
                Err(Error::format(
                    &self.path,
                    format!(
                        "column `{name}` is in the optics table, which has {} groups, but the particle table has no `{OPTICS_GROUP}` column",
                        optics.rows.len()
                    ),
                ))
            };
        };
        let Some(oc) = optics.column_index(OPTICS_GROUP) else {
            return Err(Error::MissingColumn {
                path: self.path.clone(),
                column: format!("{OPTICS_GROUP} (in data_optics)"),
                available: optics.columns.clone(),
            });
        };
        let mut id_to_row = HashMap::with_capacity(optics.rows.len());
        for (i, r) in optics.rows.iter().enumerate() {
            let v = cell(r, oc);
            let id = parse_group_id(v).ok_or_else(|| {
                Error::format(
                    &self.path,
                    format!(
                        "column `{OPTICS_GROUP}`, optics row {}: `{v}` is not an integer",
                        i + 1
                    ),
                )
            })?;
            if id_to_row.insert(id, i).is_some() {
                return Err(Error::format(
                    &self.path,
                    format!("optics group {id} appears more than once in data_optics"),
                ));
            }
        }
        particles
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let v = cell(r, pc);
                let id = parse_group_id(v).ok_or_else(|| {
                    Error::format(
                        &self.path,
                        format!("column `{OPTICS_GROUP}`, particle row {}: `{v}` is not an integer", i + 1),
                    )
                })?;
                id_to_row.get(&id).copied().ok_or_else(|| {
                    Error::format(
                        &self.path,
                        format!(
                            "particle row {}: optics group {id} is not in data_optics (needed for `{name}`)",
                            i + 1
                        ),
                    )
                })
            })
            .collect()
    }

    /// Write a STAR file keeping only the particle rows in `ind` (optics and other blocks kept), atomically.
    ///
    /// Rows are written in the order of `ind` (repeats allowed). Other blocks are written unchanged.
    /// When the file has a `data_optics` block each block is preceded by `# version 30001`, as
    /// RELION 3.1 writes (RELION treats files without it as 3.0 and converts them).
    pub fn write_filtered(&self, path: impl AsRef<Path>, ind: &[usize]) -> Result<()> {
        let path = path.as_ref();
        let pi = self.particles_block_index()?;
        let n = self.n_particles()?;
        if let Some(&bad) = ind.iter().find(|&&i| i >= n) {
            return Err(Error::invalid(format!(
                "particle index {bad} out of range: {} has {n} particles",
                self.path.display()
            )));
        }
        let versioned = self.optics_table().is_some();
        write_atomic(path, |w| {
            let mut s = String::new();
            for (bi, block) in self.blocks.iter().enumerate() {
                s.clear();
                if bi > 0 {
                    s.push('\n');
                }
                if versioned {
                    s.push_str("# version 30001\n\n");
                }
                s.push_str("data_");
                s.push_str(&block.name);
                s.push_str("\n\n");
                for (k, v) in &block.pairs {
                    s.push('_');
                    s.push_str(k);
                    s.push(' ');
                    push_value(&mut s, v)
                        .map_err(|m| Error::invalid(format!("{}: {m}", path.display())))?;
                    s.push('\n');
                }
                if !block.pairs.is_empty() {
                    s.push('\n');
                }
                w.write_all(s.as_bytes()).at(path)?;
                if let Some(t) = &block.table {
                    let rows: Box<dyn Iterator<Item = &Vec<String>>> = if bi == pi {
                        Box::new(ind.iter().filter_map(|&i| t.rows.get(i)))
                    } else {
                        Box::new(t.rows.iter())
                    };
                    write_table(w, t, rows, path)?;
                }
            }
            Ok(())
        })
    }
}

/// Where a particle column's values come from.
enum Source<'a> {
    /// The particle table, column index.
    Particles(&'a StarTable, usize),
    /// The optics table, column index, and each particle's optics row.
    Optics(&'a StarTable, usize, Vec<usize>),
}

/// Cell `c` of a row; rows are checked against the column count while parsing, so this is only a
/// guard for tables built by hand.
fn cell(row: &[String], c: usize) -> &str {
    row.get(c).map(String::as_str).unwrap_or_default()
}

/// An optics group id: an integer, also accepted written as an integral float (`1.000000`).
fn parse_group_id(v: &str) -> Option<i64> {
    if let Ok(i) = v.parse::<i64>() {
        return Some(i);
    }
    let f = v.parse::<f64>().ok()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// Append `v` to `s`, quoting it when it would not read back as one value (empty, whitespace inside,
/// or starting like a comment, key, quote or keyword). RELION's bracketed lists (`[0.1,0.2]`) are
/// written bare, as RELION writes them.
fn push_value(s: &mut String, v: &str) -> std::result::Result<(), String> {
    if v.contains(['\n', '\r']) {
        return Err(format!("value {v:?} contains a line break"));
    }
    let plain = !v.is_empty()
        && !v.bytes().any(is_space)
        && !v.starts_with(['\'', '"', '_', '#', ';'])
        && !["data_", "loop_", "save_", "global_", "stop_"]
            .iter()
            .any(|k| starts_with_keyword(v, k));
    if plain {
        s.push_str(v);
        return Ok(());
    }
    // A quote only closes when followed by whitespace, so `q` works unless `v` holds `q` followed by
    // whitespace or ends with `q`.
    let fits = |q: char| {
        !v.ends_with(q)
            && !v
                .as_bytes()
                .windows(2)
                .any(|w| w[0] == q as u8 && is_space(w[1]))
    };
    let q = if fits('"') {
        '"'
    } else if fits('\'') {
        '\''
    } else {
        return Err(format!("value {v:?} cannot be quoted in STAR"));
    };
    s.push(q);
    s.push_str(v);
    s.push(q);
    Ok(())
}

/// Write one `loop_` table with the given rows, ending with a blank line.
fn write_table<'a, W: Write>(
    w: &mut W,
    t: &StarTable,
    rows: impl Iterator<Item = &'a Vec<String>>,
    path: &Path,
) -> Result<()> {
    let mut s = String::from("loop_\n");
    for (i, c) in t.columns.iter().enumerate() {
        s.push('_');
        s.push_str(c);
        s.push_str(&format!(" #{}\n", i + 1));
    }
    w.write_all(s.as_bytes()).at(path)?;
    for row in rows {
        s.clear();
        for (j, v) in row.iter().enumerate() {
            if j > 0 {
                s.push(' ');
            }
            push_value(&mut s, v)
                .map_err(|m| Error::invalid(format!("{}: {m}", path.display())))?;
        }
        s.push('\n');
        w.write_all(s.as_bytes()).at(path)?;
    }
    w.write_all(b"\n").at(path)
}

/// Error unless the table just closed (the last block's) has at least one column.
fn check_header_end(blocks: &[StarBlock], path: &Path, lineno: usize) -> Result<()> {
    match blocks.last() {
        Some(b) if b.table.as_ref().is_some_and(|t| t.columns.is_empty()) => Err(Error::format(
            path,
            format!(
                "line {lineno}: `loop_` in block `data_{}` has no column names",
                b.name
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_quotes_and_comments() {
        let t = tokenize(r#"a 'b c' "d e" f'g h # comment"#).unwrap();
        assert_eq!(t, vec!["a", "b c", "d e", "f'g", "h"]);
        // A quote closes only before whitespace.
        let t = tokenize(r#"'it's fine' x"#).unwrap();
        assert_eq!(t, vec!["it's fine", "x"]);
        assert_eq!(tokenize("\"\" x").unwrap(), vec!["", "x"]);
        assert!(tokenize("'open").is_err());
        assert!(tokenize("  \t ").unwrap().is_empty());
    }

    #[test]
    fn push_value_round_trips() {
        for v in [
            "plain",
            "with space",
            "",
            "_underscore",
            "#hash",
            "data_x",
            "loop_",
            "it's",
            "say \"hi\" now",
            "ends'",
            "[1,2]",
        ] {
            let mut s = String::new();
            push_value(&mut s, v).unwrap();
            assert_eq!(
                tokenize(&s).unwrap(),
                vec![v.to_string()],
                "value {v:?} written as {s}"
            );
        }
        let mut s = String::new();
        assert!(push_value(&mut s, "a\" b' c").is_err());
        assert!(push_value(&mut s, "two\nlines").is_err());
    }

    #[test]
    fn group_ids() {
        assert_eq!(parse_group_id("3"), Some(3));
        assert_eq!(parse_group_id("3.000000"), Some(3));
        assert_eq!(parse_group_id("3.5"), None);
        assert_eq!(parse_group_id("x"), None);
        assert_eq!(parse_group_id("nan"), None);
    }

    #[test]
    fn column_index_accepts_underscore() {
        let t = StarTable {
            columns: vec!["rlnA".into(), "rlnB".into()],
            rows: vec![],
        };
        assert_eq!(t.column_index("rlnB"), Some(1));
        assert_eq!(t.column_index("_rlnB"), Some(1));
        assert_eq!(t.column_index("rlnC"), None);
    }

    #[test]
    fn pairs_and_loop_in_one_block() {
        let text = "data_general\n_rlnKey 'a b'\n_rlnN 3 # c\nloop_\n_rlnX #1\n1\n2\n_rlnAfter 5\n";
        let f = StarFile::parse(text, Path::new("t.star")).unwrap();
        let b = &f.blocks[0];
        assert_eq!(
            b.pairs,
            vec![
                ("rlnKey".to_string(), "a b".to_string()),
                ("rlnN".to_string(), "3".to_string()),
                ("rlnAfter".to_string(), "5".to_string())
            ]
        );
        assert_eq!(b.table.as_ref().unwrap().rows.len(), 2);
    }

    #[test]
    fn rejects_structural_errors() {
        let p = Path::new("bad.star");
        let cases = [
            ("loop_\n_a #1\n1\n", "before any"),
            ("data_x\n1 2\n", "outside a `loop_`"),
            ("data_x\nloop_\n1 2\n", "no column names"),
            ("data_x\nloop_\n", "no column names"),
            ("data_x\nloop_\n_a\n1\nloop_\n_b\n2\n", "second `loop_`"),
            ("data_x\n_key\n", "has no value"),
            ("data_x\nloop_\n_a\n_a\n", "duplicate column"),
            ("data_x\n;\ntext\n;\n", "multi-line"),
            ("data_x\nloop_\n_a\n'open\n", "unterminated"),
        ];
        for (text, want) in cases {
            let e = StarFile::parse(text, p).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("bad.star"), "{e}");
        }
    }
}
