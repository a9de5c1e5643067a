//! Shell completion in Cobra's `__complete` protocol, which kubectl (1.26 and later) speaks
//! to a plugin's `kubectl_complete-<plugin>` executable.
//!
//! kubectl runs `kubectl_complete-ambassador <words after "ambassador"...>`, the last word
//! being the one under the cursor (empty after a space), and reads back one candidate per
//! line (`candidate<TAB>description`), then a last line `:<directive>`. Cobra-based scripts
//! insert `__complete` themselves, so a leading `__complete` is accepted too.
//! Candidates come from the clap definition in `cli.rs`, so they cannot drift from the flags
//! the plugin parses.

use clap::{Arg, Command};

/// Cobra's `ShellCompDirective` bits that this plugin uses.
pub mod directive {
    /// Let the shell complete file names.
    pub const DEFAULT: u32 = 0;
    /// Do not fall back to file names when there is no candidate.
    pub const NO_FILE_COMP: u32 = 4;
}

/// What to print: candidates, then the directive.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub candidates: Vec<String>,
    pub directive: u32,
}

impl Reply {
    fn none() -> Reply {
        Reply {
            candidates: Vec::new(),
            directive: directive::NO_FILE_COMP,
        }
    }

    /// The protocol text: one candidate per line, then `:<directive>`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.candidates {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str(&format!(":{}\n", self.directive));
        out
    }
}

/// Where `--context` values come from: the kubeconfig named on the command line, if any.
pub trait Contexts {
    fn contexts(&self, kubeconfig: Option<&str>) -> Vec<String>;
}

/// Completes `words` (the last one is the word under the cursor) against `root`.
pub fn complete(root: &Command, words: &[String], contexts: &dyn Contexts) -> Reply {
    let mut words = words;
    let mut descriptions = true;
    match words.first().map(String::as_str) {
        Some("__complete") => words = &words[1..],
        Some("__completeNoDesc") => {
            words = &words[1..];
            descriptions = false;
        }
        _ => {}
    }
    let (current, before) = match words.split_last() {
        Some((c, b)) => (c.as_str(), b),
        None => ("", &[][..]),
    };

    // Walk the words before the cursor: find the subcommand and the flags already given.
    let mut command = root;
    let mut given: Vec<(&Arg, Option<&str>)> = Vec::new();
    let mut pending: Option<&Arg> = None;
    let mut after_dashdash = false;
    for word in before {
        if let Some(arg) = pending.take() {
            given.push((arg, Some(word)));
            continue;
        }
        if after_dashdash {
            continue;
        }
        if word == "--" {
            after_dashdash = true;
        } else if let Some(flag) = word.strip_prefix('-').filter(|f| !f.is_empty()) {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag, None),
            };
            if let Some(arg) = find_flag(command, name) {
                if takes_value(arg) && inline.is_none() && !is_short_with_value(name) {
                    pending = Some(arg);
                } else {
                    given.push((arg, inline));
                }
            }
        } else if let Some(sub) = command.find_subcommand(word) {
            command = sub;
        }
    }

    // The value of a flag: `-o <cursor>` or `--output=<cursor>`.
    if let Some(arg) = pending {
        return values(arg, "", current, &given, contexts, descriptions);
    }
    if let Some(flag) = current.strip_prefix("--") {
        if let Some((name, partial)) = flag.split_once('=') {
            return match find_flag(command, &format!("-{name}")) {
                Some(arg) if takes_value(arg) => values(
                    arg,
                    &current[..current.len() - partial.len()],
                    partial,
                    &given,
                    contexts,
                    descriptions,
                ),
                _ => Reply::none(),
            };
        }
    }
    if current.starts_with('-') && !after_dashdash {
        return Reply {
            candidates: flags(command, current, &given, descriptions),
            directive: directive::NO_FILE_COMP,
        };
    }
    let candidates = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name().starts_with(current))
        .map(|s| with_description(s.get_name(), s.get_about(), descriptions))
        .collect();
    Reply {
        candidates,
        directive: directive::NO_FILE_COMP,
    }
}

/// `o` in `-o`, `output` in `--output`; the global `help` and `version` flags too.
fn find_flag<'a>(command: &'a Command, name: &str) -> Option<&'a Arg> {
    command.get_arguments().find(|a| {
        if let Some(short) = name.strip_prefix('-') {
            a.get_long() == Some(short) || a.get_all_aliases().is_some_and(|al| al.contains(&short))
        } else {
            let mut chars = name.chars();
            match (chars.next(), chars.next()) {
                (Some(c), _) => a.get_short() == Some(c),
                _ => false,
            }
        }
    })
}

/// `-ojson` carries its value: nothing is pending after it.
fn is_short_with_value(name: &str) -> bool {
    !name.starts_with('-') && name.chars().count() > 1
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_action().takes_values()
}

fn with_description(name: &str, about: Option<&clap::builder::StyledStr>, on: bool) -> String {
    match about {
        Some(text) if on => {
            let text = text.to_string();
            let first = text.lines().next().unwrap_or("").trim_end_matches('.');
            format!("{name}\t{first}")
        }
        _ => name.to_string(),
    }
}

