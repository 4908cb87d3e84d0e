//! `/etc/rancher/k3s/config.yaml`, then `config.yaml.d/*.yaml` in name order, as k3s reads
//! them (as shared/reference/k3s.md sums up the docs; k3s's `pkg/configfilearg` was not read
//! for this): keys are the flags without dashes, a later file's
//! value replaces an earlier one, and a key ending in `+` appends to a list. Only what piimg
//! writes is understood: top-level scalars (plain or double-quoted) and block lists.

use std::collections::BTreeMap;
use std::path::Path;

/// The merged configuration: every key's values (one for a scalar).
#[derive(Debug, Default)]
pub struct Config {
    values: BTreeMap<String, Vec<String>>,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.starts_with('"') {
        // piimg writes JSON strings, which are valid YAML double-quoted scalars.
        serde_json::from_str::<String>(v).unwrap_or_else(|_| v.trim_matches('"').to_string())
    } else {
        v.trim_matches('\'').to_string()
    }
}

impl Config {
    fn merge_text(&mut self, text: &str) {
        let mut current: Option<String> = None;
        for line in text.lines() {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('-') {
                if let (Some(key), Some(item)) = (&current, line.trim().strip_prefix('-')) {
                    self.values
                        .entry(key.clone())
                        .or_default()
                        .push(unquote(item));
                }
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, append) = match key.trim().strip_suffix('+') {
                Some(k) => (k.to_string(), true),
                None => (key.trim().to_string(), false),
            };
            if !append {
                self.values.remove(&key);
            }
            let value = value.trim();
            if value.is_empty() {
                current = Some(key);
            } else {
                current = None;
                let items: Vec<String> =
                    match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                        Some(inner) => inner
                            .split(',')
                            .map(unquote)
                            .filter(|s| !s.is_empty())
                            .collect(),
                        None => vec![unquote(value)],
                    };
                self.values.entry(key).or_default().extend(items);
            }
        }
    }

    /// Reads `path` and the `.yaml` files of `path.d/`.
    pub fn load(path: &Path) -> Result<Config, String> {
        let mut c = Config::default();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        c.merge_text(&text);
        let dir = path.with_extension("yaml.d");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut files: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for f in files {
                let text =
                    std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                c.merge_text(&text);
            }
        }
        Ok(c)
    }

    /// A scalar (the last value given).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key)?.last().map(String::as_str)
    }

    /// A list (empty if not given).
    pub fn list(&self, key: &str) -> &[String] {
        self.values.get(key).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_lists_and_appends() {
        let mut c = Config::default();
        c.merge_text(
            "# c\ntoken: \"a\\\"b\"\nnode-name: cp\ntls-san:\n  - \"x.example\"\n  - 10.0.0.1\n",
        );
        c.merge_text("tls-san+: [y]\nnode-name: \"cp2\"\n");
        assert_eq!(c.get("token"), Some("a\"b"));
        assert_eq!(c.get("node-name"), Some("cp2"));
        assert_eq!(c.list("tls-san"), ["x.example", "10.0.0.1", "y"]);
    }
}
