//! Reading the command line, including those written when every flag was global:
//! `image-mirror --insecure-registry HOST run`. Flags before the command move after it; one
//! the command does not take is left out and named in a warning. After the command, a flag
//! it does not take is an error that names the commands that do.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Command, CommandFactory, FromArgMatches};

use super::Cli;

/// The parsed command line, and the flags before the command that it does not take.
pub struct Parsed {
    pub cli: Cli,
    /// Such as `--insecure-registry`, with the command (`sort`): never with a value.
    pub ignored: Vec<IgnoredFlag>,
}

/// A flag before the command that the command does not take.
pub struct IgnoredFlag {
    pub flag: String,
    pub command: String,
}

/// Parses the process's arguments; bad usage prints clap's error (and which commands take an
/// unknown flag) and exits 2, `--help` and `--version` print and exit 0.
pub fn parse() -> Parsed {
    let mut root = super::grouped(Cli::command());
    root.build();
    let reordered = reorder(&root, std::env::args_os().collect());
    let parsed = root
        .clone()
        .try_get_matches_from(&reordered.args)
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => Parsed {
            cli,
            ignored: reordered.ignored,
        },
        Err(error) => {
            let _ = error.print();
            if let Some(note) = takers_note(&root, &error) {
                eprintln!("\n{note}");
            }
            std::process::exit(error.exit_code())
        }
    }
}

/// The arguments with the flags before the command moved after it.
struct Reordered {
    args: Vec<OsString>,
    ignored: Vec<IgnoredFlag>,
}

/// A flag met before the command, with its value when that is the next argument.
struct Moved {
    long: String,
    tokens: Vec<OsString>,
}

/// `--name` or `--name=value`: the name.
fn long_of(token: &str) -> Option<&str> {
    let name = token.strip_prefix("--")?;
    let name = name.split_once('=').map_or(name, |(n, _)| n);
    (!name.is_empty()).then_some(name)
}

/// Whether `token` is a cluster of `command`'s short flags (`-q`, `-vv`): `Some(true)` when
/// its last one takes the next argument as its value.
fn shorts_here(command: &Command, token: &str) -> Option<bool> {
    let shorts = token.strip_prefix('-').filter(|s| !s.starts_with('-'))?;
    let mut takes_value = None;
    for c in shorts.chars() {
        let arg = command.get_arguments().find(|a| a.get_short() == Some(c))?;
        takes_value = Some(arg.get_action().takes_values());
    }
    takes_value
}

fn flag_of<'c>(command: &'c Command, long: &str) -> Option<&'c Arg> {
    command.get_arguments().find(|a| a.get_long() == Some(long))
}

fn flag_anywhere<'c>(command: &'c Command, long: &str) -> Option<&'c Arg> {
    flag_of(command, long).or_else(|| {
        command
            .get_subcommands()
            .find_map(|sub| flag_anywhere(sub, long))
    })
}

fn reorder(root: &Command, args: Vec<OsString>) -> Reordered {
    let unchanged = |args: Vec<OsString>| Reordered {
        args,
        ignored: Vec::new(),
    };
    let Some(texts) = args
        .iter()
        .map(|a| a.to_str())
        .collect::<Option<Vec<&str>>>()
    else {
        return unchanged(args);
    };
    let mut command = root;
    let mut path: Vec<&str> = Vec::new();
    let mut kept: Vec<OsString> = args.iter().take(1).cloned().collect();
    let mut moved: Vec<Moved> = Vec::new();
    let mut i = 1;
    while i < texts.len() {
        let token = texts[i];
        if let Some(taken) = shorts_here(command, token) {
            // `-q`, `-vv`: the command's own short flags stay where they are.
            let end = (i + 1 + usize::from(taken)).min(args.len());
            kept.extend_from_slice(&args[i..end]);
            i = end;
            continue;
        }
        let Some(long) = long_of(token) else {
            match command.find_subcommand(token) {
                Some(sub) if !token.starts_with('-') => {
                    kept.push(args[i].clone());
                    path.push(sub.get_name());
                    command = sub;
                    i += 1;
                    if !command.has_subcommands() {
                        break;
                    }
                    continue;
                }
                _ => return unchanged(args),
            }
        };
        let (arg, here) = match flag_of(command, long) {
            Some(arg) => (arg, true),
            None => match flag_anywhere(root, long) {
                Some(arg) => (arg, false),
                None => return unchanged(args),
            },
        };
        let with_value = arg.get_action().takes_values() && !token.contains('=');
        let end = (i + 1 + usize::from(with_value)).min(args.len());
        if here {
            kept.extend_from_slice(&args[i..end]);
        } else {
            moved.push(Moved {
                long: long.to_owned(),
                tokens: args[i..end].to_vec(),
            });
        }
        i = end;
    }
    if moved.is_empty() || command.has_subcommands() {
        return unchanged(args);
    }
    let command_name = path.join(" ");
    let mut ignored = Vec::new();
    for m in moved {
        if flag_of(command, &m.long).is_some() {
            kept.extend(m.tokens);
        } else {
            ignored.push(IgnoredFlag {
                flag: format!("--{}", m.long),
                command: command_name.clone(),
            });
        }
    }
    kept.extend_from_slice(&args[i..]);
    Reordered {
        args: kept,
        ignored,
    }
}

