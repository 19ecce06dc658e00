//! The Dockerfile parser: text to stages of typed instructions, each with the line it came
//! from, or an error naming the line, the column and what was expected.
//!
//! It follows Docker's reading of a Dockerfile: parser directives (`# syntax=`, `# escape=`)
//! only at the very top; comment lines dropped, also between continued lines; a line ending
//! in the escape character continued on the next; heredocs (`RUN <<EOF`, `COPY <<-'EOF' /x`)
//! on RUN, COPY and ADD; JSON (exec) and shell forms; `--flag=value` options. Words keep their
//! quotes and `$variables`: they are expanded when the build reaches them, with the
//! [`shell::Lexer`](super::shell::Lexer), because only then are the values known.

use crate::model::parse_duration as duration;
use std::fmt;

/// A Dockerfile that cannot be read: where, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DockerfileError {
    /// 1-based; 0 for the file as a whole.
    pub line: usize,
    /// 1-based character column in that line.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}:{}: {}", self.line, self.column, self.message)
        }
    }
}

crate::error::from_module_error!(DockerfileError, InvalidArgument);

/// A command as the container runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `RUN make all`: run by the image's shell (`SHELL`, by default `/bin/sh -c`).
    Shell(String),
    /// `RUN ["make", "all"]`: run as it is.
    Exec(Vec<String>),
}

/// A here-document: the lines after the instruction up to its terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The body, each line with its newline.
    pub content: String,
    /// An unquoted name (`<<EOF`) expands variables in the body; `<<'EOF'` does not.
    pub expand: bool,
    /// `<<-EOF`: leading tabs were removed from each line.
    pub strip_tabs: bool,
    /// The file descriptor a RUN heredoc feeds (`3<<EOF`); none is standard input.
    pub fd: Option<u32>,
}

/// A `--name=value` option before an instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    /// `--link` alone has none.
    pub value: Option<String>,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    /// Sources as written (unexpanded); a heredoc source is named `<<NAME`.
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub checksum: Option<String>,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// HEALTHCHECK's command and options; durations in nanoseconds, as the image config keeps
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `CMD` with its command, or `NONE` (checks inherited from the base turned off).
    pub test: Option<CommandLine>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub start_period: Option<i64>,
    pub start_interval: Option<i64>,
    pub retries: Option<i64>,
}

/// One instruction, typed; strings unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run {
        command: CommandLine,
        /// `--mount=...` as written, one per flag.
        mounts: Vec<String>,
        network: Option<String>,
        heredocs: Vec<Heredoc>,
    },
    Copy(CopySpec),
    Add(CopySpec),
    /// `name=value` pairs (or the legacy `ENV name value`), values with their quotes.
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    /// `name` or `name=default`, one or more.
    Arg(Vec<(String, Option<String>)>),
    Workdir(String),
    User(String),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Stopsignal(String),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
    /// The trigger as written (for the image's `OnBuild`) and as parsed.
    Onbuild {
        text: String,
        trigger: Box<Command>,
    },
    Maintainer(String),
}

impl Command {
    /// The instruction's keyword, as Docker prints it.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::From { .. } => "FROM",
            Command::Run { .. } => "RUN",
            Command::Copy(_) => "COPY",
            Command::Add(_) => "ADD",
            Command::Env(_) => "ENV",
            Command::Label(_) => "LABEL",
            Command::Arg(_) => "ARG",
            Command::Workdir(_) => "WORKDIR",
            Command::User(_) => "USER",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Expose(_) => "EXPOSE",
            Command::Volume(_) => "VOLUME",
            Command::Stopsignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
            Command::Onbuild { .. } => "ONBUILD",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// An instruction and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// First and last line (continuations and heredocs included), 1-based.
    pub line: usize,
    pub end_line: usize,
    /// The instruction as one line, continuations joined (heredoc bodies not included): what
    /// the build prints and what its history records.
    pub text: String,
    pub command: Command,
}

