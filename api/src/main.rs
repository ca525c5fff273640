//! The `finteqx` binary: parse the command line, set up tracing, run.

use clap::Parser as _;

use api::cli::{Cli, run};
use api::telemetry::{get_subscriber, init_subscriber};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let json =
        std::env::var("APP_ENVIRONMENT").is_ok_and(|environment| environment == "production");
    let cli = Cli::parse();
    let subscriber = if cli.writes_data_to_stdout() {
        get_subscriber("info,sqlx=warn", json, std::io::stderr)
    } else {
        get_subscriber("info,sqlx=warn", json, std::io::stdout)
    };
    init_subscriber(subscriber)?;
    run(cli).await
}
