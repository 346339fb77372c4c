//! Atomic models: PDB `ATOM`/`HETATM` records (fixed columns) and mmCIF `_atom_site` tables.
//!
//! Only what a density map needs is kept: atom and residue names, chain, element, Cartesian
//! coordinates (Å), occupancy, B-factor and alternate location. [`read_model`] reads the first model
//! of a multi-model file (PDB `MODEL`/`ENDMDL`, mmCIF `pdbx_PDB_model_num`), [`read_models`] every
//! model (an ensemble, as `pc-prepare` reads it). Malformed coordinates are an
//! [`Error::Format`] naming the file and the line; no input makes the parsers panic.

use crate::error::{Error, IoContext, Result};
use std::path::Path;

/// One atom of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Atom {
    /// atom name (`CA`, `N`, `OXT`), trimmed
    pub name: String,
    /// residue (component) name (`ALA`, `HOH`), trimmed
    pub res_name: String,
    /// chain identifier, trimmed
    pub chain: String,
    /// residue sequence number, when given
    pub res_seq: Option<i64>,
    /// element symbol, capitalised as in the periodic table (`C`, `Fe`)
    pub element: String,
    /// Cartesian coordinates `(x, y, z)` in Å
    pub pos: [f64; 3],
    /// occupancy in `[0, 1]` (1 when not given)
    pub occupancy: f64,
    /// isotropic B-factor (Å²; 0 when not given)
    pub b_factor: f64,
    /// alternate location indicator (PDB column 17, mmCIF `label_alt_id`); empty when not given
    pub alt_loc: String,
    /// a `HETATM` record (PDB) or `group_PDB = HETATM` (mmCIF)
    pub hetatm: bool,
    /// 1-based line of the file the atom was read from
    pub line: usize,
}

/// Element symbols by atomic number − 1 (H = 1 … Og = 118).
const ELEMENTS: [&str; 118] = [
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
    "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In",
    "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb",
    "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl",
    "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk",
    "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh",
    "Fl", "Mc", "Lv", "Ts", "Og",
];

