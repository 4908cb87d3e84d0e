//! `${name}` substitution, strict: an unknown or empty variable is an error naming the file,
//! the line and the variable, so a typo never becomes an empty string in a manifest.
//!
//! Syntax: `${name}` where `name` is `[A-Za-z_][A-Za-z0-9_]*`; `$${` writes a literal `${`
//! (for shell snippets inside values); a `$` not followed by `{` is left alone, and so are
//! Helm's `{{ … }}`. Nothing else is special.

use super::error::ManifestError;
use super::values::TemplateValues;
use std::path::Path;

/// Substitutes every `${name}` in `text` (the content of `file`, used in errors only).
pub fn substitute(
    file: &Path,
    text: &str,
    values: &TemplateValues,
) -> Result<String, ManifestError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        substitute_line(file, index + 1, line, values, &mut out)?;
    }
    Ok(out)
}

fn substitute_line(
    file: &Path,
    line_no: usize,
    line: &str,
    values: &TemplateValues,
    out: &mut String,
) -> Result<(), ManifestError> {
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(open) = after.strip_prefix('{') {
            let Some(close) = open.find('}') else {
                return Err(ManifestError::BadPlaceholder {
                    file: file.to_path_buf(),
                    line: line_no,
                    reason: "`${` without a closing `}` on the same line (write `$${` for a literal `${`)".into(),
                });
            };
            let name = &open[..close];
            if !is_variable_name(name) {
                return Err(ManifestError::BadPlaceholder {
                    file: file.to_path_buf(),
                    line: line_no,
                    reason: format!(
                        "`${{{name}}}` is not a variable name (letters, digits and `_`; write `$${{` for a literal `${{`)"
                    ),
                });
            }
            let Some(value) = values.lookup(name) else {
                return Err(ManifestError::UnknownVariable {
                    file: file.to_path_buf(),
                    line: line_no,
                    name: name.to_string(),
                    known: values.names().join(", "),
                });
            };
            if value.is_empty() {
                return Err(ManifestError::EmptyVariable {
                    file: file.to_path_buf(),
                    line: line_no,
                    name: name.to_string(),
                });
            }
            out.push_str(value);
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(())
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> TemplateValues {
        let mut v = TemplateValues::new("homelab", "lab.example");
        v.vars.insert("extra".into(), "x".into());
        v
    }

    fn run(text: &str) -> Result<String, ManifestError> {
        substitute(Path::new("m/a.yaml"), text, &values())
    }

    #[test]
    fn substitutes_known_variables() {
        assert_eq!(
            run("host: jupyter.${domain}\nsc: ${storage_class} ${extra}\n").unwrap(),
            "host: jupyter.lab.example\nsc: local-path x\n"
        );
    }

    #[test]
    fn escapes_and_other_dollars_pass_through() {
        assert_eq!(
            run("a: $${HOME} $HOME {{ .Values }} $\n").unwrap(),
            "a: ${HOME} $HOME {{ .Values }} $\n"
        );
    }

    #[test]
    fn unknown_variable_names_file_line_and_variable() {
        let err = run("a: 1\nb: ${domian}\n").unwrap_err().to_string();
        assert!(err.contains("m/a.yaml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("domian"), "{err}");
        assert!(err.contains("domain"), "lists known names: {err}");
    }

    #[test]
    fn empty_and_malformed_placeholders_are_errors() {
        let mut v = values();
        v.domain.clear();
        assert!(substitute(Path::new("f"), "${domain}", &v).is_err());
        assert!(run("${domain").is_err());
        assert!(run("${}").is_err());
        assert!(run("${a-b}").is_err());
    }
}
