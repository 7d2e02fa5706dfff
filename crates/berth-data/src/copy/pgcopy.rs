//! The masker for PostgreSQL plain-format dumps: rewrites the masked columns of every
//! `COPY ... FROM stdin;` block and passes every other byte through untouched.
//!
//! pg_dump's data rows are in COPY's text format: one row per line, columns separated by a tab,
//! `\N` for NULL, and inside a value a backslash escapes `\b \f \n \r \t \v \\`, octal `\ooo`,
//! hex `\xhh` and any other character as itself. A literal tab or newline inside a value is
//! always escaped, so splitting a line on tab bytes is exact; a block ends with a line `\.`.
//! Only masked cells are decoded and re-encoded: an unmasked cell is copied byte for byte, and
//! a table without masked columns is copied line by line without being split at all.
//!
//! Memory is one line at a time (plus the I/O buffers), whatever the size of the dump.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use berth_types::{ColumnRef, MaskRule};

use super::CopyError;
use super::fake::{self, Hmac};

/// Masking rules with their key, ready to rewrite a dump.
pub struct Masker {
    hmac: Hmac,
    pub(super) rules: Vec<(ColumnRef, MaskRule)>,
    pub(super) strict: bool,
}

/// What the masker saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskStats {
    /// Bytes of dump read.
    pub bytes_in: u64,
    /// Bytes written to the restore.
    pub bytes_out: u64,
    /// Data rows copied, over all tables.
    pub rows: u64,
    /// Cells replaced by a fake (or NULL, or a fixed value).
    pub masked_cells: u64,
    /// Per table with data (`schema.table`): rows, and the masked columns with their rules.
    pub tables: BTreeMap<String, TableStats>,
}

/// One table's share of [`MaskStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Data rows.
    pub rows: u64,
    /// `column=rule` for each masked column.
    pub masked: Vec<String>,
}

/// Column names that look personal, for strict mode: a column whose name has one of these as
/// a `_`-separated word (or is one) needs a rule, even if only `keep`.
const PERSONAL: &[&str] = &[
    "email",
    "mail",
    "phone",
    "mobile",
    "tel",
    "telephone",
    "name",
    "firstname",
    "lastname",
    "surname",
    "fullname",
    "address",
    "street",
    "city",
    "zip",
    "postcode",
    "ssn",
    "birthday",
    "birthdate",
    "dob",
    "iban",
    "passport",
    "ip",
];

/// Whether a column name looks like it holds personal data.
pub fn looks_personal(column: &str) -> bool {
    let lower = column.to_ascii_lowercase();
    lower.split(['_', '-', ' ']).any(|w| PERSONAL.contains(&w))
        || PERSONAL.iter().any(|p| p.len() >= 5 && lower.contains(p))
}

