//! `.dockerignore`: which files of a build context the build never sees, with Docker's
//! pattern syntax.
//!
//! One pattern a line; `#` starts a comment line; blank lines are skipped. Patterns are
//! relative to the context's root (a leading `/` changes nothing) and cleaned as paths are
//! (`./a//b/../c` is `a/c`). `*` matches any run of characters but `/`, `?` one character but
//! `/`, `[a-z]` and `[^a-z]` one of a class (or not), `\` takes the next character literally, and
//! `**` any number of directories, none included. A pattern that matches a directory excludes
//! everything below it. `!pattern` takes back what earlier patterns excluded; the last pattern
//! that matches a path decides.

/// A `.dockerignore` that cannot be used: a pattern with an unterminated `[` class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: {message}")]
pub struct IgnoreError {
    pub line: usize,
    pub message: String,
}

crate::error::from_module_error!(IgnoreError, InvalidArgument);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `**` not followed by `/`: anything, `/` included.
    Any,
    /// `**/`: zero or more whole directories.
    Dirs,
    /// `?`: one character but `/`.
    One,
    /// `?` in a shell pattern: any one character.
    AnyOne,
    /// `[...]`: ranges, negated with `^`.
    Class(bool, Vec<(char, char)>),
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    tokens: Vec<Token>,
}

/// The patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// `a/./b//c/../d` as `a/b/d`, as Go's `filepath.Clean` and then a leading `/` dropped: `..`
/// above a rooted pattern's root goes, a relative pattern's leading `..` stays (and matches
/// nothing in the context).
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => match out.last() {
                Some(&l) if l != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            _ => out.push(part),
        }
    }
    out.join("/")
}

