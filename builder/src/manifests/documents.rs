//! Splits a rendered file into YAML documents, checks each is a Kubernetes object k3s can
//! apply, and leaves out documents that belong to a service that is off.

use super::error::ManifestError;
use super::services::{Service, ServiceSelection};
use super::SERVICE_LABEL;
use serde_norway::Value;
use std::path::Path;

/// The file's text with the documents of services that are off left out, or `None` when no
/// object remains. Unchanged text when nothing is left out, so files stay as written.
pub(super) fn select(
    file: &Path,
    text: &str,
    services: &ServiceSelection,
) -> Result<Option<String>, ManifestError> {
    let mut kept = Vec::new();
    let mut dropped = false;
    let mut objects = 0;
    for chunk in split(text) {
        let Some(doc) = parse(file, chunk.text, chunk.first_line)? else {
            kept.push(chunk.text);
            continue;
        };
        check_object(file, &doc, chunk.first_line)?;
        match owner(file, &doc, chunk.first_line)? {
            Some(service) if !services.is_enabled(service) => dropped = true,
            _ => {
                objects += 1;
                kept.push(chunk.text);
            }
        }
    }
    if objects == 0 {
        return Ok(None);
    }
    if !dropped {
        return Ok(Some(text.to_string()));
    }
    let mut out = String::new();
    for (i, chunk) in kept.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(chunk);
    }
    Ok(Some(out))
}

struct Chunk<'a> {
    text: &'a str,
    first_line: usize,
}

/// Splits at `---` lines (the only document separator our manifests use).
fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" {
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line,
            });
            start = offset + line.len();
            first_line = index + 2;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        first_line,
    });
    chunks
}

/// Parses one document; `None` for an empty one (only comments or blank lines).
fn parse(file: &Path, text: &str, first_line: usize) -> Result<Option<Value>, ManifestError> {
    let value: Value = serde_norway::from_str(text).map_err(|e| ManifestError::BadDocument {
        file: file.to_path_buf(),
        message: format!("the YAML document starting at line {first_line} does not parse: {e} (lines counted from that document's start)"),
    })?;
    Ok(if value.is_null() { None } else { Some(value) })
}

fn bad(file: &Path, first_line: usize, what: &str) -> ManifestError {
    ManifestError::BadDocument {
        file: file.to_path_buf(),
        message: format!("the document starting at line {first_line} {what}"),
    }
}

/// What k3s needs to apply a document, and what a HelmChart needs to install.
fn check_object(file: &Path, doc: &Value, first_line: usize) -> Result<(), ManifestError> {
    if !doc.is_mapping() {
        return Err(bad(
            file,
            first_line,
            "is not a mapping: a Kubernetes object starts with `apiVersion:`",
        ));
    }
    for key in ["apiVersion", "kind"] {
        if doc
            .get(key)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(bad(file, first_line, &format!("has no `{key}`: add it")));
        }
    }
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        return Err(bad(file, first_line, "has no `metadata.name`: add it"));
    }
    if doc.get("kind").and_then(Value::as_str) == Some("HelmChart") {
        if let Some(values) = doc.get("spec").and_then(|s| s.get("valuesContent")) {
            let Some(values) = values.as_str() else {
                return Err(bad(
                    file,
                    first_line,
                    "has a `spec.valuesContent` that is not a string: write it as a `|` block",
                ));
            };
            serde_norway::from_str::<Value>(values).map_err(|e| {
                bad(
                    file,
                    first_line,
                    &format!("has a `spec.valuesContent` that does not parse as YAML: {e}"),
                )
            })?;
        }
    }
    Ok(())
}

/// The service a document belongs to, from its `piimg.dev/service` label.
fn owner(file: &Path, doc: &Value, first_line: usize) -> Result<Option<Service>, ManifestError> {
    let label = doc
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.get(SERVICE_LABEL))
        .and_then(Value::as_str);
    match label {
        None => Ok(None),
        Some(name) => Service::from_name(name).map(Some).ok_or_else(|| {
            bad(file, first_line, &format!("has label {SERVICE_LABEL}: {name}, which is not a service: use a service's folder name"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ray\n  labels:\n    piimg.dev/service: ray\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: dask\n";

    #[test]
    fn keeps_everything_when_all_services_are_on() {
        let out = select(Path::new("n.yaml"), NS, &ServiceSelection::all()).unwrap();
        assert_eq!(out.as_deref(), Some(NS));
    }

    #[test]
    fn drops_documents_of_services_that_are_off() {
        let mut sel = ServiceSelection::all();
        sel.ray = false;
        let out = select(Path::new("n.yaml"), NS, &sel).unwrap().unwrap();
        assert!(!out.contains("name: ray"), "{out}");
        assert!(out.contains("name: dask"), "{out}");
    }

    #[test]
    fn reports_missing_fields_and_bad_yaml_with_the_line() {
        let err = select(
            Path::new("x.yaml"),
            "apiVersion: v1\nkind: A\n---\nkind: B\n",
            &ServiceSelection::all(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("x.yaml") && err.contains("line 1") && err.contains("metadata.name"),
            "{err}"
        );
        let err = select(Path::new("x.yaml"), "a: [\n", &ServiceSelection::all())
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not parse"), "{err}");
    }

    #[test]
    fn helmchart_values_must_parse() {
        let doc = "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: a\nspec:\n  valuesContent: |\n    a: [\n";
        let err = select(Path::new("h.yaml"), doc, &ServiceSelection::all())
            .unwrap_err()
            .to_string();
        assert!(err.contains("valuesContent"), "{err}");
    }
}
