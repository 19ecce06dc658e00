//! Sizes as users write them.

/// `1234`, `64k`, `512m`, `2g` (binary units, as Docker's size flags).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size: {s:?}"))?;
    if n < 0.0 || !n.is_finite() {
        return Err(format!("invalid size: {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}
