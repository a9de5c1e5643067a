//! `kubectl_complete-ambassador`: the completion helper kubectl runs for `kubectl ambassador <TAB>`.
//!
//! Install it next to `kubectl-ambassador` on `PATH`. It shares the flag definitions with the
//! plugin by including `cli.rs`, so the plugin binary stays free of completion code.

// Only the clap definitions of `cli.rs` are used here, not every field.
#[allow(dead_code)]
#[path = "../cli.rs"]
mod cli;
#[path = "../complete.rs"]
mod complete;

use std::io::Write;

use clap::CommandFactory;
use kube::config::Kubeconfig;

/// Context names from `--kubeconfig` if given, else `KUBECONFIG`, else `~/.kube/config`.
/// Completion never fails: an unreadable kubeconfig offers no contexts.
struct FromKubeconfig;

impl complete::Contexts for FromKubeconfig {
    fn contexts(&self, kubeconfig: Option<&str>) -> Vec<String> {
        let kc = match kubeconfig {
            Some(path) => Kubeconfig::read_from(path).ok(),
            None => Kubeconfig::read().ok(),
        };
        let mut names: Vec<String> = kc
            .map(|kc| kc.contexts.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names
    }
}

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let mut command = cli::Cli::command();
    command.build();
    let reply = complete::complete(&command, &words, &FromKubeconfig);
    // A closed pipe is not worth a panic in the middle of the user's shell.
    let _ = std::io::stdout()
        .lock()
        .write_all(reply.render().as_bytes());
}
