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
            tracing::info!(address = %application.local_addr()?, "serving");
            let served = application.run_until(shutdown_signal()).await;
            database.close().await;
            served
        }
        Command::Migrate => {
            let database = Database::connect(&settings).await?;
            tracing::info!("migrations applied");
            database.close().await;
            Ok(())
        }
    }
}
