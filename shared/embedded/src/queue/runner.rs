//! Runners: the processes that work on the local queue's messages (one per `LocalRuntime`),
//! and how another process tells whether a runner is gone, so its messages can be adopted.
//!
//! A runner is gone when its row is missing (it stopped cleanly), when it ran on this host
//! and its pid no longer runs (it was killed), or when its heartbeat is older than the
//! stale limit (another host, or a reused pid). Two runtimes in one process (tests) are both
//! alive: a pid cannot tell them apart.

use chrono::{DateTime, Utc};

/// This process's identity in the queue's `runners` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Runner {
    pub id: String,
    pub host: String,
    pub pid: u32,
}

impl Runner {
    /// A new runner for this process.
    pub fn this_process() -> Runner {
        Runner {
            id: sluice_model::new_id(),
            host: host_name(),
            pid: std::process::id(),
        }
    }
}

/// A runner as its row records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerRow {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub seen_at: DateTime<Utc>,
}

impl RunnerRow {
    /// Whether `me` may adopt this runner's messages.
    pub fn is_gone(&self, me: &Runner, now: DateTime<Utc>, stale: chrono::Duration) -> bool {
        if self.seen_at + stale < now {
            return true;
        }
        self.host == me.host && self.pid != me.pid && !pid_runs(self.pid)
    }
}

fn host_name() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| "localhost".into())
    }
}

/// Whether a process with this pid exists and is not a zombie (a killed process its parent
/// has not reaped yet is gone too). When unsure, it runs: a live runner must never be taken
/// for a dead one.
fn pid_runs(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        // The state is the field after the command name, which is in parentheses.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next()),
                Some('Z' | 'X')
            ),
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
            return false;
        };
        !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(me: &Runner, pid: u32, seen: DateTime<Utc>) -> RunnerRow {
        RunnerRow {
            id: "other".into(),
            host: me.host.clone(),
            pid,
            seen_at: seen,
        }
    }

    #[test]
    fn a_runner_whose_pid_is_gone_is_gone_and_a_live_one_is_not() {
        let me = Runner::this_process();
        let now = Utc::now();
        let stale = chrono::Duration::minutes(15);
        // A child that has exited and been reaped: its pid runs no more.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(row(&me, dead, now).is_gone(&me, now, stale));
        // The parent of this test process runs; so does this process (another runtime in it).
        let parent = std::os::unix::process::parent_id();
        assert!(!row(&me, parent, now).is_gone(&me, now, stale));
        assert!(!row(&me, me.pid, now).is_gone(&me, now, stale));
        // On another host only the heartbeat tells.
        let elsewhere = RunnerRow {
            host: "elsewhere".into(),
            ..row(&me, dead, now)
        };
        assert!(!elsewhere.is_gone(&me, now, stale));
        assert!(elsewhere.is_gone(&me, now + stale * 2, stale));
    }
}