fn flags(
    command: &Command,
    current: &str,
    given: &[(&Arg, Option<&str>)],
    desc: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for arg in command.get_arguments() {
        if arg.is_hide_set() || arg.is_positional() {
            continue;
        }
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        if !repeatable && given.iter().any(|(g, _)| g.get_id() == arg.get_id()) {
            continue;
        }
        let help = arg.get_help();
        if let Some(long) = arg.get_long() {
            let flag = format!("--{long}");
            if flag.starts_with(current) {
                out.push(with_description(&flag, help, desc));
            }
        }
        // Cobra offers shorthands only for a bare `-`, and so do we: `--<TAB>` stays long.
        if current == "-" {
            if let Some(short) = arg.get_short() {
                out.push(with_description(&format!("-{short}"), help, desc));
            }
        }
    }
    out
}

fn values(
    arg: &Arg,
    prefix: &str,
    partial: &str,
    given: &[(&Arg, Option<&str>)],
    contexts: &dyn Contexts,
    desc: bool,
) -> Reply {
    let possible = arg.get_possible_values();
    if !possible.is_empty() {
        let candidates = possible
            .iter()
            .filter(|p| !p.is_hide_set() && p.get_name().starts_with(partial))
            .map(|p| {
                format!(
                    "{prefix}{}",
                    with_description(p.get_name(), p.get_help(), desc)
                )
            })
            .collect();
        return Reply {
            candidates,
            directive: directive::NO_FILE_COMP,
        };
    }
    match arg.get_id().as_str() {
        // Paths: the shell completes file names.
        "filename" | "kubeconfig" => Reply {
            candidates: Vec::new(),
            directive: directive::DEFAULT,
        },
        "context" => {
            let kubeconfig = given
                .iter()
                .find(|(a, _)| a.get_id() == "kubeconfig")
                .and_then(|(_, v)| *v);
            let candidates = contexts
                .contexts(kubeconfig)
                .into_iter()
                .filter(|c| c.starts_with(partial))
                .map(|c| format!("{prefix}{c}"))
                .collect();
            Reply {
                candidates,
                directive: directive::NO_FILE_COMP,
            }
        }
        // Namespaces and ids would need a cluster round trip; completion stays instant.
        _ => Reply::none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    struct Fixed;
    impl Contexts for Fixed {
        fn contexts(&self, kubeconfig: Option<&str>) -> Vec<String> {
            match kubeconfig {
                Some(path) => vec![format!("from-{path}")],
                None => vec!["kind-dev".into(), "prod".into()],
            }
        }
    }

    fn root() -> Command {
        let mut c = crate::cli::Cli::command();
        c.build();
        c
    }

    fn check(line: &str, expect: &[&str], directive: u32) {
        let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        words.insert(0, "__completeNoDesc".into());
        let reply = complete(&root(), &words, &Fixed);
        assert_eq!(
            reply,
            Reply {
                candidates: expect.iter().map(|s| s.to_string()).collect(),
                directive
            },
            "completing `{line}`"
        );
    }

    const NO_FILE: u32 = directive::NO_FILE_COMP;

    #[test]
    fn subcommands() {
        check(
            "",
            &["lint", "routes", "preview", "trace", "test", "help"],
            NO_FILE,
        );
        check("li", &["lint"], NO_FILE);
        check("x", &[], NO_FILE);
    }

    #[test]
    fn flags_of_a_subcommand() {
        check("routes --o", &["--output"], NO_FILE);
        check("lint --fa", &["--failure-threshold"], NO_FILE);
        check("lint --output json --o", &[], NO_FILE);
        // `-f` may repeat.
        check("lint -f a.yaml --file", &["--filename"], NO_FILE);
        check(
            "routes --a",
            &["--ambassador-id", "--all-namespaces"],
            NO_FILE,
        );
    }

    #[test]
    fn values_per_subcommand() {
        check("lint -o ", &["text", "json", "yaml", "sarif"], NO_FILE);
        check("routes -o ", &["table", "json", "yaml"], NO_FILE);
        check("routes --output=j", &["--output=json"], NO_FILE);
        check("lint --color a", &["auto", "always"], NO_FILE);
        check("lint --failure-threshold ", &["error", "warning"], NO_FILE);
    }

    #[test]
    fn files_and_contexts() {
        check("lint -f ", &[], directive::DEFAULT);
        check("lint --kubeconfig ", &[], directive::DEFAULT);
        check("routes --context p", &["prod"], NO_FILE);
        check(
            "routes --kubeconfig k.yaml --context ",
            &["from-k.yaml"],
            NO_FILE,
        );
        check("lint -n ", &[], NO_FILE);
    }

    #[test]
    fn descriptions_and_protocol_text() {
        let words = vec!["__complete".to_string(), "lin".to_string()];
        let reply = complete(&root(), &words, &Fixed);
        assert_eq!(
            reply.render(),
            "lint\tReport everything wrong in Ambassador configuration, with exact positions\n:4\n"
        );
    }
}
