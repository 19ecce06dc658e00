use super::*;

fn ok(text: &str) -> Dockerfile {
    parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn bad(text: &str) -> DockerfileError {
    parse(text).expect_err(text)
}

fn commands(text: &str) -> Vec<Command> {
    ok(text).stages[0]
        .instructions
        .iter()
        .map(|i| i.command.clone())
        .collect()
}

fn one(text: &str) -> Command {
    let mut c = commands(&format!("FROM scratch\n{text}\n"));
    assert_eq!(c.len(), 1, "{c:?}");
    c.remove(0)
}

fn shell(s: &str) -> CommandLine {
    CommandLine::Shell(s.into())
}

fn exec(v: &[&str]) -> CommandLine {
    CommandLine::Exec(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn stages_meta_args_and_lines() {
    let d = ok("# syntax=docker/dockerfile:1\n\
         ARG BASE=busybox\n\
         \n\
         FROM $BASE AS build\n\
         RUN echo hi\n\
         # a comment\n\
         from --platform=linux/arm64 scratch\n\
         COPY --from=build /a /b\n");
    assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.escape, '\\');
    assert_eq!(d.meta_args.len(), 1);
    assert_eq!(
        d.meta_args[0].command,
        Command::Arg(vec![("BASE".into(), Some("busybox".into()))])
    );
    assert_eq!(d.stages.len(), 2);
    assert_eq!(d.stages[0].name(), Some("build"));
    assert_eq!(d.stages[0].from.line, 4);
    assert_eq!(d.stages[0].instructions[0].line, 5);
    assert_eq!(d.stages[0].instructions[0].text, "RUN echo hi");
    assert_eq!(
        d.stages[1].from.command,
        Command::From {
            image: "scratch".into(),
            name: None,
            platform: Some("linux/arm64".into())
        }
    );
    let Command::Copy(c) = &d.stages[1].instructions[0].command else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.sources, ["/a"]);
    assert_eq!(c.dest, "/b");
}

#[test]
fn continuations_skip_comments_and_blank_lines() {
    let d = ok("FROM scratch\n\
         RUN echo a \\\n\
         # inside\n\
         \n\
         \x20   b \\  \n\
         c\n\
         USER me\n");
    let i = &d.stages[0].instructions;
    assert_eq!(
        i[0].command,
        Command::Run {
            command: shell("echo a     b c"),
            mounts: vec![],
            network: None,
            heredocs: vec![]
        }
    );
    assert_eq!((i[0].line, i[0].end_line), (2, 6));
    assert_eq!(i[1].line, 7);
    // A continuation at the end of the file ends the instruction.
    assert_eq!(one("CMD echo \\"), Command::Cmd(shell("echo")));
}

#[test]
fn the_escape_directive() {
    let d = ok("# escape=`\nFROM scratch\nCOPY C:\\src `\n  C:\\dst\n");
    let Command::Copy(c) = &d.stages[0].instructions[0].command else {
        panic!()
    };
    assert_eq!(d.escape, '`');
    assert_eq!(c.sources, ["C:\\src"]);
    assert_eq!(c.dest, "C:\\dst");
    // Directives only at the top: after a comment, a directive is a comment.
    let d = ok("# hello\n# escape=`\nFROM scratch\nRUN a \\\nb\n");
    assert_eq!(d.escape, '\\');
    assert_eq!(
        d.stages[0].instructions[0].command,
        Command::Run {
            command: shell("a b"),
            mounts: vec![],
            network: None,
            heredocs: vec![]
        }
    );
    let e = bad("# escape=x\nFROM scratch\n");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.contains("invalid escape token"), "{e}");
    assert!(
        bad("# escape=`\n# escape=\\\nFROM scratch\n")
            .message
            .contains("only one escape")
    );
}