/// A stage: a FROM and what follows it up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub from: Instruction,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// `FROM ... AS name`.
    pub fn name(&self) -> Option<&str> {
        match &self.from.command {
            Command::From { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `# syntax=`: recorded, not acted on (the frontend is this one).
    pub syntax: Option<String>,
    /// `# escape=`: `\` unless set to `` ` ``.
    pub escape: char,
    /// ARGs before the first FROM: usable in FROM lines.
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn err(line: usize, column: usize, message: impl Into<String>) -> DockerfileError {
    DockerfileError {
        line,
        column,
        message: message.into(),
    }
}

/// A logical line: an instruction with its continuations joined, before it is typed.
struct Logical {
    line: usize,
    end_line: usize,
    /// Column (1-based, characters) where the keyword starts on its first line.
    column: usize,
    keyword: String,
    /// Everything after the keyword and its white space.
    rest: String,
    /// Column where `rest` starts on the first line.
    rest_column: usize,
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut syntax = None;
    let mut escape = None;
    let mut check = false;
    let mut i = 0;
    // Directives: only at the top, before any other line (a blank line or a comment that is
    // not a directive ends them).
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else {
            break;
        };
        let line = i + 1;
        match name.as_str() {
            "syntax" => {
                if syntax.replace(value).is_some() {
                    return Err(err(line, 1, "only one syntax parser directive can be used"));
                }
            }
            "escape" => {
                if escape.is_some() {
                    return Err(err(line, 1, "only one escape parser directive can be used"));
                }
                escape = Some(match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(
                            line,
                            1,
                            format!("invalid escape token {other:?}: expected ` or \\"),
                        ));
                    }
                });
            }
            // `check`: read, not acted on.
            "check" => {
                if std::mem::replace(&mut check, true) {
                    return Err(err(line, 1, "only one check parser directive can be used"));
                }
            }
            _ => break,
        }
        i += 1;
    }
    let escape = escape.unwrap_or('\\');

    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let (logical, next) = join(&lines, i, escape);
        i = next;
        let mut heredocs = Vec::new();
        if can_hold_heredocs(&logical) {
            for (name, expand, strip_tabs, fd) in heredoc_markers(&logical.rest, escape) {
                let (doc, next) = read_heredoc(&lines, i, &name, strip_tabs).ok_or_else(|| {
                    err(
                        logical.line,
                        logical.column,
                        format!(
                            "unterminated heredoc {name}: no line {name} after line {}",
                            logical.end_line
                        ),
                    )
                })?;
                i = next;
                heredocs.push(Heredoc {
                    name,
                    content: doc,
                    expand,
                    strip_tabs,
                    fd,
                });
            }
        }
        let end_line = if heredocs.is_empty() {
            logical.end_line
        } else {
            i
        };
        let command = typed(&logical, heredocs, escape, false)?;
        let instruction = Instruction {
            line: logical.line,
            end_line,
            text: format!("{} {}", logical.keyword.to_ascii_uppercase(), logical.rest)
                .trim_end()
                .to_string(),
            command,
        };
        match (&instruction.command, stages.last_mut()) {
            (Command::From { .. }, _) => stages.push(Stage {
                from: instruction,
                instructions: Vec::new(),
            }),
            (Command::Arg(_), None) => meta_args.push(instruction),
            (_, Some(stage)) => stage.instructions.push(instruction),
            (c, None) => {
                return Err(err(
                    instruction.line,
                    logical.column,
                    format!(
                        "{} before the first FROM: a Dockerfile starts with FROM (only ARG may come before it)",
                        c.keyword()
                    ),
                ));
            }
        }
    }
    if stages.is_empty() {
        return Err(err(0, 0, "the Dockerfile has no FROM instruction"));
    }
    Ok(Dockerfile {
        syntax,
        escape,
        meta_args,
        stages,
    })
}

/// `# name=value` at the top of the file.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    let value = value.trim();
    let ok = name.chars().next()?.is_ascii_alphabetic()
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && !value.is_empty();
    ok.then(|| (name.to_ascii_lowercase(), value.to_string()))
}

/// The line ends in the escape character (white space after it allowed) that is not itself
/// escaped (`c:\\` ends a line, as Docker reads it): it continues.
fn continues(line: &str, escape: char) -> Option<&str> {
    let head = line.trim_end_matches([' ', '\t']).strip_suffix(escape)?;
    (!head.is_empty() && !head.ends_with(escape)).then_some(head)
}

/// RUN, COPY and ADD take heredocs, also as an ONBUILD trigger.
fn can_hold_heredocs(l: &Logical) -> bool {
    let kw = l.keyword.to_ascii_uppercase();
    let kw = if kw == "ONBUILD" {
        l.rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase()
    } else {
        kw
    };
    matches!(kw.as_str(), "RUN" | "COPY" | "ADD")
}

