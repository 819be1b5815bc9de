//! `sluice`: run flows on the local runtime, validate definitions, serve the flows API and a
//! demo sink.

mod commands;

use clap::{Args, Parser, Subcommand};
use sluice_core::{PrivateAddresses, Settings};
use sluice_model::JobStatus;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Run data-export flows locally, validate them, serve the flows API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a bundle (connections, exports, imports, flows) or a single flow; exit 1 on errors.
    Validate {
        /// A bundle JSON file, or a single definition (see --kind).
        file: PathBuf,
        /// What a single definition is: flow, export, import, connection (default: bundle,
        /// or flow when the file has pageGenerators).
        #[arg(long)]
        kind: Option<String>,
    },
    /// Run a flow of a bundle on the local runtime and print a job summary.
    ///
    /// Locally, http connections may reach loopback addresses (127.0.0.1, ::1: a sink or an
    /// API on this machine); deployed on AWS they may not unless the connection sets
    /// http.allowPrivateAddresses. Metadata addresses (169.254.0.0/16) are always refused
    /// unless the connection sets http.allowMetadataAddresses.
    Run {
        /// The bundle JSON file with the flow and everything it uses.
        bundle: PathBuf,
        /// Which flow (default: the bundle's only or first flow).
        #[arg(long)]
        flow: Option<String>,
        /// Records for the flow's export: .ndjson/.jsonl, .csv (header row) or .json; streamed.
        #[arg(long)]
        records: Option<PathBuf>,
        /// The records file's format when its name does not say: ndjson, csv or json.
        #[arg(long, value_parser = parse_format, requires = "records")]
        format: Option<sluice_model::FileType>,
        #[command(flatten)]
        follow: Follow,
        /// Start a fresh job even if a job of the flow was interrupted (killed) on this
        /// data; that job is canceled. Without it, the interrupted job is resumed.
        #[arg(long)]
        new: bool,
        #[command(flatten)]
        network: Network,
    },
    /// Show what each step of a flow would do with sample records, as JSON: the record after
    /// the export's transform, filter and preSavePage, each step's filter, preMap, mapping and
    /// postMap, the branches taken, the request (credentials masked) and, given a sample reply,
    /// what extract and evaluate conclude. Nothing is sent, stored or counted.
    Preview {
        /// The bundle JSON file with the flow and everything it uses.
        bundle: PathBuf,
        /// Sample records: .ndjson/.jsonl, .csv (header row) or .json.
        #[arg(long)]
        records: PathBuf,
        /// Which flow (default: the bundle's only or first flow).
        #[arg(long)]
        flow: Option<String>,
        /// At most this many records (at most 100).
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// The reply each request is judged on ({status, headers, body} as JSON), for imports
        /// without a sampleResponse of their own.
        #[arg(long)]
        reply: Option<PathBuf>,
    },
    /// Cancel a running job: no record of it is sent after this; records not yet sent count
    /// as ignored. Locally (the `--data` a `sluice run` or `sluice dev` uses), or through a
    /// flows API with --api (a `sluice dev` elsewhere, or the deployed API on AWS).
    Cancel {
        /// The job's id (see `sluice jobs`).
        job: String,
        /// Where the local store and blobs live (not read with --api).
        #[arg(long, default_value = ".sluice")]
        data: PathBuf,
        /// Base URL of a flows API to cancel through (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        api: Option<String>,
        /// Its key (default: $SLUICE_API_KEY).
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Delete the local store's jobs older than their retention period (the flow's
    /// `retentionDays`, else $SLUICE_RETENTION_DAYS, default 30; 0 keeps them), with their
    /// errors and delivery ledger. Jobs still running, or whose retry runs or waits, stay.
    Clean {
        /// Only this flow's jobs.
        #[arg(long)]
        flow: Option<String>,
        /// Say what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete finished jobs older than this many days instead (0: every finished job).
        #[arg(long)]
        older_than_days: Option<u32>,
        /// Where the local store lives.
        #[arg(long, default_value = ".sluice")]
        data: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the flows API on 127.0.0.1 with the local runtime (and the minute schedule tick);
    /// `sluice dev sink` serves a demo REST API instead.
    ///
    /// Locally, http connections may reach loopback addresses (127.0.0.1, ::1); see
    /// --allow-private-addresses for private ranges.
    Dev {
        #[command(subcommand)]
        what: Option<DevCommand>,
        /// The port on 127.0.0.1 to serve the API on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Where the local store and blobs live.
        #[arg(long, default_value = ".sluice")]
        data: PathBuf,
        /// API key for `Authorization: Bearer` (default: $SLUICE_API_KEY, else one is generated
        /// and printed).
        #[arg(long)]
        api_key: Option<String>,
        #[command(flatten)]
        network: Network,
    },
    /// OAuth2 set-up of a connection (grant authorization_code).
    Oauth {
        #[command(subcommand)]
        what: OauthCommand,
    },
    /// List the jobs of the local store, newest first.
    Jobs {
        /// Only jobs of this flow.
        #[arg(long)]
        flow: Option<String>,
        /// Only jobs in this status: queued, running, completed, completed_with_errors,
        /// failed, canceled.
        #[arg(long, value_parser = parse_status)]
        status: Option<JobStatus>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Where the local store lives.
        #[arg(long, default_value = ".sluice")]
        data: PathBuf,
        /// Print the jobs as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the errors of a job: the step, the code and why, each with its id.
    Errors {
        /// The job's id (see `sluice jobs`).
        job: String,
        /// Only errors of this page processor (-1: the export).
        #[arg(long, allow_hyphen_values = true)]
        processor: Option<i64>,
        /// Only errors with this code (evaluator, template, delivery_unknown, ...).
        #[arg(long, value_parser = parse_code)]
        code: Option<sluice_model::FailureCode>,
        /// Only resolved (true) or unresolved (false) errors.
        #[arg(long)]
        resolved: Option<bool>,
        /// Print CSV (the columns of GET /jobs/{id}/errors?format=csv).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Print the errors as JSON.
        #[arg(long)]
        json: bool,
        /// Where the local store lives.
        #[arg(long, default_value = ".sluice")]
        data: PathBuf,
    },
    /// Retry the failed records of a job on the local runtime, each from the step where it
    /// failed; prints the retry job's summary like `sluice run`.
    Retry {
        /// The job's id (see `sluice jobs`).
        job: String,
        /// Only this error (repeat for more); default: every unresolved error.
        #[arg(long = "error")]
        errors: Vec<String>,
        #[command(flatten)]
        follow: Follow,
        #[command(flatten)]
        network: Network,
    },
}

/// How `sluice run` and `sluice retry` run a job on the local runtime and report it.
#[derive(Args)]
struct Follow {
    /// Where the local store and blobs live.
    #[arg(long, default_value = ".sluice")]
    data: PathBuf,
    /// Print the finished job (and its errors) as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Cancel the job if it has not finished after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!(
            "'{s}' is not queued, running, completed, completed_with_errors, failed or canceled"
        )
    })
}