/// Checks the rules against the source's tables (`(schema, table, columns)`, from its catalog)
/// before anything is streamed: every rule must name a column of a table it can mean, and in
/// strict mode every personal-looking column needs a rule. The dump is checked again as it
/// streams; this makes the common mistake fail before the first row leaves the source.
pub fn preflight(
    masker: &Masker,
    tables: &[(String, String, Vec<String>)],
) -> Result<(), CopyError> {
    for (col, _) in &masker.rules {
        let candidates: Vec<&(String, String, Vec<String>)> = tables
            .iter()
            .filter(|(s, t, _)| *t == col.table && col.schema.as_deref().is_none_or(|x| x == s))
            .collect();
        if candidates.is_empty() {
            let mut names: Vec<String> =
                tables.iter().map(|(s, t, _)| format!("{s}.{t}")).collect();
            names.dedup();
            return Err(CopyError::NoSuchColumn {
                column: col.to_string(),
                found: format!(
                    "the source database has no table `{}` (tables: {})",
                    col.schema
                        .as_ref()
                        .map_or(col.table.clone(), |s| format!("{s}.{}", col.table)),
                    names.join(", ")
                ),
            });
        }
        if !candidates
            .iter()
            .any(|(_, _, cols)| cols.contains(&col.column))
        {
            let (s, t, cols) = candidates[0];
            return Err(CopyError::NoSuchColumn {
                column: col.to_string(),
                found: format!(
                    "table `{s}.{t}` of the source database has {}",
                    cols.join(", ")
                ),
            });
        }
    }
    if masker.strict {
        for (schema, table, cols) in tables {
            for c in cols {
                let ruled = masker.rules.iter().any(|(r, _)| {
                    r.table == *table
                        && r.column == *c
                        && r.schema.as_deref().is_none_or(|s| s == schema)
                });
                if !ruled && looks_personal(c) {
                    return Err(CopyError::Unmasked {
                        column: format!("{schema}.{table}.{c}"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The masked columns of one COPY block: column index -> rule, and which rules they are.
struct Block {
    table: String,
    columns: usize,
    masks: Vec<(usize, MaskRule)>,
    rows: u64,
}

impl Masker {
    /// A masker. `key` must be the same for every copy whose outputs must agree.
    pub fn new(key: &[u8], rules: Vec<(ColumnRef, MaskRule)>, strict: bool) -> Self {
        Masker {
            hmac: Hmac::new(key),
            rules,
            strict,
        }
    }

    /// The fake for one decoded value; `None` means NULL.
    pub fn fake(&self, rule: &MaskRule, value: &str) -> Option<String> {
        Some(match rule {
            MaskRule::Email => fake::email(&self.hmac, value),
            MaskRule::Name => fake::name(&self.hmac, value),
            MaskRule::Phone => fake::digits(&self.hmac, "phone", value),
            MaskRule::Digits => fake::digits(&self.hmac, "digits", value),
            MaskRule::Text => fake::text(&self.hmac, value),
            MaskRule::Fixed(v) => v.clone(),
            MaskRule::Null => return None,
            MaskRule::Keep => value.to_string(),
        })
    }

    /// Copies a plain-format dump from `input` to `output`, masking as configured. Fails on a
    /// configured column missing from its table, on a rule that matched no table of the dump
    /// (checked at the end: the caller must not commit the restore then), on a malformed row
    /// and, in strict mode, on a personal-looking column without a rule.
    pub fn mask_dump<R: BufRead, W: Write>(
        &self,
        mut input: R,
        mut output: W,
    ) -> Result<MaskStats, CopyError> {
        let mut stats = MaskStats::default();
        let mut used = vec![false; self.rules.len()];
        // Columns seen per table name, for the suggestion when a rule matched nothing.
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut line = Vec::with_capacity(64 * 1024);
        let mut cell = Vec::new();
        let mut block: Option<Block> = None;
        let mut line_no = 0u64;
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .map_err(CopyError::DumpRead)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            stats.bytes_in += n as u64;
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            match &mut block {
                None => {
                    if body.starts_with(b"COPY ") && body.ends_with(b" FROM stdin;") {
                        let header = std::str::from_utf8(body).map_err(|_| CopyError::Dump {
                            line: line_no,
                            reason: "a COPY header that is not UTF-8".into(),
                        })?;
                        let (schema, table, columns) =
                            parse_copy_header(header).ok_or_else(|| CopyError::Dump {
                                line: line_no,
                                reason: format!("cannot read the COPY header `{header}`"),
                            })?;
                        seen.entry(table.clone())
                            .or_default()
                            .extend(columns.iter().cloned());
                        let b = self.block(&schema, &table, &columns, &mut used)?;
                        stats.tables.entry(b.table.clone()).or_default().masked = b
                            .masks
                            .iter()
                            .map(|(i, r)| format!("{}={r}", columns[*i]))
                            .collect();
                        block = Some(b);
                    }
                    output.write_all(&line).map_err(CopyError::RestoreWrite)?;
                    stats.bytes_out += line.len() as u64;
                }
                Some(b) => {
                    if body == b"\\." {
                        if let Some(t) = stats.tables.get_mut(&b.table) {
                            t.rows += b.rows;
                        }
                        block = None;
                        output.write_all(&line).map_err(CopyError::RestoreWrite)?;
                        stats.bytes_out += line.len() as u64;
                        super::pause_point("copy-mid-stream", &mut output);
                        continue;
                    }
                    stats.rows += 1;
                    b.rows += 1;
                    if b.masks.is_empty() {
                        output.write_all(&line).map_err(CopyError::RestoreWrite)?;
                        stats.bytes_out += line.len() as u64;
                        continue;
                    }
                    let mut fields = 0usize;
                    let mut next_mask = 0usize;
                    let mut written = 0u64;
                    for (i, field) in body.split(|c| *c == b'\t').enumerate() {
                        fields += 1;
                        if i > 0 {
                            output.write_all(b"\t").map_err(CopyError::RestoreWrite)?;
                            written += 1;
                        }
                        let rule = match b.masks.get(next_mask) {
                            Some((idx, rule)) if *idx == i => {
                                next_mask += 1;
                                Some(rule)
                            }
                            _ => None,
                        };
                        let out: &[u8] = match rule {
                            Some(rule) if field != b"\\N" => {
                                let value = decode(field, line_no)?;
                                stats.masked_cells += 1;
                                cell.clear();
                                match self.fake(rule, &String::from_utf8_lossy(&value)) {
                                    Some(v) => encode(v.as_bytes(), &mut cell),
                                    None => cell.extend_from_slice(b"\\N"),
                                }
                                &cell
                            }
                            _ => field,
                        };
                        output.write_all(out).map_err(CopyError::RestoreWrite)?;
                        written += out.len() as u64;
                    }
                    if fields != b.columns {
                        return Err(CopyError::Dump {
                            line: line_no,
                            reason: format!(
                                "a row of {} has {fields} fields, its COPY header {} columns",
                                b.table, b.columns
                            ),
                        });
                    }
                    output.write_all(b"\n").map_err(CopyError::RestoreWrite)?;
                    stats.bytes_out += written + 1;
                }
            }
        }
        if let Some(b) = block {
            return Err(CopyError::Dump {
                line: line_no,
                reason: format!("the dump ends inside the data of {}", b.table),
            });
        }
        if let Some(i) = used.iter().position(|u| !u) {
            let rule = &self.rules[i].0;
            return Err(CopyError::NoSuchColumn {
                column: rule.to_string(),
                found: match seen.get(&rule.table) {
                    Some(cols) => {
                        let mut cols = cols.clone();
                        cols.sort();
                        cols.dedup();
                        format!("table `{}` has {}", rule.table, cols.join(", "))
                    }
                    None => format!(
                        "no table `{}` has data in the dump (tables with data: {})",
                        rule.table,
                        seen.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                },
            });
        }
        output.flush().map_err(CopyError::RestoreWrite)?;
        Ok(stats)
    }

    /// The masked columns of the table a COPY header names; marks the rules that matched.
    fn block(
        &self,
        schema: &str,
        table: &str,
        columns: &[String],
        used: &mut [bool],
    ) -> Result<Block, CopyError> {
        let mut masks = Vec::new();
        for (i, (col, rule)) in self.rules.iter().enumerate() {
            if col.table != table || col.schema.as_deref().is_some_and(|s| s != schema) {
                continue;
            }
            match columns.iter().position(|c| *c == col.column) {
                Some(idx) => {
                    used[i] = true;
                    if *rule != MaskRule::Keep {
                        masks.push((idx, rule.clone()));
                    }
                }
                // With the schema given there is exactly one table it can mean: fail now,
                // before any of its rows are copied.
                None if col.schema.is_some() => {
                    return Err(CopyError::NoSuchColumn {
                        column: col.to_string(),
                        found: format!("table `{schema}.{table}` has {}", columns.join(", ")),
                    });
                }
                None => {}
            }
        }
        if self.strict {
            for (idx, c) in columns.iter().enumerate() {
                let ruled = self.rules.iter().any(|(r, _)| {
                    r.table == table
                        && r.column == *c
                        && r.schema.as_deref().is_none_or(|s| s == schema)
                });
                if !ruled && looks_personal(c) {
                    return Err(CopyError::Unmasked {
                        column: format!("{schema}.{table}.{c}"),
                    });
                }
                let _ = idx;
            }
        }
        masks.sort_by_key(|(i, _)| *i);
        masks.dedup_by_key(|(i, _)| *i);
        Ok(Block {
            table: format!("{schema}.{table}"),
            columns: columns.len(),
            masks,
            rows: 0,
        })
    }
}

/// Reads `COPY schema.table (a, "B c") FROM stdin;` into (schema, table, columns), identifiers
/// unquoted. pg_dump always qualifies the table with its schema.
pub fn parse_copy_header(line: &str) -> Option<(String, String, Vec<String>)> {
    let rest = line.strip_prefix("COPY ")?.strip_suffix(" FROM stdin;")?;
    let (schema, rest) = ident(rest)?;
    let rest = rest.strip_prefix('.')?;
    let (table, rest) = ident(rest)?;
    let rest = rest.trim_start();
    let mut columns = Vec::new();
    if rest.is_empty() {
        return Some((schema, table, columns));
    }
    let mut rest = rest.strip_prefix('(')?;
    loop {
        let (c, r) = ident(rest.trim_start())?;
        columns.push(c);
        let r = r.trim_start();
        if let Some(r) = r.strip_prefix(',') {
            rest = r;
        } else {
            return if r == ")" {
                Some((schema, table, columns))
            } else {
                None
            };
        }
    }
}

/// One identifier, quoted (`"a ""b"""`) or bare, and what follows it.
fn ident(s: &str) -> Option<(String, &str)> {
    if let Some(q) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if q[i + 1..].starts_with('"') {
                    out.push('"');
                    chars.next();
                } else {
                    return Some((out, &q[i + 1..]));
                }
            } else {
                out.push(c);
            }
        }
        None
    } else {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_string(), &s[end..]))
    }
}

/// Decodes one COPY text-format cell (not `\N`).
pub fn decode(field: &[u8], line: u64) -> Result<Vec<u8>, CopyError> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let c = field[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = field.get(i) else {
            return Err(CopyError::Dump {
                line,
                reason: "a value ends in a lone backslash".into(),
            });
        };
        i += 1;
        match e {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' if field.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match field.get(i) {
                        Some(d) if d.is_ascii_hexdigit() => {
                            v = v * 16 + (*d as char).to_digit(16).expect("hex digit");
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Encodes a value as a COPY text-format cell, the way PostgreSQL itself writes one.
pub fn encode(value: &[u8], out: &mut Vec<u8>) {
    for &c in value {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            11 => out.extend_from_slice(b"\\v"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(rules: &[(&str, &str)], strict: bool) -> Masker {
        Masker::new(
            b"test-key-test-key",
            rules
                .iter()
                .map(|(c, r)| (c.parse().unwrap(), r.parse().unwrap()))
                .collect(),
            strict,
        )
    }

    fn run(m: &Masker, dump: &str) -> Result<(String, MaskStats), CopyError> {
        let mut out = Vec::new();
        let stats = m.mask_dump(dump.as_bytes(), &mut out)?;
        Ok((String::from_utf8(out).unwrap(), stats))
    }

    const DUMP: &str = "SET x = 1;\n\
        COPY public.users (id, email, note) FROM stdin;\n\
        1\tBob@x.org\ta\\tb\\\\c\\nd\n\
        2\t\\N\tplain\n\
        \\.\n\
        COPY public.orders (id, email) FROM stdin;\n\
        7\tbob@x.org\n\
        \\.\n\
        SELECT 1;\n";

    #[test]
    fn masks_only_the_configured_columns_and_keeps_the_rest_byte_for_byte() {
        let m = masker(
            &[("users.email", "email"), ("orders.email", "email")],
            false,
        );
        let (out, stats) = run(&m, DUMP).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "SET x = 1;");
        let row: Vec<&str> = lines[2].split('\t').collect();
        assert_eq!(row[0], "1");
        assert!(row[1].starts_with("user-"));
        assert_eq!(row[2], "a\\tb\\\\c\\nd", "unmasked cell untouched");
        assert_eq!(lines[3], "2\t\\N\tplain", "NULL stays NULL");
        let order: Vec<&str> = lines[6].split('\t').collect();
        assert_eq!(order[1], row[1], "same address, same fake, across tables");
        assert_eq!(lines[8], "SELECT 1;");
        assert_eq!((stats.rows, stats.masked_cells), (3, 2));
        assert_eq!(stats.tables["public.users"].masked, vec!["email=email"]);
        assert_eq!(stats.bytes_in, DUMP.len() as u64);
        assert_eq!(stats.bytes_out, out.len() as u64);
    }

    #[test]
    fn a_typo_in_a_rule_is_an_error_naming_it() {
        let m = masker(&[("users.emial", "email")], false);
        let e = run(&m, DUMP).unwrap_err().to_string();
        assert!(
            e.contains("users.emial") && e.contains("email, id, note"),
            "{e}"
        );
        let m = masker(&[("public.users.emial", "email")], false);
        let e = run(&m, DUMP).unwrap_err().to_string();
        assert!(e.contains("public.users.emial"), "{e}");
        let m = masker(&[("user.email", "email")], false);
        let e = run(&m, DUMP).unwrap_err().to_string();
        assert!(
            e.contains("no table `user`") && e.contains("orders, users"),
            "{e}"
        );
    }

    #[test]
    fn preflight_names_a_missing_column_with_the_columns_the_source_has() {
        let tables = vec![
            (
                "public".to_string(),
                "users".to_string(),
                vec!["id".to_string(), "email".into()],
            ),
            (
                "audit".to_string(),
                "users".to_string(),
                vec!["id".to_string()],
            ),
        ];
        let e = preflight(&masker(&[("users.emial", "email")], false), &tables)
            .unwrap_err()
            .to_string();
        assert!(e.contains("users.emial") && e.contains("id, email"), "{e}");
        let e = preflight(&masker(&[("user.email", "email")], false), &tables)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no table `user`") && e.contains("public.users"),
            "{e}"
        );
        let e = preflight(&masker(&[("audit.users.email", "email")], false), &tables)
            .unwrap_err()
            .to_string();
        assert!(e.contains("audit.users") && e.contains("has id"), "{e}");
        preflight(&masker(&[("users.email", "email")], false), &tables).unwrap();
        let e = preflight(&masker(&[], true), &tables)
            .unwrap_err()
            .to_string();
        assert!(e.contains("public.users.email"), "{e}");
    }

    #[test]
    fn strict_mode_refuses_personal_columns_without_a_rule() {
        let m = masker(&[("users.email", "email")], true);
        let e = run(&m, DUMP).unwrap_err().to_string();
        assert!(e.contains("public.orders.email"), "{e}");
        let m = masker(&[("users.email", "email"), ("orders.email", "keep")], true);
        let (out, _) = run(&m, DUMP).unwrap();
        assert!(out.contains("7\tbob@x.org\n"), "keep copies unchanged");
        assert!(looks_personal("first_name") && looks_personal("customerEmail"));
        assert!(!looks_personal("id") && !looks_personal("created_at"));
    }

    #[test]
    fn rows_with_the_wrong_width_and_truncated_dumps_are_errors() {
        let m = masker(&[("users.email", "email")], false);
        let bad = "COPY public.users (id, email, note) FROM stdin;\n1\tx\n\\.\n";
        assert!(run(&m, bad).unwrap_err().to_string().contains("line 2"));
        let cut = "COPY public.users (id, email, note) FROM stdin;\n1\tx\ty\n";
        assert!(
            run(&m, cut)
                .unwrap_err()
                .to_string()
                .contains("ends inside")
        );
    }

    #[test]
    fn null_and_fixed_rules() {
        let m = masker(
            &[("users.email", "null"), ("users.note", "fixed:a\tb")],
            false,
        );
        let (out, _) = run(&m, DUMP).unwrap();
        assert!(out.contains("1\t\\N\ta\\tb\n"), "{out}");
    }

    #[test]
    fn headers_with_quoted_identifiers() {
        let h = r#"COPY "My Schema"."Order ""Items""" ("Id", note, "a,b") FROM stdin;"#;
        let (s, t, c) = parse_copy_header(h).unwrap();
        assert_eq!((s.as_str(), t.as_str()), ("My Schema", "Order \"Items\""));
        assert_eq!(c, vec!["Id", "note", "a,b"]);
        let (_, t, c) = parse_copy_header("COPY public.empty  FROM stdin;").unwrap();
        assert_eq!((t.as_str(), c.len()), ("empty", 0));
        assert!(parse_copy_header("COPY public.t (a FROM stdin;").is_none());
    }

    #[test]
    fn escapes_decode_and_encode_like_postgres() {
        let d = decode(br"a\tb\\c\nd\101\x42\q\7", 1).unwrap();
        assert_eq!(d, b"a\tb\\c\ndABq\x07");
        let mut e = Vec::new();
        encode("tab\tnl\ncr\rbs\\ü".as_bytes(), &mut e);
        assert_eq!(e, "tab\\tnl\\ncr\\rbs\\\\ü".as_bytes());
        assert_eq!(decode(&e, 1).unwrap(), "tab\tnl\ncr\rbs\\ü".as_bytes());
        assert!(decode(b"a\\", 1).is_err());
    }
}