/// Joins the instruction starting at `lines[start]` with its continuations; comment and blank
/// lines between them are dropped. Returns it and the index of the line after it.
fn join(lines: &[&str], start: usize, escape: char) -> (Logical, usize) {
    let first = lines[start];
    let lead = first.len() - first.trim_start().len();
    let column = first[..lead].chars().count() + 1;
    let mut text = String::new();
    let mut i = start;
    let mut end_line = start + 1;
    let mut cur = &first[lead..];
    loop {
        match continues(cur, escape) {
            Some(head) => {
                text.push_str(head);
                i += 1;
                // The next line that is neither a comment nor blank continues it.
                while i < lines.len() {
                    let t = lines[i].trim_start();
                    if t.is_empty() || t.starts_with('#') {
                        i += 1;
                    } else {
                        break;
                    }
                }
                if i >= lines.len() {
                    break;
                }
                end_line = i + 1;
                cur = lines[i];
            }
            None => {
                text.push_str(cur);
                i += 1;
                break;
            }
        }
    }
    let kw_len = text.find(|c: char| c.is_whitespace()).unwrap_or(text.len());
    let keyword = text[..kw_len].to_string();
    let after = &text[kw_len..];
    let rest = after.trim_start();
    let rest_column = column + keyword.chars().count() + (after.len() - rest.len());
    (
        Logical {
            line: start + 1,
            end_line,
            column,
            keyword,
            rest: rest.trim_end().to_string(),
            rest_column,
        },
        i,
    )
}

/// The heredocs an instruction opens, in order, as Docker finds them: a word (outside
/// quotes) that is `[fd]<<[-]NAME`, white space allowed after `<<`; the name quoted whole or
/// in part (`<<'EOF'`, `<<"EOF"`, `<<E'O'F`: the body is not expanded) or not; any name
/// without `<`.
fn heredoc_markers(rest: &str, escape: char) -> Vec<(String, bool, bool, Option<u32>)> {
    let chars: Vec<char> = rest.chars().collect();
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == escape && q == '"' {
                i += 1;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == escape {
            i += 2;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            i += 1;
            continue;
        }
        let opens = c == '<'
            && chars.get(i + 1) == Some(&'<')
            && chars.get(i + 2) != Some(&'<')
            && (i == 0 || chars[i - 1] != '<');
        if !opens {
            i += 1;
            continue;
        }
        // Only at the start of a word, after a file descriptor's digits if any.
        let mut d = i;
        while d > 0 && chars[d - 1].is_ascii_digit() {
            d -= 1;
        }
        if d > 0 && !chars[d - 1].is_whitespace() {
            i += 2;
            continue;
        }
        let fd = (d < i)
            .then(|| chars[d..i].iter().collect::<String>().parse().ok())
            .flatten();
        let mut j = i + 2;
        let strip_tabs = chars.get(j) == Some(&'-');
        if strip_tabs {
            j += 1;
        }
        while matches!(chars.get(j), Some(' ' | '\t')) {
            j += 1;
        }
        let mut name = String::new();
        let mut quoted = false;
        let mut in_quote: Option<char> = None;
        while let Some(&c) = chars.get(j) {
            match in_quote {
                Some(q) if c == q => in_quote = None,
                Some(_) => name.push(c),
                None if c.is_whitespace() || c == '<' => break,
                None if c == '\'' || c == '"' => {
                    in_quote = Some(c);
                    quoted = true;
                }
                None if c == '\\' => {
                    if let Some(&n) = chars.get(j + 1) {
                        name.push(n);
                        j += 1;
                    }
                }
                None => name.push(c),
            }
            j += 1;
        }
        if in_quote.is_none() && !name.is_empty() {
            out.push((name, !quoted, strip_tabs, fd));
        }
        i = j;
    }
    out
}

/// The body of a heredoc starting at `lines[start]`, up to its terminator line; the index
/// after the terminator. None when the file ends first.
fn read_heredoc(
    lines: &[&str],
    start: usize,
    name: &str,
    strip_tabs: bool,
) -> Option<(String, usize)> {
    let mut body = String::new();
    for (i, raw) in lines.iter().enumerate().skip(start) {
        let line = if strip_tabs {
            raw.trim_start_matches('\t')
        } else {
            raw
        };
        if line == name {
            return Some((body, i + 1));
        }
        body.push_str(line);
        body.push('\n');
    }
    None
}

