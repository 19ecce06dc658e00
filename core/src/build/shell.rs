//! Variable expansion in Dockerfile words, as Docker's builder does it: `$VAR`, `${VAR}`,
//! `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?message}`,
//! `${VAR?message}`, and the pattern forms `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`,
//! `${VAR%%pat}`, `${VAR/pat/with}`, `${VAR//pat/with}`; single quotes keep everything literal, double quotes keep spaces but
//! expand, the escape character (`\` or the file's `# escape=`) takes the next character as it
//! is. An unset variable expands to nothing. Which instructions expand at all is the
//! builder's business (ENV, ARG, LABEL, COPY, ADD, WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL,
//! FROM); RUN, CMD and ENTRYPOINT are left to the container's shell.

use super::ignore::Glob;

/// A word that cannot be expanded: an unterminated quote or substitution, a bad modifier, or
/// a `${VAR:?message}` whose variable is unset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    pub message: String,
}

fn fail<T>(message: impl Into<String>) -> Result<T, ShellError> {
    Err(ShellError {
        message: message.into(),
    })
}

/// The expander for one Dockerfile: its escape character.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
}

impl Default for Lexer {
    fn default() -> Lexer {
        Lexer { escape: '\\' }
    }
}

/// Words being collected: a new word starts after unquoted white space.
struct Words {
    words: Vec<String>,
    current: String,
    in_word: bool,
}

impl Words {
    fn new() -> Words {
        Words {
            words: Vec::new(),
            current: String::new(),
            in_word: false,
        }
    }

    /// An unquoted character: white space ends the word.
    fn add(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word {
                self.words.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.raw(c);
        }
    }

    /// A quoted or escaped character: part of the word, even if it is white space.
    fn raw(&mut self, c: char) {
        self.current.push(c);
        self.in_word = true;
    }

    /// The words; empty ones (`""`) dropped, as Docker drops them.
    fn finish(mut self) -> Vec<String> {
        if self.in_word {
            self.words.push(self.current);
        }
        self.words.retain(|w| !w.is_empty());
        self.words
    }
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer { escape }
    }

    /// One word: quotes removed and variables expanded; white space kept.
    pub fn word(
        &self,
        s: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ShellError> {
        Ok(self.expand(s, env)?.0)
    }

    /// Words split at unquoted white space (also white space a variable expands to), each
    /// with quotes removed and variables expanded, as Docker splits `EXPOSE $PORTS`. (COPY,
    /// ADD and WORKDIR expand each of their arguments as one [`word`](Lexer::word).)
    pub fn words(
        &self,
        s: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ShellError> {
        Ok(self.expand(s, env)?.1.finish())
    }

    fn expand(
        &self,
        s: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Words), ShellError> {
        let chars: Vec<char> = s.chars().collect();
        Pass {
            lx: self,
            chars: &chars,
            at: 0,
            env,
            depth: 0,
        }
        .run(&[])
        .map(|(out, words, _)| (out, words))
    }
}

struct Pass<'a> {
    lx: &'a Lexer,
    chars: &'a [char],
    at: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Substitutions inside substitutions so far: bounded, so that a hostile Dockerfile
    /// cannot exhaust the stack.
    depth: usize,
}

/// How deep `${a:-${b:-...}}` may nest.
const MAX_DEPTH: usize = 64;

/// `$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`.
const SPECIAL: &str = "@*#?-$!";

/// The longest value the pattern forms (`${VAR#pat}` ...) work on: their matching is
/// quadratic in it or worse.
const MAX_PATTERN_VALUE: usize = 1024;

