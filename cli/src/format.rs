//! Output as Docker's CLI prints it: aligned tables, `--format` templates, human sizes and
//! durations.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Result, bail};
use serde_json::Value;

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, three significant digits.
pub fn human_size(size: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", sig3(v), units[i])
}

/// `%.3g` for the values sizes take (0 ≤ v < 1000).
fn sig3(v: f64) -> String {
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

pub use ketch::model::human_duration;

/// "3 hours ago" for a Unix time.
pub fn since(unix: i64) -> String {
    if unix <= 0 {
        return "N/A".into();
    }
    format!(
        "{} ago",
        human_duration(chrono::Utc::now().timestamp() - unix)
    )
}

/// Go's `time.Time.String()` form, as Docker's `CreatedAt` prints it.
pub fn go_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default()
}

/// Shortens to `n` characters with an ellipsis, as `docker history` does.
pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Writes rows as Docker's tabwriter does (min width 10, padding 3); the last column is not
/// padded.
pub fn table(out: &mut dyn Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let w = (widths[i] + 3).max(10);
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', w - c.chars().count()));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// A `--format` value: `json`, `table [TEMPLATE]`, or a Go-style template.
pub enum Format {
    Table(Option<String>),
    Json,
    Template(String),
}

impl Format {
    pub fn parse(s: Option<&str>) -> Format {
        match s {
            None | Some("") | Some("table") => Format::Table(None),
            Some("json") => Format::Json,
            Some(t) if t.starts_with("table ") => Format::Table(Some(unescape(&t[6..]))),
            Some(t) => Format::Template(unescape(t)),
        }
    }
}

fn unescape(t: &str) -> String {
    t.replace("\\t", "\t").replace("\\n", "\n")
}

/// Renders a Go value as `text/template` prints it.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Result<&'a Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = match cur.get(part) {
            Some(n) => n,
            None if cur.is_object() => bail!("template: can't evaluate field {part}"),
            None => bail!("template: can't evaluate field {part} in a non-object"),
        };
    }
    Ok(cur)
}

/// Renders the subset of Go templates the Docker CLI's users write: `{{.Field}}`,
/// `{{.A.B}}`, `{{json .}}`, `{{json .Field}}`, `{{upper .F}}`, `{{lower .F}}`,
/// `{{index .List 0}}`, `{{index .Map "key"}}`.
pub fn render(template: &str, v: &Value) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            bail!("template: unclosed action")
        };
        let action = rest[start + 2..start + end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        rest = &rest[start + end + 2..];
        let (func, arg) = match action.split_once(char::is_whitespace) {
            Some((f, a)) => (Some(f), a.trim()),
            None => (None, action),
        };
        if !arg.starts_with('.') {
            bail!("template: unsupported action {{{{{action}}}}}");
        }
        if func == Some("index") {
            // `index .Field 0`, `index .Labels "key"`: an element of a list or a map.
            let mut words = arg.split_whitespace();
            let path = words.next().unwrap_or(".");
            let mut val = lookup(v, &path[1..])?;
            for key in words {
                let key = key.trim_matches('"');
                val = match (val, key.parse::<usize>()) {
                    (Value::Array(a), Ok(i)) => a.get(i).ok_or_else(|| {
                        anyhow::anyhow!("template: error calling index: index out of range: {i}")
                    })?,
                    (Value::Object(m), _) => m.get(key).unwrap_or(&Value::Null),
                    _ => bail!("template: error calling index: cannot index {key}"),
                };
            }
            out.push_str(&go_value(val));
            continue;
        }
        let val = lookup(v, &arg[1..])?;
        match func {
            None => out.push_str(&go_value(val)),
            Some("json") => out.push_str(&serde_json::to_string(val)?),
            Some("upper") => out.push_str(&go_value(val).to_uppercase()),
            Some("lower") => out.push_str(&go_value(val).to_lowercase()),
            Some(f) => bail!("template: function {f:?} not defined"),
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Prints rows (each a JSON object of Docker's field names) in the chosen format. `columns`
/// gives the default table: (header, field).
pub fn print_rows(
    out: &mut dyn Write,
    format: &Format,
    columns: &[(&str, &str)],
    rows: &[Value],
) -> Result<()> {
    match format {
        Format::Json => {
            for r in rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        Format::Template(t) => {
            for r in rows {
                writeln!(out, "{}", render(t, r)?)?;
            }
        }
        Format::Table(t) => {
            let template = match t {
                Some(t) => t.clone(),
                None => columns
                    .iter()
                    .map(|(_, f)| format!("{{{{.{f}}}}}"))
                    .collect::<Vec<_>>()
                    .join("\t"),
            };
            let headers: BTreeMap<&str, &str> = columns.iter().map(|(h, f)| (*f, *h)).collect();
            let header_row: Value = Value::Object(
                columns
                    .iter()
                    .map(|(_, f)| {
                        (
                            f.to_string(),
                            Value::String(headers.get(f).copied().unwrap_or(f).to_string()),
                        )
                    })
                    .collect(),
            );
            let header = render(&template, &header_row).unwrap_or_default();
            let mut lines = vec![header.split('\t').map(str::to_string).collect::<Vec<_>>()];
            for r in rows {
                lines.push(
                    render(&template, r)?
                        .split('\t')
                        .map(str::to_string)
                        .collect(),
                );
            }
            table(out, &lines)?;
        }
    }
    Ok(())
}

/// What `inspect` prints: the documents as a JSON array indented as Docker's, or each
/// through a template.
pub fn print_inspect(found: &[Value], format: Option<&str>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        None | Some("json") => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(found, &mut ser)?;
            out.write_all(&buf)?;
            writeln!(out)?;
        }
        Some(t) => {
            let t = t.replace("\\n", "\n").replace("\\t", "\t");
            for v in found {
                writeln!(out, "{}", render(&t, v)?)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(10_500_000), "10.5MB");
        assert_eq!(human_size(105_000_000), "105MB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn templates() {
        let v = serde_json::json!({"ID": "abc", "Config": {"Cmd": ["sh", "-c"]}, "N": null});
        assert_eq!(
            render("{{.ID}}:{{ .Config.Cmd }}", &v).unwrap(),
            "abc:[sh -c]"
        );
        assert_eq!(
            render("{{json .Config}}", &v).unwrap(),
            r#"{"Cmd":["sh","-c"]}"#
        );
        assert!(render("{{.Nope}}", &v).is_err());
        assert_eq!(render("{{index .Config.Cmd 1}}", &v).unwrap(), "-c");
        assert!(render("{{index .Config.Cmd 5}}", &v).is_err());
        let m = serde_json::json!({"L": {"a.b": "x"}});
        assert_eq!(render(r#"{{index .L "a.b"}}"#, &m).unwrap(), "x");
    }
}