/// Splits at unquoted white space, quotes and escapes kept in the words.
fn split_words(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The length in bytes of the first word of `s` (up to unquoted white space).
fn first_word_len(s: &str, escape: char) -> usize {
    let mut quote = None;
    let mut it = s.char_indices();
    while let Some((i, c)) = it.next() {
        match quote {
            Some(q) if c == escape && q == '"' => {
                it.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c.is_whitespace() => return i,
            None if c == escape => {
                it.next();
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {}
        }
    }
    s.len()
}

/// A flag's value with its quotes and escapes taken out, as Docker reads it.
fn unquote(v: &str, escape: char) -> String {
    let mut out = String::new();
    let mut quote = None;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some('\'') if c == '\'' => quote = None,
            Some('\'') => out.push(c),
            Some(q) if c == q => quote = None,
            _ if c == escape => out.extend(chars.next()),
            None if c == '"' || c == '\'' => quote = Some(c),
            _ => out.push(c),
        }
    }
    out
}

/// Leading `--name[=value]` words, and what is left.
fn take_flags(
    l: &Logical,
    allowed: &[&str],
    escape: char,
) -> Result<(Vec<Flag>, String, usize), DockerfileError> {
    let mut flags = Vec::new();
    let mut rest = l.rest.as_str();
    let mut column = l.rest_column;
    while let Some(body) = rest.strip_prefix("--") {
        let word_len = first_word_len(rest, escape);
        let word = &body[..word_len - 2];
        if word.is_empty() {
            // `--` alone: the end of the options.
            rest = rest[2..].trim_start();
            break;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v, escape))),
            None => (word, None),
        };
        if !allowed.contains(&name) {
            let known = if allowed.is_empty() {
                "it takes none".to_string()
            } else {
                format!(
                    "expected one of {}",
                    allowed
                        .iter()
                        .map(|a| format!("--{a}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(err(
                l.line,
                column,
                format!(
                    "unknown flag --{name} for {}: {known}",
                    l.keyword.to_ascii_uppercase()
                ),
            ));
        }
        flags.push(Flag {
            name: name.to_string(),
            value,
        });
        let after = &rest[word_len..];
        let next = after.trim_start();
        column += rest[..word_len].chars().count() + (after.len() - next.len());
        rest = next;
    }
    Ok((flags, rest.to_string(), column))
}

fn flag_value(
    l: &Logical,
    flags: &[Flag],
    name: &str,
    column: usize,
) -> Result<Option<String>, DockerfileError> {
    let mut found = None;
    for f in flags.iter().filter(|f| f.name == name) {
        if found.is_some() {
            return Err(err(
                l.line,
                column,
                format!("--{name} given more than once"),
            ));
        }
        match &f.value {
            Some(v) => found = Some(v.clone()),
            None => {
                return Err(err(
                    l.line,
                    column,
                    format!("--{name} needs a value (--{name}=...)"),
                ));
            }
        }
    }
    Ok(found)
}

/// Does this look meant as a JSON array (exec form)? `["` or `['` (a shell command needs a
/// space after `[`), or a quote first and a comma between: what a shell command
/// (`[ -f x ]`, `[ "$(uname -m)" = "x86_64" ]`) does not look like.
fn meant_as_json(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[') else {
        return false;
    };
    if !s.trim_end().ends_with(']') {
        return false;
    }
    inner.starts_with(['"', '\''])
        || (inner.trim_start().starts_with(['"', '\'']) && inner.contains(','))
}

