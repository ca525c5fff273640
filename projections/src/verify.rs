//! Offline verification of an audit export (ADR-0013): no database, only the export's lines and
//! the public keys the auditor trusts.
//!
//! An export is NDJSON: a header line `{"export": {"format": 1, "scope": ...}}`, the scope's
//! events in log order (one [`ExportedEvent`] per line), its signed checkpoints
//! (`{"checkpoint": {...}}`), and an end line `{"end": {...}}` with the counts. The verifier
//! checks, per stream, that sequences are contiguous and that each event's hash recomputed from
//! its content and its predecessor's hash equals the stored one; over the whole export, that the
//! running hash and event count at each checkpoint equal the signed ones; and that each signature
//! verifies under a trusted key. It reports the first broken place in log order.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::AuditEvent;
use crate::chain::{
    ChainedFields, Checkpoint, Digest, Scope, SignedCheckpoint, fold_running, key_id,
};

/// The export format this verifier reads.
pub const EXPORT_FORMAT: u32 = 1;

/// The first line of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT`].
    pub format: u32,
    /// Whose events: `*` or a tenant id.
    pub scope: Scope,
}

/// The last line of an export: what it holds, so that a truncated file is noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEnd {
    /// Event lines.
    pub events: u64,
    /// Checkpoint lines.
    pub checkpoints: u64,
    /// The ids of the keys that signed the checkpoints, for the auditor to match with the public
    /// keys they trust.
    pub key_ids: Vec<String>,
}

/// One event line of an export: the stored event, and in a tenant's export the hash of its
/// predecessor when that belongs to another tenant (an e-mail or domain claim that moved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedEvent {
    /// The event as stored, with its hash.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The stored hash of the stream's previous event, given only when that event is outside the
    /// export's scope. The scope's signed running hash still covers this event's own hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_predecessor_hash: Option<Digest>,
}

/// One line of an export.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportLine {
    /// `{"export": {...}}`.
    Header(ExportHeader),
    /// An event.
    Event(Box<ExportedEvent>),
    /// `{"checkpoint": {...}}`.
    Checkpoint(SignedCheckpoint),
    /// `{"end": {...}}`.
    End(ExportEnd),
}

impl ExportLine {
    /// Parses one line.
    ///
    /// # Errors
    /// A [`serde_json::Error`] when the line is not JSON or not one of the four shapes.
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        let value: Value = serde_json::from_str(line)?;
        if let Value::Object(map) = &value
            && map.len() == 1
            && let Some((key, inner)) = map.iter().next()
        {
            match key.as_str() {
                "export" => return Ok(Self::Header(serde_json::from_value(inner.clone())?)),
                "checkpoint" => {
                    return Ok(Self::Checkpoint(serde_json::from_value(inner.clone())?));
                }
                "end" => return Ok(Self::End(serde_json::from_value(inner.clone())?)),
                _ => {}
            }
        }
        Ok(Self::Event(Box::new(serde_json::from_value(value)?)))
    }

    /// The line's JSON, without the line feed.
    ///
    /// # Errors
    /// A [`serde_json::Error`] if a value cannot be encoded.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            Self::Header(header) => serde_json::to_string(&serde_json::json!({ "export": header })),
            Self::Event(event) => serde_json::to_string(event),
            Self::Checkpoint(checkpoint) => {
                serde_json::to_string(&serde_json::json!({ "checkpoint": checkpoint }))
            }
            Self::End(end) => serde_json::to_string(&serde_json::json!({ "end": end })),
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifySummary {
    /// Whose events.
    pub scope: Scope,
    /// Events verified.
    pub events: u64,
    /// Streams seen.
    pub streams: u64,
    /// Events whose predecessor lies outside the export (tenant exports only).
    pub anchored_events: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// The latest verified checkpoint.
    pub last_checkpoint: Option<Checkpoint>,
    /// Events after the latest verified checkpoint: their stream chains hold, but no signature
    /// vouches for them yet, so their removal from the end of a stream would go unnoticed.
    pub unsigned_events: u64,
}

/// Why an export does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log was tampered with: the first broken place, in log order.
    #[error("tamper evidence broken at global position {position}: {reason}")]
    Broken {
        /// The global position of the broken event or checkpoint.
        position: i64,
        /// What is broken.
        reason: Broken,
    },
    /// The export itself is not a well-formed export.
    #[error("line {line} of the export: {reason}")]
    Malformed {
        /// The line, from 1.
        line: u64,
        /// What is wrong with it.
        reason: Malformed,
    },
}

