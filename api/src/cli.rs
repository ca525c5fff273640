//! The operator CLI: the same binary serves, migrates and administers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use domain::ids::{TenantId, UserId};
use domain::metadata::ActorRole;
use domain::user::ErasureReason;
use domain::values::{DisplayName, EmailAddress, Locale, Role};

use crate::application::{NewUser, NewUserSignIn};
use crate::configuration::Settings;
use crate::executor::CommandContext;
use crate::http::auth::{StaffRole, issue_staff_token, revoke_staff_token};
use crate::startup::{Application, Database, build_commands, shutdown_signal};
use crate::workers::checkpoints::{self, CheckpointSigner};

/// FinteQX Access: sign-in security for the FinteQX platform.
#[derive(Debug, Parser)]
#[command(name = "finteqx", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command writes its data to standard output (an export without `--out`), so
    /// that logs must go to standard error instead.
    pub fn writes_data_to_stdout(&self) -> bool {
        matches!(
            &self.command,
            Command::Audit {
                action: AuditAction::Export { out: None, .. }
            }
        )
    }
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
    /// Tamper evidence: export the log, verify an export offline, sign checkpoints, keys.
    Audit {
        /// What to do.
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Personal-data keys (ADR-0011).
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Operator actions on users.
    Users {
        /// What to do.
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Provisions tenants.
    Tenants {
        /// What to do.
        #[command(subcommand)]
        action: TenantsAction,
    },
    /// Staff bearer tokens for support, auditors and operators (stored hashed).
    Tokens {
        /// What to do.
        #[command(subcommand)]
        action: TokensAction,
    },
}

/// `finteqx tenants ...`
#[derive(Debug, Subcommand)]
pub enum TenantsAction {
    /// Registers a tenant and creates its first administrator (who receives a welcome mail
    /// with a set-password link).
    Register {
        /// The tenant's display name.
        #[arg(long)]
        name: String,
        /// nl or en.
        #[arg(long, default_value = "nl")]
        locale: String,
        /// The first administrator's e-mail address.
        #[arg(long)]
        admin_email: String,
        /// The first administrator's name.
        #[arg(long)]
        admin_name: String,
    },
}

/// `finteqx tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensAction {
    /// Issues a token and prints it once.
    Issue {
        /// support, auditor or operator.
        #[arg(long)]
        role: String,
        /// Who holds it (a name or ticket; recorded).
        #[arg(long)]
        holder: String,
    },
    /// Revokes a token by its id.
    Revoke {
        /// The token id printed at issue.
        token_id: uuid::Uuid,
    },
}

/// `finteqx keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Re-wraps every person's data key under the current master key, after the old master key
    /// moved to `previous_data_key_encryption_keys`.
    Rewrap,
}

/// `finteqx users ...`
#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Erases a person (AVG/GDPR): records who and why, destroys their data key, frees their
    /// e-mail address. Repeating it finishes an interrupted erasure.
    Forget {
        /// The tenant.
        #[arg(long)]
        tenant: TenantId,
        /// The user.
        #[arg(long)]
        user: UserId,
        /// data_subject_request, account_closed or retention_expired.
        #[arg(long, value_parser = parse_erasure_reason)]
        reason: ErasureReason,
    },
}

fn parse_erasure_reason(input: &str) -> Result<ErasureReason, String> {
    serde_json::from_value(serde_json::Value::String(input.to_owned()))
        .map_err(|_| "use data_subject_request, account_closed or retention_expired".to_owned())
}

/// `finteqx audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Writes the verifiable NDJSON export of the whole log or one tenant: events with their
    /// hashes, then the signed checkpoints.
    Export {
        /// Only this tenant's events and checkpoints.
        #[arg(long)]
        tenant: Option<String>,
        /// The file to write; standard output when omitted.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verifies an export offline; exits 1 naming the first broken global position.
    Verify {
        /// The export.
        file: PathBuf,
        /// A trusted public key (64 hex digits); repeatable. Defaults to the configured signing
        /// key's.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// An earlier export or file of checkpoint lines whose checkpoints must hold too;
        /// repeatable.
        #[arg(long = "checkpoints")]
        held_checkpoints: Vec<PathBuf>,
    },
    /// Brings the running hashes up to the end of the log and signs those that changed since
    /// their last checkpoint, now.
    Checkpoint,
    /// Prints the configured signing key's public key and key id, for auditors.
    PublicKey,
    /// Prints a new random signing key for `audit.signing_key`, and its public key.
    GenerateKey,
}

