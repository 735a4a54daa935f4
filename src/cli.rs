//! The command line: `run`, `check-config`, `migrate`, and the operator commands.

use crate::config::Config;
use crate::control::Control;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// stageload: loads staged S3 objects into Redshift, Elasticsearch/OpenSearch and Splunk HEC.
#[derive(Debug, Parser)]
#[command(name = "stageload", version, about)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, short = 'c', env = "STAGELOAD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "STAGELOAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for containers).
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: discover, batch, deliver, until SIGTERM or SIGINT.
    Run,
    /// Validate the configuration and exit; connects to nothing.
    CheckConfig,
    /// Apply control-database migrations and exit.
    Migrate,
    /// Recent load_errors rows, newest first; `errors show ID` prints one whole.
    Errors(crate::ops::ErrorsArgs),
    /// Batches, newest first; `batches show ID` prints one with its objects and errors.
    Batches(crate::ops::BatchesArgs),
    /// Put the objects of skipped batches back into delivery as new batches.
    Replay(crate::ops::ReplayArgs),
    /// Mark a load_errors row ignored.
    Ignore {
        /// The row's id.
        id: i64,
    },
    /// List objects already under a pipeline's prefix into the ledger, for the running daemon
    /// to deliver; resumes an interrupted run with the same arguments.
    Backfill(BackfillArgs),
    /// Run a pipeline's transforms on a sample file (or stdin) framed and decompressed as the
    /// pipeline reads its objects: outputs on stdout, rejected records on stderr; exits 1 when
    /// any record was rejected. Connects to no control database.
    Transform(TransformArgs),
    /// Per pipeline: pending objects and bytes, freshness, batches by state, last delivery, errors.
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `stageload transform`.
#[derive(Debug, clap::Args)]
pub struct TransformArgs {
    /// The pipeline whose `[[pipeline.transform]]` steps run.
    #[arg(long)]
    pub pipeline: String,
    /// A sample object (compressed or not); stdin when absent.
    pub file: Option<PathBuf>,
}

/// `stageload backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The pipeline.
    #[arg(long)]
    pub pipeline: String,
    /// Only keys under this sub-prefix of the pipeline's prefix.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Only objects last modified at or after this (2026-11-01, an RFC 3339 time, or 36h / 7d ago).
    #[arg(long)]
    pub since: Option<String>,
    /// Only objects last modified before this (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Objects recorded per second at most, so live loading keeps priority.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Keys per listing page (S3 allows up to 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub page_keys: i32,
    /// Stage the objects in range again even if they were loaded or skipped before, also long
    /// ago (retention keeps a digest of every settled object so nothing else loads one twice).
    #[arg(long)]
    pub reload: bool,
}

/// Runs `stageload transform`.
async fn transform(config: &Config, a: TransformArgs) -> anyhow::Result<()> {
    use crate::source::reader::{spawn_reader, ReadOptions, ReaderItem};
    use std::io::Write;
    let pipeline = config
        .pipelines
        .iter()
        .find(|p| p.name == a.pipeline)
        .ok_or_else(|| anyhow::anyhow!("no pipeline named {:?} in the config", a.pipeline))?;
    if pipeline.source.format == crate::config::Framing::Parquet {
        anyhow::bail!("parquet samples are read from S3 by ranges; try the transform on its rows as json_lines");
    }
    let s3 = crate::source::s3::S3::new(&config.s3).await;
    let chain = crate::transform::Chain::for_pipeline(pipeline, Some(s3.sdk_config()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "pipeline {:?} has no [[pipeline.transform]] steps",
                a.pipeline
            )
        })?;
    let (body, key): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, String) = match &a.file {
        Some(path) => (
            Box::new(
                tokio::fs::File::open(path)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            ),
            path.display().to_string(),
        ),
        None => (Box::new(tokio::io::stdin()), "stdin".to_string()),
    };
    let mut stream = spawn_reader(
        body,
        ReadOptions {
            compression: pipeline.source.compression,
            key: key.clone(),
            format: pipeline.source.format_options(),
            max_record_bytes: pipeline.source.max_record_bytes,
            hook: crate::transform::Chain::hook(&Some(chain)),
            ..ReadOptions::default()
        },
    );
    let (mut out, mut rejected) = (std::io::stdout().lock(), 0u64);
    while let Some(item) = stream.next().await {
        match item {
            ReaderItem::Block(b) => {
                for (_, bytes) in b.iter() {
                    out.write_all(bytes)?;
                    out.write_all(b"\n")?;
                }
                for e in &b.errors {
                    rejected += 1;
                    eprintln!("{key}:{}: {} ({})", e.line, e.reason, e.err_code);
                }
                stream.recycle(b);
            }
            ReaderItem::End(end) => {
                let end = end.map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
                eprintln!(
                    "{key}: {} record(s) read, {rejected} rejected",
                    end.records + end.errors
                );
            }
        }
    }
    out.flush()?;
    if rejected > 0 {
        anyhow::bail!("{rejected} record(s) rejected");
    }
    Ok(())
}