/// The atomic number (= electron count of the neutral atom) of an element symbol, any case;
/// deuterium `D` and tritium `T` count as hydrogen. `None` for an unknown symbol.
pub fn atomic_number(symbol: &str) -> Option<u32> {
    let s = symbol.trim();
    if s.eq_ignore_ascii_case("D") || s.eq_ignore_ascii_case("T") {
        return Some(1);
    }
    ELEMENTS
        .iter()
        .position(|e| e.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

/// `fe`, `FE` → `Fe`; empty stays empty.
fn normalize_element(s: &str) -> String {
    let s = s.trim();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Read a model: mmCIF when the name ends in `.cif`/`.mmcif` (or the text starts with `data_`),
/// PDB otherwise.
pub fn read_model(path: impl AsRef<Path>) -> Result<Vec<Atom>> {
    let path = path.as_ref();
    let (text, cif) = read_text(path)?;
    let atoms = if cif {
        parse_mmcif(&text, path)?
    } else {
        parse_pdb(&text, path)?
    };
    if atoms.is_empty() {
        return Err(Error::format(path, "no atoms found"));
    }
    Ok(atoms)
}

/// Read every model of a file (PDB `MODEL`/`ENDMDL` blocks, mmCIF `pdbx_PDB_model_num` values, in
/// file order); a file without model records is one model. Same format detection as
/// [`read_model`]; a file without atoms, or a model without atoms, is an error naming the file.
pub fn read_models(path: impl AsRef<Path>) -> Result<Vec<Vec<Atom>>> {
    let path = path.as_ref();
    let (text, cif) = read_text(path)?;
    let models = if cif {
        parse_mmcif_models(&text, path)?
    } else {
        parse_pdb_models(&text, path)?
    };
    if models.is_empty() {
        return Err(Error::format(path, "no atoms found"));
    }
    Ok(models)
}

/// The file's text and whether it is mmCIF (by extension, else by a leading `data_`).
fn read_text(path: &Path) -> Result<(String, bool)> {
    let bytes = std::fs::read(path).at(path)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let looks_cif = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .is_some_and(|l| l.trim_start().starts_with("data_"));
    let cif = ext == "cif" || ext == "mmcif" || (ext != "pdb" && ext != "ent" && looks_cif);
    Ok((text, cif))
}

/// Columns `a..b` (0-based, half-open) of a line, or `None` when the line is shorter than `b`
/// or the range splits a multi-byte character.
fn cols(line: &str, a: usize, b: usize) -> Option<&str> {
    line.get(a..b.min(line.len())).filter(|_| line.len() > a)
}

/// Parse the `ATOM`/`HETATM` records of PDB text (first model only). `path` names the file in errors.
///
/// Fixed columns (1-based): name 13–16, altLoc 17, resName 18–20, chain 22, resSeq 23–26,
/// x 31–38, y 39–46, z 47–54, occupancy 55–60, B 61–66, element 77–78. The element is inferred
/// from the atom name when columns 77–78 are blank.
pub fn parse_pdb(text: &str, path: &Path) -> Result<Vec<Atom>> {
    let mut atoms = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("ENDMDL") {
            break;
        }
        if let Some(a) = pdb_atom(line, i + 1, path)? {
            atoms.push(a);
        }
    }
    Ok(atoms)
}

/// Parse every model of PDB text: a `MODEL` record or the end of an `ENDMDL` block starts a new
/// model; text without them is one model. Models without atoms are skipped. Columns as
/// [`parse_pdb`].
pub fn parse_pdb_models(text: &str, path: &Path) -> Result<Vec<Vec<Atom>>> {
    let mut models = Vec::new();
    let mut cur = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("ENDMDL") || line.starts_with("MODEL") {
            if !cur.is_empty() {
                models.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if let Some(a) = pdb_atom(line, i + 1, path)? {
            cur.push(a);
        }
    }
    if !cur.is_empty() {
        models.push(cur);
    }
    Ok(models)
}

/// One `ATOM`/`HETATM` record (`None` for other records); `lineno` is 1-based.
fn pdb_atom(line: &str, lineno: usize, path: &Path) -> Result<Option<Atom>> {
    let hetatm = line.starts_with("HETATM");
    if !(line.starts_with("ATOM") || hetatm) {
        return Ok(None);
    }
    let err = |msg: String| Error::format(path, format!("line {lineno}: {msg}"));
    if !line.is_ascii() {
        return Err(err("ATOM/HETATM record holds non-ASCII characters".into()));
    }
    if line.len() < 54 {
        return Err(err(format!(
            "ATOM/HETATM record is {} characters long; coordinates need columns 31–54",
            line.len()
        )));
    }
    let mut pos = [0.0f64; 3];
    for (k, axis) in ["x", "y", "z"].iter().enumerate() {
        let field = &line[30 + 8 * k..38 + 8 * k];
        pos[k] = parse_finite(field).ok_or_else(|| {
            err(format!(
                "coordinate {axis} (columns {}–{}) `{}` is not a finite number",
                31 + 8 * k,
                38 + 8 * k,
                field.trim()
            ))
        })?;
    }
    let occupancy = match cols(line, 54, 60).map(str::trim) {
        None | Some("") => 1.0,
        Some(s) => parse_finite(s)
            .ok_or_else(|| err(format!("occupancy (columns 55–60) `{s}` is not a number")))?,
    };
    let b_factor = match cols(line, 60, 66).map(str::trim) {
        None | Some("") => 0.0,
        Some(s) => parse_finite(s)
            .ok_or_else(|| err(format!("B-factor (columns 61–66) `{s}` is not a number")))?,
    };
    let raw_name = &line[12..16];
    let name = raw_name.trim().to_string();
    let element = match cols(line, 76, 78).map(|s| {
        s.trim()
            .trim_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-')
    }) {
        Some(e) if !e.is_empty() => normalize_element(e),
        _ => infer_element(raw_name, hetatm),
    };
    Ok(Some(Atom {
        name,
        res_name: line[17..20].trim().to_string(),
        chain: line[21..22].trim().to_string(),
        res_seq: line[22..26].trim().parse().ok(),
        element,
        pos,
        occupancy,
        b_factor,
        alt_loc: line[16..17].trim().to_string(),
        hetatm,
        line: lineno,
    }))
}

/// The element of a PDB atom name (columns 13–16): names whose first column is blank or a digit
/// are one-letter elements (` CA ` is carbon alpha); a letter in column 13 starts a two-letter
/// element (`FE  `, `CL  `) when that is a known element, except hydrogens of standard residues
/// (`HG21` in an `ATOM` record is hydrogen, not mercury).
fn infer_element(raw: &str, hetatm: bool) -> String {
    let b = raw.as_bytes();
    let first = b.first().copied().unwrap_or(b' ');
    if first == b' ' || first.is_ascii_digit() {
        let letters: String = raw
            .chars()
            .skip(1)
            .take_while(|c| c.is_ascii_alphabetic())
            .take(1)
            .collect();
        return normalize_element(&letters);
    }
    let two: String = raw.chars().take(2).collect();
    let two_ok = two.chars().all(|c| c.is_ascii_alphabetic()) && atomic_number(&two).is_some();
    if two_ok && (hetatm || first != b'H') {
        normalize_element(&two)
    } else {
        normalize_element(&raw.chars().take(1).collect::<String>())
    }
}

/// A finite f64, or `None`.
fn parse_finite(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A CIF token: its text (quotes removed) and the 1-based line it starts on.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
    /// quoted or a text field (so `loop_`, `.`, `?` inside it are plain values)
    quoted: bool,
}

/// Split CIF text into tokens: whitespace-separated words, `'…'`/`"…"` strings (closed by the quote
/// followed by whitespace or the end of the line), `;` text fields, `#` comments.
fn cif_tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let lineno = i + 1;
        if let Some(rest) = line.strip_prefix(';') {
            // text field: runs until a line starting with ';'
            let mut s = rest.to_string();
            for (_, l) in lines.by_ref() {
                if l.starts_with(';') {
                    break;
                }
                s.push('\n');
                s.push_str(l);
            }
            out.push(Token {
                text: s,
                line: lineno,
                quoted: true,
            });
            continue;
        }
        let chars: Vec<char> = line.chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            if c.is_whitespace() {
                k += 1;
                continue;
            }
            if c == '#' {
                break;
            }
            if c == '\'' || c == '"' {
                let q = c;
                let mut j = k + 1;
                while j < chars.len()
                    && !(chars[j] == q && chars.get(j + 1).is_none_or(|n| n.is_whitespace()))
                {
                    j += 1;
                }
                out.push(Token {
                    text: chars[k + 1..j.min(chars.len())].iter().collect(),
                    line: lineno,
                    quoted: true,
                });
                k = j + 1;
                continue;
            }
            let mut j = k;
            while j < chars.len() && !chars[j].is_whitespace() {
                j += 1;
            }
            out.push(Token {
                text: chars[k..j].iter().collect(),
                line: lineno,
                quoted: false,
            });
            k = j;
        }
    }
    out
}

