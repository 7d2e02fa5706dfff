//! `environments[].data`: where an environment's data comes from before each deploy.
//!
//! ```yaml
//! environments:
//!   - name: staging
//!     namespace: staging
//!     data:
//!       clone: { from: production, pvcs: [mongo-data], keep: 3 }   # CSI snapshots
//!       copy:                                                      # masked logical copy
//!         from: production
//!         source-url-env: PROD_DB_URL
//!         target-url-env: STAGING_DB_URL
//!         strict: true
//!         mask: { users.email: email, users.name: name, users.phone: phone }
//! ```
//!
//! The raw serde types, the checked model and the checks live here together, apart from the
//! rest of the file's model, because they change for their own reasons.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_types::{ColumnRef, MaskRule, mask::MASK_RULE_NAMES};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::suggest::suggest;
use crate::validate::Checker;
use crate::{Location, Problem};

/// Where this environment's data comes from; done by `berth run` before the deploy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "Data")]
pub(crate) struct RawData {
    /// Clone PersistentVolumeClaims of another environment through CSI snapshots.
    #[schemars(with = "Option<RawClone>")]
    #[schemars(example = serde_json::json!({"from": "production", "pvcs": ["db-data"]}))]
    pub clone: Option<Spanned<RawClone>>,
    /// Copy another environment's database with masking (PostgreSQL, MySQL/MariaDB).
    #[schemars(with = "Option<RawCopy>")]
    #[schemars(example = serde_json::json!({"from": "production", "source-url-env": "PROD_DATABASE_URL", "target-url-env": "STAGING_DATABASE_URL"}))]
    pub copy: Option<Spanned<RawCopy>>,
}

/// A volume clone.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "DataClone")]
pub(crate) struct RawClone {
    /// The environment whose claims are cloned.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("production"))]
    pub from: Spanned<String>,
    /// The claims, by name.
    #[serde(default)]
    #[schemars(example = serde_json::json!(["db-data"]))]
    pub pvcs: Vec<String>,
    /// Or the claims matching this label selector (e.g. `app=db`).
    #[schemars(example = serde_json::json!("app=db"))]
    pub selector: Option<String>,
    /// Keep only the newest N snapshots per claim (N >= 1). Default: keep all.
    #[schemars(with = "Option<u32>")]
    #[schemars(example = serde_json::json!(3))]
    #[schemars(extend("x-wrong" = "0"))]
    pub keep: Option<Spanned<u32>>,
    /// The VolumeSnapshotClass (default: chosen by the claim's provisioner).
    #[schemars(example = serde_json::json!("csi-hostpath-snapclass"))]
    pub snapshot_class: Option<String>,
    /// Deadline for the clone (default 10m).
    #[schemars(with = "Option<String>")]
    #[schemars(example = serde_json::json!("20m"))]
    #[schemars(extend("x-wrong" = "soon"))]
    pub timeout: Option<Spanned<String>>,
}

/// A masked logical copy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(rename = "DataCopy")]
pub(crate) struct RawCopy {
    /// The environment whose database is copied (for the record; the URL says where it is).
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("production"))]
    pub from: Spanned<String>,
    /// The environment variable holding the source database URL.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("PROD_DATABASE_URL"))]
    pub source_url_env: Spanned<String>,
    /// The environment variable holding the target database URL.
    #[schemars(with = "String")]
    #[schemars(example = serde_json::json!("STAGING_DATABASE_URL"))]
    pub target_url_env: Spanned<String>,
    /// `table.column` (or `schema.table.column`) -> rule: email, name, phone, digits, text,
    /// fixed:VALUE, null or keep.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    #[schemars(example = serde_json::json!({"users.email": "email", "users.name": "name", "payments.card": "digits"}))]
    #[schemars(extend("x-wrong" = "{users.email: scramble}"))]
    pub mask: BTreeMap<String, Spanned<String>>,
    /// Refuse columns that look personal (email, phone, name, ...) without a rule.
    #[serde(default)]
    #[schemars(example = serde_json::json!(true))]
    pub strict: bool,
}

/// The checked `data` of an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataStep {
    /// The volume clone, if any.
    pub clone: Option<CloneStep>,
    /// The logical copy, if any.
    pub copy: Option<CopyStep>,
}

