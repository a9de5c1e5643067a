//! A small YAML writer for JSON values: block style, multi-line strings as literal blocks.
//!
//! Used for `-o yaml` and to show objects read from a cluster the way users write them, so
//! that positions inside an annotation point at a readable literal block. The plugin and the
//! webhook's view both render cluster objects with it, so that positions in `kubectl ambassador
//! lint` and in admission agree; a crate of its own lets both depend on it without depending
//! on each other.

use serde_json::Value;

/// Writes `v` as a YAML document (no leading `---`).
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, 0, &mut out, Ctx::Top);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    MapValue,
    SeqItem,
}

fn write_value(v: &Value, indent: usize, out: &mut String, ctx: Ctx) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut first = true;
            for (k, val) in m {
                if !(first && ctx == Ctx::SeqItem) {
                    if ctx != Ctx::Top || !first {
                        out.push('\n');
                    }
                    out.push_str(&" ".repeat(indent));
                }
                first = false;
                out.push_str(&scalar(k));
                out.push(':');
                write_child(val, indent, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, item) in a.iter().enumerate() {
                if ctx != Ctx::Top || i > 0 {
                    out.push('\n');
                }
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        write_value(item, indent + 2, out, Ctx::SeqItem)
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&flow(item));
                    }
                    _ => write_leaf(item, indent + 2, out),
                }
            }
        }
        _ => write_leaf(v, indent, out),
    }
}

fn write_child(val: &Value, indent: usize, out: &mut String) {
    match val {
        Value::Object(m) if !m.is_empty() => write_value(val, indent + 2, out, Ctx::MapValue),
        Value::Array(a) if !a.is_empty() => write_value(val, indent, out, Ctx::MapValue),
        _ => {
            out.push(' ');
            write_leaf(val, indent + 2, out);
        }
    }
}

fn write_leaf(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::String(s) if block_ok(s) => {
            let trailing = s.len() - s.trim_end_matches('\n').len();
            out.push_str(match trailing {
                0 => "|-",
                1 => "|",
                _ => "|+",
            });
            for line in s.trim_end_matches('\n').split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    out.push_str(&" ".repeat(indent));
                    out.push_str(line);
                }
            }
            for _ in 1..trailing {
                out.push('\n');
            }
        }
        Value::String(s) => out.push_str(&scalar(s)),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        other => out.push_str(&other.to_string()),
    }
}

fn flow(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A multi-line string that a literal block can hold exactly.
fn block_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && s.chars().all(|c| c == '\n' || !c.is_control())
        && s.split('\n').all(|l| !l.ends_with([' ', '\t']))
}

/// A string as a plain scalar when that reads back as the same string, else double-quoted.
fn scalar(s: &str) -> String {
    let plain_safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && !s.starts_with(['-', '.'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
        )
        && s.parse::<f64>().is_err()
        && !s.starts_with("0x")
        && !s.starts_with("0o");
    if plain_safe {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_yaml() {
        let v = json!({
            "apiVersion": "v1",
            "metadata": {"name": "a", "annotations": {"getambassador.io/config": "kind: Mapping\nprefix: /x/\n"}},
            "spec": {"ports": [{"port": 80, "name": "http"}], "empty": [], "on": "yes"},
        });
        let s = to_string(&v);
        assert!(
            s.contains("getambassador.io/config: |\n      kind: Mapping\n      prefix: /x/\n"),
            "{s}"
        );
        assert!(s.contains("  ports:\n  - port: 80\n    name: http"), "{s}");
        assert!(s.contains("\"on\": \"yes\""), "{s}");
    }
}