/// For an unknown flag that some command takes: which ones.
fn takers_note(root: &Command, error: &clap::Error) -> Option<String> {
    if error.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(text)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = long_of(text)?;
    let mut takers = Vec::new();
    commands_taking(root, long, &mut Vec::new(), &mut takers);
    (!takers.is_empty()).then(|| format!("--{long} is a flag of: {}", takers.join(", ")))
}

fn commands_taking<'c>(
    command: &'c Command,
    long: &str,
    path: &mut Vec<&'c str>,
    into: &mut Vec<String>,
) {
    for sub in command.get_subcommands() {
        path.push(sub.get_name());
        if sub.has_subcommands() {
            commands_taking(sub, long, path, into);
        } else if flag_of(sub, long).is_some() {
            into.push(path.join(" "));
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reordered(line: &str) -> (String, Vec<String>) {
        let mut root = Cli::command();
        root.build();
        let r = reorder(&root, line.split(' ').map(OsString::from).collect());
        let args: Vec<String> = r
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let ignored = r
            .ignored
            .iter()
            .map(|i| format!("{} {}", i.command, i.flag))
            .collect();
        (args.join(" "), ignored)
    }

    #[test]
    fn short_flags_before_the_command_stay_and_the_long_ones_still_move() {
        assert_eq!(
            reordered("im -q --insecure-registry h:1 copy a b"),
            ("im -q copy --insecure-registry h:1 a b".to_owned(), vec![])
        );
        assert_eq!(
            reordered("im --insecure-registry h:1 -vv run"),
            ("im -vv run --insecure-registry h:1".to_owned(), vec![])
        );
    }

    #[test]
    fn flags_before_the_command_move_after_it() {
        assert_eq!(
            reordered("im --insecure-registry h:1 --log-format json run --workers 2"),
            (
                "im --log-format json run --insecure-registry h:1 --workers 2".to_owned(),
                vec![]
            )
        );
        assert_eq!(
            reordered("im --missing --insecure-registry h run --workers 2"),
            (
                "im run --missing --insecure-registry h --workers 2".to_owned(),
                vec![]
            )
        );
        assert_eq!(
            reordered("im --amqp-url=amqp://x producer --queue-prefix p sync --missing"),
            (
                "im producer sync --amqp-url=amqp://x --queue-prefix p --missing".to_owned(),
                vec![]
            )
        );
    }

    #[test]
    fn a_flag_the_command_does_not_take_is_left_out_and_named() {
        assert_eq!(
            reordered("im --rate-limit-reserve 3 --images-list l sort --check"),
            (
                "im sort --images-list l --check".to_owned(),
                vec!["sort --rate-limit-reserve".to_owned()]
            )
        );
    }

    #[test]
    fn lines_it_cannot_read_are_left_to_clap() {
        for line in [
            "im --no-such-flag 1 run",
            "im --insecure-registry h nosuch",
            "im --insecure-registry h producer",
            "im run --workers 2",
            "im --help",
        ] {
            assert_eq!(reordered(line), (line.to_owned(), vec![]), "{line}");
        }
    }

    #[test]
    fn an_unknown_flag_names_the_commands_that_take_it() {
        let mut root = Cli::command();
        root.build();
        let error = root
            .clone()
            .try_get_matches_from(["im", "sort", "--rate-limit-reserve", "3"])
            .unwrap_err();
        let note = takers_note(&root, &error).unwrap();
        assert!(
            note.starts_with("--rate-limit-reserve is a flag of: "),
            "{note}"
        );
        assert!(
            note.contains("copy") && note.contains("producer sync"),
            "{note}"
        );
        assert!(!note.contains("sort"), "{note}");
        let error = root
            .clone()
            .try_get_matches_from(["im", "sort", "--no-such-flag"])
            .unwrap_err();
        assert_eq!(takers_note(&root, &error), None);
    }
}