/// `["a", "b"]`, or None for the shell form. Docker runs a line that does not parse as JSON
/// by the shell; one that was plainly meant as JSON (see [`meant_as_json`]) is an error here
/// instead, since the shell would only fail on it later, and a JSON array of anything but
/// strings is an error as in Docker.
fn json_array(l: &Logical, s: &str, column: usize) -> Result<Option<Vec<String>>, DockerfileError> {
    if !s.starts_with('[') {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                other => Err(err(
                    l.line,
                    column,
                    format!(
                        "bad JSON array: {other} is not a string; the exec form is a JSON array of strings"
                    ),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Err(e) if meant_as_json(s) => Err(err(
            l.line,
            column + e.column().saturating_sub(1),
            format!(
                "bad JSON array ({e}): the exec form is a JSON array of double-quoted strings, such as [\"/bin/sh\", \"-c\", \"echo hi\"]; without the brackets the line is run by the shell"
            ),
        )),
        // `[ -f x ] && ...`: a shell command.
        _ => Ok(None),
    }
}

fn command_line(l: &Logical, s: &str, column: usize) -> Result<CommandLine, DockerfileError> {
    Ok(match json_array(l, s, column)? {
        Some(v) => CommandLine::Exec(v),
        None => CommandLine::Shell(s.to_string()),
    })
}

fn need_args(l: &Logical, rest: &str, column: usize, what: &str) -> Result<(), DockerfileError> {
    if rest.trim().is_empty() {
        return Err(err(
            l.line,
            column,
            format!("{} requires {what}", l.keyword.to_ascii_uppercase()),
        ));
    }
    Ok(())
}

/// `a=b c="d e"`, or the legacy `name value with spaces`.
fn pairs(
    l: &Logical,
    rest: &str,
    column: usize,
    escape: char,
) -> Result<Vec<(String, String)>, DockerfileError> {
    let kw = l.keyword.to_ascii_uppercase();
    need_args(l, rest, column, "at least one argument")?;
    let words = split_words(rest, escape);
    if !words[0].contains('=') {
        // Legacy: the first word is the name, the rest (as written) the value.
        let name = words[0].clone();
        let value = rest[name.len()..].trim().to_string();
        if value.is_empty() {
            return Err(err(
                l.line,
                column,
                format!("{kw} {name} has no value: write {name}=VALUE"),
            ));
        }
        return Ok(vec![(name, value)]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(err(
                l.line,
                column,
                format!("{kw}: can't find = in {w:?}: each must be of the form name=value"),
            ));
        };
        if k.is_empty() {
            return Err(err(l.line, column, format!("{kw} names can not be blank")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn healthcheck(l: &Logical, escape: char) -> Result<Healthcheck, DockerfileError> {
    let (flags, rest, column) = take_flags(
        l,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        escape,
    )?;
    need_args(l, &rest, column, "CMD or NONE")?;
    let (kind, cmd) = match rest.find(char::is_whitespace) {
        Some(n) => (&rest[..n], rest[n..].trim_start()),
        None => (rest.as_str(), ""),
    };
    let cmd_column = column + rest.len() - cmd.len();
    let mut h = Healthcheck {
        test: None,
        interval: None,
        timeout: None,
        start_period: None,
        start_interval: None,
        retries: None,
    };
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            // Options before NONE are allowed and mean nothing, as in Docker.
            let _ = flags;
            if !cmd.is_empty() {
                return Err(err(l.line, column, "HEALTHCHECK NONE takes no arguments"));
            }
            return Ok(h);
        }
        "CMD" => {
            need_args(l, cmd, cmd_column, "a command after CMD")?;
            h.test = Some(command_line(l, cmd, cmd_column)?);
        }
        other => {
            return Err(err(
                l.line,
                column,
                format!("unknown type {other:?} in HEALTHCHECK: expected CMD or NONE"),
            ));
        }
    }
    for (name, slot) in [
        ("interval", &mut h.interval),
        ("timeout", &mut h.timeout),
        ("start-period", &mut h.start_period),
        ("start-interval", &mut h.start_interval),
    ] {
        if let Some(v) = flag_value(l, &flags, name, l.rest_column)? {
            let d = duration(&v).ok_or_else(|| {
                err(
                    l.line,
                    l.rest_column,
                    format!("--{name}={v}: not a duration (such as 30s, 1m30s, 500ms)"),
                )
            })?;
            if d != 0 && d < 1_000_000 {
                return Err(err(
                    l.line,
                    l.rest_column,
                    format!("--{name}={v}: cannot be less than 1ms"),
                ));
            }
            *slot = Some(d);
        }
    }
    if let Some(v) = flag_value(l, &flags, "retries", l.rest_column)? {
        let n: i64 = v.parse().map_err(|_| {
            err(
                l.line,
                l.rest_column,
                format!("--retries={v}: not a whole number"),
            )
        })?;
        if n < 0 {
            return Err(err(l.line, l.rest_column, "--retries cannot be negative"));
        }
        h.retries = Some(n);
    }
    Ok(h)
}

fn copy_spec(
    l: &Logical,
    heredocs: Vec<Heredoc>,
    escape: char,
    add: bool,
) -> Result<CopySpec, DockerfileError> {
    let allowed: &[&str] = if add {
        &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "exclude",
            "keep-git-dir",
            "unpack",
        ]
    } else {
        &["from", "chown", "chmod", "link", "exclude", "parents"]
    };
    let (flags, rest, column) = take_flags(l, allowed, escape)?;
    let kw = l.keyword.to_ascii_uppercase();
    let words = match json_array(l, &rest, column)? {
        Some(v) => v,
        None => split_words(&rest, escape),
    };
    if words.len() < 2 {
        return Err(err(
            l.line,
            column,
            format!(
                "{kw} requires at least two arguments (sources and a destination), but {} given",
                if words.is_empty() {
                    "none was".to_string()
                } else {
                    "only one was".to_string()
                }
            ),
        ));
    }
    let (dest, sources) = words.split_last().expect("two or more");
    if flags.iter().filter(|f| f.name == "link").count() > 1 {
        return Err(err(l.line, l.rest_column, "--link given more than once"));
    }
    let link = match flags.iter().find(|f| f.name == "link") {
        None => false,
        Some(Flag { value: None, .. }) => true,
        Some(Flag { value: Some(v), .. }) => match v.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(err(
                    l.line,
                    l.rest_column,
                    format!("--link={v}: expected true or false"),
                ));
            }
        },
    };
    Ok(CopySpec {
        sources: sources.to_vec(),
        dest: dest.clone(),
        from: flag_value(l, &flags, "from", l.rest_column)?,
        chown: flag_value(l, &flags, "chown", l.rest_column)?,
        chmod: flag_value(l, &flags, "chmod", l.rest_column)?,
        link,
        checksum: if add {
            flag_value(l, &flags, "checksum", l.rest_column)?
        } else {
            None
        },
        exclude: flags
            .iter()
            .filter(|f| f.name == "exclude")
            .filter_map(|f| f.value.clone())
            .collect(),
        heredocs,
    })
}

/// A stage name: `[a-z][a-z0-9-_.]*`, as Docker allows.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// The keyword nearest to an unknown one, for a hint.
fn nearest(word: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(ca != *cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let up = word.to_ascii_uppercase();
    KEYWORDS
        .iter()
        .map(|k| (distance(&up, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn typed(
    l: &Logical,
    heredocs: Vec<Heredoc>,
    escape: char,
    in_onbuild: bool,
) -> Result<Command, DockerfileError> {
    let kw = l.keyword.to_ascii_uppercase();
    let no_flags = |l: &Logical| -> Result<(String, usize), DockerfileError> {
        let (_, rest, column) = take_flags(l, &[], escape)?;
        Ok((rest, column))
    };
    Ok(match kw.as_str() {
        "FROM" => {
            if in_onbuild {
                return Err(err(
                    l.line,
                    l.column,
                    "FROM isn't allowed as an ONBUILD trigger",
                ));
            }
            let (flags, rest, column) = take_flags(l, &["platform"], escape)?;
            let words = split_words(&rest, escape);
            let (image, name) = match words.as_slice() {
                [image] => (image.clone(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    // Docker lowercases a stage's name (and finds stages so).
                    let name = name.to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(err(
                            l.line,
                            column + rest.len() - name.len(),
                            format!(
                                "invalid name for build stage: {name:?}: a name starts with a lowercase letter and holds only lowercase letters, digits, '-', '_' and '.'"
                            ),
                        ));
                    }
                    (image.clone(), Some(name))
                }
                _ => {
                    return Err(err(
                        l.line,
                        column,
                        "FROM requires either one argument (an image) or three (IMAGE AS NAME)",
                    ));
                }
            };
            Command::From {
                image,
                name,
                platform: flag_value(l, &flags, "platform", l.rest_column)?,
            }
        }
        "RUN" => {
            let (flags, rest, column) = take_flags(l, &["mount", "network", "security"], escape)?;
            if rest.trim().is_empty() && heredocs.is_empty() {
                need_args(l, &rest, column, "at least one argument")?;
            }
            let mounts = flags
                .iter()
                .filter(|f| f.name == "mount")
                .map(|f| {
                    f.value.clone().ok_or_else(|| {
                        err(
                            l.line,
                            l.rest_column,
                            "--mount needs a value (--mount=type=...)",
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            Command::Run {
                command: command_line(l, &rest, column)?,
                mounts,
                network: flag_value(l, &flags, "network", l.rest_column)?,
                heredocs,
            }
        }
        "COPY" => Command::Copy(copy_spec(l, heredocs, escape, false)?),
        "ADD" => Command::Add(copy_spec(l, heredocs, escape, true)?),
        "ENV" => {
            let (rest, column) = no_flags(l)?;
            Command::Env(pairs(l, &rest, column, escape)?)
        }
        "LABEL" => {
            let (rest, column) = no_flags(l)?;
            Command::Label(pairs(l, &rest, column, escape)?)
        }
        "ARG" => {
            let (rest, column) = no_flags(l)?;
            need_args(l, &rest, column, "at least one argument")?;
            let mut out = Vec::new();
            for w in split_words(&rest, escape) {
                let (name, default) = match w.split_once('=') {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (w.clone(), None),
                };
                if name.is_empty() {
                    return Err(err(l.line, column, "ARG names can not be blank"));
                }
                out.push((name, default));
            }
            Command::Arg(out)
        }
        "WORKDIR" | "USER" | "MAINTAINER" | "STOPSIGNAL" => {
            let (rest, column) = no_flags(l)?;
            need_args(l, &rest, column, "exactly one argument")?;
            match kw.as_str() {
                "WORKDIR" => Command::Workdir(rest),
                "USER" => Command::User(rest),
                "MAINTAINER" => Command::Maintainer(rest),
                _ => {
                    if split_words(&rest, escape).len() != 1 {
                        return Err(err(
                            l.line,
                            column,
                            "STOPSIGNAL requires exactly one argument",
                        ));
                    }
                    Command::Stopsignal(rest)
                }
            }
        }
        "CMD" | "ENTRYPOINT" => {
            let (rest, column) = no_flags(l)?;
            need_args(l, &rest, column, "at least one argument")?;
            let c = command_line(l, &rest, column)?;
            if kw == "CMD" {
                Command::Cmd(c)
            } else {
                Command::Entrypoint(c)
            }
        }
        "SHELL" => {
            let (rest, column) = no_flags(l)?;
            match json_array(l, &rest, column)? {
                Some(v) if !v.is_empty() => Command::Shell(v),
                _ => {
                    return Err(err(
                        l.line,
                        column,
                        "SHELL requires the arguments in JSON form, such as [\"/bin/sh\", \"-c\"]",
                    ));
                }
            }
        }
        "EXPOSE" => {
            let (rest, column) = no_flags(l)?;
            need_args(l, &rest, column, "at least one argument")?;
            Command::Expose(split_words(&rest, escape))
        }
        "VOLUME" => {
            let (rest, column) = no_flags(l)?;
            need_args(l, &rest, column, "at least one argument")?;
            let v = match json_array(l, &rest, column)? {
                Some(v) => v,
                None => split_words(&rest, escape),
            };
            if v.iter().any(|p| p.trim().is_empty()) {
                return Err(err(
                    l.line,
                    column,
                    "VOLUME specified can not be an empty string",
                ));
            }
            Command::Volume(v)
        }
        "HEALTHCHECK" => Command::Healthcheck(healthcheck(l, escape)?),
        "ONBUILD" => {
            if in_onbuild {
                return Err(err(l.line, l.column, "ONBUILD ONBUILD isn't allowed"));
            }
            let (rest, column) = no_flags(l)?;
            need_args(l, &rest, column, "an instruction to run later")?;
            let kw_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let after = &rest[kw_len..];
            let inner_rest = after.trim_start();
            let inner = Logical {
                line: l.line,
                end_line: l.end_line,
                column,
                keyword: rest[..kw_len].to_string(),
                rest: inner_rest.to_string(),
                rest_column: column + kw_len + (after.len() - inner_rest.len()),
            };
            if inner.keyword.eq_ignore_ascii_case("MAINTAINER") {
                return Err(err(
                    l.line,
                    column,
                    "MAINTAINER isn't allowed as an ONBUILD trigger",
                ));
            }
            Command::Onbuild {
                text: rest.clone(),
                trigger: Box::new(typed(&inner, heredocs, escape, true)?),
            }
        }
        _ => {
            let hint = nearest(&l.keyword)
                .map(|k| format!(" (did you mean {k}?)"))
                .unwrap_or_default();
            return Err(err(
                l.line,
                l.column,
                format!("unknown instruction: {}{hint}", l.keyword),
            ));
        }
    })
}

#[cfg(test)]
#[path = "dockerfile_tests.rs"]
mod tests;