impl Pass<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    /// Reads up to one of `stops` (unquoted; consumed) or, with none, the end: the text,
    /// its words, and the stop met.
    fn run(&mut self, stops: &[char]) -> Result<(String, Words, Option<char>), ShellError> {
        let mut out = String::new();
        let mut words = Words::new();
        let mut met = None;
        loop {
            let Some(c) = self.next() else {
                if !stops.is_empty() {
                    return fail("missing '}' in substitution");
                }
                break;
            };
            if stops.contains(&c) {
                met = Some(c);
                break;
            }
            if c == self.lx.escape {
                // A lone escape at the end is dropped, as Docker drops it.
                if let Some(n) = self.next() {
                    out.push(n);
                    words.raw(n);
                }
                continue;
            }
            match c {
                '\'' => loop {
                    match self.next() {
                        None => {
                            return fail(
                                "unexpected end of statement while looking for matching single-quote",
                            );
                        }
                        Some('\'') => break,
                        Some(q) => {
                            out.push(q);
                            words.raw(q);
                        }
                    }
                },
                '"' => {
                    let s = self.double_quoted()?;
                    for q in s.chars() {
                        words.raw(q);
                    }
                    out.push_str(&s);
                }
                '$' => {
                    let v = self.dollar()?;
                    for q in v.chars() {
                        words.add(q);
                    }
                    out.push_str(&v);
                }
                _ => {
                    out.push(c);
                    words.add(c);
                }
            }
        }
        Ok((out, words, met))
    }

    fn double_quoted(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        loop {
            let Some(c) = self.next() else {
                return fail("unexpected end of statement while looking for matching double-quote");
            };
            match c {
                '"' => return Ok(out),
                '$' => out.push_str(&self.dollar()?),
                c if c == self.lx.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.lx.escape => {
                        self.at += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                },
                c => out.push(c),
            }
        }
    }

    /// After a `$`: the variable's value, or `$` itself when no name follows.
    fn dollar(&mut self) -> Result<String, ShellError> {
        match self.peek() {
            Some('{') => {
                self.at += 1;
                self.braced()
            }
            Some(c) if c == '_' || c.is_ascii_alphanumeric() => {
                let name = self.name();
                Ok(self.get(&name).unwrap_or_default())
            }
            // The shell's special parameters: looked up like any name (so, mostly, empty).
            Some(c) if SPECIAL.contains(c) => {
                self.at += 1;
                Ok(self.get(&c.to_string()).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    /// A name: `[A-Za-z_][A-Za-z0-9_]*`, or digits (`$1`, `$10`).
    fn name(&mut self) -> String {
        let mut name = String::new();
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                self.at += 1;
                name.push(c);
            }
            return name;
        }
        while let Some(c) = self.peek() {
            if c == '_' || c.is_ascii_alphanumeric() {
                name.push(c);
                self.at += 1;
            } else {
                break;
            }
        }
        name
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn braced(&mut self) -> Result<String, ShellError> {
        let name = self.name();
        if name.is_empty() {
            return match self.peek() {
                Some(c) => fail(format!("bad substitution: unexpected {c:?} after '${{'")),
                None => fail("missing '}' in substitution"),
            };
        }
        let value = self.get(&name);
        let Some(c) = self.next() else {
            return fail(format!("missing '}}' in substitution of {name}"));
        };
        if c == '}' {
            return Ok(value.unwrap_or_default());
        }
        if matches!(c, '#' | '%' | '/') {
            return self.pattern_form(&name, value.unwrap_or_default(), c);
        }
        let (colon, op) = if c == ':' {
            match self.next() {
                Some(o) => (true, o),
                None => return fail(format!("missing '}}' in substitution of {name}")),
            }
        } else {
            (false, c)
        };
        if !matches!(op, '-' | '+' | '?') {
            return fail(format!(
                "unsupported modifier ({}{op}) in substitution of {name} (supported: :- - :+ + :? ? # ## % %% / //)",
                if colon { ":" } else { "" }
            ));
        }
        let word = self.nested(&['}'])?.0;
        let set = match &value {
            // With the colon, an empty value counts as unset.
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        Ok(match op {
            '-' if set => value.unwrap_or_default(),
            '-' => word,
            '+' if set => word,
            '+' => String::new(),
            _ if set => value.unwrap_or_default(),
            _ if !word.is_empty() => return fail(format!("{name}: {word}")),
            _ if value.is_some() => return fail(format!("{name}: is not allowed to be empty")),
            _ => return fail(format!("{name}: is not allowed to be unset")),
        })
    }

    /// The word of a substitution, up to one of `stops`, with nesting bounded.
    fn nested(&mut self, stops: &[char]) -> Result<(String, Option<char>), ShellError> {
        if self.depth >= MAX_DEPTH {
            return fail(format!("substitutions nested more than {MAX_DEPTH} deep"));
        }
        self.depth += 1;
        let (word, _, met) = self.run(stops)?;
        self.depth -= 1;
        Ok((word, met))
    }

    /// `${VAR#pat}`, `##`, `%`, `%%` (shortest or longest prefix or suffix removed) and
    /// `${VAR/pat/with}`, `//` (the first or every longest match replaced); `op` read.
    fn pattern_form(&mut self, name: &str, value: String, op: char) -> Result<String, ShellError> {
        let twice = self.peek() == Some(op);
        if twice {
            self.at += 1;
        }
        let (pattern, with) = if op == '/' {
            match self.nested(&['/', '}'])? {
                (p, Some('/')) => (p, self.nested(&['}'])?.0),
                (p, _) => (p, String::new()),
            }
        } else {
            (self.nested(&['}'])?.0, String::new())
        };
        let v: Vec<char> = value.chars().collect();
        if v.len() > MAX_PATTERN_VALUE {
            return fail(format!(
                "{name}: a value longer than {MAX_PATTERN_VALUE} characters cannot take a pattern substitution"
            ));
        }
        let glob = Glob::shell(&pattern).map_err(|message| ShellError {
            message: format!("{name}: {message}"),
        })?;
        let at = |i: usize| v[..i].iter().collect::<String>();
        let from = |i: usize| v[i..].iter().collect::<String>();
        let n = v.len();
        Ok(match (op, twice) {
            ('#', _) => {
                let ends = glob.match_ends(&v);
                let mut found = (0..=n).filter(|&i| ends[i]);
                let cut = if twice {
                    found.next_back()
                } else {
                    found.next()
                };
                cut.map_or(value.clone(), from)
            }
            ('%', false) => (0..=n)
                .rev()
                .find(|&i| glob.matches(&v[i..]))
                .map_or(value.clone(), at),
            ('%', true) => (0..=n)
                .find(|&i| glob.matches(&v[i..]))
                .map_or(value.clone(), at),
            _ => {
                let mut out = String::new();
                let mut i = 0;
                let mut replaced = false;
                while i < n {
                    // The longest non-empty match starting here.
                    let end = (!replaced || twice)
                        .then(|| {
                            let ends = glob.match_ends(&v[i..]);
                            (1..=n - i).rev().find(|&e| ends[e]).map(|e| i + e)
                        })
                        .flatten();
                    match end {
                        Some(e) => {
                            out.push_str(&with);
                            i = e;
                            replaced = true;
                        }
                        None => {
                            out.push(v[i]);
                            i += 1;
                        }
                    }
                }
                out
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("apple".into()),
            "E" => Some(String::new()),
            "SP" => Some("one two".into()),
            "PATH" => Some("/usr/bin".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        Lexer::default().word(s, &env).unwrap()
    }

    fn ws(s: &str) -> Vec<String> {
        Lexer::default().words(s, &env).unwrap()
    }

    fn err(s: &str) -> String {
        Lexer::default().word(s, &env).unwrap_err().to_string()
    }

    #[test]
    fn expands_as_docker_does() {
        assert_eq!(w("$A"), "apple");
        assert_eq!(w("${A}s"), "apples");
        assert_eq!(w("$As"), "");
        assert_eq!(w("x$NOPE-y"), "x-y");
        assert_eq!(w("${NOPE:-d}"), "d");
        assert_eq!(w("${E:-d}"), "d");
        assert_eq!(w("${E-d}"), "");
        assert_eq!(w("${NOPE-d}"), "d");
        assert_eq!(w("${A:-d}"), "apple");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${E:+alt}"), "");
        assert_eq!(w("${E+alt}"), "alt");
        assert_eq!(w("${NOPE+alt}"), "");
        assert_eq!(w("${NOPE:-$A}"), "apple");
        assert_eq!(w("${NOPE:-${E:-in}ner}"), "inner");
        assert_eq!(w("${A:?gone}"), "apple");
        assert_eq!(w("$PATH:/x"), "/usr/bin:/x");
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$ b"), "a$ b");
        assert_eq!(w("$1x"), "x");
        assert_eq!(w("$10"), "");
        assert_eq!(w("a$$b$@"), "ab");
    }

    #[test]
    fn pattern_forms() {
        let e = |n: &str| match n {
            "V" => Some("v1.2.3".to_string()),
            "P" => Some("linux/arm64/v8".to_string()),
            "F" => Some("a.tar.gz".to_string()),
            _ => None,
        };
        let w = |s: &str| Lexer::default().word(s, &e).unwrap();
        assert_eq!(w("${V#v}"), "1.2.3");
        assert_eq!(w("${P#linux/}"), "arm64/v8");
        assert_eq!(w("${P#*/}"), "arm64/v8");
        assert_eq!(w("${P##*/}"), "v8");
        assert_eq!(w("${F%.*}"), "a.tar");
        assert_eq!(w("${F%%.*}"), "a");
        assert_eq!(w("${F%.zip}"), "a.tar.gz");
        assert_eq!(w("${V/./-}"), "v1-2.3");
        assert_eq!(w("${V//./-}"), "v1-2-3");
        assert_eq!(w("${V//[0-9]}"), "v..");
        assert_eq!(w("${P/?/X}"), "Xinux/arm64/v8");
        assert_eq!(w("${NOPE#x}"), "");
        let long = |n: &str| (n == "L").then(|| "x".repeat(5000));
        let e = Lexer::default().word("${L#x}", &long).unwrap_err();
        assert!(e.message.contains("longer than 1024"), "{e}");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "apple b");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("\"a\\b\""), "a\\b");
        assert_eq!(w("\"say \\\"hi\\\"\""), "say \"hi\"");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("end\\"), "end");
        let bt = Lexer::new('`');
        assert_eq!(bt.word("`$A", &env).unwrap(), "$A");
        assert_eq!(bt.word("C:\\dir", &env).unwrap(), "C:\\dir");
    }

    #[test]
    fn words_split_where_the_shell_would() {
        assert_eq!(ws("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(ws("$SP three"), ["one", "two", "three"]);
        assert_eq!(ws("\"$SP\" three"), ["one two", "three"]);
        assert_eq!(ws("'a b' \"\" c"), ["a b", "c"]);
        assert_eq!(ws("a\\ b c"), ["a b", "c"]);
        assert_eq!(ws("$NOPE"), Vec::<String>::new());
        assert_eq!(ws("  "), Vec::<String>::new());
    }

    #[test]
    fn bad_words_say_what_is_wrong() {
        assert!(err("'open").contains("matching single-quote"));
        assert!(err("\"open").contains("matching double-quote"));
        assert!(err("${A").contains("missing '}'"));
        assert!(err("${A:-x").contains("missing '}'"));
        assert!(err("${}").contains("bad substitution"));
        assert!(err("${A^x}").contains("unsupported modifier (^)"));
        assert_eq!(err("${NOPE:?must be set}"), "NOPE: must be set");
        assert_eq!(err("${E:?}"), "E: is not allowed to be empty");
        assert_eq!(err("${NOPE:?}"), "NOPE: is not allowed to be unset");
        assert_eq!(w("${E?}"), "");
        let deep = "${A:-".repeat(100_000);
        assert!(err(&deep).contains("nested more than 64 deep"));
    }
}
