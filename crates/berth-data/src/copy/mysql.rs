//! The masker for MySQL/MariaDB dumps (`mariadb-dump`/`mysqldump --complete-insert`).
//!
//! Why the dump's INSERT statements rather than a `--batch` TSV export: the dump carries the
//! schema (DROP/CREATE TABLE, keys, foreign keys) and the data in one stream that the `mariadb`
//! client restores as is, exactly like pg_dump's plain format; a TSV export would need the
//! schema dumped and ordered separately and `LOAD DATA` enabled on the target.
//!
//! `--complete-insert` names the columns in every statement:
//! ``INSERT INTO `users` (`id`, `email`) VALUES (1,'a@b.c'),`` then one `(...)` tuple per line
//! ending in `,` or `;`. Strings are single-quoted with MySQL's escapes (`\0 \' \" \b \n \r
//! \t \Z \\`, and `''`); a raw newline never occurs inside one (the dump escapes it), so the
//! stream is read line by line and a line is split into tuples and values by a small state
//! machine. Unmasked values are copied byte for byte; masked ones are decoded, faked and
//! written back as quoted strings (NULL stays NULL).
//!
//! MySQL commits DDL implicitly, so the restore cannot be one transaction as with PostgreSQL:
//! the dump's `DROP TABLE` would be committed at once, and a berth killed mid-stream would
//! leave the target half restored. So the restore goes into a staging database of its own
//! ([`staging_databases`]) and, only when the dump is complete and every rule matched, its
//! tables replace the target's in one `RENAME TABLE` ([`swap_script`]), which MySQL and
//! MariaDB perform atomically (foreign keys follow the renamed tables). A killed copy leaves
//! the target as it was, plus a staging database the next copy drops. Views and triggers cannot
//! be renamed across databases, so a source with any is refused before anything is written.
//! Everything that would make a copy leak is checked *before* the first byte is written,
//! against the source's `information_schema`: every rule's column must exist, and in strict
//! mode every personal-looking column must have a rule.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use berth_types::MaskRule;

use super::pgcopy::looks_personal;
use super::{CopyError, MaskStats, Masker};