#[test]
fn heredocs() {
    let d = ok("FROM scratch\n\
         RUN <<EOF\n\
         echo $HOME\n\
         # not a comment here\n\
         EOF\n\
         COPY <<-'END' 3<<two /dst/\n\
         \tkept $X\n\
         \tEND\n\
         second\n\
         two\n\
         USER x\n");
    let i = &d.stages[0].instructions;
    let Command::Run {
        heredocs, command, ..
    } = &i[0].command
    else {
        panic!()
    };
    assert_eq!(command, &shell("<<EOF"));
    assert_eq!(heredocs[0].name, "EOF");
    assert_eq!(heredocs[0].content, "echo $HOME\n# not a comment here\n");
    assert!(heredocs[0].expand);
    assert_eq!((i[0].line, i[0].end_line), (2, 5));
    let Command::Copy(c) = &i[1].command else {
        panic!()
    };
    assert_eq!(c.sources, ["<<-'END'", "3<<two"]);
    assert_eq!(c.dest, "/dst/");
    assert_eq!(c.heredocs[0].content, "kept $X\n");
    assert!(!c.heredocs[0].expand && c.heredocs[0].strip_tabs);
    assert_eq!(c.heredocs[1].content, "second\n");
    assert_eq!(c.heredocs[1].fd, Some(3));
    assert_eq!(i[2].command, Command::User("x".into()));
    assert_eq!(i[2].line, 11);
    // `<<<` and a name that is not one are not heredocs.
    assert_eq!(
        one("RUN cat <<<word"),
        Command::Run {
            command: shell("cat <<<word"),
            mounts: vec![],
            network: None,
            heredocs: vec![]
        }
    );
    // Where Docker also finds them: a space after `<<`, any name without `<`, part quoted,
    // escaped, in an ONBUILD trigger; not inside quotes nor inside a word.
    let docs = |line: &str, body: &str| -> Vec<(String, bool)> {
        let d = ok(&format!("FROM scratch\n{line}\n{body}"));
        let c = &d.stages[0].instructions[0].command;
        let hs = match c {
            Command::Run { heredocs, .. } => heredocs.clone(),
            Command::Copy(c) | Command::Add(c) => c.heredocs.clone(),
            Command::Onbuild { trigger, .. } => match &**trigger {
                Command::Run { heredocs, .. } => heredocs.clone(),
                _ => vec![],
            },
            _ => vec![],
        };
        hs.into_iter().map(|h| (h.name, h.expand)).collect()
    };
    assert_eq!(docs("RUN cat << EOF", "x\nEOF\n"), [("EOF".into(), true)]);
    assert_eq!(
        docs("COPY <<file.txt /d/", "x\nfile.txt\n"),
        [("file.txt".into(), true)]
    );
    assert_eq!(
        docs("RUN <<END-OF-IT sh", "x\nEND-OF-IT\n"),
        [("END-OF-IT".into(), true)]
    );
    assert_eq!(docs("RUN <<eo'f' sh", "x\neof\n"), [("eof".into(), false)]);
    assert_eq!(docs("RUN <<\\EOF sh", "x\nEOF\n"), [("EOF".into(), true)]);
    assert_eq!(
        docs("ONBUILD RUN <<EOF", "x\nEOF\n"),
        [("EOF".into(), true)]
    );
    assert!(docs("RUN echo \"<<EOF\" 'a<<b'", "").is_empty());
    assert!(docs("RUN echo $((1<<2)) cat<<x", "").is_empty());
    let e = bad("FROM scratch\nRUN <<EOF\necho\n");
    assert_eq!((e.line, e.column), (2, 1));
    assert!(e.message.contains("unterminated heredoc EOF"), "{e}");
}

#[test]
fn json_and_shell_forms() {
    assert_eq!(
        one("CMD [\"a\", \"b c\"]"),
        Command::Cmd(exec(&["a", "b c"]))
    );
    assert_eq!(one("CMD []"), Command::Cmd(exec(&[])));
    assert_eq!(
        one("ENTRYPOINT sh -c 'x'"),
        Command::Entrypoint(shell("sh -c 'x'"))
    );
    // A shell command that starts with a bracket stays a shell command.
    for s in [
        "[ -f /x ] && echo y",
        "[ \"$a\" = b ]",
        "[a]",
        "[ \"$(uname -m)\" = \"x86_64\" ]",
    ] {
        assert_eq!(
            one(&format!("RUN {s}")),
            Command::Run {
                command: shell(s),
                mounts: vec![],
                network: None,
                heredocs: vec![]
            }
        );
    }
    // One meant as JSON but broken is an error with its column.
    let e = bad("FROM scratch\nCMD [\"a\", 'b']\n");
    assert_eq!(e.line, 2);
    assert!(e.message.starts_with("bad JSON array"), "{e}");
    assert!(e.column >= 10, "{e:?}");
    assert!(
        bad("FROM scratch\nENTRYPOINT [\"a\" \"b\"]\n")
            .message
            .contains("bad JSON array")
    );
    // Valid JSON of anything but strings is an error, as in Docker.
    assert!(
        bad("FROM scratch\nCMD [1]\n")
            .message
            .contains("1 is not a string")
    );
    assert_eq!(
        one("SHELL [\"/bin/ash\", \"-eo\", \"pipefail\", \"-c\"]"),
        Command::Shell(vec![
            "/bin/ash".into(),
            "-eo".into(),
            "pipefail".into(),
            "-c".into()
        ])
    );
    assert!(
        bad("FROM scratch\nSHELL /bin/sh -c\n")
            .message
            .contains("JSON form")
    );
}

