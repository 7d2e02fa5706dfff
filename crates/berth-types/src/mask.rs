//! Masking rules for logical data copies: which column becomes what kind of fake value.
//!
//! Shared by `berth-config` (the `mask:` map of an environment's `data.copy`) and `berth-data`
//! (which applies them), so both spell the rules the same way.

use std::fmt;
use std::str::FromStr;

/// What a masked column becomes. Every rule except `keep` replaces the value; the fakes are
/// deterministic per input and key (see `berth-data`), so equal inputs mask alike everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskRule {
    /// `user-<hex>@example.com`, the same for the same address (case-insensitive).
    Email,
    /// A plausible "First Last".
    Name,
    /// Digits replaced, the rest of the shape (`+`, spaces, dashes) kept.
    Phone,
    /// Digits replaced, everything else kept (IDs, card or account numbers).
    Digits,
    /// Letters and digits replaced, whitespace and punctuation kept.
    Text,
    /// This value in every row.
    Fixed(String),
    /// SQL NULL in every row.
    Null,
    /// Copied unchanged: says "looked at, not personal" for the strict check.
    Keep,
}

/// The rule names, for error messages and suggestions.
pub const MASK_RULE_NAMES: &[&str] = &[
    "email",
    "name",
    "phone",
    "digits",
    "text",
    "fixed:VALUE",
    "null",
    "keep",
];

/// A rule string that names no rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown masking rule `{0}`; the rules are email, name, phone, digits, text, fixed:VALUE, null and keep"
)]
pub struct MaskRuleError(pub String);

impl FromStr for MaskRule {
    type Err = MaskRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "email" => MaskRule::Email,
            "name" => MaskRule::Name,
            "phone" => MaskRule::Phone,
            "digits" => MaskRule::Digits,
            "text" => MaskRule::Text,
            "null" => MaskRule::Null,
            "keep" => MaskRule::Keep,
            _ => match s.strip_prefix("fixed:") {
                Some(v) => MaskRule::Fixed(v.to_string()),
                None => return Err(MaskRuleError(s.to_string())),
            },
        })
    }
}

impl fmt::Display for MaskRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskRule::Email => f.write_str("email"),
            MaskRule::Name => f.write_str("name"),
            MaskRule::Phone => f.write_str("phone"),
            MaskRule::Digits => f.write_str("digits"),
            MaskRule::Text => f.write_str("text"),
            MaskRule::Fixed(v) => write!(f, "fixed:{v}"),
            MaskRule::Null => f.write_str("null"),
            MaskRule::Keep => f.write_str("keep"),
        }
    }
}

/// A column a rule applies to: `table.column` (that table in any schema) or
/// `schema.table.column`. Names are compared as PostgreSQL/MySQL print them unquoted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnRef {
    /// The schema (or MySQL database), when given.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
}

/// A column reference that is not `table.column` or `schema.table.column`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a column: write `table.column` or `schema.table.column`")]
pub struct ColumnRefError(pub String);

impl FromStr for ColumnRef {
    type Err = ColumnRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.iter().any(|p| p.is_empty() || p.trim() != *p) {
            return Err(ColumnRefError(s.to_string()));
        }
        match parts.as_slice() {
            [t, c] => Ok(ColumnRef {
                schema: None,
                table: t.to_string(),
                column: c.to_string(),
            }),
            [s, t, c] => Ok(ColumnRef {
                schema: Some(s.to_string()),
                table: t.to_string(),
                column: c.to_string(),
            }),
            _ => Err(ColumnRefError(s.to_string())),
        }
    }
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}.{}", self.table, self.column),
            None => write!(f, "{}.{}", self.table, self.column),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip() {
        for s in [
            "email",
            "name",
            "phone",
            "digits",
            "text",
            "null",
            "keep",
            "fixed:a:b",
            "fixed:",
        ] {
            assert_eq!(s.parse::<MaskRule>().unwrap().to_string(), s);
        }
        assert!("Email".parse::<MaskRule>().is_err());
    }

    #[test]
    fn column_refs_have_two_or_three_parts() {
        let c: ColumnRef = "users.email".parse().unwrap();
        assert_eq!(
            (c.schema, c.table.as_str(), c.column.as_str()),
            (None, "users", "email")
        );
        let c: ColumnRef = "app.users.email".parse().unwrap();
        assert_eq!(c.schema.as_deref(), Some("app"));
        for bad in ["email", "a..b", "a.b.c.d", ".a", "a. b"] {
            assert!(bad.parse::<ColumnRef>().is_err(), "{bad}");
        }
    }
}