fn since_text(since: Option<i64>) -> String {
    since.map_or_else(
        || "the start of the export".to_owned(),
        |position| format!("the checkpoint at position {position}"),
    )
}

/// What is broken at a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// The content recomputes to another hash than the stored one.
    #[error("its content does not match its hash: the event was altered")]
    AlteredContent,
    /// The first event of a stream in the export is not sequence 1 and names no foreign
    /// predecessor.
    #[error("it is event {sequence} of stream {stream}, whose predecessor is missing")]
    MissingPredecessor {
        /// `aggregate_type/aggregate_id`.
        stream: String,
        /// Its sequence.
        sequence: i64,
    },
    /// A stream skips sequences.
    #[error(
        "stream {stream} jumps from event {previous} to event {sequence}: events in between are missing"
    )]
    SequenceGap {
        /// `aggregate_type/aggregate_id`.
        stream: String,
        /// The sequence before the gap.
        previous: i64,
        /// This event's sequence.
        sequence: i64,
    },
    /// The event comes before an earlier line's event in log order `(tx_id, global_position)`.
    #[error(
        "it comes after position {after} although it precedes it in log order: the log was reordered"
    )]
    OutOfLogOrder {
        /// The position of the line before it.
        after: i64,
    },
    /// A stream goes back or repeats a sequence.
    #[error(
        "stream {stream} goes from event {previous} back to event {sequence}: the stream was reordered"
    )]
    StreamOutOfOrder {
        /// `aggregate_type/aggregate_id`.
        stream: String,
        /// The sequence before.
        previous: i64,
        /// This event's sequence.
        sequence: i64,
    },
    /// The running hash or count signed at this position differs from the export's.
    #[error(
        "the running hash signed here covers {signed_events} events, the export's {exported_events}, and they differ: an event after {} was removed, inserted or reordered",
        since_text(*.since)
    )]
    CheckpointMismatch {
        /// The previous checkpoint that verified.
        since: Option<i64>,
        /// The signed event count.
        signed_events: i64,
        /// The export's event count at this position.
        exported_events: i64,
    },
    /// A checkpoint was signed at this position, but the export has no event there.
    #[error("a checkpoint was signed at this position but the export has no such event: events after {} were removed", since_text(*.since))]
    CheckpointedEventMissing {
        /// The previous checkpoint that verified.
        since: Option<i64>,
    },
    /// A checkpoint's signature does not verify under its key.
    #[error("the checkpoint's signature does not verify")]
    BadSignature,
    /// A checkpoint names a key the auditor does not trust.
    #[error("the checkpoint is signed by key {key_id}, which is not trusted")]
    UntrustedKey {
        /// The key's id.
        key_id: String,
    },
}

/// What makes an export malformed.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    /// Not JSON, or not one of the line shapes.
    #[error("not an export line")]
    Json(#[source] serde_json::Error),
    /// The first line is not the header.
    #[error("the export does not start with its header line")]
    MissingHeader,
    /// Another format than [`EXPORT_FORMAT`].
    #[error("export format {0} is not supported")]
    UnsupportedFormat(u32),
    /// A header after the first line.
    #[error("a second header line")]
    SecondHeader,
    /// A line after the end line.
    #[error("a line after the end line")]
    AfterEnd,
    /// No end line: the export is cut short.
    #[error("the export has no end line: it is truncated")]
    MissingEnd,
    /// The counts of the end line differ from the lines read.
    #[error(
        "the end line counts {listed_events} events and {listed_checkpoints} checkpoints, the export has {events} and {checkpoints}"
    )]
    CountMismatch {
        /// Events listed.
        listed_events: u64,
        /// Checkpoints listed.
        listed_checkpoints: u64,
        /// Events read.
        events: u64,
        /// Checkpoints read.
        checkpoints: u64,
    },
    /// A checkpoint of another scope than the export's.
    #[error("a checkpoint of scope {found} in an export of scope {expected}")]
    ForeignCheckpoint {
        /// The export's scope.
        expected: Scope,
        /// The checkpoint's.
        found: Scope,
    },
    /// A foreign predecessor in a whole-log export, or for an event whose predecessor is in it.
    #[error("a foreign predecessor hash where the predecessor is in the export")]
    NeedlessForeignPredecessor,
}

