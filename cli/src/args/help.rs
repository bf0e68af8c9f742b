//! The top-level help, its commands grouped by what people do with them: mirror, keep the
//! images-list, run the fleet, operate the tool.

use clap::Command;

/// The groups, in the order a newcomer needs them, and their commands.
const GROUPS: [(&str, &[&str]); 5] = [
    (
        "Mirroring",
        &["copy", "run", "plan", "add-tag", "add-image"],
    ),
    ("Across an air gap", &["export", "import", "serve"]),
    ("The images-list", &["validate", "sort", "check", "tags"]),
    (
        "The fleet (over RabbitMQ)",
        &["producer", "worker", "committer", "status"],
    ),
    ("Operating", &["completions", "man"]),
];

/// `root` with a help that lists its commands by group.
pub fn grouped(root: Command) -> Command {
    let mut commands = String::new();
    for (heading, names) in GROUPS {
        commands.push_str(&format!("{heading}:\n"));
        for name in names {
            let about = root
                .find_subcommand(name)
                .and_then(Command::get_about)
                .map(ToString::to_string)
                .unwrap_or_default();
            commands.push_str(&format!("  {name:<12} {about}\n"));
        }
        commands.push('\n');
    }
    commands.push_str(&format!(
        "  {:<12} Print this message or the help of the given command\n\n",
        "help"
    ));
    root.help_template(format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{commands}\
         Options:\n{{options}}{{after-help}}"
    ))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_is_in_exactly_one_group() {
        let root = crate::args::Cli::command();
        for sub in root.get_subcommands() {
            let groups = GROUPS
                .iter()
                .filter(|(_, names)| names.contains(&sub.get_name()))
                .count();
            assert_eq!(groups, 1, "{} is in {groups} groups", sub.get_name());
        }
        let listed: usize = GROUPS.iter().map(|(_, names)| names.len()).sum();
        assert_eq!(
            listed,
            root.get_subcommands().count(),
            "a group names a command that does not exist"
        );
    }
}
