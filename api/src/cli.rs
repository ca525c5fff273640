//! The operator CLI: the same binary serves, migrates and administers.

use clap::{Parser, Subcommand};

use crate::configuration::Settings;
use crate::startup::{Application, Database, shutdown_signal};

/// FinteQX Access: sign-in security for the FinteQX platform.
#[derive(Debug, Parser)]
#[command(name = "finteqx", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP service (migrates first). Without DATABASE_URL it starts a private
    /// PostgreSQL from the machine's binaries.
    Serve {
        /// Port to listen on (overrides APP_APPLICATION__PORT).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Applies the database migrations and exits.
    Migrate,
    /// Read models: status, rebuild, verify, resume.
    Projections {
        /// What to do.
        #[command(subcommand)]
        action: ProjectionsAction,
    },
}

/// `finteqx projections ...`
#[derive(Debug, Subcommand)]
pub enum ProjectionsAction {
    /// Prints each projector's position, lag and stop reason.
    Status,
    /// Rebuilds a projection from position 0 into fresh tables while the service runs, then
    /// switches reads to them.
    Rebuild {
        /// login_page, settings_screen, notification_queue or sign_in_history.
        name: String,
    },
    /// Rebuilds into scratch tables and compares them with the live ones; exits 1 with the
    /// differing rows when they differ.
    Verify {
        /// One projector; all when omitted.
        name: Option<String>,
    },
    /// Clears a projector's stop after a fix, so it retries the event it stopped at.
    Resume {
        /// The projector.
        name: String,
    },
}

/// Runs the CLI.
///
/// # Errors
/// Whatever the chosen command fails with; `main` prints it with its causes.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(&Settings::default_dir())?;
    match cli.command {
        Command::Serve { port } => {
            if let Some(port) = port {
                settings.application.port = port;
            }
            let database = Database::connect(&settings).await?;
            let application = Application::build(&settings, database.pool.clone()).await?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let workers = tokio::spawn(projections::run_all_until(database.pool.clone(), stopped));
            tracing::info!(address = %application.local_addr()?, "serving");
            let served = application.run_until(shutdown_signal()).await;
            let _ = stop.send(true);
            if let Err(error) = workers.await {
                tracing::error!(error = %error, "projector workers ended abnormally");
            }
            database.close().await;
            served
        }
        Command::Migrate => {
            let database = Database::connect(&settings).await?;
            tracing::info!("migrations applied");
            database.close().await;
            Ok(())
        }
        Command::Projections { action } => {
            let database = Database::connect(&settings).await?;
            let result = projections_command(&database.pool, action).await;
            database.close().await;
            result
        }
    }
}

async fn projections_command(pool: &sqlx::PgPool, action: ProjectionsAction) -> anyhow::Result<()> {
    match action {
        ProjectionsAction::Status => {
            for status in projections::runner::statuses(pool).await? {
                println!("{}", serde_json::to_string(&status)?);
            }
        }
        ProjectionsAction::Rebuild { name } => {
            let report = projections::rebuild_named(pool, &name).await?;
            println!("rebuilt {} from {} events", report.projector, report.events);
        }
        ProjectionsAction::Verify { name } => {
            let names: Vec<String> = name.map_or_else(
                || projections::PROJECTORS.map(str::to_owned).to_vec(),
                |name| vec![name],
            );
            let mut equal = true;
            for name in names {
                let report = projections::verify_named(pool, &name).await?;
                if report.is_equal() {
                    println!(
                        "{name}: rebuild equals live at position {}",
                        report.at_position
                    );
                } else {
                    equal = false;
                    println!(
                        "{name}: rebuild differs from live at position {}",
                        report.at_position
                    );
                    for difference in &report.differences {
                        println!(
                            "  {} only in {}: {}",
                            difference.table, difference.side, difference.row
                        );
                    }
                }
            }
            if !equal {
                anyhow::bail!("a rebuild differs from the live tables");
            }
        }
        ProjectionsAction::Resume { name } => {
            if !projections::runner::resume(pool, &name).await? {
                anyhow::bail!("no projector named {name}");
            }
            println!("{name} resumed");
        }
    }
    Ok(())
}