/// A failure code by its name; serde's refusal lists the names there are.
fn parse_code(s: &str) -> Result<sluice_model::FailureCode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

/// Where the local runtime's http connections may go.
#[derive(Args)]
struct Network {
    /// Let http connections also reach private ranges (10/8, 172.16/12, 192.168/16,
    /// 100.64/10, fc00::/7) without each setting http.allowPrivateAddresses. Loopback
    /// (127.0.0.1, ::1) is allowed locally anyway, for development; deployed functions refuse
    /// both by default.
    #[arg(long)]
    allow_private_addresses: bool,
}

impl Network {
    /// The local runtime's settings, with how big replies are kept from the environment.
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = sluice_embedded::local_settings();
        if self.allow_private_addresses {
            settings.private_addresses = PrivateAddresses::Allowed;
        }
        settings.replies = sluice_core::ReplyLimits::from_env()?;
        settings.scripts = sluice_core::ScriptLimits::from_env()?;
        settings.retention_days = retention_days()?;
        let env = |name: &str| std::env::var(name).ok();
        settings.public_url = sluice_core::public_url_from(env)?;
        settings.mail = sluice_core::mail_settings_from(env)?;
        // Built once here so a URL lettre cannot read stops the command at start.
        sluice_embedded::mail::mailer(settings.mail.as_ref())?;
        Ok(settings)
    }
}

