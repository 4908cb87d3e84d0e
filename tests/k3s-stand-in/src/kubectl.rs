//! `k3s kubectl`: the two questions first boot asks, over TLS to the kubeconfig's `server`,
//! trusting only the kubeconfig's CA (`certificate-authority-data` or `certificate-authority`)
//! and logging in with its client certificate (`client-certificate(-data)`, `client-key(-data)`).

use crate::{http, pki};
use serde_json::Value;

/// A kubeconfig's `key:` value (first occurrence).
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|s| s.trim().trim_matches('"').to_string())
    })
}

/// `KEY-data` (base64) or `KEY` (a file) of a kubeconfig, as text.
fn pem_field(text: &str, path: &str, key: &str) -> Result<Option<String>, String> {
    use base64::Engine;
    if let Some(data) = field(text, &format!("{key}-data")) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("{path}: {key}-data: {e}"))?;
        return String::from_utf8(raw)
            .map(Some)
            .map_err(|e| format!("{path}: {key}-data: {e}"));
    }
    match field(text, key) {
        Some(file) => std::fs::read_to_string(&file)
            .map(Some)
            .map_err(|e| format!("{path}: {key} {file}: {e}")),
        None => Ok(None),
    }
}

/// A kubeconfig's server, CA bundle and client certificate and key (if it has them).
struct Kubeconfig {
    server: String,
    ca: String,
    user: Option<(String, String)>,
}

fn read_kubeconfig(path: &str) -> Result<Kubeconfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let server = field(&text, "server").ok_or(format!("{path}: no server"))?;
    let ca = pem_field(&text, path, "certificate-authority")?.ok_or(format!(
        "{path}: no certificate-authority(-data): x509: certificate signed by unknown authority"
    ))?;
    let user = match (
        pem_field(&text, path, "client-certificate")?,
        pem_field(&text, path, "client-key")?,
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        _ => None,
    };
    Ok(Kubeconfig {
        server: server.trim_end_matches('/').to_string(),
        ca,
        user,
    })
}

/// The subset of kubectl's JSONPath first boot uses: `{.a.b[?(@.k=="v")].c}`, `[N]`, `[*]`.
fn jsonpath(doc: &Value, expr: &str) -> Result<String, String> {
    let bad = || format!("error parsing jsonpath {expr}");
    let mut s = expr
        .trim()
        .strip_prefix('{')
        .and_then(|e| e.strip_suffix('}'))
        .ok_or_else(bad)?;
    let mut values = vec![doc.clone()];
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix("[?(@.") {
            let end = r.find(")]").ok_or_else(bad)?;
            let (k, v) = r[..end].split_once("==").ok_or_else(bad)?;
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            values = values
                .iter()
                .filter_map(Value::as_array)
                .flatten()
                .filter(|el| el.get(k.trim()).and_then(Value::as_str) == Some(v))
                .cloned()
                .collect();
            s = &r[end + 2..];
        } else if let Some(r) = s.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            let idx = &r[..end];
            values = values
                .iter()
                .filter_map(Value::as_array)
                .flat_map(|a| match idx {
                    "*" => a.clone(),
                    i => i
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| a.get(i).cloned())
                        .into_iter()
                        .collect(),
                })
                .collect();
            s = &r[end + 1..];
        } else if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            values = values.iter().filter_map(|v| v.get(key).cloned()).collect();
            s = &r[end..];
        } else {
            return Err(bad());
        }
    }
    Ok(values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" "))
}

/// Runs `kubectl ARGS`.
pub fn run(args: &[&str]) -> Result<(), String> {
    let default_kc = crate::etc(crate::SERVER_KUBECONFIG).display().to_string();
    let (kc, rest) = match args {
        ["--kubeconfig", kc, rest @ ..] => (kc.to_string(), rest),
        _ => (default_kc, args),
    };
    let kc = read_kubeconfig(&kc)?;
    let server = kc.server;
    let tls = pki::client_config_as(
        &kc.ca,
        kc.user.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
    )?;
    let get = |path: &str| -> Result<String, String> {
        let (status, body) = http::request(&tls, "GET", &format!("{server}{path}"), &[], &[])
            .map_err(|e| format!("Unable to connect to the server: {e}"))?;
        if status == 200 {
            return Ok(body);
        }
        if status == 401 {
            return Err("error: You must be logged in to the server (Unauthorized)".into());
        }
        let msg = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| {
                let reason = v.get("reason")?.as_str()?.to_string();
                let message = v.get("message")?.as_str()?.to_string();
                Some(format!("({reason}): {message}"))
            })
            .unwrap_or_else(|| format!("({status}): {}", body.trim()));
        Err(format!("Error from server {msg}"))
    };
    match rest {
        ["get", "--raw", path] => {
            print!("{}", get(path)?);
            Ok(())
        }
        ["get", "node" | "nodes", name, "-o", out] => {
            let body = get(&format!("/api/v1/nodes/{name}"))?;
            let doc: Value =
                serde_json::from_str(&body).map_err(|e| format!("decoding the Node: {e}"))?;
            match out.strip_prefix("jsonpath=") {
                Some(expr) => print!("{}", jsonpath(&doc, expr)?),
                None if *out == "json" => print!("{doc:#}"),
                None => return Err(format!("kubectl: unsupported output {out}")),
            }
            Ok(())
        }
        _ => Err(format!("kubectl: unsupported arguments {rest:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_condition() {
        let doc = serde_json::json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let expr = r#"{.status.conditions[?(@.type=="Ready")].status}"#;
        assert_eq!(jsonpath(&doc, expr).unwrap(), "True");
        assert_eq!(
            jsonpath(&doc, "{.status.conditions[0].type}").unwrap(),
            "MemoryPressure"
        );
    }
}