/// Where an event left the chain: its place in log order, the scope's event count and running
/// hash after it.
#[derive(Debug, Clone, Copy)]
struct Fold {
    at: (u64, i64),
    events: i64,
    running: Digest,
}

/// Checks an export line by line; [`Verifier::finish`] gives the verdict.
#[derive(Debug)]
pub struct Verifier {
    trusted: BTreeMap<String, VerifyingKey>,
    line: u64,
    header: Option<ExportHeader>,
    end: Option<ExportEnd>,
    last_at: Option<(u64, i64)>,
    /// Per stream: the last sequence and its stored hash.
    streams: BTreeMap<(String, String), (i64, Digest)>,
    running: Digest,
    events: u64,
    anchored: u64,
    folds: Vec<Fold>,
    exported_checkpoints: Vec<SignedCheckpoint>,
    held_checkpoints: Vec<SignedCheckpoint>,
    /// The first broken event; events after it are counted, not checked.
    broken: Option<((u64, i64), Broken)>,
}

impl Verifier {
    /// A verifier that accepts checkpoints signed by any of `trusted_keys`.
    pub fn new(trusted_keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            trusted: trusted_keys
                .into_iter()
                .map(|key| (key_id(&key), key))
                .collect(),
            line: 0,
            header: None,
            end: None,
            last_at: None,
            streams: BTreeMap::new(),
            running: Digest::GENESIS,
            events: 0,
            anchored: 0,
            folds: Vec::new(),
            exported_checkpoints: Vec::new(),
            held_checkpoints: Vec::new(),
            broken: None,
        }
    }

    /// Adds checkpoints the auditor kept from earlier exports. Those of the export's scope must
    /// hold too, so deleting recent checkpoints from the database does not hide a removed tail.
    pub fn hold_checkpoints(&mut self, checkpoints: impl IntoIterator<Item = SignedCheckpoint>) {
        self.held_checkpoints.extend(checkpoints);
    }

    fn malformed(&self, reason: Malformed) -> VerifyError {
        VerifyError::Malformed {
            line: self.line,
            reason,
        }
    }

    /// Reads the next line.
    ///
    /// # Errors
    /// [`VerifyError::Malformed`] when the line does not belong in an export at this place.
    /// Tampering is reported by [`Verifier::finish`], once the checkpoints are known.
    pub fn feed(&mut self, line: &str) -> Result<(), VerifyError> {
        self.line += 1;
        let parsed =
            ExportLine::parse(line).map_err(|error| self.malformed(Malformed::Json(error)))?;
        if self.end.is_some() {
            return Err(self.malformed(Malformed::AfterEnd));
        }
        let Some(header) = self.header else {
            return match parsed {
                ExportLine::Header(header) if header.format == EXPORT_FORMAT => {
                    self.header = Some(header);
                    Ok(())
                }
                ExportLine::Header(header) => {
                    Err(self.malformed(Malformed::UnsupportedFormat(header.format)))
                }
                _ => Err(self.malformed(Malformed::MissingHeader)),
            };
        };
        match parsed {
            ExportLine::Header(_) => return Err(self.malformed(Malformed::SecondHeader)),
            ExportLine::Event(event) => {
                self.events += 1;
                if self.broken.is_none() {
                    let at = (event.event.tx_id, event.event.global_position);
                    match self.check_event(header.scope, &event) {
                        Ok(Some(broken)) => self.broken = Some((at, broken)),
                        Ok(None) => {}
                        Err(reason) => return Err(self.malformed(reason)),
                    }
                }
            }
            ExportLine::Checkpoint(checkpoint) => {
                if checkpoint.checkpoint.scope != header.scope {
                    return Err(self.malformed(Malformed::ForeignCheckpoint {
                        expected: header.scope,
                        found: checkpoint.checkpoint.scope,
                    }));
                }
                self.exported_checkpoints.push(checkpoint);
            }
            ExportLine::End(end) => self.end = Some(end),
        }
        Ok(())
    }

    /// Checks one event against the chain so far and folds it in; `Ok(Some(_))` is tampering.
    fn check_event(
        &mut self,
        scope: Scope,
        exported: &ExportedEvent,
    ) -> Result<Option<Broken>, Malformed> {
        let event = &exported.event;
        let at = (event.tx_id, event.global_position);
        if let Some(last) = self.last_at
            && at <= last
        {
            return Ok(Some(Broken::OutOfLogOrder { after: last.1 }));
        }
        self.last_at = Some(at);
        let fields = ChainedFields {
            aggregate_type: &event.aggregate_type,
            aggregate_id: &event.aggregate_id,
            sequence: event.sequence,
            global_position: event.global_position,
            tx_id: event.tx_id,
            recorded_at: event.recorded_at,
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: &event.payload,
            metadata: &event.metadata,
        };
        if fields.has_multi_line_field() || event.sequence < 1 {
            // The database refuses both, so only an edit of the stored row or the export makes
            // them.
            return Ok(Some(Broken::AlteredContent));
        }
        let stream_name = || format!("{}/{}", event.aggregate_type, event.aggregate_id);
        let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let foreign = exported.foreign_predecessor_hash;
        if foreign.is_some() && scope == Scope::WholeLog {
            return Err(Malformed::NeedlessForeignPredecessor);
        }
        let previous = match (self.streams.get(&key), foreign) {
            (Some(&(last, _)), Some(_)) if event.sequence == last + 1 => {
                return Err(Malformed::NeedlessForeignPredecessor);
            }
            (Some(&(last, hash)), None) if event.sequence == last + 1 => hash,
            (Some(&(last, _)), _) if event.sequence <= last => {
                return Ok(Some(Broken::StreamOutOfOrder {
                    stream: stream_name(),
                    previous: last,
                    sequence: event.sequence,
                }));
            }
            (Some(&(last, _)), None) => {
                return Ok(Some(Broken::SequenceGap {
                    stream: stream_name(),
                    previous: last,
                    sequence: event.sequence,
                }));
            }
            (None, Some(_)) if event.sequence == 1 => {
                return Err(Malformed::NeedlessForeignPredecessor);
            }
            (None, None) if event.sequence == 1 => Digest::GENESIS,
            (None, None) => {
                return Ok(Some(Broken::MissingPredecessor {
                    stream: stream_name(),
                    sequence: event.sequence,
                }));
            }
            (_, Some(anchor)) => {
                self.anchored += 1;
                anchor
            }
        };
        if fields.hash(&previous) != event.hash {
            return Ok(Some(Broken::AlteredContent));
        }
        self.streams.insert(key, (event.sequence, event.hash));
        self.running = fold_running(&self.running, &event.hash);
        self.folds.push(Fold {
            at,
            events: i64::try_from(self.folds.len() + 1).unwrap_or(i64::MAX),
            running: self.running,
        });
        Ok(None)
    }

    /// The verdict, once every line was fed.
    ///
    /// # Errors
    /// [`VerifyError::Broken`] with the first broken position in log order, or
    /// [`VerifyError::Malformed`] for an export without header or end line, or whose end line
    /// disagrees with its content.
    pub fn finish(self) -> Result<VerifySummary, VerifyError> {
        let Some(header) = self.header else {
            return Err(self.malformed(Malformed::MissingHeader));
        };
        let Some(end) = &self.end else {
            return Err(self.malformed(Malformed::MissingEnd));
        };
        let checkpoint_lines = self.exported_checkpoints.len() as u64;
        if end.events != self.events || end.checkpoints != checkpoint_lines {
            return Err(self.malformed(Malformed::CountMismatch {
                listed_events: end.events,
                listed_checkpoints: end.checkpoints,
                events: self.events,
                checkpoints: checkpoint_lines,
            }));
        }
        let mut checkpoints: Vec<&SignedCheckpoint> = self
            .exported_checkpoints
            .iter()
            .chain(
                self.held_checkpoints
                    .iter()
                    .filter(|held| held.checkpoint.scope == header.scope),
            )
            .collect();
        checkpoints.sort_by(|a, b| {
            (a.checkpoint.tx_id, a.checkpoint.position, &a.key_id).cmp(&(
                b.checkpoint.tx_id,
                b.checkpoint.position,
                &b.key_id,
            ))
        });
        checkpoints.dedup();
        let limit = self.broken.as_ref().map(|(at, _)| *at);
        let mut last_good: Option<(Checkpoint, Fold)> = None;
        let mut verified = 0_u64;
        for signed in checkpoints {
            let checkpoint = signed.checkpoint;
            let at = (checkpoint.tx_id, checkpoint.position);
            if limit.is_some_and(|limit| at >= limit) {
                break;
            }
            let broken = |reason| VerifyError::Broken {
                position: checkpoint.position,
                reason,
            };
            let Some(key) = self.trusted.get(&signed.key_id) else {
                return Err(broken(Broken::UntrustedKey {
                    key_id: signed.key_id.clone(),
                }));
            };
            if !signed.is_signed_by(key) {
                return Err(broken(Broken::BadSignature));
            }
            let since = last_good.map(|(good, _)| good.position);
            let fold = match self.folds.binary_search_by_key(&at, |fold| fold.at) {
                Ok(index) => self.folds[index],
                Err(_) => return Err(broken(Broken::CheckpointedEventMissing { since })),
            };
            if fold.events != checkpoint.events || fold.running != checkpoint.running_hash {
                return Err(broken(Broken::CheckpointMismatch {
                    since,
                    signed_events: checkpoint.events,
                    exported_events: fold.events,
                }));
            }
            verified += 1;
            last_good = Some((checkpoint, fold));
        }
        if let Some(((_, position), reason)) = self.broken {
            return Err(VerifyError::Broken { position, reason });
        }
        let signed_events =
            last_good.map_or(0, |(_, fold)| u64::try_from(fold.events).unwrap_or(0));
        Ok(VerifySummary {
            scope: header.scope,
            events: self.events,
            streams: self.streams.len() as u64,
            anchored_events: self.anchored,
            checkpoints: verified,
            last_checkpoint: last_good.map(|(checkpoint, _)| checkpoint),
            unsigned_events: self.events.saturating_sub(signed_events),
        })
    }
}