#[derive(Subcommand)]
enum OauthCommand {
    /// Print the URL that lets Sluice into the connection's account: open it and allow access;
    /// the provider calls back the connection's redirectURI, served by `sluice dev` on the
    /// same --data at /oauth2/callback, which stores the refresh token.
    Authorize {
        /// The connection's _id (in the local store).
        connection: String,
        /// Where the local store lives (the one `sluice dev` serves).
        #[arg(long, default_value = ".sluice")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// A demo REST API on 127.0.0.1: POST /orders answers 201 {"id": "ord-N"}.
    Sink {
        /// The port on 127.0.0.1 to serve the demo API on.
        #[arg(long, default_value_t = 8090)]
        port: u16,
    },
}

/// `SLUICE_RETENTION_DAYS`, or the default.
fn retention_days() -> anyhow::Result<u32> {
    sluice_core::retention_days_from(|name| std::env::var(name).ok())
}

fn parse_format(s: &str) -> Result<sluice_model::FileType, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .ok()
        .filter(|f: &sluice_model::FileType| f.is_readable())
        .ok_or_else(|| format!("'{s}' is not a records format: ndjson, csv or json"))
}

fn main() -> ExitCode {
    // Colours only for a person at a terminal: piped or redirected logs stay plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(async move {
        match cli.command {
            Command::Validate { file, kind } => commands::validate::run(&file, kind.as_deref()),
            Command::Run {
                bundle,
                flow,
                records,
                format,
                follow,
                new,
                network,
            } => {
                commands::run::run(commands::run::RunArgs {
                    bundle: &bundle,
                    flow: flow.as_deref(),
                    records: records.as_deref(),
                    format,
                    data: &follow.data,
                    as_json: follow.json,
                    timeout: follow.timeout,
                    new,
                    settings: network.settings()?,
                })
                .await
            }
            Command::Preview {
                bundle,
                records,
                flow,
                limit,
                reply,
            } => {
                commands::preview::run(commands::preview::PreviewArgs {
                    bundle: &bundle,
                    records: &records,
                    flow: flow.as_deref(),
                    limit: limit.min(sluice_model::preview::PreviewRequest::MAX_LIMIT),
                    reply: reply.as_deref(),
                })
                .await
            }
            Command::Cancel {
                job,
                data,
                api,
                api_key,
            } => {
                let target = match api.as_deref() {
                    Some(base) => commands::cancel::Target::Api {
                        base,
                        key: api_key
                            .or_else(|| std::env::var("SLUICE_API_KEY").ok())
                            .unwrap_or_default(),
                    },
                    None => commands::cancel::Target::Local(&data),
                };
                commands::cancel::run(&job, target).await
            }
            Command::Clean {
                flow,
                dry_run,
                older_than_days,
                data,
                json,
            } => {
                let request = sluice_core::runs::clean::CleanRequest {
                    flow_id: flow,
                    dry_run,
                    older_than: older_than_days.map(|d| chrono::Duration::days(i64::from(d))),
                };
                let mut settings = sluice_embedded::local_settings();
                settings.retention_days = retention_days()?;
                commands::clean::run(&data, request, settings, json).await
            }
            Command::Dev {
                what: Some(DevCommand::Sink { port }),
                ..
            } => commands::sink::serve(port).await,
            Command::Dev {
                what: None,
                port,
                data,
                api_key,
                network,
            } => commands::dev::serve(port, &data, api_key, network.settings()?).await,

            Command::Oauth {
                what: OauthCommand::Authorize { connection, data },
            } => commands::oauth::authorize(&connection, &data).await,
            Command::Jobs {
                flow,
                status,
                limit,
                data,
                json,
            } => {
                let filter = commands::jobs::JobsFilter {
                    flow,
                    status,
                    limit,
                };
                commands::jobs::jobs(&data, filter, json).await
            }
            Command::Errors {
                job,
                processor,
                code,
                resolved,
                csv,
                json,
                data,
            } => {
                let query = sluice_core::ports::ErrorQuery {
                    processor_index: processor,
                    code,
                    resolved,
                    ..Default::default()
                };
                let output = match (csv, json) {
                    (true, _) => commands::jobs::ErrorsOutput::Csv,
                    (_, true) => commands::jobs::ErrorsOutput::Json,
                    _ => commands::jobs::ErrorsOutput::Text,
                };
                commands::jobs::errors(&data, &job, query, output).await
            }
            Command::Retry {
                job,
                errors,
                follow,
                network,
            } => {
                let retry = commands::jobs::Retry {
                    job,
                    errors,
                    as_json: follow.json,
                    timeout: follow.timeout,
                };
                commands::jobs::retry(&follow.data, retry, network.settings()?).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            if arg.get_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            let at = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                missing.push(at.clone());
            }
            walk(sub, &at, missing);
        }
    }

    #[test]
    fn every_subcommand_and_option_has_a_description() {
        Cli::command().debug_assert();
        let mut missing = Vec::new();
        walk(&Cli::command(), "sluice", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:?}");
    }
}