/// The `_atom_site` table of mmCIF text: column names (without the `_atom_site.` prefix) and rows.
fn atom_site_table(tokens: &[Token]) -> (Vec<String>, Vec<Vec<Token>>) {
    let is_tag = |t: &Token| !t.quoted && t.text.starts_with('_');
    let is_keyword = |t: &Token| {
        !t.quoted && {
            let l = t.text.to_ascii_lowercase();
            l == "loop_" || l.starts_with("data_") || l.starts_with("save_") || l == "global_"
        }
    };
    let prefix = "_atom_site.";
    let has_prefix = |t: &Token| {
        !t.quoted
            && t.text.len() > prefix.len()
            && t.text.is_char_boundary(prefix.len())
            && t.text[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    let mut i = 0;
    let mut single_tags = Vec::new();
    let mut single_vals = Vec::new();
    while i < tokens.len() {
        let t = &tokens[i];
        if !t.quoted && t.text.eq_ignore_ascii_case("loop_") {
            let mut j = i + 1;
            let mut tags = Vec::new();
            while j < tokens.len() && is_tag(&tokens[j]) {
                tags.push(j);
                j += 1;
            }
            let mut k = j;
            while k < tokens.len() && !is_tag(&tokens[k]) && !is_keyword(&tokens[k]) {
                k += 1;
            }
            if !tags.is_empty() && tags.iter().all(|&t| has_prefix(&tokens[t])) {
                let names = tags
                    .iter()
                    .map(|&t| tokens[t].text[prefix.len()..].to_string())
                    .collect::<Vec<_>>();
                let rows = tokens[j..k]
                    .chunks(names.len())
                    .map(|c| c.to_vec())
                    .collect();
                return (names, rows);
            }
            i = k;
        } else if has_prefix(t) && i + 1 < tokens.len() {
            // a one-atom model written as `_atom_site.tag value` pairs
            single_tags.push(t.text[prefix.len()..].to_string());
            single_vals.push(tokens[i + 1].clone());
            i += 2;
        } else {
            i += 1;
        }
    }
    if single_tags.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (single_tags, vec![single_vals])
    }
}

/// Parse the `_atom_site` table of mmCIF text (first model only). `path` names the file in errors.
///
/// Coordinates from `Cartn_x/y/z`; element from `type_symbol` (else inferred from the atom name);
/// names from the `label_*` columns, falling back to `auth_*`. `.` and `?` are missing values.
pub fn parse_mmcif(text: &str, path: &Path) -> Result<Vec<Atom>> {
    Ok(mmcif_models(text, path, true)?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// Parse every model of an mmCIF `_atom_site` table, grouped by `pdbx_PDB_model_num` in order of
/// first appearance (one model when the column is absent). Columns as [`parse_mmcif`].
pub fn parse_mmcif_models(text: &str, path: &Path) -> Result<Vec<Vec<Atom>>> {
    mmcif_models(text, path, false)
}

/// The models of an `_atom_site` table; with `first_only`, rows of later models are skipped
/// unparsed.
fn mmcif_models(text: &str, path: &Path, first_only: bool) -> Result<Vec<Vec<Atom>>> {
    let tokens = cif_tokens(text);
    let (names, rows) = atom_site_table(&tokens);
    if names.is_empty() {
        return Err(Error::format(path, "no `_atom_site` table found"));
    }
    let col = |n: &str| names.iter().position(|c| c.eq_ignore_ascii_case(n));
    let need = |n: &str| {
        col(n).ok_or_else(|| Error::MissingColumn {
            path: path.to_path_buf(),
            column: format!("_atom_site.{n}"),
            available: names.iter().map(|c| format!("_atom_site.{c}")).collect(),
        })
    };
    let (cx, cy, cz) = (need("Cartn_x")?, need("Cartn_y")?, need("Cartn_z")?);
    let either = |a: &str, b: &str| col(a).or_else(|| col(b));
    let c_name = either("label_atom_id", "auth_atom_id");
    let c_res = either("label_comp_id", "auth_comp_id");
    let c_chain = either("label_asym_id", "auth_asym_id");
    let c_seq = either("label_seq_id", "auth_seq_id");
    let c_elem = col("type_symbol");
    let c_group = col("group_PDB");
    let c_occ = col("occupancy");
    let c_b = col("B_iso_or_equiv");
    let c_model = col("pdbx_PDB_model_num");
    let c_alt = col("label_alt_id");
    let mut model_ids: Vec<String> = Vec::new();
    let mut models: Vec<Vec<Atom>> = Vec::new();
    for row in &rows {
        let line = row.first().map_or(0, |t| t.line);
        let err = |msg: String| Error::format(path, format!("line {line}: {msg}"));
        if row.len() != names.len() {
            return Err(err(format!(
                "`_atom_site` row has {} values, the table has {} columns",
                row.len(),
                names.len()
            )));
        }
        let val = |c: Option<usize>| -> Option<&str> {
            c.map(|c| &row[c])
                .filter(|t| t.quoted || (t.text != "." && t.text != "?"))
                .map(|t| t.text.as_str())
        };
        // a row without a model number belongs to the model being read
        let known = match val(c_model) {
            None if !models.is_empty() => Some(models.len() - 1),
            None => None,
            Some(m) => model_ids.iter().position(|f| f == m),
        };
        let slot = match known {
            Some(k) => k,
            None if first_only && !models.is_empty() => continue,
            None => {
                model_ids.push(val(c_model).unwrap_or("").to_string());
                models.push(Vec::new());
                models.len() - 1
            }
        };
        let mut pos = [0.0; 3];
        for (k, (c, axis)) in [(cx, "Cartn_x"), (cy, "Cartn_y"), (cz, "Cartn_z")]
            .into_iter()
            .enumerate()
        {
            let t = &row[c];
            pos[k] = parse_finite(&t.text).ok_or_else(|| {
                Error::format(
                    path,
                    format!(
                        "line {}: {axis} `{}` is not a finite number",
                        t.line, t.text
                    ),
                )
            })?;
        }
        let num = |c: Option<usize>, what: &str, default: f64| -> Result<f64> {
            match val(c) {
                None => Ok(default),
                Some(s) => {
                    parse_finite(s).ok_or_else(|| err(format!("{what} `{s}` is not a number")))
                }
            }
        };
        let name = val(c_name).unwrap_or("").to_string();
        let hetatm = val(c_group).is_some_and(|g| g.eq_ignore_ascii_case("HETATM"));
        let element = match val(c_elem) {
            Some(e) => normalize_element(
                e.trim_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-'),
            ),
            None => {
                // mmCIF atom names are not column-justified: a 2-letter element is only taken
                // for hetero atoms whose name is exactly that element
                let n = name.trim();
                if hetatm && n.len() == 2 && atomic_number(n).is_some() {
                    normalize_element(n)
                } else {
                    normalize_element(
                        &n.chars()
                            .filter(|c| c.is_ascii_alphabetic())
                            .take(1)
                            .collect::<String>(),
                    )
                }
            }
        };
        models[slot].push(Atom {
            name,
            res_name: val(c_res).unwrap_or("").to_string(),
            chain: val(c_chain).unwrap_or("").to_string(),
            res_seq: val(c_seq).and_then(|s| s.parse().ok()),
            element,
            pos,
            occupancy: num(c_occ, "occupancy", 1.0)?,
            b_factor: num(c_b, "B_iso_or_equiv", 0.0)?,
            alt_loc: val(c_alt).unwrap_or("").to_string(),
            hetatm,
            line,
        });
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PDB: &str = "\
HEADER    TEST
ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N
ATOM      2  CA  ALA A   1      11.639   6.071  -5.147  1.00  0.00           C
HETATM    3 FE   HEM A 101       1.000   2.000   3.000  0.50 10.00
ATOM      4 HG21 THR A   2       0.000   0.000   0.000  1.00  0.00
ATOM      5  CA  GLY A   3         1.0     2.0     3.0
ENDMDL
ATOM      6  CA  GLY A   4       9.000   9.000   9.000  1.00  0.00           C
";

    #[test]
    fn pdb_columns_and_elements() {
        let a = parse_pdb(PDB, Path::new("t.pdb")).unwrap();
        assert_eq!(a.len(), 5, "stops at ENDMDL");
        assert_eq!(a[0].name, "N");
        assert_eq!(a[1].pos, [11.639, 6.071, -5.147]);
        assert_eq!(a[1].element, "C");
        assert_eq!(a[1].res_name, "ALA");
        assert_eq!(a[1].chain, "A");
        assert_eq!(a[1].res_seq, Some(1));
        assert_eq!(a[2].element, "Fe");
        assert!(a[2].hetatm);
        assert_eq!(a[2].occupancy, 0.5);
        assert_eq!(a[3].element, "H", "HG21 of THR is hydrogen");
        assert_eq!(a[4].element, "C");
        assert_eq!(a[4].occupancy, 1.0);
        assert_eq!(a[4].line, 6);
    }

    #[test]
    fn pdb_bad_coordinate_names_line() {
        let t = "ATOM      1  CA  ALA A   1      11.104   6.1x4  -6.504  1.00  0.00           C\n";
        let e = parse_pdb(&format!("REMARK\n{t}"), Path::new("bad.pdb"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.pdb") && e.contains("line 2") && e.contains("6.1x4"),
            "{e}"
        );
        let e = parse_pdb(
            "ATOM      1  CA  ALA A   1      11.104\n",
            Path::new("short.pdb"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("short.pdb") && e.contains("line 1"), "{e}");
    }

    const CIF: &str = "\
data_test
#
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.type_symbol
_atom_site.label_atom_id
_atom_site.label_alt_id
_atom_site.label_comp_id
_atom_site.label_asym_id
_atom_site.label_seq_id
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.occupancy
_atom_site.B_iso_or_equiv
_atom_site.pdbx_PDB_model_num
ATOM   1 N  N   . ALA A 1 11.104 6.134 -6.504 1.00 0.00 1
ATOM   2 C  CA  . ALA A 1 11.639 6.071 -5.147 1.00 0.00 1
HETATM 3 FE FE  . HEM B . 1.000  2.000  3.000  0.50 10.0 1
ATOM   4 C  \"C1'\" . DA C 2 4 5 6 ? ? 1
ATOM   5 C  CA  . ALA A 1 0 0 0 1 0 2
#
loop_
_other.x
1
";

    #[test]
    fn mmcif_atom_site() {
        let a = parse_mmcif(CIF, Path::new("t.cif")).unwrap();
        assert_eq!(a.len(), 4, "first model only");
        assert_eq!(a[1].pos, [11.639, 6.071, -5.147]);
        assert_eq!(a[2].element, "Fe");
        assert!(a[2].hetatm);
        assert_eq!(a[2].res_seq, None);
        assert_eq!(a[3].name, "C1'");
        assert_eq!(a[3].occupancy, 1.0);
        assert_eq!(a[3].line, 21);
    }

    #[test]
    fn mmcif_errors() {
        let bad = CIF.replace("11.639", "11.6.39");
        let e = parse_mmcif(&bad, Path::new("bad.cif"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.cif") && e.contains("line 19") && e.contains("11.6.39"),
            "{e}"
        );
        let e = parse_mmcif("data_x\nloop_\n_atom_site.id\n1\n", Path::new("m.cif"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.cif") && e.contains("Cartn_x"), "{e}");
        let e = parse_mmcif("data_x\n", Path::new("e.cif"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `_atom_site`"), "{e}");
    }

    #[test]
    fn all_models_and_alt_loc() {
        let m = parse_pdb_models(PDB, Path::new("t.pdb")).unwrap();
        assert_eq!(m.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 1]);
        let t = "MODEL        1\n\
ATOM      1  CA AALA A   1       1.000   2.000   3.000  0.50  0.00           C\n\
ATOM      2  CA BALA A   1       1.100   2.000   3.000  0.50  0.00           C\n\
ENDMDL\nMODEL        2\n\
ATOM      1  CA  ALA A   1       4.000   5.000   6.000  1.00  0.00           C\n\
ENDMDL\n";
        let m = parse_pdb_models(t, Path::new("m.pdb")).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0][0].alt_loc, "A");
        assert_eq!(m[0][1].alt_loc, "B");
        assert_eq!(m[1][0].alt_loc, "");
        assert_eq!(m[1][0].pos, [4.0, 5.0, 6.0]);
        assert_eq!(parse_pdb(t, Path::new("m.pdb")).unwrap().len(), 2);
        let c = parse_mmcif_models(CIF, Path::new("t.cif")).unwrap();
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 1]);
        assert_eq!(c[1][0].pos, [0.0, 0.0, 0.0]);
        // a bad coordinate in a later model is an error for the all-models reader only
        let bad = CIF.replace("ALA A 1 0 0 0 1 0 2", "ALA A 1 0 x 0 1 0 2");
        assert_eq!(parse_mmcif(&bad, Path::new("b.cif")).unwrap().len(), 4);
        let e = parse_mmcif_models(&bad, Path::new("b.cif"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.cif") && e.contains("Cartn_y"), "{e}");
    }

    #[test]
    fn elements() {
        assert_eq!(atomic_number("C"), Some(6));
        assert_eq!(atomic_number("fe"), Some(26));
        assert_eq!(atomic_number("D"), Some(1));
        assert_eq!(atomic_number("Og"), Some(118));
        assert_eq!(atomic_number("Xx"), None);
        assert_eq!(infer_element(" CA ", false), "C");
        assert_eq!(infer_element("CA  ", true), "Ca");
        assert_eq!(infer_element("1HB ", false), "H");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parsers_never_panic(s in "\\PC{0,400}") {
            let _ = parse_pdb(&s, Path::new("f.pdb"));
            let _ = parse_mmcif(&s, Path::new("f.cif"));
        }

        #[test]
        fn parsers_never_panic_on_near_valid(cut in 0usize..900, junk in "[ -~\\n;'\"#é]{0,30}", at in 0usize..900) {
            for base in [PDB, CIF] {
                let mut s: String = base.chars().take(cut).collect();
                let at = at.min(s.chars().count());
                let idx = s.char_indices().nth(at).map_or(s.len(), |(i, _)| i);
                s.insert_str(idx, &junk);
                let _ = parse_pdb(&s, Path::new("f.pdb"));
                let _ = parse_mmcif(&s, Path::new("f.cif"));
            }
        }
    }
}