/// Verifies a whole export given as lines.
///
/// # Errors
/// As [`Verifier::feed`] and [`Verifier::finish`].
pub fn verify_export<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    trusted_keys: &[VerifyingKey],
) -> Result<VerifySummary, VerifyError> {
    let mut verifier = Verifier::new(trusted_keys.iter().copied());
    for line in lines {
        verifier.feed(line)?;
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use ed25519_dalek::{Signer as _, SigningKey};
    use serde_json::json;

    use super::*;

    const KEY: [u8; 32] = [9; 32];

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(1_795_773_260_000_000 + micros).unwrap()
    }

    /// A tiny log: tenant stream t (3 events) and user stream u (2 events), interleaved, with a
    /// checkpoint after the fourth event and one after the last.
    struct Log {
        events: Vec<AuditEvent>,
        checkpoints: Vec<SignedCheckpoint>,
    }

    fn event(stream: (&str, &str), sequence: i64, position: i64, body: &Value) -> AuditEvent {
        AuditEvent {
            global_position: position,
            tx_id: 1000 + u64::try_from(position).unwrap(),
            aggregate_type: stream.0.to_owned(),
            aggregate_id: stream.1.to_owned(),
            sequence,
            event_type: "Something".to_owned(),
            event_version: "1".to_owned(),
            payload: json!({ "Something": body }),
            metadata: json!({ "actor_id": "cli", "correlation_id": format!("c{position}") }),
            recorded_at: at(position),
            hash: Digest::GENESIS,
        }
    }

    fn rehash(events: &mut [AuditEvent]) {
        let mut heads: BTreeMap<(String, String), Digest> = BTreeMap::new();
        for event in events {
            let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
            let previous = heads.get(&key).copied().unwrap_or(Digest::GENESIS);
            event.hash = fields(event).hash(&previous);
            heads.insert(key, event.hash);
        }
    }

    fn fields(event: &AuditEvent) -> ChainedFields<'_> {
        ChainedFields {
            aggregate_type: &event.aggregate_type,
            aggregate_id: &event.aggregate_id,
            sequence: event.sequence,
            global_position: event.global_position,
            tx_id: event.tx_id,
            recorded_at: event.recorded_at,
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: &event.payload,
            metadata: &event.metadata,
        }
    }

    fn sign(events: &[AuditEvent], count: usize) -> SignedCheckpoint {
        let key = SigningKey::from_bytes(&KEY);
        let running = events[..count]
            .iter()
            .fold(Digest::GENESIS, |running, event| {
                fold_running(&running, &event.hash)
            });
        let last = &events[count - 1];
        let checkpoint = Checkpoint {
            scope: Scope::WholeLog,
            position: last.global_position,
            tx_id: last.tx_id,
            events: i64::try_from(count).unwrap(),
            running_hash: running,
            signed_at: at(100),
        };
        SignedCheckpoint {
            checkpoint,
            key_id: key_id(&key.verifying_key()),
            signature: key.sign(&checkpoint.message()).to_bytes(),
        }
    }

    fn log() -> Log {
        let (t, u) = (("tenant", "t"), ("user", "u"));
        let mut events = vec![
            event(t, 1, 1, &json!({ "name": "Akkermans" })),
            event(u, 1, 2, &json!({ "email": "anne@contoso.com", "n": 1 })),
            event(t, 2, 4, &json!({ "sms_required": true })),
            event(u, 2, 5, &json!({ "phone": "+31612345678" })),
            event(
                t,
                3,
                7,
                &json!({ "sms_required": false, "note": "tab\there \"quoted\" é" }),
            ),
        ];
        rehash(&mut events);
        let checkpoints = vec![sign(&events, 4), sign(&events, 5)];
        Log {
            events,
            checkpoints,
        }
    }

    fn export(log: &Log) -> Vec<String> {
        let mut lines = vec![
            ExportLine::Header(ExportHeader {
                format: EXPORT_FORMAT,
                scope: Scope::WholeLog,
            })
            .to_json()
            .unwrap(),
        ];
        for event in &log.events {
            let line = ExportLine::Event(Box::new(ExportedEvent {
                event: event.clone(),
                foreign_predecessor_hash: None,
            }));
            lines.push(line.to_json().unwrap());
        }
        for checkpoint in &log.checkpoints {
            lines.push(
                ExportLine::Checkpoint(checkpoint.clone())
                    .to_json()
                    .unwrap(),
            );
        }
        let end = ExportEnd {
            events: log.events.len() as u64,
            checkpoints: log.checkpoints.len() as u64,
            key_ids: vec![key_id(&SigningKey::from_bytes(&KEY).verifying_key())],
        };
        lines.push(ExportLine::End(end).to_json().unwrap());
        lines
    }

    fn verify(lines: &[String]) -> Result<VerifySummary, VerifyError> {
        verify_export(
            lines.iter().map(String::as_str),
            &[SigningKey::from_bytes(&KEY).verifying_key()],
        )
    }

    fn broken_at(result: Result<VerifySummary, VerifyError>) -> (i64, Broken) {
        match result {
            Err(VerifyError::Broken { position, reason }) => (position, reason),
            other => panic!("expected tampering to be found, got {other:?}"),
        }
    }

    #[test]
    fn an_untouched_export_verifies_with_its_checkpoints() {
        let summary = verify(&export(&log())).unwrap();
        assert_eq!(summary.events, 5);
        assert_eq!(summary.streams, 2);
        assert_eq!(summary.checkpoints, 2);
        assert_eq!(summary.unsigned_events, 0);
        assert_eq!(summary.last_checkpoint.unwrap().position, 7);
    }

    #[test]
    fn altering_one_byte_of_a_payload_is_named_at_its_position() {
        let log = log();
        let mut lines = export(&log);
        lines[3] = lines[3].replace("sms_required\":true", "sms_required\":false");
        assert_eq!(broken_at(verify(&lines)), (4, Broken::AlteredContent));
    }

    #[test]
    fn altering_metadata_is_named_at_its_position() {
        let mut lines = export(&log());
        lines[2] = lines[2].replace("\"c2\"", "\"c3\"");
        assert_eq!(broken_at(verify(&lines)), (2, Broken::AlteredContent));
    }

    #[test]
    fn removing_an_event_inside_a_stream_names_its_successor_or_an_earlier_checkpoint() {
        let mut log = log();
        log.events.remove(2); // t#2 at position 4
        let signed = log.checkpoints.clone();
        log.checkpoints.clear();
        let (position, reason) = broken_at(verify(&export(&log)));
        assert_eq!(position, 7, "t#3 lost its predecessor");
        assert!(
            matches!(
                reason,
                Broken::SequenceGap {
                    previous: 1,
                    sequence: 3,
                    ..
                }
            ),
            "{reason}"
        );

        // The checkpoint at position 5 covers the removed event and comes first in log order.
        log.checkpoints = signed;
        assert_eq!(
            broken_at(verify(&export(&log))),
            (
                5,
                Broken::CheckpointMismatch {
                    since: None,
                    signed_events: 4,
                    exported_events: 3
                }
            )
        );
    }

    #[test]
    fn removing_the_last_event_of_a_stream_is_caught_by_the_next_checkpoint() {
        let mut log = log();
        log.events.remove(3); // u#2 at position 5, the end of stream u
        let (position, reason) = broken_at(verify(&export(&log)));
        assert_eq!(position, 5, "the checkpoint signed at the removed event");
        assert_eq!(reason, Broken::CheckpointedEventMissing { since: None });
    }

    #[test]
    fn swapping_two_events_is_named_at_the_first_of_them() {
        let mut log = log();
        let (first, second) = (log.events[1].payload.clone(), log.events[3].payload.clone());
        log.events[1].payload = second;
        log.events[3].payload = first;
        assert_eq!(
            broken_at(verify(&export(&log))),
            (2, Broken::AlteredContent)
        );

        let mut log = self::log();
        log.events.swap(2, 3);
        let (position, reason) = broken_at(verify(&export(&log)));
        assert_eq!(position, 4, "the line that came too late");
        assert_eq!(reason, Broken::OutOfLogOrder { after: 5 });
    }

    #[test]
    fn a_forged_or_foreign_checkpoint_is_refused() {
        let mut log = log();
        log.checkpoints[0].checkpoint.events = 3;
        assert_eq!(broken_at(verify(&export(&log))), (5, Broken::BadSignature));

        let mut log = self::log();
        let stranger = SigningKey::from_bytes(&[1; 32]);
        log.checkpoints[1].key_id = key_id(&stranger.verifying_key());
        log.checkpoints[1].signature = stranger
            .sign(&log.checkpoints[1].checkpoint.message())
            .to_bytes();
        let (position, reason) = broken_at(verify(&export(&log)));
        assert_eq!(position, 7);
        assert!(matches!(reason, Broken::UntrustedKey { .. }));
    }

    #[test]
    fn a_rewritten_stream_with_recomputed_hashes_fails_the_signed_running_hash() {
        let mut log = log();
        log.events[2].payload = json!({ "Something": { "sms_required": false } });
        rehash(&mut log.events);
        let (position, reason) = broken_at(verify(&export(&log)));
        assert_eq!(position, 5);
        assert_eq!(
            reason,
            Broken::CheckpointMismatch {
                since: None,
                signed_events: 4,
                exported_events: 4
            }
        );
    }

    #[test]
    fn a_removed_tail_and_its_checkpoints_are_caught_by_a_held_checkpoint() {
        let full = log();
        let mut cut = log();
        cut.events.truncate(4);
        cut.checkpoints.truncate(1);
        assert!(
            verify(&export(&cut)).is_ok(),
            "the cut export alone verifies"
        );

        let mut verifier = Verifier::new([SigningKey::from_bytes(&KEY).verifying_key()]);
        verifier.hold_checkpoints(full.checkpoints.clone());
        for line in export(&cut) {
            verifier.feed(&line).unwrap();
        }
        let (position, reason) = broken_at(verifier.finish());
        assert_eq!(position, 7);
        assert_eq!(reason, Broken::CheckpointedEventMissing { since: Some(5) });
    }

    #[test]
    fn a_truncated_or_headless_export_is_malformed() {
        let lines = export(&log());
        let truncated = &lines[..lines.len() - 1];
        assert!(matches!(
            verify(truncated),
            Err(VerifyError::Malformed {
                reason: Malformed::MissingEnd,
                ..
            })
        ));
        assert!(matches!(
            verify(&lines[1..]),
            Err(VerifyError::Malformed {
                line: 1,
                reason: Malformed::MissingHeader
            })
        ));
    }

    #[test]
    fn export_lines_round_trip() {
        for line in export(&log()) {
            assert_eq!(ExportLine::parse(&line).unwrap().to_json().unwrap(), line);
        }
    }
}