/// Compiles a pattern: a `.dockerignore` one (`/` separates: `*` and `?` stop at it, `**`
/// spans directories), or with `shell` one of `${VAR#pattern}` (`*` and `?` match anything).
fn compile(p: &str, shell: bool) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if shell => out.push(Token::Any),
            '?' if shell => out.push(Token::AnyOne),
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                // As Docker: `**/` and `**x` are any number of directories, `**` at the end
                // anything at all.
                match chars.get(i) {
                    Some('/') => {
                        i += 1;
                        out.push(Token::Dirs);
                    }
                    Some(_) => out.push(Token::Dirs),
                    None => out.push(Token::Any),
                }
                continue;
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            '\\' => {
                i += 1;
                match chars.get(i) {
                    Some(c) => out.push(Token::Char(*c)),
                    None => return Err(format!("bad pattern {p:?}: it ends in an escape")),
                }
            }
            '[' => {
                let mut j = i + 1;
                // Only `^` negates, as in Go's patterns: `[!a]` is `!` or `a`.
                let negate = chars.get(j) == Some(&'^');
                if negate {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(j) else {
                        return Err(format!("unterminated character class in {p:?}"));
                    };
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        j += 1;
                        *chars
                            .get(j)
                            .ok_or_else(|| format!("unterminated character class in {p:?}"))?
                    } else {
                        c
                    };
                    j += 1;
                    if chars.get(j) == Some(&'-') && chars.get(j + 1).is_some_and(|c| *c != ']') {
                        let hi = chars[j + 1];
                        j += 2;
                        ranges.push((lo, hi));
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                out.push(Token::Class(negate, ranges));
                i = j;
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    Ok(out)
}

/// Does the whole of `text` match?
fn matches(tokens: &[Token], text: &[char]) -> bool {
    match_ends(tokens, text)[text.len()]
}

/// For each `j`, whether the pattern matches `text[..j]`: dynamic programming over (token,
/// character), linear in their product whatever the pattern (no backtracking blow-up).
fn match_ends(tokens: &[Token], text: &[char]) -> Vec<bool> {
    let n = text.len();
    // reach[j]: the tokens so far can match text[..j].
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for t in tokens {
        let mut next = vec![false; n + 1];
        match t {
            Token::Star | Token::Any => {
                let mut on = false;
                for j in 0..=n {
                    if reach[j] {
                        on = true;
                    }
                    next[j] = on;
                    if j < n && matches!(t, Token::Star) && text[j] == '/' {
                        on = false;
                    }
                }
            }
            Token::Dirs => {
                // Zero directories, or any run ending in `/`.
                let mut on = false;
                for j in 0..=n {
                    next[j] = reach[j] || (j > 0 && on && text[j - 1] == '/');
                    if reach[j] {
                        on = true;
                    }
                }
            }
            _ => {
                for j in 0..n {
                    if !reach[j] {
                        continue;
                    }
                    let c = text[j];
                    let ok = match t {
                        Token::Char(p) => *p == c,
                        Token::One => c != '/',
                        Token::AnyOne => true,
                        // As in Docker's (regular expression) classes, `/` included.
                        Token::Class(neg, ranges) => {
                            ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *neg
                        }
                        _ => unreachable!(),
                    };
                    if ok {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach
}

/// A shell pattern, as `${VAR#pattern}` and its kin take one.
pub(super) struct Glob(Vec<Token>);

impl Glob {
    pub(super) fn shell(p: &str) -> Result<Glob, String> {
        compile(p, true).map(Glob)
    }

    /// A COPY source pattern's component, as Docker's `filepath.Match` takes it.
    pub(super) fn path(p: &str) -> Result<Glob, String> {
        compile(p, false).map(Glob)
    }

    pub(super) fn matches(&self, text: &[char]) -> bool {
        matches(&self.0, text)
    }

    /// For each `j`, whether the pattern matches `text[..j]`.
    pub(super) fn match_ends(&self, text: &[char]) -> Vec<bool> {
        match_ends(&self.0, text)
    }
}

impl Ignore {
    /// Reads a `.dockerignore`'s text.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, raw) in text.lines().enumerate() {
            // A comment only where `#` is the line's first character.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, p) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if exclusion && p.is_empty() {
                return Err(IgnoreError {
                    line: n + 1,
                    message: "illegal exclusion pattern \"!\"".into(),
                });
            }
            let p = clean(p);
            if p.is_empty() {
                // `/` or `.`: the context itself, which cannot be left out.
                continue;
            }
            let tokens = compile(&p, false).map_err(|message| IgnoreError {
                line: n + 1,
                message,
            })?;
            patterns.push(Pattern { exclusion, tokens });
        }
        Ok(Ignore { patterns })
    }

    /// Is `path` (relative to the context's root, `/`-separated) left out?
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        let chars: Vec<char> = path.chars().collect();
        // The path and each of its parents: a pattern that matches a directory covers all
        // below it.
        let mut prefixes: Vec<&[char]> = chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(i, _)| &chars[..i])
            .collect();
        prefixes.push(&chars);
        let mut excluded = false;
        for p in &self.patterns {
            // Only a pattern that could change the answer is tried.
            if p.exclusion != excluded {
                continue;
            }
            if prefixes.iter().any(|pre| matches(&p.tokens, pre)) {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Could anything below directory `dir` be taken back by a `!` pattern? When not, a
    /// walk of the context can skip an excluded directory whole.
    pub fn may_include_below(&self, dir: &str) -> bool {
        let dir = clean(dir);
        self.patterns.iter().any(|p| {
            p.exclusion && {
                // A literal prefix of the pattern that leaves the directory out rules it out.
                let lit: String = p
                    .tokens
                    .iter()
                    .map_while(|t| match t {
                        Token::Char(c) => Some(*c),
                        _ => None,
                    })
                    .collect();
                let whole = lit.len() == p.tokens.len();
                let d = format!("{dir}/");
                if whole {
                    lit.starts_with(&d)
                } else {
                    lit.starts_with(&d) || d.starts_with(&lit)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn patterns_as_docker_reads_them() {
        let i = ig("# comment\n\n*.md\n!README.md\n/temp?\n**/*.go\nbuild/\n[a-c]x\n");
        assert!(i.excludes("notes.md"));
        assert!(!i.excludes("README.md"));
        // `*` stops at `/`.
        assert!(!i.excludes("docs/notes.md"));
        assert!(i.excludes("temp1"));
        assert!(i.excludes("temp1/deep/file"));
        assert!(!i.excludes("temp12"));
        assert!(i.excludes("main.go"));
        assert!(i.excludes("a/b/c.go"));
        assert!(i.excludes("build/out.o"));
        assert!(i.excludes("build"));
        assert!(i.excludes("bx"));
        assert!(!i.excludes("dx"));
        assert!(!i.excludes("src/lib.rs"));
    }

    #[test]
    fn comments_and_a_byte_order_mark() {
        let i = ig("\u{feff}first\n # not a comment\n#comment\n");
        assert!(i.excludes("first"));
        assert!(i.excludes("# not a comment"));
        assert!(!i.excludes("#comment"));
    }

    #[test]
    fn the_last_match_decides() {
        let i = ig("*\n!keep\n!dir/keep.txt\nkeep\n");
        assert!(i.excludes("keep"));
        assert!(i.excludes("other"));
        // `dir` matches `*`, so everything under it is out, except what `!` takes back.
        assert!(i.excludes("dir/x"));
        assert!(!i.excludes("dir/keep.txt"));
        assert!(i.may_include_below("dir"));
        assert!(!i.may_include_below("other"));
    }

    #[test]
    fn double_stars_and_cleaning() {
        assert!(!ig("../x\n").excludes("x"));
        assert!(ig("/../x\n").excludes("x"));
        // `**` before a name spans directories; at the end, everything.
        let i = ig("foo/**.txt\n");
        assert!(i.excludes("foo/.txt") && i.excludes("foo/a/b/.txt"));
        assert!(!i.excludes("foo/a.txt"));
        let i = ig("**/node_modules\n./a//b/../c\n**\n!src/**/*.rs\n");
        assert!(i.excludes("node_modules"));
        assert!(i.excludes("x/y/node_modules/z"));
        assert!(i.excludes("a/c"));
        assert!(i.excludes("anything/at/all"));
        assert!(!i.excludes("src/main.rs"));
        assert!(!i.excludes("src/a/b/lib.rs"));
        assert!(i.excludes("src/a/b/lib.c"));
        let i = ig("a/**/b\n");
        assert!(i.excludes("a/b"));
        assert!(i.excludes("a/x/y/b"));
        assert!(!i.excludes("ab"));
        assert!(!i.excludes("a/xb"));
        // `/` alone and `.` are the context: never excluded whole.
        assert!(!ig("/\n.\n").excludes("f"));
    }

    #[test]
    fn classes_and_escapes() {
        let i = ig("[^a]?\nlit\\*\n[!x-z]1\n");
        assert!(i.excludes("bq"));
        assert!(!i.excludes("aq"));
        assert!(i.excludes("lit*"));
        assert!(!i.excludes("litx"));
        assert!(i.excludes("y1"));
        assert!(i.excludes("!1"));
        assert!(!i.excludes("a1"));
        // A class matches `/` too, as Docker's do.
        assert!(ig("a[^x]b\n").excludes("a/b"));
        let e = Ignore::parse("ok\n[abc\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.to_string().contains("unterminated character class"),
            "{e}"
        );
        assert!(
            Ignore::parse("a\\\n")
                .unwrap_err()
                .message
                .contains("ends in an escape")
        );
        assert!(
            Ignore::parse("!\n")
                .unwrap_err()
                .message
                .contains("illegal exclusion")
        );
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        let p = "*a".repeat(200) + "b";
        let i = ig(&p);
        let text = "a".repeat(5000);
        assert!(!i.excludes(&text));
    }
}
