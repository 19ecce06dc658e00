//! Pull and push progress as `docker pull` draws it: in a terminal, one line per layer,
//! rewritten in place as it moves (`a1b2c3d4e5f6: Downloading [==>   ] 1.2MB/3.4MB`);
//! elsewhere, one plain line per change of state, without the bars.

use std::io::Write;

use ketch::api::ProgressMessage;

pub struct Progress<W: Write> {
    out: W,
    tty: bool,
    /// Lines printed so far, by the id they show (`None`: a line of its own).
    lines: Vec<Option<String>>,
}

impl<W: Write> Progress<W> {
    pub fn new(out: W, tty: bool) -> Progress<W> {
        Progress {
            out,
            tty,
            lines: Vec::new(),
        }
    }

    fn text(m: &ProgressMessage, bar: bool) -> String {
        let mut s = String::new();
        if let Some(id) = &m.id {
            s.push_str(id);
            s.push_str(": ");
        }
        s.push_str(&m.status);
        if bar && let Some(p) = &m.progress {
            s.push(' ');
            s.push_str(p);
        }
        s
    }

    pub fn show(&mut self, m: &ProgressMessage) {
        if m.aux.is_some() && m.status.is_empty() {
            return;
        }
        if !self.tty {
            // Bars are for terminals: a transfer's ticks are left out.
            if m.progress_detail.is_some() {
                return;
            }
            let _ = writeln!(self.out, "{}", Self::text(m, false));
            let _ = self.out.flush();
            return;
        }
        let line = Self::text(m, true);
        match &m.id {
            Some(id) => {
                if let Some(pos) = self.lines.iter().rposition(|l| l.as_deref() == Some(id)) {
                    let up = self.lines.len() - pos;
                    // Up to the id's line, rewrite it, and back down.
                    let _ = write!(self.out, "\x1b[{up}A\r\x1b[2K{line}\r\x1b[{up}B");
                } else {
                    self.lines.push(Some(id.clone()));
                    let _ = writeln!(self.out, "{line}");
                }
            }
            None => {
                self.lines.push(None);
                let _ = writeln!(self.out, "{line}");
            }
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_leave_out_the_bars() {
        let mut p = Progress::new(Vec::new(), false);
        p.show(&ProgressMessage::about(
            "latest",
            "Pulling from library/busybox",
        ));
        p.show(&ProgressMessage::about("abc", "Pulling fs layer"));
        p.show(&ProgressMessage::bytes("abc", "Downloading", 1, 2));
        p.show(&ProgressMessage::about("abc", "Pull complete"));
        p.show(&ProgressMessage::status("Digest: sha256:x"));
        let out = String::from_utf8(p.out).unwrap();
        assert_eq!(
            out,
            "latest: Pulling from library/busybox\nabc: Pulling fs layer\nabc: Pull complete\nDigest: sha256:x\n"
        );
    }

    #[test]
    fn a_terminal_rewrites_a_layers_line() {
        let mut p = Progress::new(Vec::new(), true);
        p.show(&ProgressMessage::about("abc", "Pulling fs layer"));
        p.show(&ProgressMessage::about("def", "Pulling fs layer"));
        p.show(&ProgressMessage::bytes("abc", "Downloading", 1, 2));
        let out = String::from_utf8(p.out).unwrap();
        assert!(
            out.contains("\x1b[2A\r\x1b[2Kabc: Downloading [="),
            "{out:?}"
        );
        assert!(out.ends_with("\r\x1b[2B"), "{out:?}");
    }
}