#[test]
fn env_label_arg() {
    assert_eq!(
        one("ENV A=1 B=\"two words\" C=three\\ words"),
        Command::Env(vec![
            ("A".into(), "1".into()),
            ("B".into(), "\"two words\"".into()),
            ("C".into(), "three\\ words".into()),
        ])
    );
    assert_eq!(
        one("ENV LEGACY some value here"),
        Command::Env(vec![("LEGACY".into(), "some value here".into())])
    );
    assert_eq!(
        one("LABEL \"com.example.x\"=\"y z\" v=1"),
        Command::Label(vec![
            ("\"com.example.x\"".into(), "\"y z\"".into()),
            ("v".into(), "1".into()),
        ])
    );
    assert_eq!(
        one("ARG A B=2"),
        Command::Arg(vec![("A".into(), None), ("B".into(), Some("2".into()))])
    );
    let e = bad("FROM scratch\nENV A=1 B\n");
    assert!(e.message.contains("can't find = in \"B\""), "{e}");
    assert!(bad("FROM scratch\nENV\n").message.contains("ENV requires"));
    assert!(
        bad("FROM scratch\nENV =x\n")
            .message
            .contains("can not be blank")
    );
    assert!(
        bad("FROM scratch\nENV ALONE\n")
            .message
            .contains("has no value")
    );
}

#[test]
fn copy_and_add() {
    let Command::Copy(c) = one("COPY --chown=1:2 --chmod=0755 --link a b* \"c d\" /dst/") else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("1:2"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert!(c.link);
    assert_eq!(c.sources, ["a", "b*", "\"c d\""]);
    assert_eq!(c.dest, "/dst/");
    let Command::Copy(c) = one("COPY [\"a b\", \"/x y/\"]") else {
        panic!()
    };
    assert_eq!(c.sources, ["a b"]);
    assert_eq!(c.dest, "/x y/");
    let Command::Add(a) = one("ADD --checksum=sha256:00 http://x/y /y") else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:00"));
    let e = bad("FROM scratch\nCOPY onlyone\n");
    assert!(e.message.contains("at least two arguments"), "{e}");
    let e = bad("FROM scratch\nCOPY --checksum=x a b\n");
    assert_eq!((e.line, e.column), (2, 6));
    assert!(
        e.message.contains("unknown flag --checksum for COPY"),
        "{e}"
    );
    assert!(
        bad("FROM scratch\nCOPY --from a b\n")
            .message
            .contains("needs a value")
    );
    assert!(
        bad("FROM scratch\nCOPY --from=a --from=b a b\n")
            .message
            .contains("more than once")
    );
}

#[test]
fn run_flags() {
    assert_eq!(
        one("RUN --mount=type=cache,target=/c --network=none make"),
        Command::Run {
            command: shell("make"),
            mounts: vec!["type=cache,target=/c".into()],
            network: Some("none".into()),
            heredocs: vec![]
        }
    );
    assert!(
        bad("FROM scratch\nRUN --bogus=1 x\n")
            .message
            .contains("unknown flag --bogus")
    );
    assert!(bad("FROM scratch\nRUN\n").message.contains("RUN requires"));
}

#[test]
fn healthcheck() {
    assert_eq!(
        one("HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD [\"true\"]"),
        Command::Healthcheck(Healthcheck {
            test: Some(exec(&["true"])),
            interval: Some(90_000_000_000),
            timeout: Some(500_000_000),
            start_period: None,
            start_interval: None,
            retries: Some(3),
        })
    );
    let Command::Healthcheck(h) = one("HEALTHCHECK NONE") else {
        panic!()
    };
    assert_eq!(h.test, None);
    let Command::Healthcheck(h) = one("healthcheck cmd curl -f http://x/") else {
        panic!()
    };
    assert_eq!(h.test, Some(shell("curl -f http://x/")));
    assert!(
        bad("FROM scratch\nHEALTHCHECK --interval=soon CMD x\n")
            .message
            .contains("not a duration")
    );
    assert!(
        bad("FROM scratch\nHEALTHCHECK --timeout=10ns CMD x\n")
            .message
            .contains("less than 1ms")
    );
    assert!(
        bad("FROM scratch\nHEALTHCHECK RUN x\n")
            .message
            .contains("expected CMD or NONE")
    );
    assert!(
        bad("FROM scratch\nHEALTHCHECK NONE x\n")
            .message
            .contains("no arguments")
    );
    let Command::Healthcheck(h) = one("HEALTHCHECK --interval=5s NONE") else {
        panic!()
    };
    assert_eq!(h.test, None);
}

#[test]
fn simple_instructions() {
    assert_eq!(one("WORKDIR /a b"), Command::Workdir("/a b".into()));
    assert_eq!(one("USER 1000:1000"), Command::User("1000:1000".into()));
    assert_eq!(
        one("STOPSIGNAL SIGTERM"),
        Command::Stopsignal("SIGTERM".into())
    );
    assert_eq!(
        one("EXPOSE 80/tcp 53/udp"),
        Command::Expose(vec!["80/tcp".into(), "53/udp".into()])
    );
    assert_eq!(
        one("VOLUME /a /b"),
        Command::Volume(vec!["/a".into(), "/b".into()])
    );
    assert_eq!(
        one("VOLUME [\"/c d\"]"),
        Command::Volume(vec!["/c d".into()])
    );
    assert_eq!(one("MAINTAINER me"), Command::Maintainer("me".into()));
    assert_eq!(
        one("ONBUILD RUN echo later"),
        Command::Onbuild {
            text: "RUN echo later".into(),
            trigger: Box::new(Command::Run {
                command: shell("echo later"),
                mounts: vec![],
                network: None,
                heredocs: vec![]
            })
        }
    );
    assert!(
        bad("FROM scratch\nONBUILD ONBUILD RUN x\n")
            .message
            .contains("isn't allowed")
    );
    assert!(
        bad("FROM scratch\nONBUILD FROM x\n")
            .message
            .contains("isn't allowed")
    );
    assert!(
        bad("FROM scratch\nSTOPSIGNAL A B\n")
            .message
            .contains("exactly one")
    );
    assert!(
        bad("FROM scratch\nWORKDIR\n")
            .message
            .contains("WORKDIR requires")
    );
}

#[test]
fn errors_name_line_column_and_what_was_expected() {
    let e = bad("FROM scratch\n\n  RUNN echo\n");
    assert_eq!((e.line, e.column), (3, 3));
    assert_eq!(e.message, "unknown instruction: RUNN (did you mean RUN?)");
    assert_eq!(
        e.to_string(),
        "line 3:3: unknown instruction: RUNN (did you mean RUN?)"
    );
    let e = bad("FROM scratch\nFROBNICATE x\n");
    assert_eq!(e.message, "unknown instruction: FROBNICATE");
    let e = bad("RUN echo\nFROM scratch\n");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("before the first FROM"), "{e}");
    assert!(bad("# nothing\n\n").message.contains("no FROM"));
    let e = bad("FROM a b\n");
    assert!(e.message.contains("either one argument"), "{e}");
    let e = bad("FROM busybox AS bad!\n");
    assert!(e.message.contains("invalid name for build stage"), "{e}");
    assert_eq!(e.column, 17);
    // Capitals are lowercased, as Docker does.
    assert_eq!(
        ok("FROM busybox AS Builder\n").stages[0].name(),
        Some("builder")
    );
    assert!(
        bad("FROM --bogus=x scratch\n")
            .message
            .contains("unknown flag --bogus for FROM")
    );
}