/// `finteqx projections ...`
#[derive(Debug, Subcommand)]
pub enum ProjectionsAction {
    /// Prints each projector's position, lag and stop reason.
    Status,
    /// Rebuilds a projection from position 0 into fresh tables while the service runs, then
    /// switches reads to them.
    Rebuild {
        /// login_page, settings_screen, notification_queue, sign_in_history or log_chain.
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
    // An auditor with the public key needs neither configuration nor database.
    if let Command::Audit {
        action:
            AuditAction::Verify {
                file,
                public_keys,
                held_checkpoints,
            },
    } = &cli.command
        && !public_keys.is_empty()
    {
        return verify_command(file, public_keys, held_checkpoints, None);
    }
    let mut settings = Settings::load(&Settings::default_dir())?;
    match cli.command {
        Command::Serve { port } => {
            if let Some(port) = port {
                settings.application.port = port;
            }
            let database = Database::connect(&settings).await?;
            // Everything the service runs uses the runtime role; the owner pool only migrated.
            let pool = database.runtime_pool(&settings).await?;
            let application = Application::build(&settings, pool.clone()).await?;
            let signer = CheckpointSigner::from_settings(&settings.audit)
                .context("audit.signing_key (APP_AUDIT__SIGNING_KEY)")?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let checkpointer = tokio::spawn(checkpoints::run_until(
                pool.clone(),
                signer.clone(),
                Duration::from_secs(settings.audit.checkpoint_interval_seconds),
                stopped.clone(),
            ));
            let (sender, delivery_config) =
                crate::workers::delivery::from_settings(&settings.email)?;
            let delivery = crate::workers::delivery::DeliveryWorker::new(
                pool.clone(),
                sender,
                application.commands(),
                delivery_config,
            );
            let mut delivery_stopped = stopped.clone();
            let deliverer = tokio::spawn(delivery.run_until(async move {
                let _ = delivery_stopped.wait_for(|stop| *stop).await;
            }));
            let workers = tokio::spawn(projections::run_all_until(pool.clone(), stopped));
            tracing::info!(address = %application.local_addr()?, "serving");
            let served = application.run_until(shutdown_signal()).await;
            let _ = stop.send(true);
            if let Err(error) = workers.await {
                tracing::error!(error = %error, "projector workers ended abnormally");
            }
            if let Err(error) = deliverer.await {
                tracing::error!(error = %error, "the delivery worker ended abnormally");
            }
            if let Err(error) = checkpointer.await {
                tracing::error!(error = %error, "the checkpoint worker ended abnormally");
            }
            // The projectors have stopped: sign where they left the running hashes.
            if let Err(error) =
                checkpoints::write_checkpoints(&pool, &signer, chrono::Utc::now()).await
            {
                tracing::error!(error.message = %error, error.cause_chain = ?error, "the final log checkpoints could not be signed");
            }
            pool.close().await;
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
        Command::Audit { action } => audit_command(&settings, action).await,
        Command::Keys {
            action: KeysAction::Rewrap,
        } => {
            let database = Database::connect(&settings).await?;
            let commands = build_commands(&settings, database.pool.clone())?;
            let result = commands.personal_data().rewrap_all().await;
            database.close().await;
            println!(
                "re-wrapped {} data keys under the current master key",
                result?
            );
            Ok(())
        }
        Command::Tenants {
            action:
                TenantsAction::Register {
                    name,
                    locale,
                    admin_email,
                    admin_name,
                },
        } => {
            let database = Database::connect(&settings).await?;
            let commands = build_commands(&settings, database.pool.clone())?;
            let result =
                register_tenant(&commands, &name, &locale, &admin_email, &admin_name).await;
            database.close().await;
            let (tenant_id, user_id) = result?;
            println!("tenant {tenant_id} registered; administrator {user_id} gets a welcome mail");
            Ok(())
        }
        Command::Tokens { action } => {
            let database = Database::connect(&settings).await?;
            let result = tokens_command(&database.pool, action).await;
            database.close().await;
            result
        }
        Command::Users {
            action:
                UsersAction::Forget {
                    tenant,
                    user,
                    reason,
                },
        } => {
            let database = Database::connect(&settings).await?;
            let commands = build_commands(&settings, database.pool.clone())?;
            let context = operator_context(Some(tenant));
            let result = commands.forget_user(&context, tenant, user, reason).await;
            database.close().await;
            result?;
            println!("user {user} of tenant {tenant} forgotten");
            Ok(())
        }
    }
}

async fn audit_command(settings: &Settings, action: AuditAction) -> anyhow::Result<()> {
    let signer = CheckpointSigner::from_settings(&settings.audit)
        .context("audit.signing_key (APP_AUDIT__SIGNING_KEY)")?;
    match action {
        AuditAction::Export { tenant, out } => {
            let scope = match tenant {
                Some(tenant) => projections::chain::Scope::Tenant(
                    tenant
                        .parse()
                        .with_context(|| format!("--tenant {tenant} is not a tenant id"))?,
                ),
                None => projections::chain::Scope::WholeLog,
            };
            let database = Database::connect(settings).await?;
            let result = crate::audit::export_to(&database.pool, scope, out.as_deref()).await;
            database.close().await;
            let end = result?;
            if out.is_some() {
                println!(
                    "exported {} events and {} checkpoints of scope {scope}",
                    end.events, end.checkpoints
                );
            }
        }
        AuditAction::Verify {
            file,
            public_keys,
            held_checkpoints,
        } => {
            return verify_command(&file, &public_keys, &held_checkpoints, Some(&signer));
        }
        AuditAction::Checkpoint => {
            let database = Database::connect(settings).await?;
            let result = async {
                // Fold in what the log holds now, then sign it.
                projections::runner::run_to_end::<projections::log_chain::LogChain>(&database.pool)
                    .await?;
                anyhow::Ok(
                    checkpoints::write_checkpoints(&database.pool, &signer, chrono::Utc::now())
                        .await?,
                )
            }
            .await;
            database.close().await;
            println!("signed {} checkpoints", result?);
        }
        AuditAction::PublicKey => {
            println!(
                "{} key_id={}",
                hex::encode(signer.public_key().as_bytes()),
                signer.key_id()
            );
        }
        AuditAction::GenerateKey => {
            let seed: [u8; 32] = rand::random();
            let generated = CheckpointSigner::new(&hex::encode(seed).into())?;
            println!("signing_key: {}", hex::encode(seed));
            println!(
                "public_key: {} key_id={}",
                hex::encode(generated.public_key().as_bytes()),
                generated.key_id()
            );
        }
    }
    Ok(())
}

/// `finteqx audit verify`: prints the summary, or fails (exit code 1) naming the first broken
/// position.
fn verify_command(
    file: &std::path::Path,
    public_keys: &[String],
    held_checkpoints: &[PathBuf],
    configured: Option<&CheckpointSigner>,
) -> anyhow::Result<()> {
    let mut trusted = Vec::new();
    for key in public_keys {
        trusted.push(
            crate::audit::parse_public_key(key).with_context(|| format!("--public-key {key}"))?,
        );
    }
    if trusted.is_empty() {
        trusted.extend(configured.map(CheckpointSigner::public_key));
    }
    let summary = crate::audit::verify_file(file, &trusted, held_checkpoints)?;
    println!("{}", crate::audit::describe(&summary));
    Ok(())
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

fn operator_context(tenant_id: Option<TenantId>) -> CommandContext {
    CommandContext {
        actor_id: "cli".to_owned(),
        actor_role: ActorRole::Operator,
        on_behalf_of: None,
        tenant_id,
        correlation_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: chrono::Utc::now(),
    }
}

/// Registers a tenant and its first administrator (`finteqx tenants register`).
///
/// # Errors
/// A malformed argument, or the use cases' errors.
pub async fn register_tenant(
    commands: &crate::application::Commands,
    name: &str,
    locale: &str,
    admin_email: &str,
    admin_name: &str,
) -> anyhow::Result<(TenantId, UserId)> {
    let display_name = DisplayName::parse(name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let locale: Locale = locale
        .parse()
        .map_err(|e| anyhow::anyhow!("--locale: {e}"))?;
    let admin = NewUser {
        email: EmailAddress::parse(admin_email)
            .map_err(|e| anyhow::anyhow!("--admin-email: {e}"))?,
        display_name: DisplayName::parse(admin_name)
            .map_err(|e| anyhow::anyhow!("--admin-name: {e}"))?,
        role: Role::Administrator,
        locale,
        sign_in: NewUserSignIn::Sms,
    };
    let tenant_id = TenantId::from_uuid(uuid::Uuid::now_v7());
    let context = operator_context(Some(tenant_id));
    commands
        .register_tenant(&context, tenant_id, display_name, locale)
        .await?;
    let created = commands.create_user(&context, tenant_id, admin).await?;
    Ok((tenant_id, created.user_id))
}

async fn tokens_command(pool: &sqlx::PgPool, action: TokensAction) -> anyhow::Result<()> {
    match action {
        TokensAction::Issue { role, holder } => {
            let role = match role.as_str() {
                "support" => StaffRole::Support,
                "auditor" => StaffRole::Auditor,
                "operator" => StaffRole::Operator,
                other => anyhow::bail!("--role {other}: use support, auditor or operator"),
            };
            let (token_id, secret) = issue_staff_token(pool, role, &holder).await?;
            println!(
                "token {token_id} ({}) for {holder}; shown once:\n{secret}",
                role.as_str()
            );
        }
        TokensAction::Revoke { token_id } => {
            if !revoke_staff_token(pool, token_id).await? {
                anyhow::bail!("no live token {token_id}");
            }
            println!("token {token_id} revoked");
        }
    }
    Ok(())
}