/// Runs `stageload backfill`.
async fn backfill(config: &Config, a: BackfillArgs) -> anyhow::Result<()> {
    use crate::discovery::backfill;
    let pipeline = config
        .pipelines
        .iter()
        .find(|p| p.name == a.pipeline)
        .ok_or_else(|| anyhow::anyhow!("no pipeline named {:?} in the config", a.pipeline))?;
    let time = |s: &Option<String>, flag: &str| -> anyhow::Result<_> {
        s.as_deref()
            .map(backfill::parse_time)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    let range = backfill::Range {
        prefix: a.prefix,
        since: time(&a.since, "--since")?,
        until: time(&a.until, "--until")?,
        rate: a.rate.max(1),
        page_keys: a.page_keys,
        reload: a.reload,
    };
    let control = operator(config).await?;
    let s3 = crate::source::s3::S3::new(&config.s3).await;
    let own = pipeline.own_prefixes();
    let done = backfill::run(pipeline, &s3, &control, &range, own).await?;
    eprintln!(
        "backfill {}: {} objects in range, {} newly staged, {} bytes",
        pipeline.name, done.objects, done.recorded, done.bytes
    );
    Ok(())
}

/// Parses the command line, runs it, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Operator commands print tables; only the daemon logs at info by default.
    let default_level = if matches!(cli.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    let Some(path) = cli.config.clone() else {
        eprintln!("error: no config file: pass --config FILE or set STAGELOAD_CONFIG");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::CheckConfig => {
                println!(
                    "config {} is valid: {} pipeline(s)",
                    path.display(),
                    config.pipelines.len()
                );
                for p in &config.pipelines {
                    println!(
                        "  {}: s3://{}/{} -> {} (retry {}s, buffer {} MiB / {}s / {} objects)",
                        p.name,
                        p.source.bucket,
                        p.source.prefix,
                        p.destination.kind(),
                        p.retry_duration().as_secs(),
                        p.buffer.size_mib,
                        p.buffer.interval_s,
                        p.buffer.max_objects
                    );
                }
                Ok(())
            }
            Command::Migrate => {
                let control = Control::new(&config.control)?;
                let n = control.migrate().await?;
                println!("applied {n} migration(s)");
                Ok(())
            }
            Command::Errors(a) => crate::ops::errors(&operator(&config).await?, a).await,
            Command::Batches(a) => crate::ops::batches(&operator(&config).await?, a).await,
            Command::Replay(a) => crate::ops::replay(&operator(&config).await?, a).await,
            Command::Ignore { id } => crate::ops::ignore(&operator(&config).await?, id).await,
            Command::Backfill(a) => backfill(&config, a).await,
            Command::Transform(a) => transform(&config, a).await,
            Command::Status { json } => {
                crate::ops::status(&operator(&config).await?, &config, json).await
            }
            Command::Run => {
                let reloads = crate::daemon::reload_on_sighup(path.clone());
                crate::daemon::run_with(
                    config,
                    crate::daemon::signals(),
                    reloads,
                    Default::default(),
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "stageload failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The control database for an operator command. Operator commands never migrate (a newer
/// binary would upgrade the schema under running daemons); they refuse a schema that is not
/// exactly this binary's, naming both versions.
async fn operator(config: &Config) -> anyhow::Result<Control> {
    let control = Control::new(&config.control)?;
    control.check_schema().await?;
    Ok(control)
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STAGELOAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
