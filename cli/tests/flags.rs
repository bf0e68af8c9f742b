//! Each command takes the flags it uses and no other, as the table of docs/configuration.md
//! says; command lines written when every flag was global keep working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const COMMANDS: [&str; 16] = [
    "sort",
    "validate",
    "copy",
    "run",
    "plan",
    "status",
    "tags",
    "check",
    "add-tag",
    "add-image",
    "worker",
    "committer",
    "producer sync",
    "producer discover",
    "producer add-tag",
    "producer add-image",
];

fn image_mirror(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn help_of(command: &str) -> String {
    let mut args: Vec<&str> = command.split(' ').collect();
    args.push("--help");
    let out = image_mirror(&args);
    assert!(out.status.success(), "{command} --help");
    String::from_utf8(out.stdout).unwrap()
}

fn takes(help: &str, flag: &str) -> bool {
    help.lines().any(|l| {
        l.trim_start()
            .strip_prefix(flag)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    })
}

/// The rows of docs/configuration.md's "flags | taken by" table: the flags, and the commands.
fn readme_table() -> Vec<(Vec<String>, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    readme
        .lines()
        .skip_while(|l| *l != "| flags | taken by |")
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            (ticked(cells[1]), ticked(cells[2]))
        })
        .collect()
}

#[test]
fn every_command_takes_the_flags_the_configuration_page_says_and_no_other() {
    let helps: Vec<(&str, String)> = COMMANDS.iter().map(|c| (*c, help_of(c))).collect();
    let table = readme_table();
    assert!(table.len() >= 9, "the table: {table:?}");
    for (flags, takers) in table {
        for flag in &flags {
            for (command, help) in &helps {
                let every = takers.is_empty(); // "every command"
                assert_eq!(
                    takes(help, flag),
                    every || takers.iter().any(|t| t == command),
                    "docs/configuration.md: {flag} taken by {takers:?}; `{command} --help` says otherwise"
                );
            }
        }
    }
}

#[test]
fn a_flag_before_the_command_still_works_and_one_the_command_does_not_take_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list");
    std::fs::write(&list, "a.io/x b.io/x 1\n").unwrap();
    let list = list.to_str().unwrap();
    let out = image_mirror(&[
        "--images-list",
        list,
        "--rate-limit-reserve",
        "5",
        "sort",
        "--check",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{list}: 1 entries")), "{stdout}");
    assert!(
        stderr.contains("--rate-limit-reserve is not a flag of `sort`: ignored"),
        "{stderr}"
    );

    let out = image_mirror(&["sort", "--images-list", list, "--rate-limit-reserve", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unexpected argument '--rate-limit-reserve'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--rate-limit-reserve is a flag of: copy, "),
        "{stderr}"
    );
}
