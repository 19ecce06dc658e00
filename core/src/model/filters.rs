//! Docker's list `filters` (`{"name": ["web"], "label": ["a=1"]}`): which keys a list takes,
//! and the tests its keys share. A key a list does not know is refused, as Docker does.

use std::collections::BTreeMap;

/// Each key with the values it may have.
pub type Filters = BTreeMap<String, Vec<String>>;

/// Refuses a key not in `known`.
pub fn check(filters: &Filters, known: &[&str]) -> Result<(), String> {
    match filters.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("invalid filter '{k}'")),
        None => Ok(()),
    }
}

/// `label=KEY` or `label=KEY=VALUE` against a set of labels.
pub fn label_matches<'a>(
    mut labels: impl Iterator<Item = (&'a String, &'a String)>,
    filter: &str,
) -> bool {
    let (key, want) = match filter.split_once('=') {
        Some((k, w)) => (k, Some(w)),
        None => (filter, None),
    };
    labels.any(|(k, have)| k == key && want.is_none_or(|w| w == have))
}

/// `true`/`1` or `false`/`0`, as Docker reads a boolean filter.
pub fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("invalid filter '{key}={v}'")),
    }
}

/// Whether `test` passes every key: one of its values, all of them for `label`.
pub fn passes(
    filters: &Filters,
    mut test: impl FnMut(&str, &str) -> Result<bool, String>,
) -> Result<bool, String> {
    for (k, vals) in filters {
        let mut results = vals.iter().map(|v| test(k, v));
        let ok = if k == "label" {
            results.try_fold(true, |acc, r| r.map(|r| acc && r))?
        } else {
            results.try_fold(false, |acc, r| r.map(|r| acc || r))?
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_keys() {
        let labels: BTreeMap<String, String> = [("a".into(), "1".into())].into();
        assert!(label_matches(labels.iter(), "a"));
        assert!(label_matches(labels.iter(), "a=1"));
        assert!(!label_matches(labels.iter(), "a=2"));
        let f: Filters = [("name".to_string(), vec!["x".to_string()])].into();
        assert!(check(&f, &["name"]).is_ok());
        assert_eq!(check(&f, &["id"]).unwrap_err(), "invalid filter 'name'");
        let f: Filters = [("label".to_string(), vec!["a".into(), "b".into()])].into();
        assert!(!passes(&f, |_, v| Ok(v == "a")).unwrap());
        let f: Filters = [("name".to_string(), vec!["a".into(), "b".into()])].into();
        assert!(passes(&f, |_, v| Ok(v == "a")).unwrap());
    }
}
