//! `mp cluster status URL`: the live nodes of a multiprocess cluster, their builds, idle and
//! busy workers, and each task stream's backlog and pending tasks.

use multiprocess::cluster::{status, Status};

/// Arguments of `mp cluster`.
#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Show the live nodes, their workers, and the tasks waiting or running.
    ///
    /// The broker's URL is `redis://[user:password@]host:port`, `rediss://…` (TLS; a private
    /// CA from $MULTIPROCESS_CLUSTER_CA) or `unix:///path`. No cluster key is needed: it only
    /// reads.
    Status {
        /// The Redis broker's URL.
        url: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: ClusterArgs) -> multiprocess::Result<()> {
    match args.command {
        ClusterCommand::Status { url, json } => {
            let status = status(&url)?;
            if json {
                println!("{}", to_json(&status));
            } else {
                print!("{}", render(&status));
            }
            Ok(())
        }
    }
}

/// The status as tables.
fn render(status: &Status) -> String {
    let mut out = String::new();
    let workers: usize = status.nodes.iter().map(|n| n.processes).sum();
    let busy: usize = status.nodes.iter().map(|n| n.busy).sum();
    out.push_str(&format!(
        "{} live node{}, {workers} workers, {busy} busy\n",
        status.nodes.len(),
        if status.nodes.len() == 1 { "" } else { "s" }
    ));
    if !status.nodes.is_empty() {
        out.push_str(&format!(
            "  {:<36} {:<16} {:<12} {:>7} {:>5} {:>4}\n",
            "NODE", "BUILD", "KEY ID", "WORKERS", "IDLE", "BUSY"
        ));
        for n in &status.nodes {
            out.push_str(&format!(
                "  {:<36} {:<16} {:<12} {:>7} {:>5} {:>4}\n",
                n.id,
                n.build,
                n.key_id,
                n.processes,
                n.processes.saturating_sub(n.busy),
                n.busy
            ));
        }
    }
    for lost in &status.lost {
        out.push_str(&format!("  lost (its tasks not yet settled): {lost}\n"));
    }
    out.push_str(&format!("{} task stream(s)\n", status.streams.len()));
    if !status.streams.is_empty() {
        out.push_str(&format!(
            "  {:<16} {:<12} {:>8} {:>8}\n",
            "BUILD", "KEY ID", "BACKLOG", "PENDING"
        ));
        for s in &status.streams {
            out.push_str(&format!(
                "  {:<16} {:<12} {:>8} {:>8}\n",
                s.build, s.key_id, s.backlog, s.pending
            ));
        }
    }
    out
}

/// The status as one JSON object.
fn to_json(status: &Status) -> String {
    let nodes: Vec<serde_json::Value> = status
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id, "build": n.build, "key_id": n.key_id, "host": n.host,
                "pid": n.pid, "processes": n.processes, "busy": n.busy,
                "idle": n.processes.saturating_sub(n.busy),
            })
        })
        .collect();
    let streams: Vec<serde_json::Value> = status
        .streams
        .iter()
        .map(|s| {
            serde_json::json!({
                "build": s.build, "key_id": s.key_id, "backlog": s.backlog, "pending": s.pending,
            })
        })
        .collect();
    serde_json::json!({ "nodes": nodes, "lost": status.lost, "streams": streams }).to_string()
}