/// A checked `data.clone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneStep {
    /// The source environment's name.
    pub from: String,
    /// Its namespace.
    pub from_namespace: String,
    /// Claims by name (empty when `selector` is set).
    pub pvcs: Vec<String>,
    /// Claims by label selector.
    pub selector: Option<String>,
    /// Snapshots kept per claim.
    pub keep: Option<u32>,
    /// The VolumeSnapshotClass.
    pub snapshot_class: Option<String>,
    /// Deadline.
    pub timeout: Duration,
}

/// A checked `data.copy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStep {
    /// The source environment's name.
    pub from: String,
    /// The variable with the source URL.
    pub source_url_env: String,
    /// The variable with the target URL.
    pub target_url_env: String,
    /// The rules, in column order.
    pub mask: Vec<MaskColumn>,
    /// Strict mode.
    pub strict: bool,
}

/// One masking rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskColumn {
    /// The column.
    pub column: ColumnRef,
    /// The rule.
    pub rule: MaskRule,
}

/// Whether `s` can name an environment variable (letters, digits, `_`; no leading digit).
pub(crate) fn is_env_var(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Checker<'_> {
    /// Checks `data` of environment `env`; `namespaces` maps environment names to namespaces.
    pub(crate) fn data(
        &mut self,
        env: &str,
        raw: Spanned<RawData>,
        namespaces: &BTreeMap<String, String>,
    ) -> Option<DataStep> {
        let at = Location::of(&raw);
        let raw = raw.value;
        if raw.clone.is_none() && raw.copy.is_none() {
            self.report(at, Problem::EmptyData);
            return None;
        }
        let from = |this: &mut Self, f: &Spanned<String>| -> String {
            if f.value == env || !namespaces.contains_key(&f.value) {
                let others = namespaces.keys().filter(|n| *n != env).map(String::as_str);
                this.report(
                    Location::of(f),
                    Problem::UnknownEnvironment {
                        name: f.value.clone(),
                        suggestion: suggest(&f.value, others),
                    },
                );
            }
            f.value.clone()
        };
        let clone = raw.clone.map(|c| {
            let c_at = Location::of(&c);
            let c = c.value;
            let name = from(self, &c.from);
            if c.pvcs.is_empty() == c.selector.is_none() {
                self.report(c_at, Problem::ClonePvcs);
            }
            if let Some(k) = &c.keep
                && k.value == 0
            {
                self.report(Location::of(k), Problem::InvalidKeep);
            }
            let timeout = c
                .timeout
                .as_ref()
                .and_then(|t| self.duration(t))
                .unwrap_or(Duration::from_secs(600));
            CloneStep {
                from_namespace: namespaces.get(&name).cloned().unwrap_or_default(),
                from: name,
                pvcs: c.pvcs,
                selector: c.selector,
                keep: c.keep.map(|k| k.value),
                snapshot_class: c.snapshot_class,
                timeout,
            }
        });
        let copy = raw.copy.map(|c| {
            let c = c.value;
            let name = from(self, &c.from);
            for v in [&c.source_url_env, &c.target_url_env] {
                if !is_env_var(&v.value) {
                    self.report(
                        Location::of(v),
                        Problem::InvalidEnvVar {
                            value: v.value.clone(),
                        },
                    );
                }
            }
            let mut mask = Vec::new();
            for (column, rule) in &c.mask {
                let col = match column.parse::<ColumnRef>() {
                    Ok(col) => Some(col),
                    Err(_) => {
                        self.report(
                            Location::of(rule),
                            Problem::InvalidMaskColumn {
                                column: column.clone(),
                            },
                        );
                        None
                    }
                };
                let parsed = match rule.value.parse::<MaskRule>() {
                    Ok(r) => Some(r),
                    Err(_) => {
                        let names = MASK_RULE_NAMES.iter().map(|n| n.trim_end_matches("VALUE"));
                        self.report(
                            Location::of(rule),
                            Problem::UnknownValue {
                                value: rule.value.clone(),
                                expected: MASK_RULE_NAMES.iter().map(|s| s.to_string()).collect(),
                                suggestion: suggest(&rule.value, names),
                            },
                        );
                        None
                    }
                };
                if let (Some(column), Some(rule)) = (col, parsed) {
                    mask.push(MaskColumn { column, rule });
                }
            }
            CopyStep {
                from: name,
                source_url_env: c.source_url_env.value,
                target_url_env: c.target_url_env.value,
                mask,
                strict: c.strict,
            }
        });
        Some(DataStep { clone, copy })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use berth_types::MaskRule;

    use crate::{Location, Problem, parse};

    const HEAD: &str = "services:\n  - name: web\n    image: registry.example.com/web:1\nenvironments:\n  - name: production\n    namespace: prod\n  - name: staging\n    namespace: staging\n";

    fn errors(tail: &str) -> Vec<(Location, Problem, String)> {
        crate::tests::errors(&format!("{HEAD}{tail}"))
    }

    #[test]
    fn a_full_data_step_parses() {
        let yaml = format!(
            "{HEAD}    data:\n      clone: {{ from: production, pvcs: [mongo-data], keep: 3 }}\n      copy:\n        from: production\n        source-url-env: PROD_DB_URL\n        target-url-env: STAGING_DB_URL\n        strict: true\n        mask:\n          users.email: email\n          public.users.note: \"fixed:redacted\"\n"
        );
        let config = parse(&yaml, "berth.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        let data = config.environments[1].data.clone().unwrap();
        let clone = data.clone.unwrap();
        assert_eq!(
            (clone.from_namespace.as_str(), clone.keep),
            ("prod", Some(3))
        );
        assert_eq!(clone.pvcs, vec!["mongo-data"]);
        let copy = data.copy.unwrap();
        assert_eq!(copy.source_url_env, "PROD_DB_URL");
        assert!(copy.strict);
        assert_eq!(copy.mask.len(), 2);
        assert_eq!(copy.mask[0].column.to_string(), "public.users.note");
        assert_eq!(copy.mask[0].rule, MaskRule::Fixed("redacted".into()));
        assert!(config.environments[0].data.is_none());
    }

    #[test]
    fn a_misspelt_rule_points_at_it_with_a_suggestion() {
        let all = errors(
            "    data:\n      copy:\n        from: production\n        source-url-env: A\n        target-url-env: B\n        mask:\n          users.email: emial\n",
        );
        assert_eq!(all.len(), 1, "{all:#?}");
        assert_eq!(all[0].0, Location::new(15, 24));
        assert!(all[0].2.contains("did you mean `email`?"), "{}", all[0].2);
    }

    #[test]
    fn bad_columns_sources_and_variables_are_each_reported() {
        let all = errors(
            "    data:\n      copy:\n        from: prodution\n        source-url-env: postgres://x\n        target-url-env: B\n        mask:\n          email: email\n      clone: { from: production, keep: 0 }\n",
        );
        let problems: Vec<&Problem> = all.iter().map(|(_, p, _)| p).collect();
        assert!(
            matches!(problems[0], Problem::UnknownEnvironment { suggestion: Some(s), .. } if s == "production")
        );
        assert!(matches!(problems[1], Problem::InvalidEnvVar { .. }));
        assert!(matches!(problems[2], Problem::InvalidMaskColumn { .. }));
        assert!(problems.contains(&&Problem::ClonePvcs));
        assert!(problems.contains(&&Problem::InvalidKeep));
        assert_eq!(all[0].0, Location::new(11, 15));
    }

    #[test]
    fn the_schema_describes_the_data_step() {
        let schema = crate::json_schema();
        let defs = &schema["$defs"];
        assert!(defs["Environment"]["properties"]["data"].is_object());
        let copy = &defs["DataCopy"];
        assert_eq!(copy["additionalProperties"], false);
        let mut required: Vec<&str> = copy["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        required.sort();
        assert_eq!(required, ["from", "source-url-env", "target-url-env"]);
        assert!(defs["DataClone"]["properties"]["keep"].is_object());
    }

    #[test]
    fn unknown_keys_and_empty_steps() {
        let all = errors("    data:\n      clones: {}\n");
        assert!(all[0].2.contains("did you mean `clone`?"), "{}", all[0].2);
        let all = errors("    data: {}\n");
        assert_eq!(all[0].1, Problem::EmptyData);
        let all = errors(
            "    data:\n      copy: { from: staging, source-url-env: A, target-url-env: B }\n",
        );
        assert!(matches!(&all[0].1, Problem::UnknownEnvironment { name, .. } if name == "staging"));
    }
}
