//! `finteqx-bench`: the benchmark harness of issue 8. It creates its own database, loads its own
//! data, and measures the service beside this machine's own limits in the same run, alternating
//! round by round; it prints one table of figures, limits and ratios (see BENCHMARKS.md).

mod baselines;
mod history;
mod lab;
mod load;
mod report;
mod rows;
mod smtp;
mod stats;

use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;

use crate::lab::Lab;
use crate::report::{Figure, Goal};
use crate::rows::Sizes;

/// Every row id, in run order.
const ROWS: [&str; 9] = [
    "email",
    "verify",
    "verify_http",
    "link",
    "lag",
    "reads",
    "rebuild",
    "history",
    "memory",
];

/// Measures FinteQX Access against this machine's own limits, side by side in one run.
#[derive(Debug, Parser)]
#[command(name = "finteqx-bench", version)]
struct Cli {
    /// Small sizes: a smoke run of a minute or two.
    #[arg(long)]
    quick: bool,
    /// Only these rows (comma separated): email, verify, verify_http, link, lag, reads, rebuild,
    /// history, memory.
    #[arg(long, value_delimiter = ',')]
    rows: Vec<String>,
    /// Rounds per alternating pair (default 5, quick 3).
    #[arg(long)]
    rounds: Option<usize>,
    /// Run the lag row's CreateUser load at this rate (per second) instead of half the maximum.
    #[arg(long)]
    lag_rate: Option<f64>,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    keep_db: bool,
    /// The PostgreSQL server to create the benchmark database on.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    for row in &cli.rows {
        anyhow::ensure!(
            ROWS.contains(&row.as_str()),
            "unknown row {row}; rows are {}",
            ROWS.join(", ")
        );
    }
    // The service logs as `finteqx serve` does (same filter, spans recorded), into a sink.
    api::telemetry::init_subscriber(api::telemetry::get_subscriber(
        "info,sqlx=warn",
        false,
        std::io::sink,
    ))?;
    let mut sizes = if cli.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    sizes.lag_rate = cli.lag_rate;
    if let Some(rounds) = cli.rounds {
        sizes.rounds = rounds.max(1);
    }
    let started = Instant::now();
    let date = chrono::Local::now().to_rfc2822();
    let lab = Lab::create(&cli.database_url).await?;
    eprintln!("benchmark database {}", lab.name);
    let machine = machine(&lab).await;
    let mut notes = Vec::new();
    // Ctrl-C stops the rows (dropping their servers) and still drops the database.
    let result = tokio::select! {
        result = run(&lab, &cli, &sizes, &mut notes) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let keep = cli.keep_db;
    let name = lab.name.clone();
    if keep {
        eprintln!("kept database {name}");
    } else if let Err(error) = lab.drop_database().await {
        eprintln!("could not drop {name}: {error:#}");
    }
    let figures = result?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut out = format!(
        "Run of {date}, {:.1} min: `{command}`\n\nMachine: {machine}\n\n",
        started.elapsed().as_secs_f64() / 60.0
    );
    out.push_str(&report::table(&figures));
    out.push_str("\nSet-up:\n\n");
    for note in &notes {
        out.push_str(&format!("- {note}\n"));
    }
    out.push_str("\nPer round:\n\n");
    out.push_str(&report::details(&figures));
    println!("{out}");
    if let Some(path) = &cli.out {
        std::fs::write(path, &out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn run(
    lab: &Lab,
    cli: &Cli,
    sizes: &Sizes,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Figure>> {
    let wants = |row: &str| cli.rows.is_empty() || cli.rows.iter().any(|r| r == row);
    let mut figures = Vec::new();
    let mut memory = Vec::new();
    let step = |name: &str, memory: &mut Vec<String>| {
        memory.push(format!("after {name}: {}", memory_line()));
        eprintln!("{name} done ({})", memory_line());
    };

    // First, while the queue is empty: the SMTP server takes ~50 ms per message here.
    if wants("email") {
        eprintln!("row email");
        if let Some(figure) = rows::email(lab, sizes).await? {
            figures.push(figure);
        }
        step("email", &mut memory);
    }
    if wants("verify") || wants("verify_http") {
        let started = Instant::now();
        let world = lab.world("Snel BV", sizes.signers).await?;
        let limit_pool = lab.new_pool(lab.settings.database.max_connections).await?;
        let limit = baselines::LoadAppend::prepare(limit_pool, sizes.baseline_aggregates).await?;
        notes.push(format!(
            "sign-in tenant with {} users (password + phone) and the raw-SQL table of {} streams × 10 events in {:.1} s",
            sizes.signers,
            sizes.baseline_aggregates,
            started.elapsed().as_secs_f64()
        ));
        if wants("verify") {
            eprintln!("row verify");
            figures.push(rows::verify(lab, sizes, &world, &limit, false).await?);
            step("verify", &mut memory);
        }
        if wants("verify_http") {
            eprintln!("row verify_http");
            figures.push(rows::verify(lab, sizes, &world, &limit, true).await?);
            step("verify_http", &mut memory);
        }
    }
    if wants("link") {
        eprintln!("row link");
        figures.push(rows::link(lab, sizes).await?);
        step("link", &mut memory);
    }
    if wants("lag") {
        eprintln!("row lag");
        figures.push(rows::lag(lab, sizes).await?);
        step("lag", &mut memory);
    }
    let mut emails = Vec::new();
    if wants("reads") || wants("history") || wants("rebuild") {
        eprintln!("big tenant: {} users", sizes.big_users);
        let (big, note) = history::big_tenant(lab, sizes.signers, sizes.big_users).await?;
        notes.push(note);
        emails.clone_from(&big.emails);
        let started = Instant::now();
        let applied = lab.run_projections().await?;
        notes.push(format!(
            "projections caught up with {applied} event applications in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        if wants("reads") {
            eprintln!("row reads");
            figures.push(rows::reads(lab, sizes, &big.emails).await?);
            step("reads", &mut memory);
        }
        if wants("rebuild") {
            // Before the bulk history: a rebuild of a million events takes ten minutes here.
            eprintln!("row rebuild");
            figures.push(rows::rebuild(lab, sizes).await?);
            step("rebuild", &mut memory);
        }
        if wants("history") {
            eprintln!("loading history up to {} events", sizes.history_events);
            let note = history::load_history(lab, &big, sizes.history_events).await?;
            notes.push(note.clone());
            eprintln!("row history");
            let fresh = lab.world("Nieuw BV", sizes.signers).await?;
            figures.extend(rows::history(lab, sizes, &big.world, &fresh, &note).await?);
            step("history", &mut memory);
        }
    }
    if wants("memory") {
        let peak = status_kib("VmHWM").unwrap_or(0);
        #[expect(clippy::cast_precision_loss, reason = "a size")]
        let peak_mib = peak as f64 / 1024.0;
        memory.push(format!("at the end: {}", memory_line()));
        figures.push(Figure {
            id: "memory",
            title: "peak memory (VmHWM) of this process: the service in-process, \
                    together with the harness, its set-up and its load generators"
                .to_owned(),
            unit: "MiB",
            service: vec![peak_mib],
            limit_title: "–".to_owned(),
            limit: Vec::new(),
            ratios: Vec::new(),
            goal: Goal::Report,
            details: memory,
        });
        eprintln!("row memory: finteqx serve");
        match rows::serve_memory(lab, sizes, &emails).await {
            Ok(Some((peak, line))) => figures.push(Figure {
                id: "memory_serve",
                title: "peak memory (VmHWM) of a separate `finteqx serve` under the read load"
                    .to_owned(),
                unit: "MiB",
                service: vec![peak],
                limit_title: "–".to_owned(),
                limit: Vec::new(),
                ratios: Vec::new(),
                goal: Goal::Report,
                details: vec![line],
            }),
            Ok(None) => notes.push(
                "memory_serve skipped: no release `finteqx` binary beside this one".to_owned(),
            ),
            Err(error) => notes.push(format!("memory_serve failed: {error:#}")),
        }
    }
    Ok(figures)
}

/// A line from /proc/self/status in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn memory_line() -> String {
    format!(
        "VmRSS {} MiB, VmHWM {} MiB, load average {}",
        status_kib("VmRSS").unwrap_or(0) / 1024,
        status_kib("VmHWM").unwrap_or(0) / 1024,
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    )
}

async fn machine(lab: &Lab) -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(
            || "?".to_owned(),
            |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0),
        );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let postgres: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&lab.harness)
        .await
        .unwrap_or_default();
    let postgres = postgres.split(" on ").next().unwrap_or_default().to_owned();
    format!("{cores} cores ({cpu}), {memory} RAM, {postgres} (server defaults), service in-process")
}
