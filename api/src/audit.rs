//! The auditor's commands behind `finteqx audit ...` (ADR-0013): write a verifiable export, verify
//! one offline, and name the keys to trust.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use tokio::io::{AsyncWrite, BufWriter};

use projections::audit::{AuditError, export_verifiable};
use projections::chain::{Scope, SignedCheckpoint};
use projections::verify::{ExportEnd, ExportLine, Verifier, VerifyError, VerifySummary};

/// Why `finteqx audit verify` did not accept an export.
#[derive(Debug, thiserror::Error)]
pub enum VerifyFileError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of held checkpoints has a line that is not an export line.
    #[error("line {line} of {path} is not an export line")]
    HeldCheckpoints {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: u64,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The export is malformed or shows tampering.
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// A public key that is not 32 bytes of hex, or not a valid Ed25519 point.
#[derive(Debug, thiserror::Error)]
#[error("a public key is 64 hex digits of a valid Ed25519 key")]
pub struct InvalidPublicKey;

/// Parses a public key given as 64 hex digits.
///
/// # Errors
/// [`InvalidPublicKey`].
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, InvalidPublicKey> {
    let mut bytes = [0; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| InvalidPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| InvalidPublicKey)
}

/// Writes the verifiable export of `scope` to `out`, or to standard output.
///
/// # Errors
/// When the file cannot be created or the export fails; a partial file is then left behind and
/// must be discarded.
pub async fn export_to(
    pool: &sqlx::PgPool,
    scope: Scope,
    out: Option<&Path>,
) -> anyhow::Result<ExportEnd> {
    use anyhow::Context as _;
    match out {
        Some(path) => {
            let file = tokio::fs::File::create(path)
                .await
                .with_context(|| format!("cannot create {}", path.display()))?;
            export_through(pool, scope, file).await
        }
        None => export_through(pool, scope, tokio::io::stdout()).await,
    }
    .context("the export failed")
}

async fn export_through<W: AsyncWrite + Unpin>(
    pool: &sqlx::PgPool,
    scope: Scope,
    writer: W,
) -> Result<ExportEnd, AuditError> {
    let mut writer = BufWriter::new(writer);
    export_verifiable(pool, scope, &mut writer).await
}

/// Verifies the export in `path` against `trusted_keys`, with the checkpoints an auditor kept in
/// `held` (earlier exports, or files of checkpoint lines) holding as well.
///
/// # Errors
/// [`VerifyFileError::Verify`] naming the first broken position (or the malformed line), or a
/// read error.
pub fn verify_file(
    path: &Path,
    trusted_keys: &[VerifyingKey],
    held: &[PathBuf],
) -> Result<VerifySummary, VerifyFileError> {
    let mut verifier = Verifier::new(trusted_keys.iter().copied());
    for held_path in held {
        verifier.hold_checkpoints(read_checkpoints(held_path)?);
    }
    for line in open_lines(path)? {
        let line = line.map_err(|source| VerifyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        verifier.feed(&line)?;
    }
    Ok(verifier.finish()?)
}

fn open_lines(path: &Path) -> Result<std::io::Lines<BufReader<File>>, VerifyFileError> {
    let file = File::open(path).map_err(|source| VerifyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(BufReader::new(file).lines())
}

/// The checkpoint lines of a file; other export lines are skipped.
fn read_checkpoints(path: &Path) -> Result<Vec<SignedCheckpoint>, VerifyFileError> {
    let mut checkpoints = Vec::new();
    for (number, line) in (1_u64..).zip(open_lines(path)?) {
        let line = line.map_err(|source| VerifyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parsed =
            ExportLine::parse(&line).map_err(|source| VerifyFileError::HeldCheckpoints {
                path: path.to_owned(),
                line: number,
                source,
            })?;
        if let ExportLine::Checkpoint(checkpoint) = parsed {
            checkpoints.push(checkpoint);
        }
    }
    Ok(checkpoints)
}

/// A human summary of a successful verification, as the CLI prints it.
pub fn describe(summary: &VerifySummary) -> String {
    let mut text = format!(
        "verified {} events in {} streams of scope {}",
        summary.events, summary.streams, summary.scope
    );
    match &summary.last_checkpoint {
        Some(last) => text.push_str(&format!(
            "; {} signed checkpoints hold, the latest at position {} ({} events, signed {})",
            summary.checkpoints,
            last.position,
            last.events,
            last.signed_at.to_rfc3339()
        )),
        None => text.push_str("; no signed checkpoint covers them"),
    }
    if summary.anchored_events > 0 {
        text.push_str(&format!(
            "; {} events chain to a predecessor of another tenant (verify the whole log for those)",
            summary.anchored_events
        ));
    }
    if summary.unsigned_events > 0 {
        text.push_str(&format!(
            "; warning: the last {} events are not covered by a signed checkpoint yet",
            summary.unsigned_events
        ));
    }
    text
}