/// Checks the rules against the source's columns (`table -> columns`) before anything is
/// copied: a rule naming a missing column, or (strict) a personal column without a rule.
pub fn preflight(
    masker: &Masker,
    database: &str,
    columns: &BTreeMap<String, Vec<String>>,
) -> Result<(), CopyError> {
    for (col, _) in &masker.rules {
        let schema_ok = col.schema.as_deref().is_none_or(|s| s == database);
        match columns.get(&col.table) {
            Some(cols) if schema_ok && cols.contains(&col.column) => {}
            Some(cols) if schema_ok => {
                return Err(CopyError::NoSuchColumn {
                    column: col.to_string(),
                    found: format!("table `{}` has {}", col.table, cols.join(", ")),
                });
            }
            _ => {
                return Err(CopyError::NoSuchColumn {
                    column: col.to_string(),
                    found: format!(
                        "database `{database}` has no table `{}` (tables: {})",
                        col.table,
                        columns.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
    }
    if masker.strict {
        for (table, cols) in columns {
            for c in cols {
                let ruled = masker
                    .rules
                    .iter()
                    .any(|(r, _)| r.table == *table && r.column == *c);
                if !ruled && looks_personal(c) {
                    return Err(CopyError::Unmasked {
                        column: format!("{database}.{table}.{c}"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The staging database a copy into `target` restores into, and the one the target's replaced
/// tables are moved to during the swap: fixed per target (a killed copy's leftovers are dropped
/// by the next copy into the same target), within MySQL's 64 characters.
pub fn staging_databases(target: &str) -> (String, String) {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(target.as_bytes());
    let hex = hex::encode(&h[..8]);
    (format!("berth_new_{hex}"), format!("berth_old_{hex}"))
}

/// A backticked identifier.
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

/// The swap: the target's tables of the same names move to `old`, the staged ones into the
/// target, all in one `RENAME TABLE` (atomic: all of it or none); then both helper databases
/// are dropped (foreign key checks off: the target's other tables may still point at the
/// replaced ones, as they did when a dump's `DROP TABLE` replaced them).
pub fn swap_script(
    target: &str,
    stage: &str,
    old: &str,
    staged: &[String],
    existing: &[String],
) -> String {
    let (t, s, o) = (quote(target), quote(stage), quote(old));
    let mut pairs = Vec::new();
    for name in staged {
        let n = quote(name);
        if existing.contains(name) {
            pairs.push(format!("{t}.{n} TO {o}.{n}"));
        }
        pairs.push(format!("{s}.{n} TO {t}.{n}"));
    }
    let mut script = format!("CREATE DATABASE {o}; ");
    if !pairs.is_empty() {
        script.push_str(&format!("RENAME TABLE {}; ", pairs.join(", ")));
    }
    script.push_str(&format!(
        "SET FOREIGN_KEY_CHECKS = 0; DROP DATABASE {o}; DROP DATABASE {s}"
    ));
    script
}

struct Insert {
    table: String,
    columns: usize,
    masks: Vec<(usize, MaskRule)>,
}

impl Masker {
    /// Copies a `--complete-insert` dump of database `database` from `input` to `output`,
    /// masking as configured (see the module docs).
    pub fn mask_mysql_dump<R: BufRead, W: Write>(
        &self,
        database: &str,
        mut input: R,
        mut output: W,
    ) -> Result<MaskStats, CopyError> {
        let mut stats = MaskStats::default();
        let mut line = Vec::with_capacity(64 * 1024);
        let mut out = Vec::with_capacity(64 * 1024);
        let mut insert: Option<Insert> = None;
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
            let bad = |reason: &str| CopyError::Dump {
                line: line_no,
                reason: reason.into(),
            };
            let tuples: &[u8] = match &insert {
                None if body.starts_with(b"INSERT INTO `") => {
                    let at = find(body, b") VALUES ").ok_or_else(|| {
                        bad("an INSERT without `) VALUES` (dump it with --complete-insert)")
                    })?;
                    let header = std::str::from_utf8(&body[..=at])
                        .map_err(|_| bad("an INSERT header that is not UTF-8"))?;
                    let (table, columns) = parse_insert_header(header)
                        .ok_or_else(|| bad("cannot read the INSERT header"))?;
                    let masks = self.masks_for(database, &table, &columns)?;
                    let t = stats
                        .tables
                        .entry(format!("{database}.{table}"))
                        .or_default();
                    t.masked = masks
                        .iter()
                        .map(|(i, r)| format!("{}={r}", columns[*i]))
                        .collect();
                    insert = Some(Insert {
                        table: format!("{database}.{table}"),
                        columns: columns.len(),
                        masks,
                    });
                    out.clear();
                    out.extend_from_slice(&body[..at + b") VALUES ".len()]);
                    &body[at + b") VALUES ".len()..]
                }
                None => {
                    output.write_all(&line).map_err(CopyError::RestoreWrite)?;
                    stats.bytes_out += line.len() as u64;
                    continue;
                }
                Some(_) => {
                    out.clear();
                    body
                }
            };
            let ins = insert.as_ref().expect("inside an INSERT");
            let (rows, ended) = self.tuples(ins, tuples, &mut out, &mut stats, line_no)?;
            stats.rows += rows;
            if let Some(t) = stats.tables.get_mut(&ins.table) {
                t.rows += rows;
            }
            out.push(b'\n');
            output.write_all(&out).map_err(CopyError::RestoreWrite)?;
            stats.bytes_out += out.len() as u64;
            if ended {
                insert = None;
                super::pause_point("copy-mid-stream", &mut output);
            }
        }
        if let Some(i) = insert {
            return Err(CopyError::Dump {
                line: line_no,
                reason: format!("the dump ends inside an INSERT into {}", i.table),
            });
        }
        output.flush().map_err(CopyError::RestoreWrite)?;
        Ok(stats)
    }

    fn masks_for(
        &self,
        database: &str,
        table: &str,
        columns: &[String],
    ) -> Result<Vec<(usize, MaskRule)>, CopyError> {
        let mut masks = Vec::new();
        for (col, rule) in &self.rules {
            if col.table != table || col.schema.as_deref().is_some_and(|s| s != database) {
                continue;
            }
            let idx = columns
                .iter()
                .position(|c| *c == col.column)
                .ok_or_else(|| CopyError::NoSuchColumn {
                    column: col.to_string(),
                    found: format!("its INSERT names {}", columns.join(", ")),
                })?;
            if *rule != MaskRule::Keep {
                masks.push((idx, rule.clone()));
            }
        }
        masks.sort_by_key(|(i, _)| *i);
        masks.dedup_by_key(|(i, _)| *i);
        Ok(masks)
    }

    /// Rewrites the tuples on one line into `out`; returns the rows and whether the
    /// statement ended (`;`).
    fn tuples(
        &self,
        ins: &Insert,
        s: &[u8],
        out: &mut Vec<u8>,
        stats: &mut MaskStats,
        line: u64,
    ) -> Result<(u64, bool), CopyError> {
        let bad = |reason: String| CopyError::Dump { line, reason };
        let mut i = 0;
        let mut rows = 0;
        loop {
            if s.get(i) != Some(&b'(') {
                return Err(bad(format!(
                    "expected `(` at byte {i} of a row of {}",
                    ins.table
                )));
            }
            out.push(b'(');
            i += 1;
            let mut col = 0;
            let mut next_mask = 0;
            loop {
                let start = i;
                let quoted = s.get(i) == Some(&b'\'');
                if quoted {
                    i += 1;
                    loop {
                        match s.get(i) {
                            None => {
                                return Err(bad(format!(
                                    "an unterminated string in {}",
                                    ins.table
                                )));
                            }
                            Some(b'\\') => i += 2,
                            Some(b'\'') if s.get(i + 1) == Some(&b'\'') => i += 2,
                            Some(b'\'') => {
                                i += 1;
                                break;
                            }
                            Some(_) => i += 1,
                        }
                    }
                } else {
                    while let Some(&c) = s.get(i) {
                        if c == b',' || c == b')' {
                            break;
                        }
                        i += 1;
                    }
                }
                let raw = s
                    .get(start..i)
                    .ok_or_else(|| bad("a value runs past the line".into()))?;
                let rule = match ins.masks.get(next_mask) {
                    Some((idx, rule)) if *idx == col => {
                        next_mask += 1;
                        Some(rule)
                    }
                    _ => None,
                };
                match rule {
                    Some(rule) if raw != b"NULL" => {
                        let value = if quoted {
                            unescape(&raw[1..raw.len() - 1])
                        } else {
                            raw.to_vec()
                        };
                        stats.masked_cells += 1;
                        match self.fake(rule, &String::from_utf8_lossy(&value)) {
                            Some(v) => {
                                out.push(b'\'');
                                escape(v.as_bytes(), out);
                                out.push(b'\'');
                            }
                            None => out.extend_from_slice(b"NULL"),
                        }
                    }
                    _ => out.extend_from_slice(raw),
                }
                col += 1;
                match s.get(i) {
                    Some(b',') => {
                        out.push(b',');
                        i += 1;
                    }
                    Some(b')') => {
                        out.push(b')');
                        i += 1;
                        break;
                    }
                    _ => return Err(bad(format!("a row of {} ends early", ins.table))),
                }
            }
            if col != ins.columns {
                return Err(bad(format!(
                    "a row of {} has {col} values, its INSERT names {} columns",
                    ins.table, ins.columns
                )));
            }
            rows += 1;
            match s.get(i) {
                Some(b';') if i + 1 == s.len() => {
                    out.push(b';');
                    return Ok((rows, true));
                }
                Some(b',') if i + 1 == s.len() => {
                    out.push(b',');
                    return Ok((rows, false));
                }
                Some(b',') => {
                    out.push(b',');
                    i += 1;
                }
                _ => return Err(bad(format!("unexpected text after a row of {}", ins.table))),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// ``INSERT INTO `t` (`a`, `b``c`)`` -> (table, columns).
pub fn parse_insert_header(h: &str) -> Option<(String, Vec<String>)> {
    let rest = h.strip_prefix("INSERT INTO ")?;
    let (table, rest) = backticked(rest)?;
    let mut rest = rest.strip_prefix(" (")?;
    let mut columns = Vec::new();
    loop {
        let (c, r) = backticked(rest)?;
        columns.push(c);
        if let Some(r) = r.strip_prefix(", ") {
            rest = r;
        } else {
            return (r == ")").then_some((table, columns));
        }
    }
}

fn backticked(s: &str) -> Option<(String, &str)> {
    let q = s.strip_prefix('`')?;
    let mut out = String::new();
    let mut chars = q.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if q[i + 1..].starts_with('`') {
                out.push('`');
                chars.next();
            } else {
                return Some((out, &q[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Decodes the inside of a MySQL string literal.
pub fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' if i + 1 < s.len() => {
                out.extend_from_slice(match s[i + 1] {
                    b'0' => b"\0",
                    b'b' => b"\x08",
                    b'n' => b"\n",
                    b'r' => b"\r",
                    b't' => b"\t",
                    b'Z' => b"\x1a",
                    b'%' => b"\\%",
                    b'_' => b"\\_",
                    _ => &s[i + 1..i + 2],
                });
                i += 2;
            }
            b'\'' if s.get(i + 1) == Some(&b'\'') => {
                out.push(b'\'');
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Encodes bytes for the inside of a MySQL string literal, as `mysql_real_escape_string`.
pub fn escape(s: &[u8], out: &mut Vec<u8>) {
    for &c in s {
        match c {
            0 => out.extend_from_slice(b"\\0"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'"' => out.extend_from_slice(b"\\\""),
            0x1a => out.extend_from_slice(b"\\Z"),
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

    const DUMP: &str = "DROP TABLE IF EXISTS `users`;\n\
        INSERT INTO `users` (`id`, `email`, `note`, `b`) VALUES (1,'Bob@x.org','it\\'s a \\\\ b\tt\\nn ü',0x00FF),\n\
        (2,NULL,'a),(b',NULL),\n\
        (3,'c''q@x.org','',NULL);\n\
        INSERT INTO `orders` (`id`, `email`) VALUES (7,'bob@x.org');\n\
        UNLOCK TABLES;\n";

    fn run(m: &Masker, dump: &str) -> Result<(String, MaskStats), CopyError> {
        let mut out = Vec::new();
        let stats = m.mask_mysql_dump("shop", dump.as_bytes(), &mut out)?;
        Ok((String::from_utf8(out).unwrap(), stats))
    }

    #[test]
    fn masks_the_configured_columns_and_copies_the_rest_byte_for_byte() {
        let m = masker(
            &[("users.email", "email"), ("shop.orders.email", "email")],
            false,
        );
        let (out, stats) = run(&m, DUMP).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "DROP TABLE IF EXISTS `users`;");
        assert!(
            lines[1]
                .starts_with("INSERT INTO `users` (`id`, `email`, `note`, `b`) VALUES (1,'user-")
        );
        assert!(
            lines[1].ends_with("','it\\'s a \\\\ b\tt\\nn ü',0x00FF),"),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2], "(2,NULL,'a),(b',NULL),",
            "NULL stays NULL; quotes respected"
        );
        let fake_bob = &lines[1][lines[1].find("'user-").unwrap()..][..35];
        assert!(
            lines[4].contains(fake_bob),
            "same address, same fake: {}",
            lines[4]
        );
        assert_eq!(lines[5], "UNLOCK TABLES;");
        assert_eq!((stats.rows, stats.masked_cells), (4, 3));
        assert_eq!(stats.tables["shop.users"].masked, vec!["email=email"]);
    }

    #[test]
    fn escapes_round_trip_and_headers_parse() {
        let raw = b"it\\'s \\\\ \\0\\n\\r\\Z\\\"x''y \\% ok";
        let v = unescape(raw);
        assert_eq!(v, b"it's \\ \0\n\r\x1a\"x'y \\% ok");
        let mut e = Vec::new();
        escape(b"a'b\\c\nd\0\x1a\"", &mut e);
        assert_eq!(unescape(&e), b"a'b\\c\nd\0\x1a\"");
        let (t, c) = parse_insert_header("INSERT INTO `my``t` (`a`, `b c`)").unwrap();
        assert_eq!(
            (t.as_str(), c),
            ("my`t", vec!["a".to_string(), "b c".into()])
        );
    }

    #[test]
    fn preflight_names_typos_and_strict_columns_before_anything_is_copied() {
        let cols = BTreeMap::from([(
            "users".to_string(),
            vec!["id".to_string(), "email".into(), "phone".into()],
        )]);
        let e = preflight(&masker(&[("users.emial", "email")], false), "shop", &cols)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("users.emial") && e.contains("id, email, phone"),
            "{e}"
        );
        let e = preflight(
            &masker(&[("other.users.email", "email")], false),
            "shop",
            &cols,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no table"), "{e}");
        let e = preflight(&masker(&[("users.email", "email")], true), "shop", &cols)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shop.users.phone"), "{e}");
        preflight(
            &masker(&[("users.email", "email"), ("users.phone", "keep")], true),
            "shop",
            &cols,
        )
        .unwrap();
    }

    #[test]
    fn the_swap_moves_replaced_tables_aside_in_one_rename() {
        let script = swap_script(
            "shop",
            "berth_new_1",
            "berth_old_1",
            &["users".into(), "or`ders".into()],
            &["users".into(), "other".into()],
        );
        assert_eq!(
            script,
            "CREATE DATABASE `berth_old_1`; RENAME TABLE `shop`.`users` TO `berth_old_1`.`users`, \
             `berth_new_1`.`users` TO `shop`.`users`, `berth_new_1`.`or``ders` TO \
             `shop`.`or``ders`; SET FOREIGN_KEY_CHECKS = 0; DROP DATABASE `berth_old_1`; \
             DROP DATABASE `berth_new_1`"
        );
        let (new, old) = staging_databases(&"x".repeat(64));
        assert!(new.len() <= 64 && old.len() <= 64 && new != old);
    }

    #[test]
    fn malformed_rows_are_errors() {
        let m = masker(&[("users.email", "email")], false);
        let short = "INSERT INTO `users` (`id`, `email`) VALUES (1);\n";
        assert!(run(&m, short).unwrap_err().to_string().contains("1 values"));
        let open = "INSERT INTO `users` (`id`, `email`) VALUES (1,'x'),\n";
        assert!(
            run(&m, open)
                .unwrap_err()
                .to_string()
                .contains("ends inside")
        );
    }
}