#[test]
fn an_escaped_escape_ends_the_line() {
    let d = ok("# escape=`\nFROM scratch\nCOPY a c:\\\\\nRUN dir c:\\\n");
    assert_eq!(d.stages[0].instructions.len(), 2);
    let d = ok("FROM scratch\nCOPY a c:\\\\\nRUN dir\n");
    assert_eq!(d.stages[0].instructions.len(), 2, "{d:?}");
}

#[test]
fn flag_values_lose_their_quotes() {
    let Command::Copy(c) = one("COPY --chown=\"1:2\" --link=TRUE a b") else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("1:2"));
    assert!(c.link);
    assert_eq!(
        one("RUN --mount=type=bind,source=\"a b\" x"),
        Command::Run {
            command: shell("x"),
            mounts: vec!["type=bind,source=a b".into()],
            network: None,
            heredocs: vec![]
        }
    );
    assert!(
        bad("FROM scratch\nADD --from=x a b\n")
            .message
            .contains("unknown flag --from for ADD")
    );
    assert!(
        bad("FROM scratch\nCOPY --link --link a b\n")
            .message
            .contains("more than once")
    );
    assert!(
        bad("# check=skip=all\n# check=error=true\nFROM scratch\n")
            .message
            .contains("only one check")
    );
}

#[test]
fn crlf_and_bom() {
    let d = ok("\u{feff}FROM scratch\r\nENV A=1\r\n");
    assert_eq!(
        d.stages[0].instructions[0].command,
        Command::Env(vec![("A".into(), "1".into())])
    );
}

#[test]
fn durations() {
    assert_eq!(duration("30s"), Some(30_000_000_000));
    assert_eq!(duration("1.5h"), Some(5_400_000_000_000));
    assert_eq!(duration("1h2m3s4ms"), Some(3_723_004_000_000));
    assert_eq!(duration("0"), Some(0));
    assert_eq!(duration("5"), None);
    assert_eq!(duration("s"), None);
    assert_eq!(duration(""), None);
}
